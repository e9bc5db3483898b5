"""Deliver queued notifications to the training manager: concurrently, each POST bounded in wall time.

The training manager answers 500 to every non-SUCCEEDED notification by design, so only connection errors,
timeouts and 502/503/504 are retried (capped exponential backoff); any other answer means it was delivered.

A pass drains everything due, batch by batch, with no cap per cycle. POSTs go one at a time while the manager
answers within `SLOW_ANSWER`; a POST open longer no longer holds the queue: the next one starts beside it, up to
`concurrency` at once. So a fast manager sees one POST at a time (and a kill -9 can repeat at most that one),
and one slow answer does not hold the others.

Exactly once while the lease is held: the pass renews the watcher's lease before each batch (and while POSTs are
in flight, every third of the lease), reads what is still undelivered only after renewing, and starts a POST only
while the lease outlasts the POST's deadline (`post.post_json` ends every POST by then). So no other holder can
start a POST for the same run while one is open. The answer and "delivered" are written in one statement right
after each POST.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kfadapter.core.errors import StoreUnavailable
from kfadapter.core.observability import NOTIFY_ATTEMPTS
from kfadapter.watch.post import Answer, post_json
from kfadapter.watch.records import Notification
from kfadapter.watch.store import ANSWER_CHARS, Store

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
BASE_BACKOFF = 1.0
SLOW_ANSWER = 1.0  # seconds: a POST open this long no longer holds the queue
BATCH = 100  # notifications read (after one lease renewal) at a time
LEASE_MARGIN = 1.0  # seconds a POST's deadline must stay inside the lease, for the renewal's own latency


@dataclass(frozen=True)
class LeaseRef:
    """The lease a delivery pass renews per batch and while POSTs are in flight."""

    name: str
    holder: str
    ttl: float


@dataclass
class DeliveryResult:
    """What one delivery pass did."""

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    lease_lost: bool = False
    stopped: bool = False
    most_in_flight: int = 0  # the most POSTs that were open at once
    renewals: int = 0  # lease renewals the pass made


def backoff(attempts: int, cap: float, rng: random.Random | None = None) -> float:
    """Return the wait before attempt `attempts + 1`: doubling from 1 s, capped, with ±10 % jitter."""
    delay = min(cap, BASE_BACKOFF * (2 ** min(attempts, 30)))
    jitter = (rng or random).uniform(0.9, 1.1)
    return min(cap, delay * jitter)


def deliver_due(
    store: Store,
    url: str,
    *,
    now: float,
    timeout: float,
    max_backoff: float,
    concurrency: int = 1,
    lease: LeaseRef | None = None,
    clock: Callable[[], float] | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch: int = BATCH,
    repoll: Callable[[], float] | None = None,
    repoll_every: float = 10.0,
) -> DeliveryResult:
    """POST every due notification; stop early when the manager is down, the lease is lost or a stop is asked.

    While only slow POSTs are open, `repoll()` (queue newly finished runs; returns the time it polled at) is
    called every `repoll_every` seconds, so runs that end meanwhile do not wait for those POSTs.
    """
    pass_ = _Pass(store, url, now, timeout, max_backoff, concurrency, lease, clock or time.time, should_stop, batch)
    pass_.repoll, pass_.repoll_every = repoll, repoll_every
    return pass_.run()


@dataclass
class _Flight:
    note: Notification
    started: float  # time.monotonic()


@dataclass
class _Outcome:
    note: Notification
    answer: Answer
    delivered: bool


class _Pass:
    """One delivery pass: a coordinator (the watcher's thread) and a bounded pool of POSTing threads."""

    def __init__(
        self,
        store: Store,
        url: str,
        now: float,
        timeout: float,
        max_backoff: float,
        concurrency: int,
        lease: LeaseRef | None,
        clock: Callable[[], float],
        should_stop: Callable[[], bool] | None,
        batch: int,
    ) -> None:
        self.store, self.url, self.now, self.timeout, self.max_backoff = store, url, now, timeout, max_backoff
        self.concurrency, self.lease, self.clock, self.should_stop = max(1, concurrency), lease, clock, should_stop
        self.batch = max(1, batch)
        self.result = DeliveryResult()
        self.queue: deque[Notification] = deque()
        self.flights: dict[Future, _Flight] = {}
        self.started_ids: set[str] = set()
        self.drained = False  # nothing more is due
        self.halted = False  # start nothing more
        self.renewed: float | None = None  # time.monotonic() taken before the last successful renewal
        self.last_success: float | None = None  # time.monotonic() of the last delivered answer
        self.failure: StoreUnavailable | None = None
        self.repoll: Callable[[], float] | None = None
        self.repoll_every = 10.0
        self.polled = time.monotonic()  # the cycle polled right before the pass

    def run(self) -> DeliveryResult:
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="kfadapter-notify") as pool:
            try:
                while True:
                    self._start_what_may_start(pool)
                    if not self.flights:
                        break
                    self._wait_for_answers()
            except StoreUnavailable as exc:  # the lease or the queue cannot be read: finish what is open
                self.failure, self.halted = exc, True
                while self.flights:
                    self._wait_for_answers()
        if self.failure is not None:
            raise self.failure
        return self.result

    # ---- starting POSTs ---------------------------------------------------------------------------------

    def _start_what_may_start(self, pool: ThreadPoolExecutor) -> None:
        while self._may_start():
            note = self._next()
            if note is None or not self._lease_covers_a_post():
                return
            self.started_ids.add(note.run_id)
            self.flights[pool.submit(self._deliver, note)] = _Flight(note, time.monotonic())
            self.result.most_in_flight = max(self.result.most_in_flight, len(self.flights))

    def _may_start(self) -> bool:
        if self.halted or len(self.flights) >= self.concurrency:
            return False
        if self.should_stop is not None and self.should_stop():
            self.result.stopped = self.halted = True
            return False
        if self.flights:  # only beside POSTs that are all slow
            youngest = max(f.started for f in self.flights.values())
            return time.monotonic() - youngest >= SLOW_ANSWER
        return True

    def _next(self) -> Notification | None:
        if not self.queue and self.drained and self._repoll_due():
            self.now, self.polled, self.drained = self.repoll(), time.monotonic(), False  # type: ignore[misc]
        if not self.queue and not self.drained:
            if not self._renew():
                return None
            # Read only after renewing: what another holder delivered before is seen as delivered here.
            fresh = [
                n for n in self.store.due(self.now, self.batch + len(self.flights)) if n.run_id not in self.started_ids
            ]
            self.queue.extend(fresh[: self.batch])
            self.drained = not fresh
        return self.queue.popleft() if self.queue else None

    def _repoll_due(self) -> bool:
        return self.repoll is not None and bool(self.flights) and time.monotonic() >= self.polled + self.repoll_every

    def _lease_covers_a_post(self) -> bool:
        """Whether a POST starting now ends inside the lease, renewing it first when it would not."""
        if self.lease is None:
            return True
        assert self.renewed is not None  # _next renewed before the first batch
        if time.monotonic() + self.timeout + LEASE_MARGIN <= self.renewed + self.lease.ttl:
            return True
        return self._renew()

    def _renew(self) -> bool:
        if self.lease is None:
            return True
        before = time.monotonic()
        if not self.store.acquire_lease(self.lease.name, self.lease.holder, self.lease.ttl, self.clock()):
            log.warning("watcher: lease lost during delivery; %s stops here", self.lease.holder)
            self.result.lease_lost = self.halted = True
            return False
        self.renewed = before
        self.result.renewals += 1
        return True

    # ---- waiting for answers ----------------------------------------------------------------------------

    def _wait_for_answers(self) -> None:
        wake = [min(self.lease.ttl / 3, 5.0)] if self.lease is not None else []
        if not self.halted and len(self.flights) < self.concurrency:
            may_start_at = max(f.started for f in self.flights.values()) + SLOW_ANSWER
            if self.queue or not self.drained:
                wake.append(may_start_at - time.monotonic())
            elif self.repoll is not None:  # only slow POSTs open: look for runs that ended meanwhile
                wake.append(max(may_start_at, self.polled + self.repoll_every) - time.monotonic())
        done, _ = wait(list(self.flights), timeout=max(0.01, min(wake, default=1.0)), return_when=FIRST_COMPLETED)
        for future in done:
            self._settle(future, self.flights.pop(future))
        if self.flights and self.lease is not None and not self.result.lease_lost and self.failure is None:
            assert self.renewed is not None
            if time.monotonic() - self.renewed >= self.lease.ttl / 3:
                self._renew()  # POSTs are open: keep the lease well ahead of them

    def _settle(self, future: Future, flight: _Flight) -> None:
        try:
            outcome: _Outcome = future.result()
        except StoreUnavailable as exc:  # the answer came but could not be recorded: it is sent again later
            self.failure, self.halted = self.failure or exc, True
            return
        run_id = flight.note.run_id
        if outcome.delivered:
            self.result.delivered.append(run_id)
            self.last_success = time.monotonic()
            return
        self.result.retrying.append(run_id)
        answered_meanwhile = self.last_success is not None and self.last_success > flight.started
        if not (outcome.answer.timed_out and answered_meanwhile):
            # The manager is down or overloaded: the rest wait for the next pass instead of each failing.
            # (A timeout while it answered other POSTs is this run's slow answer, not the manager's state.)
            self.halted = True

    # ---- one notification (in a pool thread) ------------------------------------------------------------

    def _deliver(self, note: Notification) -> _Outcome:
        answer = post_json(self.url, note.payload(), self.timeout, ANSWER_CHARS)
        at = self.clock()
        delivered = answer.error is None and answer.status not in RETRY_STATUSES
        NOTIFY_ATTEMPTS.labels("delivered" if delivered else "retry").inc()
        if delivered:
            self.store.record_attempt(
                note.run_id, now=at, status=answer.status, error=None, delivered=True, answer=answer.body
            )
            log.info("notified %s of run %s: %s (HTTP %s)", self.url, note.run_id, note.run_status, answer.status)
            return _Outcome(note, answer, True)
        error = answer.error or f"HTTP {answer.status}"
        retry_at = at + backoff(note.attempts, self.max_backoff)
        self.store.record_attempt(
            note.run_id,
            now=at,
            status=answer.status,
            error=error,
            delivered=False,
            retry_at=retry_at,
            answer=answer.body,
        )
        log.warning("notification of run %s not delivered (%s); retry in %.0f s", note.run_id, error, retry_at - at)
        return _Outcome(note, answer, False)
