"""FPNT: a feature pyramid whose merged maps pass through a Swin block."""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from mmseg.registry import MODELS
from ..utils.swin_block import SwinBlockSequence
from .. import ops
from ..ops.token_layout import map_to_tokens, tokens_to_map


class TokenSwinLayer(nn.Module):
    """Runs Swin blocks on a ``B x C x H x W`` map through its tokens."""

    def __init__(self, **block_kwargs):
        super().__init__()
        self.swin_blocks = SwinBlockSequence(**block_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw_shape = x.shape[2:]
        tokens = self.swin_blocks(map_to_tokens(x), hw_shape)[0]
        return tokens_to_map(tokens, hw_shape)


@MODELS.register_module()
class FPNT(BaseModule):
    """Feature pyramid network with transformer (Swin) smoothing.

    Each backbone map gets a 1x1 lateral projection; from the coarsest level
    down, each map is upsampled (nearest) and added to the next finer one;
    every summed map then goes through ``depth_swin`` Swin blocks.

    The maps stay channels-last in memory from the lateral projections to
    the outputs: the Swin blocks and the SenFormer learners read them as
    tokens, which are then views instead of transposed copies.

    Args:
        in_channels: channels of the backbone maps, finest first.
        out_channels: channels of every output map.
        num_outs: number of output maps (one per input level).
        depth_swin: Swin blocks per level.
        num_heads: attention heads of the Swin blocks.
        window_size: attention window side.
        mlp_ratio: MLP width relative to ``out_channels``.
        qkv_bias, qk_scale: attention projection bias and scale override.
        drop_rate: dropout after projections and in MLPs.
        attn_drop_rate: dropout on attention weights.
        recompute_levels: levels (0 = finest) whose Swin blocks recompute
            their attention branch in backward instead of keeping its
            activations (:func:`mmseg.models.ops.recomputed`; the
            reference implementation keeps everything). At stride 4 they
            are the neck's largest: about 0.5 GB of SenFormerNWS-R50's
            training memory at 512 x 512, batch 2, for about 70 GFLOP of
            projections redone (3 % of the step's).
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 depth_swin: int = 1,
                 num_heads: int = 8,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 recompute_levels: Sequence[int] = (0, ),
                 init_cfg: Optional[dict] = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        if num_outs != len(in_channels):
            raise ValueError(f'FPNT makes one output per input level: '
                             f'num_outs={num_outs} but {len(in_channels)} '
                             f'in_channels were given')
        if not set(recompute_levels) <= set(range(num_outs)):
            raise ValueError(f'FPNT recompute_levels '
                             f'{tuple(recompute_levels)} must be levels 0 '
                             f'to {num_outs - 1}')
        # ConvModule keeps the published keys (lateral_convs.i.conv.*);
        # forward applies its weights through ops.pointwise_conv
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, act_cfg=None)
            for c in in_channels)
        self.fpn_swins = nn.ModuleList(
            TokenSwinLayer(
                embed_dims=out_channels,
                num_heads=num_heads,
                depth=depth_swin,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                recompute_attention=level in recompute_levels)
            for level in range(num_outs))

    def forward(self, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Maps ``B x C_i x H_i x W_i`` -> maps ``B x out x H_i x W_i``
        (channels-last in memory)."""
        if len(inputs) != len(self.lateral_convs):
            raise ValueError(f'FPNT expects {len(self.lateral_convs)} input '
                             f'maps, got {len(inputs)}')
        laterals = [
            ops.pointwise_conv(x, lateral.conv.weight, lateral.conv.bias)
            for lateral, x in zip(self.lateral_convs, inputs)
        ]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode='nearest')
        return [swin(x) for swin, x in zip(self.fpn_swins, laterals)]
