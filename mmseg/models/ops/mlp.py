"""The transformer MLP ``fc2(gelu(fc1(x)))``: the plain computation, and
token-chunked forward and backward on CPU.

At stride 4 the hidden activation is large (16384 tokens x 2048 channels,
134 MB at 512 x 512, and as much again for its GELU): without gradients
the CPU implementation runs the MLP on chunks of tokens, so the hidden
chunk stays in cache, the ``tokens x 4C`` tensors never exist, and GELU is
applied inside the first product (oneDNN's fused linear + GELU, where
PyTorch has it). At 512 x 512 on one thread that is 615 ms -> 495 ms for
the FPNT's stride-4 MLP, and 270 MB less at the forward's peak.

In training the CPU implementation keeps only the MLP's input for backward
and recomputes each chunk's hidden activation there: one more product, in
exchange for the ``tokens x 4C`` hidden activation (268 MB at stride 4,
batch 2) and its two gradients never existing whole.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .gelu_linear import gelu_linear
from .switch import implementation_for

# tokens per chunk: the fastest of 1024 to 16384 for C = 512, 4C hidden
TOKEN_CHUNK = 2048


def plain_mlp(x: torch.Tensor, fc1_weight: torch.Tensor,
              fc1_bias: Optional[torch.Tensor], fc2_weight: torch.Tensor,
              fc2_bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(F.gelu(F.linear(x, fc1)), fc2)`` (exact GELU)."""
    return F.linear(F.gelu(F.linear(x, fc1_weight, fc1_bias)), fc2_weight,
                    fc2_bias)


# oneDNN's linear with a GELU post-op, in PyTorch's x86 and Arm builds
_FUSED_LINEAR_GELU = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, '_linear_pointwise')


def _linear_gelu(x: torch.Tensor, weight: torch.Tensor,
                 bias: Optional[torch.Tensor]) -> torch.Tensor:
    if x.dtype == torch.float32 and _FUSED_LINEAR_GELU:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'gelu', [],
                                                  'none')
    return F.gelu(F.linear(x, weight, bias))


def chunked_mlp(x: torch.Tensor,
                fc1_weight: torch.Tensor,
                fc1_bias: Optional[torch.Tensor],
                fc2_weight: torch.Tensor,
                fc2_bias: Optional[torch.Tensor],
                token_chunk: int = TOKEN_CHUNK) -> torch.Tensor:
    """:func:`plain_mlp` on chunks of ``token_chunk`` tokens, without
    gradients (equal in value)."""
    flat = x.reshape(-1, x.shape[-1])
    out = flat.new_empty(len(flat), fc2_weight.shape[0])
    for start in range(0, len(flat), token_chunk):
        rows = slice(start, start + token_chunk)
        hidden = _linear_gelu(flat[rows], fc1_weight, fc1_bias)
        if fc2_bias is None:
            torch.mm(hidden, fc2_weight.t(), out=out[rows])
        else:
            torch.addmm(fc2_bias, hidden, fc2_weight.t(), out=out[rows])
    return out.view(*x.shape[:-1], -1)


class _ChunkedMLP(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                token_chunk):
        ctx.save_for_backward(x, fc1_weight, fc1_bias, fc2_weight)
        ctx.has_fc2_bias = fc2_bias is not None
        ctx.token_chunk = token_chunk
        with torch.no_grad():
            return chunked_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                               token_chunk)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, fc1_weight, fc1_bias, fc2_weight = ctx.saved_tensors
        flat = x.reshape(-1, x.shape[-1])
        grad_flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = torch.empty_like(flat)
        grad_fc1_weight = torch.zeros_like(fc1_weight)
        grad_fc1_bias = None if fc1_bias is None else torch.zeros_like(
            fc1_bias)
        grad_fc2_weight = torch.zeros_like(fc2_weight)
        for start in range(0, len(flat), ctx.token_chunk):
            rows = slice(start, start + ctx.token_chunk)
            hidden = F.linear(flat[rows], fc1_weight, fc1_bias)
            grad_fc2_weight.addmm_(grad_flat[rows].t(), F.gelu(hidden))
            grad_hidden = grad_flat[rows].mm(fc2_weight)
            torch.ops.aten.gelu_backward.grad_input(
                grad_hidden, hidden, grad_input=grad_hidden)
            del hidden
            grad_fc1_weight.addmm_(grad_hidden.t(), flat[rows])
            if grad_fc1_bias is not None:
                grad_fc1_bias += grad_hidden.sum(0)
            torch.mm(grad_hidden, fc1_weight, out=grad_x[rows])
        grad_fc2_bias = grad_flat.sum(0) if ctx.has_fc2_bias else None
        return (grad_x.view_as(x), grad_fc1_weight, grad_fc1_bias,
                grad_fc2_weight, grad_fc2_bias, None)


def recomputed_mlp(x: torch.Tensor,
                   fc1_weight: torch.Tensor,
                   fc1_bias: Optional[torch.Tensor],
                   fc2_weight: torch.Tensor,
                   fc2_bias: Optional[torch.Tensor],
                   token_chunk: int = TOKEN_CHUNK) -> torch.Tensor:
    """:func:`chunked_mlp` whose backward recomputes each chunk's hidden
    activation from the kept input; equals :func:`plain_mlp` in value and
    gradient."""
    return _ChunkedMLP.apply(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                             token_chunk)


def mlp(x: torch.Tensor, fc1_weight: torch.Tensor,
        fc1_bias: Optional[torch.Tensor], fc2_weight: torch.Tensor,
        fc2_bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Equals :func:`plain_mlp` in value and gradient.

    The CPU implementation runs :func:`chunked_mlp`, and with gradients
    recomputes each chunk's hidden activation in backward; ``sdpa``
    recomputes the GELU in backward (:func:`~mmseg.models.ops.gelu_linear`).

    Args:
        x: ``... x C`` tokens.

    Returns:
        Tensor: ``... x C_out``.
    """
    impl = implementation_for(x)
    if impl == 'reference':
        return plain_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    if impl == 'cpu':
        if torch.is_grad_enabled():
            return recomputed_mlp(x, fc1_weight, fc1_bias, fc2_weight,
                                  fc2_bias)
        return chunked_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    if torch.is_grad_enabled():
        return gelu_linear(F.linear(x, fc1_weight, fc1_bias), fc2_weight,
                           fc2_bias)
    return plain_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
