"""mIoU evaluation (mmengine metric), also of a model's extra maps."""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from PIL import Image
from prettytable import PrettyTable

from mmseg.registry import METRICS
from mmseg.structures import extra_maps
from ..functional import METRICS as SUPPORTED
from ..functional import intersect_and_union, total_area_to_metrics


def _field(sample, name: str):
    """Field ``name`` (None if absent) of a data sample or of its
    ``to_dict()`` form, which mmengine's evaluator passes."""
    if isinstance(sample, dict):
        return sample.get(name)
    return getattr(sample, name, None)


def _data(pixel_data) -> torch.Tensor:
    """The tensor of a PixelData or of its ``to_dict()`` form."""
    return pixel_data['data'] if isinstance(pixel_data, dict) else \
        pixel_data.data


@METRICS.register_module()
class IoUMetric(BaseMetric):
    """Per-class IoU / accuracy (and Dice, F-score) over a dataset.

    Only per-class areas (intersection, union, prediction, label) are kept,
    summed as samples arrive, so memory does not grow with the dataset. In
    distributed evaluation each rank sums its own samples; the samples the
    sampler repeated to even out the ranks are left out, as mmengine's
    ``collect_results`` does.

    ``compute_metrics`` logs a per-class table and returns ``aAcc``,
    ``mIoU``, ``mAcc`` (plus ``mDice``; ``mFscore``, ``mPrecision``,
    ``mRecall`` when asked), in percent.

    With ``per_learner=True`` the same pass also evaluates the arg-max of
    each extra map the model predicts (the fields of the samples'
    ``extra_logits``: for SenFormer with ``test_cfg.return_learners``, the
    learners ``learner0``, ``learner1``, ...) and adds ``<name>_mIoU``
    beside the ``mIoU`` of ``pred_sem_seg``, with a table comparing them.

    Args:
        ignore_index: ground-truth value left out.
        iou_metrics: any of ``'mIoU'``, ``'mDice'``, ``'mFscore'``.
        nan_to_num: replace NaN (class with no pixel) by this value.
        beta: weight of recall in the F-score.
        collect_device: ``'cpu'`` or ``'gpu'``, for gathering ranks.
        output_dir: also save each prediction there as a PNG named after
            its image (labels + 1 when the dataset reduces label 0, i.e. in
            the dataset's own label convention); with ``per_learner`` the
            prediction of each extra map too, in ``<name>/``.
        format_only: only save predictions (needs ``output_dir``); no
            ground truth is needed and no metric is computed.
        keep_results: keep the predictions written to ``output_dir``;
            False deletes them once the metrics are computed (as
            MMSegmentation's ``CityscapesMetric``).
        per_learner: also evaluate each extra map (SenFormer's learners).
        prefix: prefix of the metric names.
    """

    def __init__(self,
                 ignore_index: int = 255,
                 iou_metrics: Sequence[str] = ['mIoU'],
                 nan_to_num: Optional[float] = None,
                 beta: float = 1,
                 collect_device: str = 'cpu',
                 output_dir: Optional[str] = None,
                 format_only: bool = False,
                 keep_results: bool = True,
                 per_learner: bool = False,
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(iou_metrics, str):
            iou_metrics = [iou_metrics]
        unknown = [m for m in iou_metrics if m not in SUPPORTED]
        if unknown:
            raise KeyError(f'IoUMetric: iou_metrics {unknown} are not '
                           f'supported; choose from {list(SUPPORTED)}')
        if format_only and not output_dir:
            raise ValueError('IoUMetric(format_only=True) needs output_dir '
                             'to save the predictions in')
        if format_only and not keep_results:
            raise ValueError('IoUMetric(format_only=True) only saves the '
                             'predictions: keep_results must be True')
        self.ignore_index = ignore_index
        self.metrics = list(iou_metrics)
        self.nan_to_num = nan_to_num
        self.beta = beta
        self.output_dir = output_dir
        self.format_only = format_only
        self.keep_results = keep_results
        self.per_learner = per_learner
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
        self._reset()

    def _reset(self) -> None:
        # running sum of all but the latest sample, and the latest sample
        # apart: it may be a sampler repeat to drop (see compute_metrics)
        self._total: Optional[torch.Tensor] = None
        self._latest: Optional[torch.Tensor] = None
        self._count = 0
        self._saved: List[str] = []
        # names of the extra maps, in the order of their areas
        self._extra_names: Optional[List[str]] = None

    @property
    def num_classes(self) -> int:
        classes = (self.dataset_meta or {}).get('classes')
        if not classes:
            raise ValueError(
                "IoUMetric needs dataset_meta['classes'] (set by the runner "
                'from the dataset, or metric.dataset_meta = '
                'dict(classes=...))')
        return len(classes)

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Add the areas of a batch of predicted data samples (objects or
        their ``to_dict()``) with ``pred_sem_seg`` and ``gt_sem_seg``
        (``1 x H x W``) and, for ``per_learner``, ``extra_logits``."""
        num_classes = self.num_classes
        for sample in data_samples:
            meta = sample if isinstance(sample, dict) else sample.metainfo
            name = meta.get('img_path') or '<image in memory>'
            pred = _field(sample, 'pred_sem_seg')
            if pred is None:
                raise ValueError(
                    f'IoUMetric: sample {name!r} has no pred_sem_seg (the '
                    "model's predict must fill it)")
            pred = _data(pred).squeeze()
            extra_preds = self._extra_predictions(sample, name)
            if self.output_dir:
                self._save(pred, meta)
                for extra_name, extra_pred in extra_preds:
                    self._save(extra_pred, meta, extra_name)
            if self.format_only:
                continue
            gt = _field(sample, 'gt_sem_seg')
            if gt is None:
                raise ValueError(
                    f'IoUMetric: sample {name!r} has no gt_sem_seg; the test '
                    'pipeline needs LoadAnnotations (or use format_only)')
            gt = _data(gt).squeeze().to(pred.device)
            if gt.shape != pred.shape:
                raise ValueError(
                    f'IoUMetric: prediction of {name!r} is '
                    f'{tuple(pred.shape)} but its ground truth is '
                    f'{tuple(gt.shape)}; predictions must be at the original'
                    ' image size')
            maps = [pred] + [extra_pred for _, extra_pred in extra_preds]
            try:
                areas = torch.stack([
                    torch.stack(
                        intersect_and_union(p, gt, num_classes,
                                            self.ignore_index))
                    for p in maps
                ]).cpu()
            except ValueError as e:
                raise ValueError(f'IoUMetric, {name!r}: {e}') from e
            self._add(areas)

    def _extra_predictions(self, sample,
                           name: str) -> List[Tuple[str, torch.Tensor]]:
        """``(name, H x W prediction)`` of each extra map, for
        ``per_learner``; the names are kept for the results."""
        if not self.per_learner:
            return []
        extras = extra_maps(_field(sample, 'extra_logits'))
        if not extras:
            raise ValueError(
                f'IoUMetric(per_learner=True): sample {name!r} carries no '
                'extra_logits, the model predicts no extra maps (SenFormer: '
                'set model.test_cfg.return_learners=True)')
        names = [extra_name for extra_name, _ in extras]
        if self._extra_names is None:
            self._extra_names = names
        elif names != self._extra_names:
            raise ValueError(
                f'IoUMetric: sample {name!r} carries the extra maps {names}'
                f', earlier samples {self._extra_names}')
        return [(extra_name, logits.argmax(dim=0))
                for extra_name, logits in extras]

    def _add(self, areas: torch.Tensor) -> None:
        if self._latest is not None:
            if self._total is None:
                self._total = self._latest.clone()
            elif self._total.shape != self._latest.shape:
                raise ValueError(
                    'IoUMetric: samples carry different numbers of extra '
                    f'maps ({self._total.shape[0] - 1} and '
                    f'{self._latest.shape[0] - 1})')
            else:
                self._total += self._latest
        self._latest = areas
        self._count += 1

    def _save(self, pred: torch.Tensor, meta: dict, folder: str = '') -> None:
        pred = pred.cpu().numpy()
        if meta.get('reduce_zero_label', False):
            pred = pred + 1
        stem = osp.splitext(osp.basename(meta.get('img_path') or 'image'))[0]
        if folder:
            os.makedirs(osp.join(self.output_dir, folder), exist_ok=True)
        path = osp.join(self.output_dir, folder, stem + '.png')
        # all or nothing: a full disk or a kill leaves no half png; imported
        # here as mmseg.engine imports the metrics' users
        from mmseg.engine.atomic_io import atomic_write
        image = Image.fromarray(pred.astype(np.uint8))
        atomic_write(path, lambda f: image.save(f, format='PNG'))
        self._saved.append(path)

    def evaluate(self, size: int) -> dict:
        """Gather each rank's sums and compute the metrics over the
        ``size`` samples of the dataset."""
        self._dataset_size = size
        self.results = [
            dict(total=self._total, latest=self._latest, count=self._count,
                 extra_names=self._extra_names)
        ]
        try:
            # one summary per rank: collect exactly world_size entries
            return super().evaluate(get_world_size())
        finally:
            if not self.keep_results:
                for path in self._saved:
                    if osp.exists(path):
                        os.remove(path)
            self._reset()

    def _merge(self, summaries: List[dict]) -> Optional[torch.Tensor]:
        """Sum the ranks' areas, dropping repeated samples: rank r's i-th
        sample is sample ``i * world_size + r`` of the dataset (mmengine's
        interleaved sharding), and only a rank's latest one can be past
        the end."""
        world_size = len(summaries)
        total = None
        for rank, summary in enumerate(summaries):
            if not summary['count']:
                continue
            parts = [summary['total']] if summary['total'] is not None \
                else []
            last_index = (summary['count'] - 1) * world_size + rank
            if last_index < self._dataset_size:
                parts.append(summary['latest'])
            for part in parts:
                total = part.clone() if total is None else total + part
        return total

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Metrics from the per-rank summaries made by :meth:`evaluate`."""
        logger = MMLogger.get_current_instance()
        if self.format_only:
            print_log(f'predictions saved in {self.output_dir}', logger)
            return OrderedDict()
        total = self._merge(results)
        if total is None:
            raise ValueError('IoUMetric: no sample was evaluated')
        per_map = [
            total_area_to_metrics(
                *areas, self.metrics, self.nan_to_num, beta=self.beta)
            for areas in total
        ]
        summaries = [self._summarise(ret) for ret in per_map]
        self._log_classes(per_map[0], logger)
        metrics = OrderedDict(summaries[0])
        if self.per_learner:
            names = next((r['extra_names'] for r in results
                          if r.get('extra_names')), self._extra_names)
            for extra_name, summary in zip(names, summaries[1:]):
                metrics[f'{extra_name}_mIoU'] = summary['mIoU']
            self._log_extras(names, summaries, logger)
        return metrics

    @staticmethod
    def _summarise(ret: 'OrderedDict[str, np.ndarray]') -> dict:
        """``aAcc``, then the class means (``m`` + name) with ``mAcc`` last,
        in percent (MMSegmentation's order: aAcc, mIoU, mAcc)."""
        summary = OrderedDict()
        for key, value in ret.items():
            mean = float(np.round(np.nanmean(value) * 100, 2))
            summary[key if key == 'aAcc' else 'm' + key] = mean
        summary.move_to_end('mAcc')
        return summary

    def _log_classes(self, ret: 'OrderedDict[str, np.ndarray]',
                     logger: MMLogger) -> None:
        table = PrettyTable()
        table.add_column('Class', list(self.dataset_meta['classes']))
        for key, value in ret.items():
            if key != 'aAcc':
                table.add_column(key, np.round(value * 100, 2).tolist())
        print_log('per class results:', logger)
        print_log('\n' + table.get_string(), logger=logger)

    @staticmethod
    def _log_extras(names: List[str], summaries: List[dict],
                    logger: MMLogger) -> None:
        """One row per prediction: ``pred_sem_seg`` (SenFormer's
        ensemble), then each extra map."""
        columns = ['aAcc', 'mIoU', 'mAcc']
        table = PrettyTable()
        table.field_names = ['prediction'] + columns
        for i, summary in enumerate(summaries):
            name = 'ensemble' if i == 0 else names[i - 1]
            table.add_row([name] + [summary[c] for c in columns])
        print_log('ensemble and per learner results:', logger)
        print_log('\n' + table.get_string(), logger=logger)
