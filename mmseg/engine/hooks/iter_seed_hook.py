"""Per-iteration seeding of the model's random numbers, for exact resume."""
import numpy as np
import torch
from mmengine.hooks import Hook

from mmseg.registry import HOOKS


def iteration_seed(seed: int, iteration: int) -> int:
    """A 63-bit seed mixed from the run's seed and the iteration
    (neighbouring iterations get unrelated streams)."""
    state = np.random.SeedSequence([seed % 2**32, iteration])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


@HOOKS.register_module()
class IterSeedHook(Hook):
    """Seed torch's generator (CPU and CUDA) before every training step
    from ``(runner.seed, iteration)``.

    Dropout and drop-path then draw numbers that depend only on the
    iteration, so a run resumed from a checkpoint (which holds no generator
    state) repeats exactly what the uninterrupted run would have done, even
    when validation or data loading consumed torch random numbers in
    between. Ranks differ exactly as mmengine seeds them: ``runner.seed``
    is per rank with ``randomness.diff_rank_seed=True``, shared otherwise.
    The data side is reproduced by mmengine itself: the sampler is
    seeded, each dataloader worker is seeded from the run's seed, and a
    resumed loop replays the data loading of the finished iterations. Numpy
    and Python generators are left alone: with ``num_workers=0`` the data
    pipeline uses them in the main process and that replay restores them.

    :class:`~mmseg.engine.SegRunner` adds it to every training run.
    """

    priority = 'VERY_HIGH'

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        torch.manual_seed(iteration_seed(runner.seed, runner.iter))
