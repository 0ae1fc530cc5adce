"""Keys and values projected again in backward instead of kept for it."""
import contextlib
from typing import ContextManager, Tuple

import torch
import torch.nn.functional as F

from .switch import implementation_for


class _KeysValuesRecompute:
    """Saved-tensor hooks that keep, instead of keys and values, the tokens
    they are projected from, and project them again in backward.

    The attention kernels save their keys and values for backward: at
    stride 4 that is ``B x HW x 2C`` per learner block (134 MB at 512 x 512,
    batch 2), the largest part of the head's training memory. The tokens
    are saved anyway (by the projection itself), so only one projection is
    redone per block in backward, and its result is freed once the block's
    backward has used it.
    """

    def __init__(self, tokens: torch.Tensor, kv_weight: torch.Tensor,
                 kv_bias: torch.Tensor,
                 keys_values: Tuple[torch.Tensor, torch.Tensor]):
        self.tokens = tokens
        self.dtype = keys_values[0].dtype  # autocast may have lowered it
        # storage -> the half of the kv projection that made it
        halves = zip(kv_weight.chunk(2), kv_bias.chunk(2))
        self.halves = {
            t.untyped_storage().data_ptr(): half
            for t, half in zip(keys_values, halves)
        }
        self.saved = {storage: 0 for storage in self.halves}
        self.pending = dict(self.saved)
        self.projections = {}

    def pack(self, tensor: torch.Tensor):
        storage = tensor.untyped_storage().data_ptr()
        if storage not in self.halves:
            return tensor
        self.saved[storage] += 1
        self.pending[storage] += 1
        return storage, tensor.size(), tensor.stride(), \
            tensor.storage_offset()

    def unpack(self, packed):
        if isinstance(packed, torch.Tensor):
            return packed
        storage, *view_args = packed
        if storage not in self.projections:
            with torch.no_grad():
                weight, bias = self.halves[storage]
                self.projections[storage] = F.linear(
                    self.tokens.to(self.dtype), weight.to(self.dtype),
                    bias.to(self.dtype))
        view = self.projections[storage].as_strided(*view_args)
        self.pending[storage] -= 1
        if self.pending[storage] == 0:  # its last saved view is in use
            del self.projections[storage]
            self.pending[storage] = self.saved[storage]
        return view


def recompute_keys_values(tokens: torch.Tensor,
                          kv_weight: torch.Tensor,
                          kv_bias: torch.Tensor,
                          keys_values: Tuple[torch.Tensor, torch.Tensor],
                          enabled: bool = True) -> ContextManager:
    """A scope in which what autograd saves of ``keys_values`` (projected
    from ``tokens`` by the halves of ``kv_weight``, ``kv_bias``) is
    projected again in backward instead of kept; gradients are equal.

    A no-op when not ``enabled``, without gradients, and under the
    reference implementation, which keeps everything.
    """
    if not (enabled and torch.is_grad_enabled()) or \
            implementation_for(tokens) == 'reference':
        return contextlib.nullcontext()
    hooks = _KeysValuesRecompute(tokens, kv_weight, kv_bias, keys_values)
    return torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack)
