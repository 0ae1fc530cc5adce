"""The environment of a run, for bug reports (MMSegmentation's
``collect_env``)."""
import os.path as osp
import subprocess
from collections import OrderedDict


def _git_hash() -> str:
    """Short commit of the source tree, '' outside a git checkout."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        return subprocess.run(
            ['git', '-C', root, 'rev-parse', '--short=7', 'HEAD'],
            capture_output=True, text=True, timeout=10,
            check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def collect_env() -> 'OrderedDict[str, str]':
    """mmengine's environment (Python, CUDA, compilers, PyTorch, OpenCV,
    MMEngine) plus the MMCV and MMSegmentation (this code) versions."""
    from mmengine.utils.dl_utils import collect_env as collect_base_env

    import mmseg
    info = collect_base_env()
    try:
        import mmcv
        info['MMCV'] = mmcv.__version__
    except ImportError:
        info['MMCV'] = 'not installed'
    commit = _git_hash()
    info['MMSegmentation'] = mmseg.__version__ + (f'+{commit}'
                                                  if commit else '')
    return info
