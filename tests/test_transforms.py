"""Transforms: the training pipeline's randomness and geometry, packing,
and the test / test-time-augmentation pipelines."""
import copy
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

from mmseg.datasets.transforms import (LoadAnnotations, PackSegInputs,
                                       PhotoMetricDistortion, RandomCrop)
from mmseg.registry import TRANSFORMS
from mmseg.utils import register_all_modules

TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]


@pytest.fixture(autouse=True)
def _scope():
    register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')


@pytest.fixture
def sample(tmp_path):
    """An image file and an ADE-style label file (values 0..150)."""
    rng = np.random.RandomState(0)
    img = rng.randint(0, 255, (40, 60, 3), dtype=np.uint8)
    label = np.repeat(np.arange(0, 150, 150 // 12)[:12], 5)[None].repeat(
        40, 0).astype(np.uint8)  # vertical stripes of 12 classes
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    cv2.imwrite(str(tmp_path / 'a_label.png'), label)
    return dict(
        img_path=str(tmp_path / 'a.png'),
        seg_map_path=str(tmp_path / 'a_label.png'),
        reduce_zero_label=True,
        seg_fields=[])


def _paired(seed_shift=0):
    """Image whose first channel encodes the label: img = 10 * label."""
    label = np.random.RandomState(seed_shift).randint(0, 20, (30, 50))
    label = label.astype(np.uint8)
    img = np.stack([label * 10, label, 255 - label], axis=-1)
    return dict(img=img, gt_seg_map=label, seg_fields=['gt_seg_map'],
                img_shape=img.shape[:2])


def test_seeded_training_pipeline_is_reproducible(sample):
    pipeline = Compose(TRAIN_PIPELINE)

    def run(seed):
        np.random.seed(seed)
        out = pipeline(copy.deepcopy(sample))
        return out['inputs'], out['data_samples'].gt_sem_seg.data

    first, again, other = run(3), run(3), run(4)
    assert torch.equal(first[0], again[0]) and torch.equal(
        first[1], again[1])
    assert not (first[0].shape == other[0].shape
                and torch.equal(first[0], other[0]))
    # packed as MMSegmentation 1.x: uint8 C x H x W and int64 1 x H x W
    assert first[0].dtype == torch.uint8 and first[0].shape[0] == 3
    assert first[1].dtype == torch.int64 and first[1].shape[0] == 1
    assert first[0].shape[1:] == first[1].shape[1:]
    assert max(first[0].shape[1:]) <= 64


def test_random_resize_scales_into_ratio_range(sample):
    resize = TRANSFORMS.build(
        dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
             keep_ratio=True))
    load = Compose(TRAIN_PIPELINE[:2])
    for seed in range(5):
        np.random.seed(seed)
        out = resize(load(copy.deepcopy(sample)))
        h, w = out['img'].shape[:2]
        assert out['gt_seg_map'].shape == (h, w)
        # 40 x 60 fitted into (2048 r, 512 r): the short side is 512 r
        assert 256 <= h <= 1024 and abs(w / h - 1.5) < 0.05


def test_crop_respects_cat_max_ratio():
    # 20 x 200: class 0 on the left 100 columns, classes 1 and 2 in
    # alternate columns on the right: half of the 20 x 20 windows are
    # balanced
    label = np.zeros((20, 200), np.uint8)
    label[:, 100::2], label[:, 101::2] = 1, 2
    img = np.zeros((20, 200, 3), np.uint8)
    crop = RandomCrop((20, 20), cat_max_ratio=0.75)
    free = RandomCrop((20, 20))

    def shares(transform, seed):
        np.random.seed(seed)
        out = transform(dict(img=img.copy(), gt_seg_map=label.copy(),
                             seg_fields=['gt_seg_map']))
        _, counts = np.unique(out['gt_seg_map'], return_counts=True)
        assert out['img'].shape[:2] == out['gt_seg_map'].shape == (20, 20)
        return counts.max() / counts.sum()

    assert all(shares(crop, s) < 0.75 for s in range(40))
    assert any(shares(free, s) >= 0.75 for s in range(40))


def test_crop_ignores_the_ignore_index():
    # class 0 and ignored pixels only: no window can have two classes, so
    # the crop re-draws 10 times; counting 255 as a class would stop early
    label = np.zeros((20, 200), np.uint8)
    label[:, 100:] = 255
    crop = RandomCrop((20, 20), cat_max_ratio=0.75)
    with mock.patch.object(
            RandomCrop, '_random_window',
            side_effect=RandomCrop._random_window, autospec=True) as draw:
        np.random.seed(0)
        crop(dict(img=np.zeros((20, 200, 3), np.uint8), gt_seg_map=label,
                  seg_fields=['gt_seg_map']))
    assert draw.call_count == 11
    assert RandomCrop((2, 2), 0.75, ignore_index=7)._balanced(
        np.array([[0, 1], [7, 7]]))
    assert not RandomCrop((2, 2), 0.75)._balanced(np.array([[0, 255],
                                                            [255, 255]]))


def test_crop_of_a_smaller_image_keeps_it_whole():
    out = RandomCrop((64, 64))(dict(img=np.zeros((30, 50, 3), np.uint8),
                                    gt_seg_map=np.zeros((30, 50), np.uint8),
                                    seg_fields=['gt_seg_map']))
    assert out['img'].shape == (30, 50, 3) and out['img_shape'] == (30, 50)


def test_flip_flips_image_and_label_together():
    flip = TRANSFORMS.build(dict(type='RandomFlip', prob=1.0))
    data = _paired()
    out = flip(copy.deepcopy(data))
    np.testing.assert_array_equal(out['img'], data['img'][:, ::-1])
    np.testing.assert_array_equal(out['gt_seg_map'],
                                  data['gt_seg_map'][:, ::-1])
    assert out['flip'] and out['flip_direction'] == 'horizontal'

    # random flips and crops never separate the image from its label
    pipeline = Compose([
        dict(type='RandomCrop', crop_size=(16, 16)),
        dict(type='RandomFlip', prob=0.5)
    ])
    flipped = []
    for seed in range(10):
        np.random.seed(seed)
        out = pipeline(_paired())
        np.testing.assert_array_equal(out['img'][..., 0],
                                      out['gt_seg_map'] * 10)
        flipped.append(out['flip'])
    assert any(flipped) and not all(flipped)


def test_pad_uses_0_for_image_and_255_for_label():
    pad = TRANSFORMS.build(dict(type='Pad', size=(40, 32)))  # (w, h)
    data = _paired()
    data['img'], data['gt_seg_map'] = data['img'][:20, :30], \
        data['gt_seg_map'][:20, :30]
    out = pad(data)
    assert out['img'].shape == (32, 40, 3)
    assert out['gt_seg_map'].shape == (32, 40)
    assert (out['img'][20:] == 0).all() and (out['img'][:, 30:] == 0).all()
    assert (out['gt_seg_map'][20:] == 255).all()
    assert (out['gt_seg_map'][:, 30:] == 255).all()
    assert out['pad_shape'][:2] == (32, 40)


def test_photometric_distortion():
    img = np.random.RandomState(0).randint(40, 200, (16, 16, 3),
                                           dtype=np.uint8)
    label = np.ones((16, 16), np.uint8)
    distort = PhotoMetricDistortion()
    outs = []
    for seed in range(6):
        np.random.seed(seed)
        out = distort(dict(img=img.copy(), gt_seg_map=label.copy()))
        assert out['img'].dtype == np.uint8 and out['img'].shape == img.shape
        np.testing.assert_array_equal(out['gt_seg_map'], label)
        outs.append(out['img'])
    assert any((o != img).any() for o in outs)
    np.random.seed(2)
    np.testing.assert_array_equal(
        distort(dict(img=img.copy()))['img'], outs[2])

    # brightness: one shift in [-32, 32] for every pixel, half the time
    shifts = set()
    for seed in range(10):
        np.random.seed(seed)
        out = distort._brightness(img.copy()).astype(int)
        delta = np.unique(out - img.astype(int))
        assert len(delta) == 1 and abs(delta[0]) <= 32
        shifts.add(int(delta[0]))
    assert 0 in shifts and len(shifts) > 1
    # contrast: a factor in [0.5, 1.5]
    np.random.seed(1)
    ratio = distort._contrast(img.copy()).astype(float) / img
    assert ratio.min() >= 0.5 - 0.02 and ratio.max() <= 1.5 + 0.02

    with pytest.raises(ValueError, match='BGR uint8'):
        distort(dict(img=img.astype(np.float32)))


def test_pack_seg_inputs():
    data = _paired()
    data.update(img_path='x.jpg', seg_map_path='x.png', ori_shape=(30, 50),
                scale_factor=(1.0, 1.0), flip=False, flip_direction=None,
                reduce_zero_label=False, unrelated='dropped')
    packed = PackSegInputs()(data)
    assert packed['inputs'].shape == (3, 30, 50)
    assert packed['inputs'].dtype == torch.uint8
    torch.testing.assert_close(packed['inputs'][0],
                               torch.from_numpy(data['img'][..., 0]))
    gt = packed['data_samples'].gt_sem_seg.data
    assert gt.shape == (1, 30, 50) and gt.dtype == torch.int64
    meta = packed['data_samples'].metainfo
    assert meta['img_path'] == 'x.jpg' and meta['ori_shape'] == (30, 50)
    assert 'unrelated' not in meta


def test_test_pipeline_keeps_ratio_and_original_label(sample):
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(2048, 512), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')
    ])
    out = pipeline(copy.deepcopy(sample))
    # 40 x 60 fits (2048, 512) at 512 / 40 = 12.8: 512 x 768
    assert out['inputs'].shape == (3, 512, 768)
    meta = out['data_samples'].metainfo
    assert meta['ori_shape'] == (40, 60) and meta['img_shape'] == (512, 768)
    assert out['data_samples'].gt_sem_seg.data.shape == (1, 40, 60)


def test_test_time_augmentation(sample):
    ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    tta = Compose([
        dict(type='LoadImageFromFile'),
        dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='Resize', scale=(int(2048 * r), int(512 * r)),
                      keep_ratio=True) for r in ratios],
                [dict(type='RandomFlip', prob=0., direction='horizontal'),
                 dict(type='RandomFlip', prob=1., direction='horizontal')],
                [dict(type='LoadAnnotations')],
                [dict(type='PackSegInputs')],
            ])
    ])
    out = tta(copy.deepcopy(sample))
    assert len(out['inputs']) == len(out['data_samples']) == 12
    heights = sorted({x.shape[1] for x in out['inputs']})
    assert heights == [int(512 * r) for r in ratios]
    flips = [s.metainfo['flip'] for s in out['data_samples']]
    assert flips.count(True) == flips.count(False) == 6
    for s in out['data_samples']:
        assert s.metainfo['ori_shape'] == (40, 60)
        assert s.gt_sem_seg.data.shape == (1, 40, 60)
    # the flipped view is the mirror of the plain one
    torch.testing.assert_close(out['inputs'][1], out['inputs'][0].flip(-1))


def test_load_image_from_ndarray():
    img = np.zeros((5, 7, 3), np.uint8)
    out = TRANSFORMS.build(dict(type='LoadImageFromNDArray'))(dict(img=img))
    assert out['ori_shape'] == (5, 7) and out['img_path'] is None


def test_load_annotations_without_dataset_context(tmp_path):
    cv2.imwrite(str(tmp_path / 'l.png'), np.array([[0, 1], [2, 255]],
                                                  np.uint8))
    out = LoadAnnotations(reduce_zero_label=True)(
        dict(seg_map_path=str(tmp_path / 'l.png')))
    np.testing.assert_array_equal(out['gt_seg_map'],
                                  [[255, 0], [1, 255]])
    assert out['seg_fields'] == ['gt_seg_map']


# --------------------------------------------- MMSegmentation 1.x arguments
@pytest.fixture
def served(sample, tmp_path):
    """``sample``'s directory served over HTTP on 127.0.0.1."""
    import functools
    import http.server
    import threading
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_loading_accepts_backend_args_and_imdecode_backend(sample):
    """The arguments MMSegmentation 1.x's dataset configs pass."""
    on_disk = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True)
    ])(copy.deepcopy(sample))
    pipeline = Compose([
        dict(
            type='LoadImageFromFile',
            backend_args=dict(backend='local'),
            imdecode_backend='pillow'),
        dict(
            type='LoadAnnotations',
            reduce_zero_label=True,
            backend_args=None,
            imdecode_backend='cv2')
    ])
    out = pipeline(copy.deepcopy(sample))
    # a lossless PNG decodes to the same BGR pixels with either backend
    np.testing.assert_array_equal(out['img'], on_disk['img'])
    np.testing.assert_array_equal(out['gt_seg_map'], on_disk['gt_seg_map'])
    assert "imdecode_backend='pillow'" in repr(pipeline.transforms[0])
    assert "backend_args={'backend': 'local'}" in repr(pipeline.transforms[0])


def test_loading_reads_through_the_file_backend(sample, served):
    """An http:// path goes through mmengine's file backends."""
    remote = dict(
        sample,
        img_path=f'{served}/a.png',
        seg_map_path=f'{served}/a_label.png')
    out = Compose([
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', backend_args=None)
    ])(remote)
    np.testing.assert_array_equal(out['img'], cv2.imread(sample['img_path']))
    assert out['gt_seg_map'].shape == (40, 60)
    from mmseg.datasets.errors import DatasetError
    with pytest.raises(DatasetError, match='missing.png'):
        TRANSFORMS.build(dict(type='LoadImageFromFile'))(
            dict(img_path=f'{served}/missing.png'))


def test_loading_rejects_unknown_decoders_and_can_ignore_missing_images(
        tmp_path):
    for name in ('LoadImageFromFile', 'LoadAnnotations'):
        with pytest.raises(ValueError, match="imdecode_backend.*'pil'"):
            TRANSFORMS.build(dict(type=name, imdecode_backend='pil'))
    missing = dict(img_path=str(tmp_path / 'missing.jpg'))
    assert TRANSFORMS.build(
        dict(type='LoadImageFromFile', ignore_empty=True))(missing) is None
    from mmseg.datasets.errors import DatasetNotFoundError
    with pytest.raises(DatasetNotFoundError, match='missing.jpg'):
        TRANSFORMS.build(dict(type='LoadImageFromFile'))(missing)
