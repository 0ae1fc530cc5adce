"""Weights-only checkpoint loading with an explicit allowlist.

Since torch 2.6 ``torch.load`` unpickles with ``weights_only=True``: only
tensors, containers and primitive types are rebuilt, any other global in the
pickle is refused. Checkpoints written by mmengine's Runner also hold

* ``message_hub``: :class:`mmengine.logging.HistoryBuffer` objects (numpy
  arrays inside) whose pickled state refers to their statistics methods as
  ``getattr(HistoryBuffer, 'mean')``;
* numpy scalars, dtypes and arrays (``best_score``, ``eta``, ...), written
  as ``numpy._core`` names by numpy 2 and ``numpy.core`` names by numpy 1
  (the published 0.x checkpoints);
* :class:`mmengine.config.ConfigDict` in ``meta.dataset_meta`` when a
  config's ``metainfo`` has a nested dict (the dataset keeps it as is).

Everything else (configs, dataset meta, optimizer and scheduler states) is
plain ``str``/``dict``/``list``/``tuple``/numbers, already allowed by torch.

:func:`register_safe_globals` adds exactly these types to torch's allowlist;
it runs when :mod:`mmseg.engine` is imported. Safe loading itself is never
switched off: :func:`safe_torch_load` passes ``weights_only=True``
explicitly, so not even ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` disables it, and
turns torch's long unpickling errors into one-line :class:`CheckpointError`
messages naming the file and the refused global.
"""
import os
import os.path as osp
import pickle
import re
from typing import IO, Callable, List, Optional, Union

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer

from mmseg.utils.errors import SenFormerError


class CheckpointError(SenFormerError, RuntimeError):
    """A checkpoint file cannot be used (unreadable, unsafe, mismatched)."""


class NotACheckpointError(CheckpointError):
    """The file is not something ``torch.save`` wrote (garbage/truncated)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle needs a global outside the allowlist (it could run code)."""


def _history_buffer_getattr(obj, name: str):
    """``getattr`` restricted to a HistoryBuffer's statistics methods.

    Pickle protocol 2 stores the function ``HistoryBuffer.mean`` as
    ``getattr(HistoryBuffer, 'mean')``. Allowlisting the real ``getattr``
    would hand any attribute of any allowed object to the pickle, so the
    ``builtins.getattr`` global is bound to this function instead.
    """
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) '
        'is not allowed (only HistoryBuffer statistics methods are)')


# scalar types of the arrays and scalars in our checkpoints (logged values,
# metrics, palettes): booleans and numbers, never object or string arrays
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64',
                 'longdouble', 'complex64', 'complex128')


def _numpy_globals() -> list:
    """numpy types found in checkpoints, under their numpy 2 and 1 names."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else \
        np.core.multiarray
    entries = [np.ndarray, np.dtype]
    # unpickling a dtype sets the state of an instance of its DType class
    entries += sorted({type(np.dtype(t)) for t in _NUMPY_DTYPES},
                      key=lambda cls: cls.__name__)
    for func in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            entries.append((func, f'{module}.{func.__name__}'))
    return entries


def safe_globals() -> list:
    """The allowlist: every non-torch global our checkpoints contain."""
    return [
        ConfigDict,
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
    ] + _numpy_globals()


_registered = False


def register_safe_globals() -> None:
    """Add :func:`safe_globals` to torch's weights-only allowlist (once)."""
    global _registered
    if not _registered:
        torch.serialization.add_safe_globals(safe_globals())
        _registered = True


_GLOBAL_IN_MESSAGE = re.compile(r'GLOBAL (\S+?)(?: was not| whose module)')
_WEIGHTS_UNPICKLER_PREFIX = 'WeightsUnpickler error:'


def _torch_reason(message: str) -> str:
    """The one informative line of torch's multi-paragraph load error."""
    if _WEIGHTS_UNPICKLER_PREFIX in message:
        message = message.split(_WEIGHTS_UNPICKLER_PREFIX, 1)[1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(('Weights only load failed', 'In PyTorch',
                                '(1)', '(2)', 'Check the documentation',
                                'Please file an issue')):
            return line
    return lines[0] if lines else 'unknown error'


def _refused_globals(source, message: str) -> List[str]:
    """Names of the non-allowlisted globals that made the load fail."""
    names = []
    if isinstance(source, str):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(
                source)
        except Exception:  # not a zip checkpoint: fall back to the message
            names = []
    if not names:
        names = _GLOBAL_IN_MESSAGE.findall(message)
    return names


def safe_torch_load(source: Union[str, IO[bytes]],
                    map_location: Union[str, torch.device, Callable,
                                        None] = 'cpu',
                    name: Optional[str] = None):
    """``torch.load(source, weights_only=True)`` with clear errors.

    Args:
        source: file path or binary file object.
        map_location: as for :func:`torch.load`.
        name: how to call the source in messages (a URL, say); defaults to
            the path.

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        UnsafeCheckpointError: the pickle needs a global that is not
            allowlisted; nothing of it was executed.
        NotACheckpointError: the bytes are not a ``torch.save`` file.
    """
    register_safe_globals()
    if name is None:
        name = source if isinstance(source, str) else repr(source)
    if isinstance(source, str) and not osp.isfile(source):
        raise FileNotFoundError(f'checkpoint file not found: {source}')
    try:
        return torch.load(
            source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        refused = _refused_globals(source, message)
        if refused:
            raise UnsafeCheckpointError(
                f'refusing to load {name}: it needs the non-allowlisted '
                f'global(s) {", ".join(refused)}, which could run arbitrary '
                'code; only tensors and the types in '
                'mmseg.engine.safe_load.safe_globals() are allowed') from None
        reason = _torch_reason(message)
        if 'is not allowed' in reason or 'allowlisted' in reason:
            raise UnsafeCheckpointError(
                f'refusing to load {name}: {reason}') from None
        raise NotACheckpointError(
            f'{name} is not a checkpoint (unreadable pickle: {reason})'
        ) from None
    except (PermissionError, IsADirectoryError):
        raise
    except RuntimeError as e:
        if 'cuda' in str(e).lower():  # e.g. map_location names no device
            raise
        raise NotACheckpointError(
            f'{name} is not a checkpoint (truncated or not written by '
            f'torch.save: {_torch_reason(str(e))})') from None
    except (EOFError, KeyError, ValueError, OSError, IndexError,
            UnicodeDecodeError) as e:
        detail = f'{type(e).__name__}: {e}' if str(e) else type(e).__name__
        raise NotACheckpointError(
            f'{name} is not a checkpoint (truncated or not written by '
            f'torch.save: {detail})') from None


def load_from_local_safe(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` backend for local paths."""
    return safe_torch_load(
        osp.expanduser(filename), map_location=map_location)


def load_from_http_safe(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` backend for ``http(s)://`` URLs.

    The file is cached in ``<torch hub dir>/checkpoints`` as torch.hub does;
    in a distributed run local rank 0 downloads it while the other ranks wait
    at a barrier, then every rank loads the cached copy.
    """
    from mmengine.dist import barrier, get_dist_info

    from .download import cached_file, download_file
    from .download_check import verify_checkpoint_file

    cached = cached_file(filename)
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        # through a temporary file: no half-written cache
        size = download_file(filename, cached)
        # size and the sha256 of the name here; the structure is checked
        # by the loading below
        verify_checkpoint_file(cached, source=filename, size=size,
                               check_structure=False)
    if world_size > 1:
        barrier()
    try:
        return safe_torch_load(cached, map_location=map_location,
                               name=f'{filename} (cached as {cached})')
    except NotACheckpointError as e:
        if rank != 0 or not osp.isfile(cached):
            raise
        os.remove(cached)  # else every later run would fail on it again
        raise NotACheckpointError(
            f'{e}; removed {cached} from the cache, run again to download '
            'it anew') from None


_installed = False


def install_safe_loading() -> None:
    """Allowlist our checkpoint types and route mmengine's loading through
    :func:`safe_torch_load`; idempotent.

    ``Runner.load_checkpoint``/``resume``/``load_from``,
    ``mmengine.runner.load_checkpoint`` and ``CheckpointLoader`` all pick a
    loader from ``CheckpointLoader``'s scheme table, so registering ours for
    local paths and http(s) there (the table's public extension point, no
    patching) gives them explicit ``weights_only=True`` and one-line errors.
    """
    global _installed
    if _installed:
        return
    from mmengine.runner import CheckpointLoader
    register_safe_globals()
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safe, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'),
        loader=load_from_http_safe,
        force=True)
    _installed = True
