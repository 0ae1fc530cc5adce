"""SenFormer: efficient self-ensemble semantic segmentation on mmengine."""
from .version import __version__

__all__ = ['__version__']
