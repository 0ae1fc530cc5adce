"""Check every image and label map of a config's datasets before training.

    python tools/misc/check_dataset.py CONFIG [--splits train val]
        [--workers N] [--no-histogram] [--cfg-options KEY=VALUE ...]

Reads every sample of the train and val sets in N worker processes (with a
progress bar) and reports, all at once, every unreadable or missing file,
label map whose size differs from its image, and label value outside the
classes (judged after ``reduce_zero_label``/``label_map`` with the ignore
index, as training does), then a class histogram per dataset. Exits with
status 1 when it found any problem, 0 otherwise.
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from mmseg.cli import (add_debug_argument, attach_config_to_errors,
                       load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check the images and label maps of a config\'s '
        'datasets')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--splits', nargs='+', default=['train', 'val'],
        choices=['train', 'val', 'test'],
        help='which dataloaders\' datasets to scan (default: train val)')
    parser.add_argument(
        '--workers', type=int, default=min(8, os.cpu_count() or 1),
        help='worker processes (default: min(8, CPUs))')
    parser.add_argument(
        '--no-histogram', action='store_true',
        help='do not print the class histograms')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmseg.datasets import DatasetError
    from mmseg.datasets.label_scan import scan_config
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    with attach_config_to_errors(cfg):
        problems, _ = scan_config(
            cfg, args.splits, workers=args.workers,
            progress=not args.no_progress, histogram=not args.no_histogram)
    if problems:
        raise DatasetError(f'{problems} problem(s) in the datasets of '
                           f'{args.config} (listed above)')
    print(f'{args.config}: no problems found')


if __name__ == '__main__':
    sys.exit(run(main))
