from .accuracy import accuracy, pixel_accuracy
from .cross_entropy_loss import CrossEntropyLoss, cross_entropy

__all__ = [
    'accuracy', 'pixel_accuracy', 'CrossEntropyLoss', 'cross_entropy'
]
