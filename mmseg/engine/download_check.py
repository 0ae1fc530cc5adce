"""Checking a downloaded checkpoint before anything uses it.

A download cut short, a proxy's error page saved as ``.pth`` or a file
swapped on the server would otherwise surface much later, as an unpickling
error or as a model that silently loads wrong weights, and stay in the
cache to fail again. :func:`verify_checkpoint_file` checks the size, the
sha256 (given, or the ``-<sha256 prefix>`` that ``tools/publish_model.py``
and torch.hub put in file names) and the structure (a weights-only pickle
holding a state dict of tensors, optionally exactly the expected keys), and
removes a bad file from the cache, naming it.

It depends on nothing else in mmseg but the base exception, so any
downloader (:mod:`mmseg.engine.download` for mmengine's loader and the
backbone weights, the model zoo) can call it.
"""
import hashlib
import os
import os.path as osp
import re
from typing import Callable, Collection, Mapping, Optional
from urllib.parse import urlparse

from mmseg.utils.errors import SenFormerError

# "name-<hex>.pth": the hash suffix of torch.hub and publish_model.py
_NAME_HASH = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9]+$')


class BadDownloadError(SenFormerError, FileNotFoundError):
    """A downloaded (or cached) checkpoint failed verification; the file
    has been removed."""


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def hash_in_name(name: str) -> Optional[str]:
    """The sha256 prefix in a file name or URL (``swin-1a2b3c4d.pth`` ->
    ``1a2b3c4d``), or None."""
    base = osp.basename(urlparse(name).path if '://' in name else name)
    match = _NAME_HASH.search(base)
    return match.group(1) if match else None


def _state_dict(checkpoint: object) -> Optional[Mapping]:
    if not isinstance(checkpoint, Mapping):
        return None
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def _weights_only_load(path: str) -> object:
    import torch
    return torch.load(path, map_location='cpu', weights_only=True)


def checkpoint_problem(path: str,
                       size: Optional[int] = None,
                       sha256: Optional[str] = None,
                       expected_keys: Optional[Collection[str]] = None,
                       load: Optional[Callable[[str], object]] = None,
                       check_structure: bool = True) -> Optional[str]:
    """What is wrong with the checkpoint file ``path``, or None.

    Args:
        path: the local file.
        size: its expected size in bytes, if known.
        sha256: its expected sha256 (hex, whole or a prefix of at least 8
            digits), if known.
        expected_keys: the exact state dict keys it must hold, if known.
        load: how to unpickle it (default: ``torch.load`` weights-only).
        check_structure: unpickle it and check that it holds a non-empty
            state dict of tensors (bare or under ``state_dict``/``model``).
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    actual_size = osp.getsize(path)
    if size is not None and actual_size != size:
        return f'{actual_size} bytes, expected {size} (incomplete download?)'
    if sha256:
        expected = sha256.lower()
        actual = sha256_of(path)
        if not actual.startswith(expected):
            return (f'sha256 {actual[:len(expected)]}... differs from the '
                    f'expected {expected}')
    if not check_structure:
        return None
    import torch
    try:
        checkpoint = (load or _weights_only_load)(path)
    except Exception as e:  # noqa: B902 (any unpickling failure)
        first = str(e).strip().splitlines()
        return (f'not a loadable checkpoint ({type(e).__name__}'
                + (f': {first[0][:200]}' if first else '') + ')')
    state = _state_dict(checkpoint)
    if state is None:
        return f'holds a {type(checkpoint).__name__}, not a dict'
    if not state:
        return 'holds no weights'
    not_tensors = [k for k, v in state.items()
                   if not isinstance(k, str) or not isinstance(v,
                                                               torch.Tensor)]
    if not_tensors:
        return (f'not a state dict of tensors ({len(not_tensors)} entries '
                f'are not, e.g. {not_tensors[0]!r})')
    if expected_keys is not None:
        expected = set(expected_keys)
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            return (f'its weights differ from the expected ones: '
                    f'{len(missing)} missing (e.g. {missing[:2]}), '
                    f'{len(unexpected)} unexpected (e.g. {unexpected[:2]})')
    return None


def verify_checkpoint_file(path: str,
                           source: Optional[str] = None,
                           size: Optional[int] = None,
                           sha256: Optional[str] = None,
                           expected_keys: Optional[Collection[str]] = None,
                           load: Optional[Callable[[str], object]] = None,
                           check_structure: bool = True,
                           remove: bool = True) -> None:
    """Check a downloaded checkpoint; remove it and raise if it is bad.

    Arguments as for :func:`checkpoint_problem`; ``sha256`` defaults to the
    hash in the name of ``source`` (or ``path``) when it has one.

    Args:
        source: where the file came from (a URL), for the message.
        remove: delete a bad file (so the next run downloads it anew).

    Raises:
        BadDownloadError: naming the file, its source and the problem.
    """
    if sha256 is None:
        sha256 = hash_in_name(source or path) or hash_in_name(path)
    problem = checkpoint_problem(path, size, sha256, expected_keys, load,
                                 check_structure)
    if problem is None:
        return
    removed = False
    if remove and osp.isfile(path):
        try:
            os.remove(path)
            removed = True
        except OSError:
            pass
    origin = f' (downloaded from {source})' if source and source != path \
        else ''
    action = ('removed it from the cache; run again to download it anew'
              if removed else 'remove it and download it again')
    raise BadDownloadError(
        f'checkpoint {path}{origin} is bad: {problem}; {action}')
