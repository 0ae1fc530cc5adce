"""Access to glibc's allocator: the one place the project calls ``libc``.

PyTorch allocates CPU tensors with ``malloc``. Two policies of the project
tune it: CPU inference keeps freed large blocks in the heap
(:func:`mmseg.apis.keep_freed_memory`), and training hands freed heap
memory back to the system before recomputing activations
(:func:`mmseg.models.ops.recomputed`). Both do nothing off glibc.
"""
import ctypes
import ctypes.util
import functools
import os
import platform
from typing import Optional

# set to 1 to leave malloc as glibc configures it
DISABLE_ENV = 'MMSEG_DEFAULT_MALLOC'


@functools.lru_cache(maxsize=None)
def _load_glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return None
    return ctypes.CDLL(ctypes.util.find_library('c'))


def glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc and tuning it is allowed, else None."""
    if os.environ.get(DISABLE_ENV, '0') not in ('', '0'):
        return None
    return _load_glibc()


def release_freed_heap() -> bool:
    """Return the heap's free pages to the system (``malloc_trim(0)``).

    Freed blocks below the mmap threshold stay mapped in the heap, where
    later blocks of other sizes fragment them; resident memory then counts
    them as used. Returns whether anything was released.
    """
    libc = glibc()
    return bool(libc is not None and libc.malloc_trim(0))
