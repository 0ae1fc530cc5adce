"""Plot training curves (losses, validation mIoU, ...) to an image.

    python tools/analyze_logs.py LOG [LOG ...] [--keys loss mIoU]
        [--legend NAME ...] [--title TITLE] [--out FILE]

Each LOG is mmengine's ``vis_data/scalars.json`` (one JSON object per line,
with ``step`` = iteration) or a work dir: then every run's
``<timestamp>/vis_data/scalars.json`` in it is read, in time order, so a
resumed training shows as one curve (a run starting at iteration ``s``
replaces what older runs logged from ``s`` on). One panel per key, one
curve per LOG. Training values (``loss``, ``decode.loss_seg``, ``lr``, ...)
are logged every ``LoggerHook.interval`` iterations, validation metrics
(``mIoU``, ``mAcc``, ``aAcc``) at each validation. Without ``--out`` the
image goes to ``analyze_logs.png`` beside the (first) log.
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

from mmseg.cli import add_debug_argument, run

Curve = Tuple[List[int], List[float]]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plot training curves from mmengine scalars.json logs')
    parser.add_argument(
        'logs', nargs='+', metavar='LOG',
        help='vis_data/scalars.json file(s) or work dir(s)')
    parser.add_argument(
        '--keys', nargs='+', default=['loss', 'mIoU'],
        help='logged values to plot, one panel each (default: loss mIoU)')
    parser.add_argument(
        '--legend', nargs='+', help='one name per LOG (default: the paths)')
    parser.add_argument('--title', help='figure title')
    parser.add_argument(
        '--out', help='image file (.png, .pdf, .svg, ...); default: '
        'analyze_logs.png beside the first log')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.legend is not None and len(args.legend) != len(args.logs):
        parser.error(f'--legend has {len(args.legend)} names for '
                     f'{len(args.logs)} logs')
    return args


def scalar_files(log: str) -> List[str]:
    """The scalars.json file(s) that ``log`` names, oldest run first."""
    if osp.isfile(log):
        return [log]
    if osp.isdir(log):
        # run folders are named by their start time, so names sort by time
        files = sorted(glob.glob(osp.join(log, '*', 'vis_data',
                                          'scalars.json')))
        if osp.isfile(osp.join(log, 'scalars.json')):
            files.append(osp.join(log, 'scalars.json'))
        if files:
            return files
        raise FileNotFoundError(
            f'{log}: no */vis_data/scalars.json in this work dir')
    raise FileNotFoundError(f'log not found: {log}')


def read_records(filename: str) -> List[dict]:
    records = []
    with open(filename) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record['step'] = int(record['step'])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(
                    f'{filename}:{number}: not an mmengine scalars line '
                    f'({type(e).__name__}: {e})') from None
            records.append(record)
    return records


def read_scalars(files: List[str]) -> Dict[str, Curve]:
    """``{key: (steps, values)}`` of runs given oldest first.

    A run that starts at step ``s`` (a resumed one, or a new training in
    the same work dir) replaces what earlier runs logged from ``s`` on.
    """
    by_key: Dict[str, Dict[int, float]] = {}
    for filename in files:
        records = read_records(filename)
        if records:
            start = min(r['step'] for r in records)
            for values in by_key.values():
                for step in [s for s in values if s >= start]:
                    del values[step]
        for record in records:
            for key, value in record.items():
                if key != 'step' and isinstance(value, (int, float)):
                    by_key.setdefault(key, {})[record['step']] = float(value)
    return {
        key: (sorted(values), [values[s] for s in sorted(values)])
        for key, values in by_key.items()
    }


def plot(curves: List[Dict[str, Curve]], names: List[str], keys: List[str],
         out_file: str, title: Optional[str] = None) -> None:
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(keys), 1, figsize=(8, 3 * len(keys)), squeeze=False, sharex=True)
    for ax, key in zip(axes[:, 0], keys):
        for curve, name in zip(curves, names):
            if key in curve:
                steps, values = curve[key]
                ax.plot(steps, values, marker='o' if len(steps) < 20 else '',
                        label=name)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        if len(curves) > 1:
            ax.legend()
    axes[-1, 0].set_xlabel('iteration')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    files = [scalar_files(log) for log in args.logs]
    try:
        curves = [read_scalars(group) for group in files]
    except ValueError as e:  # a line that is not mmengine's
        sys.exit(f'error: {e}')
    for key in args.keys:
        if not any(key in curve for curve in curves):
            known = sorted({k for curve in curves for k in curve})
            sys.exit(f'error: no {key!r} in {", ".join(args.logs)} (logged: '
                     f'{", ".join(known) or "nothing"})')
    out_file = args.out or osp.join(osp.dirname(files[0][-1]),
                                    'analyze_logs.png')
    plot(curves, args.legend or args.logs, args.keys, out_file, args.title)
    for curve, name in zip(curves, args.legend or args.logs):
        summary = []
        for key in args.keys:
            if key in curve:
                steps, values = curve[key]
                summary.append(f'{key} {values[-1]:.4g} at iter {steps[-1]}')
        print(f'{name}: ' + ', '.join(summary))
    print(f'wrote {out_file}')


if __name__ == '__main__':
    sys.exit(run(main))
