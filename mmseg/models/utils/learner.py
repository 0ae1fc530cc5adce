"""The transformer learner of SenFormer: class queries decoded from one
pyramid level into a segmentation map."""
import contextlib
from typing import Union

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

from .attention import (CrossAttention, KeysValues, Mlp, SelfAttention,
                        attends_by_key_block)
from .token_layout import map_to_tokens


class LearnerBlock(nn.Module):
    """Decoder block: cross-attention to the pixels, self-attention among
    the class queries, MLP; each pre-normed with a residual.

    Args:
        dims: channels C.
        num_heads: attention heads.
        mlp_ratio: MLP width relative to C.
    """

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float = 4.):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.cross_attn = CrossAttention(dims, num_heads)
        self.norm2 = nn.LayerNorm(dims)
        self.attn = SelfAttention(dims, num_heads)
        self.norm3 = nn.LayerNorm(dims)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))

    def forward(self, queries: torch.Tensor,
                pixels: Union[KeysValues, torch.Tensor]) -> torch.Tensor:
        """``B x K x C`` queries attending the pixels: their keys and values
        (``self.cross_attn.keys_values(tokens)``) or their tokens."""
        q = queries + self.cross_attn(self.norm1(queries), pixels)
        q = q + self.attn(self.norm2(q))
        return q + self.mlp(self.norm3(q))


class KeysValuesRecompute:
    """Saved-tensor hooks that keep, instead of a block's keys and values,
    the tokens they are projected from, and project them again in backward.

    The attention kernels save their keys and values for backward: at
    stride 4 that is ``B x HW x 2C`` per block (134 MB per block at 512 x 512,
    batch 2), the largest part of the head's training memory. The tokens are
    saved anyway (by the projection itself), so only one projection is redone
    per block in backward and its result is freed once the block's backward
    has used it.

    Args:
        cross_attn: the block's cross-attention, whose ``keys_values``
            projected ``tokens``.
        tokens: ``B x HW x C``.
        keys_values: the keys and values being replaced.
    """

    def __init__(self, cross_attn: CrossAttention, tokens: torch.Tensor,
                 keys_values: KeysValues):
        self.tokens = tokens
        self.dtype = keys_values[0].dtype  # autocast may have lowered it
        # storage -> the half of the kv projection that made it
        self.halves = {
            t.untyped_storage().data_ptr(): half
            for t, half in zip(keys_values, cross_attn.kv_halves())
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
                self.projections[storage] = torch.nn.functional.linear(
                    self.tokens.to(self.dtype), weight.to(self.dtype),
                    bias.to(self.dtype))
        view = self.projections[storage].as_strided(*view_args)
        self.pending[storage] -= 1
        if self.pending[storage] == 0:  # its last saved view is in use
            del self.projections[storage]
            self.pending[storage] = self.saved[storage]
        return view

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(
            self.pack, self.unpack)


class TransformerLearner(nn.Module):
    """One SenFormer learner: K class queries decoded against a feature map;
    the logits are the dot products of pixel embeddings and class embeddings.

    Args:
        dims: channels C of the feature map.
        num_classes: number of queries K.
        num_heads: attention heads of the blocks.
        depth: decoder steps.
        share_block_weights: apply one block ``depth`` times ("repeated"
            weight sharing) instead of ``depth`` distinct blocks.
        recompute_keys_values: in training, project the cross-attention
            keys and values again in backward instead of keeping them; the
            results are the same. On the CPU key-block path distinct blocks
            project them per block of keys and never keep them whole
            (:func:`~mmseg.models.utils.attention.token_block_attention`);
            elsewhere saved-tensor hooks recompute them
            (:class:`KeysValuesRecompute`).
    """

    def __init__(self,
                 dims: int,
                 num_classes: int,
                 num_heads: int,
                 depth: int,
                 share_block_weights: bool,
                 recompute_keys_values: bool = False):
        super().__init__()
        self.recompute_keys_values = recompute_keys_values
        self.queries = nn.Parameter(torch.zeros(1, num_classes, dims))
        self.norm_features = nn.LayerNorm(dims)
        num_blocks = 1 if share_block_weights else depth
        self.layers = nn.ModuleList(
            LearnerBlock(dims, num_heads) for _ in range(num_blocks))
        self.repeats = depth if share_block_weights else 1
        self.norm_embs = nn.LayerNorm(dims)

    def init_weights(self) -> None:
        trunc_normal_(self.queries, std=0.02)

    def _projects_by_key_block(self, tokens: torch.Tensor) -> bool:
        # the key-block kernels project keys and values per block of keys
        # (in inference, and in training where they are to be recomputed);
        # a shared block projects once for all its steps instead
        return (self.repeats == 1 and attends_by_key_block(tokens)
                and (self.recompute_keys_values
                     or not torch.is_grad_enabled()))

    def _keys_values_saving(self, block: LearnerBlock, tokens: torch.Tensor,
                            keys_values: KeysValues):
        if self.recompute_keys_values and torch.is_grad_enabled():
            return KeysValuesRecompute(block.cross_attn, tokens,
                                       keys_values).hooks()
        return contextlib.nullcontext()

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W`` map -> ``B x K x H x W`` class logits."""
        B, C, H, W = feature.shape
        tokens = self.norm_features(map_to_tokens(feature))
        q = self.queries.expand(B, -1, -1)
        for block in self.layers:
            if self._projects_by_key_block(tokens):
                q = block(q, tokens)
                continue
            # a shared block sees the same tokens every step: project once
            keys_values = block.cross_attn.keys_values(tokens)
            with self._keys_values_saving(block, tokens, keys_values):
                for _ in range(self.repeats):
                    q = block(q, keys_values)
        class_embs = self.norm_embs(q)  # B x K x C
        logits = torch.bmm(class_embs, tokens.transpose(1, 2))  # B x K x HW
        return logits.view(B, -1, H, W)
