"""mmengine's CheckpointHook with crash-safe files."""
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend

from mmseg.registry import HOOKS
from ..atomic_io import remove_stale_temporaries
from ..overrides import CheckpointHookSavingFirst


@HOOKS.register_module()
class SegCheckpointHook(CheckpointHookSavingFirst):
    """:class:`mmengine.hooks.CheckpointHook` that never loses the last
    good checkpoint. Same arguments.

    Differences, all about crashes (``kill -9``, power loss, full disk):

    * the checkpoint is written by :meth:`SegRunner.save_checkpoint
      <mmseg.engine.SegRunner.save_checkpoint>` (temporary file, fsync,
      rename), then ``work_dir/last_checkpoint`` is replaced the same way,
      so it only ever names a complete file;
    * checkpoints beyond ``max_keep_ckpts`` and the previous best checkpoint
      are deleted only after the new file is safely on disk (mmengine
      deletes them first; the override of its private save methods is
      :class:`mmseg.engine.overrides.CheckpointHookSavingFirst`);
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
