"""Pixel accuracy, logged next to the losses."""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import upsampled_argmax


def pixel_accuracy(prediction: torch.Tensor,
                   label: torch.Tensor,
                   ignore_index: Optional[int] = 255) -> torch.Tensor:
    """Percentage of non-ignored pixels where ``prediction`` (``B x H x W``
    classes) equals ``label``."""
    if ignore_index is None:
        return (prediction == label).sum() * 100.0 / max(label.numel(), 1)
    valid = label != ignore_index
    correct = (prediction == label) & valid
    return correct.sum() * 100.0 / valid.sum().clamp(min=1)


@torch.no_grad()
def accuracy(pred: torch.Tensor,
             target: torch.Tensor,
             topk: Union[int, Sequence[int]] = 1,
             thresh: Optional[float] = None,
             ignore_index: Optional[int] = None,
             align_corners: bool = False):
    """Top-k accuracy in percent, with MMSegmentation 1.x's arguments.

    Args:
        pred: scores ``N x K`` or ``B x K x h x w``; score maps smaller
            than ``target`` are upsampled bilinearly (``align_corners``) to
            it first, without storing the upsampled map for top-1.
        target: ``N`` or ``B x H x W`` classes.
        topk: an int, or a tuple of ints for several accuracies.
        thresh: a prediction counts as correct only if its score is above.
        ignore_index: target value left out of the count, or None.

    Returns:
        one accuracy (0-dim tensor) for an int ``topk``, else a list.
    """
    if isinstance(topk, int):
        ks, single = (topk, ), True
    elif isinstance(topk, tuple) and all(isinstance(k, int) for k in topk):
        ks, single = topk, False
    else:
        raise TypeError(f'accuracy: topk must be an int or a tuple of ints, '
                        f'got {topk!r}')
    if pred.size(0) == 0:
        zeros = [pred.new_tensor(0.) for _ in ks]
        return zeros[0] if single else zeros
    if pred.dim() != target.dim() + 1 or pred.size(0) != target.size(0):
        raise ValueError(f'accuracy: scores {tuple(pred.shape)} do not match '
                         f'targets {tuple(target.shape)} (expected N x K x '
                         '... against N x ...)')
    if max(ks) > pred.size(1):
        raise ValueError(f'accuracy: top-{max(ks)} of only {pred.size(1)} '
                         'classes')
    resize = pred.shape[2:] != target.shape[1:]
    if ks == (1, ) and thresh is None:
        prediction = upsampled_argmax(pred, target.shape[1:], align_corners) \
            if resize else pred.argmax(dim=1)
        return _as_requested([pixel_accuracy(prediction, target,
                                             ignore_index)], single)
    if resize:
        pred = F.interpolate(
            pred,
            size=target.shape[1:],
            mode='bilinear',
            align_corners=align_corners)
    values, classes = pred.topk(max(ks), dim=1)
    correct = classes == target.unsqueeze(1)
    if thresh is not None:
        correct &= values > thresh
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is \
        None else target != ignore_index
    total = valid.sum().clamp(min=1)
    return _as_requested([
        (correct[:, :k].any(dim=1) & valid).sum() * 100.0 / total
        for k in ks
    ], single)


def _as_requested(accuracies, single: bool):
    return accuracies[0] if single else accuracies


class Accuracy(nn.Module):
    """:func:`accuracy` as a module (``topk``, ``thresh``,
    ``ignore_index`` fixed at construction)."""

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, ),
                 thresh: Optional[float] = None,
                 ignore_index: Optional[int] = None):
        super().__init__()
        self.topk = topk
        self.thresh = thresh
        self.ignore_index = ignore_index

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        return accuracy(pred, target, self.topk, self.thresh,
                        self.ignore_index)
