"""Pixel-wise cross-entropy loss."""
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmseg.registry import MODELS
from ..ops import upsampled_nll


def cross_entropy(logits: torch.Tensor,
                  label: torch.Tensor,
                  class_weight: Optional[torch.Tensor] = None,
                  ignore_index: int = 255,
                  avg_non_ignore: bool = False,
                  align_corners: bool = False) -> torch.Tensor:
    """Mean cross-entropy of ``B x K x h x w`` logits against ``B x H x W``
    labels.

    Logits smaller than the labels are bilinearly upsampled to them (as
    the heads' predictions are), without storing the upsampled map.

    Args:
        class_weight: ``K`` per-class weights, or None.
        ignore_index: label excluded from the loss.
        avg_non_ignore: average over non-ignored pixels (weighted by class
            weight); otherwise over all pixels, as MMSegmentation 0.x did and
            the published models were trained.
        align_corners: of the upsampling.
    """
    if logits.shape[2:] == label.shape[1:]:
        loss = F.cross_entropy(
            logits, label, reduction='none', ignore_index=ignore_index)
    else:
        loss = upsampled_nll(logits, label, ignore_index, align_corners)
    valid = label != ignore_index
    if class_weight is None:
        weight = valid.to(loss.dtype)
    else:
        weight = class_weight[label.masked_fill(~valid, 0)] * valid
        loss = loss * weight
    if not avg_non_ignore:
        return loss.mean()
    return loss.sum() / weight.sum().clamp(min=1)


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy for semantic segmentation.

    Args:
        use_sigmoid: must be False; kept because every published config
            states it.
        loss_weight: multiplier of the loss.
        class_weight: per-class weights, a list or a path to a ``.npy`` file.
        avg_non_ignore: average over non-ignored pixels only.
        loss_name: key of the loss in the log (must start with ``loss_``).
    """

    def __init__(self,
                 use_sigmoid: bool = False,
                 loss_weight: float = 1.0,
                 class_weight: Optional[Union[Sequence[float], str]] = None,
                 avg_non_ignore: bool = False,
                 loss_name: str = 'loss_ce'):
        super().__init__()
        if use_sigmoid:
            raise ValueError('CrossEntropyLoss: use_sigmoid=True is not '
                             'supported; SenFormer uses softmax')
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_" so that it '
                             f'is optimised, got {loss_name!r}')
        self.loss_weight = loss_weight
        if isinstance(class_weight, str):
            class_weight = np.load(class_weight).tolist()
        self.register_buffer(
            'class_weight',
            None if class_weight is None else torch.tensor(
                class_weight, dtype=torch.float32),
            persistent=False)
        self.avg_non_ignore = avg_non_ignore
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self,
                logits: torch.Tensor,
                label: torch.Tensor,
                ignore_index: int = 255,
                align_corners: bool = False) -> torch.Tensor:
        """``B x K x h x w`` logits and ``B x H x W`` labels -> scalar;
        logits smaller than the labels are upsampled bilinearly."""
        class_weight = None if self.class_weight is None else \
            self.class_weight.to(logits.dtype)
        return self.loss_weight * cross_entropy(
            logits, label, class_weight, ignore_index, self.avg_non_ignore,
            align_corners)
