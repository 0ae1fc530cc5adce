"""ResNet backbones (ResNet and the deep-stem ResNetV1c)."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.registry import MODELS
from .. import ops


class BasicBlock(BaseModule):
    """Two 3x3 convolutions with an identity or projection shortcut."""

    expansion = 1

    def __init__(self,
                 in_channels: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        del style  # one stride position only: a 3x3 conv carries it
        self.with_cp = with_cp
        self.conv1 = build_conv_layer(
            conv_cfg,
            in_channels,
            planes,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False)
        self.bn1 = build_norm_layer(norm_cfg, planes)[1]
        self.conv2 = build_conv_layer(
            conv_cfg, planes, planes, 3, padding=1, bias=False)
        self.bn2 = build_norm_layer(norm_cfg, planes)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = ops.recomputed(
            self._residual, x, state_of=self, enabled=self.with_cp)
        return self.relu(out)


class Bottleneck(BaseModule):
    """1x1 -> 3x3 -> 1x1 bottleneck, expansion 4.

    ``style='pytorch'`` puts the stride on the 3x3 convolution, ``'caffe'``
    on the first 1x1.
    """

    expansion = 4

    def __init__(self,
                 in_channels: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', "
                             f'got {style!r}')
        self.with_cp = with_cp
        conv1_stride, conv2_stride = (1, stride) if style == 'pytorch' \
            else (stride, 1)
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, planes, 1, stride=conv1_stride, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, planes)[1]
        self.conv2 = build_conv_layer(
            conv_cfg,
            planes,
            planes,
            3,
            stride=conv2_stride,
            padding=dilation,
            dilation=dilation,
            bias=False)
        self.bn2 = build_norm_layer(norm_cfg, planes)[1]
        self.conv3 = build_conv_layer(
            conv_cfg, planes, planes * self.expansion, 1, bias=False)
        self.bn3 = build_norm_layer(norm_cfg, planes * self.expansion)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = ops.recomputed(
            self._residual, x, state_of=self, enabled=self.with_cp)
        return self.relu(out)


def make_res_layer(block: type, in_channels: int, planes: int,
                   num_blocks: int, stride: int, dilation: int,
                   contract_dilation: bool, **block_kwargs) -> nn.Sequential:
    """A stage of ``num_blocks`` residual blocks; the first one changes
    resolution/width through a 1x1 projection shortcut."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            build_conv_layer(
                block_kwargs.get('conv_cfg'),
                in_channels,
                out_channels,
                1,
                stride=stride,
                bias=False),
            build_norm_layer(block_kwargs['norm_cfg'], out_channels)[1])
    # a dilated stage starts at half dilation to avoid gridding artefacts
    first_dilation = dilation // 2 if contract_dilation and dilation > 1 \
        else dilation
    layers = [
        block(in_channels, planes, stride, first_dilation, downsample,
              **block_kwargs)
    ]
    layers += [
        block(out_channels, planes, 1, dilation, **block_kwargs)
        for _ in range(1, num_blocks)
    ]
    return nn.Sequential(*layers)


@MODELS.register_module()
class ResNet(BaseModule):
    """ResNet (He et al., 2016) with the options of MMSegmentation.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: image channels.
        stem_channels: output channels of the stem.
        base_channels: width of the first stage (before expansion).
        num_stages: stages used, 1 to 4.
        strides: stride of the first block of each stage.
        dilations: dilation of each stage.
        out_indices: stages whose outputs are returned.
        style: 'pytorch' (stride on 3x3) or 'caffe' (stride on 1x1).
        deep_stem: three 3x3 convolutions instead of one 7x7 (V1c).
        contract_dilation: first block of a dilated stage uses half dilation.
        frozen_stages: freeze the stem (>= 0) and the first stages.
        conv_cfg, norm_cfg: convolution and norm layers.
        norm_eval: keep norm layers in eval mode while training.
        with_cp: recompute every block's activations in backward instead
            of keeping them (:func:`mmseg.models.ops.recomputed`: the
            batch-norm running statistics are updated once; the reference
            implementation keeps everything).
        recompute_stages: stages (0 = first) whose blocks are recomputed
            so, when ``with_cp`` is not set.
        zero_init_residual: zero the last norm of every block at init.
        pretrained: checkpoint (deprecated alias of a Pretrained init_cfg).
        init_cfg: mmengine initialisation config.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3))
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 contract_dilation: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 recompute_stages: Sequence[int] = (),
                 zero_init_residual: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid ResNet depth {depth}; choose from '
                           f'{sorted(self.arch_settings)}')
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('ResNet: set either pretrained or init_cfg, '
                                 'not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(
                    type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        if not 1 <= num_stages <= 4:
            raise ValueError(
                f'ResNet num_stages must be 1 to 4, got {num_stages}')
        if not len(strides) == len(dilations) == num_stages:
            raise ValueError(
                f'ResNet strides {tuple(strides)} and dilations '
                f'{tuple(dilations)} must give one value per stage '
                f'(num_stages={num_stages})')
        if max(out_indices) >= num_stages:
            raise ValueError(
                f'ResNet out_indices {tuple(out_indices)} must be stages 0 to '
                f'{num_stages - 1} (num_stages={num_stages})')
        if not set(recompute_stages) <= set(range(num_stages)):
            raise ValueError(
                f'ResNet recompute_stages {tuple(recompute_stages)} must be '
                f'stages 0 to {num_stages - 1} (num_stages={num_stages})')
        self.out_indices = tuple(out_indices)
        self.deep_stem = deep_stem
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual

        self._make_stem(in_channels, stem_channels, conv_cfg, norm_cfg)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        block, stage_blocks = self.arch_settings[depth]
        self.res_layers: List[str] = []
        channels = stem_channels
        for i in range(num_stages):
            planes = base_channels * 2**i
            layer = make_res_layer(
                block,
                channels,
                planes,
                stage_blocks[i],
                stride=strides[i],
                dilation=dilations[i],
                contract_dilation=contract_dilation,
                style=style,
                with_cp=with_cp or i in recompute_stages,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg)
            channels = planes * block.expansion
            name = f'layer{i + 1}'
            self.add_module(name, layer)
            self.res_layers.append(name)

    def _make_stem(self, in_channels: int, stem_channels: int,
                   conv_cfg: Optional[dict], norm_cfg: dict) -> None:
        if self.deep_stem:
            half = stem_channels // 2
            layers = []
            for c_in, c_out, stride in ((in_channels, half, 2),
                                        (half, half, 1),
                                        (half, stem_channels, 1)):
                layers += [
                    build_conv_layer(
                        conv_cfg,
                        c_in,
                        c_out,
                        3,
                        stride=stride,
                        padding=1,
                        bias=False),
                    build_norm_layer(norm_cfg, c_out)[1],
                    nn.ReLU(inplace=True)
                ]
            self.stem = nn.Sequential(*layers)
        else:
            self.conv1 = build_conv_layer(
                conv_cfg,
                in_channels,
                stem_channels,
                7,
                stride=2,
                padding=3,
                bias=False)
            self.norm1_name, norm1 = build_norm_layer(
                norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
            self.relu = nn.ReLU(inplace=True)

    def _stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deep_stem:
            return self.stem(x)
        return self.relu(getattr(self, self.norm1_name)(self.conv1(x)))

    def init_weights(self) -> None:
        super().init_weights()
        pretrained = isinstance(self.init_cfg, dict) and \
            self.init_cfg.get('type') == 'Pretrained'
        if self.zero_init_residual and not pretrained:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        stem = [self.stem] if self.deep_stem else \
            [self.conv1, getattr(self, self.norm1_name)]
        frozen = stem + [
            getattr(self, f'layer{i}')
            for i in range(1, self.frozen_stages + 1)
        ]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'ResNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``B x 3 x H x W`` -> maps at strides 4, 8, 16, 32 (by default),
        channels-last in memory when no gradient is recorded."""
        # Inference runs channels-last: oneDNN's convolutions are faster so
        # (ResNet-50 at 512 x 512 on 2 CPU threads: -16 % time) and the FPNT
        # neck reads such maps as tokens without copies. Training keeps the
        # default layout, whose float32 rounding is the published code's:
        # with batch-statistics BN the backbone's gradients amplify the
        # channels-last rounding differences to 2 % (SenFormerNWS-R50 at
        # 64 x 64; the float64 gradient is as far from either), against
        # 1e-6 in the default layout (tests/test_models/
        # test_training_parity.py).
        layout = torch.contiguous_format if torch.is_grad_enabled() \
            else torch.channels_last
        x = self.maxpool(
            self._stem_forward(x.contiguous(memory_format=layout)))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class ResNetV1c(ResNet):
    """ResNet with the deep 3x3 stem (``stem.0/1/3/4/6/7``) of
    "Bag of Tricks" (He et al., 2019), as used by SenFormer."""

    def __init__(self, **kwargs):
        super().__init__(deep_stem=True, **kwargs)
