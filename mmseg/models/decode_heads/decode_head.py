"""Base class of decode heads."""
import warnings
from abc import ABCMeta, abstractmethod
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmseg.registry import MODELS
from mmseg.structures import SegLogits
from mmseg.utils import ConfigType, MultiConfig, SampleList
from ..losses import accuracy

_INPUT_TRANSFORMS = (None, 'resize_concat', 'multiple_select')


def input_size_from_metas(batch_img_metas: List[dict]) -> Tuple[int, int]:
    """The network input size ``(H, W)`` that predictions are resized to,
    read from the first image meta as MMSegmentation 1.x reads it: a
    ``torch.Size`` ``img_shape`` (a sliding-window crop), else this
    project's ``batch_input_shape``, else ``pad_shape``, else
    ``img_shape``.

    Raises:
        ValueError: none of these keys is present (the message names them).
    """
    meta = batch_img_metas[0]
    if isinstance(meta.get('img_shape'), torch.Size):
        return tuple(meta['img_shape'])
    for key in ('batch_input_shape', 'pad_shape', 'img_shape'):
        if meta.get(key) is not None:
            return tuple(meta[key][:2])
    raise ValueError('image metas need the network input size as '
                   "'pad_shape' or 'img_shape' (or 'batch_input_shape'); "
                   f'got only {sorted(meta)}')


class BaseDecodeHead(BaseModule, metaclass=ABCMeta):
    """Decode head: selects backbone/neck levels and predicts class logits.

    Arguments and behaviour as MMSegmentation 1.x's ``BaseDecodeHead``;
    configuration errors raise ``ValueError``/``TypeError`` naming the
    argument (MMSegmentation asserts).

    Args:
        in_channels: channels of the selected input(s).
        channels: channels before the 1x1 classifier ``conv_seg``.
        num_classes: number of classes K.
        out_channels: channels of ``conv_seg``: ``num_classes``, or 1 for
            binary segmentation (``num_classes=2``, thresholded).
        threshold: probability above which a binary (``out_channels=1``)
            prediction is the foreground; 0.3 when not given.
        dropout_ratio: dropout before ``conv_seg``.
        conv_cfg, norm_cfg, act_cfg: layers of subclasses' ConvModules.
        in_index: the input level, or a list of levels.
        input_transform: None (one level; a list of levels in ``in_index``
            is passed as a list, as SenFormer's configs expect),
            ``'resize_concat'`` (the levels resized to the first one's size
            and concatenated; ``in_channels`` becomes their sum) or
            ``'multiple_select'`` (the levels as a list).
        loss_decode: a loss config, or a list of them whose values are
            added under their ``loss_name``.
        ignore_index: label ignored by losses and accuracy.
        sampler: unsupported (MMSegmentation's OHEM pixel sampler); must be
            None.
        align_corners: of every bilinear resize.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 channels: int,
                 *,
                 num_classes: int,
                 out_channels: Optional[int] = None,
                 threshold: Optional[float] = None,
                 dropout_ratio: float = 0.1,
                 conv_cfg: Optional[ConfigType] = None,
                 norm_cfg: Optional[ConfigType] = None,
                 act_cfg: ConfigType = dict(type='ReLU'),
                 in_index: Union[int, Sequence[int]] = -1,
                 input_transform: Optional[str] = None,
                 loss_decode: MultiConfig = dict(
                     type='CrossEntropyLoss', loss_weight=1.0),
                 ignore_index: int = 255,
                 sampler: Optional[ConfigType] = None,
                 align_corners: bool = False,
                 init_cfg: Optional[ConfigType] = dict(
                     type='Normal', std=0.01, override=dict(name='conv_seg'))):
        super().__init__(init_cfg)
        self._init_inputs(in_channels, in_index, input_transform)
        self.channels = channels
        self.num_classes = num_classes
        if out_channels is None:
            out_channels = num_classes
        if out_channels != num_classes and not (out_channels == 1
                                                and num_classes == 2):
            raise ValueError(
                f'out_channels ({out_channels}) must equal num_classes '
                f'({num_classes}), or be 1 for binary segmentation '
                '(num_classes=2)')
        if out_channels == 1 and threshold is None:
            threshold = 0.3
            warnings.warn('threshold is not set for binary segmentation '
                          '(out_channels=1); using 0.3')
        self.out_channels = out_channels
        self.threshold = threshold
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        if sampler is not None:
            raise ValueError('BaseDecodeHead: sampler (OHEM pixel sampling) '
                             'is not supported; remove it from the config')
        self.sampler = None
        self.loss_decode = _build_losses(loss_decode)
        self.conv_seg = nn.Conv2d(channels, out_channels, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) \
            if dropout_ratio > 0 else None

    def _init_inputs(self, in_channels, in_index, input_transform) -> None:
        if input_transform not in _INPUT_TRANSFORMS:
            raise ValueError(f'input_transform must be one of '
                             f'{_INPUT_TRANSFORMS}, got {input_transform!r}')
        several = isinstance(in_index, (list, tuple))
        if input_transform is not None and not (
                several and isinstance(in_channels, (list, tuple))):
            raise TypeError(f'input_transform={input_transform!r} needs '
                            'in_channels and in_index to be lists, got '
                            f'{in_channels!r} and {in_index!r}')
        if several != isinstance(in_channels, (list, tuple)):
            raise TypeError('in_index and in_channels must both be lists or '
                            f'both be integers, got {in_index!r} and '
                            f'{in_channels!r}')
        if several and len(in_index) != len(in_channels):
            raise ValueError(f'in_index {in_index} and in_channels '
                             f'{in_channels} differ in length')
        self.input_transform = input_transform
        self.in_index = in_index
        self.in_channels = sum(in_channels) \
            if input_transform == 'resize_concat' else in_channels

    def _transform_inputs(self, inputs: Sequence[torch.Tensor]):
        """The selected level, or list of levels (concatenated at the first
        one's size for ``'resize_concat'``)."""
        if not isinstance(self.in_index, (list, tuple)):
            return inputs[self.in_index]
        selected = [inputs[i] for i in self.in_index]
        if self.input_transform == 'resize_concat':
            size = selected[0].shape[2:]
            return torch.cat([self.resize(x, size) for x in selected], dim=1)
        return selected

    # the name this project's heads used before input_transform existed
    _select_inputs = _transform_inputs

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """``B x channels x H x W`` -> ``B x out_channels x H x W``."""
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

    def predict_with_extras(self, inputs: Sequence[torch.Tensor],
                            batch_img_metas: List[dict],
                            test_cfg: ConfigType) -> SegLogits:
        """:meth:`predict` and the extra maps that ``test_cfg`` asks for,
        at the network input size.

        A head with extra maps (SenFormer's learners) overrides this; the
        base head has none and refuses a ``test_cfg.return_*`` switch
        asking for some.
        """
        asked = [key for key, value in (test_cfg or {}).items()
                 if key.startswith('return_') and value]
        if asked:
            raise ValueError(
                f'test_cfg.{asked[0]} asks for extra maps that '
                f'{type(self).__name__} does not predict')
        return SegLogits(self.predict(inputs, batch_img_metas, test_cfg))

    @staticmethod
    def stack_labels(batch_data_samples: SampleList) -> torch.Tensor:
        """``B x H x W`` int64 labels of a batch."""
        return torch.stack([
            sample.gt_sem_seg.data.squeeze(0).long()
            for sample in batch_data_samples
        ])

    @property
    def losses_decode(self) -> List[nn.Module]:
        """The loss modules, a list even for a single loss config."""
        if isinstance(self.loss_decode, nn.ModuleList):
            return list(self.loss_decode)
        return [self.loss_decode]

    def loss_by_feat(self, seg_logits: torch.Tensor,
                     batch_data_samples: SampleList) -> Dict[str, torch.Tensor]:
        """Losses (summed per ``loss_name``) and pixel accuracy of
        ``B x K x h x w`` logits, upsampled to the label size inside them."""
        label = self.stack_labels(batch_data_samples)
        losses: Dict[str, torch.Tensor] = {}
        for loss_decode in self.losses_decode:
            value = loss_decode(
                seg_logits,
                label,
                ignore_index=self.ignore_index,
                align_corners=self.align_corners)
            name = loss_decode.loss_name
            losses[name] = losses[name] + value if name in losses else value
        losses['acc_seg'] = accuracy(
            seg_logits,
            label,
            ignore_index=self.ignore_index,
            align_corners=self.align_corners)
        return losses

    def predict_by_feat(self, seg_logits: torch.Tensor,
                        batch_img_metas: List[dict]) -> torch.Tensor:
        """``seg_logits`` resized to the network input size (see
        :func:`input_size_from_metas`)."""
        return self.resize(seg_logits, input_size_from_metas(batch_img_metas))


def _build_losses(loss_decode: MultiConfig) -> nn.Module:
    """One loss module for a config, a ModuleList for a list of them."""
    if isinstance(loss_decode, dict):
        return MODELS.build(loss_decode)
    if isinstance(loss_decode, (list, tuple)) and loss_decode and all(
            isinstance(cfg, dict) for cfg in loss_decode):
        return nn.ModuleList(MODELS.build(cfg) for cfg in loss_decode)
    raise TypeError('loss_decode must be a loss config (dict) or a list of '
                    f'them, got {loss_decode!r}')
