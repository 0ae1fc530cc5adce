"""Confusion matrix of saved predictions against a config's test set.

    python tools/test.py CONFIG CHECKPOINT --out PRED_DIR [--per-learner]
    python tools/analysis_tools/confusion_matrix.py CONFIG PRED_DIR SAVE_DIR
        [--per-learner] [--title TITLE] [--color-theme CMAP] [--show]
        [--cfg-options KEY=VALUE ...] [--debug]

As MMSegmentation's tool: the label maps that ``tools/test.py --out`` wrote
(``<image stem>.png``, in the dataset's label convention) against the
ground truth of ``test_dataloader.dataset``; the matrix, each row
normalised to 100 % (rows: ground truth, columns: prediction), is plotted
to ``SAVE_DIR/confusion_matrix.png`` and its counts saved to
``SAVE_DIR/confusion_matrix.csv``. Predictions are matched to images by
name. ``--per-learner`` also draws, from ``PRED_DIR/learner{i}/`` (written
by ``tools/test.py --per-learner --out``), one matrix per SenFormer
learner: ``confusion_matrix_learner{i}.png``.
"""
import argparse
import glob
import os
import os.path as osp
import sys

import numpy as np
from mmengine.config import DictAction

from mmseg.datasets.errors import DatasetError
from mmseg.cli import (ConfigError, add_debug_argument,
                       attach_config_to_errors, load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Confusion matrix of saved predictions (tools/test.py '
        '--out) against the config\'s test set')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'prediction_path', help='folder of the label maps of tools/test.py '
        '--out')
    parser.add_argument(
        'save_dir', help='folder for confusion_matrix.png (and .csv)')
    parser.add_argument(
        '--per-learner', action='store_true',
        help='also one matrix per SenFormer learner (PRED_DIR/learner{i}/)')
    parser.add_argument(
        '--show', action='store_true', help='show the matrix in a window')
    parser.add_argument(
        '--color-theme', default='winter',
        help='matplotlib colour map of the plot (default: winter)')
    parser.add_argument(
        '--title', default='Normalized Confusion Matrix',
        help='title of the plot')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def _read_prediction(path: str, reduce_zero_label: bool,
                     num_classes: int) -> np.ndarray:
    from mmseg.datasets.transforms.loading import read_label_map
    pred = read_label_map(path).astype(np.int64)
    if reduce_zero_label:
        pred -= 1  # saved in the dataset's convention: class k as k + 1
    bad = np.unique(pred[(pred < 0) | (pred >= num_classes)])
    if bad.size:
        shown = (bad + 1 if reduce_zero_label else bad)[:8].tolist()
        raise DatasetError(
            f'prediction {path} has value(s) {shown} that are not classes '
            f'of the dataset ({num_classes} classes' +
            (', saved as 1..K since it reduces label 0' if reduce_zero_label
             else '') + ')')
    return pred


def confusion_matrix(dataset, prediction_dir: str) -> np.ndarray:
    """``K x K`` pixel counts, rows the ground truth, columns the
    prediction, over the dataset's images (ignored pixels left out).

    Raises:
        FileNotFoundError: an image of the dataset has no prediction.
        DatasetError: a prediction's size or values do not fit.
    """
    from mmengine.utils import ProgressBar

    from mmseg.datasets.transforms import LoadAnnotations
    num_classes = len(dataset.metainfo['classes'])
    load_labels = LoadAnnotations()
    matrix = np.zeros((num_classes, num_classes), np.int64)
    pairs = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        stem = osp.splitext(osp.basename(info['img_path']))[0]
        path = osp.join(prediction_dir, stem + '.png')
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'no prediction for image {info["img_path"]} in '
                f'{prediction_dir} (expected {stem}.png, as tools/test.py '
                '--out writes it)')
        pairs.append((info, path))
    progress = ProgressBar(len(pairs), file=sys.stderr)
    try:
        for info, path in pairs:
            label = load_labels(dict(info))['gt_seg_map'].astype(np.int64)
            pred = _read_prediction(path, info.get('reduce_zero_label',
                                                   False), num_classes)
            if pred.shape != label.shape:
                raise DatasetError(
                    f'prediction {path} is {pred.shape[0]}x{pred.shape[1]} '
                    f'but the label map {info["seg_map_path"]} is '
                    f'{label.shape[0]}x{label.shape[1]}')
            valid = label != dataset.ignore_index
            matrix += np.bincount(
                num_classes * label[valid] + pred[valid],
                minlength=num_classes**2).reshape(num_classes, num_classes)
            progress.update()
    finally:
        sys.stderr.write('\n')  # end the progress bar's line
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, labels, save_path: str,
                          title: str, color_theme: str,
                          show: bool = False) -> None:
    """Rows normalised to percent, each cell annotated (MMSegmentation's
    plot)."""
    import matplotlib
    if not show:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    try:
        cmap = plt.get_cmap(color_theme)
    except ValueError as e:
        raise ConfigError(f'--color-theme {color_theme!r} is not a '
                          'matplotlib colour map (e.g. winter, viridis, '
                          'Blues)') from e
    per_row = matrix.sum(axis=1, keepdims=True)
    percent = np.where(per_row > 0, matrix / np.maximum(per_row, 1) * 100,
                       np.nan)
    num_classes = len(labels)
    side = max(6., 0.5 * num_classes)
    fig, ax = plt.subplots(figsize=(side, side * 0.8), dpi=100)
    image = ax.imshow(percent, cmap=cmap, vmin=0, vmax=100)
    fig.colorbar(mappable=image, ax=ax)
    ax.set_title(title, fontdict=dict(weight='bold', size=12))
    ax.set_xlabel('Prediction label', fontsize=10)
    ax.set_ylabel('Ground Truth label', fontsize=10)
    ax.set_xticks(np.arange(num_classes))
    ax.set_yticks(np.arange(num_classes))
    ax.set_xticklabels(labels, rotation=45, ha='right')
    ax.set_yticklabels(labels)
    if num_classes <= 30:  # beyond that the numbers are unreadable
        for i in range(num_classes):
            for j in range(num_classes):
                value = percent[i, j]
                ax.text(j, i, '-' if np.isnan(value) else f'{value:.0f}',
                        ha='center', va='center', color='w', size=7)
    ax.set_ylim(num_classes - 0.5, -0.5)
    fig.tight_layout()
    fig.savefig(save_path)
    if show:
        plt.show()
    plt.close(fig)


def _save_counts(matrix: np.ndarray, labels, path: str) -> None:
    from mmseg.engine import atomic_write_text
    rows = ['ground truth \\ prediction,' + ','.join(labels)]
    rows += [label + ',' + ','.join(map(str, row))
             for label, row in zip(labels, matrix)]
    atomic_write_text(path, '\n'.join(rows) + '\n')


def main(argv=None):
    args = parse_args(argv)
    if not osp.isdir(args.prediction_path):
        raise FileNotFoundError(
            f'prediction folder not found: {args.prediction_path}')
    from mmengine.registry import init_default_scope

    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.pipeline = []  # the label maps are read directly
    with attach_config_to_errors(cfg):
        dataset = DATASETS.build(dataset_cfg)
    labels = [str(c) for c in dataset.metainfo['classes']]

    folders = [('', args.prediction_path)]
    if args.per_learner:
        found = sorted(
            glob.glob(osp.join(args.prediction_path, 'learner[0-9]*')),
            key=lambda p: int(osp.basename(p)[len('learner'):]))
        if not found:
            raise FileNotFoundError(
                f'--per-learner: no learner0/, learner1/, ... in '
                f'{args.prediction_path}; write them with tools/test.py '
                '--per-learner --out DIR')
        folders += [('_' + osp.basename(p), p) for p in found]

    os.makedirs(args.save_dir, exist_ok=True)
    for suffix, folder in folders:
        matrix = confusion_matrix(dataset, folder)
        name = 'ensemble' if not suffix else suffix[1:]
        png = osp.join(args.save_dir, f'confusion_matrix{suffix}.png')
        title = args.title + (f' ({name})' if args.per_learner else '')
        plot_confusion_matrix(matrix, labels, png, title, args.color_theme,
                              args.show)
        _save_counts(matrix, labels,
                     osp.join(args.save_dir, f'confusion_matrix{suffix}.csv'))
        accuracy = 100 * np.trace(matrix) / max(matrix.sum(), 1)
        print(f'{name}: {matrix.sum()} pixels, {accuracy:.2f} % on the '
              f'diagonal; matrix in {png}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
