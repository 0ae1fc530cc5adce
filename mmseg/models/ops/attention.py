"""Attention: the plain computation, PyTorch's fused kernel, and the CPU
kernels over blocks of keys.

The CPU kernels serve the SenFormer learners' cross-attention, a few class
queries over many pixels (150 over 16384 at stride 4, 512 x 512): an online
softmax over blocks of keys whose backward recomputes the scores block by
block (:func:`key_block_attention`), optionally projecting the keys and
values from the tokens block by block too (:func:`token_block_attention`).
The dispatching functions (:func:`attention`, :func:`cross_attention_kv`,
:func:`cross_attention`) take the implementation of
:mod:`mmseg.models.ops.switch`.
"""
from typing import Callable, Iterable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .recompute import recompute_keys_values
from .switch import implementation_for

KeysValues = Tuple[torch.Tensor, torch.Tensor]

# keys per block of the CPU kernels: the fastest of 512 to 8192 for 150
# queries over 16384 keys on CPU
KEY_BLOCK = 2048


def plain_attention(q: torch.Tensor,
                    k: torch.Tensor,
                    v: torch.Tensor,
                    attn_mask: Optional[torch.Tensor] = None,
                    scale: Optional[float] = None) -> torch.Tensor:
    """``softmax(q k^T * scale + attn_mask) v``, written out; ``scale``
    defaults to ``d ** -0.5``.

    Args:
        q: ``... x Nq x d``; k, v: ``... x Nk x d``.
        attn_mask: additive, broadcast to ``... x Nq x Nk``, or None.
    """
    if scale is None:
        scale = q.shape[-1]**-0.5
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    if attn_mask is not None:
        scores = scores + attn_mask
    return torch.matmul(scores.softmax(dim=-1), v)


def plain_projected_attention(q: torch.Tensor, tokens: torch.Tensor,
                              kv_weight: torch.Tensor,
                              kv_bias: torch.Tensor) -> torch.Tensor:
    """:func:`plain_attention` of ``B x heads x Nq x d`` queries over the
    keys and values ``F.linear(tokens, kv_weight, kv_bias)`` (keys the first
    half) of ``B x HW x C`` tokens."""
    keys, values = _split_heads(
        F.linear(tokens, kv_weight, kv_bias), q.shape[1])
    return plain_attention(q, keys, values)


def _key_slices(num_keys: int, key_block: int) -> Iterator[slice]:
    for start in range(0, num_keys, key_block):
        yield slice(start, min(start + key_block, num_keys))


def _split_heads(kv: torch.Tensor, num_heads: int) -> KeysValues:
    """``B x n x 2C`` projected tokens -> keys and values, each a
    ``B x heads x n x d`` view."""
    B, n, double_dims = kv.shape
    kv = kv.view(B, n, 2, num_heads, double_dims // (2 * num_heads))
    return tuple(kv.permute(2, 0, 3, 1, 4).unbind(0))


def _online_softmax(scaled_q: torch.Tensor, blocks: Iterable[KeysValues]
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image's attention over successive blocks of keys and values.

    Args:
        scaled_q: ``heads x Nq x d`` queries, scaled.
        blocks: transposed keys and values, ``heads x d x n`` each.

    Returns:
        tuple: the output ``heads x Nq x d`` and the log-sum-exp of every
        query's scores, ``heads x Nq x 1``.
    """
    out = row_max = normaliser = None
    for keys_t, values_t in blocks:
        scores = torch.bmm(scaled_q, keys_t)
        block_max = scores.amax(dim=-1, keepdim=True)
        if out is None:
            row_max = block_max
            weights = scores.sub_(row_max).exp_()
            normaliser = weights.sum(dim=-1, keepdim=True)
            out = torch.bmm(weights, values_t.transpose(1, 2))
            continue
        new_max = torch.maximum(row_max, block_max)
        rescale = (row_max - new_max).exp_()
        row_max = new_max
        weights = scores.sub_(row_max).exp_()
        normaliser.mul_(rescale).add_(weights.sum(dim=-1, keepdim=True))
        out.mul_(rescale).baddbmm_(weights, values_t.transpose(1, 2))
    return out.div_(normaliser), row_max.add_(normaliser.log_())


def _online_softmax_by_image(
        q: torch.Tensor, blocks: Callable[[int], Iterable[KeysValues]]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`_online_softmax` of every image of ``B x heads x Nq x d``
    queries, ``blocks(i)`` giving image i's blocks; the outputs and
    log-sum-exps stacked, ``B x heads x Nq x d`` and ``B x heads x Nq x
    1``."""
    scale = q.shape[-1]**-0.5
    outs, log_normalisers = zip(*(_online_softmax(q[i] * scale, blocks(i))
                                  for i in range(len(q))))
    return torch.stack(outs), torch.stack(log_normalisers)


def _block_backward(scaled_q: torch.Tensor, keys_t: torch.Tensor,
                    values_t: torch.Tensor, grad_out: torch.Tensor,
                    grad_out_dot_out: torch.Tensor,
                    log_normaliser: torch.Tensor, grad_q: torch.Tensor,
                    grad_keys_t: torch.Tensor,
                    grad_values_t: torch.Tensor) -> None:
    """One image's and one block of keys' share of the attention gradients:
    accumulated into ``grad_q`` (of the scaled queries), written into
    ``grad_keys_t`` and ``grad_values_t`` (``heads x d x n``, contiguous).
    With P the block's softmax weights, recomputed from the log-sum-exp:
    ``dV = P^T dO`` and ``dS = P * (dO V^T - rowsum(dO * O))``.
    """
    probs = torch.bmm(scaled_q, keys_t).sub_(log_normaliser).exp_()
    torch.bmm(grad_out.transpose(1, 2), probs, out=grad_values_t)
    grad_scores = torch.bmm(grad_out, values_t)
    grad_scores.sub_(grad_out_dot_out).mul_(probs)
    grad_q.baddbmm_(grad_scores, keys_t.transpose(1, 2))
    torch.bmm(scaled_q.transpose(1, 2), grad_scores, out=grad_keys_t)


class _KeyBlockAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, key_block):

        def blocks(image):
            for keys in _key_slices(k.shape[2], key_block):
                yield (k[image, :, keys].transpose(1, 2),
                       v[image, :, keys].transpose(1, 2))

        out, log_normaliser = _online_softmax_by_image(q, blocks)
        ctx.save_for_backward(q, k, v, out, log_normaliser)
        ctx.key_block = key_block
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
        for i in range(B):
            for keys in _key_slices(L, ctx.key_block):
                grad_keys_t = k.new_empty(heads, d, keys.stop - keys.start)
                grad_values_t = torch.empty_like(grad_keys_t)
                _block_backward(scaled_q[i], k[i, :, keys].transpose(1, 2),
                                v[i, :, keys].transpose(1, 2), grad_out[i],
                                grad_out_dot_out[i], log_normaliser[i],
                                grad_q[i], grad_keys_t, grad_values_t)
                grad_k[i, :, keys] = grad_keys_t.transpose(1, 2)
                grad_v[i, :, keys] = grad_values_t.transpose(1, 2)
        return grad_q.mul_(scale), grad_k, grad_v, None


def key_block_attention(q: torch.Tensor,
                        k: torch.Tensor,
                        v: torch.Tensor,
                        key_block: int = KEY_BLOCK) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over blocks of keys (online softmax),
    with a backward that recomputes the scores block by block.

    For a few queries over many keys, as the learners' cross-attention at
    stride 4 (150 x 16384). PyTorch's fused CPU kernel tiles fewer than 192
    queries in blocks of 32, so its matrix products stay small; here all the
    queries meet a block of keys in one product. At that size on 2 threads:
    forward 0.14 s -> 0.11 s, backward 0.41 s -> 0.33 s. Like the fused
    kernel it keeps only ``q``, ``k``, ``v``, the output and one
    log-sum-exp per query for backward.

    Equals :func:`plain_attention` in value and gradient.

    Args:
        q: ``B x heads x Nq x d``.
        k, v: ``B x heads x Nk x d``.
        key_block: keys per block.

    Returns:
        Tensor: ``B x heads x Nq x d``.
    """
    return _KeyBlockAttention.apply(q, k, v, key_block)


def _project_transposed(tokens: torch.Tensor, kv_weight: torch.Tensor,
                        kv_bias: torch.Tensor) -> torch.Tensor:
    """``2C x n`` keys and values of ``n x C`` tokens, transposed: the
    heads' keys and values are then contiguous ``heads x d x n`` blocks of
    it (:func:`_split_heads_transposed`), which the attention products read
    at full speed."""
    return torch.addmm(kv_bias[:, None], kv_weight, tokens.t())


def _split_heads_transposed(kv_t: torch.Tensor,
                            num_heads: int) -> KeysValues:
    """``2C x n`` transposed keys and values (or their gradient) -> keys
    and values, each a contiguous ``heads x d x n`` view."""
    return tuple(kv_t.view(2, num_heads, -1, kv_t.shape[1]).unbind(0))


class _TokenBlockAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, tokens, kv_weight, kv_bias, key_block):

        def blocks(image):
            for keys in _key_slices(tokens.shape[1], key_block):
                yield _split_heads_transposed(
                    _project_transposed(tokens[image, keys], kv_weight,
                                        kv_bias), q.shape[1])

        out, log_normaliser = _online_softmax_by_image(q, blocks)
        ctx.save_for_backward(q, tokens, kv_weight, kv_bias, out,
                              log_normaliser)
        ctx.key_block = key_block
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, tokens, kv_weight, kv_bias, out, log_normaliser = ctx.saved_tensors
        B, heads, _, d = q.shape
        scale = d**-0.5
        scaled_q = q * scale
        grad_out_dot_out = (grad_out * out).sum(dim=-1, keepdim=True)
        grad_q = torch.zeros_like(q)
        grad_tokens = torch.empty_like(tokens)
        grad_weight = torch.zeros_like(kv_weight)
        grad_bias = torch.zeros_like(kv_bias)
        for i in range(B):
            for keys in _key_slices(tokens.shape[1], ctx.key_block):
                block_tokens = tokens[i, keys]
                keys_t, values_t = _split_heads_transposed(
                    _project_transposed(block_tokens, kv_weight, kv_bias),
                    heads)
                grad_kv_t = tokens.new_empty(2 * heads * d, len(block_tokens))
                grad_keys_t, grad_values_t = _split_heads_transposed(
                    grad_kv_t, heads)
                _block_backward(scaled_q[i], keys_t, values_t, grad_out[i],
                                grad_out_dot_out[i], log_normaliser[i],
                                grad_q[i], grad_keys_t, grad_values_t)
                del keys_t, values_t
                torch.mm(grad_kv_t.t(), kv_weight, out=grad_tokens[i, keys])
                grad_weight.addmm_(grad_kv_t, block_tokens)
                grad_bias.add_(grad_kv_t.sum(dim=1))
        return grad_q.mul_(scale), grad_tokens, grad_weight, grad_bias, None


def token_block_attention(q: torch.Tensor,
                          tokens: torch.Tensor,
                          kv_weight: torch.Tensor,
                          kv_bias: torch.Tensor,
                          key_block: int = KEY_BLOCK) -> torch.Tensor:
    """:func:`key_block_attention` over keys and values projected from the
    tokens one block at a time, in forward and again in backward.

    The ``B x HW x 2C`` keys and values never exist whole: at stride 4
    (512 x 512, batch 2) that is 128 MB per block in forward, its recomputed
    copy and its gradient in backward, all fresh pages; here each key block
    projects 4 MB, and the token and weight gradients are accumulated block
    by block. Costs one more projection in backward, as
    :func:`~mmseg.models.ops.recompute_keys_values` does. Equals
    :func:`plain_projected_attention` in value and gradient.

    Args:
        q: ``B x heads x Nq x d`` queries.
        tokens: ``B x HW x C``.
        kv_weight, kv_bias: the ``C -> 2C`` projection to keys (first half)
            and values.
        key_block: keys per block.

    Returns:
        Tensor: ``B x heads x Nq x d``.
    """
    return _TokenBlockAttention.apply(q, tokens, kv_weight, kv_bias,
                                      key_block)


def attention(q: torch.Tensor,
              k: torch.Tensor,
              v: torch.Tensor,
              attn_mask: Optional[torch.Tensor] = None,
              scale: Optional[float] = None,
              dropout_p: float = 0.) -> torch.Tensor:
    """``softmax(q k^T * scale + attn_mask) v``: PyTorch's
    ``scaled_dot_product_attention``, or :func:`plain_attention` under the
    reference implementation (which has no dropout).

    Args:
        q: ``B x heads x Nq x d``; k, v: ``B x heads x Nk x d``.
        attn_mask: additive, broadcast to ``B x heads x Nq x Nk``, or None.
        scale: defaults to ``d ** -0.5``.
    """
    if implementation_for(q) == 'reference' and not dropout_p:
        return plain_attention(q, k, v, attn_mask, scale)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)


def cross_attention_kv(q: torch.Tensor, k: torch.Tensor,
                       v: torch.Tensor) -> torch.Tensor:
    """:func:`attention` of a few queries over many keys and values (the
    learners' class queries over the pixels), ``B x heads x N x d`` each;
    on the CPU implementation by :func:`key_block_attention`. Equal in value
    and gradient."""
    if implementation_for(q) == 'cpu':
        return key_block_attention(q, k, v)
    return attention(q, k, v)


def cross_attention(q: torch.Tensor, tokens: torch.Tensor,
                    kv_weight: torch.Tensor, kv_bias: torch.Tensor,
                    recompute: bool) -> torch.Tensor:
    """Attention of ``B x heads x Nq x d`` queries over the keys and values
    projected from ``B x HW x C`` tokens by ``kv_weight``, ``kv_bias``
    (keys the first half); equals :func:`plain_projected_attention` in value
    and gradient.

    With ``recompute`` (in training) the fast implementations keep the
    tokens instead of the ``B x HW x 2C`` keys and values for backward and
    project them again there: the CPU kernels block by block
    (:func:`token_block_attention`), the others whole
    (:func:`~mmseg.models.ops.recompute_keys_values`). On CPU without
    ``recompute``, the keys and values are kept and the key-block kernel
    attends them.
    """
    impl = implementation_for(q)
    if impl == 'reference':
        return plain_projected_attention(q, tokens, kv_weight, kv_bias)
    if impl == 'cpu' and (recompute or not torch.is_grad_enabled()):
        return token_block_attention(q, tokens, kv_weight, kv_bias)
    keys_values = project_keys_values(tokens, kv_weight, kv_bias, q.shape[1])
    with recompute_keys_values(tokens, kv_weight, kv_bias, keys_values,
                               enabled=recompute):
        return cross_attention_kv(q, *keys_values)


def project_keys_values(tokens: torch.Tensor, kv_weight: torch.Tensor,
                        kv_bias: torch.Tensor, num_heads: int) -> KeysValues:
    """Keys and values ``B x heads x HW x d`` of ``B x HW x C`` tokens.

    They are two products with the halves of the projection: their
    gradients then come back as views of ``B x HW x C`` tensors, where one
    fused product would need them copied into its ``B x HW x 2C`` layout.
    """
    B, L, C = tokens.shape
    return tuple(
        F.linear(tokens, weight, bias).view(B, L, num_heads,
                                            C // num_heads).transpose(1, 2)
        for weight, bias in zip(kv_weight.chunk(2), kv_bias.chunk(2)))
