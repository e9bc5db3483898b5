"""Per-name locks for uploads: one upload per pipeline name picks the next version number at a time.

Two layers: a `threading.Lock` per name inside the process (waiting threads do not poll the store), then a
lease row `upload:<name>` in the store across gunicorn workers and replicas (SQLite or PostgreSQL). The lease
expires by itself if its holder dies (kill -9), after `ttl`. KFP's 409 on a taken number stays the safety net
against writers that bypass the lock (another adapter version, the KFP UI): when the lock cannot be had in
time or the store is down, the upload goes ahead and relies on it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from kfadapter.core.errors import StoreUnavailable
from kfadapter.watch.store import Store

log = logging.getLogger(__name__)

_POLL = 0.02  # seconds between tries of the store lease (plus up to as much again, jittered)


class NameLocks:
    """Hold `upload:<name>` in this process and in the store while a block runs."""

    def __init__(self, store: Store, *, ttl: float, wait: float) -> None:
        self.store, self.ttl, self.wait = store, ttl, wait
        self._guard = threading.Lock()
        self._local: dict[str, tuple[threading.Lock, int]] = {}  # name -> (lock, users)

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Run the block holding the name's lock; yield whether it was had (False: went ahead without)."""
        deadline = time.monotonic() + self.wait
        local = self._enter(name)
        try:
            got_local = local.acquire(timeout=self.wait)
            try:
                holder = uuid.uuid4().hex
                held = got_local and self._acquire(name, holder, deadline)
                try:
                    yield held
                finally:
                    if held:
                        self._release(name, holder)
            finally:
                if got_local:
                    local.release()
        finally:
            self._leave(name)

    def _enter(self, name: str) -> threading.Lock:
        with self._guard:
            lock, users = self._local.get(name, (threading.Lock(), 0))
            self._local[name] = (lock, users + 1)
            return lock

    def _leave(self, name: str) -> None:
        with self._guard:
            lock, users = self._local[name]
            if users == 1:
                del self._local[name]  # no entry per name ever seen
            else:
                self._local[name] = (lock, users - 1)

    def _acquire(self, name: str, holder: str, deadline: float) -> bool:
        try:
            while not self.store.acquire_lease(f"upload:{name}", holder, self.ttl, time.time()):
                if time.monotonic() > deadline:
                    log.warning("upload lock of %r not had in %.0f s; going ahead", name, self.wait)
                    return False
                time.sleep(_POLL + random.random() * _POLL)
        except StoreUnavailable as exc:
            log.warning("upload lock of %r unavailable (%s); going ahead", name, exc.message)
            return False
        return True

    def _release(self, name: str, holder: str) -> None:
        try:
            self.store.release_lease(f"upload:{name}", holder)
        except StoreUnavailable:
            pass  # it runs out after ttl
