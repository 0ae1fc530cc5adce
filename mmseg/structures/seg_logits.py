"""A head's prediction for a batch with the extra maps it may carry."""
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Tuple

import torch


@dataclass(frozen=True)
class SegLogits:
    """Segmentation logits of a batch and named extra maps beside them.

    A decode head's :meth:`predict_with_extras` returns it; the segmentor
    (whole and sliding-window inference), the test-time augmentation and
    the metrics treat every extra map as they treat ``seg_logits``
    (resized, cropped, averaged, evaluated under its name) without knowing
    what the maps are. SenFormer names its learners' logits ``learner0``,
    ``learner1``, ... when ``test_cfg.return_learners`` is set.

    In a data sample the extras become the fields of
    ``SegDataSample.extra_logits`` (a ``PixelData``).

    Attributes:
        seg_logits: ``B x K x H x W``.
        extras: name -> ``B x K x H x W``, the same size as ``seg_logits``.
    """
    seg_logits: torch.Tensor
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def map(self, fn: Callable[[torch.Tensor],
                               torch.Tensor]) -> 'SegLogits':
        """``fn`` applied to ``seg_logits`` and to every extra map."""
        return SegLogits(
            fn(self.seg_logits),
            {name: fn(maps)
             for name, maps in self.extras.items()})

    def tensors(self) -> List[torch.Tensor]:
        """``seg_logits`` followed by the extra maps (in the order of
        ``extras``), e.g. to accumulate two results pairwise."""
        return [self.seg_logits, *self.extras.values()]


def _natural_key(name: str) -> Tuple:
    # learner2 before learner10
    return tuple(int(part) if part.isdigit() else part
                 for part in re.split(r'(\d+)', name))


def extra_maps(extra_logits) -> List[Tuple[str, torch.Tensor]]:
    """``(name, K x H x W tensor)`` pairs of a sample's ``extra_logits``
    (a ``PixelData``, or the dict mmengine's evaluator passes), in natural
    name order (``PixelData`` keeps no order); ``[]`` for None."""
    if extra_logits is None:
        return []
    items: Iterable = extra_logits.items()
    pairs: Dict[str, torch.Tensor] = dict(items)
    return [(name, pairs[name]) for name in sorted(pairs, key=_natural_key)]
