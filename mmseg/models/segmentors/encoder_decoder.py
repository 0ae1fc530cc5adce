"""Encoder-decoder segmentor: backbone, optional neck, decode head."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from mmseg.registry import MODELS
from mmseg.structures import SegLogits
from mmseg.utils import (ConfigType, OptConfigType, OptMultiConfig,
                         OptSampleList, SampleList)
from .base import BaseSegmentor


@MODELS.register_module()
class EncoderDecoder(BaseSegmentor):
    """Backbone -> (neck) -> decode head, with an optional auxiliary head.

    Args:
        backbone, decode_head, neck, auxiliary_head: module configs; the
            auxiliary head may also be a list of configs.
        aux_head_input: ``'neck'`` feeds the auxiliary head the neck maps
            (MMSegmentation's default); ``'backbone'`` feeds it the raw
            backbone maps, as every SenFormer model does.
        train_cfg: training options (unused by the heads here).
        test_cfg: ``mode='whole'`` or ``mode='slide'`` with ``crop_size``
            and ``stride``; further keys are the decode head's, e.g.
            SenFormer's ``return_learners=True``, which adds each learner's
            map to the predictions (``extra_logits``).
        data_preprocessor: :class:`SegDataPreProcessor` config.
        pretrained: backbone checkpoint (becomes the backbone's
            ``init_cfg``).
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 neck: OptConfigType = None,
                 auxiliary_head: OptMultiConfig = None,
                 aux_head_input: str = 'neck',
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if aux_head_input not in ('neck', 'backbone'):
            raise ValueError(f"aux_head_input must be 'neck' or 'backbone', "
                             f'got {aux_head_input!r}')
        if pretrained is not None:
            if backbone.get('pretrained') or backbone.get('init_cfg'):
                raise ValueError('both model.pretrained and the backbone\'s '
                                 'pretrained/init_cfg are set; keep one')
            backbone = dict(
                backbone,
                init_cfg=dict(type='Pretrained', checkpoint=pretrained))
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.decode_head = MODELS.build(decode_head)
        self.align_corners = self.decode_head.align_corners
        self.num_classes = self.decode_head.num_classes
        self.out_channels = self.decode_head.out_channels
        if isinstance(auxiliary_head, (list, tuple)):
            self.auxiliary_head = torch.nn.ModuleList(
                MODELS.build(cfg) for cfg in auxiliary_head)
        elif auxiliary_head is not None:
            self.auxiliary_head = MODELS.build(auxiliary_head)
        else:
            self.auxiliary_head = None
        self.aux_head_input = aux_head_input
        self.train_cfg = train_cfg if train_cfg is not None else dict()
        self.test_cfg = test_cfg if test_cfg is not None else dict(
            mode='whole')
        if self.test_cfg.get('mode', 'whole') not in ('whole', 'slide'):
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got "
                             f"{self.test_cfg['mode']!r}")

    # ------------------------------------------------------------ features
    def _backbone_and_decode_inputs(
            self, inputs: torch.Tensor
    ) -> Tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]:
        backbone_feats = self.backbone(inputs)
        decode_feats = self.neck(backbone_feats) if self.with_neck \
            else backbone_feats
        return backbone_feats, decode_feats

    def extract_feat(self, inputs: torch.Tensor) -> Sequence[torch.Tensor]:
        """The decode head's inputs (neck maps, or backbone maps without a
        neck) for ``B x 3 x H x W`` images."""
        return self._backbone_and_decode_inputs(inputs)[1]

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: List[dict]) -> torch.Tensor:
        """Segmentation logits ``B x K x H x W`` at the input size."""
        return self.decode_head.predict(
            self.extract_feat(inputs), batch_img_metas, self.test_cfg)

    # ------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor,
             data_samples: SampleList) -> Dict[str, torch.Tensor]:
        """Losses of the decode head (``decode.*``) and the auxiliary
        head(s) (``aux.*`` / ``aux_{i}.*``)."""
        backbone_feats, decode_feats = \
            self._backbone_and_decode_inputs(inputs)
        losses = {
            f'decode.{k}': v
            for k, v in self.decode_head.loss(decode_feats, data_samples,
                                              self.train_cfg).items()
        }
        if self.with_auxiliary_head:
            aux_feats = backbone_feats if self.aux_head_input == 'backbone' \
                else decode_feats
            heads = self.auxiliary_head if isinstance(
                self.auxiliary_head, torch.nn.ModuleList) else [
                    self.auxiliary_head
                ]
            for i, head in enumerate(heads):
                prefix = 'aux' if len(heads) == 1 else f'aux_{i}'
                losses.update({
                    f'{prefix}.{k}': v
                    for k, v in head.loss(aux_feats, data_samples,
                                          self.train_cfg).items()
                })
        return losses

    # ------------------------------------------------------------ inference
    def _predict_maps(self, inputs: torch.Tensor,
                      batch_img_metas: List[dict]) -> SegLogits:
        """The decode head's logits and extra maps at the input size."""
        return self.decode_head.predict_with_extras(
            self.extract_feat(inputs), batch_img_metas, self.test_cfg)

    def whole_inference(self, inputs: torch.Tensor,
                        batch_img_metas: List[dict]) -> SegLogits:
        return self._predict_maps(inputs, batch_img_metas)

    def slide_inference(self, inputs: torch.Tensor,
                        batch_img_metas: List[dict]) -> SegLogits:
        """Average overlapping ``crop_size`` windows taken every ``stride``
        pixels (the extra maps alike)."""
        stride_h, stride_w = self.test_cfg['stride']
        crop_h, crop_w = self.test_cfg['crop_size']
        B, _, H, W = inputs.shape
        rows = max(H - crop_h + stride_h - 1, 0) // stride_h + 1
        cols = max(W - crop_w + stride_w - 1, 0) // stride_w + 1
        sums: Optional[SegLogits] = None
        count = inputs.new_zeros((B, 1, H, W))
        for row in range(rows):
            for col in range(cols):
                y2 = min(row * stride_h + crop_h, H)
                x2 = min(col * stride_w + crop_w, W)
                y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
                crop = inputs[:, :, y1:y2, x1:x2]
                metas = [
                    dict(meta, img_shape=crop.shape[2:],
                         batch_input_shape=crop.shape[2:])
                    for meta in batch_img_metas
                ]
                maps = self._predict_maps(crop, metas)
                if sums is None:
                    sums = maps.map(
                        lambda m: inputs.new_zeros((B, m.shape[1], H, W)))
                for total, m in zip(sums.tensors(), maps.tensors()):
                    total[:, :, y1:y2, x1:x2] += m
                count[:, :, y1:y2, x1:x2] += 1
        assert sums is not None and (count > 0).all()
        return sums.map(lambda total: total / count)

    def inference(self, inputs: torch.Tensor,
                  batch_img_metas: List[dict]) -> SegLogits:
        """Logits ``B x K x H x W`` at the input size, with the extra maps
        the head predicts (see :class:`~mmseg.structures.SegLogits`)."""
        if self.test_cfg.get('mode', 'whole') == 'slide':
            return self.slide_inference(inputs, batch_img_metas)
        return self.whole_inference(inputs, batch_img_metas)

    def predict(self,
                inputs: torch.Tensor,
                data_samples: OptSampleList = None) -> SampleList:
        """Predictions at each sample's ``ori_shape``: ``seg_logits``,
        ``pred_sem_seg`` and, when the head predicts extra maps (SenFormer
        with ``test_cfg.return_learners``), ``extra_logits``."""
        if data_samples is not None:
            batch_img_metas = [sample.metainfo for sample in data_samples]
        else:
            shape = tuple(inputs.shape[2:])
            batch_img_metas = [
                dict(
                    ori_shape=shape,
                    img_shape=shape,
                    pad_shape=shape,
                    batch_input_shape=shape,
                    padding_size=(0, 0, 0, 0))
            ] * inputs.shape[0]
        maps = self.inference(inputs, batch_img_metas)
        return self.postprocess_result(maps.seg_logits, data_samples,
                                       maps.extras)

    def _forward(self,
                 inputs: torch.Tensor,
                 data_samples: OptSampleList = None):
        """The decode head's raw output (for SenFormer: learner logits and
        the ensemble)."""
        return self.decode_head.forward(self.extract_feat(inputs))
