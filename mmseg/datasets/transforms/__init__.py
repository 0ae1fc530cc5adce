"""Transforms of the data pipelines.

``Resize``, ``RandomResize``, ``RandomFlip``, ``Pad`` and ``TestTimeAug``
are mmcv's (importing it here registers them); the others are ours.
"""
import mmcv.transforms  # noqa: F401  (registers mmcv's transforms)

from .formatting import PackSegInputs
from .loading import (LoadAnnotations, LoadImageFromFile,
                      LoadImageFromNDArray, read_image, read_label_map)
from .transforms import PhotoMetricDistortion, RandomCrop

__all__ = [
    'LoadImageFromFile', 'LoadImageFromNDArray', 'LoadAnnotations',
    'RandomCrop', 'PhotoMetricDistortion', 'PackSegInputs', 'read_image',
    'read_label_map'
]
