"""Train a segmentor.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--accumulate N]
        [--vis-backend local|tensorboard|wandb] [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch|slurm|mpi] [--check-data]
        [--stop-signals SIG ...] [--debug]

Scalars always go to the work dir (``vis_data/``); ``--vis-backend
tensorboard`` or ``wandb`` also logs them to TensorBoard or Weights & Biases
(mmengine's ``TensorboardVisBackend`` / ``WandbVisBackend``), ``local`` to
nothing else. Without the option, TensorBoard is added when it is installed.

Multi-GPU / multi-node: ``bash tools/dist_train.sh CONFIG NGPUS`` (torchrun)
or ``tools/slurm_train.sh``; without CUDA the processes use gloo on CPU.

On SIGTERM or SIGUSR1 (``--stop-signals``) every rank stops after the
current iteration, rank 0 saves a checkpoint and the run exits with status
75 (``EXIT_PREEMPTED``); ``--resume`` continues from it. A second run in the
same work dir is refused while the first one lives.
"""
import argparse
import importlib
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

from mmseg.cli import (ConfigError, add_debug_argument,
                       attach_config_to_errors, load_config, run)

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
    parser.add_argument(
        '--check-data',
        action='store_true',
        help='first read every image and label map of the train and val '
        'sets and stop, listing every problem, if any is broken')
    parser.add_argument(
        '--check-data-workers',
        type=int,
        default=min(8, os.cpu_count() or 1),
        help='worker processes of --check-data (default: min(8, CPUs))')
    parser.add_argument(
        '--stop-signals',
        nargs='+',
        metavar='SIG',
        help='signals that stop training after the current iteration with a '
        'checkpoint (default: SIGTERM SIGUSR1; "none" to die on them '
        'instead)')
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
    if args.vis_backend is not None:
        set_vis_backend(cfg, args.vis_backend)
    else:
        add_tensorboard(cfg)
    if args.stop_signals is not None:
        set_stop_signals(cfg, args.stop_signals)
    return cfg


def set_stop_signals(cfg: Config, names) -> None:
    """Make the run's PreemptionHook stop on ``names`` (none: on none)."""
    from mmseg.engine.hooks import parse_signal
    signals = [] if [n.lower() for n in names] == ['none'] else list(names)
    for name in signals:
        try:
            parse_signal(name)
        except ValueError as e:
            raise ConfigError(f'--stop-signals: {e}') from None
    hooks = [
        h for h in cfg.get('custom_hooks', None) or []
        if h.get('type') not in ('PreemptionHook', 'mmseg.PreemptionHook')
    ]
    hooks.append(dict(type='PreemptionHook', signals=signals))
    cfg.custom_hooks = hooks


def check_data(cfg: Config, args) -> None:
    """``--check-data``: scan the datasets (on rank 0 only; the other
    ranks wait for it in the process group set-up)."""
    if os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) != '0':
        return
    from mmseg.datasets import DatasetError
    from mmseg.datasets.label_scan import scan_config
    problems, _ = scan_config(cfg, ('train', 'val'),
                              workers=args.check_data_workers,
                              progress=sys.stdout.isatty())
    if problems:
        raise DatasetError(
            f'--check-data: {problems} problem(s) in the datasets of '
            f'{args.config} (listed above); training was not started')
    print('--check-data: no problems found', flush=True)


def main(argv=None):
    args = parse_args(argv)
    from mmseg.engine import (EXIT_PREEMPTED, SegRunner, TrainingPreempted,
                              close_dist)
    from mmseg.engine.pretrained_weights import ensure_pretrained
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = build_config(args)
    with attach_config_to_errors(cfg):
        # missing backbone weights fail now, in one line saying how to get
        # them, rather than after the datasets are built
        ensure_pretrained(cfg.model)
        if args.check_data:
            check_data(cfg, args)
        runner = SegRunner.from_cfg(cfg)
        try:
            runner.train()
        except TrainingPreempted as stop:
            rank = os.environ.get('RANK')
            world = os.environ.get('WORLD_SIZE', '1')
            who = f' (rank {rank})' if rank is not None and \
                world != '1' else ''
            print(f'preempted{who}: {stop}', file=sys.stderr, flush=True)
            close_dist()
            return EXIT_PREEMPTED
        close_dist()


if __name__ == '__main__':
    sys.exit(run(main))
