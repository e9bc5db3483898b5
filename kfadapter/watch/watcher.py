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
from collections.abc import Callable
from dataclasses import dataclass

import requests

from kfadapter.core.errors import StoreUnavailable
from kfadapter.kfconnect import KfConnect
from kfadapter.settings import Settings
from kfadapter.watch.delivery import DeliveryResult, LeaseRef, deliver_due
from kfadapter.watch.intents import ReconcileResult, reconcile
from kfadapter.watch.poller import PollResult, poll_once
from kfadapter.watch.store import Store

log = logging.getLogger(__name__)

LEASE_NAME = "run-watcher"


@dataclass
class Cycle:
    """The outcome of one watcher cycle."""

    leader: bool
    intents: ReconcileResult | None = None
    poll: PollResult | None = None
    delivery: DeliveryResult | None = None


class Watcher:
    """Poll KFP for tracked runs and notify the training manager, under a lease."""

    def __init__(
        self,
        kf: KfConnect,
        store: Store,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
    ) -> None:
        self.kf, self.store, self.settings, self.clock = kf, store, settings, clock
        self._auto_holder = holder is None
        self.holder = holder or _new_holder()
        # A leader that stops renewing (killed, hung) is replaced once its lease runs out. It renews every
        # cycle and before each notification, so the lease must outlast one interval and one POST to the
        # manager: then no other process can take over while a notification is on its way.
        self.lease_ttl = max(settings.lease_ttl, 2 * settings.poll_interval, 2 * settings.notify_timeout + 1)
        self._session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_cycle: Cycle | None = None
        self.last_cycle_at: float | None = None

    def poll_once(self, now: float | None = None) -> Cycle:
        """Run one cycle: take or renew the lease, poll KFP, deliver due notifications."""
        fixed = now
        clock: Callable[[], float] = (
            self.clock if fixed is None else (lambda: fixed)
        )  # an explicit `now` (tests) is the whole clock
        now = clock()
        if not self.store.acquire_lease(LEASE_NAME, self.holder, self.lease_ttl, now):
            cycle = Cycle(leader=False)
        else:
            # Intents first (the first cycle after a start-up included), so the runs they find are polled now.
            found = reconcile(self.kf, self.store, now, self.settings.intent_grace)
            poll = poll_once(self.kf, self.store, now)
            delivery = None
            if self.settings.tm_url:
                # The pass renews the lease before each notification and stops when it cannot.
                delivery = deliver_due(
                    self.store,
                    self._session,
                    self.settings.tm_url,
                    now=now,
                    timeout=self.settings.notify_timeout,
                    max_backoff=self.settings.notify_max_backoff,
                    lease=LeaseRef(LEASE_NAME, self.holder, self.lease_ttl),
                    clock=clock,
                    should_stop=self._stop.is_set,
                )
            self.store.prune_delivered(now - self.settings.history_days * 86400.0)
            if poll.error is None:
                self.store.mark_cycle(now)
            cycle = Cycle(leader=True, intents=found, poll=poll, delivery=delivery)
        self.last_cycle, self.last_cycle_at = cycle, now
        return cycle

    def start(self) -> Watcher:
        """Start the background loop (idempotent)."""
        if self._thread is None:
            if self._auto_holder:
                self.holder = _new_holder()  # after a fork, each worker must be a holder of its own
            if not self.settings.tm_url:
                log.warning(
                    "watcher: no training manager URL (KFADAPTER_TM_URL or TRAININGMGR_HOST); "
                    "notifications are queued, not sent"
                )
            self._thread = threading.Thread(target=self._loop, name="kfadapter-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop promptly and hand the lease over."""
        self._stop.set()
        if self._thread is not None:
            # A pass stops between notifications: wait for the one on its way, then hand the lease over.
            self._thread.join(self.settings.notify_timeout + 5.0 if timeout is None else timeout)
            alive = self._thread.is_alive()
            self._thread = None
            if alive:
                return  # still posting: keep the lease, which then runs out, rather than risk a duplicate
        try:
            self.store.release_lease(LEASE_NAME, self.holder)
        except StoreUnavailable:
            log.warning("watcher: store unavailable at stop; the lease runs out by itself")
        self._session.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except StoreUnavailable as exc:  # a database restart: nothing is lost, the next cycle goes on
                log.warning("watcher cycle skipped: %s", exc.message)
            except Exception:
                log.exception("watcher cycle failed")
            self._stop.wait(self.settings.poll_interval)


def _new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
