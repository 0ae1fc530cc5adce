"""FLOP counting that also sees the fused attention kernels.

``torch.utils.flop_counter.FlopCounterMode`` has no formula for the CPU
flash-attention kernel that ``scaled_dot_product_attention`` dispatches to,
so attention would count as free on CPU. The formulas registered here count
attention as the two matrix products it replaces (and their four gradient
products in backward), the same FLOPs as an explicit matmul + softmax
implementation, so figures compare across implementations and devices.
Counting runs the reference implementation of the model's operations
(:mod:`mmseg.models.ops`): the fast ones redo work in backward to save
memory (scores, keys and values, activations), which is not the model's.
"""
import math
from typing import Callable, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import ops

aten = torch.ops.aten

_ATTENTION_FORWARD = [
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
]
_ATTENTION_BACKWARD = [
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
]


def _attention_products(query_shape, key_shape, value_shape) -> int:
    """FLOPs of ``q @ k^T`` and ``attn @ v`` for ``... x L x d`` inputs."""
    batch = math.prod(query_shape[:-2])
    len_q, dims = query_shape[-2:]
    len_k, dims_v = key_shape[-2], value_shape[-1]
    return 2 * batch * len_q * len_k * (dims + dims_v)


def _forward_flops(query_shape, key_shape, value_shape, *args, **kwargs):
    return _attention_products(query_shape, key_shape, value_shape)


def _backward_flops(grad_out_shape, query_shape, key_shape, value_shape,
                    *args, **kwargs):
    return 2 * _attention_products(query_shape, key_shape, value_shape)


def count_flops(fn: Callable, *args, **kwargs) -> Tuple[int, object]:
    """Run ``fn(*args, **kwargs)`` on the reference implementation of the
    operations and count its FLOPs.

    Returns:
        tuple: total FLOPs (multiply-adds count 2) and ``fn``'s result.
    """
    formulas = {op: _forward_flops for op in _ATTENTION_FORWARD}
    formulas.update({op: _backward_flops for op in _ATTENTION_BACKWARD})
    counter = FlopCounterMode(display=False, custom_mapping=formulas)
    with counter, ops.implementation('reference'):
        result = fn(*args, **kwargs)
    return counter.get_total_flops(), result
