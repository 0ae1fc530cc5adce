from mmengine.structures import BaseDataElement, PixelData


class SegDataSample(BaseDataElement):
    """Data sample of semantic segmentation, as in MMSegmentation 1.x.

    Fields:
        gt_sem_seg (PixelData): ground truth, ``data`` is ``1 x H x W``.
        pred_sem_seg (PixelData): predicted label map, ``1 x H x W``.
        seg_logits (PixelData): class scores, ``K x H x W``.
        extra_logits (PixelData): further named ``K x H x W`` maps a head
            predicts beside ``seg_logits`` when its ``test_cfg`` asks
            (SenFormer's ``return_learners``: ``learner0``,
            ``learner1``, ...); see :class:`~mmseg.structures.SegLogits`.
    """

    @property
    def gt_sem_seg(self) -> PixelData:
        return self._gt_sem_seg

    @gt_sem_seg.setter
    def gt_sem_seg(self, value: PixelData) -> None:
        self.set_field(value, '_gt_sem_seg', dtype=PixelData)

    @gt_sem_seg.deleter
    def gt_sem_seg(self) -> None:
        del self._gt_sem_seg

    @property
    def pred_sem_seg(self) -> PixelData:
        return self._pred_sem_seg

    @pred_sem_seg.setter
    def pred_sem_seg(self, value: PixelData) -> None:
        self.set_field(value, '_pred_sem_seg', dtype=PixelData)

    @pred_sem_seg.deleter
    def pred_sem_seg(self) -> None:
        del self._pred_sem_seg

    @property
    def seg_logits(self) -> PixelData:
        return self._seg_logits

    @seg_logits.setter
    def seg_logits(self, value: PixelData) -> None:
        self.set_field(value, '_seg_logits', dtype=PixelData)

    @seg_logits.deleter
    def seg_logits(self) -> None:
        del self._seg_logits

    @property
    def extra_logits(self) -> PixelData:
        return self._extra_logits

    @extra_logits.setter
    def extra_logits(self, value: PixelData) -> None:
        self.set_field(value, '_extra_logits', dtype=PixelData)

    @extra_logits.deleter
    def extra_logits(self) -> None:
        del self._extra_logits
