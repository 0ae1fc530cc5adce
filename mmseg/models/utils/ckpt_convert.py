"""Conversion of official Swin Transformer releases to our key layout."""
from collections import OrderedDict
from typing import Dict

import torch


def is_official_swin(state_dict: Dict[str, torch.Tensor]) -> bool:
    """Whether keys follow the official release (``layers.N.blocks...``)."""
    return any(k.startswith('layers.') for k in state_dict)


def _unfold_order(weight: torch.Tensor) -> torch.Tensor:
    """Reorder the 4C axis of a patch-merging tensor to ``nn.Unfold`` order.

    The official release concatenates the 2x2 neighbours as
    ``[(0,0), (1,0), (0,1), (1,1)]`` blocks of C channels (block-major);
    ``nn.Unfold`` yields channel-major ``c * 4 + dy * 2 + dx``.
    """
    four_c = weight.shape[-1]
    c = four_c // 4
    # official position (dy, dx) -> official block index
    official_block = {(0, 0): 0, (1, 0): 1, (0, 1): 2, (1, 1): 3}
    order = torch.empty(four_c, dtype=torch.long)
    for ch in range(c):
        for dy in range(2):
            for dx in range(2):
                order[ch * 4 + dy * 2 + dx] = \
                    official_block[(dy, dx)] * c + ch
    return weight[..., order]


def swin_official_to_mmseg(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename and reorder an official Swin state_dict for
    :class:`SwinTransformer`. Classification-head keys are dropped."""
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('head') or key.endswith('attn_mask'):
            continue
        new_key = key
        if key.startswith('layers'):
            new_key = 'stages' + key[len('layers'):]
            if 'attn.' in new_key:
                new_key = new_key.replace('attn.', 'attn.w_msa.')
            elif 'mlp.fc1.' in new_key:
                new_key = new_key.replace('mlp.fc1.', 'ffn.layers.0.0.')
            elif 'mlp.fc2.' in new_key:
                new_key = new_key.replace('mlp.fc2.', 'ffn.layers.1.')
            elif 'downsample' in new_key:
                value = _unfold_order(value)
        elif key.startswith('patch_embed'):
            new_key = key.replace('patch_embed.proj.',
                                  'patch_embed.projection.')
        elif key.startswith('norm.'):
            continue  # the classifier's final norm; stages have their own
        converted[new_key] = value
    return converted
