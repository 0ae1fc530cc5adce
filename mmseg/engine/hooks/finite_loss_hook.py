"""Stopping a training run as soon as a loss is NaN or infinite."""
import math
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.hooks import Hook

from mmseg.registry import HOOKS
from mmseg.utils.errors import SenFormerError


class NonFiniteError(SenFormerError, RuntimeError):
    """Training diverged: a loss or a weight became NaN or infinite."""


def non_finite_values(values: Mapping[str, object]) -> List[Tuple[str, float]]:
    """The ``(name, value)`` pairs of ``values`` that are NaN or +-Inf.

    Args:
        values: logged scalars (floats or one-element tensors); other
            entries are ignored.
    """
    bad = []
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not math.isfinite(value):
            bad.append((name, value))
    return bad


def first_non_finite_tensor(
        state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Name of the first floating-point tensor with a NaN/Inf entry."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() \
                and not bool(torch.isfinite(tensor).all()):
            return name
    return None


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Raise :class:`NonFiniteError` when a training loss is NaN or Inf.

    It runs right after each training step, before the logger, the
    parameter schedulers and the checkpoint hook (priority ``ABOVE_NORMAL``
    against their ``BELOW_NORMAL``/``LOW``/``VERY_LOW``), so the iteration
    that diverged saves nothing: the last checkpoint stays the last good
    one. :class:`~mmseg.engine.SegRunner` adds it to every training run.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[Dict[str, object]] = None) -> None:
        bad = non_finite_values(outputs or {})
        if not bad:
            return
        terms = ', '.join(f'{name}={value}' for name, value in bad)
        last = runner.message_hub.get_info('last_ckpt')
        kept = (f'the last checkpoint {last} is unchanged' if last else
                'no checkpoint was saved')
        raise NonFiniteError(
            f'non-finite loss at iteration {runner.iter + 1}: {terms}; '
            f'training stopped and {kept}. Lower the learning rate, clip '
            'the gradients (optim_wrapper.clip_grad) or check the labels, '
            'then resume from a good checkpoint')
