"""Datasets: the four published layouts, label conventions, bad input.

Each test writes a tiny fake dataset in the exact directory layout of the
real one (a few images of a few dozen pixels).
"""
import copy
import glob
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmseg.datasets import (ADE20KDataset, BaseSegDataset, CityscapesDataset,
                            COCOStuffDataset, DatasetError,
                            DatasetNotFoundError, PascalContextDataset,
                            PascalContextDataset59)
from mmseg.registry import DATASETS
from mmseg.utils import register_all_modules

CONFIG_ROOT = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'senformer_configs',
    'senformer')
H, W = 24, 32


@pytest.fixture(autouse=True)
def _scope():
    register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')


def _image(path, seed):
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.RandomState(seed)
    ext = osp.splitext(path)[1]
    assert cv2.imwrite(path, rng.randint(0, 255, (H, W, 3), dtype=np.uint8))
    return ext


def _label(path, values, seed):
    """A label map using every value of ``values`` (in stripes)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.RandomState(seed)
    label = np.asarray(values, dtype=np.uint8)[rng.randint(
        0, len(values), (H, W))]
    label[0, :len(values)] = values  # every value present
    assert cv2.imwrite(path, label)
    return label


def make_ade(root, n=3):
    """ADEChallengeData2016 layout; labels 0..150 (0 = other)."""
    labels = {}
    for split in ('training', 'validation'):
        for i in range(n):
            stem = f'ADE_{split[:5]}_{i:08d}'
            _image(osp.join(root, 'images', split, stem + '.jpg'), i)
            labels[split, i] = _label(
                osp.join(root, 'annotations', split, stem + '.png'),
                [0, 1, 2, 150], i)
    return labels


def make_coco10k(root, n=3):
    """coco_stuff10k layout after the converter; labels 0..171."""
    labels = {}
    for split in ('train2014', 'test2014'):
        for i in range(n):
            stem = f'COCO_{split}_{i:012d}'
            _image(osp.join(root, 'images', split, stem + '.jpg'), i)
            labels[split, i] = _label(
                osp.join(root, 'annotations', split,
                         stem + '_labelTrainIds.png'), [0, 1, 90, 171], i)
    return labels


def make_pascal(root, n=4):
    """VOC2010 + SegmentationClassContext + split files; labels 0..59."""
    labels = {}
    stems = [f'2008_{i:06d}' for i in range(n)]
    for i, stem in enumerate(stems):
        _image(osp.join(root, 'JPEGImages', stem + '.jpg'), i)
        labels[stem] = _label(
            osp.join(root, 'SegmentationClassContext', stem + '.png'),
            [0, 1, 30, 59], i)
    # an extra VOC image without Context annotation, as in the real devkit
    _image(osp.join(root, 'JPEGImages', '2007_000000.jpg'), 99)
    split_dir = osp.join(root, 'ImageSets', 'SegmentationContext')
    os.makedirs(split_dir)
    with open(osp.join(split_dir, 'train.txt'), 'w') as f:
        f.write('\n'.join(stems[:2]) + '\n')
    with open(osp.join(split_dir, 'val.txt'), 'w') as f:
        f.write('\n'.join(stems[2:]) + '\n')
    return labels


def make_cityscapes(root):
    """leftImg8bit / gtFine layout with the converter's labelTrainIds."""
    labels = {}
    for split, cities in (('train', ('aachen', 'bochum')), ('val',
                                                            ('lindau', ))):
        for i, city in enumerate(cities):
            stem = f'{city}_000000_{i:06d}'
            _image(
                osp.join(root, 'leftImg8bit', split, city,
                         stem + '_leftImg8bit.png'), i)
            gt = osp.join(root, 'gtFine', split, city, stem + '_gtFine_')
            labels[split, city] = _label(gt + 'labelTrainIds.png',
                                         [0, 5, 18, 255], i)
            # the other official files must be left alone
            _label(gt + 'labelIds.png', [7, 8, 33], i)
            _label(gt + 'instanceIds.png', [7, 8, 33], i)
            with open(gt + 'polygons.json', 'w') as f:
                f.write('{}')
    return labels


def reduced(label):
    out = label.astype(np.int64) - 1
    out[label == 0] = 255
    out[label == 255] = 255
    return out


# ----------------------------------------------------------------------
# the dataset classes on their layouts


def test_ade20k_layout_and_reduce_zero_label(tmp_path):
    labels = make_ade(str(tmp_path))
    ds = ADE20KDataset(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    assert len(ds) == 3
    assert len(ds.metainfo['classes']) == 150
    assert len(ds.metainfo['palette']) == 150
    assert ds.metainfo['reduce_zero_label'] is True
    item = ds[1]
    assert item['inputs'].shape == (3, H, W)
    gt = item['data_samples'].gt_sem_seg.data
    assert gt.shape == (1, H, W) and gt.dtype.is_floating_point is False
    np.testing.assert_array_equal(gt[0].numpy(),
                                  reduced(labels['validation', 1]))
    assert set(np.unique(gt.numpy())) == {0, 1, 149, 255}


def test_coco_stuff_layout(tmp_path):
    labels = make_coco10k(str(tmp_path))
    ds = COCOStuffDataset(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='images/test2014', seg_map_path='annotations/test2014'),
        reduce_zero_label=True,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    assert len(ds) == 3 and len(ds.metainfo['classes']) == 171
    gt = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(gt, reduced(labels['test2014', 0]))
    assert gt.max() == 255 and gt[gt != 255].max() == 170


def test_pascal_context_59_and_60(tmp_path):
    labels = make_pascal(str(tmp_path))
    common = dict(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    ds59 = PascalContextDataset59(**common)
    ds60 = PascalContextDataset(**common)
    assert len(ds59) == len(ds60) == 2
    assert len(ds59.metainfo['classes']) == 59
    assert ds60.metainfo['classes'][0] == 'background'
    assert ds59.metainfo['classes'] == ds60.metainfo['classes'][1:]
    raw = labels['2008_000002']
    np.testing.assert_array_equal(
        ds59[0]['data_samples'].gt_sem_seg.data[0].numpy(), reduced(raw))
    np.testing.assert_array_equal(
        ds60[0]['data_samples'].gt_sem_seg.data[0].numpy(), raw)


def test_cityscapes_layout(tmp_path):
    labels = make_cityscapes(str(tmp_path))
    ds = CityscapesDataset(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    assert len(ds) == 2
    first = ds.get_data_info(0)
    assert first['img_path'].endswith('aachen/aachen_000000_000000'
                                      '_leftImg8bit.png')
    assert first['seg_map_path'].endswith('aachen/aachen_000000_000000'
                                          '_gtFine_labelTrainIds.png')
    gt = ds[1]['data_samples'].gt_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(gt, labels['train', 'bochum'])


def test_any_folder_with_a_few_config_lines(tmp_path):
    root = str(tmp_path)
    for i in range(2):
        _image(osp.join(root, 'img', f'a{i}.jpg'), i)
        _label(osp.join(root, 'ann', f'a{i}.png'), [0, 1, 255], i)
    ds = DATASETS.build(
        dict(
            type='BaseSegDataset',
            data_root=root,
            data_prefix=dict(img_path='img', seg_map_path='ann'),
            metainfo=dict(classes=('sky', 'tree')),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations'),
                      dict(type='PackSegInputs')]))
    assert len(ds) == 2
    assert len(ds.metainfo['palette']) == 2  # made up, fixed colours
    assert ds.metainfo['palette'] == BaseSegDataset(
        data_root=root, data_prefix=dict(img_path='img', seg_map_path='ann'),
        metainfo=dict(classes=('sky', 'tree'))).metainfo['palette']
    assert set(np.unique(ds[0]['data_samples'].gt_sem_seg.data)) <= {
        0, 1, 255}


def test_class_subset_remaps_labels_and_palette(tmp_path):
    labels = make_ade(str(tmp_path))
    classes = ADE20KDataset.METAINFO['classes']
    subset = (classes[149], classes[0])  # out of order on purpose
    ds = ADE20KDataset(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        metainfo=dict(classes=subset),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    assert ds.label_map[149] == 0 and ds.label_map[0] == 1
    assert ds.label_map[1] == 255
    palette = ADE20KDataset.METAINFO['palette']
    assert ds.metainfo['palette'] == [palette[149], palette[0]]
    gt = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    raw = labels['training', 0]
    expected = np.full(raw.shape, 255)
    expected[raw == 150] = 0  # class 149 after reduce_zero_label
    expected[raw == 1] = 1
    np.testing.assert_array_equal(gt, expected)

    with pytest.raises(DatasetError, match='not classes of the dataset'):
        ADE20KDataset(metainfo=dict(classes=('wall', 'dragon')),
                      lazy_init=True)


def test_ignore_255_is_kept(tmp_path):
    make_cityscapes(str(tmp_path))
    ds = CityscapesDataset(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    assert 255 in np.unique(ds[0]['gt_seg_map'])


def test_lazy_init_reads_nothing_until_used(tmp_path):
    ds = ADE20KDataset(
        data_root=str(tmp_path / 'not_yet'),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        lazy_init=True)
    assert len(ds.metainfo['classes']) == 150
    make_ade(str(tmp_path / 'not_yet'))
    assert len(ds) == 3


def test_test_mode_without_labels(tmp_path):
    make_ade(str(tmp_path))
    ds = ADE20KDataset(
        data_root=str(tmp_path),
        data_prefix=dict(img_path='images/validation'),
        test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackSegInputs')])
    assert ds.get_data_info(0)['seg_map_path'] is None
    assert 'gt_sem_seg' not in ds[0]['data_samples']


# ----------------------------------------------------------------------
# bad input


def _ade(root, **kwargs):
    args = dict(
        data_root=root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    args.update(kwargs)
    return ADE20KDataset(**args)


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match='data_root .*nowhere'):
        _ade(str(tmp_path / 'nowhere'))
    make_ade(str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match='seg_map_path.*annots'):
        _ade(
            str(tmp_path),
            data_prefix=dict(img_path='images/training',
                             seg_map_path='annots/training'))
    with pytest.raises(DatasetNotFoundError, match='split file.*nope.txt'):
        _ade(str(tmp_path), ann_file='nope.txt')
    # a split file naming an image that is not there
    (tmp_path / 'split.txt').write_text('ADE_train_00000000\nADE_missing\n')
    with pytest.raises(DatasetNotFoundError,
                       match='ADE_missing.jpg.* line 2'):
        _ade(str(tmp_path), ann_file='split.txt')
    # FileNotFoundError users can catch it as such
    with pytest.raises(FileNotFoundError):
        _ade(str(tmp_path / 'nowhere'))


def test_empty_dataset(tmp_path):
    os.makedirs(tmp_path / 'images' / 'training')
    os.makedirs(tmp_path / 'annotations' / 'training')
    with pytest.raises(DatasetError, match="no images ending with '.jpg'"):
        _ade(str(tmp_path))
    (tmp_path / 'empty.txt').write_text('\n')
    with pytest.raises(DatasetError, match='lists no images'):
        _ade(str(tmp_path), ann_file='empty.txt')


def test_unpaired_files_name_the_first_one(tmp_path):
    make_ade(str(tmp_path))
    os.remove(tmp_path / 'annotations' / 'training' /
              'ADE_train_00000001.png')
    with pytest.raises(DatasetError,
                       match=r'ADE_train_00000001.jpg.* has no label map'):
        _ade(str(tmp_path))
    _image(str(tmp_path / 'annotations' / 'training' /
               'ADE_train_00000001.png'), 0)
    os.remove(tmp_path / 'images' / 'training' / 'ADE_train_00000002.jpg')
    with pytest.raises(DatasetError,
                       match=r'ADE_train_00000002.png.* has no image'):
        _ade(str(tmp_path))


def test_corrupt_files_are_named(tmp_path):
    make_ade(str(tmp_path))
    bad_img = tmp_path / 'images' / 'training' / 'ADE_train_00000000.jpg'
    bad_img.write_bytes(b'not a jpeg at all')
    ds = _ade(str(tmp_path))
    with pytest.raises(DatasetError, match='ADE_train_00000000.jpg.*corrupt'):
        ds[0]
    bad_label = tmp_path / 'annotations' / 'training' / \
        'ADE_train_00000001.png'
    bad_label.write_bytes(b'\x89PNG broken')
    with pytest.raises(DatasetError, match='ADE_train_00000001.png.*corrupt'):
        ds[1]


def test_size_mismatch_names_both_sizes(tmp_path):
    make_ade(str(tmp_path))
    path = str(tmp_path / 'annotations' / 'training' /
               'ADE_train_00000002.png')
    cv2.imwrite(path, np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError,
                       match=f'ADE_train_00000002.png.* is {H + 1}x{W} .*'
                       f'ADE_train_00000002.jpg.* is {H}x{W}'):
        _ade(str(tmp_path))[2]


def test_label_values_out_of_range(tmp_path):
    make_cityscapes(str(tmp_path))
    path = glob.glob(str(tmp_path / 'gtFine' / 'val' / '*' /
                         '*labelTrainIds.png'))[0]
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    label[3, 3] = 33  # a label id, not a train id
    cv2.imwrite(path, label)
    ds = CityscapesDataset(
        data_root=str(tmp_path),
        data_prefix=dict(
            img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    with pytest.raises(DatasetError,
                       match=r'labelTrainIds.png.* value\(s\) \[33\] outside '
                       r'the 19 classes'):
        ds[0]


def test_reduce_zero_label_disagreement(tmp_path):
    make_ade(str(tmp_path))
    ds = _ade(
        str(tmp_path),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=False)])
    with pytest.raises(DatasetError, match='disagrees with the dataset'):
        ds[0]


def test_a_palette_that_does_not_fit_the_classes_is_replaced(capsys):
    """Overriding a config's classes without its palette: generated colours,
    one per class, and a log line saying so."""
    from mmengine.logging import MMLogger
    MMLogger.get_instance('test_palette', log_level='INFO')
    ds = BaseSegDataset(
        metainfo=dict(classes=('a', 'b', 'c'), palette=[[0, 0, 0]] * 5),
        lazy_init=True)
    assert ds.metainfo['palette'] == \
        BaseSegDataset._generated_palette(3)
    assert len({tuple(c) for c in ds.metainfo['palette']}) == 3
    logged = capsys.readouterr()
    assert 'metainfo palette has 5 colours for 3 classes; using generated ' \
        'colours instead' in logged.out + logged.err
    # a palette that fits is kept
    fits = BaseSegDataset(
        metainfo=dict(classes=('a', ), palette=[[1, 2, 3]]), lazy_init=True)
    assert fits.metainfo['palette'] == [[1, 2, 3]]


# ----------------------------------------------------------------------
# the published configs' dataset sections (only data_root changed)

PUBLISHED = [
    ('ade20k', 'senformer_fpnt_r50_512x512_160k_ade20k.py', make_ade,
     ADE20KDataset, 150),
    ('coco-stuff10k', 'senformer_fpnt_r50_512x512_80k_coco.py', make_coco10k,
     COCOStuffDataset, 171),
    ('pascal', 'senformer_fpnt_r50_480x480_40k_pascal.py', make_pascal,
     PascalContextDataset59, 59),
    ('cityscapes', 'senformer_fpnt_r50_512x1024_100k_cityscapes.py',
     make_cityscapes, CityscapesDataset, 19),
]


def _published(folder, name):
    path = osp.join(CONFIG_ROOT, folder, name)
    if not osp.isfile(path):
        pytest.skip(f'published config {path} not written yet')
    return Config.fromfile(path)


@pytest.mark.parametrize('folder,name,make,dataset_type,num_classes',
                         PUBLISHED)
def test_published_dataset_sections(tmp_path, folder, name, make,
                                    dataset_type, num_classes):
    cfg = _published(folder, name)
    make(str(tmp_path))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        section = copy.deepcopy(cfg[key].dataset)
        section.data_root = str(tmp_path)
        np.random.seed(0)
        ds = DATASETS.build(section)
        assert type(ds) is dataset_type, key
        assert len(ds.metainfo['classes']) == num_classes
        assert len(ds) >= 1, key
        item = ds[0]
        inputs = item['inputs']
        gt = item['data_samples'].gt_sem_seg.data
        assert inputs.dtype.is_floating_point is False and inputs.ndim == 3
        assert gt.ndim == 3 and gt.shape[0] == 1
        assert gt.dtype.is_floating_point is False
        values = set(np.unique(gt.numpy()).tolist())
        assert values <= set(range(num_classes)) | {255}, (key, values)
        if key == 'train_dataloader':
            assert gt.shape[1:] == inputs.shape[1:]
        else:
            # evaluation labels stay at the original size, exactly remapped
            meta = item['data_samples'].metainfo
            assert gt.shape[1:] == tuple(meta['ori_shape']) == (H, W)
            raw = cv2.imread(meta['seg_map_path'], cv2.IMREAD_UNCHANGED)
            expected = reduced(raw) if ds.reduce_zero_label else raw
            np.testing.assert_array_equal(gt[0].numpy(), expected)


def test_pipeline_outside_any_scope_uses_our_transforms(tmp_path):
    """Built directly, with no default scope, the dataset must still get
    mmseg's LoadAnnotations (mmcv's has the same name)."""
    from mmengine.registry import DefaultScope
    make_ade(str(tmp_path))
    saved = DefaultScope._instance_dict
    DefaultScope._instance_dict = {}
    try:
        ds = _ade(str(tmp_path))
    finally:
        DefaultScope._instance_dict = saved
    assert type(ds.pipeline.transforms[1]).__module__.startswith('mmseg.')
    assert ds[0]['gt_seg_map'].max() == 255


@pytest.mark.parametrize('folder,name,make,dataset_type,num_classes',
                         PUBLISHED)
def test_published_tta_pipelines(tmp_path, folder, name, make, dataset_type,
                                 num_classes):
    """The aug-test pipeline: 6 scales x 2 flips, labels at original size."""
    cfg = _published(folder, name)
    if 'tta_pipeline' not in cfg:
        pytest.skip(f'{name} has no tta_pipeline')
    make(str(tmp_path))
    section = copy.deepcopy(cfg.test_dataloader.dataset)
    section.data_root = str(tmp_path)
    section.pipeline = cfg.tta_pipeline
    item = DATASETS.build(section)[0]
    assert len(item['inputs']) == len(item['data_samples']) == 12
    assert sorted(s.metainfo['flip'] for s in item['data_samples']) == \
        [False] * 6 + [True] * 6
    for sample in item['data_samples']:
        assert sample.gt_sem_seg.data.shape[1:] == (H, W)
