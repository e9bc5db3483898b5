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

from kfadapter.core.errors import StoreUnavailable
from kfadapter.kfconnect import KfConnect
from kfadapter.settings import Settings
from kfadapter.watch.delivery import DeliveryResult, LeaseRef, deliver_due
from kfadapter.watch.intents import ReconcileResult, reconcile
from kfadapter.watch.poller import Cursor, PollResult, poll_once
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
        # cycle, before each batch of notifications and while POSTs are open, and starts a POST only while the
        # lease outlasts the POST's deadline, so the lease must outlast one interval and hold a whole POST:
        # then no other process can take over while a notification is on its way.
        self.lease_ttl = max(settings.lease_ttl, 2 * settings.poll_interval, 2 * settings.notify_timeout + 1)
        self._swept_to: Cursor | None = None  # where the poller's window of runs listed whole goes on
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
            poll = self._poll(now)
            delivery = None
            if self.settings.tm_url:
                # The pass renews the lease per batch and while POSTs are open, and stops when it cannot.
                delivery = deliver_due(
                    self.store,
                    self.settings.tm_url,
                    now=now,
                    timeout=self.settings.notify_timeout,
                    max_backoff=self.settings.notify_max_backoff,
                    concurrency=self.settings.notify_concurrency,
                    lease=LeaseRef(LEASE_NAME, self.holder, self.lease_ttl),
                    clock=clock,
                    should_stop=self._stop.is_set,
                    repoll=lambda: self._poll(clock()).at,
                    repoll_every=self.settings.poll_interval,
                )
            self.store.prune_delivered(now - self.settings.history_days * 86400.0)
            if poll.error is None:
                self.store.mark_cycle(now)
            cycle = Cycle(leader=True, intents=found, poll=poll, delivery=delivery)
        self.last_cycle, self.last_cycle_at = cycle, now
        return cycle

    def _poll(self, now: float) -> PollResult:
        poll = poll_once(self.kf, self.store, now, self._swept_to)
        self._swept_to = poll.swept_to
        return poll

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
            # A pass starts nothing more: wait for the POSTs on their way (each ends by its deadline), then
            # hand the lease over.
            self._thread.join(self.settings.notify_timeout + 5.0 if timeout is None else timeout)
            alive = self._thread.is_alive()
            self._thread = None
            if alive:
                return  # still posting: keep the lease, which then runs out, rather than risk a duplicate
        try:
            self.store.release_lease(LEASE_NAME, self.holder)
        except StoreUnavailable:
            log.warning("watcher: store unavailable at stop; the lease runs out by itself")

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
