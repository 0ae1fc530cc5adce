"""Generate a small synthetic segmentation dataset in the ADE20K layout.

    python tools/misc/generate_toy_dataset.py data/toy [--num-train 160]
        [--num-val 40] [--size 160] [--seed 0]

Writes ``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png``. Each image shows a textured
background and a few shapes; label 0 marks the shapes' outlines ("other",
ignored through ``reduce_zero_label`` like ADE20K's label 0), labels 1..5 the
classes of :data:`CLASSES`. It needs no download, trains in minutes on a CPU
(``senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py``) and is
deterministic for a given seed.
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np

CLASSES = ('background', 'square', 'disc', 'triangle', 'bar')
# BGR base colours; each object gets a jittered version of its class colour
BASE_COLORS = {
    'background': (90, 110, 100),
    'square': (40, 40, 200),
    'disc': (40, 180, 40),
    'triangle': (200, 60, 40),
    'bar': (40, 200, 220),
}


def _jitter(color, rng, amount=25):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255))
                 for c in color)


def _draw_shape(kind, img, mask, rng, size):
    color = _jitter(BASE_COLORS[kind], rng)
    label = CLASSES.index(kind) + 1
    cx, cy = (int(v) for v in rng.integers(size // 8, size - size // 8, 2))
    r = int(rng.integers(size // 12, size // 5))
    if kind == 'square':
        pts = np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r],
                        [cx - r, cy + r]])
    elif kind == 'triangle':
        pts = np.array([[cx, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    elif kind == 'bar':
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * r * 2, np.sin(angle) * r * 2
        nx, ny = -np.sin(angle) * r / 3, np.cos(angle) * r / 3
        pts = np.array([[cx - dx - nx, cy - dy - ny], [cx + dx - nx,
                                                       cy + dy - ny],
                        [cx + dx + nx, cy + dy + ny],
                        [cx - dx + nx, cy - dy + ny]])
    else:
        pts = None
    if pts is None:
        cv2.circle(img, (cx, cy), r, color, -1)
        cv2.circle(mask, (cx, cy), r, label, -1)
        cv2.circle(mask, (cx, cy), r, 0, 1)
    else:
        pts = pts.astype(np.int32)
        cv2.fillPoly(img, [pts], color)
        cv2.fillPoly(mask, [pts], label)
        cv2.polylines(mask, [pts], True, 0, 1)


def make_sample(rng: np.random.Generator, size: int):
    """One ``size x size`` BGR image and its label map."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _jitter(BASE_COLORS['background'], rng, 30)
    yy, xx = np.mgrid[:size, :size]
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.2)
    texture = (12 * np.sin(freq * (xx + yy) + phase)).astype(np.int16)
    img = np.clip(img.astype(np.int16) + texture[..., None], 0,
                  255).astype(np.uint8)
    mask = np.full((size, size), CLASSES.index('background') + 1, np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        kind = CLASSES[int(rng.integers(1, len(CLASSES)))]
        _draw_shape(kind, img, mask, rng, size)
    noise = rng.normal(0, 8, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, mask


def generate(root: str, num_train: int, num_val: int, size: int,
             seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(count):
            img, mask = make_sample(rng, size)
            name = f'toy_{split}_{i:05d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), mask)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a synthetic dataset in the ADE20K layout.')
    parser.add_argument('root', help='output folder, e.g. data/toy')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--size', type=int, default=160)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    generate(args.root, args.num_train, args.num_val, args.size, args.seed)
    print(f'wrote {args.num_train} training and {args.num_val} validation '
          f'samples to {args.root} (classes: {", ".join(CLASSES)})')


if __name__ == '__main__':
    main()
