"""Encoder-decoder segmentor: backbone, optional neck, decode head."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from mmseg.registry import MODELS
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
            and ``stride``; ``return_learners=True`` also returns each
            SenFormer learner's map in the predictions.
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
    def _with_learners(self) -> bool:
        wanted = self.test_cfg.get('return_learners', False)
        if wanted and not hasattr(self.decode_head, 'learners'):
            raise ValueError('test_cfg.return_learners needs a SenFormer '
                             f'head, not {type(self.decode_head).__name__}')
        return wanted

    def _maps(self, inputs: torch.Tensor, batch_img_metas: List[dict],
              with_learners: bool) -> List[torch.Tensor]:
        """[segmentation logits, *learner logits], each at input size."""
        if not with_learners:
            return [self.encode_decode(inputs, batch_img_metas)]
        learner_logits, ensemble = self.decode_head(
            self.extract_feat(inputs))
        size = inputs.shape[2:]
        return [
            self.decode_head.resize(maps, size)
            for maps in (ensemble, *learner_logits)
        ]

    def whole_inference(self, inputs: torch.Tensor,
                        batch_img_metas: List[dict],
                        with_learners: bool = False) -> List[torch.Tensor]:
        return self._maps(inputs, batch_img_metas, with_learners)

    def slide_inference(self,
                        inputs: torch.Tensor,
                        batch_img_metas: List[dict],
                        with_learners: bool = False) -> List[torch.Tensor]:
        """Average overlapping ``crop_size`` windows taken every ``stride``
        pixels."""
        stride_h, stride_w = self.test_cfg['stride']
        crop_h, crop_w = self.test_cfg['crop_size']
        B, _, H, W = inputs.shape
        rows = max(H - crop_h + stride_h - 1, 0) // stride_h + 1
        cols = max(W - crop_w + stride_w - 1, 0) // stride_w + 1
        sums: Optional[List[torch.Tensor]] = None
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
                maps = self._maps(crop, metas, with_learners)
                if sums is None:
                    sums = [
                        inputs.new_zeros((B, m.shape[1], H, W)) for m in maps
                    ]
                for total, m in zip(sums, maps):
                    total[:, :, y1:y2, x1:x2] += m
                count[:, :, y1:y2, x1:x2] += 1
        assert sums is not None and (count > 0).all()
        return [total / count for total in sums]

    def inference(self,
                  inputs: torch.Tensor,
                  batch_img_metas: List[dict],
                  with_learners: bool = False) -> List[torch.Tensor]:
        """[segmentation logits, *learner logits] ``B x K x H x W``."""
        if self.test_cfg.get('mode', 'whole') == 'slide':
            return self.slide_inference(inputs, batch_img_metas,
                                        with_learners)
        return self.whole_inference(inputs, batch_img_metas, with_learners)

    def predict(self,
                inputs: torch.Tensor,
                data_samples: OptSampleList = None) -> SampleList:
        """Predictions at each sample's ``ori_shape``: ``seg_logits``,
        ``pred_sem_seg`` and, with ``test_cfg.return_learners``,
        ``learner_logits``."""
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
        with_learners = self._with_learners()
        maps = self.inference(inputs, batch_img_metas, with_learners)
        return self.postprocess_result(
            maps[0], data_samples, maps[1:] if with_learners else None)

    def _forward(self,
                 inputs: torch.Tensor,
                 data_samples: OptSampleList = None):
        """The decode head's raw output (for SenFormer: learner logits and
        the ensemble)."""
        return self.decode_head.forward(self.extract_feat(inputs))
