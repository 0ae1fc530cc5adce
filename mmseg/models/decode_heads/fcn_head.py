"""Fully convolutional head (Long et al., 2015), the auxiliary head."""
from typing import Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule

from mmseg.registry import MODELS
from .decode_head import BaseDecodeHead


@MODELS.register_module()
class FCNHead(BaseDecodeHead):
    """``num_convs`` conv-norm-act layers, then the classifier.

    Args:
        num_convs: convolutions before the classifier (0 is allowed).
        kernel_size: their kernel size.
        concat_input: concatenate the input to their output first.
        dilation: their dilation.
        Other arguments: see :class:`BaseDecodeHead`.
    """

    def __init__(self,
                 num_convs: int = 2,
                 kernel_size: int = 3,
                 concat_input: bool = True,
                 dilation: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        if num_convs == 0 and self.in_channels != self.channels:
            raise ValueError('FCNHead with num_convs=0 needs in_channels == '
                             'channels')
        padding = (kernel_size // 2) * dilation
        self.convs = nn.Sequential(*[
            ConvModule(
                self.in_channels if i == 0 else self.channels,
                self.channels,
                kernel_size,
                padding=padding,
                dilation=dilation,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg) for i in range(num_convs)
        ])
        self.conv_cat = ConvModule(
            self.in_channels + self.channels,
            self.channels,
            kernel_size,
            padding=kernel_size // 2,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg) if concat_input else None

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Selected ``B x C_in x H x W`` map -> ``B x K x H x W`` logits."""
        x = self._select_inputs(inputs)
        feat = self.convs(x)
        if self.conv_cat is not None:
            feat = self.conv_cat(torch.cat([x, feat], dim=1))
        return self.cls_seg(feat)
