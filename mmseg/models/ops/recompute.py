"""Activations computed again in backward instead of kept for it."""
import contextlib
from typing import Callable, ContextManager, Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from mmseg.utils.glibc_heap import release_freed_heap
from .switch import implementation_for


# set by each forward that will recompute; cleared when the heap is released
_heap_release_due = False


@contextlib.contextmanager
def _recomputation(state_of: Optional[nn.Module],
                   device: torch.device) -> Iterator[None]:
    """The scope of a recomputation in backward.

    The batch-norm layers of ``state_of`` normalise with the batch's
    statistics again but must not count the batch twice in their running
    statistics, which are restored on exit.

    On CPU the first recomputation after a forward hands the heap's freed
    pages back to the system: what backward has freed until then (the
    head's activations) is scattered through the heap, and the recomputed
    activations would otherwise be resident on top of it. Later ones do not:
    their pages would be faulted in again right away. SenFormerNWS-R50,
    batch 2 at 512 x 512, 2 threads: peak resident memory 4.2 -> 3.4 GB
    (1e9 bytes), step time within 2 % (releasing at every recomputation:
    the same memory, 3-5 % more time).
    """
    global _heap_release_due
    norms = [] if state_of is None else [
        m for m in state_of.modules()
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
    ]
    kept = [(m.running_mean.clone(), m.running_var.clone(),
             m.num_batches_tracked.clone()) for m in norms]
    if device.type == 'cpu' and _heap_release_due:
        _heap_release_due = False
        release_freed_heap()
    try:
        yield
    finally:
        for m, (mean, var, count) in zip(norms, kept):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


def recomputed(function: Callable[..., torch.Tensor],
               x: torch.Tensor,
               *args,
               state_of: Optional[nn.Module] = None,
               enabled: bool = True) -> torch.Tensor:
    """``function(x, *args)``, its activations computed again in backward
    instead of kept for it; equal to it in value, gradient and module state.

    ``state_of`` is the module ``function`` runs: its batch-norm running
    statistics are updated by the forward only, as without recomputation
    (``torch.utils.checkpoint`` alone would update them twice). Random
    operations (dropout, drop path) draw the same values again.

    A plain call when not ``enabled``, when ``x`` needs no gradient, and
    under the reference implementation, which keeps everything.
    """
    if not (enabled and torch.is_grad_enabled() and x.requires_grad) or \
            implementation_for(x) == 'reference':
        return function(x, *args)
    global _heap_release_due
    _heap_release_due = True
    return checkpoint(
        function,
        x,
        *args,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(),
                            _recomputation(state_of, x.device)))


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
