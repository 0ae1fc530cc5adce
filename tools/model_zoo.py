"""The published checkpoints by name: list them, download them into the
cache, verify the cached files.

    python tools/model_zoo.py list [--dataset ADE20K]
    python tools/model_zoo.py download NAME [NAME ...]
    python tools/model_zoo.py verify [NAME ...]
        [--mirror URL_OR_DIR] [--cache-dir DIR] [--index FILE] [--debug]

Names are those of ``senformer_configs/model_index.yml`` (the published
file stems, e.g. ``senformer_r50_512x512_ade20k``). ``download`` fetches
each checkpoint once (from ``--mirror``/``$SENFORMER_MIRROR`` when set),
checks it (sha256 when the index records one, strict load into its config's
model) and prints its path and sha256. ``verify`` checks cached files again
(all cached ones by default) and exits with 1 when one fails; it never
deletes them.
"""
import argparse
import os.path as osp
import sys

from mmseg.cli import add_debug_argument, run

COMMANDS = ('list', 'download', 'verify')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='List, download and verify the published checkpoints')
    parser.add_argument('command', help=' | '.join(COMMANDS))
    parser.add_argument(
        'names', nargs='*', metavar='NAME',
        help='model names (download: at least one; verify: default all '
        'cached)')
    parser.add_argument(
        '--dataset', help='list: only the models of this dataset')
    parser.add_argument(
        '--mirror', help='base URL or folder holding the checkpoint files '
        '(default: $SENFORMER_MIRROR, else the published URLs)')
    parser.add_argument(
        '--cache-dir', help='checkpoint cache (default: $SENFORMER_CACHE, '
        'else <torch hub dir>/checkpoints)')
    parser.add_argument(
        '--index', help='model index file (default: $SENFORMER_MODEL_INDEX, '
        'else senformer_configs/model_index.yml)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        parser.error(f'unknown command {args.command!r} (choose from '
                     f'{", ".join(COMMANDS)})')
    if args.command == 'download' and not args.names:
        parser.error('download needs at least one model name')
    if args.command == 'list' and args.names:
        parser.error('list takes no names (use --dataset to filter)')
    return args


def _number(value):
    return '-' if value is None else str(value)


def list_models(args, zoo) -> int:
    models = list(zoo.load_index(args.index).values())
    if args.dataset:
        datasets = sorted({m.dataset for m in models})
        models = [m for m in models
                  if m.dataset.lower() == args.dataset.lower()]
        if not models:
            raise zoo.UnknownModelError(
                f'no model of dataset {args.dataset!r} (datasets: '
                f'{", ".join(datasets)})')
    width = max(len(m.name) for m in models)
    print(f'{"name":<{width}}  {"dataset":<17}  {"mIoU":>5}  {"MS":>5}  '
          f'{"params":>7}  cached')
    for m in models:
        params = '-' if m.params is None else f'{m.params / 1e6:.1f}M'
        cached = 'yes' if osp.isfile(
            zoo.cached_checkpoint(m, args.cache_dir)) else 'no'
        print(f'{m.name:<{width}}  {m.dataset:<17}  {_number(m.miou):>5}  '
              f'{_number(m.miou_ms):>5}  {params:>7}  {cached}')
    print(f'{len(models)} models; cache: {zoo.cache_dir(args.cache_dir)}')
    return 0


def download(args, zoo) -> int:
    from mmseg.engine.download_check import sha256_of
    for name in args.names:
        path = zoo.fetch_checkpoint(name, mirror=args.mirror,
                                    directory=args.cache_dir,
                                    index=args.index)
        print(f'{name}: {path} sha256 {sha256_of(path)}')
    return 0


def verify(args, zoo) -> int:
    if args.names:
        models = [zoo.get_model(name, args.index) for name in args.names]
    else:
        models = zoo.cached_models(args.cache_dir, args.index)
        if not models:
            print(f'no checkpoint cached in {zoo.cache_dir(args.cache_dir)}')
            return 0
    failed = 0
    for model in models:
        path = zoo.cached_checkpoint(model, args.cache_dir)
        if not osp.isfile(path):
            print(f'{model.name}: not downloaded ({path})')
            failed += 1
            continue
        try:
            digest = zoo.verify_checkpoint(model, path)
        except zoo.ModelZooError as e:
            print(f'{model.name}: FAILED: {e}; delete the file and download '
                  'it again')
            failed += 1
            continue
        checked = 'checked' if model.sha256 else 'not in the index'
        print(f'{model.name}: OK {path} sha256 {digest} ({checked})')
    if failed:
        print(f'{failed} of {len(models)} not verified', file=sys.stderr)
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(argv)
    from mmseg.apis import model_zoo as zoo
    return dict(list=list_models, download=download,
                verify=verify)[args.command](args, zoo)


if __name__ == '__main__':
    sys.exit(run(main))
