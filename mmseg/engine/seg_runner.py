"""mmengine Runner that runs distributed on machines without CUDA and keeps
a training run's files safe from crashes."""
import copy
import os
import os.path as osp
import re
import uuid
from typing import Callable, Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.dist import is_distributed, master_only
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.runner import Runner
from torch.nn.parallel import DistributedDataParallel

from mmseg.registry import MODEL_WRAPPERS, RUNNERS
from .atomic_io import SaveError, commit, describe_os_error, temporary_name
from .checkpoint import load_state_dict_checked, read_checkpoint
from .dist import DEFAULT_TIMEOUT_S, init_cpu_dist
from .hooks import (CheckFiniteLossHook, IterSeedHook, NonFiniteError,
                    PreemptionHook, SegCheckpointHook, TrainingPreempted)
from .hooks.finite_loss_hook import first_non_finite_tensor
from .overrides import ResumeState, mark_checkpoint_loaded, watch_dataloader
from .safe_load import install_safe_loading
from .sync_bn import revert_sync_batchnorm_if_needed, sync_bn_usable
from .work_dir_lock import WorkDirBusyError, WorkDirLock, describe_owner

#: seconds a training dataloader may wait for a batch from its workers
#: before failing (a hung worker must not stall the run forever); set
#: ``timeout`` in a dataloader config to change it
DEFAULT_DATALOADER_TIMEOUT_S = 1800

# checkpoint files named by CheckpointHook's default filename_tmpl
_NUMBERED_CHECKPOINT = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


@RUNNERS.register_module()
class SegRunner(Runner):
    """:class:`mmengine.runner.Runner` with CPU-capable distributed set-up.

    Build it like the base class, ``SegRunner.from_cfg(cfg)`` (or
    ``RUNNERS.build(cfg)`` with ``cfg.runner_type = 'SegRunner'``). It
    differs only where a run has no CUDA device:

    * ``launcher`` ``'pytorch'``/``'slurm'``/``'mpi'`` create a ``gloo``
      process group from the launcher's environment instead of calling
      ``torch.cuda.set_device`` (with CUDA, mmengine's ``init_dist`` runs as
      before with ``env_cfg.dist_cfg.backend``);
    * SyncBN layers become BN (one log line) and DDP is built without
      ``device_ids``.

    In every case the process group gets a timeout,
    ``env_cfg.dist_cfg.timeout`` seconds (default 1800), so the other ranks
    fail instead of waiting forever for a crashed one; checkpoints are read
    weights-only (:mod:`mmseg.engine.safe_load`) and ``load_from``
    mismatches are reported briefly, grouped by key prefix.

    Training runs are made crash-safe:

    * checkpoints are written atomically (temporary file, fsync, rename) and
      never with NaN/Inf weights; ``CheckpointHook`` becomes
      :class:`~mmseg.engine.hooks.SegCheckpointHook` (atomic
      ``last_checkpoint``, old files deleted only after the new one is
      safe); a full disk raises :class:`~mmseg.engine.SaveError` with the
      previous checkpoint intact;
    * :class:`~mmseg.engine.hooks.CheckFiniteLossHook` stops at the first
      NaN/Inf loss, before anything is saved;
    * :class:`~mmseg.engine.hooks.IterSeedHook` and the seed of the resumed
      checkpoint (restored before the sampler is built) make a resumed run
      repeat the uninterrupted one;
    * ``resume=True`` without a file picks the newest complete checkpoint
      of the work dir, even when ``last_checkpoint`` is missing or stale;
    * dataloaders with workers get a ``timeout`` for hung workers (default
      :data:`DEFAULT_DATALOADER_TIMEOUT_S`) and still fail within seconds
      when a worker dies (:class:`~mmseg.engine.WatchedDataLoader`);
    * :class:`~mmseg.engine.hooks.PreemptionHook` stops every rank after
      the same iteration on SIGTERM/SIGUSR1 and saves a checkpoint;
    * :meth:`train` holds the work dir's lock
      (:class:`~mmseg.engine.WorkDirLock`): a second run in the same work
      dir is refused, the lock of a dead run is taken over.

    What of this needs mmengine's or PyTorch's private attributes goes
    through :mod:`mmseg.engine.overrides`, which refuses untested versions
    with a clear error.
    """

    def setup_env(self, env_cfg: Dict) -> None:
        install_safe_loading()
        env_cfg = copy.deepcopy(dict(env_cfg or {}))
        dist_cfg = dict(env_cfg.get('dist_cfg') or {})
        dist_cfg.setdefault('timeout', DEFAULT_TIMEOUT_S)
        env_cfg['dist_cfg'] = dist_cfg
        if self.distributed and not is_distributed() \
                and not torch.cuda.is_available():
            # the config's backend (usually nccl) is meant for GPUs
            backend = dist_cfg.get('backend', 'gloo')
            init_cpu_dist(
                self.launcher,
                timeout=dist_cfg['timeout'],
                backend=backend if backend in ('gloo', 'mpi') else 'gloo')
        # with the group in place mmengine skips its own init_dist
        super().setup_env(env_cfg)

    # ------------------------------------------------------------------
    # hooks and dataloaders

    def register_hooks(
            self,
            default_hooks: Optional[Dict[str, Union[Hook, Dict]]] = None,
            custom_hooks: Optional[List[Union[Hook, Dict]]] = None) -> None:
        """mmengine's hooks, with ``CheckpointHook`` replaced by
        :class:`SegCheckpointHook` and :class:`CheckFiniteLossHook`,
        :class:`IterSeedHook` and :class:`PreemptionHook` added unless the
        config lists them."""
        default_hooks = dict(default_hooks or {})
        # mmengine's default when the config names none: every epoch/iter
        checkpoint = default_hooks.get('checkpoint',
                                       dict(type='CheckpointHook',
                                            interval=1))
        if isinstance(checkpoint, dict) and checkpoint.get('type') in (
                'CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
            args = {k: v for k, v in checkpoint.items() if k != 'type'}
            default_hooks['checkpoint'] = SegCheckpointHook(**args)
        super().register_hooks(default_hooks, custom_hooks)
        for hook_cls in (CheckFiniteLossHook, IterSeedHook, PreemptionHook):
            if not any(isinstance(h, hook_cls) for h in self.hooks):
                self.register_hook(hook_cls())

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """mmengine's ``build_dataloader``; a loader with workers gets a
        ``timeout`` (:data:`DEFAULT_DATALOADER_TIMEOUT_S` unless set) for
        hung workers and becomes a :class:`WatchedDataLoader`, which still
        notices a dead worker within seconds."""
        if isinstance(dataloader, dict) and \
                dataloader.get('num_workers', 0) > 0 and \
                'timeout' not in dataloader:
            dataloader = copy.copy(dataloader)
            dataloader['timeout'] = DEFAULT_DATALOADER_TIMEOUT_S
        return watch_dataloader(
            Runner.build_dataloader(dataloader, seed, diff_rank_seed))

    # ------------------------------------------------------------------
    # one run per work dir

    def _lock_work_dir(self) -> Optional[WorkDirLock]:
        """Rank 0 locks the work dir; every rank learns the outcome (so a
        refused run ends on all ranks at once)."""
        from mmengine.dist import broadcast_object_list
        lock, outcome = None, [None, None]
        if self.rank == 0:
            lock = WorkDirLock(self.work_dir)
            try:
                outcome[1] = lock.acquire()
            except WorkDirBusyError as e:
                outcome[0] = str(e)
                lock = None
        if self.distributed:
            broadcast_object_list(outcome, src=0)
        busy, stale = outcome
        if busy:
            raise WorkDirBusyError(busy)
        if stale is not None:
            self.logger.warning(
                f'took over the lock of {self.work_dir} from a run that is no '
                f'longer running ({describe_owner(stale)})')
        return lock

    def train(self) -> nn.Module:
        """mmengine's ``train`` holding the work dir's lock.

        Raises:
            WorkDirBusyError: another live run trains in this work dir.
        """
        lock = self._lock_work_dir()
        try:
            return super().train()
        except TrainingPreempted:
            # the process is about to exit: a further signal (while the
            # ranks say goodbye) must not turn the exit status into 143
            raise
        except BaseException:
            # a failed run leaves the process's signals as they were (only
            # a finished one calls after_train)
            for hook in self.hooks:
                if isinstance(hook, PreemptionHook):
                    hook.restore()
            raise
        finally:
            if lock is not None:
                lock.release()

    # ------------------------------------------------------------------
    # saving

    def _last_checkpoint(self) -> Optional[str]:
        """What ``work_dir/last_checkpoint`` names, if anything."""
        pointer = osp.join(self.work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            return f.read().strip() or None

    @master_only
    def save_checkpoint(self,
                        out_dir: str,
                        filename: str,
                        file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        meta: Optional[dict] = None,
                        by_epoch: bool = True,
                        backend_args: Optional[dict] = None) -> None:
        """mmengine's ``save_checkpoint``, atomically on local disks.

        The checkpoint is written to a temporary file beside the target,
        flushed and renamed over it, so ``out_dir/filename`` is only ever a
        complete checkpoint. Other storage back-ends are written as mmengine
        does.

        Raises:
            NonFiniteError: a weight is NaN/Inf; nothing is written.
            SaveError: the file could not be written (disk full, ...); the
                previous files are unchanged.
        """
        path = osp.join(out_dir, filename)
        model = self.model.module if is_model_wrapper(self.model) \
            else self.model
        bad = first_non_finite_tensor(model.state_dict())
        if bad is not None:
            raise NonFiniteError(
                f'refusing to save {path}: weight {bad} is NaN/Inf (training '
                f'diverged by iteration {self.iter + 1}); '
                + (f'the last checkpoint {self._last_checkpoint()} is '
                   'unchanged' if self._last_checkpoint() else
                   'no checkpoint was saved'))
        args = dict(
            file_client_args=file_client_args,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=backend_args)
        local = file_client_args is None and isinstance(
            get_file_backend(out_dir, backend_args=backend_args),
            LocalBackend)
        if not local:
            super().save_checkpoint(out_dir, filename, **args)
            return

        tmp_name = temporary_name(filename, uuid.uuid4().hex[:8])
        tmp = osp.join(out_dir, tmp_name)
        try:
            super().save_checkpoint(out_dir, tmp_name, **args)
            commit(tmp, path)
        except BaseException as e:
            if osp.exists(tmp):
                os.remove(tmp)
            if not isinstance(e, OSError):
                raise
            last = self._last_checkpoint()
            raise SaveError(
                f'cannot save checkpoint {path}: {describe_os_error(e)}; '
                'nothing was overwritten' +
                (f', the last checkpoint {last} is intact (continue with '
                 '--resume)' if last else '')) from e

    # ------------------------------------------------------------------
    # loading and resuming

    def _find_resume_checkpoint(self) -> Optional[str]:
        """The newest complete checkpoint of the work dir.

        ``last_checkpoint`` normally names it; a numbered checkpoint newer
        than the one it names (a run killed between saving and updating the
        pointer) or, without a usable pointer, the highest-numbered one is
        taken instead. Every file is complete: they are written atomically.
        """
        named = self._last_checkpoint()
        if named is not None and '://' not in named and \
                not osp.isfile(named):
            self.logger.warning(
                f'{osp.join(self.work_dir, "last_checkpoint")} names {named}'
                ', which does not exist; looking for other checkpoints')
            named = None
        if named is not None and '://' in named:
            return named

        folders = {self.work_dir}
        if named is not None:
            folders.add(osp.dirname(named))
        numbered = []
        for folder in folders:
            if not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                match = _NUMBERED_CHECKPOINT.match(name)
                if match:
                    numbered.append((match.group(1), int(match.group(2)),
                                     osp.join(folder, name)))
        if named is None:
            return max(numbered)[2] if numbered else None
        match = _NUMBERED_CHECKPOINT.match(osp.basename(named))
        if match:
            newer = [c for c in numbered if c[0] == match.group(1)
                     and c[1] > int(match.group(2))]
            if newer:
                self.logger.warning(
                    f'resuming from {max(newer)[2]}, newer than {named} that '
                    'last_checkpoint names (the run stopped before updating '
                    'it)')
                return max(newer)[2]
        return named

    def build_train_loop(self, loop):
        """Before the train loop (and its sampler) is built, settle which
        checkpoint a resumed run starts from and restore its random seed,
        so a run without a fixed seed keeps its data order too."""
        resume = ResumeState(self)
        if resume.pending:
            if resume.load_from is None:
                resume.load_from = self._find_resume_checkpoint()
                if resume.load_from is None:
                    self.logger.warning(
                        f'resume: no checkpoint in {self.work_dir}; training '
                        'starts from scratch')
                    resume.cancel()
                else:
                    self.logger.info(
                        f'resuming from the latest checkpoint '
                        f'{resume.load_from}')
            if resume.load_from is not None:
                checkpoint = read_checkpoint(resume.load_from, 'cpu',
                                             self.logger)
                self._resume_cache = (resume.load_from, checkpoint)
                meta = checkpoint.get('meta', {}) \
                    if isinstance(checkpoint, dict) else {}
                seed = meta.get('seed')
                if seed is not None and seed != self.seed:
                    resume.restore_seed(seed)
        return super().build_train_loop(loop)

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        """mmengine's ``load_checkpoint`` (used by ``load_from`` and
        ``resume``) reporting mismatches as :func:`load_checkpoint` does:
        counted and grouped by prefix rather than listed key by key."""
        cached = getattr(self, '_resume_cache', None)
        if cached is not None and cached[0] == filename:
            self._resume_cache = None
            checkpoint = cached[1]
        else:
            checkpoint = read_checkpoint(filename, map_location, self.logger)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        load_state_dict_checked(
            self.model, checkpoint, filename, strict, self.logger,
            revise_keys)
        mark_checkpoint_loaded(self)
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def wrap_model(self, model_wrapper_cfg: Optional[Dict],
                   model: nn.Module) -> Union[DistributedDataParallel,
                                              nn.Module]:
        """Revert SyncBN where it cannot run and wrap for DDP on CPU.

        Distributed runs on CUDA and already wrapped models are left to
        mmengine (which also applies ``cfg.sync_bn`` there).
        """
        if is_model_wrapper(model) or sync_bn_usable(self.distributed):
            return super().wrap_model(model_wrapper_cfg, model)

        model = model.to(get_device())
        if self.distributed and self.cfg.get('sync_bn'):
            self.logger.warning(
                f"cfg.sync_bn='{self.cfg.sync_bn}' is ignored: SyncBN needs "
                'CUDA')
        model = revert_sync_batchnorm_if_needed(
            model, self.distributed, logger=self.logger)
        if not self.distributed:
            return model

        # CPU modules take no device_ids (DDP rejects them)
        if model_wrapper_cfg is None:
            return MMDistributedDataParallel(
                module=model,
                broadcast_buffers=False,
                find_unused_parameters=self.cfg.get(
                    'find_unused_parameters', False))
        model_wrapper_cfg = copy.deepcopy(model_wrapper_cfg)
        model_wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
        return MODEL_WRAPPERS.build(
            model_wrapper_cfg, default_args=dict(module=model))
