from .seg_data_sample import SegDataSample
from .seg_logits import SegLogits, extra_maps

__all__ = ['SegDataSample', 'SegLogits', 'extra_maps']
