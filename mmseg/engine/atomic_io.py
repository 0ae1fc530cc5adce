"""Writing files so that a crash or a full disk never leaves half a file.

Every writer here puts the data in a temporary file beside the target
(``.<name>.<random>.tmp``), flushes it to disk, renames it over the target
(atomic on POSIX) and flushes the directory. Whatever happens meanwhile
(``kill -9``, power loss, ``ENOSPC``), the target is either its old complete
version or the new complete one; at worst a temporary file is left, which
:func:`remove_stale_temporaries` cleans up.
"""
import errno
import os
import os.path as osp
import re
import uuid
from typing import IO, Callable, List

from mmseg.utils.errors import SenFormerError

#: name of a temporary file of :func:`atomic_write` for target ``name``
TEMPORARY_PATTERN = re.compile(r'^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$')


class SaveError(SenFormerError, RuntimeError):
    """A file could not be written (disk full, no permission, ...); the
    previous version of the file, if any, is unchanged."""


def temporary_name(filename: str, tag: str) -> str:
    """``dir/.name.<tag>.tmp``: where the data for ``filename`` is staged."""
    directory, name = osp.split(filename)
    return osp.join(directory, f'.{name}.{tag}.tmp')


def fsync_path(path: str) -> None:
    """Flush a file's (or a directory's) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_os_error(error: OSError) -> str:
    """``No space left on device`` style reason, with a hint for the usual
    causes."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += ' (disk full: free some space)'
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += ' (no permission to write there)'
    return reason


def commit(tmp: str, filename: str) -> None:
    """Make a fully written temporary file the new ``filename``: flush it,
    rename it over the target and flush the directory (so the rename itself
    survives a power loss)."""
    fsync_path(tmp)
    os.replace(tmp, filename)
    fsync_path(osp.dirname(osp.abspath(filename)))


def atomic_write(filename: str, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace ``filename`` with what ``write(f)`` writes to the
    binary file object ``f``, all or nothing.

    Raises:
        SaveError: the data could not be written (``ENOSPC``, ...); the
            temporary file is removed and ``filename`` is unchanged. Errors
            raised by ``write`` itself (e.g. pickling) propagate unchanged,
            with the same guarantee.
    """
    directory = osp.dirname(osp.abspath(filename))
    tmp = temporary_name(osp.abspath(filename), uuid.uuid4().hex[:8])
    try:
        os.makedirs(directory, exist_ok=True)
        # 0o666 as open() uses: the umask decides, as for any other file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise SaveError(
            f'cannot write {filename}: {describe_os_error(e)}') from e
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
        commit(tmp, filename)
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise SaveError(
                f'cannot write {filename}: {describe_os_error(e)}; the file '
                'was left as it was') from e
        raise


def atomic_write_text(filename: str, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(filename, lambda f: f.write(text.encode('utf-8')))


def remove_stale_temporaries(directory: str) -> List[str]:
    """Delete the temporary files that a killed writer left in
    ``directory`` (not in sub-folders).

    Returns:
        The removed paths.
    """
    removed = []
    if not osp.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        path = osp.join(directory, name)
        if TEMPORARY_PATTERN.match(name) and osp.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed
