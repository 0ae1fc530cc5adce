"""Stopping a training run cleanly when a cluster preempts it.

Slurm (and most schedulers) announce a preemption with a signal, SIGTERM
or the one chosen with ``--signal``, some seconds before they kill the job.
:class:`PreemptionHook` turns that signal into: finish the current
iteration, agree with every other rank to stop after it, save a complete
checkpoint (rank 0, atomically, with ``last_checkpoint``), exit with
:data:`EXIT_PREEMPTED`. ``tools/train.py --resume`` then continues from
exactly that iteration.
"""
import os
import signal
import threading
from typing import List, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, is_distributed, is_main_process
from mmengine.hooks import CheckpointHook, Hook

from mmseg.registry import HOOKS
from ..atomic_io import SaveError, atomic_write_text
from ..overrides import save_checkpoint_now

#: exit status of ``tools/train.py`` (and the launch scripts) when the run
#: stopped on a preemption signal after saving its checkpoint; 75 is
#: ``EX_TEMPFAIL`` of sysexits.h: "try again later", i.e. resubmit with
#: ``--resume``
EXIT_PREEMPTED = 75

#: the signals a run stops on unless told otherwise: SIGTERM is what
#: ``scancel`` and most schedulers send, SIGUSR1 is the usual choice for
#: ``#SBATCH --signal=USR1@120`` (sent while the job still has time)
DEFAULT_STOP_SIGNALS = ('SIGTERM', 'SIGUSR1')

#: environment variable naming a file that the launch scripts read: local
#: rank 0 of each node writes the saved checkpoint's path into it once the
#: run stopped for a signal (torchrun hides the processes' exit statuses)
PREEMPTED_FILE_ENV = 'MMSEG_PREEMPTED_FILE'


class TrainingPreempted(Exception):
    """Training stopped on a stop signal after saving a checkpoint.

    Attributes:
        checkpoint: the saved checkpoint.
        iteration: the number of finished iterations it holds.
    """

    def __init__(self, message: str, checkpoint: str, iteration: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.iteration = iteration


def parse_signal(name: Union[str, int]) -> signal.Signals:
    """``'SIGUSR1'``, ``'USR1'``, ``'usr1'`` or ``10`` -> the signal.

    Raises:
        ValueError: no such signal, or one a process cannot catch.
    """
    if isinstance(name, int) or str(name).isdigit():
        try:
            sig = signal.Signals(int(name))
        except ValueError:
            raise ValueError(f'unknown signal number {name}') from None
    else:
        text = str(name).upper()
        text = text if text.startswith('SIG') else 'SIG' + text
        sig = getattr(signal, text, None)
        if not isinstance(sig, signal.Signals):
            raise ValueError(f'unknown signal {name!r} (e.g. SIGTERM, '
                             'SIGUSR1)')
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f'{sig.name} cannot be caught; choose another '
                         'stop signal')
    return sig


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop after the current iteration on a signal, with a checkpoint.

    The signal handler only records the signal, so a second (or third)
    signal while the checkpoint is written changes nothing. After every
    training iteration the ranks all-reduce one integer (did any rank get a
    signal?), so all of them stop after the same iteration even when the
    signal reached only some. Rank 0 then saves that iteration through the
    run's checkpoint hook (:class:`SegCheckpointHook`: temporary file,
    fsync, rename, then ``last_checkpoint``), unless that hook has just
    saved it, and every rank raises :class:`TrainingPreempted`, which
    ``tools/train.py`` turns into exit status :data:`EXIT_PREEMPTED`.
    Validation due at that iteration is skipped.

    Meant for iteration-based schedules (the checkpoint holds the
    iteration, optimizer, schedulers, message hub and seed;
    :class:`IterSeedHook` and mmengine's data replay reproduce the rest).
    :class:`~mmseg.engine.SegRunner` adds it to every training run with the
    default signals; list it in ``custom_hooks`` to choose others, or use
    ``tools/train.py --stop-signals``.

    Args:
        signals: names (``'SIGUSR1'``/``'USR1'``) or numbers of the signals
            to stop on; empty disables the hook.
    """

    priority = 'LOWEST'  # after the checkpoint and logger hooks

    def __init__(self,
                 signals: Sequence[Union[str, int]] = DEFAULT_STOP_SIGNALS):
        self.signals: List[signal.Signals] = []
        for name in signals:
            sig = parse_signal(name)
            if sig not in self.signals:
                self.signals.append(sig)
        self.received: List[int] = []
        self._previous = {}

    # ------------------------------------------------------------------
    # signal handling

    def _record(self, signum, frame) -> None:
        # runs between two bytecodes of the main thread: only record
        self.received.append(signum)

    def install(self) -> bool:
        """Catch the stop signals (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in self.signals:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._record)
        return True

    def restore(self) -> None:
        """Give the signals back to their previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def before_train(self, runner) -> None:
        if not self.signals:
            return
        names = ', '.join(s.name for s in self.signals)
        if self.install():
            runner.logger.info(
                f'on {names} training stops after the current iteration, '
                'saves a checkpoint and exits with status '
                f'{EXIT_PREEMPTED} (continue with --resume)')
        else:
            runner.logger.warning(
                f'not training in the main thread: {names} cannot be caught '
                'and will end the run without a checkpoint')

    def after_train(self, runner) -> None:
        self.restore()

    # ------------------------------------------------------------------
    # stopping

    def _any_rank(self, flag: bool, op: str = 'max') -> int:
        value = torch.tensor([int(flag)], dtype=torch.int32)
        if is_distributed():
            all_reduce(value, op=op)  # on the backend's device
        return int(value.item())

    def _save(self, runner, step: int) -> str:
        """Save iteration ``step`` on rank 0; the checkpoint's path."""
        hook = next((h for h in runner.hooks
                     if isinstance(h, CheckpointHook) and not h.by_epoch),
                    None)
        if hook is not None:
            path = hook.file_backend.join_path(hook.out_dir,
                                               hook.filename_tmpl.format(step))
            if getattr(hook, 'last_ckpt', None) != path:
                save_checkpoint_now(hook, runner)
            return path
        # no iteration checkpoint hook: save beside the logs
        filename = f'iter_{step}.pth'
        runner.save_checkpoint(
            runner.work_dir,
            filename,
            meta=dict(epoch=runner.epoch, iter=step),
            by_epoch=False)
        path = os.path.join(runner.work_dir, filename)
        if is_main_process():
            atomic_write_text(
                os.path.join(runner.work_dir, 'last_checkpoint'), path)
        return path

    @staticmethod
    def _report(path: str) -> None:
        """Tell the launch script (``$MMSEG_PREEMPTED_FILE``) which
        checkpoint the stop saved."""
        preempted_file = os.environ.get(PREEMPTED_FILE_ENV)
        if preempted_file:
            atomic_write_text(preempted_file, path + '\n')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not self.signals or not self._any_rank(bool(self.received)):
            return
        step = runner.iter + 1
        why = (f'on {signal.Signals(self.received[0]).name}'
               if self.received else 'because another rank got a stop '
               'signal')
        runner.logger.warning(f'stopping after iteration {step} {why}: '
                              'saving a checkpoint')
        error, path = None, None
        try:
            path = self._save(runner, step)
            if is_main_process():
                # before the agreement below: a launcher that ends the job
                # once the first rank exits must still find it
                self._report(path)
        except Exception as e:  # noqa: B902 (reported after the agreement)
            error = e
        # the other ranks must not exit before rank 0 has saved, nor wait
        # for a rank that failed
        saved = self._any_rank(error is None, op='min')
        if error is not None:
            raise error
        if not saved:
            raise SaveError(
                f'stopping after iteration {step}: rank 0 could not save the '
                'checkpoint (its error line says why)')
        if not is_main_process() and os.environ.get('LOCAL_RANK') == '0':
            self._report(path)  # for the launch script of each other node
        message = (f'stopped after iteration {step} {why}; checkpoint {path} '
                   'saved, continue with --resume')
        runner.logger.warning(message)
        raise TrainingPreempted(message, path, step)
