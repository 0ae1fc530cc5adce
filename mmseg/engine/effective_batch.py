"""Keeping a recipe's effective batch size on fewer devices.

The published schedules update the weights with 16 images per iteration
(8 GPUs x 2, or 4 x 4). With fewer images per iteration a run either
scales the learning rate linearly (:func:`enable_auto_scale_lr`, mmengine's
``auto_scale_lr``) or accumulates the gradients of several iterations per
update (:func:`accumulate_gradients`), which keeps the recipe itself.
"""
from mmengine.config import Config


def enable_auto_scale_lr(cfg: Config) -> None:
    """Scale the learning rate by (total batch size / the config's
    ``auto_scale_lr.base_batch_size``) when the runner starts."""
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise ValueError(
            '--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
            'base_batch_size=N)` in the config: the batch size its learning '
            'rate was set for')
    auto_scale_lr.enable = True


def accumulate_gradients(cfg: Config, counts: int) -> None:
    """Update the weights once every ``counts`` iterations, and make every
    iteration-counted quantity ``counts`` times longer (``max_iters``,
    validation, checkpoint and logging intervals, every learning-rate
    scheduler's ``begin``/``end``), so that the run makes as many updates,
    of ``counts`` times the per-iteration batch, at the same learning rates
    as the config's (:class:`PolyLRWithWarmup` advances once per update;
    other schedulers advance every iteration, a fraction of an update
    apart).

    mmengine's ``auto_scale_lr`` counts one iteration's images only; its
    ``base_batch_size`` is divided by ``counts`` here so that both options
    compose.
    """
    if not isinstance(counts, int) or counts < 1:
        raise ValueError(f'gradient accumulation needs a positive integer '
                         f'count, got {counts!r}')
    if counts == 1:
        return
    cfg.optim_wrapper.accumulative_counts = counts
    train_cfg = cfg.train_cfg
    if train_cfg.get('type', 'IterBasedTrainLoop') != 'IterBasedTrainLoop':
        raise ValueError('gradient accumulation is implemented for '
                         'iteration-based training (IterBasedTrainLoop), not '
                         f'{train_cfg.type}')
    train_cfg.max_iters *= counts
    if 'val_interval' in train_cfg:
        train_cfg.val_interval *= counts
    hooks = cfg.get('default_hooks', {})
    for name in ('checkpoint', 'logger'):
        if hooks.get(name) and 'interval' in hooks[name]:
            hooks[name].interval *= counts
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers:
        if scheduler.get('by_epoch', True):
            raise ValueError(
                f'gradient accumulation stretches iteration-based schedules; '
                f'scheduler {scheduler.get("type")} has by_epoch=True')
        for key in ('begin', 'end'):
            if key in scheduler:
                scheduler[key] *= counts
        if scheduler.type == 'PolyLRWithWarmup':
            # advances once per update: exactly the recipe's rates
            scheduler.iters_per_update = counts
        elif 'warmup_iters' in scheduler:
            scheduler.warmup_iters *= counts
    auto_scale_lr = cfg.get('auto_scale_lr')
    if auto_scale_lr and 'base_batch_size' in auto_scale_lr:
        auto_scale_lr.base_batch_size /= counts
