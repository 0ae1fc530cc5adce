"""The transformer MLP ``fc2(gelu(fc1(x)))``: the plain computation, and
token-chunked inference on CPU.

At stride 4 the hidden activation is large (16384 tokens x 2048 channels,
134 MB at 512 x 512, and as much again for its GELU): without gradients
the CPU implementation runs the MLP on chunks of tokens, so the hidden
chunk stays in cache, the ``tokens x 4C`` tensors never exist, and GELU is
applied inside the first product (oneDNN's fused linear + GELU, where
PyTorch has it). At 512 x 512 on one thread that is 615 ms -> 495 ms for
the FPNT's stride-4 MLP, and 270 MB less at the forward's peak.
"""
from typing import Optional

import torch
import torch.nn.functional as F

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


def _fused_linear_gelu_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, '_linear_pointwise')


def _linear_gelu(x: torch.Tensor, weight: torch.Tensor,
                 bias: Optional[torch.Tensor]) -> torch.Tensor:
    if x.dtype == torch.float32 and _fused_linear_gelu_available():
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


def mlp(x: torch.Tensor, fc1_weight: torch.Tensor,
        fc1_bias: Optional[torch.Tensor], fc2_weight: torch.Tensor,
        fc2_bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Equals :func:`plain_mlp` in value and gradient.

    With gradients, the fast implementations recompute the GELU in backward
    (:func:`~mmseg.models.ops.gelu_linear`); without, the CPU one runs
    :func:`chunked_mlp`.

    Args:
        x: ``... x C`` tokens.

    Returns:
        Tensor: ``... x C_out``.
    """
    impl = implementation_for(x)
    if impl == 'reference':
        return plain_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    if torch.is_grad_enabled():
        return gelu_linear(F.linear(x, fc1_weight, fc1_bias), fc2_weight,
                           fc2_bias)
    if impl == 'cpu':
        return chunked_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    return plain_mlp(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
