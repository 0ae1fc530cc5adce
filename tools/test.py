"""Evaluate a checkpoint on a config's test set.

    python tools/test.py CONFIG CHECKPOINT [--aug-test | --tta] [--out DIR]
        [--format-only] [--show-dir DIR] [--per-learner] [--work-dir DIR]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
        [--debug]
    python tools/test.py MODEL_NAME [CHECKPOINT] [--mirror URL_OR_DIR] ...

Prints a per-class table and mIoU/mAcc/aAcc and writes them as JSON into
the work dir. ``--aug-test`` (or MMSegmentation 1.x's name ``--tta``) is the
multi-scale (0.5 ... 1.75) + flip test; ``--out`` saves the predicted label
maps as png; ``--format-only`` only saves them, without needing labels (for
Cityscapes in label ids, ``<image stem>.png``, as its test server wants);
``--show-dir`` saves overlays; ``--per-learner`` also reports each SenFormer
learner's mIoU.
Several GPUs: ``bash tools/dist_test.sh CONFIG CHECKPOINT NGPUS [...]``.
A published model's name (``tools/model_zoo.py list``) stands for its config
and its checkpoint, downloaded once (see mmseg/apis/model_zoo.py).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

from mmengine.config import Config, ConfigDict, DictAction

from mmseg.cli import (ConfigError, add_debug_argument,
                       attach_config_to_errors, load_config, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate a segmentor checkpoint')
    parser.add_argument(
        'config', help='test config file path, or a published model name')
    parser.add_argument(
        'checkpoint', nargs='?',
        help='checkpoint file (default for a model name: its published one)')
    parser.add_argument(
        '--mirror', help='for a model name: base URL or folder holding the '
        'published checkpoint files (default: $SENFORMER_MIRROR)')
    parser.add_argument(
        '--work-dir', help='where the metrics JSON and logs go '
        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--aug-test', '--tta', dest='aug_test', action='store_true',
        help='multi-scale + flip test (the config\'s tta_pipeline); --tta '
        'is MMSegmentation 1.x\'s name for it')
    parser.add_argument(
        '--out', help='save the predicted label maps (png) in this folder')
    parser.add_argument(
        '--format-only', action='store_true',
        help='only save the predictions in --out, computing no metric and '
        'reading no label map (Cityscapes: in label ids, for its test '
        'server)')
    parser.add_argument(
        '--show-dir', help='save prediction overlays in this folder')
    parser.add_argument(
        '--show', action='store_true', help='show overlays in a window')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per --show image')
    parser.add_argument(
        '--per-learner', action='store_true',
        help='also report the mIoU of each SenFormer learner')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _evaluators(cfg: Config):
    evaluator = cfg.test_evaluator
    return evaluator if isinstance(evaluator, list) else [evaluator]


def _without_annotations(transforms):
    """A pipeline (list, or TestTimeAug's nested lists) without
    LoadAnnotations."""
    kept = []
    for t in transforms:
        if isinstance(t, list):
            t = _without_annotations(t)
            if t:
                kept.append(t)
        elif t.get('type') != 'LoadAnnotations':
            if t.get('type') == 'TestTimeAug':
                t = ConfigDict(t, transforms=_without_annotations(
                    t['transforms']))
            kept.append(t)
    return kept


def fill_slide_defaults(cfg: Config) -> None:
    """``model.test_cfg.mode='slide'`` without ``crop_size`` / ``stride``:
    windows of the config's training crop size (``data_preprocessor.size``)
    every two thirds of it (MMSegmentation's 512 / 341), logged."""
    test_cfg = cfg.model.get('test_cfg') or {}
    if test_cfg.get('mode') != 'slide':
        return
    filled = []
    if 'crop_size' not in test_cfg:
        size = cfg.model.get('data_preprocessor', {}).get('size')
        if not size:
            raise ConfigError(
                "model.test_cfg.mode='slide' needs model.test_cfg.crop_size "
                '(and stride): the config has no training crop size '
                '(model.data_preprocessor.size) to default to')
        test_cfg.crop_size = tuple(int(s) for s in size)
        filled.append(f'crop_size={test_cfg.crop_size}')
    if 'stride' not in test_cfg:
        test_cfg.stride = tuple(max(1, 2 * int(c) // 3)
                                for c in test_cfg.crop_size)
        filled.append(f'stride={test_cfg.stride}')
    if filled:
        print(f'slide inference: {", ".join(filled)} (defaults: the '
              'training crop size, a stride of two thirds of it)')


def set_format_only(cfg: Config, args) -> None:
    """Predictions only, for images without labels (a test split): no
    label maps read, no metric computed; Cityscapes saves label ids."""
    if not args.out:
        raise ConfigError('--format-only saves the predictions in --out DIR; '
                          'give --out')
    if args.per_learner:
        raise ConfigError('--format-only computes no metric; --per-learner '
                          'has nothing to report')
    dataset = cfg.test_dataloader.dataset
    dataset.setdefault('data_prefix', ConfigDict())
    dataset.data_prefix.seg_map_path = None
    for holder, key in ((dataset, 'pipeline'), (cfg, 'tta_pipeline'),
                        (cfg, 'test_pipeline')):
        if holder.get(key) is not None:
            holder[key] = _without_annotations(holder[key])
    for evaluator in _evaluators(cfg):
        evaluator.format_only = True
        if dataset.get('type') == 'CityscapesDataset' and \
                evaluator.get('type') == 'IoUMetric':
            evaluator.type = 'CityscapesMetric'


def build_config(args) -> Config:
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    # backbone ImageNet weights are useless here: the checkpoint has all
    cfg.model.pretrained = None
    cfg.model.backbone.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    cfg.load_from = None  # loaded strictly below, with a readable report

    if args.per_learner:
        cfg.model.setdefault('test_cfg', ConfigDict(mode='whole'))
        cfg.model.test_cfg.return_learners = True
        for evaluator in _evaluators(cfg):
            evaluator.per_learner = True
    if args.out:
        for evaluator in _evaluators(cfg):
            evaluator.output_dir = args.out
            evaluator.keep_results = True
    if args.format_only:
        set_format_only(cfg, args)
    if args.show or args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            hook = cfg.default_hooks.visualization = ConfigDict(
                type='SegVisualizationHook')
        hook.draw = True
        if args.show:
            hook.show = True
            hook.wait_time = args.wait_time
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir
            hook.out_dir = args.show_dir
    fill_slide_defaults(cfg)
    if args.aug_test:
        if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
            raise ConfigError(f'--aug-test needs tta_pipeline and tta_model '
                              f'in {args.config}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mmseg.apis.model_zoo import looks_like_model_name, resolve_model
    if looks_like_model_name(args.config):
        args.config, args.checkpoint = resolve_model(
            args.config, args.checkpoint, mirror=args.mirror)
    elif args.checkpoint is None:
        raise ConfigError(f'{args.config}: a config needs a CHECKPOINT '
                          'argument (only model names bring their own)')
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    from mmengine.model import is_model_wrapper

    from mmseg.apis import keep_freed_memory
    from mmseg.engine import (SegRunner, atomic_write_text, close_dist,
                              load_checkpoint)
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = build_config(args)
    with attach_config_to_errors(cfg):
        runner = SegRunner.from_cfg(cfg)

        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        if args.aug_test:
            model = model.module  # the segmentor inside the TTA wrapper
        load_checkpoint(model, args.checkpoint, map_location='cpu')
        if next(model.parameters()).device.type == 'cpu':
            keep_freed_memory()
        metrics = runner.test()

        if runner.rank == 0:
            os.makedirs(runner.work_dir, exist_ok=True)
            stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime())
            path = osp.join(runner.work_dir, f'eval_{stamp}.json')
            atomic_write_text(
                path,
                json.dumps(
                    dict(
                        config=args.config,
                        checkpoint=args.checkpoint,
                        aug_test=args.aug_test,
                        metrics=metrics),
                    indent=2))
            runner.logger.info(f'metrics written to {path}')
        close_dist()
        return metrics


if __name__ == '__main__':
    sys.exit(run(main))
