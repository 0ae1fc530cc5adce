"""Segmentation metrics from per-class pixel areas.

Every metric is computed from four per-class areas accumulated over a whole
dataset: the intersection of prediction and ground truth, their union, the
predicted area and the ground-truth area (pixels labelled ``ignore_index``
left out). A class absent from both prediction and ground truth has union
0 and gets NaN (skipped by the means), as in MMSegmentation.
"""
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mmseg.datasets.transforms.loading import read_label_map, remap_labels
from mmseg.datasets.transforms.loading import \
    reduce_zero_label as _reduce_zero_label

ArrayLike = Union[np.ndarray, torch.Tensor]
METRICS = ('mIoU', 'mDice', 'mFscore')


def _as_tensor(x: Union[ArrayLike, str], what: str) -> torch.Tensor:
    if isinstance(x, str):
        x = np.load(x) if what == 'prediction' else read_label_map(x)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{what} must be a numpy array, a tensor or a path, '
                        f'got {type(x).__name__}')
    return x.long()


def intersect_and_union(
    pred_label: Union[ArrayLike, str],
    label: Union[ArrayLike, str],
    num_classes: int,
    ignore_index: int,
    label_map: Optional[Dict[int, int]] = None,
    reduce_zero_label: bool = False
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class areas of one prediction against its ground truth.

    Args:
        pred_label: ``H x W`` predicted classes (array, tensor or ``.npy``
            path).
        label: ``H x W`` ground truth (array, tensor or label-map path).
        num_classes: number of classes K.
        ignore_index: ground-truth value left out.
        label_map: ground-truth value remapping, applied first (as in
            MMSegmentation 0.x ``eval_metrics``).
        reduce_zero_label: then map ground truth 0 to 255 and k to k - 1.

    Returns:
        ``(area_intersect, area_union, area_pred_label, area_label)``, each
        a length-K int64 tensor on the prediction's device.

    Raises:
        ValueError: shapes differ, or a prediction / non-ignored label
            value is outside ``0..K-1``.
    """
    pred = _as_tensor(pred_label, 'prediction')
    gt = _as_tensor(label, 'label')
    if label_map or reduce_zero_label:
        gt_np = gt.cpu().numpy()
        if label_map:
            gt_np = remap_labels(gt_np, label_map)
        if reduce_zero_label:
            gt_np = _reduce_zero_label(gt_np)
        gt = torch.from_numpy(gt_np)
    gt = gt.to(pred.device)
    pred, gt = pred.squeeze(), gt.squeeze()
    if pred.shape != gt.shape:
        raise ValueError(f'prediction is {tuple(pred.shape)} but its ground '
                         f'truth is {tuple(gt.shape)}')
    valid = gt != ignore_index
    pred, gt = pred[valid], gt[valid]
    for values, what in ((gt, 'label'), (pred, 'prediction')):
        if values.numel() and (values.min() < 0
                               or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)]
            raise ValueError(
                f'{what} value(s) {bad.unique()[:8].tolist()} outside the '
                f'{num_classes} classes (0..{num_classes - 1}) and not the '
                f'ignore index {ignore_index}')
    area_pred = torch.bincount(pred, minlength=num_classes)
    area_label = torch.bincount(gt, minlength=num_classes)
    area_intersect = torch.bincount(pred[pred == gt], minlength=num_classes)
    area_union = area_pred + area_label - area_intersect
    return area_intersect, area_union, area_pred, area_label


def total_intersect_and_union(
    results: Iterable[Union[ArrayLike, str]],
    gt_seg_maps: Iterable[Union[ArrayLike, str]],
    num_classes: int,
    ignore_index: int,
    label_map: Optional[Dict[int, int]] = None,
    reduce_zero_label: bool = False
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class areas summed over a dataset (see
    :func:`intersect_and_union`); errors name the offending index."""
    results, gt_seg_maps = list(results), list(gt_seg_maps)
    if len(results) != len(gt_seg_maps):
        raise ValueError(f'{len(results)} predictions for '
                         f'{len(gt_seg_maps)} ground-truth maps')
    total = torch.zeros((4, num_classes), dtype=torch.int64)
    for i, (pred, gt) in enumerate(zip(results, gt_seg_maps)):
        try:
            areas = intersect_and_union(pred, gt, num_classes, ignore_index,
                                        label_map, reduce_zero_label)
        except ValueError as e:
            name = gt if isinstance(gt, str) else f'gt_seg_maps[{i}]'
            raise ValueError(f'{name}: {e}') from e
        total += torch.stack(areas).cpu()
    return tuple(total)


def total_area_to_metrics(total_area_intersect: ArrayLike,
                          total_area_union: ArrayLike,
                          total_area_pred_label: ArrayLike,
                          total_area_label: ArrayLike,
                          metrics: Sequence[str] = ('mIoU', ),
                          nan_to_num: Optional[float] = None,
                          beta: float = 1) -> 'OrderedDict[str, np.ndarray]':
    """Metrics from accumulated per-class areas.

    Args:
        metrics: any of ``'mIoU'``, ``'mDice'``, ``'mFscore'``.
        nan_to_num: replace NaN (classes without pixels) by this value.
        beta: weight of recall in the F-score.

    Returns:
        ``aAcc`` (0-d array) and per-class ``Acc`` always; ``IoU`` for
        mIoU; ``Dice`` for mDice; ``Fscore``, ``Precision``, ``Recall`` for
        mFscore. Fractions in 0..1, float64 numpy arrays.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise KeyError(f'metrics {unknown} are not supported; choose from '
                       f'{list(METRICS)}')

    def as_float(x):
        return torch.as_tensor(x).double().cpu()

    inter, union = as_float(total_area_intersect), as_float(total_area_union)
    pred, label = as_float(total_area_pred_label), as_float(total_area_label)
    ret = OrderedDict(aAcc=inter.sum() / label.sum())
    ret['Acc'] = inter / label
    for metric in metrics:
        if metric == 'mIoU':
            ret['IoU'] = inter / union
        elif metric == 'mDice':
            ret['Dice'] = 2 * inter / (pred + label)
        else:
            precision, recall = inter / pred, inter / label
            ret['Fscore'] = (1 + beta**2) * precision * recall / (
                beta**2 * precision + recall)
            ret['Precision'] = precision
            ret['Recall'] = recall
    ret = OrderedDict((k, v.numpy()) for k, v in ret.items())
    if nan_to_num is not None:
        ret = OrderedDict(
            (k, np.nan_to_num(v, nan=nan_to_num)) for k, v in ret.items())
    return ret


def eval_metrics(results: List[Union[ArrayLike, str]],
                 gt_seg_maps: List[Union[ArrayLike, str]],
                 num_classes: int,
                 ignore_index: int,
                 metrics: Union[str, Sequence[str]] = ['mIoU'],
                 nan_to_num: Optional[float] = None,
                 label_map: Dict[int, int] = dict(),
                 reduce_zero_label: bool = False,
                 beta: float = 1) -> 'OrderedDict[str, np.ndarray]':
    """Evaluate predicted label maps against ground truth (the
    MMSegmentation 0.x function SenFormer users know).

    Args:
        results: predicted ``H x W`` class maps (arrays, tensors or ``.npy``
            paths).
        gt_seg_maps: ground-truth maps (arrays, tensors or label-map paths).
        num_classes: number of classes K.
        ignore_index: ground-truth value left out.
        metrics: ``'mIoU'``, ``'mDice'`` and/or ``'mFscore'``.
        nan_to_num: replace NaN by this value.
        label_map: ground-truth remapping, applied before
            ``reduce_zero_label``.
        reduce_zero_label: ground truth 0 to 255, k to k - 1.
        beta: weight of recall in the F-score.

    Returns:
        OrderedDict with ``aAcc`` (0-d array), per-class ``Acc`` and, as
        asked, ``IoU``, ``Dice``, ``Fscore``, ``Precision``, ``Recall``
        (length-K float64 arrays, NaN for classes with no pixel in either
        the predictions or the ground truth).
    """
    areas = total_intersect_and_union(results, gt_seg_maps, num_classes,
                                      ignore_index, label_map,
                                      reduce_zero_label)
    return total_area_to_metrics(
        *areas, metrics=metrics, nan_to_num=nan_to_num, beta=beta)


def mean_iou(results, gt_seg_maps, num_classes, ignore_index,
             nan_to_num=None, label_map=dict(), reduce_zero_label=False):
    """:func:`eval_metrics` with ``metrics=['mIoU']``."""
    return eval_metrics(results, gt_seg_maps, num_classes, ignore_index,
                        ['mIoU'], nan_to_num, label_map, reduce_zero_label)


def mean_dice(results, gt_seg_maps, num_classes, ignore_index,
              nan_to_num=None, label_map=dict(), reduce_zero_label=False):
    """:func:`eval_metrics` with ``metrics=['mDice']``."""
    return eval_metrics(results, gt_seg_maps, num_classes, ignore_index,
                        ['mDice'], nan_to_num, label_map, reduce_zero_label)


def mean_fscore(results, gt_seg_maps, num_classes, ignore_index,
                nan_to_num=None, label_map=dict(), reduce_zero_label=False,
                beta=1):
    """:func:`eval_metrics` with ``metrics=['mFscore']``."""
    return eval_metrics(results, gt_seg_maps, num_classes, ignore_index,
                        ['mFscore'], nan_to_num, label_map, reduce_zero_label,
                        beta)
