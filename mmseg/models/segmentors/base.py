"""Base class of segmentors."""
from abc import ABCMeta, abstractmethod
from typing import Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample
from mmseg.utils import ForwardResults, OptConfigType, OptSampleList


class BaseSegmentor(BaseModel, metaclass=ABCMeta):
    """Segmentor with mmengine's three forward modes.

    ``forward(inputs, data_samples, mode)``: ``'loss'`` returns a dict of
    losses, ``'predict'`` a list of :class:`SegDataSample`, ``'tensor'`` the
    raw network output.
    """

    def __init__(self,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptConfigType = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)

    @property
    def with_neck(self) -> bool:
        return getattr(self, 'neck', None) is not None

    @property
    def with_auxiliary_head(self) -> bool:
        return getattr(self, 'auxiliary_head', None) is not None

    def forward(self,
                inputs: torch.Tensor,
                data_samples: OptSampleList = None,
                mode: str = 'tensor') -> ForwardResults:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'invalid forward mode "{mode}"; use loss, '
                           f'predict or tensor')

    @abstractmethod
    def loss(self, inputs: torch.Tensor, data_samples) -> Dict:
        """Losses of a batch."""

    @abstractmethod
    def predict(self, inputs: torch.Tensor, data_samples=None) -> List:
        """Predictions of a batch, at the original image sizes."""

    @abstractmethod
    def _forward(self, inputs: torch.Tensor, data_samples=None):
        """Network output without post-processing."""

    @staticmethod
    def _restore_original(maps: torch.Tensor, img_meta: dict,
                          align_corners: bool) -> torch.Tensor:
        """Crop the padding of one ``K x H x W`` map, undo a test-time flip
        and resize it to ``ori_shape``.

        The padding is ``img_padding_size`` (left, right, top, bottom) when
        the meta has it (test-time padding by the data preprocessor's
        ``test_cfg``, as MMSegmentation 1.x records it), else
        ``padding_size``."""
        padding = img_meta.get('img_padding_size')
        if padding is None:
            padding = img_meta.get('padding_size', (0, 0, 0, 0))
        left, right, top, bottom = padding
        height, width = maps.shape[1:]
        maps = maps[:, top:height - bottom, left:width - right]
        if img_meta.get('flip', False):
            direction = img_meta.get('flip_direction', 'horizontal')
            if direction not in ('horizontal', 'vertical'):
                raise ValueError(f'unknown flip_direction {direction!r}')
            maps = maps.flip(dims=(2, ) if direction ==
                             'horizontal' else (1, ))
        return F.interpolate(
            maps[None],
            size=img_meta['ori_shape'][:2],
            mode='bilinear',
            align_corners=align_corners)[0]

    def _classes(self, logits: torch.Tensor) -> torch.Tensor:
        """``1 x H x W`` classes of ``K x H x W`` logits: the arg-max, or
        for a binary head (one channel) whether the sigmoid exceeds the
        head's ``threshold``."""
        if logits.shape[0] > 1:
            return logits.argmax(dim=0, keepdim=True)
        return (logits.sigmoid() > self.decode_head.threshold).long()

    def postprocess_result(self,
                           seg_logits: torch.Tensor,
                           data_samples: OptSampleList = None,
                           extra_logits: Optional[Mapping[str,
                                                          torch.Tensor]] = None
                           ) -> List[SegDataSample]:
        """Fill data samples with ``seg_logits`` and ``pred_sem_seg``.

        Args:
            seg_logits: ``B x K x H x W`` at the network input size.
            data_samples: the batch's samples (metainfo with ``ori_shape``);
                None gives new samples at the input size.
            extra_logits: optional named maps of the same shape
                (:attr:`SegLogits.extras <mmseg.structures.SegLogits>`),
                restored like ``seg_logits`` and stored as the fields of
                each sample's ``extra_logits``.
        """
        align_corners = self.decode_head.align_corners
        if data_samples is None:
            height, width = seg_logits.shape[2:]
            data_samples = [
                SegDataSample(metainfo=dict(ori_shape=(height, width)))
                for _ in range(len(seg_logits))
            ]
        for i, sample in enumerate(data_samples):
            meta = sample.metainfo
            logits = self._restore_original(seg_logits[i], meta,
                                            align_corners)
            sample.seg_logits = PixelData(data=logits)
            sample.pred_sem_seg = PixelData(data=self._classes(logits))
            if extra_logits:
                sample.extra_logits = PixelData(
                    **{
                        name: self._restore_original(maps[i], meta,
                                                     align_corners)
                        for name, maps in extra_logits.items()
                    })
        return data_samples
