from .accuracy import accuracy, pixel_accuracy
from .cross_entropy_loss import CrossEntropyLoss, cross_entropy
from .upsampled_nll import (upsampled_argmax, upsampled_nll,
                            upsampled_nll_and_argmax)

__all__ = [
    'accuracy', 'pixel_accuracy', 'CrossEntropyLoss', 'cross_entropy',
    'upsampled_argmax', 'upsampled_nll', 'upsampled_nll_and_argmax'
]
