"""Backbone pre-training weights: finding them, fetching them, and saying
how to get them when they are missing.

A model config names its backbone's ImageNet weights in ``model.pretrained``
(or ``model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...)``):

* ``open-mmlab://resnet50_v1c`` (ResNet configs): mmengine's name for a file
  of download.openmmlab.com, cached in ``<torch hub dir>/checkpoints``;
* ``pretrain/swin_*.pth`` (Swin configs): a local file, see
  ``pretrain/README.md`` and ``tools/download_swin_weights.sh``.

Without these the failure would come late (after the datasets are built)
and read like a network or file-system error; :func:`ensure_pretrained`
runs before anything is built and turns it into one line saying what to do.

Files are fetched by :mod:`mmseg.engine.download`, the downloader that
mmengine's http loader (:mod:`mmseg.engine.safe_load`) uses too.
"""
import os
import os.path as osp
import urllib.error
from typing import Mapping, Optional

from mmseg.utils.errors import SenFormerError
from .download import cached_file, download_file
from .download_check import (checkpoint_problem, hash_in_name,
                             verify_checkpoint_file)


class PretrainedNotFoundError(SenFormerError, FileNotFoundError):
    """Backbone pre-training weights are neither on disk nor downloadable."""


def pretrained_of(model_cfg: Mapping) -> Optional[str]:
    """The backbone checkpoint a model config loads when it is initialised
    (``model.pretrained``, else a ``Pretrained`` backbone ``init_cfg`` or
    the backbone's ``pretrained``), or None."""
    if model_cfg.get('pretrained'):
        return model_cfg['pretrained']
    backbone = model_cfg.get('backbone') or {}
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, Mapping) and \
            init_cfg.get('type') == 'Pretrained':
        return init_cfg.get('checkpoint')
    return backbone.get('pretrained') or None


def missing_file_message(path: str) -> str:
    """What to say when the local weights file ``path`` does not exist."""
    where = '' if osp.isabs(path) else f' (relative to {os.getcwd()})'
    if osp.basename(path).startswith('swin_'):
        how = ('run bash tools/download_swin_weights.sh or convert an '
               'official release with tools/model_converters/swin2mmseg.py '
               '(see pretrain/README.md)')
    else:
        how = ('point model.pretrained at an existing file, e.g. '
               '--cfg-options model.pretrained=/path/to/weights.pth')
    return f'{path} not found{where}: {how}'


def check_local_pretrained(path: str) -> None:
    """Raise :class:`PretrainedNotFoundError` when ``path`` is missing."""
    if not osp.isfile(osp.expanduser(path)):
        raise PretrainedNotFoundError(missing_file_message(path))


def resolve_url(name: str) -> str:
    """``open-mmlab://NAME`` -> its URL (mmengine's table); URLs as they
    are."""
    for prefix in ('open-mmlab://', 'openmmlab://'):
        if name.startswith(prefix):
            from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                                    get_external_models)
            model = name[len(prefix):]
            model = get_deprecated_model_names().get(model, model)
            urls = get_external_models()
            if model not in urls:
                raise PretrainedNotFoundError(
                    f'{name}: mmengine knows no model {model!r} (see '
                    'mmengine/hub/openmmlab.json)')
            return urls[model]
    return name


def ensure_pretrained(model_cfg: Mapping) -> Optional[str]:
    """Make sure the backbone weights a model config needs are available.

    Local files must exist. URLs (``open-mmlab://``, ``http(s)://``) are
    downloaded into the cache when not there yet, by local rank 0 only (the
    other processes of a distributed run read the cache once rank 0 has
    filled it). Call it before the distributed group is set up.

    Returns:
        The local file (or the URL on local ranks other than 0), or None
        when the config loads no pre-trained weights.

    A downloaded file (and one found in the cache) is verified first
    (:func:`~mmseg.engine.download_check.verify_checkpoint_file`: size, the
    sha256 in its name, a weights-only state dict of tensors); a bad cached
    file is downloaded again, a bad download removed and named.

    Raises:
        PretrainedNotFoundError: a missing local file, or a URL that could
            not be downloaded; the message says how to get the file.
        BadDownloadError: the downloaded file failed verification.
    """
    name = pretrained_of(model_cfg)
    if not name:
        return None
    if '://' not in name:
        check_local_pretrained(name)
        return name
    url = resolve_url(name)
    if not url.startswith(('http://', 'https://')):
        return name  # a scheme of another loader: leave it to mmengine
    target = cached_file(url)
    if os.environ.get('LOCAL_RANK', '0') != '0':
        return target if osp.isfile(target) else name
    if osp.isfile(target):
        # a cache filled by an older, unchecked download may hold anything
        problem = checkpoint_problem(target, sha256=hash_in_name(url))
        if problem is None:
            return target
        os.remove(target)
        print(f'{target} in the cache is bad ({problem}): removed it, '
              'downloading it again', flush=True)
    label = name if name == url else f'{name} ({url})'
    print(f'downloading {label} to {target}', flush=True)
    try:
        size = download_file(url, target)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, 'reason', None) or e
        raise PretrainedNotFoundError(
            f'could not download {label}: {reason}; without internet access '
            f'copy {osp.basename(target)} into {osp.dirname(target)}, or set '
            '--cfg-options model.pretrained=/path/to/weights.pth') from None
    verify_checkpoint_file(target, source=url, size=size)
    return target
