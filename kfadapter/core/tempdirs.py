"""Temporary directories that cannot outlive their process, even after kill -9.

Each process keeps one directory per purpose (`kfadapter-upload-…`, `kfadapter-metrics-…`) under the system
temp dir and holds an exclusive `flock` on a file inside it for its whole life. The kernel drops that lock when
the process dies however it dies, so `sweep()` at the next start removes exactly the directories whose owner is
gone: no pid files, no guessing about reused pids or pid namespaces. Directories without that lock file (made by
an older version or another program) are left alone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

UPLOAD_PREFIX = "kfadapter-upload-"
_OWNER = ".owner"  # the locked file
_LOCKING = ".locking"  # its name until it is locked
_GRACE = 60.0
_lock = threading.Lock()
_owned: dict[str, tuple[int, str, int]] = {}  # prefix -> (pid, path, fd of the locked file)


def owned_dir(prefix: str) -> str:
    """Return this process's directory for `prefix`, creating and locking it on first use (and after a fork)."""
    with _lock:
        pid, path, _ = _owned.get(prefix, (None, "", -1))
        if pid != os.getpid() or not os.path.isdir(path):
            path = tempfile.mkdtemp(prefix=prefix)
            fd = os.open(os.path.join(path, _LOCKING), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: nobody else holds it
            # Renamed once locked, so a sweeper never finds an owner file that is not locked yet.
            os.rename(os.path.join(path, _LOCKING), os.path.join(path, _OWNER))
            _owned[prefix] = (os.getpid(), path, fd)
        return path


def sweep(prefix: str, parent: str | None = None) -> list[str]:
    """Remove `prefix` directories whose owner process is gone (their lock is free); return the removed paths."""
    parent = parent or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        if _abandoned(entry):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _abandoned(entry: os.DirEntry) -> bool:
    """Whether the lock of a directory made by owned_dir() is free (its owner is dead)."""
    for name, grace in ((_OWNER, 0.0), (_LOCKING, _GRACE)):
        try:
            fd = os.open(os.path.join(entry.path, name), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # another user's directory: not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: the owner lives
        else:
            # `.locking` is unlocked for an instant between its creation and flock: only an old one is dead.
            return time.time() - os.fstat(fd).st_mtime > grace
        finally:
            os.close(fd)  # releases our probe lock too
    return False  # no lock file: not made by owned_dir() (an older version's, or another program's); left alone


@contextmanager
def package_file(data: bytes | IO[bytes], suffix: str) -> Iterator[str]:
    """Write an upload (bytes, or a binary file copied from its start in blocks) to `pipeline<suffix>` in a
    private directory (the upload to KFP streams it from there); remove it after."""
    upload_dir = tempfile.mkdtemp(dir=owned_dir(UPLOAD_PREFIX))
    try:
        # KFP picks the parser by file extension; the file name never comes from the caller.
        path = os.path.join(upload_dir, "pipeline" + suffix)
        with open(path, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                data.seek(0)
                shutil.copyfileobj(data, fh, 1024 * 1024)
        yield path
    finally:
        shutil.rmtree(upload_dir, ignore_errors=True)
