"""Keep freed large blocks in the process heap during CPU inference.

glibc's ``malloc`` serves every block above its mmap threshold (at most
32 MB) with a fresh ``mmap`` and unmaps it on ``free``. SenFormer's
stride-4 maps are larger than that, so every forward pass maps, faults in
and zero-fills its big tensors again page by page: measured on 2 cores,
SenFormerNWS-R50 at 512 x 512 spends 13% of its forward time there (3.31 s
-> 2.88 s with the heap kept). During training the kept heap fragments
(SenFormerNWS-R50, batch 2: peak resident memory 4.8 GB -> 6.5 GB within
three steps), so the tools apply this to inference only.

It lives with the inference API because inference is its only use
(``tools/test.py``, the demos, ``tools/benchmark.py --mode inference``);
training must not call it.
"""
from mmseg.utils.glibc_heap import glibc

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# free memory at the top of the heap beyond this is returned to the system
_TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep up to 1 GiB of freed memory
    at its top, so repeated forward passes reuse their pages.

    Does nothing off glibc, or when the environment variable
    ``MMSEG_DEFAULT_MALLOC=1`` is set.

    Returns:
        bool: whether the allocator was changed.
    """
    libc = glibc()
    return libc is not None and bool(
        libc.mallopt(_M_MMAP_MAX, 0)
        and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
