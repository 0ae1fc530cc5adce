"""Batching, normalisation and padding of segmentation inputs."""
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmengine.structures import PixelData

from mmseg.registry import MODELS
from mmseg.utils import ConfigType

_TEST_CFG_KEYS = ('size', 'size_divisor')


@MODELS.register_module()
class SegDataPreProcessor(BaseDataPreprocessor):
    """Convert channels, normalise, pad and stack a batch.

    Arguments and defaults as MMSegmentation 1.x's ``SegDataPreProcessor``
    (no normalisation, no channel conversion unless asked); configuration
    errors raise ``ValueError`` naming the argument.

    Images are padded bottom/right with ``pad_val`` (labels with
    ``seg_pad_val``) to the largest image of the batch, in training at
    least to ``size``, then rounded up to a multiple of ``size_divisor``.
    At test time ``test_cfg`` (``size`` and/or ``size_divisor``) sets the
    padding instead, when given. Each sample's metainfo records
    ``batch_input_shape``, ``pad_shape`` and ``padding_size`` (left, right,
    top, bottom), and, at test time with ``test_cfg``,
    ``img_padding_size``, so that predictions can be cropped back.

    Args:
        mean, std: per-channel statistics (both or neither), in the channel
            order after conversion; None skips normalisation.
        bgr_to_rgb, rgb_to_bgr: swap the channels of 3-channel images
            before normalising (at most one of them).
        pad_val: image padding value (applied after normalisation).
        seg_pad_val: label padding value (the ignore index).
        size: ``(H, W)`` training input size (the crop size).
        size_divisor: pad sizes up to a multiple of this, when given.
        batch_augments: callables (or configs of registered ones) applied
            in training to ``(inputs, data_samples)`` after padding, each
            returning the pair.
        test_cfg: ``dict(size=..., size_divisor=...)`` padding at test time.
    """

    def __init__(self,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 size: Optional[Tuple[int, int]] = None,
                 size_divisor: Optional[int] = None,
                 pad_val: float = 0,
                 seg_pad_val: int = 255,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 batch_augments: Optional[Sequence[Union[Callable,
                                                         ConfigType]]] = None,
                 test_cfg: Optional[ConfigType] = None):
        super().__init__()
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError('SegDataPreProcessor: bgr_to_rgb and rgb_to_bgr '
                             'cannot both be True')
        if (mean is None) != (std is None):
            raise ValueError('SegDataPreProcessor: give both mean and std to '
                             f'normalise, or neither (got mean={mean}, '
                             f'std={std})')
        self._enable_normalize = mean is not None
        if self._enable_normalize:
            self.register_buffer(
                'mean',
                torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), False)
            self.register_buffer(
                'std',
                torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), False)
        self.bgr_to_rgb = bgr_to_rgb
        self.rgb_to_bgr = rgb_to_bgr
        self.channel_conversion = bgr_to_rgb or rgb_to_bgr
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor
        self.batch_augments = None if batch_augments is None else [
            MODELS.build(aug) if isinstance(aug, dict) else aug
            for aug in batch_augments
        ]
        if test_cfg is not None:
            unknown = set(test_cfg) - set(_TEST_CFG_KEYS)
            if unknown:
                raise ValueError(
                    f'SegDataPreProcessor: test_cfg has unknown key(s) '
                    f'{sorted(unknown)}; it takes {list(_TEST_CFG_KEYS)}')
        self.test_cfg = test_cfg

    @staticmethod
    def _padded_size(shapes: Sequence[Tuple[int, int]],
                     size: Optional[Sequence[int]],
                     size_divisor: Optional[int]) -> Tuple[int, int]:
        height = max(h for h, _ in shapes)
        width = max(w for _, w in shapes)
        if size is not None:
            height, width = max(height, size[0]), max(width, size[1])
        if size_divisor:
            d = size_divisor
            height, width = -(-height // d) * d, -(-width // d) * d
        return height, width

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        """``data['inputs']``: list of ``C x H x W`` tensors (or an already
        stacked batch); returns a float ``B x C x H x W`` batch."""
        data = self.cast_data(data)
        inputs = data['inputs']
        samples = data.get('data_samples')
        if self.channel_conversion and inputs[0].size(0) == 3:
            inputs = [img[[2, 1, 0], ...] for img in inputs]
        inputs = [img.float() for img in inputs]
        if self._enable_normalize:
            inputs = [(img - self.mean) / self.std for img in inputs]
        shapes = [tuple(img.shape[1:]) for img in inputs]
        test_padding = not training and self.test_cfg is not None
        if training:
            height, width = self._padded_size(shapes, self.size,
                                              self.size_divisor)
        elif test_padding:
            height, width = self._padded_size(
                shapes, self.test_cfg.get('size'),
                self.test_cfg.get('size_divisor'))
        else:
            height, width = self._padded_size(shapes, None, self.size_divisor)

        padded = []
        for i, img in enumerate(inputs):
            pad_h, pad_w = height - img.shape[1], width - img.shape[2]
            padded.append(
                F.pad(img, (0, pad_w, 0, pad_h), value=self.pad_val))
            if samples is None:
                continue
            sample = samples[i]
            # evaluation compares with the label at its original size
            if training and 'gt_sem_seg' in sample:
                label = F.pad(
                    sample.gt_sem_seg.data, (0, pad_w, 0, pad_h),
                    value=self.seg_pad_val)
                sample.gt_sem_seg = PixelData(data=label)
            padding = (0, pad_w, 0, pad_h)
            sample.set_metainfo(
                dict(
                    batch_input_shape=(height, width),
                    pad_shape=(height, width),
                    padding_size=padding))
            if test_padding:
                sample.set_metainfo(dict(img_padding_size=padding))
        inputs = torch.stack(padded)
        if training and self.batch_augments is not None:
            for augment in self.batch_augments:
                inputs, samples = augment(inputs, samples)
        return dict(inputs=inputs, data_samples=samples)
