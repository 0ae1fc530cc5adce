from .fpnt import FPNT

__all__ = ['FPNT']
