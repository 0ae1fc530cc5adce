"""Prepare Pascal Context for ``PascalContextDataset(59)``.

Inputs: the VOC2010 devkit (``<devkit>/VOC2010/JPEGImages``) and the Pascal
Context annotations, either

- ``trainval_merged.json`` (PASCAL in Detail format, the file
  MMSegmentation's guide uses): per image, segments with a category id and
  a COCO run-length-encoded mask, and the image's phase (train / val); or
- the folder of per-image ``.mat`` files of the original release
  (``trainval.tar.gz``, variable ``LabelMap`` with the 459 label ids); the
  splits then come from ``VOC2010/ImageSets/Main/{train,val}.txt``.

The ``detail`` API package is not on PyPI, so the json and its masks are
read here directly. Outputs::

    VOC2010/SegmentationClassContext/<name>.png      (0..59)
    VOC2010/ImageSets/SegmentationContext/{train,val}.txt

Label maps keep 0 for "background" (every class outside the 59) and
1..59 for the 59 classes in id order (the class order of the datasets).

Usage::

    python tools/convert_datasets/pascal_context.py data/VOCdevkit \
        data/VOCdevkit/VOC2010/trainval_merged.json --nproc 8

Existing outputs are kept (``--overwrite`` redoes them), so the tool can be
re-run safely; each output is written to a temporary file first.
"""
import argparse
import json
import os
import os.path as osp
import sys
from collections import defaultdict
from functools import partial
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image
from scipy.io import loadmat

# 0 ("background") and the ids of the 59 classes among the 459 labels of
# Pascal Context; class k of the 60-class dataset is the k-th id
CONTEXT_IDS = (0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65,
               68, 72, 80, 85, 98, 104, 105, 113, 115, 144, 158, 159, 162,
               187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308,
               324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416,
               420, 424, 427, 440, 445, 454, 458)
SPLITS = ('train', 'val')


def id_to_class_table(max_id: int = 459) -> np.ndarray:
    """Lookup table from label id (0..max_id) to 0..59; ids outside the 59
    classes map to 0 (background)."""
    table = np.zeros(max(max_id, CONTEXT_IDS[-1]) + 1, dtype=np.uint8)
    table[list(CONTEXT_IDS)] = np.arange(len(CONTEXT_IDS))
    return table


def counts_from_string(text: Union[str, bytes]) -> List[int]:
    """Run lengths of a compressed COCO RLE string (the LEB128-like
    encoding of the COCO mask API: 5 bits per character, offset by 48,
    counts after the second stored as differences)."""
    if isinstance(text, str):
        text = text.encode('ascii')
    counts: List[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            char = text[pos] - 48
            value |= (char & 0x1f) << shift
            more = bool(char & 0x20)
            pos += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift  # sign extension
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(rle: dict) -> np.ndarray:
    """``H x W`` uint8 mask of a COCO RLE ``dict(size=[H, W], counts=...)``
    (counts compressed or a list; runs alternate 0 and 1, column-major)."""
    height, width = rle['size']
    counts = rle['counts']
    if isinstance(counts, (str, bytes)):
        counts = counts_from_string(counts)
    if sum(counts) != height * width:
        raise ValueError(f'run lengths sum to {sum(counts)}, not '
                         f'{height}x{width}')
    values = np.arange(len(counts), dtype=np.int64) % 2
    flat = np.repeat(values.astype(np.uint8), counts)
    return flat.reshape(width, height).T


def json_mask(image: dict, segments: Sequence[dict]) -> np.ndarray:
    """Category-id map of an image: its segments painted in file order."""
    mask = np.zeros((image['height'], image['width']), dtype=np.int64)
    for segment in segments:
        try:
            region = decode_rle(segment['segmentation'])
        except (KeyError, ValueError) as e:
            raise ValueError(f'{image["file_name"]}: bad segmentation of '
                             f'annotation {segment.get("id")} ({e})') from e
        if region.shape != mask.shape:
            raise ValueError(
                f'{image["file_name"]}: annotation {segment.get("id")} is '
                f'{region.shape}, the image is {mask.shape}')
        mask[region != 0] = segment['category_id']
    return mask


def mat_mask(path: str) -> np.ndarray:
    """The ``LabelMap`` (459 label ids) of an original release .mat file."""
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for bad files
        raise ValueError(f'{path}: not a readable .mat file ({e!r})') from e
    if 'LabelMap' not in mat:
        raise ValueError(f'{path}: no "LabelMap" variable')
    return np.asarray(mat['LabelMap']).astype(np.int64)


def _save_png(label: np.ndarray, path: str) -> None:
    tmp = path + '.tmp'
    Image.fromarray(label).save(tmp, format='PNG')
    os.replace(tmp, path)


def write_label(task: Tuple[str, object], out_dir: str,
                overwrite: bool = False) -> None:
    """Write ``<out_dir>/<name>.png`` for ``task = (name, source)``; the
    source is ``(image, segments)`` from the json or a .mat path."""
    name, source = task
    out_path = osp.join(out_dir, name + '.png')
    if osp.exists(out_path) and not overwrite:
        return
    ids = mat_mask(source) if isinstance(source, str) else json_mask(*source)
    if ids.min() < 0:
        raise ValueError(f'{name}: negative label id {ids.min()}')
    table = id_to_class_table(int(ids.max()))
    _save_png(table[ids], out_path)


def json_tasks(json_path: str) -> Dict[str, List[Tuple[str, object]]]:
    """Per split, ``(name, (image, segments))`` from trainval_merged.json."""
    try:
        with open(json_path) as f:
            data = json.load(f)
        images = {img['image_id']: img for img in data['images']}
        segments = defaultdict(list)
        for segment in data['annos_segmentation']:
            segments[segment['image_id']].append(segment)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f'{json_path}: not a PASCAL in Detail annotation '
                         f'file with images and annos_segmentation ({e!r})'
                         ) from e
    tasks = {split: [] for split in SPLITS}
    for image_id, image in images.items():
        if image.get('phase') in tasks:
            name = osp.splitext(image['file_name'])[0]
            tasks[image['phase']].append(
                (name, (image, segments.get(image_id, []))))
    return tasks


def mat_tasks(mat_dir: str,
              voc_dir: str) -> Dict[str, List[Tuple[str, object]]]:
    """Per split of ``ImageSets/Main``, ``(name, mat path)`` of the images
    that have an annotation."""
    tasks = {}
    for split in SPLITS:
        split_file = osp.join(voc_dir, 'ImageSets', 'Main', f'{split}.txt')
        if not osp.isfile(split_file):
            raise FileNotFoundError(
                f'missing {split_file!r}: with .mat annotations the splits '
                'come from the VOC2010 devkit')
        with open(split_file) as f:
            names = [line.strip() for line in f if line.strip()]
        tasks[split] = [(name, osp.join(mat_dir, name + '.mat'))
                        for name in names
                        if osp.isfile(osp.join(mat_dir, name + '.mat'))]
    return tasks


def convert(devkit_path: str,
            ann_path: str,
            out_dir: str = None,
            nproc: int = 1,
            overwrite: bool = False) -> Dict[str, List[str]]:
    """Write the label maps and the split files; returns the split lists.

    Raises:
        FileNotFoundError: the devkit, VOC2010 folder or annotations are
            missing.
    """
    voc_dir = osp.join(devkit_path, 'VOC2010')
    if not osp.isdir(voc_dir):
        raise FileNotFoundError(
            f'missing {voc_dir!r} (unpack VOCtrainval_03-May-2010.tar into '
            f'{devkit_path!r})')
    if osp.isdir(ann_path):
        tasks = mat_tasks(ann_path, voc_dir)
    elif osp.isfile(ann_path):
        tasks = json_tasks(ann_path)
    else:
        raise FileNotFoundError(
            f'missing Pascal Context annotations {ann_path!r} '
            '(trainval_merged.json or the folder of .mat files)')
    if not any(tasks.values()):
        raise FileNotFoundError(
            f'no train/val annotation found in {ann_path!r}')
    out_dir = out_dir or osp.join(voc_dir, 'SegmentationClassContext')
    os.makedirs(out_dir, exist_ok=True)
    list_dir = osp.join(voc_dir, 'ImageSets', 'SegmentationContext')
    os.makedirs(list_dir, exist_ok=True)

    worker = partial(write_label, out_dir=out_dir, overwrite=overwrite)
    lists = {}
    for split in SPLITS:
        if nproc > 1:
            track_parallel_progress(worker, tasks[split], nproc)
        else:
            track_progress(worker, tasks[split])
        lists[split] = sorted(name for name, _ in tasks[split])
        with open(osp.join(list_dir, f'{split}.txt'), 'w') as f:
            f.writelines(name + '\n' for name in lists[split])
    return lists


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert the Pascal Context annotations to the label '
        'maps and split files of PascalContextDataset(59)')
    parser.add_argument('devkit_path', help='VOCdevkit folder')
    parser.add_argument(
        'ann_path', help='trainval_merged.json, or the folder of .mat files')
    parser.add_argument(
        '-o', '--out-dir', help='label-map folder (default: '
        'VOC2010/SegmentationClassContext)')
    parser.add_argument(
        '--nproc', default=1, type=int, help='number of processes')
    parser.add_argument(
        '--overwrite', action='store_true', help='redo existing outputs')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        lists = convert(args.devkit_path, args.ann_path, args.out_dir,
                        args.nproc, args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'\nDone (train: {len(lists["train"])}, '
          f'val: {len(lists["val"])}).')


if __name__ == '__main__':
    main()
