"""Process-group set-up for distributed runs on machines without CUDA.

mmengine's launchers (``mmengine.dist.init_dist``) pin the process to a GPU
with ``torch.cuda.set_device`` before creating the process group, so they
fail on CPU-only machines. :func:`init_cpu_dist` reads the same launcher
environment and creates a ``gloo`` group without touching ``torch.cuda``.
"""
import datetime
import os
import subprocess
from typing import Dict

import torch.distributed as torch_dist

#: seconds a collective may wait before a rank gives up (a crashed peer
#: must not leave the others hanging forever); env_cfg.dist_cfg.timeout
DEFAULT_TIMEOUT_S = 1800


def _require(name: str, launcher: str) -> str:
    if name not in os.environ:
        raise KeyError(f"launcher='{launcher}' needs the environment variable "
                       f'{name} (torchrun, srun or mpirun sets it)')
    return os.environ[name]


def _launcher_env(launcher: str) -> Dict[str, str]:
    """RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT for a launcher.

    ``pytorch`` (torchrun) sets them all; for ``slurm`` and ``mpi`` they are
    derived from the scheduler's variables as mmengine does.
    """
    if launcher == 'pytorch':
        env = {name: _require(name, launcher)
               for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                            'MASTER_PORT')}
        env['LOCAL_RANK'] = os.environ.get('LOCAL_RANK', '0')
    elif launcher == 'slurm':
        node_list = _require('SLURM_NODELIST', launcher)
        env = dict(
            RANK=_require('SLURM_PROCID', launcher),
            WORLD_SIZE=_require('SLURM_NTASKS', launcher),
            LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'),
            MASTER_PORT=os.environ.get('MASTER_PORT', '29500'))
        env['MASTER_ADDR'] = os.environ.get('MASTER_ADDR') or \
            subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1')
    elif launcher == 'mpi':
        env = dict(
            RANK=_require('OMPI_COMM_WORLD_RANK', launcher),
            WORLD_SIZE=_require('OMPI_COMM_WORLD_SIZE', launcher),
            LOCAL_RANK=os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'),
            MASTER_ADDR=_require('MASTER_ADDR', launcher),
            MASTER_PORT=os.environ.get('MASTER_PORT', '29500'))
    else:
        raise ValueError(f"unknown launcher '{launcher}': expected "
                         "'pytorch', 'slurm' or 'mpi'")
    return env


def init_cpu_dist(launcher: str,
                  timeout: float = DEFAULT_TIMEOUT_S,
                  backend: str = 'gloo') -> None:
    """Create the default process group on CPU.

    The launcher's variables are exported as the ``env://`` names
    (mmengine's DDP wrapping reads ``LOCAL_RANK``).

    Args:
        launcher: ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        timeout: seconds before a blocked collective raises.
        backend: a CPU backend; ``gloo`` unless torch was built with MPI.
    """
    if backend == 'nccl':
        raise ValueError("the 'nccl' backend needs CUDA; use 'gloo' on CPU")
    env = _launcher_env(launcher)
    os.environ.update(env)
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(env['RANK']),
        world_size=int(env['WORLD_SIZE']),
        timeout=datetime.timedelta(seconds=timeout))


def close_dist() -> None:
    """End a distributed run: wait for every rank, then tear the process
    group down.

    Left to the interpreter's exit, gloo's threads can abort the process
    ("terminate called without an active exception") and fail a run that
    has finished.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
