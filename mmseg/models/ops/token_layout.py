"""Maps and tokens: the two views of a feature map.

Convolutions see ``B x C x H x W`` maps, transformer layers ``B x HW x C``
tokens. Keeping maps channels-last in memory makes the two the same memory,
so switching between them costs no copy.
"""
from typing import Tuple

import torch


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` map -> ``B x HW x C`` tokens; a view when the map is
    channels-last in memory, a copy otherwise."""
    B, C, H, W = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, H * W, C)


def tokens_to_map(tokens: torch.Tensor, hw_shape: Tuple[int,
                                                        int]) -> torch.Tensor:
    """``B x HW x C`` tokens -> ``B x C x H x W`` map, channels-last in memory
    (a view, no copy)."""
    B, _, C = tokens.shape
    return tokens.view(B, *hw_shape, C).permute(0, 3, 1, 2)
