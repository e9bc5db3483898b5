"""One polling step: ask KFP which tracked runs have finished and queue notifications for them.

KFP is asked only for the tracked runs in a terminal state (`run_id IN … AND state IN …`, one list call per 200
runs), so runs still going cost KFP a near-empty answer each cycle. A run deleted from KFP never shows up that
way: each cycle also lists one window of `SWEEP` tracked runs whole (the window moves on every cycle, wrapping
around), and a run missing there is asked for by id; a 404 ends it as "Manual reconcile". The window replaces
that chunk's finished-only call, so a cycle costs one list call per 200 tracked runs either way.

Pure apart from its two collaborators (KfConnect, Store): no sleeps, no threads, no lock held across I/O.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field

from kfadapter.core.errors import AdapterError, NotFound
from kfadapter.kfconnect import TERMINAL_STATES, KfConnect
from kfadapter.watch.records import TrackedRun
from kfadapter.watch.store import Store

log = logging.getLogger(__name__)

# What the O-RAN adapter sends when a run cannot be found; the training manager knows this value.
MANUAL_RECONCILE = "Manual reconcile"
SWEEP = 200  # tracked runs listed whole per cycle: one list call's worth

Cursor = tuple[float, str]  # (created_at, run_id) of the last run the previous window held


@dataclass
class PollResult:
    """What one poll saw and did."""

    tracked: int = 0
    finished: dict[str, str] = field(default_factory=dict)  # run_id -> state queued for notification
    vanished: list[str] = field(default_factory=list)  # run ids KFP no longer knows
    error: str | None = None  # set when KFP could not be read; nothing was changed
    swept_to: Cursor | None = None  # where the next cycle's window starts after
    at: float = 0.0  # the time the poll ran at


def poll_once(kf: KfConnect, store: Store, now: float, swept_to: Cursor | None = None) -> PollResult:
    """Queue a notification for every tracked run that reached a terminal state or vanished from KFP."""
    tracked = store.tracked()
    result = PollResult(tracked=len(tracked), swept_to=swept_to, at=now)
    if not tracked:
        return result
    window = _window(tracked, swept_to)
    in_window = {t.run_id for t in window}
    try:
        listed = kf.runs_by_ids([t.run_id for t in window])
        finished = kf.finished_runs([t.run_id for t in tracked if t.run_id not in in_window])
    except AdapterError as exc:
        # A KFP hiccup is not a failed training: change nothing and look again next cycle.
        log.warning("watcher: cannot read run states: %s", exc.message)
        result.error = exc.message
        return result
    # Whatever end KFP reports (a terminated run usually ends FAILED); CANCELING is not an end.
    ends: dict[str, str] = {r["run_id"]: r["state"] for r in listed + finished if r.get("state") in TERMINAL_STATES}
    known = {r["run_id"] for r in listed}
    gone = [t.run_id for t in window if t.run_id not in known and _confirmed_gone(kf, t.run_id)]
    ends.update((run_id, MANUAL_RECONCILE) for run_id in gone)
    for run_id in store.finish_all(ends, now):  # one transaction; a run another finisher took is left out
        result.finished[run_id] = ends[run_id]
        if run_id in gone:
            result.vanished.append(run_id)
    result.swept_to = (window[-1].created_at, window[-1].run_id)
    return result


def _window(tracked: list[TrackedRun], after: Cursor | None) -> list[TrackedRun]:
    """The next `SWEEP` tracked runs (oldest first) after the cursor, wrapping around to the oldest."""
    keys = [(t.created_at, t.run_id) for t in tracked]  # store.tracked() is in this order
    start = 0 if after is None else bisect.bisect_right(keys, after)
    window = tracked[start : start + SWEEP]
    if len(window) < SWEEP and start > 0:
        window += tracked[: min(start, SWEEP - len(window))]
    return window


def _confirmed_gone(kf: KfConnect, run_id: str) -> bool:
    """Ask for the run itself before giving up on it: only a 404 means KFP no longer knows it."""
    try:
        kf.get_run(run_id)
    except NotFound:
        return True
    except AdapterError as exc:
        log.warning("watcher: cannot confirm run %s: %s", run_id, exc.message)
    return False
