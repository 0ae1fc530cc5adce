"""Print a config with its _base_ files merged in.

    python tools/print_config.py CONFIG [--cfg-options KEY=VALUE ...]
        [--save-path FILE]

What is printed is what tools/train.py and tools/test.py would build from,
after the ``--cfg-options`` overrides. ``--save-path`` also writes it as a
single self-contained config (.py, .json or .yaml by the extension).
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmseg.cli import add_debug_argument, load_config, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Print a config with its _base_ files merged in')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries, e.g. model.decode_head.num_classes=3')
    parser.add_argument(
        '--save-path', help='also write the merged config to this file')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.save_path is not None and osp.splitext(
            args.save_path)[1] not in ('.py', '.json', '.yaml', '.yml'):
        parser.error(f'--save-path must end in .py, .json or .yaml, got '
                     f'{args.save_path}')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(cfg.pretty_text)
    if args.save_path is not None:
        cfg.dump(args.save_path)
        print(f'saved to {args.save_path}')


if __name__ == '__main__':
    sys.exit(run(main))
