from .attention import CrossAttention, Mlp, SelfAttention
from .ckpt_convert import is_official_swin, swin_official_to_mmseg
from .embed import PatchEmbed, PatchMerging
from .learner import LearnerBlock, TransformerLearner
from .swin_block import SwinBlock, SwinBlockSequence, SwinFFN
from ..ops.token_layout import map_to_tokens, tokens_to_map
from .window_attention import ShiftWindowMSA, WindowMSA

__all__ = [
    'CrossAttention', 'Mlp', 'SelfAttention', 'is_official_swin',
    'swin_official_to_mmseg', 'PatchEmbed', 'PatchMerging', 'LearnerBlock',
    'TransformerLearner', 'SwinBlock', 'SwinBlockSequence', 'SwinFFN',
    'ShiftWindowMSA', 'WindowMSA', 'map_to_tokens', 'tokens_to_map'
]
