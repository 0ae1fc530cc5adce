"""How time and peak memory grow with the input size and the batch, for this
code and (when it is installed) the published SenFormer, side by side.

    python tools/analysis_tools/benchmark_scaling.py [--config CONFIG]
        [--forward-sizes 256 384 512 768 1024 1024x2048]
        [--train-sizes 256 384 512 768 1024] [--batches 1 2 4]
        [--threads 2] [--repeat 3] [--timeout 1800] [--memory-limit-gb G]
        [--published-python PY] [--published-script SCRIPT] [--no-published]
        [--out work_dirs/benchmark_scaling.json] [--resume]
        [--plot docs/benchmarks_scaling.png] [--plot-only]

Every point (implementation, mode, size, batch) is measured in a process of
its own: this code through ``tools/benchmark.py --json --skip-flops``, the
published code through its benchmark script (``--mode forward|train --size S
--batch N --threads T --repeat K --skip-flops``, whose last line is
``RESULT {json}``). The two implementations alternate point by point, the
sizes go up within each mode and batch, and each record is written to the
JSON file as soon as it is measured (atomically), so an interrupted run keeps
what it measured and ``--resume`` goes on from there.

A point is not started when the peak memory extrapolated from the two
largest measured points of the same implementation, mode and batch exceeds
``--memory-limit-gb`` (default: 90 % of the machine's memory, as the
extrapolation is rough and the system needs some), or when a smaller
point of that series failed, ran out of memory or out of time; a point that
fails, is killed, or runs past ``--timeout`` is recorded with that status.
The published script takes square sizes only, so non-square sizes (the
Cityscapes whole image, 1024x2048) are measured for this code only.

Peak memory is the process's peak resident memory, in GB of 1e9 bytes for
both (the published script's KiB are converted). The published script runs
without the ``PYTHONPATH`` entries that hold an ``mmseg`` package (this
code's would shadow its MMSegmentation 0.x).
"""
import argparse
import datetime
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

from mmseg.engine.atomic_io import atomic_write, atomic_write_text
from mmseg.cli import ConfigError, add_debug_argument, run
from mmseg.utils.errors import SenFormerError

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

DEFAULT_CONFIG = ('senformer_configs/senformer/ade20k/'
                  'senformerNWS_fpnt_r50_512x512_160k_ade20k.py')
DEFAULT_FORWARD_SIZES = ['256', '384', '512', '768', '1024', '1024x2048']
DEFAULT_TRAIN_SIZES = ['256', '384', '512', '768', '1024']
# where the development set-up keeps the published code (see
# ../shared/published/setup.sh); elsewhere pass --published-python/-script
DEFAULT_PUBLISHED_PYTHON = '/tmp/pub-venv/bin/python'
DEFAULT_PUBLISHED_SCRIPT = osp.join(
    osp.dirname(REPO_ROOT), 'shared', 'published', 'bench_published.py')

THIS, PUBLISHED = 'this', 'published'
#: share of the machine's memory a point may be expected to take
MEMORY_SHARE = 0.9
#: statuses after which a later, larger point of the series is not tried
BLOCKING = ('oom', 'timeout', 'failed')


class ScalingError(SenFormerError, RuntimeError):
    """The results file or the plot cannot be read or made."""


def parse_size(text: str) -> Tuple[int, int]:
    """``512`` -> (512, 512); ``1024x2048`` -> (1024, 2048) (H x W)."""
    parts = text.lower().split('x')
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(
            f'size {text!r}: give S (square) or HxW, e.g. 512 or 1024x2048')
    return tuple(sizes)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f'{text!r} is not a positive number')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Time and peak memory against input size and batch, '
        'this code and the published one, one process per point.')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='this code\'s config (default: %(default)s)')
    parser.add_argument(
        '--published-config', default=None,
        help='the published script\'s --config (default: its own, '
        'SenFormerNWS-R50 ADE20K)')
    parser.add_argument('--forward-sizes', nargs='*', type=parse_size,
                        default=[parse_size(s) for s in DEFAULT_FORWARD_SIZES],
                        metavar='S|HxW', help='inference sizes (default: '
                        f'{" ".join(DEFAULT_FORWARD_SIZES)})')
    parser.add_argument('--train-sizes', nargs='*', type=parse_size,
                        default=[parse_size(s) for s in DEFAULT_TRAIN_SIZES],
                        metavar='S|HxW', help='training-step sizes (default: '
                        f'{" ".join(DEFAULT_TRAIN_SIZES)})')
    parser.add_argument('--batches', nargs='+', type=positive_int,
                        default=[1, 2, 4], help='batch sizes (default: 1 2 4)')
    parser.add_argument('--threads', type=positive_int, default=2)
    parser.add_argument('--repeat', type=positive_int, default=3,
                        help='timed steps per point (the median is kept)')
    parser.add_argument('--timeout', type=float, default=1800,
                        help='seconds one point may take, build and warm-up '
                        'included (default: %(default)s)')
    parser.add_argument(
        '--memory-limit-gb', type=float, default=None,
        help='do not start points expected to need more (default: 90 %% '
        'of the machine\'s memory)')
    parser.add_argument('--published-python', default=DEFAULT_PUBLISHED_PYTHON,
                        help='python of the published code\'s environment '
                        '(default: %(default)s)')
    parser.add_argument('--published-script', default=DEFAULT_PUBLISHED_SCRIPT,
                        help='the published benchmark script (default: '
                        '%(default)s)')
    parser.add_argument('--no-published', action='store_true',
                        help='measure this code only')
    parser.add_argument('--out', default='work_dirs/benchmark_scaling.json',
                        help='results file (default: %(default)s)')
    parser.add_argument('--resume', action='store_true',
                        help='keep the points already in --out and measure '
                        'the rest')
    parser.add_argument('--plot', metavar='PNG', default=None,
                        help='draw the results into this figure (needs '
                        'matplotlib)')
    parser.add_argument('--plot-only', action='store_true',
                        help='only draw --plot from --out, measure nothing')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.plot_only and not args.plot:
        parser.error('--plot-only needs --plot PNG')
    return args


# ----------------------------------------------------------------------
# the grid


def point_key(impl: str, mode: str, size: Tuple[int, int],
              batch: int) -> str:
    return f'{impl}/{mode}/{size[0]}x{size[1]}/b{batch}'


def grid(args, with_published: bool) -> List[dict]:
    """The points in measuring order: per mode and batch, sizes going up,
    the two implementations alternating."""
    points = []
    for mode, sizes in (('forward', args.forward_sizes),
                        ('train', args.train_sizes)):
        for batch in args.batches:
            for size in sorted(set(sizes), key=lambda s: (s[0] * s[1], s)):
                impls = [THIS]
                # the published script only takes square sizes
                if with_published and size[0] == size[1]:
                    impls.append(PUBLISHED)
                for impl in impls:
                    points.append(dict(
                        key=point_key(impl, mode, size, batch), impl=impl,
                        mode=mode, height=size[0], width=size[1],
                        batch=batch))
    return points


# ----------------------------------------------------------------------
# the results file


def load_results(path: str) -> List[dict]:
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ScalingError(f'cannot read the results file {path}: {e}') from e
    if not isinstance(data, dict) or not isinstance(data.get('points'), list):
        raise ScalingError(f'{path} is not a results file of this tool (no '
                           '"points" list)')
    return data['points']


def save_results(path: str, points: List[dict], machine: dict) -> None:
    atomic_write_text(path, json.dumps(
        dict(machine=machine, points=points), indent=1) + '\n')


def machine_description(args) -> dict:
    import platform
    model = ''
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), '')
    except OSError:
        pass
    return dict(cpu=model or platform.processor(), cores=os.cpu_count(),
                memory_gb=round(total_memory_gb(), 1),
                threads=args.threads, repeat=args.repeat,
                config=args.config)


def total_memory_gb() -> float:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9


# ----------------------------------------------------------------------
# deciding what to skip


def estimated_memory_gb(point: dict, done: List[dict]) -> Optional[float]:
    """Peak memory of ``point`` extrapolated linearly in batch x pixels from
    the two largest measured points of its series (or in proportion to the
    one there is); None without any."""
    series = sorted(
        ((r['batch'] * r['height'] * r['width'], r['peak_memory_gb'])
         for r in done if r['status'] == 'ok' and r['impl'] == point['impl']
         and r['mode'] == point['mode']),
        key=lambda xy: xy[0])
    # one figure per work size (the same size at two batches may differ)
    by_work = dict(series)
    if not by_work:
        return None
    work = point['batch'] * point['height'] * point['width']
    (x1, y1), *rest = sorted(by_work.items(), reverse=True)
    if not rest:
        return y1 * work / x1
    x0, y0 = rest[0]
    slope = max((y1 - y0) / (x1 - x0), 0.0)
    return y1 + slope * (work - x1)


def reason_to_skip(point: dict, done: List[dict],
                   memory_limit_gb: float) -> Optional[str]:
    for r in done:
        if (r['impl'], r['mode'], r['batch']) == (
                point['impl'], point['mode'], point['batch']) and \
                r['status'] in BLOCKING and \
                r['height'] * r['width'] <= point['height'] * point['width']:
            return (f'{r["height"]}x{r["width"]} of this series ended with '
                    f'{r["status"]}')
    estimate = estimated_memory_gb(point, done)
    if estimate is not None and estimate > memory_limit_gb:
        return (f'needs about {estimate:.1f} GB (extrapolated), more than '
                f'the {memory_limit_gb:.1f} GB limit')
    return None


# ----------------------------------------------------------------------
# measuring


def this_code_command(args, point: dict, json_path: str) -> List[str]:
    return [
        sys.executable, osp.join(REPO_ROOT, 'tools', 'benchmark.py'),
        args.config, '--mode',
        'inference' if point['mode'] == 'forward' else 'train',
        '--shape', str(point['height']), str(point['width']),
        '--batch', str(point['batch']), '--threads', str(args.threads),
        '--repeat', str(args.repeat), '--skip-flops', '--json', json_path
    ]


def published_command(args, point: dict) -> List[str]:
    command = [
        args.published_python, args.published_script, '--mode',
        point['mode'], '--size', str(point['height']), '--batch',
        str(point['batch']), '--threads', str(args.threads), '--repeat',
        str(args.repeat), '--skip-flops'
    ]
    if args.published_config:
        command += ['--config', args.published_config]
    return command


def published_environment() -> dict:
    """This environment without the PYTHONPATH entries that hold an
    ``mmseg`` package: the published code brings its own (MMSegmentation
    0.x), which this code's would shadow."""
    env = dict(os.environ)
    entries = [
        e for e in env.get('PYTHONPATH', '').split(os.pathsep)
        if e and not osp.isfile(osp.join(e, 'mmseg', '__init__.py'))
    ]
    if entries:
        env['PYTHONPATH'] = os.pathsep.join(entries)
    else:
        env.pop('PYTHONPATH', None)
    return env


def run_with_timeout(command: List[str], timeout: float,
                     env: dict) -> Tuple[Optional[int], str, str]:
    """(exit status or None on timeout, stdout, stderr); a process that runs
    too long is killed with everything it started."""
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


def failure_status(returncode: int, stderr: str) -> str:
    text = stderr.lower()
    if returncode == -signal.SIGKILL or 'out of memory' in text or \
            'memoryerror' in text or 'cannot allocate memory' in text:
        # SIGKILL from nobody else is the kernel's out-of-memory killer
        return 'oom'
    return 'failed'


def last_line(text: str) -> str:
    """The line that says what went wrong: the last ``error: ...`` line
    of the tools here (a hint may follow it), else the last line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('error: ')]
    return (errors or lines or [''])[-1][-300:]


def measure(args, point: dict) -> dict:
    """Run one point in a new process; the record to keep."""
    record = dict(point)
    record['started'] = datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec='seconds')
    with tempfile.TemporaryDirectory() as tmp:
        json_path = osp.join(tmp, 'result.json')
        if point['impl'] == THIS:
            command = this_code_command(args, point, json_path)
            # the code beside this script is the one measured
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')])))
        else:
            command = published_command(args, point)
            env = published_environment()
        record['command'] = ' '.join(command)
        start = time.perf_counter()
        returncode, out, err = run_with_timeout(command, args.timeout, env)
        record['wall_s'] = round(time.perf_counter() - start, 1)
        if returncode is None:
            record.update(status='timeout',
                          error=f'still running after {args.timeout:g} s')
            return record
        if returncode != 0:
            record.update(status=failure_status(returncode, err),
                          error=f'exit status {returncode}: '
                          f'{last_line(err) or last_line(out)}')
            return record
        try:
            if point['impl'] == THIS:
                with open(json_path, encoding='utf-8') as f:
                    result = json.load(f)
                record.update(seconds=result['seconds_median'],
                              seconds_all=result['seconds_all'],
                              peak_memory_gb=result['peak_memory_gb'])
            else:
                line = next(line for line in reversed(out.splitlines())
                            if line.startswith('RESULT '))
                result = json.loads(line[len('RESULT '):])
                record.update(
                    seconds=round(result['seconds'], 4),
                    seconds_all=[round(t, 4) for t in result['times']],
                    peak_memory_gb=round(
                        result['peak_rss_kib'] * 1024 / 1e9, 2))
        except (OSError, ValueError, KeyError, StopIteration) as e:
            record.update(status='failed',
                          error=f'no result in its output ({type(e).__name__}'
                          f' {e}): {last_line(out)}')
            return record
    record['status'] = 'ok'
    return record


def describe(record: dict) -> str:
    what = (f'{record["impl"]:<9} {record["mode"]:<7} {record["batch"]} x 3 '
            f'x {record["height"]} x {record["width"]}')
    if record['status'] == 'ok':
        return (f'{what}: {record["seconds"]:.3f} s, '
                f'{record["peak_memory_gb"]:.2f} GB')
    return f'{what}: {record["status"]} ({record.get("error", "")})'


def published_available(args) -> Optional[str]:
    """Why the published code cannot be measured (None when it can)."""
    if args.no_published:
        return '--no-published'
    for what, path in (('--published-python', args.published_python),
                       ('--published-script', args.published_script)):
        if not osp.isfile(path):
            return f'{what} {path} does not exist'
    return None


def measure_grid(args) -> List[dict]:
    if osp.exists(args.out) and not args.resume:
        raise ConfigError(f'{args.out} exists: pass --resume to go on with '
                          'it, or another --out')
    done = load_results(args.out) if args.resume and osp.exists(
        args.out) else []
    # a skip is only a forecast: decide it again with what is known now
    done = [r for r in done if r.get('status') != 'skipped']
    missing = published_available(args)
    if missing:
        print(f'measuring this code only ({missing})', flush=True)
    machine = machine_description(args)
    limit = args.memory_limit_gb or MEMORY_SHARE * total_memory_gb()
    points = grid(args, with_published=missing is None)
    finished = {r['key'] for r in done}
    for number, point in enumerate(points, 1):
        if point['key'] in finished:
            continue
        reason = reason_to_skip(point, done, limit)
        if reason:
            record = dict(point, status='skipped', error=reason)
        else:
            record = measure(args, point)
        done.append(record)
        save_results(args.out, done, machine)
        print(f'[{number}/{len(points)}] {describe(record)}', flush=True)
    return done


# ----------------------------------------------------------------------
# the figure


def plot(points: List[dict], filename: str) -> None:
    try:
        import matplotlib
    except ImportError as e:
        raise ScalingError(
            '--plot needs matplotlib, which is not installed: pip install '
            'matplotlib') from e
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt

    measured = [r for r in points if r.get('status') == 'ok']
    if not measured:
        raise ScalingError('no measured point to plot (every point failed, '
                           'was skipped, or none was run)')
    from matplotlib.ticker import FormatStrFormatter, LogLocator
    batches = sorted({r['batch'] for r in measured})
    colours = plt.get_cmap('tab10')
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    for column, mode in enumerate(('forward', 'train')):
        for row, (field, label) in enumerate(
                (('seconds', 'seconds per step'),
                 ('peak_memory_gb', 'peak memory (GB)'))):
            ax = axes[row][column]
            for b_index, batch in enumerate(batches):
                # markers too: a series of one point has no line style
                for impl, style, marker in ((THIS, '-', 'o'),
                                            (PUBLISHED, '--', 's')):
                    series = sorted(
                        (r for r in measured if r['mode'] == mode
                         and r['impl'] == impl and r['batch'] == batch),
                        key=lambda r: r['height'] * r['width'])
                    if not series:
                        continue
                    ax.plot([r['height'] * r['width'] / 1e6 for r in series],
                            [r[field] for r in series], style, marker=marker,
                            color=colours(b_index),
                            label=f'{"this code" if impl == THIS else impl}'
                            f', batch {batch}')
            sizes = sorted({(r['height'], r['width']) for r in measured
                            if r['mode'] == mode}, key=lambda s: s[0] * s[1])
            ax.set_xscale('log')
            ax.set_yscale('log')
            ax.minorticks_off()
            ax.set_xticks([h * w / 1e6 for h, w in sizes])
            ax.set_xticklabels(
                [f'{h}²' if h == w else f'{h}×{w}' for h, w in sizes],
                rotation=30)
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FormatStrFormatter('%g'))
            ax.set_xlabel('input size (pixels)')
            ax.set_ylabel(label)
            title = 'forward (inference)' if mode == 'forward' else \
                'training step'
            ax.set_title(f'{title}: {label}')
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, 'not measured', transform=ax.transAxes,
                        ha='center', va='center', color='grey')
    fig.suptitle('SenFormer cost against input size: this code (solid, '
                 'circles), published (dashed, squares)')
    fig.tight_layout()
    atomic_write(filename, lambda f: fig.savefig(f, format='png', dpi=110))
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.plot_only:
        points = load_results(args.out)
    else:
        points = measure_grid(args)
    if args.plot:
        plot(points, args.plot)
        print(f'figure written to {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
