"""The run watcher: a thin thread around `Watcher.poll_once()`, which runs only while holding the lease.

Every gunicorn worker, process or replica sharing a store may run a Watcher; the lease row in the store makes
exactly one of them poll and deliver at a time.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import requests

from ..kfconnect import KfConnect
from ..settings import Settings
from .delivery import DeliveryResult, deliver_due
from .poller import PollResult, poll_once
from .store import Store

log = logging.getLogger(__name__)

LEASE_NAME = "run-watcher"
_DELIVERED_RETENTION = 7 * 24 * 3600.0


@dataclass
class Cycle:
    """The outcome of one watcher cycle."""

    leader: bool
    poll: PollResult | None = None
    delivery: DeliveryResult | None = None


class Watcher:
    """Poll KFP for tracked runs and notify the training manager, under a lease."""

    def __init__(self, kf: KfConnect, store: Store, settings: Settings, *,
                 clock: Callable[[], float] = time.time, holder: str | None = None) -> None:
        self.kf, self.store, self.settings, self.clock = kf, store, settings, clock
        self._auto_holder = holder is None
        self.holder = holder or _new_holder()
        # A leader that stops renewing (killed, hung) is replaced once its lease runs out; it renews every
        # cycle, so the lease must outlast one interval.
        self.lease_ttl = max(settings.lease_ttl, 2 * settings.poll_interval)
        self._session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_cycle: Cycle | None = None
        self.last_cycle_at: float | None = None

    def poll_once(self, now: float | None = None) -> Cycle:
        """Run one cycle: take or renew the lease, poll KFP, deliver due notifications."""
        now = self.clock() if now is None else now
        if not self.store.acquire_lease(LEASE_NAME, self.holder, self.lease_ttl, now):
            cycle = Cycle(leader=False)
        else:
            poll = poll_once(self.kf, self.store, now)
            delivery = None
            # Renew before delivering: if polling outlasted the lease, another process may lead by now.
            if self.settings.tm_url and self.store.acquire_lease(LEASE_NAME, self.holder, self.lease_ttl,
                                                                  self.clock() if now is None else now):
                delivery = deliver_due(self.store, self._session, self.settings.tm_url, now=now,
                                       timeout=self.settings.notify_timeout,
                                       max_backoff=self.settings.notify_max_backoff)
            self.store.prune_delivered(now - _DELIVERED_RETENTION)
            if poll.error is None:
                self.store.mark_cycle(now)
            cycle = Cycle(leader=True, poll=poll, delivery=delivery)
        self.last_cycle, self.last_cycle_at = cycle, now
        return cycle

    def start(self) -> "Watcher":
        """Start the background loop (idempotent)."""
        if self._thread is None:
            if self._auto_holder:
                self.holder = _new_holder()  # after a fork, each worker must be a holder of its own
            if not self.settings.tm_url:
                log.warning("watcher: no training manager URL (KFADAPTER_TM_URL or TRAININGMGR_HOST); "
                            "notifications are queued, not sent")
            self._thread = threading.Thread(target=self._loop, name="kfadapter-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop promptly and hand the lease over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.store.release_lease(LEASE_NAME, self.holder)
        self._session.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the loop must survive anything one cycle throws
                log.exception("watcher cycle failed")
            self._stop.wait(self.settings.poll_interval)


def _new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
