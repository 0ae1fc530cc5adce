"""Write (or show) the training samples of a config with their label
overlay, after the training pipeline, to check a dataset visually.

Usage::

    python tools/browse_dataset.py CONFIG --output-dir vis --not-show \
        --num 20
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from mmseg.registry import DATASETS, VISUALIZERS
from mmseg.utils import register_all_modules


def parse_args():
    parser = argparse.ArgumentParser(
        description='Draw the label maps of a dataset after the training '
        'pipeline')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--output-dir', default=None, help='write the drawings there')
    parser.add_argument(
        '--not-show', action='store_true', help='do not open a window')
    parser.add_argument(
        '--show-interval', type=float, default=2,
        help='seconds each window stays')
    parser.add_argument(
        '--num', type=int, default=None,
        help='number of samples (default: all)')
    parser.add_argument(
        '--split', default='train', choices=['train', 'val', 'test'],
        help="which dataloader's dataset to browse")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.not_show and args.output_dir is None:
        sys.exit('error: nothing to do: give --output-dir or drop '
                 '--not-show')
    if not osp.isfile(args.config):
        sys.exit(f'error: config {args.config!r} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmseg'))

    loader_key = f'{args.split}_dataloader'
    if loader_key not in cfg:
        sys.exit(f'error: the config has no {loader_key}')
    dataset = DATASETS.build(cfg[loader_key].dataset)
    vis_cfg = dict(cfg.get('visualizer', dict(type='SegLocalVisualizer')))
    vis_cfg.update(name='browse_dataset', save_dir=None, vis_backends=None)
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = dataset.metainfo

    count = len(dataset) if args.num is None else min(args.num,
                                                      len(dataset))
    progress = ProgressBar(count)
    for index in range(count):
        item = dataset[index]
        sample = item['data_samples']
        # packed images are C x H x W BGR; the visualizer draws RGB
        image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1].copy()
        stem = osp.splitext(osp.basename(sample.get('img_path') or
                                         f'{index}'))[0]
        out_file = osp.join(args.output_dir, f'{index:05d}_{stem}.png') \
            if args.output_dir else None
        visualizer.add_datasample(
            stem,
            image,
            sample,
            draw_pred=False,
            show=not args.not_show,
            wait_time=args.show_interval,
            out_file=out_file)
        progress.update()


if __name__ == '__main__':
    main()
