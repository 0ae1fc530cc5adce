"""The configs under senformer_configs/ carry every hyper-parameter of the 30
published (MMSegmentation 0.x) configs, translated to the 1.x schema.

``spec/seed_configs.json`` holds the published values in the 0.x schema;
:func:`expected_1x` maps one entry to the 1.x config paths and values it must
produce, and the tests compare those with the loaded config. No model is
built here (see tests/test_models/test_model_zoo.py for that).
"""
import inspect
import json
import os.path as osp
import shlex

import pytest
from mmengine.config import Config, DictAction

from tests.conftest import REPO_ROOT, SPEC

TOY = 'senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py'

# the published multi-scale test (0.x --aug-test) ratios of img_scale
AUG_TEST_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def _seed_configs() -> dict:
    with open(osp.join(SPEC, 'seed_configs.json')) as f:
        return json.load(f)


SEED = _seed_configs()
SEED_NAMES = sorted(SEED)


def plain(value):
    """Dicts, lists and numbers only (ConfigDict -> dict, tuple -> list), so
    that config values compare equal to JSON values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def lookup(cfg, path: str):
    """``cfg`` value at a dotted path; KeyError naming the missing part."""
    node = cfg.to_dict() if isinstance(cfg, Config) else cfg
    parts = path.split('.')
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"config has no '{'.'.join(parts[:i + 1])}' "
                           f"(looking up '{path}')")
        node = node[part]
    return plain(node)


# ----------------------------------------------------------------------
# 0.x -> 1.x mapping


def _load_annotations(step: dict) -> dict:
    out = dict(type='LoadAnnotations')
    if 'reduce_zero_label' in step:
        out['reduce_zero_label'] = step['reduce_zero_label']
    return out


def _map_train_pipeline(steps: list, preprocessor: dict) -> list:
    """The 1.x train pipeline of a 0.x one. Normalize and Pad move to the
    model's data preprocessor (collected in ``preprocessor``);
    DefaultFormatBundle + Collect become PackSegInputs."""
    out = []
    for step in steps:
        kind = step['type']
        if kind in ('LoadImageFromFile', 'PhotoMetricDistortion'):
            out.append(dict(type=kind))
        elif kind == 'LoadAnnotations':
            out.append(_load_annotations(step))
        elif kind == 'Resize':
            # img_scale + ratio_range: one random scale per image
            assert 'ratio_range' in step, step
            out.append(
                dict(
                    type='RandomResize',
                    scale=step['img_scale'],
                    ratio_range=step['ratio_range'],
                    keep_ratio=step.get('keep_ratio', True)))
        elif kind == 'RandomCrop':
            out.append(
                dict(
                    type='RandomCrop',
                    crop_size=step['crop_size'],
                    cat_max_ratio=step['cat_max_ratio']))
        elif kind == 'RandomFlip':
            out.append(dict(type='RandomFlip', prob=step['prob']))
        elif kind == 'Normalize':
            preprocessor.update(
                mean=step['mean'],
                std=step['std'],
                bgr_to_rgb=step['to_rgb'])
        elif kind == 'Pad':
            preprocessor.update(
                size=step['size'],
                pad_val=step['pad_val'],
                seg_pad_val=step['seg_pad_val'])
        elif kind == 'DefaultFormatBundle':
            continue
        elif kind == 'Collect':
            assert step['keys'] == ['img', 'gt_semantic_seg'], step
            out.append(dict(type='PackSegInputs'))
        else:
            raise KeyError(f'no 1.x mapping for train step {kind!r}')
    return out


def _map_test_pipeline(steps: list, load_annotations: dict,
                       preprocessor: dict) -> tuple:
    """The 1.x test pipeline and aug-test Resize scales of a 0.x one. The
    1.x pipeline loads the labels after resizing (evaluation at the original
    size), with the train pipeline's reduce_zero_label."""
    out, aug_scales = [], None
    for step in steps:
        if step['type'] == 'LoadImageFromFile':
            out.append(dict(type='LoadImageFromFile'))
            continue
        if step['type'] != 'MultiScaleFlipAug':
            raise KeyError(f"no 1.x mapping for test step {step['type']!r}")
        assert step['flip'] is False, 'single-scale test without flip'
        w, h = step['img_scale']
        aug_scales = [[int(w * r), int(h * r)] for r in AUG_TEST_RATIOS]
        for inner in step['transforms']:
            kind = inner['type']
            if kind == 'Resize':
                out.append(
                    dict(
                        type='Resize',
                        scale=step['img_scale'],
                        keep_ratio=inner['keep_ratio']))
            elif kind == 'Normalize':
                # the preprocessor serves training and testing alike
                assert dict(mean=inner['mean'], std=inner['std'],
                            bgr_to_rgb=inner['to_rgb']).items() <= \
                    preprocessor.items(), 'train/test Normalize differ'
            elif kind == 'RandomFlip':
                continue  # a no-op with flip=False
            elif kind == 'ImageToTensor':
                continue
            elif kind == 'Collect':
                assert inner['keys'] == ['img'], inner
                out += [load_annotations, dict(type='PackSegInputs')]
            else:
                raise KeyError(f'no 1.x mapping for test step {kind!r}')
    return out, aug_scales


def expected_1x(seed: dict) -> dict:
    """``{1.x config path: value}`` for one seed entry. Every top-level seed
    key is consumed; an unknown one raises KeyError."""
    exp = {}
    handled = set()

    def take(key):
        handled.add(key)
        return seed[key]

    for key, value in take('backbone').items():
        exp[f'model.backbone.{key}'] = value
    exp['model.pretrained'] = take('pretrained')
    exp['model.neck'] = take('neck')
    exp['model.decode_head'] = dict(
        take('decode_head'),
        type='SenFormer' if take('weight_sharing') else 'SenFormerNWS')
    # the published head averages each learner's loss over the non-ignored
    # pixels whatever its loss_decode says; ours states it
    exp['model.decode_head']['loss_decode'] = dict(
        exp['model.decode_head']['loss_decode'], avg_non_ignore=True)
    exp['model.auxiliary_head'] = take('auxiliary_head')
    assert take('aux_head_input').startswith('backbone')
    exp['model.aux_head_input'] = 'backbone'
    exp['model.test_cfg'] = take('test_cfg')

    optimizer = dict(take('optimizer'))
    exp['optim_wrapper.type'] = 'OptimWrapper'
    exp['optim_wrapper.paramwise_cfg'] = optimizer.pop('paramwise_cfg')
    for key, value in optimizer.items():
        exp[f'optim_wrapper.optimizer.{key}'] = value
    exp['optim_wrapper.clip_grad'] = take('grad_clip')

    sched = take('lr_schedule')
    max_iters = take('max_iters')
    assert (sched['policy'], sched['warmup'], sched['by_epoch']) == \
        ('poly', 'linear', False), sched
    exp['param_scheduler'] = [
        dict(
            type='PolyLRWithWarmup',
            power=sched['power'],
            eta_min=sched['min_lr'],
            warmup_iters=sched['warmup_iters'],
            warmup_ratio=sched['warmup_ratio'],
            begin=0,
            end=max_iters,
            by_epoch=False)
    ]
    exp['auto_scale_lr'] = dict(enable=False, base_batch_size=16)
    exp['train_cfg.type'] = 'IterBasedTrainLoop'
    exp['train_cfg.max_iters'] = max_iters

    evaluation = take('eval')
    exp['train_cfg.val_interval'] = evaluation['interval']
    exp['val_evaluator'] = dict(
        type='IoUMetric', iou_metrics=[evaluation['metric']])
    exp['test_evaluator'] = exp['val_evaluator']
    exp['default_hooks.checkpoint'] = dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=take('checkpoint_interval'),
        save_best=evaluation['save_best'],
        rule='greater')

    exp['train_dataloader.batch_size'] = take('samples_per_gpu')
    workers = take('workers_per_gpu')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        exp[f'{loader}.num_workers'] = workers
    exp['val_dataloader.batch_size'] = 1
    exp['test_dataloader.batch_size'] = 1
    exp['find_unused_parameters'] = take('find_unused_parameters')

    data = take('dataset')
    preprocessor = dict(type='SegDataPreProcessor')
    train_pipeline = _map_train_pipeline(data['train_pipeline'],
                                         preprocessor)
    load_annotations = next(
        s for s in train_pipeline if s['type'] == 'LoadAnnotations')
    test_pipeline, aug_scales = _map_test_pipeline(
        data['test_pipeline'], load_annotations, preprocessor)
    exp['model.data_preprocessor'] = preprocessor
    for loader, split, pipeline in (
            ('train_dataloader', 'train', train_pipeline),
            ('val_dataloader', 'val', test_pipeline),
            ('test_dataloader', 'val', test_pipeline)):
        exp[f'{loader}.dataset.type'] = data['type']
        exp[f'{loader}.dataset.data_root'] = data['data_root']
        exp[f'{loader}.dataset.data_prefix'] = dict(
            img_path=data[split]['img_dir'],
            seg_map_path=data[split]['ann_dir'])
        exp[f'{loader}.dataset.ann_file'] = data[split]['split'] or ''
        exp[f'{loader}.dataset.pipeline'] = pipeline
    exp['tta_aug_scales'] = aug_scales

    unknown = set(seed) - handled
    if unknown:
        raise KeyError(f'seed keys without a 1.x mapping: {sorted(unknown)}')
    return exp


def _load(config: str) -> Config:
    return Config.fromfile(osp.join(REPO_ROOT, config))


def _actual(cfg: Config, path: str):
    """Config value at ``path``, with the 1.x defaults the seed relies on:
    a dataset without ``ann_file`` has none (''); ``tta_aug_scales`` are the
    Resize scales of the TTA pipeline."""
    if path.endswith('.ann_file'):
        dataset = lookup(cfg, path.rsplit('.', 1)[0])
        return dataset.get('ann_file', '')
    if path == 'tta_aug_scales':
        tta = lookup(cfg, 'tta_pipeline')
        aug = next(s for s in tta if s['type'] == 'TestTimeAug')
        return [t['scale'] for t in aug['transforms'][0]
                if t['type'] == 'Resize']
    return lookup(cfg, path)


# ----------------------------------------------------------------------
# the 30 published configs


@pytest.mark.parametrize('config', SEED_NAMES)
def test_config_carries_seed_values(config):
    expected = expected_1x(SEED[config])
    cfg = _load(config)
    wrong = []
    for path, value in expected.items():
        got = _actual(cfg, path)
        if got != plain(value):
            wrong.append(f'{path}: config {got!r} != seed {value!r}')
    assert not wrong, f'{config}:\n' + '\n'.join(wrong)


def _dataset_reduce_zero_label(dataset_cfg: dict) -> bool:
    """reduce_zero_label a dataset config ends up with (its own value, or
    its class's default)."""
    if 'reduce_zero_label' in dataset_cfg:
        return dataset_cfg['reduce_zero_label']
    import mmseg.datasets  # noqa: F401  (registers the dataset classes)
    from mmseg.registry import DATASETS
    for cls in DATASETS.get(dataset_cfg['type']).__mro__:
        param = inspect.signature(cls.__init__).parameters.get(
            'reduce_zero_label')
        if param is not None:
            return param.default
    raise AssertionError(f"{dataset_cfg['type']} has no reduce_zero_label")


@pytest.mark.parametrize('config', SEED_NAMES)
def test_dataset_reduce_zero_label_matches_seed(config):
    """The 0.x LoadAnnotations flag also holds for the 1.x dataset (whose
    flag LoadAnnotations must agree with), for training and evaluation."""
    load = next(s for s in SEED[config]['dataset']['train_pipeline']
                if s['type'] == 'LoadAnnotations')
    want = load.get('reduce_zero_label', False)
    cfg = _load(config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        got = _dataset_reduce_zero_label(plain(cfg[loader].dataset))
        assert got == want, (config, loader)


@pytest.mark.parametrize('config', SEED_NAMES)
def test_crop_and_preprocessor_size_agree(config):
    cfg = _load(config)
    crop = next(s['crop_size'] for s in cfg.train_dataloader.dataset.pipeline
                if s['type'] == 'RandomCrop')
    assert tuple(cfg.model.data_preprocessor.size) == tuple(crop)


def test_every_seed_config_exists_and_no_extra_ones():
    import glob
    ours = {
        osp.relpath(p, REPO_ROOT)
        for p in glob.glob(
            osp.join(REPO_ROOT, 'senformer_configs/senformer/*/*.py'))
    }
    ours.discard(TOY)
    assert ours == set(SEED)


def test_mapping_rejects_unknown_seed_keys():
    """The mapping fails loudly rather than silently ignoring a value."""
    entry = dict(SEED[sorted(SEED)[0]], new_setting=1)
    with pytest.raises(KeyError, match='new_setting'):
        expected_1x(entry)
    entry = json.loads(json.dumps(SEED[sorted(SEED)[0]]))
    entry['dataset']['train_pipeline'].append(dict(type='RandomRotate'))
    with pytest.raises(KeyError, match='RandomRotate'):
        expected_1x(entry)


def test_a_changed_value_is_caught():
    """The comparison sees a single changed number deep in a section."""
    name = 'senformer_configs/senformer/ade20k/' \
        'senformer_fpnt_r50_512x512_160k_ade20k.py'
    cfg = _load(name)
    cfg.merge_from_dict({'model.neck.window_size': 8})
    expected = expected_1x(SEED[name])
    assert _actual(cfg, 'model.neck') != plain(expected['model.neck'])


# ----------------------------------------------------------------------
# every type the configs name is registered in the mmseg scope


def _registry_of(key):
    """The registry a ``type`` belongs to, from the key its dict (or the
    list holding it) hangs under; model parts by default."""
    from mmseg import registry as R
    table = {
        'pipeline': R.TRANSFORMS, 'tta_pipeline': R.TRANSFORMS,
        'train_pipeline': R.TRANSFORMS, 'test_pipeline': R.TRANSFORMS,
        'transforms': R.TRANSFORMS, 'dataset': R.DATASETS,
        'sampler': R.DATA_SAMPLERS, 'val_evaluator': R.METRICS,
        'test_evaluator': R.METRICS, 'visualizer': R.VISUALIZERS,
        'vis_backends': R.VISBACKENDS, 'optim_wrapper': R.OPTIM_WRAPPERS,
        'optimizer': R.OPTIMIZERS, 'param_scheduler': R.PARAM_SCHEDULERS,
        'train_cfg': R.LOOPS, 'val_cfg': R.LOOPS, 'test_cfg': R.LOOPS,
        'default_hooks': R.HOOKS, 'custom_hooks': R.HOOKS,
    }
    return table.get(key, R.MODELS)


def _typed(node, key, found):
    """Adds ``(key, type)`` for every dict with a ``type`` in ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            found.add((key, node['type']))
        for k, v in node.items():
            if k == 'default_hooks':
                for hook in v.values():
                    _typed(hook, k, found)
            else:
                _typed(v, k, found)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _typed(v, key, found)


@pytest.mark.parametrize(
    'config', [n for n in SEED_NAMES if isinstance(n, str)] + [TOY])
def test_every_type_is_registered(config):
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    from mmengine.registry import DefaultScope
    found = set()
    _typed(_load(config).to_dict(), None, found)
    with DefaultScope.overwrite_default_scope('mmseg'):
        missing = sorted(f'{key}: {kind}' for key, kind in found
                         if _registry_of(key).get(kind) is None)
    assert not missing, f'{config} names unregistered types: {missing}'


# ----------------------------------------------------------------------
# the CPU toy config


def test_toy_config_is_consistent():
    cfg = _load(TOY)
    classes = cfg.train_dataloader.dataset.metainfo.classes
    assert len(classes) == 5
    assert cfg.model.decode_head.num_classes == len(classes)
    assert cfg.model.auxiliary_head.num_classes == len(classes)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.type == 'BaseSegDataset'
        assert dataset.data_root == 'data/toy'
        assert tuple(dataset.metainfo.classes) == tuple(classes)
        assert dataset.reduce_zero_label is True
    assert cfg.model.backbone.depth == 18
    assert cfg.model.pretrained is None
    # plain BN: the toy runs on one CPU process
    for section in ('backbone', 'decode_head', 'auxiliary_head'):
        assert cfg.model[section].norm_cfg.type == 'BN', section
    crop = next(s['crop_size'] for s in cfg.train_dataloader.dataset.pipeline
                if s['type'] == 'RandomCrop')
    assert tuple(cfg.model.data_preprocessor.size) == tuple(crop) == (128,
                                                                      128)


def _documented_cfg_options(path: str) -> dict:
    """The ``--cfg-options`` of the comment at the top of ``path``, parsed
    as tools/train.py parses them."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line[1:].strip().rstrip('\\'))
    words = shlex.split(' '.join(lines))
    start = words.index('--cfg-options') + 1
    options = []
    for word in words[start:]:
        if '=' not in word:
            break
        options.append(word)
    assert options, f'no --cfg-options documented at the top of {path}'
    parser = __import__('argparse').ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options'] + options).cfg_options


def test_toy_documented_overrides_give_a_working_dataset(tmp_path):
    """The header's --cfg-options retarget the toy config to another folder
    with other classes, and the datasets then build and load."""
    import sys
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'misc'))
    try:
        from generate_toy_dataset import generate
    finally:
        sys.path.pop(0)
    options = _documented_cfg_options(osp.join(REPO_ROOT, TOY))
    cfg = _load(TOY)
    cfg.merge_from_dict(options)
    classes = cfg.train_dataloader.dataset.metainfo.classes
    assert cfg.model.decode_head.num_classes == len(classes) != 5
    assert cfg.model.auxiliary_head.num_classes == len(classes)

    # the documented folder, replaced by a tiny generated one
    generate(str(tmp_path), num_train=2, num_val=1, size=32, seed=0)
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules()
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        section = cfg[loader].dataset
        assert section.data_root == options[f'{loader}.dataset.data_root']
        assert list(section.metainfo.classes) == list(classes)
        section.data_root = str(tmp_path)
        dataset = DATASETS.build(section)
        assert len(dataset) >= 1
        assert len(dataset.metainfo['palette']) == len(classes)
