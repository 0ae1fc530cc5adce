"""Turning SyncBN layers into plain BN where they cannot synchronise."""
import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import revert_sync_batchnorm


def count_sync_batchnorm(model: nn.Module) -> int:
    """Number of ``SyncBatchNorm`` layers (torch's or mmcv's) in ``model``."""
    return sum(
        isinstance(m, nn.SyncBatchNorm) or type(m).__name__ == 'SyncBatchNorm'
        for m in model.modules())


def sync_bn_usable(distributed: bool) -> bool:
    """SyncBN synchronises only across a CUDA process group (torch's kernels
    need CUDA tensors; gloo on CPU is not supported)."""
    return distributed and torch.cuda.is_available()


def revert_sync_batchnorm_if_needed(model: nn.Module,
                                    distributed: bool,
                                    logger='current') -> nn.Module:
    """Replace SyncBN by BN unless the run is distributed on CUDA.

    Logs exactly one line when something was converted.

    Args:
        model: the model (not yet wrapped).
        distributed: whether a process group is (to be) used.
        logger: where to log; mmengine's current logger by default.

    Returns:
        The model, with ``BatchNormXd`` layers in place of SyncBN when
        needed (the same object unless the model itself is a SyncBN).
    """
    if sync_bn_usable(distributed):
        return model
    count = count_sync_batchnorm(model)
    if count:
        why = ('distributed on CPU, where torch SyncBatchNorm cannot run; '
               'each process normalises with its own batch statistics'
               if distributed else 'not distributed')
        print_log(
            f'Converted {count} SyncBatchNorm layers to BatchNorm ({why}).',
            logger=logger)
        model = revert_sync_batchnorm(model)
    return model
