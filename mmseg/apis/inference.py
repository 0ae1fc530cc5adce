"""Model construction and inference on images, for scripts and notebooks."""
import copy
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

ImageType = Union[str, Path, np.ndarray]


def _load_config(config: Union[str, Path, Config],
                 cfg_options: Optional[dict]) -> Config:
    if isinstance(config, (str, Path)):
        config = Config.fromfile(str(config))
    elif isinstance(config, Config):
        config = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a path or a Config, got '
                        f'{type(config).__name__}')
    if cfg_options:
        config.merge_from_dict(cfg_options)
    return config


def _dataset_meta(config: Config, checkpoint: Optional[dict]) -> dict:
    """Class names and palette: from the checkpoint when it carries them
    (mmengine ``dataset_meta`` or the published ``CLASSES``/``PALETTE``),
    else from the config's test dataset."""
    meta = (checkpoint or {}).get('meta', {}) or {}
    if meta.get('dataset_meta'):
        return dict(meta['dataset_meta'])
    if meta.get('CLASSES'):
        return dict(classes=meta['CLASSES'], palette=meta.get('PALETTE'))
    dataset_cfg = config.get('test_dataloader', {}).get('dataset', {})
    if dataset_cfg.get('metainfo'):
        return dict(dataset_cfg['metainfo'])
    dataset_cls = DATASETS.get(dataset_cfg.get('type', ''))
    if dataset_cls is not None and hasattr(dataset_cls, 'METAINFO'):
        return dict(dataset_cls.METAINFO)
    return {}


def init_model(config: Union[str, Path, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a segmentor from a config for inference.

    Backbone pre-training weights are never fetched: the model is built
    without them and, when given, ``checkpoint`` is loaded strictly.

    Args:
        config: config file path or Config, or the name of a published
            model (``'senformer_r50_512x512_ade20k'``, see
            :mod:`mmseg.apis.model_zoo`): its config, and its checkpoint
            (downloaded once) unless ``checkpoint`` is given.
        checkpoint: checkpoint path or URL, or None for random weights.
        device: e.g. ``'cpu'`` or ``'cuda:0'``.
        cfg_options: overrides merged into the config.

    Returns:
        The model in eval mode, with ``cfg`` and ``dataset_meta`` attached.
    """
    from .model_zoo import looks_like_model_name, resolve_model
    if isinstance(config, str) and looks_like_model_name(config):
        config, checkpoint = resolve_model(config, checkpoint)
    config = _load_config(config, cfg_options)
    init_default_scope(config.get('default_scope', 'mmseg'))
    config.model.pretrained = None
    config.model.backbone.pop('pretrained', None)
    config.model.backbone.init_cfg = None
    model = MODELS.build(config.model)
    loaded = None
    if checkpoint is not None:
        from mmseg.engine.checkpoint import load_checkpoint
        loaded = load_checkpoint(model, checkpoint, map_location='cpu')
    model.cfg = config
    model.dataset_meta = _dataset_meta(config, loaded)
    from mmseg.engine import revert_sync_batchnorm_if_needed

    # inference is never distributed: SyncBN would only be plain BN
    model = revert_sync_batchnorm_if_needed(model, distributed=False)
    model.to(device)
    model.eval()
    return model


def _test_pipeline(config: Config, aug_test: bool,
                   from_array: bool) -> Compose:
    """The config's (TTA) test pipeline without label loading."""
    if aug_test:
        if 'tta_pipeline' not in config:
            raise KeyError('aug_test=True needs tta_pipeline in the config')
        steps = copy.deepcopy(config.tta_pipeline)
    else:
        steps = copy.deepcopy(
            config.get('test_pipeline',
                       config.test_dataloader.dataset.pipeline))

    def strip(transforms):
        kept = []
        for t in transforms:
            if isinstance(t, list):
                t = strip(t)
                if t:
                    kept.append(t)
            elif t['type'] == 'LoadAnnotations':
                continue
            else:
                if t['type'] == 'TestTimeAug':
                    t['transforms'] = strip(t['transforms'])
                kept.append(t)
        return kept

    steps = strip(steps)
    if from_array and steps and steps[0]['type'] == 'LoadImageFromFile':
        steps[0] = dict(type='LoadImageFromNDArray')
    return Compose(steps)


def inference_model(
    model: torch.nn.Module,
    img: Union[ImageType, Sequence[ImageType]],
    aug_test: bool = False
) -> Union[SegDataSample, List[SegDataSample]]:
    """Segment one image or a list of images.

    Args:
        model: a model from :func:`init_model`.
        img: image path(s) or BGR ``H x W x 3`` uint8 array(s).
        aug_test: multi-scale (the config's ratios) + flip test.

    Returns:
        SegDataSample(s) with ``seg_logits`` and ``pred_sem_seg`` at the
        original image size (a list when a list was given).
    """
    images = list(img) if isinstance(img, (list, tuple)) else [img]
    if not images:
        raise ValueError('inference_model got an empty list of images')
    init_default_scope(model.cfg.get('default_scope', 'mmseg'))
    pipelines = {}  # by whether the image is an array or a path

    results = []
    for image in images:
        from_array = isinstance(image, np.ndarray)
        if from_array not in pipelines:
            pipelines[from_array] = _test_pipeline(model.cfg, aug_test,
                                                   from_array)
        if from_array:
            data = dict(img=image)
        else:
            path = str(image)
            if not Path(path).is_file():
                raise FileNotFoundError(f'image not found: {path}')
            data = dict(img_path=path)
        batch = pseudo_collate([pipelines[from_array](data)])
        with torch.no_grad():
            if aug_test:
                results.extend(_tta_predict(model, batch))
            else:
                results.extend(model.test_step(batch))
    return results if isinstance(img, (list, tuple)) else results[0]


def _tta_predict(model: torch.nn.Module,
                 batch: dict) -> List[SegDataSample]:
    from mmseg.models.segmentors import SegTTAModel
    tta = SegTTAModel(module=model)
    return tta.test_step(batch)
