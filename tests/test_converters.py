"""Dataset converters on tiny inputs in each official format."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from mmseg.datasets import (CityscapesDataset, COCOStuffDataset,
                            PascalContextDataset59)
from tools.convert_datasets import cityscapes, coco_stuff10k, pascal_context


def _png(path):
    return np.array(Image.open(path))


def _jpg(path, size=(8, 6)):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.new('RGB', size, (10, 20, 30)).save(path)


# ----------------------------------------------------------------------
# Cityscapes


def _polygons(path, objects, size=(8, 6)):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(dict(imgWidth=size[0], imgHeight=size[1],
                       objects=objects), f)


def _box(label, x0, y0, x1, y1, **extra):
    return dict(label=label, polygon=[[x0, y0], [x1, y0], [x1, y1],
                                      [x0, y1]], **extra)


def _make_cityscapes(root):
    gt = osp.join(root, 'gtFine')
    _polygons(
        osp.join(gt, 'train', 'aachen', 'aachen_000000_000019_gtFine'
                 '_polygons.json'),
        [
            _box('road', 0, 0, 7, 5),
            _box('cargroup', 0, 0, 3, 2),  # 'group' suffix: car
            _box('sky', 5, 0, 7, 1, deleted=1),  # deleted: not drawn
            _box('license plate', 1, 1, 2, 2),  # id -1: not drawn
            _box('ego vehicle', 6, 4, 7, 5),  # train id 255
        ])
    # an image with the official label-id map (no polygons needed)
    label_ids = np.full((6, 8), 7, np.uint8)  # road
    label_ids[:, 4:] = 24  # person
    label_ids[0, 0] = 3  # out of roi
    os.makedirs(osp.join(gt, 'val', 'lindau'))
    Image.fromarray(label_ids).save(
        osp.join(gt, 'val', 'lindau', 'lindau_000000_000019_gtFine'
                 '_labelIds.png'))
    for split, city in (('train', 'aachen'), ('val', 'lindau')):
        _jpg(osp.join(root, 'leftImg8bit', split, city,
                      f'{city}_000000_000019_leftImg8bit.png'))


def test_cityscapes_polygons_and_label_ids(tmp_path):
    root = str(tmp_path)
    _make_cityscapes(root)
    lists = cityscapes.convert(root, nproc=2)
    assert lists == dict(
        train=['aachen/aachen_000000_000019'],
        val=['lindau/lindau_000000_000019'])
    with open(osp.join(root, 'train.txt')) as f:
        assert f.read() == 'aachen/aachen_000000_000019\n'

    train = _png(osp.join(root, 'gtFine', 'train', 'aachen',
                          'aachen_000000_000019_gtFine_labelTrainIds.png'))
    expected = np.zeros((6, 8), np.uint8)  # road everywhere in the box
    expected[:, 7] = 0
    expected[0:3, 0:4] = 13  # car, drawn after the road
    expected[4:6, 6:8] = 255  # ego vehicle
    np.testing.assert_array_equal(train, expected)

    val = _png(osp.join(root, 'gtFine', 'val', 'lindau',
                        'lindau_000000_000019_gtFine_labelTrainIds.png'))
    expected = np.zeros((6, 8), np.uint8)
    expected[:, 4:] = 11
    expected[0, 0] = 255
    np.testing.assert_array_equal(val, expected)

    # the dataset reads the result with its default suffixes
    ds = CityscapesDataset(
        data_root=root,
        data_prefix=dict(img_path='leftImg8bit/val',
                         seg_map_path='gtFine/val'),
        ann_file='val.txt')
    assert len(ds) == 1


def test_cityscapes_matches_cityscapesscripts(tmp_path):
    json2label = pytest.importorskip(
        'cityscapesscripts.preparation.json2labelImg')
    path = str(tmp_path / 'x_gtFine_polygons.json')
    rng = np.random.RandomState(0)
    names = [name for name, _, _ in cityscapes.LABELS] + ['cargroup']
    objects = [
        dict(label=names[rng.randint(len(names))],
             polygon=rng.randint(-3, 40, (rng.randint(3, 8), 2)).tolist(),
             deleted=int(rng.rand() < 0.1)) for _ in range(30)
    ]
    _polygons(path, objects, size=(36, 24))
    json2label.json2labelImg(path, str(tmp_path / 'ref.png'), 'trainIds')
    np.testing.assert_array_equal(
        cityscapes.polygons_to_train_ids(path), _png(tmp_path / 'ref.png'))


def test_cityscapes_is_idempotent_and_names_missing_input(tmp_path):
    root = str(tmp_path)
    _make_cityscapes(root)
    cityscapes.convert(root)
    out = osp.join(root, 'gtFine', 'train', 'aachen',
                   'aachen_000000_000019_gtFine_labelTrainIds.png')
    before = (os.stat(out).st_mtime_ns, _png(out))
    cityscapes.convert(root)
    assert os.stat(out).st_mtime_ns == before[0]
    cityscapes.convert(root, overwrite=True)
    np.testing.assert_array_equal(_png(out), before[1])

    with pytest.raises(FileNotFoundError, match='gtCoarse'):
        cityscapes.convert(root, gt_dir='gtCoarse')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        cityscapes.convert(str(tmp_path / 'nowhere'))
    _polygons(osp.join(root, 'gtFine', 'test', 'x', 'x_gtFine_polygons.json'),
              [_box('dragon', 0, 0, 2, 2)])
    with pytest.raises(ValueError, match="x_gtFine_polygons.json: unknown "
                       "label 'dragon'"):
        cityscapes.convert(root)


# ----------------------------------------------------------------------
# COCO-Stuff 10k


def _make_coco(root, labels):
    os.makedirs(osp.join(root, 'imageLists'))
    names = {'train': [], 'test': []}
    for i, label in enumerate(labels):
        split = 'train' if i < 2 else 'test'
        name = f'COCO_{split}2014_{i:012d}'
        names[split].append(name)
        _jpg(osp.join(root, 'images', name + '.jpg'),
             size=label.shape[::-1])
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        savemat(osp.join(root, 'annotations', name + '.mat'),
                dict(S=label.astype(np.uint16), names=['x']))
    for split, split_names in names.items():
        with open(osp.join(root, 'imageLists', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(split_names) + '\n')
    return names


def test_coco_stuff10k_mapping_and_layout(tmp_path):
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    # COCO ids: 0 unlabeled, 11 (class 11), 12 (unused id), 13 (class 12),
    # 91 (unused), 92 (first stuff: class 81), 182 (last: class 171)
    ids = np.array([[0, 1, 11, 12], [13, 91, 92, 182]])
    names = _make_coco(src, [ids, ids[::-1], ids.T])
    lists = coco_stuff10k.convert(src, out, nproc=2)
    assert lists == names
    expected = np.array([[0, 1, 11, 0], [12, 0, 81, 171]])
    label = _png(osp.join(out, 'annotations', 'train2014',
                          names['train'][0] + '_labelTrainIds.png'))
    np.testing.assert_array_equal(label, expected)
    test_label = _png(osp.join(out, 'annotations', 'test2014',
                               names['test'][0] + '_labelTrainIds.png'))
    np.testing.assert_array_equal(test_label, expected.T)
    assert osp.isfile(osp.join(out, 'images', 'test2014',
                               names['test'][0] + '.jpg'))
    # the 171 classes are exactly ids 1..171 of the converter's output
    table = coco_stuff10k.id_to_train_id_table()
    assert sorted(set(table[1:183]) - {0}) == list(range(1, 172))

    ds = COCOStuffDataset(
        data_root=out,
        data_prefix=dict(img_path='images/train2014',
                         seg_map_path='annotations/train2014'),
        reduce_zero_label=True,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    gt = ds[0]['gt_seg_map']
    np.testing.assert_array_equal(gt, [[255, 0, 10, 255], [11, 255, 80,
                                                           170]])

    # re-running keeps the outputs
    mtime = os.stat(osp.join(out, 'images', 'test2014',
                             names['test'][0] + '.jpg')).st_mtime_ns
    coco_stuff10k.convert(src, out)
    assert os.stat(osp.join(out, 'images', 'test2014',
                            names['test'][0] + '.jpg')).st_mtime_ns == mtime


def test_coco_stuff10k_names_missing_input(tmp_path):
    src = str(tmp_path / 'src')
    names = _make_coco(src, [np.zeros((2, 2))] * 3)
    os.remove(osp.join(src, 'annotations', names['test'][0] + '.mat'))
    with pytest.raises(FileNotFoundError,
                       match=names['test'][0] + r'.mat.*listed in .*test.txt'):
        coco_stuff10k.convert(src)
    os.remove(osp.join(src, 'imageLists', 'train.txt'))
    with pytest.raises(FileNotFoundError, match=r'imageLists/train.txt'):
        coco_stuff10k.convert(src)
    savemat(str(tmp_path / 'bad.mat'), dict(T=np.zeros((2, 2))))
    with pytest.raises(ValueError, match='bad.mat: no label map "S"'):
        coco_stuff10k.read_stuff_mat(str(tmp_path / 'bad.mat'))


# ----------------------------------------------------------------------
# Pascal Context

# a mask and its COCO compressed RLE, as produced by pycocotools
RLE_MASK = np.zeros((7, 9), np.uint8)
RLE_MASK[1:5, 2:6] = 1
RLE_MASK[6, 8] = RLE_MASK[0, 0] = 1
RLE_STRING = '01>3E00000c0M'
BIG_MASK = np.zeros((300, 200), np.uint8)
BIG_MASK[:, 100:] = 1
BIG_MASK[5:10, 0:3] = 1
BIG_STRING = '55W9000W]l0[Ym0'


def test_rle_decoding_matches_the_coco_mask_api():
    np.testing.assert_array_equal(
        pascal_context.decode_rle(dict(size=[7, 9], counts=RLE_STRING)),
        RLE_MASK)
    np.testing.assert_array_equal(
        pascal_context.decode_rle(dict(size=[300, 200],
                                       counts=BIG_STRING.encode())),
        BIG_MASK)
    # uncompressed counts: runs of 0 and 1, column-major
    np.testing.assert_array_equal(
        pascal_context.decode_rle(dict(size=[2, 2], counts=[1, 2, 1])),
        [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match='sum to 3'):
        pascal_context.decode_rle(dict(size=[2, 2], counts=[1, 2]))


def _make_voc(root, names):
    for name in names:
        _jpg(osp.join(root, 'VOC2010', 'JPEGImages', name + '.jpg'),
             size=(9, 7))


def test_pascal_context_from_detail_json(tmp_path):
    root = str(tmp_path / 'VOCdevkit')
    _make_voc(root, ['2008_000001', '2008_000002', '2008_000003'])
    full = dict(size=[7, 9], counts=[0, 63])
    data = dict(
        images=[
            dict(image_id=1, file_name='2008_000001.jpg', height=7, width=9,
                 phase='train'),
            dict(image_id=2, file_name='2008_000002.jpg', height=7, width=9,
                 phase='val'),
            dict(image_id=3, file_name='2008_000003.jpg', height=7, width=9,
                 phase='test'),
        ],
        annos_segmentation=[
            # later segments paint over earlier ones, as the Detail API
            dict(id=10, image_id=1, category_id=284, segmentation=full),
            dict(id=11, image_id=1, category_id=2,
                 segmentation=dict(size=[7, 9], counts=RLE_STRING)),
            dict(id=12, image_id=2, category_id=458, segmentation=full),
            dict(id=13, image_id=2, category_id=3,  # not of the 59
                 segmentation=dict(size=[7, 9], counts=RLE_STRING)),
        ],
        categories=[dict(category_id=2, name='aeroplane')])
    ann = str(tmp_path / 'trainval_merged.json')
    with open(ann, 'w') as f:
        json.dump(data, f)
    lists = pascal_context.convert(root, ann, nproc=2)
    assert lists == dict(train=['2008_000001'], val=['2008_000002'])
    voc = osp.join(root, 'VOC2010')
    person = pascal_context.CONTEXT_IDS.index(284)
    assert PascalContextDataset59.METAINFO['classes'][person - 1] == 'person'
    label = _png(osp.join(voc, 'SegmentationClassContext', '2008_000001.png'))
    np.testing.assert_array_equal(label, np.where(RLE_MASK, 1, person))
    label = _png(osp.join(voc, 'SegmentationClassContext', '2008_000002.png'))
    np.testing.assert_array_equal(label, np.where(RLE_MASK, 0, 59))
    with open(osp.join(voc, 'ImageSets', 'SegmentationContext',
                       'val.txt')) as f:
        assert f.read() == '2008_000002\n'
    assert not osp.exists(
        osp.join(voc, 'SegmentationClassContext', '2008_000003.png'))

    ds = PascalContextDataset59(
        data_root=voc,
        data_prefix=dict(img_path='JPEGImages',
                         seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/train.txt',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    np.testing.assert_array_equal(ds[0]['gt_seg_map'],
                                  np.where(RLE_MASK, 0, person - 1))


def test_pascal_context_from_mat_files(tmp_path):
    root = str(tmp_path / 'VOCdevkit')
    _make_voc(root, ['2008_000001', '2008_000002'])
    main = osp.join(root, 'VOC2010', 'ImageSets', 'Main')
    os.makedirs(main)
    for split, name in (('train', '2008_000001'), ('val', '2008_000002')):
        with open(osp.join(main, f'{split}.txt'), 'w') as f:
            f.write(name + '\n2008_999999\n')  # second one not annotated
    mats = str(tmp_path / 'trainval')
    os.makedirs(mats)
    label_map = np.array([[2, 9, 1], [458, 459, 284]])
    savemat(osp.join(mats, '2008_000001.mat'), dict(LabelMap=label_map))
    savemat(osp.join(mats, '2008_000002.mat'), dict(LabelMap=label_map.T))
    lists = pascal_context.convert(root, mats)
    assert lists == dict(train=['2008_000001'], val=['2008_000002'])
    label = _png(osp.join(root, 'VOC2010', 'SegmentationClassContext',
                          '2008_000001.png'))
    person = pascal_context.CONTEXT_IDS.index(284)
    np.testing.assert_array_equal(label, [[1, 2, 0], [59, 0, person]])


def test_pascal_context_names_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match='VOC2010'):
        pascal_context.convert(str(tmp_path), str(tmp_path / 'x.json'))
    root = str(tmp_path / 'VOCdevkit')
    _make_voc(root, ['2008_000001'])
    with pytest.raises(FileNotFoundError, match='trainval_merged.json'):
        pascal_context.convert(root, str(tmp_path / 'trainval_merged.json'))
    os.makedirs(tmp_path / 'mats')
    with pytest.raises(FileNotFoundError, match='ImageSets/Main/train.txt'):
        pascal_context.convert(root, str(tmp_path / 'mats'))
    (tmp_path / 'bad.json').write_text('{"images": []}')
    with pytest.raises(ValueError, match='bad.json: not a PASCAL in Detail'):
        pascal_context.convert(root, str(tmp_path / 'bad.json'))
