from .checkpoint_hook import SegCheckpointHook
from .finite_loss_hook import CheckFiniteLossHook, NonFiniteError
from .iter_seed_hook import IterSeedHook
from .preemption_hook import (DEFAULT_STOP_SIGNALS, EXIT_PREEMPTED,
                              PREEMPTED_FILE_ENV, PreemptionHook,
                              TrainingPreempted, parse_signal)
from .visualization_hook import SegVisualizationHook

__all__ = [
    'CheckFiniteLossHook', 'DEFAULT_STOP_SIGNALS', 'EXIT_PREEMPTED',
    'IterSeedHook', 'NonFiniteError', 'PREEMPTED_FILE_ENV', 'PreemptionHook',
    'SegCheckpointHook', 'SegVisualizationHook', 'TrainingPreempted',
    'parse_signal'
]
