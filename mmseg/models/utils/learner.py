"""The transformer learner of SenFormer: class queries decoded from one
pyramid level into a segmentation map."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

from .. import ops
from .attention import CrossAttention, Mlp, SelfAttention


class LearnerBlock(nn.Module):
    """Decoder block: cross-attention to the pixels, self-attention among
    the class queries, MLP; each pre-normed with a residual.

    Args:
        dims: channels C.
        num_heads: attention heads.
        mlp_ratio: MLP width relative to C.
        recompute_keys_values: see :class:`CrossAttention`.
    """

    def __init__(self,
                 dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 recompute_keys_values: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.cross_attn = CrossAttention(dims, num_heads,
                                         recompute_keys_values)
        self.norm2 = nn.LayerNorm(dims)
        self.attn = SelfAttention(dims, num_heads)
        self.norm3 = nn.LayerNorm(dims)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))

    def forward(self,
                queries: torch.Tensor,
                tokens: torch.Tensor,
                keys_values: Optional[ops.KeysValues] = None
                ) -> torch.Tensor:
        """``B x K x C`` queries attending ``B x HW x C`` pixel tokens (whose
        keys and values may be given, already projected)."""
        q = queries + self.cross_attn(self.norm1(queries), tokens,
                                      keys_values)
        q = q + self.attn(self.norm2(q))
        return q + self.mlp(self.norm3(q))


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
            results are the same (:func:`mmseg.models.ops.cross_attention`,
            :func:`mmseg.models.ops.recompute_keys_values`).
    """

    def __init__(self,
                 dims: int,
                 num_classes: int,
                 num_heads: int,
                 depth: int,
                 share_block_weights: bool,
                 recompute_keys_values: bool = False):
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(1, num_classes, dims))
        self.norm_features = nn.LayerNorm(dims)
        num_blocks = 1 if share_block_weights else depth
        self.layers = nn.ModuleList(
            LearnerBlock(
                dims, num_heads, recompute_keys_values=recompute_keys_values)
            for _ in range(num_blocks))
        self.repeats = depth if share_block_weights else 1
        self.norm_embs = nn.LayerNorm(dims)

    def init_weights(self) -> None:
        trunc_normal_(self.queries, std=0.02)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W`` map -> ``B x K x H x W`` class logits."""
        B, C, H, W = feature.shape
        tokens = self.norm_features(ops.map_to_tokens(feature))
        q = self.queries.expand(B, -1, -1)
        if self.repeats == 1:
            for block in self.layers:
                q = block(q, tokens)
        else:
            # one block applied at every step sees the same tokens: project
            # their keys and values once
            (block, ) = self.layers
            attn = block.cross_attn
            keys_values = attn.keys_values(tokens)
            with ops.recompute_keys_values(tokens, attn.kv.weight,
                                           attn.kv.bias, keys_values,
                                           attn.recompute_keys_values):
                for _ in range(self.repeats):
                    q = block(q, tokens, keys_values)
        class_embs = self.norm_embs(q)  # B x K x C
        logits = torch.bmm(class_embs, tokens.transpose(1, 2))  # B x K x HW
        return logits.view(B, -1, H, W)
