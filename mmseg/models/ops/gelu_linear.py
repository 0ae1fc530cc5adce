"""``linear(gelu(h))`` that keeps only ``h`` for backward.

In an MLP, autograd would store both the hidden pre-activation (for GELU's
gradient) and its GELU (for the second linear's weight gradient), two
``tokens x 4C`` tensors. Recomputing the GELU in backward is one cheap
element-wise pass and halves that memory; the values are the same.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from .switch import implementation_for


class _GeluLinear(torch.autograd.Function):

    @staticmethod
    def forward(ctx, hidden, weight, bias):
        ctx.save_for_backward(hidden, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(hidden), weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight = ctx.saved_tensors
        # under autocast the saved tensors and gradients may be half
        # precision while the weight is float32
        dtype = grad_out.dtype
        activation = F.gelu(hidden).to(dtype)
        grad_flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = grad_flat.t().mm(
            activation.reshape(-1, activation.shape[-1])).to(weight.dtype)
        # tokens x 4C each: free the activation before the next one exists,
        # and turn the activation's gradient into the hidden one in place
        del activation
        grad_bias = grad_flat.sum(0).to(weight.dtype) \
            if ctx.has_bias else None
        grad_hidden = grad_out.matmul(weight.to(dtype)).to(hidden.dtype)
        torch.ops.aten.gelu_backward.grad_input(
            grad_hidden, hidden, grad_input=grad_hidden)
        return grad_hidden, grad_weight, grad_bias


def plain_gelu_linear(hidden: torch.Tensor,
                      weight: torch.Tensor,
                      bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(F.gelu(hidden), weight, bias)`` (exact GELU)."""
    return F.linear(F.gelu(hidden), weight, bias)


def gelu_linear(hidden: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Equals :func:`plain_gelu_linear` in value and gradient; the fast
    implementations keep only ``hidden`` for backward."""
    if not torch.is_grad_enabled() or \
            implementation_for(hidden) == 'reference':
        return plain_gelu_linear(hidden, weight, bias)
    return _GeluLinear.apply(hidden, weight, bias)
