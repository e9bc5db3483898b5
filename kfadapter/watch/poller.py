"""One polling step: read the state of every tracked run from KFP and queue notifications for finished ones.

Pure apart from its two collaborators (KfConnect, Store): no sleeps, no threads, no lock held across I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kfadapter.core.errors import AdapterError, NotFound
from kfadapter.kfconnect import TERMINAL_STATES, KfConnect
from kfadapter.watch.store import Store

log = logging.getLogger(__name__)

# What the O-RAN adapter sends when a run cannot be found; the training manager knows this value.
MANUAL_RECONCILE = "Manual reconcile"


@dataclass
class PollResult:
    """What one poll saw and did."""

    tracked: int = 0
    finished: dict[str, str] = field(default_factory=dict)  # run_id -> state queued for notification
    vanished: list[str] = field(default_factory=list)  # run ids KFP no longer knows
    error: str | None = None  # set when KFP could not be read; nothing was changed


def poll_once(kf: KfConnect, store: Store, now: float) -> PollResult:
    """Queue a notification for every tracked run that reached a terminal state or vanished from KFP."""
    tracked = store.tracked()
    result = PollResult(tracked=len(tracked))
    if not tracked:
        return result
    try:
        runs = kf.runs_by_ids([t.run_id for t in tracked])  # one list call per 200 runs
    except AdapterError as exc:
        # A KFP hiccup is not a failed training: change nothing and look again next cycle.
        log.warning("watcher: cannot read run states: %s", exc.message)
        result.error = exc.message
        return result
    states = {r["run_id"]: r.get("state") for r in runs}
    for t in tracked:
        if t.run_id in states:
            state = states[t.run_id]
            # Whatever end KFP reports (a terminated run usually ends FAILED); CANCELING is not an end.
            if state in TERMINAL_STATES and store.finish(t.run_id, state, now):
                result.finished[t.run_id] = state
        elif _confirmed_gone(kf, t.run_id) and store.finish(t.run_id, MANUAL_RECONCILE, now):
            result.vanished.append(t.run_id)
            result.finished[t.run_id] = MANUAL_RECONCILE
    return result


def _confirmed_gone(kf: KfConnect, run_id: str) -> bool:
    """Ask for the run itself before giving up on it: only a 404 means KFP no longer knows it."""
    try:
        kf.get_run(run_id)
    except NotFound:
        return True
    except AdapterError as exc:
        log.warning("watcher: cannot confirm run %s: %s", run_id, exc.message)
    return False
