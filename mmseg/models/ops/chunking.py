"""Inference on chunks of independent items (windows, tokens), so that the
intermediate tensors of one chunk stay small.

Swin window attention at stride 4 (512 x 512) makes ``tokens x 3C`` keys,
queries and values and a permuted copy of them, 109 MB each, for 361
windows that never look at each other. Without gradients, the CPU
implementation attends a chunk of windows at a time and writes each
chunk's result into the output: the same values, with the forward's peak
memory 200 MB lower.
"""
from typing import Callable

import torch

from .switch import implementation_for

# items per chunk are chosen so that a chunk holds about this many tokens:
# 42 windows of 7 x 7
CHUNK_TOKENS = 2048


def over_chunks(fn: Callable[[slice], torch.Tensor],
                x: torch.Tensor,
                num_items: int,
                tokens_per_item: int,
                dim: int = 1,
                chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """``fn(slice(0, num_items))``, computed chunk by chunk without
    gradients on the CPU implementation.

    Args:
        fn: maps a slice of the items to their result, whose dimension
            ``dim`` runs over those items; each item's result may depend
            only on that item.
        x: the input, whose device, precision and gradient state choose
            the implementation.
        num_items: number of items (e.g. windows).
        tokens_per_item: tokens in one item, to size the chunks.
        dim: the items' dimension in ``fn``'s result.
        chunk_tokens: tokens per chunk (at least one item).

    Returns:
        Tensor: equal to ``fn(slice(0, num_items))``.
    """
    chunk = max(1, chunk_tokens // tokens_per_item)
    if (torch.is_grad_enabled() or num_items <= chunk
            or implementation_for(x) != 'cpu'):
        return fn(slice(0, num_items))
    out = None
    for start in range(0, num_items, chunk):
        items = slice(start, min(start + chunk, num_items))
        result = fn(items)
        if out is None:
            shape = list(result.shape)
            shape[dim] = num_items
            out = result.new_empty(shape)
        out.narrow(dim, start, items.stop - start).copy_(result)
    return out
