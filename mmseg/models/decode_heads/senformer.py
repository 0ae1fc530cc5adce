"""SenFormer head: an ensemble of transformer learners, one per level."""
from typing import Dict, List, NamedTuple, Sequence

import torch

from mmseg.registry import MODELS
from mmseg.structures import SegLogits
from mmseg.utils import ConfigType, SampleList
from ..losses import pixel_accuracy
from ..ops import upsampled_nll_and_argmax
from ..utils.learner import TransformerLearner
from .decode_head import BaseDecodeHead, input_size_from_metas


class HeadOutput(NamedTuple):
    """What :meth:`SenFormer.forward` returns, at the finest level."""
    #: each learner's logits ``B x K x H_0 x W_0``
    learner_logits: List[torch.Tensor]
    #: the sum of their softmaxes
    ensemble: torch.Tensor


# floor of the ensemble before its log in loss_classic, as published
_MIN_PROBABILITY = 1e-15


@MODELS.register_module()
class SenFormer(BaseDecodeHead):
    """Self-ensemble head of SenFormer (Bousselham et al., 2021).

    A :class:`TransformerLearner` per pyramid level predicts class logits;
    the ensemble is the sum of the learners' softmax maps at the finest
    level. This class shares weights across decoder steps ("repeated": one
    block per learner applied ``branch_depth`` times);
    :class:`SenFormerNWS` gives each step its own block.

    Args:
        num_heads: attention heads of the learners.
        branch_depth: decoder steps of each learner.
        feature_strides: strides of the input levels, finest first.
        recompute_levels: levels (0 = finest) whose learner projects its
            cross-attention keys and values again in backward instead of
            keeping them for it. At strides 4 and 8 they are the largest
            part of the training memory (0.8 and 0.2 GB for
            SenFormerNWS-R50 at 512 x 512, batch 2) and redoing them costs
            10% of the step's FLOPs; ``()`` keeps them all. Outputs and
            gradients are the same.
        loss_decode: loss of each learner; by default the cross-entropy
            averaged over the non-ignored pixels, as published.
        channels, dropout_ratio, norm_cfg: size the classifier ``conv_seg``
            of the base head, which SenFormer does not use but the published
            checkpoints contain.
        Other arguments: see :class:`BaseDecodeHead`.
    """

    share_block_weights = True

    def __init__(self,
                 num_heads: int,
                 branch_depth: int,
                 feature_strides: Sequence[int],
                 recompute_levels: Sequence[int] = (0, 1),
                 loss_decode: ConfigType = dict(
                     type='CrossEntropyLoss',
                     loss_weight=1.0,
                     avg_non_ignore=True),
                 **kwargs):
        super().__init__(loss_decode=loss_decode, **kwargs)
        num_levels = len(self.in_channels)
        if len(feature_strides) != num_levels or \
                list(feature_strides) != sorted(feature_strides):
            raise ValueError(
                f'feature_strides {feature_strides} must list one stride per '
                f'input level ({num_levels}), finest first')
        if not set(recompute_levels) <= set(range(num_levels)):
            raise ValueError(f'recompute_levels {tuple(recompute_levels)} '
                             f'must be levels 0 to {num_levels - 1}')
        self.learners = torch.nn.ModuleList(
            TransformerLearner(
                dims,
                self.num_classes,
                num_heads,
                branch_depth,
                self.share_block_weights,
                recompute_keys_values=level in recompute_levels)
            for level, dims in enumerate(self.in_channels))

    def init_weights(self) -> None:
        super().init_weights()
        for learner in self.learners:
            learner.init_weights()

    def forward(self, inputs: Sequence[torch.Tensor]) -> HeadOutput:
        """
        Args:
            inputs: the neck maps ``B x C x H_i x W_i``.

        Returns:
            HeadOutput: each learner's logits ``B x K x H_0 x W_0`` (resized
            to the finest level), and the ensemble, the sum of their
            softmaxes; unpacks as ``learner_logits, ensemble``.
        """
        feats = self._select_inputs(inputs)
        size = feats[0].shape[2:]
        learner_logits = [
            self.resize(learner(feat), size)
            for learner, feat in zip(self.learners, feats)
        ]
        ensemble = sum(logits.softmax(dim=1) for logits in learner_logits)
        return HeadOutput(learner_logits, ensemble)

    def loss_by_feat(self, seg_logits: HeadOutput,
                     batch_data_samples: SampleList) -> Dict[str, torch.Tensor]:
        """The published SenFormer losses, at the label size:

        - ``loss_classic``: cross-entropy of the log-ensemble
          ``log(clamp(ensemble, 1e-15))``, taken at stride 4 and upsampled
          as logits, averaged over the non-ignored pixels (0 when all are
          ignored);
        - ``loss_seg``: the mean over learners of ``loss_decode`` on their
          upsampled logits (the configs average it over the non-ignored
          pixels, ``avg_non_ignore=True``, as the published head does);
        - ``acc_seg``: pixel accuracy of the upsampled log-ensemble,
          ignored pixels excluded.

        The stride-4 maps are upsampled slab by slab inside the losses: no
        ``B x K x H x W`` map is kept for backward.
        """
        learner_logits, ensemble = seg_logits
        label = self.stack_labels(batch_data_samples)
        log_ensemble = ensemble.clamp(min=_MIN_PROBABILITY).log()
        nll, prediction = upsampled_nll_and_argmax(log_ensemble, label,
                                                   self.ignore_index,
                                                   self.align_corners)
        num_valid = (label != self.ignore_index).sum().clamp(min=1)
        loss_seg = sum(
            self.loss_decode(
                logits,
                label,
                ignore_index=self.ignore_index,
                align_corners=self.align_corners)
            for logits in learner_logits) / len(learner_logits)
        return dict(
            loss_classic=nll.sum() / num_valid,
            loss_seg=loss_seg,
            acc_seg=pixel_accuracy(prediction, label, self.ignore_index))

    def predict_by_feat(self, seg_logits: HeadOutput,
                        batch_img_metas: List[dict]) -> torch.Tensor:
        """The ensemble at the network input size."""
        return super().predict_by_feat(seg_logits.ensemble, batch_img_metas)

    def predict_with_extras(self, inputs: Sequence[torch.Tensor],
                            batch_img_metas: List[dict],
                            test_cfg: ConfigType) -> SegLogits:
        """The ensemble and, with ``test_cfg.return_learners``, each
        learner's logits as the extra maps ``learner0``, ``learner1``, ...
        (finest level first), all at the network input size."""
        if not test_cfg.get('return_learners', False):
            return super().predict_with_extras(inputs, batch_img_metas,
                                               test_cfg)
        output = self.forward(inputs)
        size = input_size_from_metas(batch_img_metas)
        return SegLogits(
            self.resize(output.ensemble, size), {
                f'learner{i}': self.resize(logits, size)
                for i, logits in enumerate(output.learner_logits)
            })


@MODELS.register_module()
class SenFormerNWS(SenFormer):
    """SenFormer without weight sharing: ``branch_depth`` distinct blocks
    per learner."""

    share_block_weights = False
