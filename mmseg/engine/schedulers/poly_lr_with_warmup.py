"""The learning-rate schedule the published SenFormer models were trained
with: MMSegmentation 0.x's ``poly`` policy with a linear warm-up."""
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from mmseg.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class PolyLRWithWarmup(LRSchedulerMixin, _ParamScheduler):
    """Polynomial decay whose first iterations are scaled by a linear
    warm-up factor, as one product.

    At update ``i`` (iterations counted from ``begin``, divided by
    ``iters_per_update``) of ``T = (end - begin) / iters_per_update``, a
    parameter group whose initial rate is ``lr0`` gets::

        poly(i)  = (lr0 - eta_min) * (1 - i / T) ** power + eta_min
        lr(i)    = poly(i) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))
                   if i < warmup_iters, else poly(i)

    This is the schedule of the published configs (mmcv's
    ``PolyLrUpdaterHook`` with ``warmup='linear'``). mmengine's
    ``LinearLR`` followed by ``PolyLR`` from ``warmup_iters`` is a different
    schedule (the decay starts late, and differs by up to 1 %); its
    chained updates also drift in floating point over long schedules. The
    value here is computed in closed form at every step, so a resumed run
    gets the same rates as an uninterrupted one.

    Args:
        optimizer: the optimizer or optimizer wrapper.
        power: exponent of the decay.
        eta_min: learning rate at the end of the schedule.
        warmup_iters: updates of the warm-up; 0 disables it.
        warmup_ratio: factor of the first update's rate.
        begin, end: iterations of the schedule (``end`` is the run's
            ``max_iters`` in the published configs).
        iters_per_update: iterations whose gradients are accumulated into
            one optimizer update (``optim_wrapper.accumulative_counts``):
            the rate then advances once per update and stays constant
            within one, as in the run without accumulation.
        last_step, by_epoch, verbose: see mmengine's ``_ParamScheduler``.
    """

    def __init__(self,
                 optimizer,
                 power: float = 1.0,
                 eta_min: float = 0.0,
                 warmup_iters: int = 0,
                 warmup_ratio: float = 1e-6,
                 begin: int = 0,
                 end: int = INF,
                 iters_per_update: int = 1,
                 last_step: int = -1,
                 by_epoch: bool = False,
                 verbose: bool = False):
        if end == INF:
            raise ValueError('PolyLRWithWarmup needs `end`, the iteration '
                             'where the rate reaches eta_min')
        if warmup_iters < 0:
            raise ValueError(
                f'warmup_iters must be >= 0, got {warmup_iters}')
        if not isinstance(iters_per_update, int) or iters_per_update < 1:
            raise ValueError(f'iters_per_update must be a positive integer, '
                             f'got {iters_per_update!r}')
        if not 0 < warmup_ratio <= 1:
            raise ValueError(
                f'warmup_ratio must be in (0, 1], got {warmup_ratio}')
        self.power = power
        self.eta_min = eta_min
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.iters_per_update = iters_per_update
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    def _get_value(self):
        step = self.last_step // self.iters_per_update
        total = (self.end - self.begin) / self.iters_per_update
        decay = (1 - step / total)**self.power
        warmup = 1.0
        if step < self.warmup_iters:
            warmup = 1 - (1 - step / self.warmup_iters) * (
                1 - self.warmup_ratio)
        return [((base - self.eta_min) * decay + self.eta_min) * warmup
                for base in self.base_values]
