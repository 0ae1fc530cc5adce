"""Training machinery on top of mmengine.

Importing this package allowlists our checkpoint types for weights-only
loading and routes mmengine's checkpoint loading through it (see
:mod:`mmseg.engine.safe_load`).
"""
from .atomic_io import SaveError, atomic_write, atomic_write_text
from .checkpoint import (CheckpointMismatchError, atomic_save,
                         get_state_dict, load_checkpoint, read_checkpoint,
                         summarise_keys)
from .dist import DEFAULT_TIMEOUT_S, close_dist, init_cpu_dist
from . import hooks  # noqa: F401  (registers the hooks)
from . import schedulers  # noqa: F401  (registers the schedulers)
from .hooks import (EXIT_PREEMPTED, NonFiniteError, PreemptionHook,
                    TrainingPreempted)
from .schedulers import PolyLRWithWarmup
from .safe_load import (CheckpointError, NotACheckpointError,
                        UnsafeCheckpointError, install_safe_loading,
                        safe_globals, safe_torch_load)
from .seg_runner import DEFAULT_DATALOADER_TIMEOUT_S, SegRunner
from .sync_bn import count_sync_batchnorm, revert_sync_batchnorm_if_needed
from .overrides import UnsupportedInternalsError, WatchedDataLoader
from .work_dir_lock import WorkDirBusyError, WorkDirLock

install_safe_loading()

__all__ = [
    'CheckpointError', 'close_dist', 'CheckpointMismatchError',
    'DEFAULT_DATALOADER_TIMEOUT_S', 'DEFAULT_TIMEOUT_S', 'EXIT_PREEMPTED',
    'NonFiniteError', 'NotACheckpointError', 'PolyLRWithWarmup',
    'PreemptionHook', 'SaveError', 'SegRunner', 'TrainingPreempted',
    'UnsafeCheckpointError', 'UnsupportedInternalsError',
    'WatchedDataLoader', 'WorkDirBusyError',
    'WorkDirLock',
    'atomic_save', 'atomic_write', 'atomic_write_text',
    'count_sync_batchnorm', 'get_state_dict', 'init_cpu_dist',
    'install_safe_loading', 'load_checkpoint', 'read_checkpoint',
    'revert_sync_batchnorm_if_needed', 'safe_globals', 'safe_torch_load',
    'summarise_keys'
]
