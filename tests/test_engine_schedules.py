"""The published learning-rate schedule, and keeping the recipe's effective
batch size with fewer images per iteration."""
import os.path as osp
import warnings

import pytest
import torch
from mmengine.config import Config

from mmseg.engine import PolyLRWithWarmup
from mmseg.engine.effective_batch import (accumulate_gradients,
                                          enable_auto_scale_lr)
from tests.conftest import CONFIG_ROOT

R50_ADE = osp.join(CONFIG_ROOT, 'senformer', 'ade20k',
                   'senformerNWS_fpnt_r50_512x512_160k_ade20k.py')


def _rates(scheduler, optimizer, steps):
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        for _ in range(steps):
            rates.append([g['lr'] for g in optimizer.param_groups])
            scheduler.step()
    return rates


def _optimizer(*rates):
    return torch.optim.SGD([{
        'params': [torch.zeros(1)],
        'lr': lr
    } for lr in rates])


def test_poly_with_warmup_is_one_product():
    optimizer = _optimizer(1e-4, 1e-5)
    scheduler = PolyLRWithWarmup(
        optimizer, power=0.9, warmup_iters=10, warmup_ratio=1e-6, end=40)
    rates = _rates(scheduler, optimizer, 40)
    for i, (lr, lr_backbone) in enumerate(rates):
        poly = (1 - i / 40)**0.9
        warmup = 1 - (1 - i / 10) * (1 - 1e-6) if i < 10 else 1.0
        assert lr == pytest.approx(1e-4 * poly * warmup, rel=1e-12)
        assert lr_backbone == pytest.approx(1e-5 * poly * warmup, rel=1e-12)
    assert rates[0][0] == pytest.approx(1e-10)


def test_poly_with_warmup_resumes_from_its_state():
    optimizer = _optimizer(1e-3)
    straight = PolyLRWithWarmup(optimizer, warmup_iters=5, end=30)
    expected = _rates(straight, optimizer, 30)

    optimizer = _optimizer(1e-3)
    first = PolyLRWithWarmup(optimizer, warmup_iters=5, end=30)
    head = _rates(first, optimizer, 12)
    state = first.state_dict()
    resumed_optimizer = _optimizer(1e-3)
    resumed_optimizer.param_groups[0]['initial_lr'] = 1e-3
    resumed = PolyLRWithWarmup(
        resumed_optimizer, warmup_iters=5, end=30, last_step=0)
    resumed.load_state_dict(state)
    resumed_optimizer.param_groups[0]['lr'] = optimizer.param_groups[0]['lr']
    tail = _rates(resumed, resumed_optimizer, 18)
    assert head + tail == expected


@pytest.mark.parametrize('kwargs, culprit', [
    (dict(), 'end'),
    (dict(end=10, warmup_iters=-1), 'warmup_iters'),
    (dict(end=10, warmup_ratio=0.0), 'warmup_ratio'),
    (dict(end=10, iters_per_update=0), 'iters_per_update'),
])
def test_poly_with_warmup_rejects_bad_arguments(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        PolyLRWithWarmup(_optimizer(1e-3), **kwargs)


def test_accumulation_stretches_every_iteration_count():
    cfg = Config.fromfile(R50_ADE)
    accumulate_gradients(cfg, 2)
    assert cfg.optim_wrapper.accumulative_counts == 2
    assert cfg.train_cfg.max_iters == 320000
    assert cfg.train_cfg.val_interval == 4000
    assert cfg.default_hooks.checkpoint.interval == 32000
    assert cfg.default_hooks.logger.interval == 100
    (scheduler, ) = cfg.param_scheduler
    assert (scheduler.begin, scheduler.end, scheduler.warmup_iters,
            scheduler.iters_per_update) == (0, 320000, 1500, 2)
    assert cfg.auto_scale_lr.base_batch_size == 8


def test_accumulated_schedule_gives_the_recipe_rates_per_update():
    """Every iteration of update k of an accumulated run gets the recipe's
    rate of iteration k."""
    cfg = Config.fromfile(R50_ADE)
    accumulate_gradients(cfg, 4)
    (scheduler_cfg, ) = cfg.param_scheduler
    args = {k: v for k, v in scheduler_cfg.items() if k != 'type'}
    optimizer = _optimizer(1e-4)
    rates = _rates(PolyLRWithWarmup(optimizer, **args), optimizer, 4 * 3000)
    for update in (0, 1, 100, 1499, 1500, 2999):
        warmup = 1 - (1 - update / 1500) * (1 - 1e-6) if update < 1500 else 1
        recipe = 1e-4 * (1 - update / 160000) * warmup
        for micro in range(4 * update, 4 * update + 4):
            assert rates[micro][0] == pytest.approx(recipe, rel=1e-12)


def test_accumulation_is_refused_for_bad_counts_and_epoch_schedules():
    cfg = Config.fromfile(R50_ADE)
    with pytest.raises(ValueError, match='positive integer'):
        accumulate_gradients(cfg, 0)
    cfg.param_scheduler[0].by_epoch = True
    with pytest.raises(ValueError, match='by_epoch'):
        accumulate_gradients(cfg, 2)


def test_auto_scale_lr_needs_a_base_batch_size():
    cfg = Config.fromfile(R50_ADE)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr.enable is True
    cfg.auto_scale_lr = dict(enable=False)
    with pytest.raises(ValueError, match='base_batch_size'):
        enable_auto_scale_lr(cfg)
