"""Token attention layers of the SenFormer learners (ViT layout).

Dropout and stochastic depth are 0 in every published SenFormer config, so
these layers have none.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gelu_linear import gelu_linear

KeysValues = Tuple[torch.Tensor, torch.Tensor]


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
        out = F.scaled_dot_product_attention(
            q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a token sequence.

    Args:
        dims: channels C of queries and tokens.
        num_heads: heads; C must be divisible by it.
    """

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(dims, dims)
        self.kv = nn.Linear(dims, dims * 2)
        self.proj = nn.Linear(dims, dims)

    def keys_values(self, tokens: torch.Tensor) -> KeysValues:
        """Project ``B x HW x C`` tokens to per-head keys and values, each
        ``B x heads x HW x d``; reusable while the tokens and weights are."""
        B, L, C = tokens.shape
        kv = self.kv(tokens).view(B, L, 2, self.num_heads,
                                  C // self.num_heads)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return k, v

    def forward(self, queries: torch.Tensor,
                keys_values: KeysValues) -> torch.Tensor:
        """
        Args:
            queries: ``B x K x C``.
            keys_values: from :meth:`keys_values`.

        Returns:
            Tensor: ``B x K x C``.
        """
        B, K, C = queries.shape
        q = self.to_q(queries).view(B, K, self.num_heads,
                                    C // self.num_heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, *keys_values)
        return self.proj(out.transpose(1, 2).reshape(B, K, C))


class Mlp(nn.Module):
    """``C -> hidden -> C`` with GELU (keys ``fc1``, ``fc2``)."""

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_linear(self.fc1(x), self.fc2.weight, self.fc2.bias)
