"""This code against the published SenFormer on one model and one input:
alternating processes, the median of each side, and their ratio.

    python tools/analysis_tools/side_by_side.py --mode forward --size 512 \
        --batch 1 --threads 2 --repeat 3 --pairs 3
    python tools/analysis_tools/side_by_side.py --mode train --size 512 \
        --batch 2 --threads 2 --repeat 2 --pairs 2 \
        --config senformer_configs/senformer/ade20k/senformerNWS_fpnt_swin_tiny_512x512_160k_ade20k.py

Each process is one run of ``tools/benchmark.py`` (this code) or of the
published benchmark (``--published-script``, run with
``--published-python``), timing ``--repeat`` steps after a warm-up and
reporting their median and the process's peak resident memory; the pairs
alternate so that both sides see the same machine. The published script
takes the config of the same name as ``--config`` from its own checkout
unless ``--published-config`` says otherwise.
"""
import argparse
import json
import os.path as osp
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import benchmark_scaling as scaling  # noqa: E402

from mmseg.cli import ConfigError, add_debug_argument, run  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=scaling.DEFAULT_CONFIG)
    parser.add_argument('--published-config', default=None)
    parser.add_argument('--mode', choices=['forward', 'train'],
                        default='forward')
    parser.add_argument('--size', type=scaling.positive_int, default=512)
    parser.add_argument('--batch', type=scaling.positive_int, default=None,
                        help='default: 1 forward, 2 train')
    parser.add_argument('--threads', type=scaling.positive_int, default=2)
    parser.add_argument('--repeat', type=scaling.positive_int, default=3)
    parser.add_argument('--pairs', type=scaling.positive_int, default=3,
                        help='alternating process pairs')
    parser.add_argument('--timeout', type=float, default=1800)
    parser.add_argument('--published-python',
                        default=scaling.DEFAULT_PUBLISHED_PYTHON)
    parser.add_argument('--published-script',
                        default=scaling.DEFAULT_PUBLISHED_SCRIPT)
    parser.add_argument('--json', help='also write every run to this file')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    args.no_published = False
    if args.published_config is None:
        args.published_config = osp.relpath(
            osp.abspath(args.config), scaling.REPO_ROOT)
    return args


def main(argv=None):
    args = parse_args(argv)
    missing = scaling.published_available(args)
    if missing:
        raise ConfigError(missing)
    batch = args.batch or (1 if args.mode == 'forward' else 2)
    runs = {scaling.THIS: [], scaling.PUBLISHED: []}
    for pair in range(args.pairs):
        for impl in (scaling.THIS, scaling.PUBLISHED):
            record = scaling.measure(args, dict(
                impl=impl, mode=args.mode, height=args.size,
                width=args.size, batch=batch))
            print(f'pair {pair + 1}: {scaling.describe(record)}', flush=True)
            if record['status'] != 'ok':
                raise scaling.ScalingError(f'{impl} run failed: '
                                   f'{record.get("error", "")}')
            runs[impl].append(record)
    seconds = {k: statistics.median(r['seconds'] for r in v)
               for k, v in runs.items()}
    memory = {k: statistics.median(r['peak_memory_gb'] for r in v)
              for k, v in runs.items()}
    this, published = scaling.THIS, scaling.PUBLISHED
    print(f'{args.mode} {batch} x 3 x {args.size} x {args.size}, '
          f'{args.threads} threads, median of {args.pairs} processes each:')
    print(f'  seconds     this {seconds[this]:.3f}  published '
          f'{seconds[published]:.3f}  ratio '
          f'{seconds[this] / seconds[published]:.3f}')
    print(f'  peak GB     this {memory[this]:.2f}  published '
          f'{memory[published]:.2f}  ratio '
          f'{memory[this] / memory[published]:.3f}')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(dict(args=vars(args), runs=runs, seconds=seconds,
                           peak_memory_gb=memory), f, indent=2)


if __name__ == '__main__':
    sys.exit(run(main))
