from .checkpoint_hook import SegCheckpointHook
from .finite_loss_hook import CheckFiniteLossHook, NonFiniteError
from .iter_seed_hook import IterSeedHook
from .visualization_hook import SegVisualizationHook

__all__ = [
    'CheckFiniteLossHook', 'IterSeedHook', 'NonFiniteError',
    'SegCheckpointHook', 'SegVisualizationHook'
]
