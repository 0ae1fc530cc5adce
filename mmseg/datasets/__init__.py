"""Segmentation datasets and their transforms."""
from .ade import ADE20KDataset
from .basesegdataset import BaseSegDataset
from .cityscapes import CityscapesDataset
from .coco_stuff import COCOStuffDataset
from .errors import DatasetError, DatasetNotFoundError
from .pascal_context import PascalContextDataset, PascalContextDataset59
from .transforms import *  # noqa: F401,F403

__all__ = [
    'BaseSegDataset', 'ADE20KDataset', 'COCOStuffDataset',
    'PascalContextDataset', 'PascalContextDataset59', 'CityscapesDataset',
    'DatasetError', 'DatasetNotFoundError'
]
