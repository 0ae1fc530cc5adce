"""Element-wise loss reduction with optional weights and average factor, as
MMSegmentation 1.x's losses reduce."""
from typing import Optional

import torch

# added to an explicit average factor so that a batch whose pixels are all
# ignored gives 0, not NaN (MMSegmentation 1.x adds the same epsilon)
_AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """``'none'`` returns ``loss`` itself, ``'mean'`` its mean, ``'sum'`` its
    sum."""
    if reduction == 'none':
        return loss
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got "
                     f'{reduction!r}')


def weight_reduce_loss(loss: torch.Tensor,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean',
                       avg_factor: Optional[float] = None) -> torch.Tensor:
    """Multiply ``loss`` by ``weight`` (broadcastable, same number of
    dimensions), then reduce it; with ``avg_factor`` the mean is the sum
    divided by it (``reduction='mean'`` only)."""
    if weight is not None:
        if weight.dim() != loss.dim() or (
                weight.dim() > 1 and weight.size(1) not in (1, loss.size(1))):
            raise ValueError(
                f'weight of shape {tuple(weight.shape)} does not broadcast '
                f'over the loss of shape {tuple(loss.shape)}')
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == 'mean':
        return loss.sum() / (avg_factor + _AVG_FACTOR_EPS)
    if reduction == 'none':
        return loss
    raise ValueError('avg_factor can only be used with reduction="mean" '
                     f'(or "none"), not {reduction!r}')
