"""Train a segmentor.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--accumulate N] [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch|slurm|mpi] [--debug]

Multi-GPU / multi-node: ``bash tools/dist_train.sh CONFIG NGPUS`` (torchrun)
or ``tools/slurm_train.sh``; without CUDA the processes use gloo on CPU.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

from mmseg.utils.cli import add_debug_argument, load_config, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CKPT',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: float16 autocast on CUDA (with loss '
        'scaling), bfloat16 on CPU')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate linearly to the total batch size '
        '(GPUs x batch_size x --accumulate) from the config\'s '
        'auto_scale_lr.base_batch_size (16 for the published configs)')
    parser.add_argument(
        '--accumulate',
        type=int,
        default=1,
        metavar='N',
        help='update the weights every N iterations with their summed '
        'gradients, and stretch the schedule, intervals and max_iters N '
        'times: the published recipe (16 images per update) on fewer GPUs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        metavar='KEY=VALUE',
        help='override config entries, e.g. '
        'train_dataloader.batch_size=2 "model.backbone.depth=101"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torchrun < 2.0 passes --local-rank; newer ones set LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_amp(cfg: Config) -> None:
    import torch
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        return
    wrapper.type = 'AmpOptimWrapper'
    if torch.cuda.is_available():
        wrapper.setdefault('loss_scale', 'dynamic')
    else:
        # float16 on CPU is slow and needs scaling; bfloat16 needs neither
        wrapper.dtype = 'bfloat16'


def add_tensorboard(cfg: Config) -> None:
    """Log to TensorBoard too when it is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return
    visualizer = cfg.get('visualizer')
    if visualizer is None:
        return
    backends = visualizer.setdefault('vis_backends', [])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))


def build_config(args) -> Config:
    from mmseg.engine.effective_batch import (accumulate_gradients,
                                              enable_auto_scale_lr)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        setup_amp(cfg)
    accumulate_gradients(cfg, args.accumulate)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    add_tensorboard(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mmseg.engine import SegRunner, close_dist
    from mmseg.utils import register_all_modules
    from mmseg.utils.pretrained import ensure_pretrained
    register_all_modules(init_default_scope=False)
    cfg = build_config(args)
    # missing backbone weights fail now, in one line saying how to get
    # them, rather than after the datasets are built
    ensure_pretrained(cfg.model)
    runner = SegRunner.from_cfg(cfg)
    runner.train()
    close_dist()


if __name__ == '__main__':
    sys.exit(run(main))
