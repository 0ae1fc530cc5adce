"""The operations the models are built from, each a plain reference
implementation beside faster ones equal to it in value and gradient, chosen
by one switch (:mod:`.switch`): ``MMSEG_OPS=reference|sdpa|cpu|auto``,
:func:`set_implementation`, or ``with implementation(name):``.

========================  =============================  ====================
operation                 reference                      fast
========================  =============================  ====================
:func:`attention`         :func:`plain_attention`        SDPA
:func:`cross_attention_   :func:`plain_attention`        SDPA; CPU:
kv`                                                      :func:`key_block_attention`
:func:`cross_attention`   :func:`plain_projected_        SDPA + recomputed
                          attention`                     keys/values; CPU:
                                                         :func:`token_block_attention`
:func:`recompute_keys_    keeps them                     saved-tensor hooks
values`
:func:`recomputed`        keeps them                     checkpoint, batch-norm
                                                         statistics counted
                                                         once
:func:`gelu_linear`       :func:`plain_gelu_linear`      GELU recomputed
:func:`mlp`               :func:`plain_mlp`              GELU recomputed;
                                                         CPU: by chunks of
                                                         tokens, hidden
                                                         recomputed
                                                         (:func:`chunked_mlp`,
                                                         :func:`recomputed_
                                                         mlp`)
:func:`upsampled_nll`     :func:`plain_upsampled_nll`    bands of rows,
                                                         channels-last
:func:`over_chunks`       one call                       CPU inference:
                                                         chunk by chunk
:func:`pointwise_conv`    ``F.conv2d``                   batched product on
                                                         tokens
========================  =============================  ====================
"""
from .attention import (KEY_BLOCK, KeysValues, attention, cross_attention,
                        cross_attention_kv, key_block_attention,
                        plain_attention, plain_projected_attention,
                        project_keys_values, token_block_attention)
from .chunking import CHUNK_TOKENS, over_chunks
from .gelu_linear import gelu_linear, plain_gelu_linear
from .mlp import TOKEN_CHUNK, chunked_mlp, mlp, plain_mlp, recomputed_mlp
from .pointwise_conv import pointwise_conv
from .recompute import recompute_keys_values, recomputed
from .switch import (ENV_VARIABLE, IMPLEMENTATIONS, chosen_implementation,
                     implementation, implementation_for, set_implementation)
from .token_layout import map_to_tokens, tokens_to_map
from .upsampled_losses import (SLAB_ELEMENTS, plain_upsampled_nll,
                               upsampled_argmax, upsampled_nll,
                               upsampled_nll_and_argmax)

__all__ = [
    'CHUNK_TOKENS', 'ENV_VARIABLE', 'IMPLEMENTATIONS', 'KEY_BLOCK',
    'KeysValues', 'SLAB_ELEMENTS', 'TOKEN_CHUNK', 'attention',
    'chosen_implementation', 'chunked_mlp', 'cross_attention',
    'cross_attention_kv', 'gelu_linear', 'implementation',
    'implementation_for', 'key_block_attention', 'map_to_tokens', 'mlp',
    'over_chunks', 'plain_attention', 'plain_gelu_linear', 'plain_mlp',
    'plain_projected_attention', 'plain_upsampled_nll', 'pointwise_conv',
    'project_keys_values', 'recompute_keys_values', 'recomputed',
    'recomputed_mlp',
    'set_implementation', 'token_block_attention', 'tokens_to_map',
    'upsampled_argmax', 'upsampled_nll', 'upsampled_nll_and_argmax'
]
