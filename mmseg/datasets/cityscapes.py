"""Cityscapes (fine annotations)."""
from mmseg.registry import DATASETS
from .basesegdataset import BaseSegDataset

#: Cityscapes label id of each train id (0..18): what the test server and
#: cityscapesscripts read (``*_gtFine_labelIds.png``)
TRAIN_ID_TO_LABEL_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                        27, 28, 31, 32, 33)


@DATASETS.register_module()
class CityscapesDataset(BaseSegDataset):
    """Cityscapes: the 19 evaluated classes, ``_leftImg8bit.png`` images and
    ``_gtFine_labelTrainIds.png`` label maps (train ids 0..18, 255 for the
    rest) made by ``tools/convert_datasets/cityscapes.py``. Layout::

        data/cityscapes/
            leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png
            gtFine/{train,val,test}/<city>/*_gtFine_labelTrainIds.png
    """
    METAINFO = dict(
        classes=(
            'road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
            'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky',
            'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
            'bicycle'),
        palette=[
            [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156],
            [190, 153, 153], [153, 153, 153], [250, 170, 30], [220, 220, 0],
            [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
            [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100],
            [0, 0, 230], [119, 11, 32]
        ])

    def __init__(self,
                 img_suffix: str = '_leftImg8bit.png',
                 seg_map_suffix: str = '_gtFine_labelTrainIds.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
