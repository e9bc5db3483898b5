"""Deliver queued notifications to the training manager, with capped exponential backoff.

The training manager answers 500 to every non-SUCCEEDED notification by design, so only connection errors,
timeouts and 502/503/504 are retried; any other answer means it was delivered.

Exactly once while the lease is held: before each POST the pass renews the watcher's lease and checks that the
notification is still undelivered, in one transaction, and stops as soon as the lease is lost; the answer and
"delivered" are written in one statement right after the POST. The lease outlives one POST (see Watcher), so no
other process can start delivering while this one waits for the manager.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from kfadapter.core.observability import NOTIFY_ATTEMPTS
from kfadapter.watch.store import ANSWER_CHARS, Notification, Store

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
BASE_BACKOFF = 1.0


@dataclass(frozen=True)
class LeaseRef:
    """The lease a delivery pass renews before each notification."""

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


def backoff(attempts: int, cap: float, rng: random.Random | None = None) -> float:
    """Return the wait before attempt `attempts + 1`: doubling from 1 s, capped, with ±10 % jitter."""
    delay = min(cap, BASE_BACKOFF * (2 ** min(attempts, 30)))
    jitter = (rng or random).uniform(0.9, 1.1)
    return min(cap, delay * jitter)


def deliver_due(
    store: Store,
    session: requests.Session,
    url: str,
    *,
    now: float,
    timeout: float,
    max_backoff: float,
    limit: int = 100,
    lease: LeaseRef | None = None,
    clock: Callable[[], float] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DeliveryResult:
    """POST due notifications in order until one fails, the lease is lost or a stop is asked for."""
    clock = clock or time.time
    result = DeliveryResult()
    for note in store.due(now, limit):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        if lease is not None:
            held, todo = store.claim(note.run_id, lease.name, lease.holder, lease.ttl, clock())
            if not held:
                log.warning("watcher: lease lost during delivery; %s stops here", lease.holder)
                result.lease_lost = True
                break
            if not todo:
                continue
        status, error, answer = _post(session, url, note, timeout)
        at = clock()
        NOTIFY_ATTEMPTS.labels("delivered" if error is None and status not in RETRY_STATUSES else "retry").inc()
        if error is None and status not in RETRY_STATUSES:
            store.record_attempt(note.run_id, now=at, status=status, error=None, delivered=True, answer=answer)
            result.delivered.append(note.run_id)
            log.info("notified %s of run %s: %s (HTTP %s)", url, note.run_id, note.run_status, status)
        else:
            error = error or f"HTTP {status}"
            retry_at = at + backoff(note.attempts, max_backoff)
            store.record_attempt(
                note.run_id, now=at, status=status, error=error, delivered=False, retry_at=retry_at, answer=answer
            )
            result.retrying.append(note.run_id)
            log.warning("notification of run %s not delivered (%s); retry in %.0f s", note.run_id, error, retry_at - at)
            # The manager is down or overloaded: the rest wait for the next pass instead of each timing out.
            break
    return result


def _post(
    session: requests.Session, url: str, note: Notification, timeout: float
) -> tuple[int | None, str | None, str | None]:
    try:
        resp = session.post(url, json=note.payload(), timeout=timeout, stream=True)
    except requests.Timeout:
        return None, "timeout", None
    except requests.RequestException as exc:
        return None, f"connection error: {type(exc).__name__}", None
    try:
        # Only the start of the answer is kept: a manager cannot make the watcher read an unbounded body.
        answer = resp.raw.read(ANSWER_CHARS, decode_content=True).decode("utf-8", "replace")
    except Exception:
        answer = None
    finally:
        resp.close()
    return resp.status_code, None, answer
