"""Pixel-wise cross-entropy loss."""
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmseg.registry import MODELS
from ..ops import upsampled_nll
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


def _expand_onehot_labels(labels: torch.Tensor,
                          label_weights: Optional[torch.Tensor],
                          target_shape: torch.Size, ignore_index: int):
    """One-hot ``N x K (x H x W)`` targets of ``N (x H x W)`` class labels,
    the per-element weights (0 where ignored) and the valid mask."""
    valid = (labels >= 0) & (labels != ignore_index)
    onehot = F.one_hot(labels.masked_fill(~valid, 0), target_shape[1])
    onehot = onehot.movedim(-1, 1) * valid.unsqueeze(1)
    valid_mask = valid.unsqueeze(1).expand(target_shape).float()
    if label_weights is None:
        weights = valid_mask
    else:
        weights = label_weights.unsqueeze(1).expand(target_shape) * \
            valid_mask
    return onehot, weights, valid_mask


def binary_cross_entropy(pred: torch.Tensor,
                         label: torch.Tensor,
                         weight: Optional[torch.Tensor] = None,
                         reduction: str = 'mean',
                         avg_factor: Optional[float] = None,
                         class_weight: Optional[torch.Tensor] = None,
                         ignore_index: int = -100,
                         avg_non_ignore: bool = False,
                         align_corners: bool = False) -> torch.Tensor:
    """Sigmoid (binary) cross-entropy, as MMSegmentation 1.x computes it.

    ``pred`` is ``N x 1 x H x W`` for binary segmentation (labels 0/1 and
    the ignore index), ``N x K (x H x W)`` against class labels (one-hot
    targets), or of the labels' shape (soft targets). Scores smaller than
    the labels are upsampled bilinearly first. ``class_weight`` is the
    ``pos_weight`` of the positives.
    """
    if pred.dim() == 4 and label.dim() == 3 and \
            pred.shape[2:] != label.shape[1:]:
        pred = F.interpolate(
            pred,
            size=label.shape[1:],
            mode='bilinear',
            align_corners=align_corners)
    if pred.dim() == label.dim() + 1 and pred.size(1) == 1:
        labelled = label[label != ignore_index]
        if labelled.numel() and labelled.max() > 1:
            raise ValueError(
                'binary_cross_entropy: one-channel scores need labels 0 and '
                f'1 (and the ignore index {ignore_index}), got '
                f'{int(labelled.max())}')
        pred = pred.squeeze(1)
    if pred.dim() != label.dim():
        if pred.dim() != label.dim() + 1:
            raise ValueError(
                f'binary_cross_entropy: scores {tuple(pred.shape)} do not '
                f'match labels {tuple(label.shape)}')
        label, weight, valid_mask = _expand_onehot_labels(
            label, weight, pred.shape, ignore_index)
    else:
        valid_mask = ((label >= 0) & (label != ignore_index)).float()
        weight = valid_mask if weight is None else weight * valid_mask
    if reduction == 'mean' and avg_factor is None and avg_non_ignore:
        avg_factor = valid_mask.sum().item()
    # an ignored pixel's target (e.g. 255) must be a valid probability
    target = label.float().where(valid_mask.bool(), 0.)
    loss = F.binary_cross_entropy_with_logits(
        pred, target, pos_weight=class_weight, reduction='none')
    return weight_reduce_loss(loss, weight.float(), reduction, avg_factor)


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy for semantic segmentation.

    Args:
        use_sigmoid: the sigmoid (binary) cross-entropy
            (:func:`binary_cross_entropy`) instead of the softmax one.
        use_mask: unsupported (must be False).
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
        if use_mask:
            raise ValueError('CrossEntropyLoss: use_mask=True (the mask '
                             'cross-entropy) is not supported')
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f"CrossEntropyLoss: reduction must be 'mean', "
                             f"'sum' or 'none', got {reduction!r}")
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_" so that it '
                             f'is optimised, got {loss_name!r}')
        self.use_sigmoid = use_sigmoid
        self.use_mask = use_mask
        self.criterion = binary_cross_entropy if use_sigmoid else \
            cross_entropy
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
        reduction = reduction_override or self.reduction
        class_weight = None if self.class_weight is None else \
            self.class_weight.to(cls_score.dtype)
        return self.loss_weight * self.criterion(
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
