"""Prepare Cityscapes for ``CityscapesDataset``.

Writes, next to each annotation of ``<cityscapes>/gtFine``, the train-id
label map ``*_gtFine_labelTrainIds.png`` (the 19 evaluated classes as
0..18, everything else 255), and the lists ``train.txt``, ``val.txt``,
``test.txt`` of the splits present (``<city>/<city>_<seq>_<frame>`` per
line) into the output folder.

The train ids come from the official ``*_gtFine_labelIds.png`` when it is
there, else from the polygons of ``*_gtFine_polygons.json``, drawn in file
order with PIL exactly as cityscapesscripts' ``json2labelImg`` does (the
label table below is Cityscapes' ``labels.py``), so the cityscapesscripts
package is not needed.

Usage::

    python tools/convert_datasets/cityscapes.py data/cityscapes --nproc 8

Existing outputs are kept (``--overwrite`` redoes them), so the tool can be
re-run safely; each output is written to a temporary file first.
"""
import argparse
import json
import os
import os.path as osp
import sys
from functools import partial
from typing import Dict, List, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image, ImageDraw

# name, label id, train id (Cityscapes labels.py)
LABELS: List[Tuple[str, int, int]] = [
    ('unlabeled', 0, 255), ('ego vehicle', 1, 255),
    ('rectification border', 2, 255), ('out of roi', 3, 255),
    ('static', 4, 255), ('dynamic', 5, 255), ('ground', 6, 255),
    ('road', 7, 0), ('sidewalk', 8, 1), ('parking', 9, 255),
    ('rail track', 10, 255), ('building', 11, 2), ('wall', 12, 3),
    ('fence', 13, 4), ('guard rail', 14, 255), ('bridge', 15, 255),
    ('tunnel', 16, 255), ('pole', 17, 5), ('polegroup', 18, 255),
    ('traffic light', 19, 6), ('traffic sign', 20, 7),
    ('vegetation', 21, 8), ('terrain', 22, 9), ('sky', 23, 10),
    ('person', 24, 11), ('rider', 25, 12), ('car', 26, 13),
    ('truck', 27, 14), ('bus', 28, 15), ('caravan', 29, 255),
    ('trailer', 30, 255), ('train', 31, 16), ('motorcycle', 32, 17),
    ('bicycle', 33, 18), ('license plate', -1, -1)
]
NAME_TO_LABEL: Dict[str, Tuple[int, int]] = {
    name: (label_id, train_id)
    for name, label_id, train_id in LABELS
}
SPLITS = ('train', 'val', 'test')
POLYGONS_SUFFIX = '_polygons.json'
LABEL_IDS_SUFFIX = '_labelIds.png'
OUTPUT_SUFFIX = '_labelTrainIds.png'


def id_to_train_id_table() -> np.ndarray:
    """256-entry lookup table from label id to train id (255 elsewhere)."""
    table = np.full(256, 255, dtype=np.uint8)
    for _, label_id, train_id in LABELS:
        if label_id >= 0:
            table[label_id] = train_id
    return table


def polygons_to_train_ids(json_path: str) -> np.ndarray:
    """Rasterise a Cityscapes polygon file to an ``H x W`` train-id map."""
    try:
        with open(json_path) as f:
            annotation = json.load(f)
        size = (annotation['imgWidth'], annotation['imgHeight'])
        objects = annotation['objects']
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f'{json_path}: not a Cityscapes polygon file ({e!r})') from e
    canvas = Image.new('L', size, NAME_TO_LABEL['unlabeled'][1])
    drawer = ImageDraw.Draw(canvas)
    for obj in objects:
        if obj.get('deleted', 0):
            continue
        name = obj['label']
        if name not in NAME_TO_LABEL and name.endswith('group'):
            name = name[:-len('group')]
        if name not in NAME_TO_LABEL:
            raise ValueError(f'{json_path}: unknown label {obj["label"]!r}')
        label_id, train_id = NAME_TO_LABEL[name]
        if label_id < 0:
            continue
        drawer.polygon([tuple(point) for point in obj['polygon']],
                       fill=train_id)
    return np.array(canvas)


def _save_png(label: np.ndarray, path: str) -> None:
    tmp = path + '.tmp'
    Image.fromarray(label).save(tmp, format='PNG')
    os.replace(tmp, path)


def convert_one(stem: str, overwrite: bool = False) -> None:
    """Write ``<stem>_labelTrainIds.png`` from ``<stem>_labelIds.png`` or
    ``<stem>_polygons.json``."""
    out_path = stem + OUTPUT_SUFFIX
    if osp.exists(out_path) and not overwrite:
        return
    if osp.exists(stem + LABEL_IDS_SUFFIX):
        with Image.open(stem + LABEL_IDS_SUFFIX) as pil:
            label_ids = np.array(pil)
        if label_ids.ndim != 2:
            raise ValueError(f'{stem + LABEL_IDS_SUFFIX}: expected a '
                             f'single-channel label-id image, got shape '
                             f'{label_ids.shape}')
        train_ids = id_to_train_id_table()[label_ids]
    else:
        train_ids = polygons_to_train_ids(stem + POLYGONS_SUFFIX)
    _save_png(train_ids, out_path)


def find_annotations(gt_dir: str) -> List[str]:
    """Sorted annotation stems (path without ``_polygons.json`` /
    ``_labelIds.png``) under ``gt_dir``."""
    stems = set()
    for root, _, files in os.walk(gt_dir, followlinks=True):
        for name in files:
            for suffix in (POLYGONS_SUFFIX, LABEL_IDS_SUFFIX):
                if name.endswith(suffix):
                    stems.add(osp.join(root, name[:-len(suffix)]))
    return sorted(stems)


def split_lists(gt_dir: str, stems: List[str]) -> Dict[str, List[str]]:
    """Per split present, the image names ``<city>/<city>_<seq>_<frame>``."""
    tag = '_' + osp.basename(osp.normpath(gt_dir))  # e.g. '_gtFine'
    lists = {}
    for split in SPLITS:
        split_dir = osp.join(gt_dir, split)
        if not osp.isdir(split_dir):
            continue
        names = []
        for stem in stems:
            rel = osp.relpath(stem, split_dir)
            if rel.startswith('..'):
                continue
            names.append(rel[:-len(tag)] if rel.endswith(tag) else rel)
        lists[split] = sorted(names)
    return lists


def convert(cityscapes_path: str,
            gt_dir: str = 'gtFine',
            out_dir: str = None,
            nproc: int = 1,
            overwrite: bool = False) -> Dict[str, List[str]]:
    """Convert every annotation under ``<cityscapes_path>/<gt_dir>`` and
    write the split lists into ``out_dir`` (default: ``cityscapes_path``).

    Returns:
        The split lists written.

    Raises:
        FileNotFoundError: the dataset folder, the annotation folder or any
            annotation is missing.
    """
    if not osp.isdir(cityscapes_path):
        raise FileNotFoundError(
            f'Cityscapes folder {cityscapes_path!r} does not exist')
    gt_path = osp.join(cityscapes_path, gt_dir)
    if not osp.isdir(gt_path):
        raise FileNotFoundError(
            f'annotation folder {gt_path!r} does not exist (unpack '
            'gtFine_trainvaltest.zip into the Cityscapes folder)')
    stems = find_annotations(gt_path)
    if not stems:
        raise FileNotFoundError(
            f'no *{POLYGONS_SUFFIX} or *{LABEL_IDS_SUFFIX} file under '
            f'{gt_path!r}')
    worker = partial(convert_one, overwrite=overwrite)
    if nproc > 1:
        track_parallel_progress(worker, stems, nproc)
    else:
        track_progress(worker, stems)

    out_dir = out_dir or cityscapes_path
    os.makedirs(out_dir, exist_ok=True)
    lists = split_lists(gt_path, stems)
    for split, names in lists.items():
        with open(osp.join(out_dir, f'{split}.txt'), 'w') as f:
            f.writelines(name + '\n' for name in names)
    return lists


def parse_args():
    parser = argparse.ArgumentParser(
        description='Make Cityscapes *_labelTrainIds.png label maps and '
        'split lists for CityscapesDataset')
    parser.add_argument('cityscapes_path', help='Cityscapes folder')
    parser.add_argument(
        '--gt-dir', default='gtFine', help='annotation sub-folder')
    parser.add_argument(
        '-o', '--out-dir', help='where to write the split lists '
        '(default: the Cityscapes folder)')
    parser.add_argument(
        '--nproc', default=1, type=int, help='number of processes')
    parser.add_argument(
        '--overwrite', action='store_true', help='redo existing outputs')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        lists = convert(args.cityscapes_path, args.gt_dir, args.out_dir,
                        args.nproc, args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    counts = ', '.join(f'{split}: {len(names)}'
                       for split, names in lists.items())
    print(f'\nDone ({counts}).')


if __name__ == '__main__':
    main()
