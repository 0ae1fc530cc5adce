"""Swin Transformer backbone in the MMSegmentation checkpoint layout."""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_
from mmengine.runner.checkpoint import CheckpointLoader

from mmseg.registry import MODELS
from ..utils.ckpt_convert import is_official_swin, swin_official_to_mmseg
from ..utils.embed import PatchEmbed, PatchMerging
from ..utils.swin_block import SwinBlockSequence
from ..ops.token_layout import tokens_to_map


@MODELS.register_module()
class SwinTransformer(BaseModule):
    """Swin Transformer (Liu et al., 2021) returning four feature maps.

    Args:
        pretrain_img_size: image size of the pre-training, which sizes the
            absolute position embedding (only with ``use_abs_pos_embed``).
        in_channels: image channels.
        embed_dims: channels C of the first stage; stage i has ``C * 2^i``.
        patch_size: kernel of the patch-embedding convolution.
        window_size: attention window side.
        mlp_ratio: MLP width relative to the stage channels.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        strides: patch-embedding stride, then each patch merging's stride.
        out_indices: stages whose (normed) outputs are returned.
        qkv_bias, qk_scale: attention projection bias and scale override.
        patch_norm: LayerNorm after patch embedding.
        drop_rate: dropout after position embedding, projections and MLPs.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, rising linearly to this value.
        use_abs_pos_embed: add a learned absolute position embedding.
        act_cfg, norm_cfg: MLP activation and norms.
        with_cp: activation checkpointing in every block.
        frozen_stages: freeze patch embedding (>= 0) and the first stages.
        pretrained: path of converted ImageNet weights (deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``).
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 pretrain_img_size: int = 224,
                 in_channels: int = 3,
                 embed_dims: int = 96,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24),
                 strides: Sequence[int] = (4, 2, 2, 2),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 patch_norm: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('SwinTransformer: set either pretrained or '
                                 'init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        num_stages = len(depths)
        if len(num_heads) != num_stages or len(strides) != num_stages:
            raise ValueError(
                f'SwinTransformer: depths {tuple(depths)}, num_heads '
                f'{tuple(num_heads)} and strides {tuple(strides)} must give '
                f'one value per stage')
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=strides[0],
            padding='corner',
            norm_cfg=norm_cfg if patch_norm else None)
        if use_abs_pos_embed:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(
                torch.zeros(1, grid * grid, embed_dims))
        else:
            self.absolute_pos_embed = None
        self.drop_after_pos = nn.Dropout(drop_rate)

        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        channels = embed_dims
        for i, depth in enumerate(depths):
            downsample = None
            if i < num_stages - 1:
                downsample = PatchMerging(
                    in_channels=channels,
                    out_channels=2 * channels,
                    stride=strides[i + 1],
                    # normalised whatever patch_norm says, as in the
                    # official Swin whose checkpoints we load
                    norm_cfg=norm_cfg)
            first = sum(depths[:i])
            self.stages.append(
                SwinBlockSequence(
                    channels,
                    num_heads[i],
                    depth,
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=rates[first:first + depth],
                    downsample=downsample,
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                    with_cp=with_cp))
            if i in self.out_indices:
                self.add_module(f'norm{i}',
                                build_norm_layer(norm_cfg, channels)[1])
            if downsample is not None:
                channels *= 2
        self.num_features = [embed_dims * 2**i for i in range(num_stages)]

    def train(self, mode: bool = True) -> 'SwinTransformer':
        super().train(mode)
        self._freeze_stages()
        return self

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: List[nn.Module] = [self.patch_embed, self.drop_after_pos]
        if self.absolute_pos_embed is not None:
            self.absolute_pos_embed.requires_grad = False
        for i in range(self.frozen_stages):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        if self.init_cfg is None or self.init_cfg.get('type') != 'Pretrained':
            self._init_from_scratch()
            return
        self._load_pretrained(self.init_cfg['checkpoint'])

    def _init_from_scratch(self) -> None:
        if self.absolute_pos_embed is not None:
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                constant_init(module, 1.0, bias=0.)
            elif hasattr(module, 'relative_position_bias_table'):
                module.init_weights()

    def _load_pretrained(self, checkpoint: str) -> None:
        """Load ImageNet weights, adapting window size and layout."""
        from mmseg.engine.pretrained_weights import check_local_pretrained
        if '://' not in checkpoint:
            # say how to get the file rather than mmengine's bare "not found"
            check_local_pretrained(checkpoint)
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt.get('model', ckpt))
        if is_official_swin(state):
            state = swin_official_to_mmseg(state)
        state = {
            k[len('backbone.'):] if k.startswith('backbone.') else k: v
            for k, v in state.items()
        }
        own = self.state_dict()
        for key, value in list(state.items()):
            if key.endswith('relative_position_bias_table') and key in own \
                    and value.shape != own[key].shape:
                state[key] = _resize_bias_table(value, own[key].shape)
            elif key.endswith('relative_position_index'):
                del state[key]  # a buffer we build for our own window size
        if self.absolute_pos_embed is not None and \
                'absolute_pos_embed' in state:
            pos = state['absolute_pos_embed']
            if pos.dim() == 4:  # B x H x W x C in some releases
                state['absolute_pos_embed'] = pos.flatten(1, 2)
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith('position_index')]
        print_log(
            f'SwinTransformer: loaded {checkpoint}'
            f' (missing {len(missing)} keys, unexpected {len(unexpected)})',
            logger='current')

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``B x 3 x H x W`` -> maps ``B x C_i x H/s_i x W/s_i``, views of
        the stages' tokens (channels-last in memory)."""
        x, hw_shape = self.patch_embed(x)
        if self.absolute_pos_embed is not None:
            x = x + _resize_pos_embed(self.absolute_pos_embed, hw_shape)
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            out, out_hw, x, hw_shape = stage(x, hw_shape)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(out)
                outs.append(tokens_to_map(out, out_hw))
        return outs


def _resize_bias_table(table: torch.Tensor,
                       shape: torch.Size) -> torch.Tensor:
    """Bicubic resize of a ``(2w-1)^2 x heads`` table to another window."""
    src, dst = int(table.shape[0]**0.5), int(shape[0]**0.5)
    heads = table.shape[1]
    grid = table.t().reshape(1, heads, src, src)
    grid = F.interpolate(grid, size=(dst, dst), mode='bicubic')
    return grid.reshape(heads, dst * dst).t().contiguous()


def _resize_pos_embed(pos_embed: torch.Tensor, hw_shape) -> torch.Tensor:
    """``1 x G^2 x C`` absolute embedding resized to a ``H x W`` grid."""
    grid = int(pos_embed.shape[1]**0.5)
    if (grid, grid) == tuple(hw_shape):
        return pos_embed
    pos = pos_embed.transpose(1, 2).reshape(1, -1, grid, grid)
    pos = F.interpolate(pos, size=hw_shape, mode='bicubic')
    return pos.flatten(2).transpose(1, 2)
