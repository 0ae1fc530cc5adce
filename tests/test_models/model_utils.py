"""Building models from the repository's configs for tests."""
import os.path as osp

import torch
from mmengine.config import Config

from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def model_cfg(config: str, norm: str = 'BN', **overrides):
    """The ``model`` section of a repository config (path relative to the
    repository root), SyncBN replaced by ``norm`` and without pretrained
    weights."""
    full = Config.fromfile(osp.join(REPO_ROOT, config))
    full.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    cfg = full.model
    cfg.pretrained = None
    cfg.backbone.pop('init_cfg', None)
    for section in ('backbone', 'decode_head', 'auxiliary_head'):
        norm_cfg = cfg[section].get('norm_cfg')
        if norm_cfg is not None and norm_cfg.get('type') == 'SyncBN':
            norm_cfg.type = norm
    return cfg


def build_model(config: str, device=None, **overrides):
    register_all_modules()
    cfg = model_cfg(config, **overrides)
    if device is None:
        return MODELS.build(cfg)
    with torch.device(device):
        return MODELS.build(cfg)
