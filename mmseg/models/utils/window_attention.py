"""Window multi-head self-attention of the Swin Transformer.

The single implementation used by the Swin backbone and the FPNT neck.
Attention runs through :func:`mmseg.models.ops.attention` (PyTorch's fused
kernel) with the relative position bias (and the shift mask) as an additive
float mask, so the fused kernels of the current device are used.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_

from .. import ops


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index into the ``(2w-1)^2`` bias table for every pair of window tokens.

    Returns:
        Tensor: ``w^2 x w^2`` int64, the standard Swin indexing.
    """
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(window_size), torch.arange(window_size),
            indexing='ij')).flatten(1)  # 2 x w^2
    relative = coords[:, :, None] - coords[:, None, :] + (window_size - 1)
    return relative[0] * (2 * window_size - 1) + relative[1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``B x H x W x C`` (H, W multiples of w) -> ``B x nW x w^2 x C``."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size,
               window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, -1, window_size**2, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int,
                   W: int) -> torch.Tensor:
    """``B x nW x w^2 x C`` -> ``B x H x W x C``; inverse of partition."""
    B, C = windows.shape[0], windows.shape[-1]
    x = windows.view(B, H // window_size, W // window_size, window_size,
                     window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)


def shifted_window_mask(height: int, width: int, window_size: int,
                        shift_size: int,
                        device: torch.device) -> torch.Tensor:
    """Additive mask hiding token pairs that the cyclic shift made adjacent.

    Built on the padded map, as the published models were trained.

    Returns:
        Tensor: ``nW x w^2 x w^2`` with 0 inside a region and -100 across.
    """
    region = torch.zeros(1, height, width, 1, device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift_size),
              slice(-shift_size, None))
    label = 0
    for h in bounds:
        for w in bounds:
            region[:, h, w, :] = label
            label += 1
    region = window_partition(region, window_size).squeeze(-1)[0]  # nW x N
    different = region.unsqueeze(1) != region.unsqueeze(2)
    return torch.zeros_like(region.unsqueeze(1).expand_as(different)) \
        .masked_fill(different, -100.0)


class WindowMSA(nn.Module):
    """Multi-head self-attention within windows, with relative position bias.

    Args:
        embed_dims: channels C.
        num_heads: attention heads; C must be divisible by it.
        window_size: side w of the square windows.
        qkv_bias: learn a bias for the q, k, v projection.
        qk_scale: override of the default ``head_dim ** -0.5``.
        attn_drop_rate: dropout on the attention weights.
        proj_drop_rate: dropout after the output projection.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = qk_scale or (embed_dims // num_heads)**-0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1)**2, num_heads))
        self.register_buffer('relative_position_index',
                             relative_position_index(window_size))
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop_rate = attn_drop_rate
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def init_weights(self) -> None:
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``heads x w^2 x w^2`` bias gathered from the table."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[
            self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self,
                windows: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            windows: ``B x nW x N x C`` tokens, N = w^2.
            mask: ``nW x N x N`` additive shift mask, or None.

        Returns:
            Tensor: ``B x nW x N x C``.
        """
        bias = self.relative_position_bias().to(windows.dtype)
        # windows attend independently: inference may take them in chunks
        return ops.over_chunks(
            lambda some: self._attend(windows[:, some], bias,
                                      None if mask is None else mask[some]),
            windows,
            num_items=windows.shape[1],
            tokens_per_item=windows.shape[2])

    def _attend(self, windows: torch.Tensor, bias: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        """:meth:`forward` with the ``heads x N x N`` position bias."""
        B, nW, N, C = windows.shape
        heads = self.num_heads
        qkv = self.qkv(windows).view(B, nW, N, 3, heads, C // heads)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5)  # 3 x B x nW x heads x N x d
        # the fused kernels take 4-D inputs whose mask broadcasts over the
        # leading dimension: fold windows into the batch when every window
        # shares the mask, into the heads when the shift mask differs
        if mask is None:
            q, k, v = qkv.reshape(3, B * nW, heads, N, -1).unbind(0)
            attn_mask = bias.unsqueeze(0)
        else:
            q, k, v = qkv.reshape(3, B, nW * heads, N, -1).unbind(0)
            attn_mask = (mask.to(qkv.dtype).unsqueeze(1) + bias).reshape(
                nW * heads, N, N)
        out = ops.attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            scale=self.scale,
            dropout_p=self.attn_drop_rate if self.training else 0.)
        out = out.view(B, nW, heads, N, -1).transpose(2, 3).reshape(
            B, nW, N, C)
        return self.proj_drop(self.proj(out))


class ShiftWindowMSA(nn.Module):
    """Window attention over a token map, with optional cyclic shift.

    The map is zero-padded bottom/right to a multiple of the window size,
    rolled by ``-shift_size`` (when shifting), attended window by window,
    rolled back and cropped. The key ``w_msa`` holds the attention weights.

    Args:
        embed_dims, num_heads, window_size, qkv_bias, qk_scale,
        attn_drop_rate, proj_drop_rate: see :class:`WindowMSA`.
        shift_size: cyclic shift, 0 for regular windows.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int,
                 shift_size: int = 0,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f'shift_size {shift_size} must be in [0, '
                             f'window_size={window_size})')
        self.window_size = window_size
        self.shift_size = shift_size
        self.w_msa = WindowMSA(embed_dims, num_heads, window_size, qkv_bias,
                               qk_scale, attn_drop_rate, proj_drop_rate)
        self._mask_cache: Dict[Tuple, torch.Tensor] = {}

    def _shift_mask(self, height: int, width: int,
                    device: torch.device) -> torch.Tensor:
        key = (height, width, device)
        if key not in self._mask_cache:
            self._mask_cache[key] = shifted_window_mask(
                height, width, self.window_size, self.shift_size, device)
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int,
                                                       int]) -> torch.Tensor:
        """
        Args:
            x: ``B x HW x C`` tokens.
            hw_shape: (H, W) of the token map.

        Returns:
            Tensor: ``B x HW x C``.
        """
        B, L, C = x.shape
        H, W = hw_shape
        if L != H * W:
            raise ValueError(f'{L} tokens do not form a {H}x{W} map')
        w = self.window_size
        x = x.view(B, H, W, C)
        pad_b, pad_r = (-H) % w, (-W) % w
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r

        mask = None
        if self.shift_size:
            x = torch.roll(x, (-self.shift_size, -self.shift_size), (1, 2))
            mask = self._shift_mask(Hp, Wp, x.device)

        x = self.w_msa(window_partition(x, w), mask)
        x = window_reverse(x, w, Hp, Wp)

        if self.shift_size:
            x = torch.roll(x, (self.shift_size, self.shift_size), (1, 2))
        if pad_b or pad_r:
            x = x[:, :H, :W, :]
        return x.reshape(B, L, C)
