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
        num_convs: convolutions before the classifier; 0 passes the input
            straight on (then ``in_channels`` must equal ``channels``).
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
        if not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f'FCNHead: num_convs must be an integer >= 0, '
                             f'got {num_convs!r}')
        if not isinstance(dilation, int) or dilation <= 0:
            raise ValueError(f'FCNHead: dilation must be a positive integer, '
                             f'got {dilation!r}')
        super().__init__(**kwargs)
        if num_convs == 0 and self.in_channels != self.channels:
            raise ValueError(
                f'FCNHead with num_convs=0 passes its input to the '
                f'classifier, so in_channels ({self.in_channels}) must equal '
                f'channels ({self.channels})')
        self.num_convs = num_convs
        self.kernel_size = kernel_size
        self.concat_input = concat_input
        padding = (kernel_size // 2) * dilation
        if num_convs == 0:
            self.convs = nn.Identity()
        else:
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
        if concat_input:
            self.conv_cat = ConvModule(
                self.in_channels + self.channels,
                self.channels,
                kernel_size,
                padding=kernel_size // 2,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                act_cfg=self.act_cfg)

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Features before the classifier, ``B x channels x H x W``."""
        x = self._transform_inputs(inputs)
        feat = self.convs(x)
        if self.concat_input:
            feat = self.conv_cat(torch.cat([x, feat], dim=1))
        return feat

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Selected ``B x C_in x H x W`` map -> ``B x K x H x W`` logits."""
        return self.cls_seg(self._forward_feature(inputs))
