"""mmengine Runner that also runs distributed on machines without CUDA."""
import copy
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.runner import Runner
from torch.nn.parallel import DistributedDataParallel

from mmseg.registry import MODEL_WRAPPERS, RUNNERS
from .checkpoint import load_state_dict_checked, read_checkpoint
from .dist import DEFAULT_TIMEOUT_S, init_cpu_dist
from .safe_load import install_safe_loading
from .sync_bn import revert_sync_batchnorm_if_needed, sync_bn_usable


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

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        """mmengine's ``load_checkpoint`` (used by ``load_from`` and
        ``resume``) reporting mismatches as :func:`load_checkpoint` does:
        counted and grouped by prefix rather than listed key by key."""
        checkpoint = read_checkpoint(filename, map_location, self.logger)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        load_state_dict_checked(
            self.model, checkpoint, filename, strict, self.logger,
            revise_keys)
        self._has_loaded = True
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
