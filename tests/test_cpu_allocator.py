"""keep_freed_memory: large blocks are reused instead of mapped afresh."""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
    reason='mallopt tuning applies to glibc only')

# 64 MB blocks: above any mmap threshold glibc picks by itself (<= 32 MB)
_FAULTS_PER_ALLOCATION = '''
import resource, sys
import torch
from mmseg.apis import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == 'keep' else False
for _ in range(3):  # the heap grows to its working size
    torch.ones(1 << 24).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(1 << 24).sum()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, faults / 10)
'''


def _faults_per_allocation(mode, env=None):
    out = subprocess.run(
        [sys.executable, '-c', _FAULTS_PER_ALLOCATION, mode],
        check=True, capture_output=True, text=True, env=env).stdout.split()
    return out[0] == 'True', float(out[1])


def test_keep_freed_memory_reuses_large_blocks():
    applied, kept_faults = _faults_per_allocation('keep')
    assert applied
    _, default_faults = _faults_per_allocation('default')
    # a fresh 64 MB mapping faults in 16384 pages of 4 KiB (fewer with
    # transparent huge pages); the kept heap faults in none of them again
    assert default_faults > 1000
    assert kept_faults < 100


def test_keep_freed_memory_can_be_disabled(monkeypatch):
    import os
    env = dict(os.environ, MMSEG_DEFAULT_MALLOC='1')
    applied, faults = _faults_per_allocation('keep', env)
    assert not applied
    assert faults > 1000
