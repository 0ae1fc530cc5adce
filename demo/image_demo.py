"""Segment an image, a folder, a glob or a list of images.

    python demo/image_demo.py INPUTS CONFIG|MODEL_NAME [CHECKPOINT]
        [--out-dir DIR] [--batch-size N] [--out-file F]
        [--device cpu|cuda:0] [--opacity 0.5] [--aug-test] [--learners]
        [--with-labels] [--mirror URL_OR_DIR] [--cfg-options KEY=VALUE ...]
        [--debug]

INPUTS is an image, a folder (its images, not recursive), a quoted glob
(``'data/**/*.jpg'``) or a ``.txt`` file with one image path a line. With
``--out-dir`` (needed for anything but one image) the label maps go to
``DIR/pred/<stem>.png`` (as ``tools/test.py --out`` writes them), the
overlays to ``DIR/vis/<stem>.png``, and with ``--learners`` each SenFormer
learner's to ``DIR/learner<i>/{pred,vis}/<stem>.png``; see
mmseg/apis/inferencer.py. Without it, one image's overlay is written to
``--out-file`` (default ``IMG_seg.png`` beside the image) and with
``--learners`` each learner's next to it (``F_learner0.png`` ...).

A published model's name (``tools/model_zoo.py list``) stands for its config
and checkpoint, downloaded once.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmseg.cli import ConfigError, add_debug_argument, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Segment images and write label maps and overlays')
    parser.add_argument(
        'img', help='image file, folder, glob or .txt list of images')
    parser.add_argument('config', help='config file or published model name')
    parser.add_argument(
        'checkpoint', nargs='?',
        help='checkpoint file (default for a model name: its published one)')
    parser.add_argument(
        '--out-dir', default=None,
        help='write pred/<stem>.png label maps and vis/<stem>.png overlays '
        'there')
    parser.add_argument(
        '--batch-size', type=int, default=1,
        help='images per forward pass (images of one size are batched)')
    parser.add_argument(
        '--out-file', default=None,
        help='one image without --out-dir: the overlay (default: '
        'IMG_NAME_seg.png beside the image)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N')
    parser.add_argument(
        '--opacity', type=float, default=0.5,
        help='weight of the label colours in the overlay, in (0, 1]')
    parser.add_argument(
        '--aug-test', action='store_true', help='multi-scale + flip test')
    parser.add_argument(
        '--learners', action='store_true',
        help='also save each learner\'s prediction')
    parser.add_argument(
        '--with-labels', action='store_true',
        help='write class names on the regions')
    parser.add_argument(
        '--no-vis', action='store_true',
        help='with --out-dir: write the label maps only')
    parser.add_argument(
        '--mirror', help='for a model name: base URL or folder holding the '
        'published checkpoint files (default: $SENFORMER_MIRROR)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.out_dir and args.out_file:
        parser.error('--out-file is for one image without --out-dir; give '
                     'one of them')
    return args


def _single_image(args) -> bool:
    """The original usage: one image file, its overlay to --out-file."""
    return args.out_dir is None and osp.isfile(args.img) and \
        not args.img.endswith('.txt')


def main(argv=None):
    args = parse_args(argv)
    from mmseg.apis.inferencer import collect_inputs
    from mmseg.apis.model_zoo import looks_like_model_name
    collect_inputs(args.img)  # a missing input fails before the model loads
    if not _single_image(args) and args.out_dir is None:
        raise ConfigError(f'{args.img} is not a single image: give --out-dir '
                          'for the label maps and overlays')
    if args.checkpoint is None and not looks_like_model_name(args.config):
        raise ConfigError(f'{args.config}: a config needs a CHECKPOINT '
                          'argument (only model names bring their own)')
    from mmseg.apis import Inferencer, keep_freed_memory

    inferencer = Inferencer(
        args.config, args.checkpoint, device=args.device,
        cfg_options=args.cfg_options, aug_test=args.aug_test,
        learners=args.learners, mirror=args.mirror)
    if args.device == 'cpu':
        keep_freed_memory()

    if not _single_image(args):
        results = inferencer(
            args.img, batch_size=args.batch_size, out_dir=args.out_dir,
            opacity=args.opacity, with_labels=args.with_labels,
            write_vis=not args.no_vis, return_predictions=False)
        print(f'wrote {len(results)} label maps to '
              f'{osp.join(args.out_dir, "pred")}' +
              ('' if args.no_vis else
               f' and overlays to {osp.join(args.out_dir, "vis")}'))
        return 0

    (result, ) = inferencer(args.img, progress=False)
    out_file = args.out_file or osp.splitext(args.img)[0] + '_seg.png'
    inferencer.write_overlay(args.img, result['pred_sem_seg'], out_file,
                             args.opacity, args.with_labels)
    print(f'wrote {out_file}')
    if args.learners:
        stem, ext = osp.splitext(out_file)
        for i, label in enumerate(result['learner_preds']):
            learner_file = f'{stem}_learner{i}{ext}'
            inferencer.write_overlay(args.img, label, learner_file,
                                     args.opacity, args.with_labels)
            print(f'wrote {learner_file}')
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
