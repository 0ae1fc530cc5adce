"""Token attention layers of the SenFormer learners (ViT layout).

Dropout and stochastic depth are 0 in every published SenFormer config, so
these layers have none. The attention itself is an operation of
:mod:`mmseg.models.ops`.
"""
from typing import Optional

import torch
import torch.nn as nn

from .. import ops


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection.

    Args:
        dims: token channels C.
        num_heads: heads; C must be divisible by it.
    """

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dims, dims * 3)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x N x C`` -> ``B x N x C``."""
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # B x h x N x d
        out = ops.attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a token sequence.

    Args:
        dims: channels C of queries and tokens.
        num_heads: heads; C must be divisible by it.
        recompute_keys_values: in training, project the keys and values
            again in backward instead of keeping them (same gradients).
    """

    def __init__(self,
                 dims: int,
                 num_heads: int,
                 recompute_keys_values: bool = False):
        super().__init__()
        if dims % num_heads:
            raise ValueError(f'CrossAttention: dims {dims} must be '
                             f'divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.recompute_keys_values = recompute_keys_values
        self.to_q = nn.Linear(dims, dims)
        self.kv = nn.Linear(dims, dims * 2)
        self.proj = nn.Linear(dims, dims)

    def keys_values(self, tokens: torch.Tensor) -> ops.KeysValues:
        """Keys and values of ``B x HW x C`` tokens, each
        ``B x heads x HW x d``; reusable while the tokens and weights are."""
        return ops.project_keys_values(tokens, self.kv.weight, self.kv.bias,
                                       self.num_heads)

    def forward(self,
                queries: torch.Tensor,
                tokens: torch.Tensor,
                keys_values: Optional[ops.KeysValues] = None
                ) -> torch.Tensor:
        """
        Args:
            queries: ``B x K x C``.
            tokens: ``B x HW x C``.
            keys_values: the tokens' :meth:`keys_values` when already
                projected, or None.

        Returns:
            Tensor: ``B x K x C``.
        """
        B, K, C = queries.shape
        q = self.to_q(queries).view(B, K, self.num_heads,
                                    C // self.num_heads).transpose(1, 2)
        if keys_values is None:
            out = ops.cross_attention(q, tokens, self.kv.weight, self.kv.bias,
                                      self.recompute_keys_values)
        else:
            out = ops.cross_attention_kv(q, *keys_values)
        return self.proj(out.transpose(1, 2).reshape(B, K, C))


class Mlp(nn.Module):
    """``C -> hidden -> C`` with GELU (keys ``fc1``, ``fc2``)."""

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.mlp(x, self.fc1.weight, self.fc1.bias, self.fc2.weight,
                       self.fc2.bias)
