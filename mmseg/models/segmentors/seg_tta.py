"""Test-time augmentation: merge the predictions of augmented views."""
from typing import List

import torch
from mmengine.model import BaseTTAModel
from mmengine.structures import PixelData

from mmseg.registry import MODELS
from mmseg.structures import SegDataSample, extra_maps
from mmseg.utils import SampleList


def _mean_softmax(maps: List[torch.Tensor]) -> torch.Tensor:
    return sum(m.softmax(dim=0) for m in maps) / len(maps)


@MODELS.register_module()
class SegTTAModel(BaseTTAModel):
    """Averages the class softmax of every view (each already resized to
    the original image and flipped back by the segmentor), then takes the
    arg-max: the multi-scale + flip test of SenFormer. The extra maps of
    the views (``extra_logits``, e.g. SenFormer's learners) are averaged
    the same way, name by name."""

    def merge_preds(self, data_samples_list: List[SampleList]) -> SampleList:
        merged = []
        for views in data_samples_list:
            first = views[0]
            probs = _mean_softmax([view.seg_logits.data for view in views])
            sample = SegDataSample(metainfo=first.metainfo)
            sample.seg_logits = PixelData(data=probs)
            sample.pred_sem_seg = PixelData(
                data=probs.argmax(dim=0, keepdim=True))
            if 'gt_sem_seg' in first:
                sample.gt_sem_seg = first.gt_sem_seg
            if 'extra_logits' in first:
                # every extra map averaged like seg_logits
                sample.extra_logits = PixelData(
                    **{
                        name: _mean_softmax(
                            [view.extra_logits.get(name) for view in views])
                        for name, _ in extra_maps(first.extra_logits)
                    })
            merged.append(sample)
        return merged
