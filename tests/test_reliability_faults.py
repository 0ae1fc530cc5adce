"""Reliability under faults: full disk, NaN losses, kill -9 and resume, dead
or hung dataloader workers, a failing distributed rank.

Runs the real tools (in-process through :func:`mmseg.cli.run`, or as
subprocesses where a process must die) on the fast toy config of
``toy_runs.py``.
"""
import errno
import gc
import glob
import logging
import os
import shutil
import signal
import time
import types

import pytest
import torch
import torch.nn as nn
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch.utils.data import get_worker_info

from mmseg.engine import SegRunner, safe_torch_load
from mmseg.registry import HOOKS, MODELS, TRANSFORMS
from conftest import free_port
from toy_runs import (REPO_ROOT, TRAIN_SCRIPT, error_line, listing,
                      log_tail, logged_scalars, sha256, start_python,
                      train, write_config)

pytestmark = pytest.mark.usefixtures('keep_torch_global_state')

@pytest.fixture(scope='module')
def data(toy_root_4):
    return toy_root_4


# ----------------------------------------------------------------------
# full disk


def test_disk_full_keeps_the_previous_checkpoint(data, tmp_path, capsys,
                                                 monkeypatch):
    written = []
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        written.append((filepath, obj))
        if len(written) == 2:  # the second checkpoint: half of it fits
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filepath)
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)
    # keeping one checkpoint: mmengine deletes the old one before saving
    code, err, _ = train(data, tmp_path, capsys, '--cfg-options',
                         'default_hooks.checkpoint.max_keep_ckpts=1',
                         iters=2)
    work = tmp_path / 'work'
    first = str(work / 'iter_1.pth')

    assert code == 1
    line = error_line(err)
    assert 'cannot save checkpoint' in line and 'iter_2.pth' in line
    assert 'No space left on device' in line and 'disk full' in line
    assert f'the last checkpoint {first} is intact' in line
    # the first checkpoint is byte for byte what was written, and complete
    assert sha256(first) == __import__('hashlib').sha256(
        written[0][1]).hexdigest()
    assert safe_torch_load(first)['meta']['iter'] == 1
    assert (work / 'last_checkpoint').read_text() == first
    assert not [n for n in listing(work) if n.endswith(('.tmp', '_2.pth'))]


def test_result_file_is_written_atomically(tmp_path, monkeypatch):
    from mmseg.engine import SaveError, atomic_write_text
    path = tmp_path / 'eval.json'
    atomic_write_text(str(path), '{"mIoU": 1}')

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(SaveError, match='No space left on device'):
        atomic_write_text(str(path), '{"mIoU": 2}')
    assert path.read_text() == '{"mIoU": 1}'
    assert listing(tmp_path) == ['eval.json']


# ----------------------------------------------------------------------
# NaN / Inf


@HOOKS.register_module(force=True)
class ReliabilityTestPoisonHook(Hook):
    """At training iteration ``at`` (0-based) make the auxiliary loss NaN,
    or (``target='weights'``) a weight after the step."""

    priority = 'VERY_HIGH'

    def __init__(self, at, target='loss'):
        self.at, self.target = at, target

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at and self.target == 'loss':
            runner.model.auxiliary_head.loss_decode.loss_weight = float('nan')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter == self.at and self.target == 'weights':
            with torch.no_grad():
                runner.model.decode_head.conv_seg.weight[0, 0] = float('inf')


@pytest.mark.parametrize('target', ['loss', 'weights'])
def test_non_finite_loss_stops_before_saving(data, tmp_path, capsys,
                                             target):
    extra = (f'custom_hooks = [dict(type="ReliabilityTestPoisonHook", at=1, '
             f'target="{target}")]\n')
    code, err, _ = train(data, tmp_path, capsys, iters=3, extra=extra)
    work = tmp_path / 'work'
    first = str(work / 'iter_1.pth')

    assert code == 1
    line = error_line(err)
    if target == 'loss':
        assert 'non-finite loss at iteration 2' in line
        assert 'aux.loss_ce=nan' in line and 'loss=nan' in line
    else:
        assert 'refusing to save' in line and 'iter_2.pth' in line
        assert 'decode_head.conv_seg.weight is NaN/Inf' in line
    assert f'the last checkpoint {first} is unchanged' in line
    assert (work / 'last_checkpoint').read_text() == first
    assert not [n for n in listing(work) if n.endswith(('.tmp', '_2.pth'))]
    state = safe_torch_load(first)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())


# ----------------------------------------------------------------------
# kill -9 and resume

# Runs tools/train.py, but the second checkpoint write stops half-way: it
# announces itself with a marker file and waits for the test's kill -9.
KILLED_DURING_SAVE = '''
import os, runpy, sys, time
from mmengine.fileio.backends.local_backend import LocalBackend

real_put = LocalBackend.put
calls = []


def put(self, obj, filepath):
    calls.append(filepath)
    if len(calls) == 2:
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
        open(os.environ['KILL_ME_MARKER'], 'w').close()
        time.sleep(600)
    return real_put(self, obj, filepath)


LocalBackend.put = put
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name='__main__')
'''


def test_kill_9_during_save_then_resume_matches_uninterrupted_run(
        data, tmp_path):
    # max_keep_ckpts=1: iter_2.pth must survive the failed save of iter_4
    cfg = write_config(
        tmp_path, data, workers=1, iters=4, interval=2,
        extra='randomness = dict(seed=0, deterministic=True)\n'
        "default_hooks['checkpoint']['max_keep_ckpts'] = 1\n")
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    marker = tmp_path / 'saving_iter_4'
    script = tmp_path / 'killed_during_save.py'
    script.write_text(KILLED_DURING_SAVE.format(script=TRAIN_SCRIPT))

    uninterrupted = start_python(
        [TRAIN_SCRIPT, cfg, '--work-dir', str(straight)],
        tmp_path / 'straight.log')
    victim = start_python([str(script), cfg, '--work-dir', str(killed)],
                          tmp_path / 'killed.log', KILL_ME_MARKER=str(marker))
    deadline = time.time() + 400
    while not marker.exists():
        assert victim.poll() is None, log_tail(tmp_path / 'killed.log')
        assert time.time() < deadline, 'the run never reached iteration 4'
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(60) == -signal.SIGKILL

    # killed in the middle of writing iter_4.pth: only its temporary file
    # is half-written, iter_2.pth and the pointer to it are complete
    names = listing(killed)
    assert 'iter_4.pth' not in names
    assert [n for n in names if n.startswith('.iter_4.pth.')]
    first = str(killed / 'iter_2.pth')
    assert (killed / 'last_checkpoint').read_text() == first
    assert safe_torch_load(first)['meta']['iter'] == 2

    assert uninterrupted.wait(400) == 0, log_tail(tmp_path / 'straight.log')
    resumed = start_python([TRAIN_SCRIPT, cfg, '--work-dir', str(killed),
                           '--resume'], tmp_path / 'resumed.log')
    assert resumed.wait(400) == 0, log_tail(tmp_path / 'resumed.log')
    log = log_tail(tmp_path / 'resumed.log', 10**7)
    assert f'resuming from the latest checkpoint {first}' in log
    assert 'removed' in log and '.iter_4.pth.' in log  # stale temporary
    assert not [n for n in listing(killed) if n.endswith('.tmp')]
    assert (killed / 'last_checkpoint').read_text() == \
        str(killed / 'iter_4.pth')
    assert 'iter_2.pth' not in listing(killed)  # removed once iter_4 saved

    expected = logged_scalars(straight)
    after_resume = logged_scalars(killed, newest_run_only=True)
    assert sorted(after_resume) == [3, 4]
    keys = [k for k in expected[3] if 'loss' in k or 'acc' in k or
            k in ('lr', 'base_lr', 'grad_norm')]
    assert 'decode.loss_seg' in keys and 'aux.loss_ce' in keys
    for step in (3, 4):
        assert {k: after_resume[step][k] for k in keys} == \
            {k: expected[step][k] for k in keys}, step


@MODELS.register_module(force=True)
class ReliabilityTinyModel(BaseModel):
    """A 1x1 conv with dropout: random in training, like SenFormer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.drop = nn.Dropout(0.5)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.drop(self.conv(inputs))
        if mode == 'loss':
            return dict(loss=((out - data_samples)**2).mean())
        return out


class _Shuffled(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', ))

    def __len__(self):
        return 6

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(3, 4, 4, generator=g),
                    data_samples=torch.full((1, 4, 4), float(index)))


@HOOKS.register_module(force=True)
class ReliabilityLossRecorder(Hook):

    def __init__(self):
        self.losses = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses[runner.iter + 1] = (
            outputs['loss'].item(), data_batch['data_samples'][:, 0, 0,
                                                               0].tolist())


def test_resume_without_a_fixed_seed_repeats_the_run(tmp_path):
    """No ``randomness.seed`` (the published configs): the resumed run
    takes the checkpoint's seed before building its sampler, and dropout
    is seeded per iteration, so iterations 3-4 repeat exactly."""

    def run(work_dir, resume_from=None):
        recorder = ReliabilityLossRecorder()
        runner = SegRunner(
            model=dict(type='ReliabilityTinyModel'),
            work_dir=str(work_dir),
            train_dataloader=dict(
                dataset=_Shuffled(), batch_size=2, num_workers=0,
                sampler=dict(type='InfiniteSampler', shuffle=True),
                collate_fn=dict(type='default_collate')),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=4),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
            default_hooks=dict(checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=2)),
            custom_hooks=[recorder],
            randomness=dict(seed=None),
            load_from=resume_from, resume=resume_from is not None,
            default_scope='mmseg',
            experiment_name=f'reliability_{work_dir.name}')
        runner.train()
        return runner.seed, recorder.losses

    seed, straight = run(tmp_path / 'straight')
    (tmp_path / 'resumed').mkdir()
    shutil.copy(tmp_path / 'straight' / 'iter_2.pth', tmp_path / 'resumed')
    resumed_seed, resumed = run(tmp_path / 'resumed',
                                str(tmp_path / 'resumed' / 'iter_2.pth'))
    assert resumed_seed == seed
    assert sorted(resumed) == [3, 4]
    assert resumed == {step: straight[step] for step in (3, 4)}


def _fake_runner(work_dir):
    """What SegRunner._find_resume_checkpoint reads of a runner."""
    runner = types.SimpleNamespace(
        work_dir=str(work_dir), logger=logging.getLogger('reliability'))
    runner._last_checkpoint = lambda: SegRunner._last_checkpoint(runner)
    return runner


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    runner = _fake_runner(tmp_path)
    assert SegRunner._find_resume_checkpoint(runner) is None
    for name in ('iter_2.pth', 'iter_10.pth', '.iter_12.pth.ab12cd34.tmp',
                 'best_mIoU_iter_12.pth'):
        (tmp_path / name).write_bytes(b'x')
    # no pointer (killed before the first one was written)
    assert SegRunner._find_resume_checkpoint(runner) == \
        str(tmp_path / 'iter_10.pth')
    # a pointer one save behind (killed between the rename and the pointer)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert SegRunner._find_resume_checkpoint(runner) == \
        str(tmp_path / 'iter_10.pth')
    # a pointer to a deleted file
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_99.pth'))
    assert SegRunner._find_resume_checkpoint(runner) == \
        str(tmp_path / 'iter_10.pth')


# ----------------------------------------------------------------------
# dataloader workers


@TRANSFORMS.register_module(force=True)
class ReliabilityTestWorkerFault:
    """In a dataloader worker: die (``kill``) or hang (``hang``)."""

    def __init__(self, fault):
        self.fault = fault

    def __call__(self, results):
        if get_worker_info() is not None:
            if self.fault == 'kill':
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(5)
        return results


@pytest.mark.parametrize('fault', ['kill', 'hang'])
def test_dataloader_worker_fault_ends_the_job(data, tmp_path, capsys,
                                              fault):
    # prepend to the config's own pipeline (keeping its data_root)
    extra = ("train_dataloader['dataset']['pipeline'] = [dict("
             f'type="ReliabilityTestWorkerFault", fault="{fault}")] + '
             'train_pipeline\n')
    options = ['--cfg-options', 'train_dataloader.timeout=2'] \
        if fault == 'hang' else []
    start = time.time()
    code, err, _ = train(data, tmp_path, capsys, *options, workers=1,
                         extra=extra)
    gc.collect()  # shut the hung worker's dataloader down now
    assert time.time() - start < 60
    # the status class may depend on where the dying worker interrupts
    # the main process; the one-line message is what the user reads
    assert code != 0, err
    line = error_line(err)
    if fault == 'kill':
        assert 'a dataloader worker died' in line
        # the SIGCHLD handler or the liveness poll, whichever comes first
        assert 'killed by signal' in line or 'exited unexpectedly' in line
    else:
        assert 'DataLoader timed out after 2 seconds' in line
        assert 'worker hangs' in line


class _DiesInWorker(torch.utils.data.Dataset):

    def __len__(self):
        return 2

    def __getitem__(self, i):
        if get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return i


def _loader(**kwargs):
    return SegRunner.build_dataloader(
        dict(dataset=_DiesInWorker(), batch_size=1,
             collate_fn=dict(type='default_collate'),
             sampler=dict(type='DefaultSampler', shuffle=False), **kwargs))


def test_dataloaders_with_workers_get_a_timeout():
    from mmseg.engine import DEFAULT_DATALOADER_TIMEOUT_S, WatchedDataLoader
    assert _loader(num_workers=1).timeout == DEFAULT_DATALOADER_TIMEOUT_S
    assert isinstance(_loader(num_workers=1), WatchedDataLoader)
    assert _loader(num_workers=1, timeout=5).timeout == 5
    assert _loader(num_workers=0).timeout == 0


def test_dead_worker_is_noticed_despite_the_timeout():
    """A torch DataLoader with a timeout waits all of it before looking
    at its workers, and relies on SIGCHLD, which a worker dying early can
    beat; ours keeps polling their liveness."""
    iterator = iter(_loader(num_workers=1, timeout=60))
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # signal lost
    start = time.time()
    try:
        with pytest.raises(RuntimeError, match='exited unexpectedly'):
            next(iterator)
    finally:
        signal.signal(signal.SIGCHLD, previous)
        del iterator
    assert time.time() - start < 30


# ----------------------------------------------------------------------
# distributed

RANK_FAILURE_MODULE = '''
import os
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class FailOnRankHook(Hook):

    def __init__(self, rank):
        self.rank = rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if int(os.environ['RANK']) == self.rank:
            raise RuntimeError(f'simulated failure of rank {self.rank}')
'''



@pytest.mark.skipif(
    not torch.distributed.is_available()
    or not torch.distributed.is_gloo_available(),
    reason='torch built without gloo')
def test_failing_rank_ends_the_distributed_job(data, tmp_path):
    (tmp_path / 'reliability_rank_failure.py').write_text(
        RANK_FAILURE_MODULE)
    # find_unused_parameters: SenFormer's conv_seg gets no gradient, and
    # without it DDP would skip the gradient all-reduce of iteration 1
    cfg = write_config(
        tmp_path, data, iters=3,
        extra="custom_imports = dict(imports=['reliability_rank_failure'])\n"
        "find_unused_parameters = True\n"
        "custom_hooks = [dict(type='FailOnRankHook', rank=1)]\n")
    log = tmp_path / 'torchrun.log'
    start = time.time()
    proc = start_python([
        '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_addr', '127.0.0.1', '--master_port',
        str(free_port()), TRAIN_SCRIPT, cfg, '--launcher', 'pytorch',
        '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        'env_cfg.dist_cfg.timeout=60'
    ], log, PYTHONPATH=str(tmp_path) + os.pathsep + REPO_ROOT)
    try:
        code = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log_tail(log, 10**7)
    assert code != 0, output[-3000:]
    assert 'error (rank 1): RuntimeError: simulated failure of rank 1' in \
        output, output[-3000:]
    # rank 0 is either stopped by torchrun or sees its peer gone
    for line in output.splitlines():
        if line.startswith('error (rank 0)'):
            assert 'distributed: another process failed' in line, line
    assert time.time() - start < 240
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))
