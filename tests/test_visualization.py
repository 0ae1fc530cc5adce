"""SegLocalVisualizer and tools/browse_dataset.py."""
import os
import os.path as osp
import sys
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData

from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules
from mmseg.visualization import SegLocalVisualizer

_names = iter(range(10**6))


def _visualizer(**kwargs):
    # mmengine visualizers are named singletons: one name per instance
    return SegLocalVisualizer(name=f'test_vis_{next(_names)}', **kwargs)


def _sample():
    label = torch.zeros(1, 20, 30, dtype=torch.long)
    label[:, :, 15:] = 1
    label[:, :4] = 255
    pred = torch.ones_like(label)
    return SegDataSample(
        gt_sem_seg=PixelData(data=label), pred_sem_seg=PixelData(data=pred))


def test_overlay_uses_the_palette_and_skips_ignored_pixels():
    vis = _visualizer(
        classes=('road', 'tree'), palette=[[255, 0, 0], [0, 0, 255]],
        alpha=0.5)
    image = np.full((20, 30, 3), 100, np.uint8)
    drawn = vis.draw_sem_seg(image, _sample().gt_sem_seg.data,
                             with_labels=False)
    np.testing.assert_array_equal(drawn[10, 2], [177, 50, 50])
    np.testing.assert_array_equal(drawn[10, 20], [50, 50, 177])
    np.testing.assert_array_equal(drawn[0, 0], [100, 100, 100])  # 255

    named = vis.draw_sem_seg(image, _sample().gt_sem_seg.data)
    assert (named != drawn).any()  # class names written on the regions


def test_add_datasample_writes_gt_beside_prediction(tmp_path):
    register_all_modules(init_default_scope=False)
    vis = VISUALIZERS.build(
        dict(type='SegLocalVisualizer', name=f'test_vis_{next(_names)}',
             classes=('road', 'tree'), palette=[[255, 0, 0], [0, 0, 255]]))
    image = np.zeros((20, 30, 3), np.uint8)
    out_file = str(tmp_path / 'deep' / 'x.png')
    drawn = vis.add_datasample('x', image, _sample(), out_file=out_file)
    assert drawn.shape == (20, 60, 3)
    written = cv2.imread(out_file)[..., ::-1]  # back to RGB
    np.testing.assert_array_equal(written, drawn)
    only_gt = vis.add_datasample('x', image, _sample(), draw_pred=False,
                                 out_file=out_file)
    assert only_gt.shape == (20, 30, 3)

    with pytest.raises(ValueError, match=r'label map is \(20, 30\) but the '
                       r'image is \(10, 30\)'):
        vis.draw_sem_seg(image[:10], _sample().gt_sem_seg.data)


def test_without_palette_colours_are_fixed():
    image = np.zeros((20, 30, 3), np.uint8)
    first = _visualizer(classes=('a', 'b')).draw_sem_seg(
        image, _sample().gt_sem_seg.data)
    second = _visualizer(classes=('a', 'b')).draw_sem_seg(
        image, _sample().gt_sem_seg.data)
    np.testing.assert_array_equal(first, second)


def test_browse_dataset_writes_overlays(tmp_path):
    from tools import browse_dataset
    root = tmp_path / 'ade'
    for i in range(2):
        img_dir = root / 'images' / 'training'
        ann_dir = root / 'annotations' / 'training'
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        cv2.imwrite(str(img_dir / f'ADE_{i}.jpg'),
                    np.full((24, 32, 3), 60, np.uint8))
        label = np.zeros((24, 32), np.uint8)
        label[:, 16:] = 3
        cv2.imwrite(str(ann_dir / f'ADE_{i}.png'), label)
    config = tmp_path / 'cfg.py'
    config.write_text(f"""
default_scope = 'mmseg'
train_dataloader = dict(dataset=dict(
    type='ADE20KDataset', data_root={str(root)!r},
    data_prefix=dict(img_path='images/training',
                     seg_map_path='annotations/training'),
    pipeline=[dict(type='LoadImageFromFile'),
              dict(type='LoadAnnotations'),
              dict(type='PackSegInputs')]))
visualizer = dict(type='SegLocalVisualizer')
""")
    out_dir = tmp_path / 'vis'
    argv = ['browse_dataset.py', str(config), '--output-dir', str(out_dir),
            '--not-show']
    with mock.patch.object(sys, 'argv', argv):
        browse_dataset.main()
    written = sorted(os.listdir(out_dir))
    assert written == ['00000_ADE_0.png', '00001_ADE_1.png']
    drawing = cv2.imread(osp.join(out_dir, written[0]))
    assert drawing.shape == (24, 32, 3)
    # class 2 (label 3 after reduce_zero_label) coloured, label 0 ignored
    assert (drawing[12, 2] == 60).all()
    assert (drawing[:, 16:] != 60).any()
