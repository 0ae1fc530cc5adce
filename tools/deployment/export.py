"""Export a segmentor to ONNX or a torch.export program, checked against
PyTorch.

    python tools/deployment/export.py CONFIG CHECKPOINT \
        --format onnx|exported-program --out FILE [--shape H W] [--dynamic]
        [--no-check] [--cfg-options KEY=VALUE ...] [--debug]

The exported network takes the normalised image ``1 x 3 x H x W`` (what the
segmentor's ``encode_decode`` takes: BGR->RGB, minus mean, over std) and
gives the scores ``1 x K x H x W`` (SenFormer: the ensemble). ``--shape``
defaults to the config's crop size; ``--dynamic`` lets height and width
vary (multiples of 32). The exported model is run on a random image and
compared with PyTorch (ONNX: with onnxruntime when it is installed); the
file is written only when the arg-max agrees on at least 99.9 % of the
pixels. ``CHECKPOINT`` may be ``none`` for random weights (to try a config).
"""
import argparse
import os.path as osp
import sys
import time
import traceback

from mmengine.config import DictAction

from mmseg.cli import (ConfigError, add_debug_argument,
                       attach_config_to_errors, load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a segmentor (image -> scores) to ONNX or a '
        'torch.export program and check it against PyTorch')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint', help='checkpoint file (or "none": random weights)')
    parser.add_argument(
        '--format', choices=['onnx', 'exported-program'],
        help='onnx, or exported-program (torch.export.save, .pt2); '
        'required')
    parser.add_argument('--out', help='file to write (required)')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input height and width (default: the config\'s crop size)')
    parser.add_argument(
        '--dynamic', action='store_true',
        help='height and width may vary (multiples of 32)')
    parser.add_argument(
        '--no-check', action='store_true',
        help='do not compare the exported model with PyTorch')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    # checked here, not by argparse, so that an unknown option is named
    # first
    for option in ('format', 'out'):
        if getattr(args, option) is None:
            parser.error(f'--{option} is required')
    return args


def _default_shape(cfg):
    size = cfg.model.get('data_preprocessor', {}).get('size')
    if not size:
        raise ConfigError('the config has no model.data_preprocessor.size; '
                          'give the input size with --shape H W')
    return tuple(int(s) for s in size)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint) and \
            '://' not in checkpoint:
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    if args.shape is not None and min(args.shape) < 32:
        raise ConfigError(f'--shape {args.shape[0]} {args.shape[1]}: height '
                          'and width must be at least 32')
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'output folder not found: {out_dir}')

    from mmseg.apis import init_model
    from mmseg.apis.export import (ExportError, distinct_class_queries,
                                   export_model)
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    shape = tuple(args.shape) if args.shape else _default_shape(cfg)
    with attach_config_to_errors(cfg):
        model = init_model(cfg, checkpoint, device='cpu')
    if checkpoint is None:
        distinct_class_queries(model)

    start = time.perf_counter()
    try:
        checks = export_model(model, args.out, args.format, shape,
                              args.dynamic, check=not args.no_check)
    except ExportError as e:
        if args.debug:
            traceback.print_exc()
        # a failed export or check is the model's answer, not a bug here
        raise SystemExit(f'error: {e}')
    size_mb = osp.getsize(args.out) / 2**20
    print(f'exported {args.format} ({shape[0]} x {shape[1]}'
          f'{", dynamic" if args.dynamic else ""}) to {args.out}: '
          f'{size_mb:.1f} MB in {time.perf_counter() - start:.1f} s')
    for result in checks:
        print(f'check against PyTorch on a random image, scores '
              f'{"x".join(map(str, result.shape))}: max abs difference '
              f'{result.max_abs_diff:.2e}, arg-max equal on '
              f'{100 * result.argmax_agreement:.2f} % of the pixels')
    if args.no_check:
        print('not checked (--no-check)')
    elif not checks:
        print('not checked: onnxruntime is not installed '
              '(pip install onnxruntime)')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
