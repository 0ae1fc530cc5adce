"""Patch embedding and patch merging of the Swin Transformer, with
MMSegmentation 1.x's arguments (and the same state-dict keys)."""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple

IntOrPair = Union[int, Tuple[int, int]]
_ADAPTIVE_PADDINGS = ('corner', 'same')


class AdaptivePadding(nn.Module):
    """Zero-pad a map so that a convolution (or unfold) of ``kernel_size``,
    ``stride`` and ``dilation`` covers every pixel: the output has
    ``ceil(size / stride)`` positions per side.

    Args:
        padding: ``'corner'`` pads bottom/right, ``'same'`` splits the
            padding between both sides (the extra pixel bottom/right).
    """

    def __init__(self,
                 kernel_size: IntOrPair = 1,
                 stride: IntOrPair = 1,
                 dilation: IntOrPair = 1,
                 padding: str = 'corner'):
        super().__init__()
        if padding not in _ADAPTIVE_PADDINGS:
            raise ValueError(f'AdaptivePadding: padding must be one of '
                             f'{_ADAPTIVE_PADDINGS}, got {padding!r}')
        self.padding = padding
        self.kernel_size = to_2tuple(kernel_size)
        self.stride = to_2tuple(stride)
        self.dilation = to_2tuple(dilation)

    def get_pad_shape(self, input_shape: Sequence[int]) -> Tuple[int, int]:
        """Rows and columns of padding for an ``(H, W)`` input."""
        pads = []
        for size, kernel, stride, dilation in zip(input_shape,
                                                  self.kernel_size,
                                                  self.stride, self.dilation):
            covered = (math.ceil(size / stride) - 1) * stride + \
                (kernel - 1) * dilation + 1
            pads.append(max(covered - size, 0))
        return pads[0], pads[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = self.get_pad_shape(x.shape[-2:])
        if not (pad_h or pad_w):
            return x
        if self.padding == 'corner':
            return F.pad(x, (0, pad_w, 0, pad_h))
        return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2,
                         pad_h - pad_h // 2))


def _conv_output_size(size: int, padding: int, dilation: int, kernel: int,
                      stride: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _sliding_window(kernel_size, stride, dilation, padding):
    """Pairs of a patch layer's kernel size, stride, dilation and padding;
    a padding given as a string (``'corner'``, ``'same'``) becomes 0 plus an
    :class:`AdaptivePadding`, else None."""
    kernel_size, stride, dilation = map(to_2tuple,
                                        (kernel_size, stride, dilation))
    adaptive = None
    if isinstance(padding, str):
        adaptive = AdaptivePadding(kernel_size, stride, dilation, padding)
        padding = 0
    return kernel_size, stride, dilation, to_2tuple(padding), adaptive


class PatchEmbed(BaseModule):
    """Image to patch tokens with a (strided) convolution.

    Args:
        in_channels: image channels.
        embed_dims: token channels C.
        conv_type: registered convolution type.
        kernel_size: convolution kernel (the patch size).
        stride: convolution stride; None means ``kernel_size``.
        padding: an int or pair, or ``'corner'``/``'same'`` for adaptive
            padding (every pixel covered, see :class:`AdaptivePadding`).
        dilation: convolution dilation.
        bias: convolution bias.
        norm_cfg: norm of the tokens, or None (Swin's ``patch_norm=False``).
        input_size: when given, ``init_out_size`` is the token grid of an
            input of this size.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int = 3,
                 embed_dims: int = 768,
                 conv_type: str = 'Conv2d',
                 kernel_size: IntOrPair = 16,
                 stride: Optional[IntOrPair] = None,
                 padding: Union[IntOrPair, str] = 'corner',
                 dilation: IntOrPair = 1,
                 bias: bool = True,
                 norm_cfg: Optional[dict] = None,
                 input_size: Optional[IntOrPair] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        kernel_size, stride, dilation, padding, self.adap_padding = \
            _sliding_window(kernel_size,
                            kernel_size if stride is None else stride,
                            dilation, padding)
        self.projection = build_conv_layer(
            dict(type=conv_type),
            in_channels=in_channels,
            out_channels=embed_dims,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1] \
            if norm_cfg is not None else None
        if input_size:
            input_size = to_2tuple(input_size)
            self.init_input_size = input_size
            if self.adap_padding is not None:
                pad_h, pad_w = self.adap_padding.get_pad_shape(input_size)
                input_size = (input_size[0] + pad_h, input_size[1] + pad_w)
            self.init_out_size = tuple(
                _conv_output_size(input_size[i], padding[i], dilation[i],
                                  kernel_size[i], stride[i]) for i in (0, 1))
        else:
            self.init_input_size = None
            self.init_out_size = None

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``B x C_in x H x W`` -> ``B x H'W' x C`` tokens and ``(H', W')``."""
        if self.adap_padding is not None:
            x = self.adap_padding(x)
        x = self.projection(x)
        out_size = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x, out_size


class PatchMerging(BaseModule):
    """Merge each ``kernel_size`` neighbourhood of tokens into one.

    The neighbourhoods are taken by ``nn.Unfold`` (features in channel-major
    order: ``c * kh*kw + dy * kw + dx``, the order of the published
    checkpoints), normalised and projected linearly.

    Args:
        in_channels: C of the input tokens.
        out_channels: C of the merged tokens.
        kernel_size: neighbourhood size (2 in Swin).
        stride: step between neighbourhoods; None means ``kernel_size``.
        padding: an int or pair, or ``'corner'``/``'same'`` for adaptive
            padding (the map padded so every token is merged).
        dilation: of the neighbourhood.
        bias: of the projection.
        norm_cfg: the norm of the ``kh*kw*C`` merged features, or None.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntOrPair = 2,
                 stride: Optional[IntOrPair] = None,
                 padding: Union[IntOrPair, str] = 'corner',
                 dilation: IntOrPair = 1,
                 bias: bool = False,
                 norm_cfg: Optional[dict] = dict(type='LN'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        kernel_size, stride, dilation, padding, self.adap_padding = \
            _sliding_window(kernel_size, stride or kernel_size, dilation,
                            padding)
        self.sampler = nn.Unfold(
            kernel_size=kernel_size,
            dilation=dilation,
            padding=padding,
            stride=stride)
        merged = kernel_size[0] * kernel_size[1] * in_channels
        self.norm = build_norm_layer(norm_cfg, merged)[1] \
            if norm_cfg is not None else None
        self.reduction = nn.Linear(merged, out_channels, bias=bias)

    def forward(self, x: torch.Tensor, input_size: Tuple[int, int]):
        """``B x HW x C`` tokens of an ``(H, W)`` grid -> merged tokens
        ``B x H'W' x C'`` and ``(H', W')``."""
        B, L, C = x.shape
        H, W = input_size
        if L != H * W:
            raise ValueError(f'PatchMerging: {L} tokens for an input_size '
                             f'of {H} x {W}')
        x = x.transpose(1, 2).reshape(B, C, H, W)
        if self.adap_padding is not None:
            x = self.adap_padding(x)
        out_size = tuple(
            _conv_output_size(x.shape[2 + i], self.sampler.padding[i],
                              self.sampler.dilation[i],
                              self.sampler.kernel_size[i],
                              self.sampler.stride[i]) for i in (0, 1))
        x = self.sampler(x).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return self.reduction(x), out_size
