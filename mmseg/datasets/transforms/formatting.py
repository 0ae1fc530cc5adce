"""Packing a sample into the model's inputs and data sample."""
import warnings
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData

from mmseg.registry import TRANSFORMS
from mmseg.structures import SegDataSample


@TRANSFORMS.register_module()
class PackSegInputs(BaseTransform):
    """Pack ``results`` into ``dict(inputs, data_samples)``.

    - ``inputs``: the image as a ``C x H x W`` tensor of its own dtype
      (uint8 BGR after the usual loading); the data preprocessor normalises
      it.
    - ``data_samples``: a :class:`SegDataSample` with ``gt_sem_seg``
      (``1 x H x W`` int64 PixelData) when a label map was loaded, and the
      ``meta_keys`` present in ``results`` as metainfo.

    Args:
        meta_keys: keys of ``results`` copied into the metainfo.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = ('img_path', 'seg_map_path',
                                             'ori_shape', 'img_shape',
                                             'pad_shape', 'scale_factor',
                                             'flip', 'flip_direction',
                                             'reduce_zero_label')) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        packed = dict()
        if 'img' in results:
            img = results['img']
            if img.ndim < 3:
                img = img[..., None]
            packed['inputs'] = torch.from_numpy(
                np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = SegDataSample()
        if 'gt_seg_map' in results:
            label = results['gt_seg_map']
            if label.ndim == 3:
                warnings.warn('PackSegInputs: gt_seg_map has 3 dimensions; '
                              'it is packed as is (expected H x W)')
            else:
                label = label[None]
            sample.gt_sem_seg = PixelData(
                data=torch.from_numpy(label.astype(np.int64)))
        sample.set_metainfo(
            {key: results[key]
             for key in self.meta_keys if key in results})
        packed['data_samples'] = sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
