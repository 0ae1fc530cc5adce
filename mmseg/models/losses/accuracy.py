"""Pixel accuracy, logged next to the losses."""
import torch


def accuracy(scores: torch.Tensor,
             label: torch.Tensor,
             ignore_index: int = 255) -> torch.Tensor:
    """Percentage of non-ignored pixels whose arg-max class is the label.

    Args:
        scores: ``B x K x H x W`` logits or probabilities.
        label: ``B x H x W``.
    """
    valid = label != ignore_index
    correct = (scores.argmax(dim=1) == label) & valid
    return correct.sum() * 100.0 / valid.sum().clamp(min=1)
