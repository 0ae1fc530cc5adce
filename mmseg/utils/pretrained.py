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
"""
import http.client
import os
import os.path as osp
import tempfile
import urllib.error
import urllib.request
from typing import Mapping, Optional

from .download_check import (checkpoint_problem, hash_in_name,
                             verify_checkpoint_file)
from .errors import SenFormerError

#: seconds without an answer before a download is given up
DOWNLOAD_TIMEOUT_S = 30


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


def cached_file(url: str) -> str:
    """Where mmengine's (and our) loader caches ``url``."""
    import torch
    from urllib.parse import urlparse
    return osp.join(torch.hub.get_dir(), 'checkpoints',
                    osp.basename(urlparse(url).path))


def download_file(url: str,
                  filename: str,
                  progress: bool = False,
                  label: Optional[str] = None) -> Optional[int]:
    """``url`` (``http(s)://`` or ``file://``) -> ``filename`` through a
    temporary file beside it, so that an interrupted or short download
    leaves no file that looks complete.

    Args:
        url: what to fetch.
        filename: where the complete file goes.
        progress: show a progress bar (tqdm, on stderr).
        label: the progress bar's title (default: the file name).

    Raises:
        urllib.error.URLError: the server refused or could not be reached;
            ``ContentTooShortError`` when fewer bytes came than announced.
        OSError: the file could not be written.

    Returns:
        The size the server announced (``Content-Length``), if it did.
    """
    from tqdm import tqdm
    directory = osp.dirname(osp.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(
                url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get('Content-Length')
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=expected, unit='B', unit_scale=True,
                      unit_divisor=1024, disable=not progress,
                      desc=label or osp.basename(filename),
                      leave=True) as bar:
                try:
                    for block in iter(lambda: response.read(1 << 20), b''):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
                except http.client.IncompleteRead as e:
                    received += len(e.partial)
        if expected is not None and received < expected:
            # the server closed the connection early
            raise urllib.error.ContentTooShortError(
                f'download incomplete: got {received} of {expected} bytes',
                None)
        os.replace(tmp, filename)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return expected


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
    (:func:`~mmseg.utils.download_check.verify_checkpoint_file`: size, the
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
