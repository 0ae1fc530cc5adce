"""IoUMetric for the Cityscapes test server: predictions saved in label
ids."""
import torch

from mmseg.datasets.cityscapes import TRAIN_ID_TO_LABEL_ID
from mmseg.registry import METRICS
from .iou_metric import IoUMetric


@METRICS.register_module()
class CityscapesMetric(IoUMetric):
    """:class:`IoUMetric` (on train ids) whose saved predictions
    (``output_dir``) are in Cityscapes label ids, named after their images
    (``<city>_<seq>_<frame>_leftImg8bit.png``): with ``format_only=True``
    the files the Cityscapes test server takes, as MMSegmentation's
    ``CityscapesMetric(format_only=True)`` writes them.

    Takes the arguments of :class:`IoUMetric`; the dataset must have the
    19 Cityscapes classes.
    """

    def _save(self, pred: torch.Tensor, meta: dict, folder: str = '') -> None:
        num_classes = self.num_classes
        if num_classes != len(TRAIN_ID_TO_LABEL_ID):
            raise ValueError(
                f'CityscapesMetric: the dataset has {num_classes} classes; '
                f'Cityscapes label ids exist for its '
                f'{len(TRAIN_ID_TO_LABEL_ID)} evaluated classes only')
        table = torch.tensor(TRAIN_ID_TO_LABEL_ID, device=pred.device)
        super()._save(table[pred.long()],
                      dict(meta, reduce_zero_label=False), folder)
