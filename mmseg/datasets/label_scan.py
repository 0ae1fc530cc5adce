"""Checking every sample of a dataset before training on it.

Training finds a broken sample only when it first loads it, which on an
ADE20K-sized dataset can be hours into a run. :func:`scan_samples` reads
every image and label map up front, in parallel worker processes, and
collects every problem (unreadable or missing file, label map of another
size than its image, label values outside the classes) plus a class
histogram. Label values are judged exactly as
:class:`~mmseg.datasets.transforms.LoadAnnotations` judges them: after
``reduce_zero_label`` and the dataset's ``label_map``, values
``0..num_classes-1`` and the ignore index are valid.
"""
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from .errors import DatasetError
from .transforms.loading import (read_image, read_label_map,
                                 reduce_zero_label, remap_labels)

#: at most this many distinct bad values are named per label map
_MAX_VALUES_SHOWN = 8


def scan_sample(sample: dict) -> dict:
    """Check one sample (a ``data_list`` entry of a segmentation dataset).

    Returns:
        ``dict(problems=[str, ...], pixels=counts per class or None,
        ignored=int)``; ``pixels`` is None when the label map could not be
        read.
    """
    problems: List[str] = []
    image_shape = None
    try:
        image_shape = read_image(sample['img_path']).shape[:2]
    except DatasetError as e:
        problems.append(str(e))
    seg_path = sample.get('seg_map_path')
    if seg_path is None:  # a dataset without labels
        return dict(problems=problems, pixels=None, ignored=0)
    try:
        label = read_label_map(seg_path)
    except DatasetError as e:
        problems.append(str(e))
        return dict(problems=problems, pixels=None, ignored=0)
    if image_shape is not None and tuple(image_shape) != label.shape:
        problems.append(
            f'label map {seg_path!r} is {label.shape[0]}x{label.shape[1]} '
            f'but its image {sample["img_path"]!r} is '
            f'{image_shape[0]}x{image_shape[1]}')
    reduced = bool(sample.get('reduce_zero_label'))
    if reduced:
        label = reduce_zero_label(label)
    if sample.get('label_map'):
        label = remap_labels(label, sample['label_map'])
    num_classes = sample.get('num_classes')
    ignore_index = sample.get('ignore_index', 255)
    if num_classes is None:
        return dict(problems=problems, pixels=None, ignored=0)
    flat = label.ravel().astype(np.int64)
    valid = (flat >= 0) & (flat < num_classes)
    ignored = flat == ignore_index
    pixels = np.bincount(flat[valid], minlength=num_classes)
    bad = ~(valid | ignored)
    if bad.any():
        values, counts = np.unique(flat[bad], return_counts=True)
        shown = ', '.join(f'{v} ({c} px)' for v, c in zip(
            values[:_MAX_VALUES_SHOWN], counts[:_MAX_VALUES_SHOWN]))
        more = len(values) - _MAX_VALUES_SHOWN
        steps = f'reduce_zero_label={reduced}' + (
            ', label_map' if sample.get('label_map') else '')
        problems.append(
            f'label map {seg_path!r} has value(s) {shown}'
            + (f' and {more} more' if more > 0 else '') +
            f' outside the classes (0..{num_classes - 1}) and the ignore '
            f'index {ignore_index} (after {steps})')
    return dict(problems=problems, pixels=pixels, ignored=int(ignored.sum()))


class ScanResult:
    """What :func:`scan_samples` found in one dataset.

    Attributes:
        num_samples: samples scanned.
        problems: one message per problem, every file named.
        pixels: labelled pixels per class (after the dataset's mapping).
        images: number of label maps containing each class.
        ignored: pixels with the ignore index.
    """

    def __init__(self, num_classes: int):
        self.num_samples = 0
        self.problems: List[str] = []
        self.pixels = np.zeros(num_classes, dtype=np.int64)
        self.images = np.zeros(num_classes, dtype=np.int64)
        self.ignored = 0

    def add(self, report: dict) -> None:
        self.num_samples += 1
        self.problems.extend(report['problems'])
        if report['pixels'] is not None:
            self.pixels += report['pixels']
            self.images += report['pixels'] > 0
            self.ignored += report['ignored']


def scan_samples(samples: Sequence[dict],
                 num_classes: int,
                 workers: int = 0,
                 progress: bool = True) -> ScanResult:
    """Check every sample, in ``workers`` processes (0: this one).

    Args:
        samples: ``data_list`` entries (``img_path``, ``seg_map_path``,
            ``reduce_zero_label``, ``label_map``, ``num_classes``,
            ``ignore_index``).
        num_classes: the dataset's number of classes (histogram length).
        workers: worker processes; 0 or 1 scans in this process.
        progress: show a progress bar on stdout.
    """
    from mmengine.utils import track_parallel_progress, track_progress
    samples = list(samples)
    if not samples:
        reports: Iterable[dict] = []
    elif workers > 1:
        if progress:
            reports = track_parallel_progress(
                scan_sample, samples, workers, chunksize=8)
        else:
            from multiprocessing import Pool
            with Pool(workers) as pool:
                reports = pool.map(scan_sample, samples, chunksize=8)
    elif progress:
        reports = track_progress(scan_sample, samples)
    else:
        reports = map(scan_sample, samples)
    result = ScanResult(num_classes)
    for report in reports:
        result.add(report)
    return result


def segmentation_datasets(dataset) -> list:
    """The segmentation datasets inside ``dataset`` (unwrapping mmengine's
    ``ConcatDataset``/``RepeatDataset``/``ClassBalancedDataset``)."""
    if hasattr(dataset, 'datasets'):
        return [d for inner in dataset.datasets
                for d in segmentation_datasets(inner)]
    if hasattr(dataset, 'dataset') and not hasattr(dataset, 'data_list'):
        return segmentation_datasets(dataset.dataset)
    return [dataset]


def format_histogram(result: ScanResult,
                     classes: Optional[Sequence[str]]) -> List[str]:
    """Table lines: class, pixels, share of the labelled pixels, images."""
    total = int(result.pixels.sum())
    names = list(classes) if classes else [
        str(i) for i in range(len(result.pixels))
    ]
    width = max([len(n) for n in names] + [5])
    lines = [f'    {"class":<{width}} {"pixels":>12} {"share":>7} '
             f'{"images":>7}']
    for i, name in enumerate(names):
        share = 100.0 * result.pixels[i] / total if total else 0.0
        lines.append(f'    {name:<{width}} {int(result.pixels[i]):>12} '
                     f'{share:>6.2f}% {int(result.images[i]):>7}')
    never = [names[i] for i in range(len(names)) if result.images[i] == 0]
    if never:
        lines.append(f'    never labelled: {len(never)} class(es): '
                     + ', '.join(never[:20]) +
                     (f', ... ({len(never) - 20} more)'
                      if len(never) > 20 else ''))
    lines.append(f'    ignored pixels: {result.ignored}')
    return lines


def scan_config(cfg,
                splits: Sequence[str] = ('train', 'val'),
                workers: int = 0,
                progress: bool = True,
                histogram: bool = True,
                out: Optional[TextIO] = None
                ) -> Tuple[int, Dict[str, List[ScanResult]]]:
    """Scan the datasets of a config's ``<split>_dataloader`` entries.

    A dataset that cannot even be built (a missing folder, unpaired files)
    counts as one problem of its split; the other splits are still
    scanned. The report (problems, then the class histograms) is written to
    ``out`` (stdout when None) as it is made.

    Returns:
        ``(number of problems, {split: [ScanResult per dataset]})``.
    """
    import sys

    from mmengine.registry import DefaultScope

    from mmseg.registry import DATASETS
    out = out or sys.stdout
    problems = 0
    results: Dict[str, List[ScanResult]] = {}
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        try:
            with DefaultScope.overwrite_default_scope('mmseg'):
                built = DATASETS.build(loader['dataset'])
        except DatasetError as e:
            print(f'{split}: the dataset cannot be built: {e}', file=out)
            problems += 1
            continue
        results[split] = []
        for dataset in segmentation_datasets(built):
            dataset.full_init()
            name = type(dataset).__name__
            where = getattr(dataset, 'data_root', '') or ''
            classes = dataset.metainfo.get('classes')
            num_classes = len(classes) if classes else 256
            samples = [dataset.get_data_info(i) for i in range(len(dataset))]
            print(f'{split}: {name} in {osp.abspath(where) if where else "."}'
                  f': scanning {len(samples)} samples', file=out, flush=True)
            result = scan_samples(samples, num_classes, workers, progress)
            results[split].append(result)
            problems += len(result.problems)
            if result.problems:
                print(f'  {len(result.problems)} problem(s):', file=out)
                for problem in result.problems:
                    print(f'    {problem}', file=out)
            else:
                print('  no problems', file=out)
            if histogram:
                print('  class histogram (after the dataset\'s label '
                      'mapping):', file=out)
                for line in format_histogram(result, classes):
                    print(line, file=out)
            out.flush()
    return problems, results
