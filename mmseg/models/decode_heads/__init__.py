from .decode_head import BaseDecodeHead
from .fcn_head import FCNHead
from .senformer import SenFormer, SenFormerNWS

__all__ = ['BaseDecodeHead', 'FCNHead', 'SenFormer', 'SenFormerNWS']
