"""A DataLoader timeout that does not blind PyTorch to dead workers."""
import time

from torch.utils.data import DataLoader
from torch.utils.data._utils import MP_STATUS_CHECK_INTERVAL
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter


class _WatchedIterator(_MultiProcessingDataLoaderIter):
    """Waits for a batch in short polls, as PyTorch does without a timeout
    (each poll checks that every worker is alive), and gives up after the
    loader's ``timeout``.

    With ``timeout > 0`` PyTorch instead blocks in one wait of the whole
    timeout, so a worker killed before its SIGCHLD handler is in place (or
    whose signal is otherwise missed) stalls the run for the full timeout.
    """

    def _get_data(self):
        if self._timeout <= 0:
            return super()._get_data()
        deadline = time.monotonic() + self._timeout
        while True:
            if self._pin_memory and not self._pin_memory_thread.is_alive():
                raise RuntimeError('Pin memory thread exited unexpectedly')
            left = deadline - time.monotonic()
            # raises "DataLoader worker ... exited unexpectedly" for a dead
            # worker at every poll
            success, data = self._try_get_data(
                max(min(MP_STATUS_CHECK_INTERVAL, left), 0.01))
            if success:
                return data
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f'DataLoader timed out after {self._timeout} seconds')


class WatchedDataLoader(DataLoader):
    """:class:`torch.utils.data.DataLoader` whose ``timeout`` (seconds to
    wait for one batch from the workers) keeps the dead-worker checks.

    :meth:`SegRunner.build_dataloader
    <mmseg.engine.SegRunner.build_dataloader>` turns mmengine's loaders with
    workers into this class (only the iterator differs).
    """

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        self.check_worker_number_rationality()
        return _WatchedIterator(self)
