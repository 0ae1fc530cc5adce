"""Pixel accuracy, logged next to the losses."""
import torch

from ..ops import upsampled_argmax


def pixel_accuracy(prediction: torch.Tensor,
                   label: torch.Tensor,
                   ignore_index: int = 255) -> torch.Tensor:
    """Percentage of non-ignored pixels where ``prediction`` (``B x H x W``
    classes) equals ``label``."""
    valid = label != ignore_index
    correct = (prediction == label) & valid
    return correct.sum() * 100.0 / valid.sum().clamp(min=1)


@torch.no_grad()
def accuracy(scores: torch.Tensor,
             label: torch.Tensor,
             ignore_index: int = 255,
             align_corners: bool = False) -> torch.Tensor:
    """Pixel accuracy of the arg-max of ``B x K x h x w`` scores, upsampled
    bilinearly to the ``B x H x W`` labels when smaller."""
    if scores.shape[2:] == label.shape[1:]:
        prediction = scores.argmax(dim=1)
    else:
        prediction = upsampled_argmax(scores, label.shape[1:], align_corners)
    return pixel_accuracy(prediction, label, ignore_index)
