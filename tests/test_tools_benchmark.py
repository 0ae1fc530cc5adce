"""tools/benchmark.py --compile and tools/analysis_tools/benchmark_scaling.py
on the toy config at tiny sizes; the published benchmark is stood in for by
a small script that prints a ``RESULT`` line as the real one does."""
import json
import os
import os.path as osp
import runpy
import sys
import textwrap

import pytest
import torch

from conftest import REPO_ROOT, run_cli

TOY = osp.join('senformer_configs', 'senformer', 'toy',
               'senformer_fpnt_r18_toy.py')
BENCHMARK = osp.join('tools', 'benchmark.py')
SCALING = osp.join('tools', 'analysis_tools', 'benchmark_scaling.py')

# Answers as bench_published.py does: seconds and KiB grow with the work;
# size 96 hangs, size 160 fails with a message, size 192 dies by SIGKILL.
FAKE_PUBLISHED = textwrap.dedent('''\
    import argparse, json, os, signal, sys, time
    p = argparse.ArgumentParser()
    for name in ('--mode', '--config'):
        p.add_argument(name)
    for name in ('--size', '--batch', '--threads', '--repeat'):
        p.add_argument(name, type=int)
    p.add_argument('--skip-flops', action='store_true')
    a = p.parse_args()
    for entry in os.environ.get('PYTHONPATH', '').split(os.pathsep):
        if entry and os.path.isfile(os.path.join(entry, 'mmseg',
                                                 '__init__.py')):
            sys.exit(f"this code's mmseg ({entry}) is on PYTHONPATH")
    if a.size == 96:
        time.sleep(60)
    if a.size == 160:
        sys.exit('RuntimeError: the published code broke')
    if a.size == 192:
        os.kill(os.getpid(), signal.SIGKILL)
    work = a.size * a.size * a.batch * (3 if a.mode == 'train' else 1)
    print('log lines before the result')
    print('RESULT ' + json.dumps(dict(
        mode=a.mode, size=a.size, batch=a.batch, seconds=work / 1e5,
        times=[work / 1e5] * a.repeat, peak_rss_kib=1000000 + work)))
    ''')


@pytest.fixture(scope='module')
def benchmark_tool():
    return runpy.run_path(osp.join(REPO_ROOT, BENCHMARK))


@pytest.fixture(scope='module')
def scaling_tool():
    return runpy.run_path(osp.join(REPO_ROOT, SCALING))


@pytest.fixture
def fake_published(tmp_path):
    script = tmp_path / 'bench_published.py'
    script.write_text(FAKE_PUBLISHED)
    return ['--published-python', sys.executable, '--published-script',
            str(script)]


# ----------------------------------------------------------------------
# tools/benchmark.py --compile


def test_compiled_prediction_agreement_and_warning(benchmark_tool):
    compare = benchmark_tool['compare_predictions']
    warning = benchmark_tool['agreement_warning']
    eager = torch.zeros(1, 3, 10, 100)
    eager[:, 1] = 1.0  # class 1 everywhere
    compiled = eager.clone()
    compiled[0, 2, 0, 0] = 1.5  # one pixel in 1000 changes class
    figures = compare(eager, compiled)
    assert figures['pixel_agreement'] == pytest.approx(0.999)
    assert figures['logits_max_abs_diff'] == pytest.approx(1.5)
    assert warning(figures['pixel_agreement']) == ''
    compiled[0, 2, 0, 1] = 1.5  # two in 1000: below 99.9 %
    figures = compare(eager, compiled)
    text = warning(figures['pixel_agreement'])
    assert text.startswith('warning: ') and '0.200 %' in text, text


@pytest.mark.parametrize('argv, message', [
    (['--freeze'], '--freeze: only used with --compile'),
    (['--compile', '--mode', 'train', '--freeze'], 'inference only'),
    (['--compile', '--compile-backend', 'nonsense'],
     "unknown --compile-backend 'nonsense'"),
    (['--compile', '--compile-backend', 'eager', '--freeze'],
     '--freeze needs --compile-backend inductor'),
])
def test_compile_options_that_would_be_ignored_are_refused(
        benchmark_tool, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_tool['parse_args']([TOY] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_compile_inference_on_toy(tmp_path):
    # the eager backend traces with dynamo as inductor does (same graphs,
    # same breaks) without minutes of code generation on one core
    out = tmp_path / 'compiled.json'
    proc = run_cli(sys.executable, BENCHMARK, TOY, '--shape', 64, 64,
                   '--repeat', 2, '--threads', 1, '--skip-flops', '--compile',
                   '--compile-backend', 'eager', '--json', out)
    result = json.loads(out.read_text())
    assert result['compile_backend'] == 'eager'
    assert result['compile_mode'] == 'default'
    assert result['freeze'] is False
    assert result['compile_seconds'] > 0
    assert len(result['seconds_all']) == 2
    assert result['shape'] == [64, 64] and result['gflop'] is None
    # the whole encode_decode is one graph: no operation breaks it
    assert result['compile_graphs'] == 1
    assert result['compile_graph_breaks'] == 0
    assert result['pixel_agreement'] == 1.0
    # traced, the operations take their sdpa implementation (ops.switch):
    # equal to the eager CPU kernels up to rounding
    assert result['logits_max_abs_diff'] < 1e-5
    assert 'warning' not in proc.stderr


# ----------------------------------------------------------------------
# tools/analysis_tools/benchmark_scaling.py


def _points(path):
    return {p['key']: p for p in json.loads(path.read_text())['points']}


@pytest.mark.slow
def test_scaling_grid_resume_and_plot(tmp_path, fake_published):
    out = tmp_path / 'scaling.json'
    grid = [sys.executable, SCALING, '--config', TOY, '--forward-sizes', 64,
            '64x96', '--train-sizes', 64, '--batches', 2, '--threads', 1,
            '--repeat', 1, '--out', out] + fake_published
    # this code's mmseg on PYTHONPATH (as in a checkout without install)
    # must not reach the published code
    run_cli(*grid, env=dict(PYTHONPATH=REPO_ROOT))
    points = _points(out)
    # the published script takes square sizes only
    assert sorted(points) == [
        'published/forward/64x64/b2', 'published/train/64x64/b2',
        'this/forward/64x64/b2', 'this/forward/64x96/b2',
        'this/train/64x64/b2']
    assert all(p['status'] == 'ok' for p in points.values()), points
    ours = points['this/forward/64x96/b2']
    assert (ours['height'], ours['width'], ours['batch']) == (64, 96, 2)
    assert ours['seconds'] > 0 and ours['peak_memory_gb'] > 0.1
    assert '--shape 64 96 --batch 2' in ours['command']
    published = points['published/train/64x64/b2']
    assert published['seconds'] == pytest.approx(64 * 64 * 2 * 3 / 1e5,
                                                 abs=1e-4)
    # KiB of the published script become GB of 1e9 bytes, as ours
    assert published['peak_memory_gb'] == pytest.approx(
        (1000000 + 64 * 64 * 2 * 3) * 1024 / 1e9, abs=0.01)

    # the results are never overwritten by accident
    before = out.read_text()
    proc = run_cli(*grid, check=False)
    assert proc.returncode == 2 and '--resume' in proc.stderr
    assert out.read_text() == before

    # an interrupted run: the last point is missing; --resume measures it
    # and only it
    data = json.loads(before)
    dropped = data['points'].pop()
    out.write_text(json.dumps(data))
    proc = run_cli(*grid, '--resume', '--plot', tmp_path / 'fig.png')
    measured = [line for line in proc.stdout.splitlines()
                if line.startswith('[')]
    assert len(measured) == 1 and dropped['impl'] in measured[0], proc.stdout
    again = _points(out)
    assert sorted(again) == sorted(points)
    assert all(again[k]['started'] == points[k]['started']
               for k in points if k != dropped['key'])
    assert (tmp_path / 'fig.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_scaling_records_failures_instead_of_crashing(
        scaling_tool, tmp_path, fake_published):
    args = scaling_tool['parse_args'](
        ['--timeout', '3', '--repeat', '2', '--out', str(tmp_path / 'r.json')]
        + fake_published)

    def point(size):
        return dict(key=f'published/forward/{size}', impl='published',
                    mode='forward', height=size, width=size, batch=1)

    ok = scaling_tool['measure'](args, point(64))
    assert ok['status'] == 'ok' and ok['seconds_all'] == [0.041] * 2
    hung = scaling_tool['measure'](args, point(96))
    assert hung['status'] == 'timeout' and hung['wall_s'] < 30
    broken = scaling_tool['measure'](args, point(160))
    assert broken['status'] == 'failed'
    assert 'the published code broke' in broken['error']
    killed = scaling_tool['measure'](args, point(192))
    assert killed['status'] == 'oom'


def test_scaling_skips_what_would_not_fit_or_follows_a_failure(
        scaling_tool):
    skip = scaling_tool['reason_to_skip']

    def record(size, batch, status='ok', memory=None):
        return dict(impl='this', mode='train', height=size, width=size,
                    batch=batch, status=status, peak_memory_gb=memory)

    # 1 GB + 1 GB per 256^2 pixels: 1024^2 at batch 2 needs about 33 GB
    done = [record(256, 1, memory=2.0), record(512, 1, memory=5.0)]
    big = dict(impl='this', mode='train', height=1024, width=1024, batch=2)
    assert skip(big, done, memory_limit_gb=64) is None
    reason = skip(big, done, memory_limit_gb=16)
    assert reason and 'about 33.0 GB' in reason
    # another implementation's figures say nothing about this one
    assert skip(dict(big, impl='published'), done, 16) is None
    # once a size timed out, larger ones of the same series are not tried
    done.append(record(768, 2, status='timeout'))
    assert 'ended with timeout' in skip(big, done, 64)
    assert skip(dict(big, batch=1), done, 64) is None


def test_scaling_without_published_code_and_plot_errors(
        scaling_tool, tmp_path, monkeypatch):
    args = scaling_tool['parse_args'](
        ['--published-script', str(tmp_path / 'absent.py')])
    assert 'absent.py does not exist' in scaling_tool['published_available'](
        args)
    assert all(p['impl'] == 'this' for p in scaling_tool['grid'](
        args, with_published=False))
    error = scaling_tool['ScalingError']
    with pytest.raises(error, match='no measured point'):
        scaling_tool['plot']([dict(status='timeout')], str(tmp_path / 'a.png'))
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    with pytest.raises(error, match='pip install matplotlib'):
        scaling_tool['plot']([], str(tmp_path / 'a.png'))
    assert not os.listdir(tmp_path)
