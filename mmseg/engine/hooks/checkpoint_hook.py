"""mmengine's CheckpointHook with crash-safe files."""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmseg.registry import HOOKS
from ..atomic_io import atomic_write_text, remove_stale_temporaries


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


@HOOKS.register_module()
class SegCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` that never loses the last
    good checkpoint. Same arguments.

    Differences, all about crashes (``kill -9``, power loss, full disk):

    * the checkpoint is written by :meth:`SegRunner.save_checkpoint
      <mmseg.engine.SegRunner.save_checkpoint>` (temporary file, fsync,
      rename), then ``work_dir/last_checkpoint`` is replaced the same way,
      so it only ever names a complete file;
    * checkpoints beyond ``max_keep_ckpts`` and the previous best checkpoint
      are deleted only after the new file is safely on disk (mmengine
      deletes them first);
    * temporary files left by a killed run are removed when training
      starts.

    :class:`~mmseg.engine.SegRunner` uses it in place of ``CheckpointHook``.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for directory in {self.out_dir, runner.work_dir}:
                for path in remove_stale_temporaries(directory):
                    runner.logger.info(
                        f'removed {path}, the unfinished file of an '
                        'interrupted save')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        # the same bookkeeping as mmengine, but the checkpoint that falls
        # out of max_keep_ckpts is only deleted after the new one is saved
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
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in expired:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
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
