"""Visualisation of segmentation samples."""
from .local_visualizer import SegLocalVisualizer

__all__ = ['SegLocalVisualizer']
