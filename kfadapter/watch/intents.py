"""Intent before action: an execution is written to the store before KFP is asked for the run, so a run KFP
started is never left untracked, whatever dies when.

The intent carries a unique token that becomes part of the run's display name. An execution that dies between
KFP's answer and the store's (kill -9, store down) leaves its intent behind; `reconcile` finds the run by that
name and tracks it, or drops the intent once KFP still has no such run after the grace period.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kfadapter.core.errors import AdapterError, StoreUnavailable
from kfadapter.kfconnect import KfConnect
from kfadapter.watch.store import Store

log = logging.getLogger(__name__)


def run_name_for(trainingjob_id: str, token: str) -> str:
    """Return the display name of the run an intent starts: training job, UTC time, token."""
    return f"{trainingjob_id}-{datetime.now(UTC):%Y%m%d%H%M%S}-{token}"


# The end of every name run_name_for makes (a 16-hex token), and of the names versions before intents gave runs
# (6 hex digits, still in stores they made).
_STARTED_HERE = re.compile(r"-[0-9]{14}-(?:[0-9a-f]{16}|[0-9a-f]{6})\Z")


def may_be_in_store(run: dict) -> bool:
    """Tell whether the store can hold anything about this KFP run: only runs an execution started can.

    The store gets a run only from `execute` or `reconcile`, and both bind the run that carries the intent's
    name (`run_name_for`); KFP cannot rename a run. So a run whose display name does not end like one is known
    to be absent without a read, by every replica alike: the answer comes from KFP's own record, which every
    replica reads, not from anything one replica remembers.
    """
    return bool(_STARTED_HERE.search(run.get("display_name") or ""))


def execute(
    kf: KfConnect,
    store: Store,
    trainingjob_id: str,
    pipeline_name: str,
    version: str | None,
    experiment: str,
    arguments: dict[str, Any],
    *,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Write the intent, start the run, track its id; StoreUnavailable (KFP untouched) if the intent cannot be written.

    Once KFP has started the run the answer is the run, even when the store fails to track it at that moment.
    """
    token = uuid.uuid4().hex[:16]
    run_name = run_name_for(trainingjob_id, token)
    store.add_intent(token, trainingjob_id, pipeline_name, run_name, clock())
    try:
        result = kf.execute(trainingjob_id, pipeline_name, version, experiment, arguments, run_name=run_name)
    except AdapterError as exc:
        if exc.status < 500:  # KFP refused: no run exists. A 5xx or timeout may hide one: reconcile decides.
            _drop(store, token)
        raise
    try:
        store.bind_intent(
            token,
            result["run_id"],
            trainingjob_id,
            pipeline_name=pipeline_name,
            experiment_id=result["experiment_id"],
            now=clock(),
        )
    except StoreUnavailable as exc:
        # The run exists, so the caller gets it: a 503 would tell the training manager it failed. Its intent
        # (in the store since before KFP was asked) keeps it: the watcher tracks it once the store is back.
        log.warning(
            "run %s of training job %s started; tracking deferred to its intent until the store is back: %s",
            result["run_id"],
            trainingjob_id,
            exc.message,
        )
        return result | {"tracking": "deferred"}
    return result


def _drop(store: Store, token: str) -> None:
    try:
        store.drop_intent(token)
    except StoreUnavailable:
        pass  # reconcile drops it after the grace period


@dataclass
class ReconcileResult:
    """What one reconciliation did."""

    found: dict[str, str] = field(default_factory=dict)  # token -> run id now tracked
    dropped: list[str] = field(default_factory=list)
    waiting: int = 0
    error: str | None = None


def reconcile(kf: KfConnect, store: Store, now: float, grace: float) -> ReconcileResult:
    """Track the run of every intent KFP has; drop intents still without a run after `grace` seconds."""
    result = ReconcileResult()
    pending = store.intents()
    if not pending:
        return result
    try:
        runs = kf.runs_by_names([i.run_name for i in pending])  # one list call per 200 intents
    except AdapterError as exc:
        log.warning("watcher: cannot look up intents in KFP: %s", exc.message)
        result.error = exc.message
        return result
    by_name = {r.get("display_name"): r for r in runs}
    for intent in pending:
        run = by_name.get(intent.run_name)
        if run is not None:
            store.bind_intent(
                intent.token,
                run["run_id"],
                intent.trainingjob_id,
                pipeline_name=intent.pipeline_name,
                experiment_id=run.get("experiment_id"),
                now=now,
            )
            result.found[intent.token] = run["run_id"]
            log.info(
                "watcher: run %s of training job %s found by its intent; tracked", run["run_id"], intent.trainingjob_id
            )
        elif now - intent.created_at > grace:
            store.drop_intent(intent.token)
            result.dropped.append(intent.token)
            log.info(
                "watcher: intent %s of training job %s has no run in KFP after %.0f s; dropped",
                intent.token,
                intent.trainingjob_id,
                grace,
            )
        else:
            result.waiting += 1
    return result
