"""Token attention layers of the SenFormer learners (ViT layout).

On CPU in full precision the learners' cross-attention runs on the
key-block kernels here (an online softmax over blocks of keys, optionally
projecting the keys and values block by block); elsewhere it calls
``F.scaled_dot_product_attention``. Dropout and stochastic depth are 0 in
every published SenFormer config, so these layers have none.
"""
import contextlib
from typing import Iterable, Iterator, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .gelu_linear import gelu_linear

KeysValues = Tuple[torch.Tensor, torch.Tensor]

# keys per block of key_block_attention: the fastest of 512 to 8192 for 150
# queries over 16384 keys on CPU
KEY_BLOCK = 2048
# its running sums need full precision; reduced precision takes PyTorch's
# fused kernel, which accumulates in float32
_FULL_PRECISION = (torch.float32, torch.float64)
_key_blocks_enabled = True


def attends_by_key_block(x: torch.Tensor) -> bool:
    """Whether cross-attention with queries or tokens ``x`` takes the
    key-block kernels here: on CPU, in full precision, outside autocast."""
    return (_key_blocks_enabled and x.device.type == 'cpu'
            and x.dtype in _FULL_PRECISION
            and not torch.is_autocast_enabled('cpu'))


@contextlib.contextmanager
def reference_attention() -> Iterator[None]:
    """Within the context, cross-attention always projects whole keys and
    values and calls ``F.scaled_dot_product_attention`` (the key-block path
    is off): for counting FLOPs as the reference computation does them,
    without the scores and projections the key-block backward redoes."""
    global _key_blocks_enabled
    enabled, _key_blocks_enabled = _key_blocks_enabled, False
    try:
        yield
    finally:
        _key_blocks_enabled = enabled


def _bmm(a: torch.Tensor,
         b: torch.Tensor,
         out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``B x heads x n x m`` @ ``B x heads x m x p``, image by image.

    Keys and values are head-strided views of ``B x HW x C`` tokens, which
    ``torch.matmul`` would copy to flatten the batch and head dimensions;
    ``bmm`` reads them (and writes ``out``) in place.
    """
    if out is None:
        out = a.new_empty(a.shape[:-1] + b.shape[-1:])
    for i in range(len(a)):
        torch.bmm(a[i], b[i], out=out[i])
    return out


def _key_slices(num_keys: int) -> Iterator[slice]:
    for start in range(0, num_keys, KEY_BLOCK):
        yield slice(start, min(start + KEY_BLOCK, num_keys))


def _split_heads(kv: torch.Tensor, num_heads: int) -> KeysValues:
    """``B x n x 2C`` projected tokens -> keys and values, each a
    ``B x heads x n x d`` view."""
    B, n, double_dims = kv.shape
    kv = kv.view(B, n, 2, num_heads, double_dims // (2 * num_heads))
    return tuple(kv.permute(2, 0, 3, 1, 4).unbind(0))


def _online_softmax(scaled_q: torch.Tensor, blocks: Iterable[KeysValues]
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention over successive blocks of keys and values: the output and
    the log-sum-exp of every query's scores (``B x heads x Nq x 1``)."""
    out = row_max = normaliser = None
    for keys, values in blocks:
        scores = _bmm(scaled_q, keys.transpose(-1, -2))
        block_max = scores.amax(dim=-1, keepdim=True)
        if out is None:
            row_max = block_max
            weights = scores.sub_(row_max).exp_()
            normaliser = weights.sum(dim=-1, keepdim=True)
            out = _bmm(weights, values)
            continue
        new_max = torch.maximum(row_max, block_max)
        rescale = (row_max - new_max).exp_()
        row_max = new_max
        weights = scores.sub_(row_max).exp_()
        normaliser.mul_(rescale).add_(weights.sum(dim=-1, keepdim=True))
        out.mul_(rescale).add_(_bmm(weights, values))
    return out.div_(normaliser), row_max.add_(normaliser.log_())


def _block_backward(scaled_q: torch.Tensor, keys: torch.Tensor,
                    values: torch.Tensor, grad_out: torch.Tensor,
                    grad_out_dot_out: torch.Tensor,
                    log_normaliser: torch.Tensor, grad_q: torch.Tensor,
                    grad_keys: torch.Tensor, grad_values: torch.Tensor):
    """One block of keys' share of the attention gradients: accumulated
    into ``grad_q`` (of the scaled queries), written into ``grad_keys`` and
    ``grad_values``. With P the block's softmax weights, recomputed from the
    log-sum-exp: ``dV = P^T dO`` and ``dS = P * (dO V^T - rowsum(dO * O))``.
    """
    probs = _bmm(scaled_q, keys.transpose(-1, -2)).sub_(
        log_normaliser).exp_()
    _bmm(probs.transpose(-1, -2), grad_out, out=grad_values)
    grad_scores = _bmm(grad_out, values.transpose(-1, -2))
    grad_scores.sub_(grad_out_dot_out).mul_(probs)
    grad_q.add_(_bmm(grad_scores, keys))
    _bmm(grad_scores.transpose(-1, -2), scaled_q, out=grad_keys)


class _KeyBlockAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v):
        scale = q.shape[-1]**-0.5
        blocks = ((k[:, :, keys], v[:, :, keys])
                  for keys in _key_slices(k.shape[2]))
        out, log_normaliser = _online_softmax(q * scale, blocks)
        ctx.save_for_backward(q, k, v, out, log_normaliser)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, log_normaliser = ctx.saved_tensors
        scale = q.shape[-1]**-0.5
        scaled_q = q * scale
        grad_out_dot_out = (grad_out * out).sum(dim=-1, keepdim=True)
        B, heads, L, d = k.shape
        # laid out as the B x HW x C tokens the keys and values come from
        grad_k = k.new_empty(B, L, heads, d).transpose(1, 2)
        grad_v = v.new_empty(B, L, heads, d).transpose(1, 2)
        grad_q = torch.zeros_like(q)
        for keys in _key_slices(L):
            _block_backward(scaled_q, k[:, :, keys], v[:, :, keys], grad_out,
                            grad_out_dot_out, log_normaliser, grad_q,
                            grad_k[:, :, keys], grad_v[:, :, keys])
        return grad_q.mul_(scale), grad_k, grad_v


def key_block_attention(q: torch.Tensor, k: torch.Tensor,
                        v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over blocks of keys (online softmax),
    with a backward that recomputes the scores block by block.

    For a few queries over many keys, as the learners' cross-attention at
    stride 4 (150 x 16384). PyTorch's fused CPU kernel tiles fewer than 192
    queries in blocks of 32, so its matrix products stay small; here all the
    queries meet a block of keys in one product. At that size on 2 threads:
    forward 0.14 s -> 0.11 s, backward 0.41 s -> 0.33 s. Like the fused
    kernel it keeps only ``q``, ``k``, ``v``, the output and one
    log-sum-exp per query for backward.

    Args:
        q: ``B x heads x Nq x d``.
        k, v: ``B x heads x Nk x d``.

    Returns:
        Tensor: ``B x heads x Nq x d``.
    """
    return _KeyBlockAttention.apply(q, k, v)


class _TokenBlockAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, tokens, kv_weight, kv_bias):
        heads = q.shape[1]
        scale = q.shape[-1]**-0.5

        def blocks():
            for keys in _key_slices(tokens.shape[1]):
                yield _split_heads(
                    F.linear(tokens[:, keys], kv_weight, kv_bias), heads)

        out, log_normaliser = _online_softmax(q * scale, blocks())
        ctx.save_for_backward(q, tokens, kv_weight, kv_bias, out,
                              log_normaliser)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, tokens, kv_weight, kv_bias, out, log_normaliser = ctx.saved_tensors
        heads = q.shape[1]
        scale = q.shape[-1]**-0.5
        scaled_q = q * scale
        grad_out_dot_out = (grad_out * out).sum(dim=-1, keepdim=True)
        grad_q = torch.zeros_like(q)
        grad_tokens = torch.empty_like(tokens)
        grad_weight = torch.zeros_like(kv_weight)
        grad_bias = torch.zeros_like(kv_bias)
        for keys in _key_slices(tokens.shape[1]):
            block_tokens = tokens[:, keys]
            kv = F.linear(block_tokens, kv_weight, kv_bias)
            grad_kv = torch.empty_like(kv)
            _block_backward(scaled_q, *_split_heads(kv, heads), grad_out,
                            grad_out_dot_out, log_normaliser, grad_q,
                            *_split_heads(grad_kv, heads))
            del kv
            for i in range(len(tokens)):
                torch.mm(grad_kv[i], kv_weight, out=grad_tokens[i, keys])
                grad_weight.addmm_(grad_kv[i].t(), block_tokens[i])
            grad_bias.add_(grad_kv.sum(dim=(0, 1)))
        return grad_q.mul_(scale), grad_tokens, grad_weight, grad_bias


def token_block_attention(q: torch.Tensor, tokens: torch.Tensor,
                          kv_weight: torch.Tensor,
                          kv_bias: torch.Tensor) -> torch.Tensor:
    """:func:`key_block_attention` over keys and values projected from the
    tokens one block at a time, in forward and again in backward.

    The ``B x HW x 2C`` keys and values never exist whole: at stride 4
    (512 x 512, batch 2) that is 128 MB per block in forward, its recomputed
    copy and its gradient in backward, all fresh pages; here each key block
    projects 4 MB, and the token and weight gradients are accumulated block
    by block. Costs one more projection in backward, as
    :class:`~mmseg.models.utils.learner.KeysValuesRecompute` does.

    Args:
        q: ``B x heads x Nq x d`` queries.
        tokens: ``B x HW x C``.
        kv_weight, kv_bias: the ``C -> 2C`` projection to keys (first half)
            and values.

    Returns:
        Tensor: ``B x heads x Nq x d``.
    """
    return _TokenBlockAttention.apply(q, tokens, kv_weight, kv_bias)


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
        ``B x heads x HW x d``; reusable while the tokens and weights are.

        Keys and values are two products with the halves of ``kv``: the
        attention's gradients for them then come back as views of
        ``B x HW x C`` tensors, where one fused product would need them
        copied into its ``B x HW x 2C`` layout.
        """
        B, L, C = tokens.shape
        return tuple(
            F.linear(tokens, weight, bias).view(
                B, L, self.num_heads, C // self.num_heads).transpose(1, 2)
            for weight, bias in self.kv_halves())

    def kv_halves(self):
        """``(weight, bias)`` of the key projection, then of the value
        projection: the halves of ``kv``."""
        return tuple(zip(self.kv.weight.chunk(2), self.kv.bias.chunk(2)))

    def forward(self, queries: torch.Tensor,
                pixels: Union[KeysValues, torch.Tensor]) -> torch.Tensor:
        """
        Args:
            queries: ``B x K x C``.
            pixels: keys and values from :meth:`keys_values`, or the
                ``B x HW x C`` tokens themselves: then, on the key-block
                path, keys and values are projected block by block and
                never kept (:func:`token_block_attention`).

        Returns:
            Tensor: ``B x K x C``.
        """
        B, K, C = queries.shape
        q = self.to_q(queries).view(B, K, self.num_heads,
                                    C // self.num_heads).transpose(1, 2)
        if isinstance(pixels, torch.Tensor):
            if attends_by_key_block(q):
                out = token_block_attention(q, pixels, self.kv.weight,
                                            self.kv.bias)
                return self.proj(out.transpose(1, 2).reshape(B, K, C))
            pixels = self.keys_values(pixels)
        if attends_by_key_block(q):
            out = key_block_attention(q, *pixels)
        else:
            out = F.scaled_dot_product_attention(q, *pixels)
        return self.proj(out.transpose(1, 2).reshape(B, K, C))


class Mlp(nn.Module):
    """``C -> hidden -> C`` with GELU (keys ``fc1``, ``fc2``)."""

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_linear(self.fc1(x), self.fc2.weight, self.fc2.bias)
