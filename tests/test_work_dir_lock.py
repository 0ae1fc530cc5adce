"""WorkDirLock without subprocesses (the command-line cases are in
test_preemption.py)."""
import json
import os
import socket

import pytest

from mmseg.engine import WorkDirBusyError, WorkDirLock
from mmseg.engine.hooks import parse_signal


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    first = WorkDirLock(str(tmp_path))
    assert first.acquire() is None
    owner = json.loads((tmp_path / 'train.lock').read_text())
    assert owner['host'] == socket.gethostname() and 'pid' in owner
    with pytest.raises(WorkDirBusyError,
                       match=f"in use by another training run \\(host "
                       f"{socket.gethostname()}, pid {owner['pid']}"):
        WorkDirLock(str(tmp_path)).acquire()
    first.release()
    assert not (tmp_path / 'train.lock').exists()
    second = WorkDirLock(str(tmp_path))
    assert second.acquire() is None  # free again
    second.release()


def test_the_lock_file_of_a_dead_run_is_taken_over(tmp_path):
    dead = dict(host='node7', pid=424242, started='yesterday')
    (tmp_path / 'train.lock').write_text(json.dumps(dead))
    lock = WorkDirLock(str(tmp_path))
    assert lock.acquire() == dead
    assert json.loads((tmp_path / 'train.lock').read_text())['pid'] != 424242
    lock.release()


def test_a_forked_child_does_not_keep_a_dead_runs_lock(tmp_path):
    """A dataloader worker forked by the run must not hold the lock once
    the run is gone (killed while its workers still live)."""
    holder = WorkDirLock(str(tmp_path))
    holder.acquire()
    read_end, write_end = os.pipe()
    started_read, started_write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker: lives on until the test ends
        os.close(write_end)
        os.write(started_write, b'.')
        os.read(read_end, 1)
        os._exit(0)
    try:
        os.close(read_end)
        os.read(started_read, 1)  # the child runs (its fork handlers ran)
        # the run dies without releasing: only its descriptor goes
        os.close(holder._fd)
        holder._fd = None
        with WorkDirLock(str(tmp_path)):
            pass
    finally:
        os.close(write_end)
        os.close(started_read)
        os.close(started_write)
        os.waitpid(child, 0)


def test_parse_signal_names():
    import signal
    assert parse_signal('SIGUSR1') == parse_signal('usr1') == \
        parse_signal(int(signal.SIGUSR1)) == signal.SIGUSR1
    with pytest.raises(ValueError, match='cannot be caught'):
        parse_signal('KILL')
    with pytest.raises(ValueError, match='unknown signal'):
        parse_signal('SIGNOPE')
