"""Prepare COCO-Stuff 10k (cocostuff-10k-v1.1.zip) for ``COCOStuffDataset``.

Input, as unpacked from the official archive::

    <coco_stuff10k>/images/*.jpg
    <coco_stuff10k>/annotations/*.mat      (label map in variable 'S')
    <coco_stuff10k>/imageLists/{train,test}.txt

Output (``-o``, default the input folder)::

    images/{train2014,test2014}/*.jpg
    annotations/{train2014,test2014}/*_labelTrainIds.png

The ``.mat`` label maps hold COCO ids (0 unlabeled, 1..182 with 11 unused
ids); they become 0 (unlabeled) and 1..171 in class order, so the dataset
is used with ``reduce_zero_label=True`` (0 ignored, class k - 1). Ids that
are not COCO-Stuff classes become 0.

Usage::

    python tools/convert_datasets/coco_stuff10k.py data/coco_stuff10k \
        --nproc 8

Existing outputs are kept (``--overwrite`` redoes them), so the tool can be
re-run safely; each output is written to a temporary file first.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
from functools import partial
from typing import Dict, List, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image
from scipy.io import loadmat

# the 11 thing ids of 1..91 that COCO never uses; the other ids of 1..182
# are the 171 classes, in order
UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
NUM_COCO_IDS = 182
SPLITS = {'train': 'train2014', 'test': 'test2014'}
EXPECTED_IMAGES = 10000


def id_to_train_id_table() -> np.ndarray:
    """256-entry lookup table: COCO id to 1..171, everything else to 0."""
    table = np.zeros(256, dtype=np.uint8)
    used = [i for i in range(1, NUM_COCO_IDS + 1) if i not in UNUSED_IDS]
    table[used] = np.arange(1, len(used) + 1)
    return table


def read_stuff_mat(path: str) -> np.ndarray:
    """The ``S`` label map (``H x W`` COCO ids) of an annotation file."""
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for bad files
        raise ValueError(f'{path}: not a readable .mat file ({e!r})') from e
    if 'S' not in mat:
        raise ValueError(f'{path}: no label map "S" (variables: '
                         f'{sorted(k for k in mat if not k.startswith("_"))})')
    label = np.asarray(mat['S'])
    if label.ndim != 2 or label.min() < 0 or label.max() > 255:
        raise ValueError(f'{path}: "S" must be a 2-D map of ids 0..255, got '
                         f'shape {label.shape}, values {label.min()}..'
                         f'{label.max()}')
    return label.astype(np.uint8)


def _write_atomically(write, path: str) -> None:
    tmp = path + '.tmp'
    write(tmp)
    os.replace(tmp, path)


def convert_one(task: Tuple[str, str], coco_path: str, out_dir: str,
                overwrite: bool = False) -> None:
    """Copy one image and convert its label map into split folder."""
    name, split_dir = task
    out_img = osp.join(out_dir, 'images', split_dir, name + '.jpg')
    out_label = osp.join(out_dir, 'annotations', split_dir,
                         name + '_labelTrainIds.png')
    if overwrite or not osp.exists(out_img):
        _write_atomically(
            partial(shutil.copyfile,
                    osp.join(coco_path, 'images', name + '.jpg')), out_img)
    if overwrite or not osp.exists(out_label):
        label = id_to_train_id_table()[read_stuff_mat(
            osp.join(coco_path, 'annotations', name + '.mat'))]
        _write_atomically(
            lambda tmp: Image.fromarray(label).save(tmp, format='PNG'),
            out_label)


def read_lists(coco_path: str) -> Dict[str, List[str]]:
    """Image names of each split, checking that every input exists.

    Raises:
        FileNotFoundError: naming the first missing list, image or
            annotation.
    """
    if not osp.isdir(coco_path):
        raise FileNotFoundError(
            f'COCO-Stuff 10k folder {coco_path!r} does not exist')
    lists = {}
    for split in SPLITS:
        list_file = osp.join(coco_path, 'imageLists', f'{split}.txt')
        if not osp.isfile(list_file):
            raise FileNotFoundError(
                f'missing {list_file!r} (unpack cocostuff-10k-v1.1.zip: it '
                'has images/, annotations/ and imageLists/)')
        with open(list_file) as f:
            names = [line.strip() for line in f if line.strip()]
        for name in names:
            for path in (osp.join(coco_path, 'images', name + '.jpg'),
                         osp.join(coco_path, 'annotations', name + '.mat')):
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f'missing {path!r} (listed in {list_file!r})')
        lists[split] = names
    return lists


def convert(coco_path: str,
            out_dir: str = None,
            nproc: int = 1,
            overwrite: bool = False) -> Dict[str, List[str]]:
    """Convert the whole dataset; returns the image names of each split."""
    lists = read_lists(coco_path)
    out_dir = out_dir or coco_path
    for split_dir in SPLITS.values():
        os.makedirs(osp.join(out_dir, 'images', split_dir), exist_ok=True)
        os.makedirs(
            osp.join(out_dir, 'annotations', split_dir), exist_ok=True)
    tasks = [(name, SPLITS[split]) for split, names in lists.items()
             for name in names]
    total = len(tasks)
    if total != EXPECTED_IMAGES:
        print(f'note: {total} images listed, COCO-Stuff 10k has '
              f'{EXPECTED_IMAGES}')
    worker = partial(
        convert_one, coco_path=coco_path, out_dir=out_dir,
        overwrite=overwrite)
    if nproc > 1:
        track_parallel_progress(worker, tasks, nproc)
    else:
        track_progress(worker, tasks)
    return lists


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert COCO-Stuff 10k (.mat annotations) to the '
        'layout of COCOStuffDataset')
    parser.add_argument('coco_path', help='unpacked cocostuff-10k-v1.1')
    parser.add_argument(
        '-o', '--out-dir', help='output folder (default: coco_path)')
    parser.add_argument(
        '--nproc', default=1, type=int, help='number of processes')
    parser.add_argument(
        '--overwrite', action='store_true', help='redo existing outputs')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        lists = convert(args.coco_path, args.out_dir, args.nproc,
                        args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'\nDone (train: {len(lists["train"])}, '
          f'test: {len(lists["test"])}).')


if __name__ == '__main__':
    main()
