"""Evaluation: the functional metrics and the mmengine IoUMetric."""
from .functional import (eval_metrics, intersect_and_union, mean_dice,
                         mean_fscore, mean_iou, total_area_to_metrics,
                         total_intersect_and_union)
from .metrics import CityscapesMetric, IoUMetric

__all__ = [
    'eval_metrics', 'mean_iou', 'mean_dice', 'mean_fscore',
    'intersect_and_union', 'total_intersect_and_union',
    'total_area_to_metrics', 'IoUMetric', 'CityscapesMetric'
]
