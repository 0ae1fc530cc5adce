"""Preemption and the work-dir lock, through the command-line tools.

Real ``tools/train.py`` / ``tools/dist_train.sh`` subprocesses on the fast
toy config get real signals; a small hook module (imported by the config)
pauses a run at a chosen point until the test has sent its signal, so the
iteration the run stops at is deterministic.
"""
import os
import signal
import subprocess
import time

import pytest
import torch

from mmseg.engine import EXIT_PREEMPTED, safe_torch_load
from conftest import free_port
from toy_runs import (REPO_ROOT, TRAIN_SCRIPT, error_line, listing,
                      log_tail, logged_scalars, start_python, train,
                      write_config)

pytestmark = [
    pytest.mark.usefixtures('keep_torch_global_state'), pytest.mark.slow
]


@pytest.fixture(scope='module')
def data(toy_root_4):
    return toy_root_4


DIST_TRAIN = os.path.join(REPO_ROOT, 'tools', 'dist_train.sh')

# Imported by the test configs (custom_imports). With PAUSE_DIR set, the run
# stops at the chosen iteration (or, with PAUSE_SAVING, half-way through
# writing the matching checkpoint file), writes a marker holding its pid
# and waits for the test's "<marker>.go" file; otherwise it does nothing.
PAUSE_MODULE = '''
import os
import time

from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import Hook

from mmseg.registry import HOOKS

CONTROL = os.environ.get('PAUSE_DIR')


def pause(name):
    with open(os.path.join(CONTROL, name), 'w') as f:
        f.write(str(os.getpid()))
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(CONTROL, name + '.go')):
        assert time.time() < deadline, 'the test never released ' + name
        time.sleep(0.05)


@HOOKS.register_module(force=True)
class PauseAtIterationHook(Hook):
    priority = 'VERY_HIGH'

    def __init__(self, at, rank=0):
        self.at, self.rank = at, rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if CONTROL and runner.iter + 1 == self.at and \\
                int(os.environ.get('RANK', '0')) == self.rank:
            pause(f'iteration_{self.at}_rank{self.rank}')


if CONTROL and os.environ.get('PAUSE_SAVING'):
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        if os.environ['PAUSE_SAVING'] in os.path.basename(filepath):
            with open(filepath, 'wb') as f:  # half of it is on disk
                f.write(obj[:len(obj) // 2])
            pause('saving')
        return real_put(self, obj, filepath)

    LocalBackend.put = put
'''


def _pause_config(tmp_path, data_root, at, rank=0, **kwargs):
    (tmp_path / 'preempt_pause.py').write_text(PAUSE_MODULE)
    extra = kwargs.pop('extra', '')
    return write_config(
        tmp_path, data_root,
        extra="custom_imports = dict(imports=['preempt_pause'])\n"
        f"custom_hooks = [dict(type='PauseAtIterationHook', at={at}, "
        f"rank={rank})]\n" + extra, **kwargs)


def _wait_for(marker, proc, log, timeout=400):
    deadline = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, log_tail(log)
        assert time.time() < deadline, f'{marker.name} never came'
        time.sleep(0.1)
    time.sleep(0.2)  # the pid is written right after creating the file
    return int(marker.read_text())


def _release(marker):
    marker.with_name(marker.name + '.go').write_text('')


def _env_path(tmp_path):
    return str(tmp_path) + os.pathsep + REPO_ROOT


def test_signal_stops_with_a_checkpoint_and_resume_matches(data, tmp_path):
    """SIGTERM at iteration 3 of 4 (periodic checkpoints every 2): the run
    finishes iteration 3, saves iter_3.pth (a second SIGTERM and a SIGUSR1
    arrive while that file is half-written) and exits with 75; --resume
    then logs for iteration 4 what the uninterrupted run logged."""
    cfg = _pause_config(
        tmp_path, data, at=3, workers=1, iters=4, interval=2,
        extra='randomness = dict(seed=0, deterministic=True)\n')
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    path = _env_path(tmp_path)
    uninterrupted = start_python(
        [TRAIN_SCRIPT, cfg, '--work-dir', str(straight)],
        tmp_path / 'straight.log', PYTHONPATH=path)
    log = tmp_path / 'stopped.log'
    victim = start_python([TRAIN_SCRIPT, cfg, '--work-dir', str(stopped)], log,
                          PYTHONPATH=path, PAUSE_DIR=str(tmp_path),
                          PAUSE_SAVING='iter_3.pth')
    try:
        at_3 = tmp_path / 'iteration_3_rank0'
        assert _wait_for(at_3, victim, log) == victim.pid
        victim.send_signal(signal.SIGTERM)
        _release(at_3)
        saving = tmp_path / 'saving'
        _wait_for(saving, victim, log, timeout=120)
        victim.send_signal(signal.SIGTERM)
        victim.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        _release(saving)
        code = victim.wait(120)
    finally:
        if victim.poll() is None:
            victim.kill()
    output = log_tail(log, 10**7)
    assert code == EXIT_PREEMPTED, output[-3000:]
    checkpoint = str(stopped / 'iter_3.pth')
    assert f'preempted: stopped after iteration 3 on SIGTERM; checkpoint ' \
        f'{checkpoint} saved' in output
    assert (stopped / 'last_checkpoint').read_text() == checkpoint
    assert safe_torch_load(checkpoint)['meta']['iter'] == 3
    assert 'iter_2.pth' in listing(stopped)
    assert not [n for n in listing(stopped) if n.endswith('.tmp')]
    assert 'train.lock' not in listing(stopped)

    assert uninterrupted.wait(400) == 0, log_tail(tmp_path / 'straight.log')
    resumed = start_python(
        [TRAIN_SCRIPT, cfg, '--work-dir', str(stopped), '--resume'],
        tmp_path / 'resumed.log', PYTHONPATH=path)
    assert resumed.wait(400) == 0, log_tail(tmp_path / 'resumed.log')
    assert f'resuming from the latest checkpoint {checkpoint}' in \
        log_tail(tmp_path / 'resumed.log', 10**7)

    expected = logged_scalars(straight)
    before = logged_scalars(stopped)
    after_resume = logged_scalars(stopped, newest_run_only=True)
    assert sorted(after_resume) == [4]
    keys = [k for k in expected[4] if 'loss' in k or 'acc' in k or
            k in ('lr', 'base_lr', 'grad_norm')]
    assert 'decode.loss_seg' in keys
    for step in (1, 2, 3, 4):
        assert {k: before[step][k] for k in keys} == \
            {k: expected[step][k] for k in keys}, step


@pytest.mark.skipif(
    not torch.distributed.is_available()
    or not torch.distributed.is_gloo_available(),
    reason='torch built without gloo')
def test_signal_to_one_rank_stops_all_ranks_at_the_same_iteration(
        data, tmp_path):
    """2 processes (gloo) through tools/dist_train.sh; SIGUSR1 reaches only
    rank 1, while rank 0 is already waiting for it in the next
    collective: both stop after iteration 2, rank 0 saves it, the script
    exits with 75."""
    # find_unused_parameters: SenFormer's conv_seg gets no gradient
    cfg = _pause_config(
        tmp_path, data, at=2, rank=1, iters=4, interval=10,
        extra='find_unused_parameters = True\n')
    work = tmp_path / 'work'
    log = tmp_path / 'dist.log'
    proc = subprocess.Popen(
        ['bash', DIST_TRAIN, cfg, '2', '--work-dir', str(work),
         '--cfg-options', 'env_cfg.dist_cfg.timeout=120'],
        env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
                 PYTHONPATH=_env_path(tmp_path), PAUSE_DIR=str(tmp_path),
                 PORT=str(free_port())),
        stdout=open(log, 'w'), stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        marker = tmp_path / 'iteration_2_rank1'
        rank1 = _wait_for(marker, proc, log)
        os.kill(rank1, signal.SIGUSR1)
        _release(marker)
        code = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log_tail(log, 10**7)
    assert code == EXIT_PREEMPTED, output[-3000:]
    checkpoint = str(work / 'iter_2.pth')
    assert f'preempted (rank 1): stopped after iteration 2 on SIGUSR1; ' \
        f'checkpoint {checkpoint} saved' in output, output[-3000:]
    assert 'preempted (rank 0): stopped after iteration 2 because another ' \
        'rank got a stop signal' in output, output[-3000:]
    assert (work / 'last_checkpoint').read_text() == checkpoint
    assert safe_torch_load(checkpoint)['meta']['iter'] == 2
    assert listing(work).count('iter_2.pth') == 1
    assert not [n for n in listing(work) if n.endswith('.pth') and
                n != 'iter_2.pth']


def test_second_run_in_a_work_dir_is_refused_and_a_dead_runs_lock_taken(
        data, tmp_path, capsys):
    """A live run holds the work dir: a second run is refused naming it.
    Once the first is killed (-9, as a preempted job dies), the requeued
    run takes the stale lock over and resumes."""
    cfg = _pause_config(tmp_path, data, at=2, iters=2, interval=1)
    work = tmp_path / 'work'
    log = tmp_path / 'first.log'
    first = start_python([TRAIN_SCRIPT, cfg, '--work-dir', str(work)], log,
                         PYTHONPATH=_env_path(tmp_path),
                         PAUSE_DIR=str(tmp_path))
    try:
        marker = tmp_path / 'iteration_2_rank0'
        _wait_for(marker, first, log)
        lock = (work / 'train.lock').read_text()
        assert f'"pid": {first.pid}' in lock

        before = sorted(listing(work))
        code, err, _ = train(data, tmp_path, capsys, iters=2,
                             work_dir=str(work))
        assert code == 1
        line = error_line(err)
        assert f'work dir {work} is in use by another training run' in line
        assert f'pid {first.pid}' in line and 'host ' in line, line
        # the refused run wrote no checkpoint, nor touched the first's
        assert [n for n in sorted(listing(work)) if n.endswith('.pth')] == \
            [n for n in before if n.endswith('.pth')] == ['iter_1.pth']
    finally:
        first.kill()
        first.wait(60)

    code, err, out = train(data, tmp_path, capsys, '--resume', iters=2,
                           work_dir=str(work))
    assert code == 0, err
    assert f'took over the lock of {work} from a run that is no longer ' \
        f'running (host ' in out and f'pid {first.pid}' in out
    assert f'resuming from the latest checkpoint {work}/iter_1.pth' in out
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    assert 'train.lock' not in listing(work)


def test_signal_to_dist_train_sh_reaches_the_training_process(data,
                                                              tmp_path):
    """SIGTERM to the script (what a scheduler or ``kill`` sends) goes
    through torchrun to the training process: it stops with a checkpoint
    and the script exits with 75."""
    cfg = _pause_config(tmp_path, data, at=2, iters=3, interval=10)
    work = tmp_path / 'work'
    log = tmp_path / 'dist.log'
    proc = subprocess.Popen(
        ['bash', DIST_TRAIN, cfg, '1', '--work-dir', str(work)],
        env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
                 PYTHONPATH=_env_path(tmp_path), PAUSE_DIR=str(tmp_path),
                 PORT=str(free_port())),
        stdout=open(log, 'w'), stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        marker = tmp_path / 'iteration_2_rank0'
        assert _wait_for(marker, proc, log) != proc.pid
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)  # torchrun passes it on
        _release(marker)
        code = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log_tail(log, 10**7)
    assert code == EXIT_PREEMPTED, output[-3000:]
    checkpoint = str(work / 'iter_2.pth')
    assert 'stopped after iteration 2 on SIGTERM' in output, output[-3000:]
    assert f'dist_train.sh: preempted; checkpoint {checkpoint}' in output
    assert (work / 'last_checkpoint').read_text() == checkpoint


# Stand-ins for Slurm's commands: srun records its options and runs the
# task as Slurm would (one task, its variables set); scontrol records what
# it was asked to do.
FAKE_SRUN = '''#!/usr/bin/env bash
echo "$@" > "$FAKE_SLURM_LOG/srun_args"
while [ "$1" != python ]; do shift; done
export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 \\
  SLURM_NODELIST=localhost MASTER_ADDR=127.0.0.1
exec "$@"
'''
FAKE_SCONTROL = '''#!/usr/bin/env bash
echo "$@" >> "$FAKE_SLURM_LOG/scontrol_calls"
'''


def test_slurm_train_sh_requeues_a_preempted_job_which_resumes(
        data, tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    cfg = _pause_config(tmp_path, data, at=2, iters=3, interval=10)
    work = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=_env_path(tmp_path), FAKE_SLURM_LOG=str(tmp_path),
               PATH=str(bin_dir) + os.pathsep + os.environ['PATH'],
               SLURM_JOB_ID='4242', MASTER_PORT=str(free_port()))
    command = ['bash', os.path.join(REPO_ROOT, 'tools', 'slurm_train.sh'),
               'gpu', 'job', cfg, '--work-dir', str(work)]

    log = tmp_path / 'first.log'
    first = subprocess.Popen(command, env=dict(env, PAUSE_DIR=str(tmp_path)),
                             stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                             cwd=str(tmp_path))
    try:
        marker = tmp_path / 'iteration_2_rank0'
        task = _wait_for(marker, first, log)
        os.kill(task, signal.SIGUSR1)  # Slurm signals every task
        _release(marker)
        code = first.wait(240)
    finally:
        if first.poll() is None:
            first.kill()
    output = log_tail(log, 10**7)
    assert code == EXIT_PREEMPTED, output[-3000:]
    assert '--signal=USR1@120' in (tmp_path / 'srun_args').read_text()
    assert (tmp_path / 'scontrol_calls').read_text() == 'requeue 4242\n'
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    assert not list(tmp_path.glob('.mmseg_preempted.*'))

    # the requeued job: same command, Slurm counts the restart
    log = tmp_path / 'requeued.log'
    requeued = subprocess.run(command, env=dict(env, SLURM_RESTART_COUNT='1'),
                              stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                              cwd=str(tmp_path), timeout=300)
    output = log_tail(log, 10**7)
    assert requeued.returncode == 0, output[-3000:]
    assert f'resuming from the latest checkpoint {work}/iter_2.pth' in output
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_3.pth')
    assert (tmp_path / 'scontrol_calls').read_text() == 'requeue 4242\n'


SELF_SIGNAL_MODULE = '''
import os
import signal

from mmengine.hooks import Hook

from mmseg.registry import HOOKS


@HOOKS.register_module(force=True)
class SignalSelfHook(Hook):
    """Send ``name`` to this process during iteration ``at``."""

    def __init__(self, name, at=1):
        self.name, self.at = name, at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), getattr(signal, self.name))
'''


@pytest.mark.parametrize('interval', [1, 10])
def test_stop_signals_option_chooses_the_signal(data, tmp_path, capsys,
                                                monkeypatch, interval):
    """SIGUSR2 stops the run at iteration 1; when the periodic checkpoint
    of that iteration was just written (interval 1) it is not written
    twice."""
    from mmseg.engine import SegRunner
    (tmp_path / 'signal_self.py').write_text(SELF_SIGNAL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = []
    real_save = SegRunner.save_checkpoint

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        saved.append(filename)
        return real_save(self, out_dir, filename, *args, **kwargs)

    monkeypatch.setattr(SegRunner, 'save_checkpoint', save_checkpoint)
    previous = {s: signal.getsignal(s)
                for s in (signal.SIGUSR2, signal.SIGTERM, signal.SIGUSR1)}
    try:
        code, err, _ = train(
            data, tmp_path, capsys, '--stop-signals', 'USR2', iters=3,
            interval=interval,
            extra="custom_imports = dict(imports=['signal_self'])\n"
            "custom_hooks = [dict(type='SignalSelfHook', name='SIGUSR2')]\n")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert code == EXIT_PREEMPTED, err
    work = tmp_path / 'work'
    assert 'preempted: stopped after iteration 1 on SIGUSR2' in err
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_1.pth')
    assert saved == ['iter_1.pth']


@pytest.mark.parametrize('name,message', [
    ('SIGKILL', 'SIGKILL cannot be caught'),
    ('SIGNOPE', "unknown signal 'SIGNOPE'"),
])
def test_stop_signals_option_rejects_bad_names(data, tmp_path, capsys, name,
                                               message):
    code, err, _ = train(data, tmp_path, capsys, '--stop-signals', name)
    assert code == 2
    assert f'--stop-signals: {message}' in error_line(err)
