"""The one downloader: a URL into torch.hub's checkpoint cache.

mmengine's http checkpoint loader (:mod:`mmseg.engine.safe_load`), the
backbone weights (:mod:`mmseg.engine.pretrained_weights`) and the model zoo
(:mod:`mmseg.apis.model_zoo`) all download through :func:`download_file`,
which writes through a temporary file so that an interrupted download never
leaves a file that looks complete; :mod:`mmseg.engine.download_check`
verifies what arrived.
"""
import http.client
import os
import os.path as osp
import tempfile
import urllib.error
import urllib.request
from typing import Optional

#: seconds without an answer before a download is given up
DOWNLOAD_TIMEOUT_S = 30


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
