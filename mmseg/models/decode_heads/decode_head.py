"""Base class of decode heads."""
from abc import ABCMeta, abstractmethod
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmseg.registry import MODELS
from mmseg.utils import ConfigType, SampleList
from ..losses import accuracy


class BaseDecodeHead(BaseModule, metaclass=ABCMeta):
    """Decode head: selects backbone/neck levels and predicts class logits.

    Args:
        in_channels: channels of the selected input(s).
        channels: channels before the 1x1 classifier ``conv_seg``.
        num_classes: number of classes K.
        dropout_ratio: dropout before ``conv_seg``.
        conv_cfg, norm_cfg, act_cfg: layers of subclasses' ConvModules.
        in_index: the input level, or a list of levels.
        loss_decode: loss config.
        ignore_index: label ignored by losses and accuracy.
        align_corners: of every bilinear resize.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 channels: int,
                 *,
                 num_classes: int,
                 dropout_ratio: float = 0.1,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = None,
                 act_cfg: ConfigType = dict(type='ReLU'),
                 in_index: Union[int, Sequence[int]] = -1,
                 loss_decode: ConfigType = dict(
                     type='CrossEntropyLoss', loss_weight=1.0),
                 ignore_index: int = 255,
                 align_corners: bool = False,
                 init_cfg: Optional[ConfigType] = dict(
                     type='Normal', std=0.01, override=dict(name='conv_seg'))):
        super().__init__(init_cfg)
        if isinstance(in_index, (list, tuple)) != isinstance(
                in_channels, (list, tuple)):
            raise TypeError('in_index and in_channels must both be lists or '
                            'both be integers')
        if isinstance(in_index, (list, tuple)) and \
                len(in_index) != len(in_channels):
            raise ValueError(f'in_index {in_index} and in_channels '
                             f'{in_channels} differ in length')
        self.in_channels = in_channels
        self.channels = channels
        self.num_classes = num_classes
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.in_index = in_index
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self.loss_decode = MODELS.build(loss_decode)
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) \
            if dropout_ratio > 0 else None

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def _select_inputs(self, inputs: Sequence[torch.Tensor]):
        if isinstance(self.in_index, (list, tuple)):
            return [inputs[i] for i in self.in_index]
        return inputs[self.in_index]

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """``B x channels x H x W`` -> ``B x K x H x W``."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)

    @abstractmethod
    def forward(self, inputs: Sequence[torch.Tensor]):
        """Head output from the multi-level features."""

    def resize(self, x: torch.Tensor, size) -> torch.Tensor:
        """Bilinear resize with the head's ``align_corners``."""
        if tuple(x.shape[2:]) == tuple(size):
            return x
        return F.interpolate(
            x, size=size, mode='bilinear', align_corners=self.align_corners)

    def loss(self, inputs: Sequence[torch.Tensor], batch_data_samples:
             SampleList, train_cfg: ConfigType) -> Dict[str, torch.Tensor]:
        return self.loss_by_feat(self.forward(inputs), batch_data_samples)

    def predict(self, inputs: Sequence[torch.Tensor],
                batch_img_metas: List[dict],
                test_cfg: ConfigType) -> torch.Tensor:
        """Logits ``B x K x H x W`` at the network input size."""
        return self.predict_by_feat(self.forward(inputs), batch_img_metas)

    @staticmethod
    def stack_labels(batch_data_samples: SampleList) -> torch.Tensor:
        """``B x H x W`` int64 labels of a batch."""
        return torch.stack([
            sample.gt_sem_seg.data.squeeze(0).long()
            for sample in batch_data_samples
        ])

    def loss_by_feat(self, seg_logits: torch.Tensor,
                     batch_data_samples: SampleList) -> Dict[str, torch.Tensor]:
        """Loss and pixel accuracy of ``B x K x h x w`` logits, upsampled to
        the label size inside the loss."""
        label = self.stack_labels(batch_data_samples)
        return {
            self.loss_decode.loss_name:
            self.loss_decode(seg_logits, label, self.ignore_index,
                             self.align_corners),
            'acc_seg':
            accuracy(seg_logits, label, self.ignore_index,
                     self.align_corners)
        }

    def predict_by_feat(self, seg_logits: torch.Tensor,
                        batch_img_metas: List[dict]) -> torch.Tensor:
        return self.resize(seg_logits,
                           batch_img_metas[0]['batch_input_shape'])
