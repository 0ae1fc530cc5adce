"""Batching, normalisation and padding of segmentation inputs."""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmengine.structures import PixelData

from mmseg.registry import MODELS


@MODELS.register_module()
class SegDataPreProcessor(BaseDataPreprocessor):
    """Normalise, convert BGR to RGB, pad and stack a batch.

    Images are padded bottom/right with ``pad_val`` (labels with
    ``seg_pad_val``) to ``size`` in training, or to the largest image of
    the batch (rounded up to ``size_divisor``) otherwise. Each sample's
    metainfo records ``batch_input_shape``, ``pad_shape`` and
    ``padding_size`` (left, right, top, bottom) so that predictions can be
    cropped back.

    Args:
        mean, std: per-channel statistics, in RGB order when
            ``bgr_to_rgb`` (the images are loaded as BGR).
        bgr_to_rgb: swap channels before normalising.
        pad_val: image padding value (applied after normalisation).
        seg_pad_val: label padding value (the ignore index).
        size: ``(H, W)`` training input size (the crop size).
        size_divisor: pad sizes up to a multiple of this, when given.
    """

    def __init__(self,
                 mean: Sequence[float] = (0., 0., 0.),
                 std: Sequence[float] = (1., 1., 1.),
                 bgr_to_rgb: bool = True,
                 pad_val: float = 0,
                 seg_pad_val: int = 255,
                 size: Optional[Tuple[int, int]] = None,
                 size_divisor: Optional[int] = None):
        super().__init__()
        self.register_buffer('mean',
                             torch.tensor(mean, dtype=torch.float32).view(
                                 -1, 1, 1), False)
        self.register_buffer('std',
                             torch.tensor(std, dtype=torch.float32).view(
                                 -1, 1, 1), False)
        self.bgr_to_rgb = bgr_to_rgb
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.size = tuple(size) if size is not None else None
        self.size_divisor = size_divisor

    def _target_size(self, shapes: Sequence[Tuple[int, int]],
                      training: bool) -> Tuple[int, int]:
        height = max(h for h, _ in shapes)
        width = max(w for _, w in shapes)
        if training and self.size is not None:
            height, width = max(height, self.size[0]), max(width, self.size[1])
        if self.size_divisor:
            d = self.size_divisor
            height, width = -(-height // d) * d, -(-width // d) * d
        return height, width

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        """``data['inputs']``: list of ``3 x H x W`` uint8 BGR tensors (or
        an already stacked batch); returns normalised ``B x 3 x H x W``."""
        data = self.cast_data(data)
        inputs = data['inputs']
        samples = data.get('data_samples')
        if self.bgr_to_rgb:
            inputs = [img[[2, 1, 0], ...] for img in inputs]
        inputs = [(img.float() - self.mean) / self.std for img in inputs]
        shapes = [tuple(img.shape[1:]) for img in inputs]
        height, width = self._target_size(shapes, training)

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
            sample.set_metainfo(
                dict(
                    batch_input_shape=(height, width),
                    pad_shape=(height, width),
                    padding_size=(0, pad_w, 0, pad_h)))
        return dict(inputs=torch.stack(padded), data_samples=samples)
