"""Train a segmentor.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--vis-backend local|tensorboard|wandb]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
        [--debug]

Scalars always go to the work dir (``vis_data/``); ``--vis-backend
tensorboard`` or ``wandb`` also logs them to TensorBoard or Weights & Biases
(mmengine's ``TensorboardVisBackend`` / ``WandbVisBackend``), ``local`` to
nothing else. Without the option, TensorBoard is added when it is installed.

Multi-GPU / multi-node: ``bash tools/dist_train.sh CONFIG NGPUS`` (torchrun)
or ``tools/slurm_train.sh``; without CUDA the processes use gloo on CPU.
"""
import argparse
import importlib
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

from mmseg.utils.cli import (ConfigError, add_debug_argument, load_config,
                             run)

# --vis-backend: mmengine backend type and the package it needs
VIS_BACKENDS = {
    'local': (None, None),
    'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
    'wandb': ('WandbVisBackend', 'wandb'),
}


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
    parser.add_argument(
        '--vis-backend',
        choices=sorted(VIS_BACKENDS),
        help='where scalars go besides the work dir: tensorboard or wandb '
        '(needs that package), or local for nowhere else (default: '
        'tensorboard when installed)')
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


def set_vis_backend(cfg: Config, name: str) -> None:
    """The work dir's LocalVisBackend plus the chosen one (none for
    ``local``), replacing the config's other backends."""
    backend_type, package = VIS_BACKENDS[name]
    if package is not None:
        try:
            importlib.import_module(package)
        except ImportError as e:
            raise ConfigError(
                f'--vis-backend {name} needs the package {package!r}, which '
                f'is not installed: pip install {package}') from e
    visualizer = cfg.get('visualizer')
    if visualizer is None:
        raise ConfigError(f'--vis-backend {name}: the config has no '
                          'visualizer to log with')
    backends = [b for b in visualizer.get('vis_backends') or []
                if b.get('type') == 'LocalVisBackend'] or [
                    dict(type='LocalVisBackend')]
    if backend_type is not None:
        backend = dict(type=backend_type)
        if name == 'wandb':
            # the run is named after the work dir; wandb reads the project
            # (default here: senformer), entity and mode from WANDB_*
            backend['init_kwargs'] = dict(
                name=osp.basename(osp.normpath(cfg.work_dir)))
            if not os.environ.get('WANDB_PROJECT'):
                backend['init_kwargs']['project'] = 'senformer'
        backends.append(backend)
    visualizer.vis_backends = backends


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
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        setup_amp(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.vis_backend is not None:
        set_vis_backend(cfg, args.vis_backend)
    else:
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
