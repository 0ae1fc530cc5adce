"""Pixel-wise cross-entropy loss."""
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmseg.registry import MODELS
from .upsampled_nll import upsampled_nll
from .utils import weight_reduce_loss


def cross_entropy(pred: torch.Tensor,
                  label: torch.Tensor,
                  weight: Optional[torch.Tensor] = None,
                  class_weight: Optional[torch.Tensor] = None,
                  reduction: str = 'mean',
                  avg_factor: Optional[float] = None,
                  ignore_index: int = -100,
                  avg_non_ignore: bool = False,
                  align_corners: bool = False) -> torch.Tensor:
    """Cross-entropy of ``B x K x h x w`` logits against ``B x H x W``
    labels, with MMSegmentation 1.x's arguments.

    Logits smaller than the labels are bilinearly upsampled to them (as
    the heads' predictions are), without storing the upsampled map.

    Args:
        weight: per-pixel weights ``B x H x W``, or None.
        class_weight: ``K`` per-class weights, or None.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per pixel).
        avg_factor: divide the sum by this instead of taking the mean.
        ignore_index: label excluded from the loss (its pixels count 0).
        avg_non_ignore: with ``'mean'`` and no ``avg_factor``, divide the
            sum by the number of non-ignored pixels; otherwise the mean runs
            over all pixels, as MMSegmentation 0.x did and the published
            models were trained.
        align_corners: of the upsampling.
    """
    if pred.shape[2:] == label.shape[1:]:
        loss = F.cross_entropy(
            pred, label, reduction='none', ignore_index=ignore_index)
    else:
        loss = upsampled_nll(pred, label, ignore_index, align_corners)
    valid = label != ignore_index
    if class_weight is not None:
        loss = loss * class_weight[label.masked_fill(~valid, 0)] * valid
    if avg_factor is None and avg_non_ignore and reduction == 'mean':
        avg_factor = valid.sum().item()
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy for semantic segmentation.

    Args:
        use_sigmoid: must be False (SenFormer's losses are softmax ones);
            kept because configs state it.
        use_mask: must be False, likewise.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        class_weight: per-class weights, a list or a path to a ``.npy`` or
            ``.pkl``/``.json`` file holding one.
        loss_weight: multiplier of the loss.
        loss_name: key of the loss in the log (must start with ``loss_``).
        avg_non_ignore: average over non-ignored pixels only (the sum is
            divided by the count of ``label != ignore_index``).
    """

    def __init__(self,
                 use_sigmoid: bool = False,
                 use_mask: bool = False,
                 reduction: str = 'mean',
                 class_weight: Optional[Union[Sequence[float], str]] = None,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce',
                 avg_non_ignore: bool = False):
        super().__init__()
        if use_sigmoid or use_mask:
            raise ValueError('CrossEntropyLoss: use_sigmoid=True and '
                             'use_mask=True are not supported; only the '
                             'softmax cross-entropy is')
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f"CrossEntropyLoss: reduction must be 'mean', "
                             f"'sum' or 'none', got {reduction!r}")
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_" so that it '
                             f'is optimised, got {loss_name!r}')
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.register_buffer(
            'class_weight',
            None if class_weight is None else torch.tensor(
                _load_class_weight(class_weight), dtype=torch.float32),
            persistent=False)
        self.avg_non_ignore = avg_non_ignore
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def extra_repr(self) -> str:
        return f'avg_non_ignore={self.avg_non_ignore}'

    def forward(self,
                cls_score: torch.Tensor,
                label: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: int = -100,
                align_corners: bool = False,
                **kwargs) -> torch.Tensor:
        """``B x K x h x w`` scores and ``B x H x W`` labels -> the loss;
        scores smaller than the labels are upsampled bilinearly (with
        ``align_corners``). Arguments as :func:`cross_entropy`."""
        if isinstance(weight, int) and not isinstance(weight, bool):
            # decode_heads/senformer.py (another change owns it) still calls
            # loss(logits, label, ignore_index, align_corners) positionally;
            # drop this once it passes them by keyword
            weight, avg_factor, ignore_index, align_corners = \
                None, None, weight, bool(avg_factor)
        reduction = reduction_override or self.reduction
        class_weight = None if self.class_weight is None else \
            self.class_weight.to(cls_score.dtype)
        return self.loss_weight * cross_entropy(
            cls_score,
            label,
            weight,
            class_weight=class_weight,
            reduction=reduction,
            avg_factor=avg_factor,
            ignore_index=ignore_index,
            avg_non_ignore=self.avg_non_ignore,
            align_corners=align_corners)


def _load_class_weight(class_weight: Union[Sequence[float], str]):
    if isinstance(class_weight, torch.Tensor):
        return class_weight.tolist()
    if not isinstance(class_weight, str):
        return list(class_weight)
    if class_weight.endswith('.npy'):
        return np.load(class_weight).tolist()
    import mmengine
    return list(mmengine.load(class_weight))
