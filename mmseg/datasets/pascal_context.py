"""Pascal Context (VOC2010 images, 59 or 60 classes)."""
from mmseg.registry import DATASETS
from .basesegdataset import BaseSegDataset


@DATASETS.register_module()
class PascalContextDataset(BaseSegDataset):
    """Pascal Context with 60 classes: "background" (every class outside
    the 59 frequent ones) is class 0.

    Label maps made by ``tools/convert_datasets/pascal_context.py`` hold
    0..59. The images of a split are the names listed in ``ann_file``.
    Layout::

        data/VOCdevkit/VOC2010/
            JPEGImages/*.jpg
            SegmentationClassContext/*.png
            ImageSets/SegmentationContext/{train,val}.txt

    Args:
        ann_file: the split file, e.g.
            ``ImageSets/SegmentationContext/train.txt``.
    """
    METAINFO = dict(
        classes=(
            'background', 'aeroplane', 'bag', 'bed', 'bedclothes', 'bench',
            'bicycle', 'bird', 'boat', 'book', 'bottle', 'building', 'bus',
            'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth', 'computer',
            'cow', 'cup', 'curtain', 'dog', 'door', 'fence', 'floor',
            'flower', 'food', 'grass', 'ground', 'horse', 'keyboard', 'light',
            'motorbike', 'mountain', 'mouse', 'person', 'plate', 'platform',
            'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk',
            'sign', 'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree',
            'truck', 'tvmonitor', 'wall', 'water', 'window', 'wood'),
        palette=[
            [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50],
            [4, 200, 3], [120, 120, 80], [140, 140, 140], [204, 5, 255],
            [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7],
            [150, 5, 61], [120, 120, 70], [8, 255, 51], [255, 6, 82],
            [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3],
            [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255],
            [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220],
            [255, 9, 92], [112, 9, 255], [8, 255, 214], [7, 255, 224],
            [255, 184, 6], [10, 255, 71], [255, 41, 10], [7, 255, 255],
            [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7],
            [255, 122, 8], [0, 255, 20], [255, 8, 41], [255, 5, 153],
            [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255],
            [140, 140, 140], [250, 10, 15], [20, 255, 0], [31, 255, 0],
            [255, 31, 0], [255, 224, 0], [153, 255, 0], [0, 0, 255],
            [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255]
        ])

    def __init__(self,
                 ann_file: str,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)


@DATASETS.register_module()
class PascalContextDataset59(BaseSegDataset):
    """Pascal Context with 59 classes: the same label maps as
    :class:`PascalContextDataset`, with "background" (0) ignored through
    ``reduce_zero_label`` (default True), so label k is class k - 1.

    Args:
        ann_file: the split file, e.g.
            ``ImageSets/SegmentationContext/train.txt``.
    """
    METAINFO = dict(
        classes=(
            'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle',
            'bird', 'boat', 'book', 'bottle', 'building', 'bus', 'cabinet',
            'car', 'cat', 'ceiling', 'chair', 'cloth', 'computer', 'cow',
            'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower',
            'food', 'grass', 'ground', 'horse', 'keyboard', 'light',
            'motorbike', 'mountain', 'mouse', 'person', 'plate', 'platform',
            'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk',
            'sign', 'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree',
            'truck', 'tvmonitor', 'wall', 'water', 'window', 'wood'),
        palette=[
            [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
            [120, 120, 80], [140, 140, 140], [204, 5, 255], [230, 230, 230],
            [4, 250, 7], [224, 5, 255], [235, 255, 7], [150, 5, 61],
            [120, 120, 70], [8, 255, 51], [255, 6, 82], [143, 255, 140],
            [204, 255, 4], [255, 51, 7], [204, 70, 3], [0, 102, 200],
            [61, 230, 250], [255, 6, 51], [11, 102, 255], [255, 7, 71],
            [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92],
            [112, 9, 255], [8, 255, 214], [7, 255, 224], [255, 184, 6],
            [10, 255, 71], [255, 41, 10], [7, 255, 255], [224, 255, 8],
            [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8],
            [0, 255, 20], [255, 8, 41], [255, 5, 153], [6, 51, 255],
            [235, 12, 255], [160, 150, 20], [0, 163, 255], [140, 140, 140],
            [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0],
            [255, 224, 0], [153, 255, 0], [0, 0, 255], [255, 71, 0],
            [0, 235, 255], [0, 173, 255], [31, 0, 255]
        ])

    def __init__(self,
                 ann_file: str,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True,
                 **kwargs) -> None:
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
