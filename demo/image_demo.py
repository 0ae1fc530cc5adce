"""Segment an image and save the prediction overlaid on it.

    python demo/image_demo.py IMG CONFIG CHECKPOINT [--out-file F]
        [--device cpu|cuda:0] [--opacity 0.5] [--aug-test] [--learners]
        [--cfg-options KEY=VALUE ...] [--debug]

The overlay has the image's size and uses the dataset's palette.
``--learners`` also writes each SenFormer learner's own prediction next to
the output (``F_learner0.png`` ...), to see what the ensemble adds.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmseg.utils.cli import add_debug_argument, load_config, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Segment an image and write the overlay')
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-file', default=None,
        help='output image (default: IMG_NAME_seg.png beside the image)')
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
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.img):
        raise FileNotFoundError(f'image not found: {args.img}')
    import mmcv
    from mmengine.structures import PixelData

    from mmseg.apis import inference_model, init_model
    from mmseg.structures import SegDataSample
    from mmseg.utils import keep_freed_memory
    from mmseg.visualization import SegLocalVisualizer

    cfg_options = dict(args.cfg_options or {})
    if args.learners:
        cfg_options['model.test_cfg.return_learners'] = True
    model = init_model(
        load_config(args.config, cfg_options), args.checkpoint, args.device)
    if args.device == 'cpu':
        keep_freed_memory()
    result = inference_model(model, args.img, aug_test=args.aug_test)

    out_file = args.out_file or osp.splitext(args.img)[0] + '_seg.png'
    image = mmcv.imread(args.img, channel_order='rgb')
    visualizer = SegLocalVisualizer(
        name=f'demo-{osp.abspath(out_file)}',
        alpha=args.opacity,
        **{k: v for k, v in model.dataset_meta.items()
           if k in ('classes', 'palette')})
    visualizer.add_datasample(
        'prediction', image, result, draw_gt=False,
        with_labels=args.with_labels, out_file=out_file)
    print(f'wrote {out_file}')
    if args.learners:
        stem, ext = osp.splitext(out_file)
        for i, logits in enumerate(result.learner_logits):
            sample = SegDataSample(
                pred_sem_seg=PixelData(
                    data=logits.data.argmax(dim=0, keepdim=True)))
            learner_file = f'{stem}_learner{i}{ext}'
            visualizer.add_datasample(
                f'learner{i}', image, sample, draw_gt=False,
                with_labels=args.with_labels, out_file=learner_file)
            print(f'wrote {learner_file}')


if __name__ == '__main__':
    sys.exit(run(main))
