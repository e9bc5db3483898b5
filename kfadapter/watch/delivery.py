"""Deliver queued notifications to the training manager, with capped exponential backoff.

The training manager answers 500 to every non-SUCCEEDED notification by design, so only connection errors,
timeouts and 502/503/504 are retried; any other answer means it was delivered.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import requests

from ..observability import NOTIFY_ATTEMPTS
from .store import Notification, Store

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
BASE_BACKOFF = 1.0


@dataclass
class DeliveryResult:
    """What one delivery pass did."""

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)


def backoff(attempts: int, cap: float, rng: random.Random | None = None) -> float:
    """Return the wait before attempt `attempts + 1`: doubling from 1 s, capped, with ±10 % jitter."""
    delay = min(cap, BASE_BACKOFF * (2 ** min(attempts, 30)))
    jitter = (rng or random).uniform(0.9, 1.1)
    return min(cap, delay * jitter)


def deliver_due(store: Store, session: requests.Session, url: str, *, now: float, timeout: float,
                max_backoff: float, limit: int = 100) -> DeliveryResult:
    """POST due notifications in order until one fails; record the outcome of each attempt."""
    result = DeliveryResult()
    for note in store.due(now, limit):
        status, error = _post(session, url, note, timeout)
        NOTIFY_ATTEMPTS.labels("delivered" if error is None and status not in RETRY_STATUSES else "retry").inc()
        if error is None and status not in RETRY_STATUSES:
            store.record_attempt(note.run_id, now=now, status=status, error=None, delivered=True)
            result.delivered.append(note.run_id)
            log.info("notified %s of run %s: %s (HTTP %s)", url, note.run_id, note.run_status, status)
        else:
            error = error or f"HTTP {status}"
            retry_at = now + backoff(note.attempts, max_backoff)
            store.record_attempt(note.run_id, now=now, status=status, error=error, delivered=False,
                                 retry_at=retry_at)
            result.retrying.append(note.run_id)
            log.warning("notification of run %s not delivered (%s); retry in %.0f s", note.run_id, error,
                        retry_at - now)
            # The manager is down or overloaded: the rest wait for the next pass instead of each timing out.
            break
    return result


def _post(session: requests.Session, url: str, note: Notification, timeout: float) -> tuple[int | None, str | None]:
    try:
        resp = session.post(url, json=note.payload(), timeout=timeout)
    except requests.Timeout:
        return None, "timeout"
    except requests.RequestException as exc:
        return None, f"connection error: {type(exc).__name__}"
    resp.close()
    return resp.status_code, None
