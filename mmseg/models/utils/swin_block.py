"""Swin Transformer blocks, shared by the Swin backbone and the FPNT neck."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath

from .. import ops
from .window_attention import ShiftWindowMSA


class SwinFFN(nn.Module):
    """Two-layer MLP of a Swin block, ``C -> ratio*C -> C``.

    The nesting of ``layers`` reproduces the checkpoint keys
    ``ffn.layers.0.0`` (expansion) and ``ffn.layers.1`` (projection).
    """

    def __init__(self,
                 embed_dims: int,
                 hidden_dims: int,
                 act_cfg: dict = dict(type='GELU'),
                 drop_rate: float = 0.):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(
                nn.Linear(embed_dims, hidden_dims),
                build_activation_layer(act_cfg), nn.Dropout(drop_rate)),
            nn.Linear(hidden_dims, embed_dims), nn.Dropout(drop_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``... x C`` -> ``... x C``."""
        expand, activation, dropout = self.layers[0]
        project = self.layers[1]
        if isinstance(activation, nn.GELU) and activation.approximate == \
                'none' and (dropout.p == 0 or not self.training):
            out = ops.mlp(x, expand.weight, expand.bias, project.weight,
                          project.bias)
        else:
            out = project(dropout(activation(expand(x))))
        return self.layers[2](out)


class SwinBlock(nn.Module):
    """Pre-norm Swin block: (shifted) window attention, then MLP.

    Args:
        embed_dims: channels C.
        num_heads: attention heads.
        window_size: window side w.
        shift: roll the map by ``w // 2`` before attention.
        mlp_ratio: hidden width of the MLP relative to C.
        qkv_bias, qk_scale: see :class:`WindowMSA`.
        drop_rate: dropout after the attention projection and in the MLP.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth of both residual branches.
        act_cfg, norm_cfg: MLP activation and the norms' config.
        with_cp: recompute the block's activations in backward instead of
            keeping them (:func:`mmseg.models.ops.recomputed`).
        recompute_attention: recompute those of the attention branch only
            (the MLP's hidden activations are recomputed by
            :func:`mmseg.models.ops.mlp` anyway): a third of the work of
            ``with_cp`` for most of its memory.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int = 7,
                 shift: bool = False,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 recompute_attention: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.recompute_attention = recompute_attention
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ShiftWindowMSA(
            embed_dims,
            num_heads,
            window_size,
            shift_size=window_size // 2 if shift else 0,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=drop_rate)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = SwinFFN(embed_dims, int(embed_dims * mlp_ratio), act_cfg,
                           drop_rate)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _attention_residual(self, x: torch.Tensor,
                            hw_shape: Tuple[int, int]) -> torch.Tensor:
        return x + self.drop_path(self.attn(self.norm1(x), hw_shape))

    def _forward(self, x: torch.Tensor, hw_shape: Tuple[int,
                                                        int]) -> torch.Tensor:
        x = ops.recomputed(
            self._attention_residual,
            x,
            hw_shape,
            enabled=self.recompute_attention)
        return x + self.drop_path(self.ffn(self.norm2(x)))

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int,
                                                       int]) -> torch.Tensor:
        """``B x HW x C`` -> ``B x HW x C``."""
        return ops.recomputed(
            self._forward, x, hw_shape, enabled=self.with_cp)


class SwinBlockSequence(nn.Module):
    """``depth`` Swin blocks, odd-numbered ones shifted, then an optional
    downsampling layer.

    Args:
        depth: number of blocks.
        drop_path_rate: one rate for all blocks or one per block.
        downsample: module applied after the blocks (patch merging), or None.
        Other arguments: see :class:`SwinBlock`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 depth: int,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: Union[float, Sequence[float]] = 0.,
                 downsample: Optional[nn.Module] = None,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 recompute_attention: bool = False):
        super().__init__()
        if isinstance(drop_path_rate, (int, float)):
            drop_path_rate = [float(drop_path_rate)] * depth
        if len(drop_path_rate) != depth:
            raise ValueError(f'drop_path_rate gives {len(drop_path_rate)} '
                             f'rates for {depth} blocks')
        self.blocks = nn.ModuleList(
            SwinBlock(
                embed_dims,
                num_heads,
                window_size,
                shift=i % 2 == 1,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate[i],
                act_cfg=act_cfg,
                norm_cfg=norm_cfg,
                with_cp=with_cp,
                recompute_attention=recompute_attention) for i in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]):
        """
        Args:
            x: ``B x HW x C``.

        Returns:
            tuple: the blocks' output ``B x HW x C`` with its ``(H, W)``,
            then the downsampled tokens with their shape (the same tensor and
            shape when there is no downsampling).
        """
        for block in self.blocks:
            x = block(x, hw_shape)
        if self.downsample is None:
            return x, hw_shape, x, hw_shape
        down, down_hw = self.downsample(x, hw_shape)
        return x, hw_shape, down, down_hw
