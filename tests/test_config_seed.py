"""Every hyper-parameter of the 30 published configs is carried by ours.

The published configs are MMSegmentation 0.x; ours use mmengine's schema.
``_expected`` maps each published value to where it lives now.
"""
import json
import os.path as osp

import pytest
from mmengine.config import Config

from tests.conftest import REPO_ROOT, SPEC, require_spec


def _seed():
    path = osp.join(SPEC, 'seed_configs.json')
    if not osp.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


SEED = _seed()


def _normalise(value):
    """Lists and tuples compare equal; ConfigDicts become dicts."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _transform(pipeline, name):
    found = [t for t in pipeline if t['type'] == name]
    assert found, f'{name} missing from {[t["type"] for t in pipeline]}'
    return found[0]


@pytest.fixture(params=sorted(SEED), ids=lambda p: osp.basename(p)[:-3])
def pair(request):
    require_spec()
    return SEED[request.param], Config.fromfile(
        osp.join(REPO_ROOT, request.param))


def test_model(pair):
    seed, cfg = pair
    model = cfg.model
    for section in ('backbone', 'neck', 'auxiliary_head'):
        ours = _normalise(model[section].to_dict())
        for key, value in seed[section].items():
            assert ours.get(key, None if value is None else
                            KeyError) == _normalise(value), (section, key)
    head = _normalise(model.decode_head.to_dict())
    assert head['type'] == ('SenFormer'
                            if seed['weight_sharing'] else 'SenFormerNWS')
    for key, value in seed['decode_head'].items():
        assert head[key] == _normalise(value), ('decode_head', key)
    assert model.pretrained == seed['pretrained']
    assert model.aux_head_input == 'backbone'
    assert _normalise(model.test_cfg.to_dict()) == seed['test_cfg']


def test_optimizer_and_schedule(pair):
    seed, cfg = pair
    wrapper = cfg.optim_wrapper
    optimizer = seed['optimizer']
    assert wrapper.optimizer.type == optimizer['type']
    assert wrapper.optimizer.lr == optimizer['lr']
    assert wrapper.optimizer.weight_decay == optimizer['weight_decay']
    assert _normalise(wrapper.optimizer.betas) == optimizer['betas']
    assert _normalise(wrapper.paramwise_cfg.custom_keys.to_dict()) == \
        optimizer['paramwise_cfg']['custom_keys']
    assert _normalise(wrapper.clip_grad.to_dict()) == seed['grad_clip']

    schedule = seed['lr_schedule']
    assert (schedule['policy'], schedule['warmup'],
            schedule['by_epoch']) == ('poly', 'linear', False)
    warmup, poly = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and not warmup.by_epoch
    assert warmup.start_factor == schedule['warmup_ratio']
    assert (warmup.begin, warmup.end) == (0, schedule['warmup_iters'])
    assert poly.type == 'PolyLR' and not poly.by_epoch
    assert poly.power == schedule['power']
    assert poly.eta_min == schedule['min_lr']
    assert poly.end == seed['max_iters']

    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == seed['max_iters']
    assert cfg.train_cfg.val_interval == seed['eval']['interval']
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.interval == seed['checkpoint_interval']
    assert checkpoint.save_best == seed['eval']['save_best']
    assert not checkpoint.by_epoch
    assert cfg.val_evaluator.iou_metrics == [seed['eval']['metric']]
    assert cfg.find_unused_parameters == seed['find_unused_parameters']


def test_data(pair):
    seed, cfg = pair
    data = seed['dataset']
    assert cfg.train_dataloader.batch_size == seed['samples_per_gpu']
    assert cfg.train_dataloader.num_workers == seed['workers_per_gpu']
    for split, loader in (('train', cfg.train_dataloader),
                          ('val', cfg.val_dataloader),
                          ('val', cfg.test_dataloader)):
        dataset = loader.dataset
        assert dataset.type == data['type']
        assert dataset.data_root == data['data_root']
        assert dataset.data_prefix.img_path == data[split]['img_dir']
        assert dataset.data_prefix.seg_map_path == data[split]['ann_dir']
        assert dataset.get('ann_file', None) == data[split]['split']

    seed_train = {t['type']: t for t in data['train_pipeline']}
    train = cfg.train_dataloader.dataset.pipeline
    assert _transform(train, 'LoadAnnotations').get(
        'reduce_zero_label', False) == seed_train['LoadAnnotations'].get(
            'reduce_zero_label', False)
    resize = _transform(train, 'RandomResize')
    assert _normalise(resize.scale) == seed_train['Resize']['img_scale']
    assert _normalise(resize.ratio_range) == \
        seed_train['Resize']['ratio_range']
    crop = _transform(train, 'RandomCrop')
    assert _normalise(crop.crop_size) == seed_train['RandomCrop']['crop_size']
    assert crop.cat_max_ratio == seed_train['RandomCrop']['cat_max_ratio']
    assert _transform(train, 'RandomFlip').prob == \
        seed_train['RandomFlip']['prob']
    _transform(train, 'PhotoMetricDistortion')

    # Normalize and Pad of the published pipeline: the data preprocessor
    preprocessor = cfg.model.data_preprocessor
    normalize, pad = seed_train['Normalize'], seed_train['Pad']
    assert _normalise(preprocessor.mean) == normalize['mean']
    assert _normalise(preprocessor.std) == normalize['std']
    assert preprocessor.bgr_to_rgb == normalize['to_rgb']
    assert _normalise(preprocessor.size) == pad['size']
    assert preprocessor.pad_val == pad['pad_val']
    assert preprocessor.seg_pad_val == pad['seg_pad_val']

    multi_scale = data['test_pipeline'][1]
    test = cfg.test_dataloader.dataset.pipeline
    test_resize = _transform(test, 'Resize')
    assert _normalise(test_resize.scale) == multi_scale['img_scale']
    assert test_resize.keep_ratio


def test_multi_scale_test_uses_ratios_of_the_test_scale(pair):
    seed, cfg = pair
    scale = seed['dataset']['test_pipeline'][1]['img_scale']
    tta = _transform(cfg.tta_pipeline, 'TestTimeAug')
    resizes = tta.transforms[0]
    ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [_normalise(r.scale) for r in resizes] == [[
        int(scale[0] * r), int(scale[1] * r)
    ] for r in ratios]
    assert [f.prob for f in tta.transforms[1]] == [0., 1.]


def test_toy_config_loads():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'senformer_configs', 'senformer', 'toy',
                 'senformer_fpnt_r18_toy.py'))
    assert cfg.model.backbone.depth == 18
    assert cfg.model.neck.out_channels == 64
    assert cfg.model.decode_head.branch_depth == 2
    assert cfg.model.decode_head.num_classes == \
        len(cfg.train_dataloader.dataset.metainfo.classes)
    assert tuple(cfg.model.data_preprocessor.size) == (128, 128)
