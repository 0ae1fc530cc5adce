"""Every place this package reaches into mmengine's or PyTorch's internals.

The rest of :mod:`mmseg.engine` only overrides public methods (``Runner
.save_checkpoint``, ``build_dataloader``, ``Hook.before_train`` ...). What
needs private attributes or methods, or a copy of an upstream method's body,
lives here, one :class:`Override` per concern, each stating what it changes,
why, the versions it was written for and the upstream issue it works
around. Private names change without notice between releases, so each
override is *guarded*: before it is used, :func:`check` verifies that the
installed package is within the tested range and that every private name
it touches exists, and otherwise raises :class:`UnsupportedInternalsError`
naming the override, the package and both versions, rather than letting a
changed internal misbehave silently (a resume that starts from scratch, a
checkpoint deleted too early).

Written for and tested with mmengine 0.10.7 and torch 2.13. The tested
ranges are :data:`TESTED_VERSIONS`; setting the environment variable
``MMSEG_ALLOW_UNTESTED_INTERNALS=1`` turns the version check (not the
missing-attribute check) into a warning, for trying a newer release.

Not overrides, so not here: :mod:`mmseg.engine.checkpoint` carries a state
dict's ``_metadata`` (per-module versions ``torch.nn.Module.state_dict``
attaches and ``load_state_dict`` reads) over its key renaming, read with a
default so that without it only old BN counters go unfilled, as mmengine's
own loader does; :mod:`mmseg.engine.safe_load` names numpy's pickled
globals (``numpy._core``), a format, not a behaviour it changes.
"""
import os
import time
import types
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

import mmengine
import torch
import torch.utils.data._utils
import torch.utils.data.dataloader
from mmengine.hooks import CheckpointHook
from mmengine.utils import digit_version
from torch.utils.data import DataLoader

from mmseg.utils.errors import SenFormerError
from .atomic_io import atomic_write_text

#: ``package: (lowest tested, first untested)`` versions
TESTED_VERSIONS: Dict[str, Tuple[str, str]] = {
    'mmengine': ('0.10.0', '0.11.0'),
    'torch': ('2.1.0', '2.14.0'),
}
ALLOW_UNTESTED_ENV = 'MMSEG_ALLOW_UNTESTED_INTERNALS'


class UnsupportedInternalsError(SenFormerError, RuntimeError):
    """An override of mmengine/PyTorch internals cannot be trusted with the
    installed version (outside the tested range, or a private name it uses
    is gone)."""


def installed_version(package: str) -> str:
    """``__version__`` of ``'mmengine'`` or ``'torch'`` (a function so that
    tests can pretend another version)."""
    return {'mmengine': mmengine, 'torch': torch}[package].__version__


@dataclass(frozen=True)
class Override:
    """One reliance on upstream internals.

    Attributes:
        name: how messages call it.
        package: ``'mmengine'`` or ``'torch'``.
        changes: what it changes and why.
        upstream: the upstream issue it works around.
        requires: ``(owner, names)`` pairs: the private attributes or
            methods of ``owner`` (a class or module) it relies on; owner
            None for names that only exist on instances, checked on the
            object passed to :func:`check`.
    """
    name: str
    package: str
    changes: str
    upstream: str
    requires: Tuple[Tuple[object, Tuple[str, ...]], ...] = ()


_checked = set()


def check(override: Override, instance: object = None) -> None:
    """Raise :class:`UnsupportedInternalsError` unless ``override`` can be
    used with the installed package.

    Args:
        override: one of this module's overrides.
        instance: the object whose private *instance* attributes the
            override reads (a Runner, a DataLoader iterator); the names
            listed for ``None`` in ``override.requires`` are looked up on
            it. Class-level names are checked once per process.
    """
    if override.name not in _checked:
        _check_version(override)
        for owner, names in override.requires:
            if owner is not None:
                _check_names(override, owner, names)
        _checked.add(override.name)
    if instance is not None:
        for owner, names in override.requires:
            if owner is None:
                _check_names(override, instance, names)


def _check_version(override: Override) -> None:
    package = override.package
    version = installed_version(package)
    low, high = TESTED_VERSIONS[package]
    if digit_version(low) <= digit_version(version) < digit_version(high):
        return
    message = (f'{override.name} relies on internals of {package} and was '
               f'tested with {package} >={low},<{high}; {package} '
               f'{version} is installed. Install a tested version')
    if os.environ.get(ALLOW_UNTESTED_ENV) == '1':
        warnings.warn(f'{message} ({ALLOW_UNTESTED_ENV}=1: going on '
                      'untested)')
        return
    raise UnsupportedInternalsError(
        f'{message}, or set {ALLOW_UNTESTED_ENV}=1 to try anyway '
        f'(upstream: {override.upstream})')


def _check_names(override: Override, owner: object,
                 names: Iterable[str]) -> None:
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        what = owner.__name__ if isinstance(
            owner, (type, types.ModuleType)) else type(owner).__name__
        raise UnsupportedInternalsError(
            f'{override.name} needs {", ".join(missing)} of {what}, which '
            f'{override.package} {installed_version(override.package)} no '
            f'longer has (tested with {override.package} '
            f'>={TESTED_VERSIONS[override.package][0]},'
            f'<{TESTED_VERSIONS[override.package][1]})')


# ---------------------------------------------------------------------------
# 1. Runner: resume bookkeeping

RUNNER_RESUME = Override(
    name='SegRunner resume (newest complete checkpoint, seed restored)',
    package='mmengine',
    changes=(
        "mmengine's Runner keeps whether to resume and from which file in "
        'the private _resume / _load_from / _has_loaded, and its seed '
        'settings in _randomness_cfg, with no public setter. SegRunner '
        'settles the file before the train loop (and its sampler) is built: '
        'the newest complete checkpoint of the work dir even when '
        'last_checkpoint is missing or stale, and restores the seed stored '
        'in it so a resumed run without a fixed seed keeps its data order.'),
    upstream=('https://github.com/open-mmlab/mmengine/issues/80 '
              '(last_checkpoint as the pointer auto-resume follows; no '
              'upstream issue covers a stale pointer or the seed)'),
    requires=((None, ('_resume', '_load_from', '_has_loaded',
                      '_randomness_cfg')), ))


class ResumeState:
    """Read/write view of a Runner's private resume settings."""

    def __init__(self, runner) -> None:
        check(RUNNER_RESUME, runner)
        self._runner = runner

    @property
    def pending(self) -> bool:
        """``resume=True`` and no checkpoint loaded yet."""
        return bool(self._runner._resume) and not self._runner._has_loaded

    @property
    def load_from(self) -> Optional[str]:
        return self._runner._load_from

    @load_from.setter
    def load_from(self, path: Optional[str]) -> None:
        self._runner._load_from = path

    def cancel(self) -> None:
        """Train from scratch after all (nothing to resume from)."""
        self._runner._resume = False

    def mark_loaded(self) -> None:
        """Tell the Runner a checkpoint is in (it loads no other)."""
        self._runner._has_loaded = True

    def restore_seed(self, seed: int) -> None:
        """Re-seed with ``seed`` and keep it as the run's seed."""
        self._runner._randomness_cfg.update(seed=seed)
        self._runner.set_randomness(**self._runner._randomness_cfg)


def mark_checkpoint_loaded(runner) -> None:
    """After :meth:`SegRunner.load_checkpoint` replaced mmengine's own."""
    ResumeState(runner).mark_loaded()


# ---------------------------------------------------------------------------
# 2. CheckpointHook: delete old checkpoints only after the new one is safe

CHECKPOINT_HOOK = Override(
    name='SegCheckpointHook (old checkpoints deleted after the new save)',
    package='mmengine',
    changes=(
        "mmengine's CheckpointHook._save_checkpoint_with_step deletes the "
        'checkpoint that falls out of max_keep_ckpts, and '
        '_save_best_checkpoint the previous best file, *before* saving the '
        'new one: a crash or a full disk in between leaves no checkpoint. '
        'The first is replaced by a copy of its body (mmengine 0.10.7) with '
        'the deletion moved after the save and last_checkpoint written '
        'atomically; the second runs with the file backend swapped for one '
        'that defers removals until the save has returned. PreemptionHook '
        'saves through the private _save_checkpoint, the only entry point '
        'that does the hook\'s bookkeeping.'),
    upstream=('no mmengine issue found; the same bug and fix elsewhere: '
              'https://github.com/verl-project/verl/pull/4873 (max_keep '
              'deletion before the new save); max_keep_ckpts itself: '
              'https://github.com/open-mmlab/mmengine/issues/1165'),
    requires=((CheckpointHook, ('_save_checkpoint',
                                '_save_checkpoint_with_step',
                                '_save_best_checkpoint')),
              (None, ('max_keep_ckpts', 'filename_tmpl', 'file_backend',
                      'out_dir', 'file_client_args', 'save_optimizer',
                      'save_param_scheduler', 'by_epoch', 'backend_args',
                      'args'))))


class _DeferredRemoval:
    """A file backend whose ``remove``/``rmtree`` wait for :meth:`flush`;
    every other call goes to the wrapped backend."""

    def __init__(self, backend):
        self._backend = backend
        self._pending = []

    def remove(self, path):
        self._pending.append(('remove', path))

    def rmtree(self, path):
        self._pending.append(('rmtree', path))

    def flush(self):
        for method, path in self._pending:
            getattr(self._backend, method)(path)
        self._pending.clear()

    def __getattr__(self, name):
        return getattr(self._backend, name)


class CheckpointHookSavingFirst(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` whose private save methods
    delete old files only after the new checkpoint is on disk, and replace
    ``last_checkpoint`` atomically."""

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        from mmengine.dist import is_main_process
        check(CHECKPOINT_HOOK, self)
        # mmengine 0.10.7's bookkeeping, but the checkpoint that falls out
        # of max_keep_ckpts is only deleted after the new one is saved
        expired = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write_text(
            os.path.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in expired:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        check(CHECKPOINT_HOOK, self)
        # mmengine removes the previous best file before saving the new
        # one; hold the removal back until the save has returned
        backend = self.file_backend
        deferred = _DeferredRemoval(backend)
        self.file_backend = deferred
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        deferred.flush()


def save_checkpoint_now(hook: CheckpointHook, runner) -> None:
    """Save the current iteration through ``hook``'s own bookkeeping
    (``max_keep_ckpts``, ``last_checkpoint``), outside its interval."""
    check(CHECKPOINT_HOOK, hook)
    hook._save_checkpoint(runner)


# ---------------------------------------------------------------------------
# 3. DataLoader: a timeout that keeps the dead-worker checks

WATCHED_DATALOADER = Override(
    name='WatchedDataLoader (timeout with dead-worker checks)',
    package='torch',
    changes=(
        "With timeout > 0, torch's _MultiProcessingDataLoaderIter._get_data "
        'blocks in one wait of the whole timeout, so a worker that died '
        'unnoticed (killed before its SIGCHLD handler was in place) stalls '
        'the run for all of it; without a timeout it polls every '
        'MP_STATUS_CHECK_INTERVAL seconds and checks the workers. '
        '_get_data is overridden to poll with the short interval through '
        '_try_get_data (which raises for a dead worker) up to the timeout, '
        'and mmengine\'s plain DataLoader gets this iterator by changing '
        'its __class__ (mmengine builds the loader itself, from a config).'),
    upstream=('https://github.com/pytorch/pytorch/issues/96629 (workers '
              'hung past the timeout; closest match, none is exact); the '
              'polling it keeps: https://github.com/pytorch/pytorch/pull/'
              '11985'),
    requires=(
        (torch.utils.data.dataloader._MultiProcessingDataLoaderIter,
         ('_get_data', '_try_get_data')),
        (torch.utils.data._utils, ('MP_STATUS_CHECK_INTERVAL', )),
        (DataLoader, ('_get_iterator', 'check_worker_number_rationality')),
        (None, ('_timeout', '_pin_memory')),
    ))


class _WatchedIterator(
        torch.utils.data.dataloader._MultiProcessingDataLoaderIter):
    """Waits for a batch in short polls, as PyTorch does without a timeout
    (each poll checks that every worker is alive), and gives up after the
    loader's ``timeout``."""

    def __init__(self, loader) -> None:
        super().__init__(loader)
        check(WATCHED_DATALOADER, self)

    def _get_data(self):
        if self._timeout <= 0:
            return super()._get_data()
        poll = torch.utils.data._utils.MP_STATUS_CHECK_INTERVAL
        deadline = time.monotonic() + self._timeout
        while True:
            if self._pin_memory and not self._pin_memory_thread.is_alive():
                raise RuntimeError('Pin memory thread exited unexpectedly')
            left = deadline - time.monotonic()
            # raises "DataLoader worker ... exited unexpectedly" for a dead
            # worker at every poll
            success, data = self._try_get_data(
                max(min(poll, left), 0.01))
            if success:
                return data
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f'DataLoader timed out after {self._timeout} seconds')


class WatchedDataLoader(DataLoader):
    """:class:`torch.utils.data.DataLoader` whose ``timeout`` (seconds to
    wait for one batch from the workers) keeps the dead-worker checks.

    :meth:`SegRunner.build_dataloader
    <mmseg.engine.SegRunner.build_dataloader>` turns mmengine's loaders with
    workers into this class (:func:`watch_dataloader`).
    """

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        self.check_worker_number_rationality()
        return _WatchedIterator(self)


def watch_dataloader(loader):
    """``loader`` as a :class:`WatchedDataLoader` when it is a plain
    DataLoader with workers (mmengine always builds a plain one; only the
    iterator differs, so its class is swapped in place), else unchanged."""
    if type(loader) is DataLoader and loader.num_workers > 0:
        check(WATCHED_DATALOADER)
        loader.__class__ = WatchedDataLoader
    return loader


#: every override, for documentation and tests
OVERRIDES: Tuple[Override, ...] = (RUNNER_RESUME, CHECKPOINT_HOOK,
                                   WATCHED_DATALOADER)

__all__ = [
    'ALLOW_UNTESTED_ENV', 'CHECKPOINT_HOOK', 'CheckpointHookSavingFirst',
    'OVERRIDES', 'Override', 'RUNNER_RESUME', 'ResumeState',
    'TESTED_VERSIONS', 'UnsupportedInternalsError', 'WATCHED_DATALOADER',
    'WatchedDataLoader', 'check', 'installed_version',
    'mark_checkpoint_loaded', 'save_checkpoint_now', 'watch_dataloader'
]
