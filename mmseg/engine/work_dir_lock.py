"""One training run per work directory.

Two runs writing into one work directory (a requeued job starting while
the old one still runs, a second launch by mistake) would interleave their
checkpoints and ``last_checkpoint``. :class:`WorkDirLock` holds an
exclusive ``flock`` on ``work_dir/train.lock`` for the whole run; the file
names the holder (host, pid, start time, command). The operating system
drops the lock when its process dies, however it dies, so the lock of a
killed run is never in the way: the next run takes it over and logs whose
it was. A forked child (a dataloader worker) would share the lock and keep
it past its parent's death, so children close their copy at fork.
"""
import errno
import fcntl
import json
import os
import os.path as osp
import socket
import sys
import time
import weakref
from typing import Optional

from mmseg.utils.errors import SenFormerError

#: name of the lock file inside the work directory
LOCK_FILENAME = 'train.lock'

# flock errors meaning "this file system has no (working) flock"
_NO_FLOCK = (errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


class WorkDirBusyError(SenFormerError, RuntimeError):
    """Another live run holds the work directory."""


# the locks this process holds, whose copies forked children close
_HELD: 'weakref.WeakSet[WorkDirLock]' = weakref.WeakSet()


def _close_inherited_locks() -> None:
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def describe_owner(owner: Optional[dict]) -> str:
    """``host H, pid P, started T`` for the content of a lock file."""
    if not owner:
        return 'details unreadable'
    parts = [f'host {owner.get("host", "?")}', f'pid {owner.get("pid", "?")}']
    if owner.get('started'):
        parts.append(f'started {owner["started"]}')
    if owner.get('slurm_job_id'):
        parts.append(f'Slurm job {owner["slurm_job_id"]}')
    return ', '.join(parts)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class WorkDirLock:
    """Exclusive lock of a work directory for one training run.

    Args:
        work_dir: the run's work directory (created if needed).
    """

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_FILENAME)
        self._fd: Optional[int] = None

    @staticmethod
    def _read(fd: int) -> Optional[dict]:
        os.lseek(fd, 0, os.SEEK_SET)
        data = b''
        while True:
            block = os.read(fd, 65536)
            if not block:
                break
            data += block
        if not data.strip():
            return None
        try:
            owner = json.loads(data.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def _busy(self, owner: Optional[dict]) -> WorkDirBusyError:
        return WorkDirBusyError(
            f'work dir {self.work_dir} is in use by another training run '
            f'({describe_owner(owner)}; lock {self.path}): wait for it to '
            'end or stop it, or choose another --work-dir')

    def acquire(self) -> Optional[dict]:
        """Take the lock.

        Returns:
            The content of the lock file a dead run left behind (taken
            over), or None when the directory was free.

        Raises:
            WorkDirBusyError: a live run holds it; the message names it.
        """
        os.makedirs(self.work_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                stale = self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            # a run that ended meanwhile unlinks the file it locked: then
            # this lock is on a deleted file and worthless; start over
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        _HELD.add(self)
        owner = dict(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            command=' '.join([osp.basename(sys.argv[0])] + sys.argv[1:]))
        if os.environ.get('SLURM_JOB_ID'):
            owner['slurm_job_id'] = os.environ['SLURM_JOB_ID']
        # written in place: a rename would put a new, unlocked file there
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(owner) + '\n').encode('utf-8'))
        os.fsync(fd)
        return stale

    def _lock(self, fd: int) -> Optional[dict]:
        """flock ``fd``; the dead owner's details when it was taken over."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy(self._read(fd)) from None
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                raise
            # no flock here: judge by the recorded process, as far as this
            # host can see it
            owner = self._read(fd)
            if owner and owner.get('host') == socket.gethostname() and \
                    isinstance(owner.get('pid'), int) and \
                    owner['pid'] != os.getpid() and \
                    _pid_alive(owner['pid']):
                raise self._busy(owner) from None
            if owner and owner.get('host') != socket.gethostname():
                raise WorkDirBusyError(
                    f'work dir {self.work_dir} has the lock of a run on '
                    f'another host ({describe_owner(owner)}) and this file '
                    'system cannot tell whether it still runs: if it has '
                    f'ended, remove {self.path}') from None
            return owner
        return self._read(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (unlinked while still
        held, so nobody can lock the old file in between)."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None
            _HELD.discard(self)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()
