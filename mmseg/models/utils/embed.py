"""Patch embedding and patch merging of the Swin Transformer."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad a ``B x C x H x W`` map bottom/right to multiples of
    ``multiple``."""
    pad_b, pad_r = (-x.shape[2]) % multiple, (-x.shape[3]) % multiple
    if pad_b or pad_r:
        x = F.pad(x, (0, pad_r, 0, pad_b))
    return x


class PatchEmbed(nn.Module):
    """Image to patch tokens with a strided convolution.

    Args:
        in_channels: image channels.
        embed_dims: token channels C.
        patch_size: convolution kernel.
        stride: convolution stride; the input is padded to a multiple of it.
        with_norm: LayerNorm on the tokens (``patch_norm`` of Swin configs).
        norm_cfg: the norm's config.
    """

    def __init__(self,
                 in_channels: int = 3,
                 embed_dims: int = 96,
                 patch_size: int = 4,
                 stride: int = 4,
                 with_norm: bool = True,
                 norm_cfg: dict = dict(type='LN')):
        super().__init__()
        self.stride = stride
        self.projection = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size, stride=stride)
        self.norm = build_norm_layer(norm_cfg,
                                     embed_dims)[1] if with_norm else None

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``B x 3 x H x W`` -> ``B x HW' x C`` tokens and ``(H', W')``."""
        x = self.projection(pad_to_multiple(x, self.stride))
        hw_shape = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x, hw_shape


class PatchMerging(nn.Module):
    """Merge each ``s x s`` neighbourhood of tokens into one.

    The map is zero-padded bottom/right to a multiple of ``s`` and unfolded in
    ``nn.Unfold`` order (channel-major: ``c * s*s + dy * s + dx``), which is
    the feature order of the published checkpoints.

    Args:
        in_channels: C of the input tokens.
        out_channels: C of the merged tokens.
        stride: neighbourhood side s (2 in Swin).
        norm_cfg: the norm applied to the ``s*s*C`` merged features.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 2,
                 norm_cfg: dict = dict(type='LN')):
        super().__init__()
        self.stride = stride
        merged = stride * stride * in_channels
        self.norm = build_norm_layer(norm_cfg, merged)[1]
        self.reduction = nn.Linear(merged, out_channels, bias=False)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]):
        """``B x HW x C`` -> ``B x (H/s)(W/s) x C'`` and the new ``(H, W)``."""
        B, L, C = x.shape
        H, W = hw_shape
        x = x.transpose(1, 2).reshape(B, C, H, W)
        x = pad_to_multiple(x, self.stride)
        out_hw = (x.shape[2] // self.stride, x.shape[3] // self.stride)
        x = F.unfold(x, self.stride, stride=self.stride).transpose(1, 2)
        return self.reduction(self.norm(x)), out_hw
