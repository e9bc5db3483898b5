"""What the store holds, as the rest of the adapter sees it: tracked runs, notifications, intents, and the
history views of one run (`GET /runs/<id>`'s `tracking`, `/trainingjobs/<id>/runs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfadapter.watch.schema import outbox, tracked_runs, untracked_runs


@dataclass(frozen=True)
class Notification:
    """A terminal run state waiting for (or past) delivery to the training manager."""

    run_id: str
    trainingjob_id: str
    run_status: str
    created_at: float
    attempts: int
    next_attempt_at: float
    last_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None
    pipeline_name: str | None = None
    experiment_id: str | None = None
    tracked_at: float | None = None
    tm_answer: str | None = None

    def payload(self) -> dict[str, str]:
        """Return the body the training manager expects."""
        return {"run_id": self.run_id, "run_status": self.run_status, "trainingjob_id": self.trainingjob_id}


NOTE_COLUMNS = [outbox.c[name] for name in Notification.__dataclass_fields__]


@dataclass(frozen=True)
class TrackedRun:
    """A run whose terminal state the training manager must be told about."""

    run_id: str
    trainingjob_id: str
    pipeline_name: str | None
    experiment_id: str | None
    created_at: float


TRACKED_COLUMNS = [tracked_runs.c[name] for name in TrackedRun.__dataclass_fields__]
UNTRACKED_COLUMNS = list(untracked_runs.c)


# A tracked run (kind 0), its notification (kind 1) or its untracking (kind 2), as a row of the Notification's columns; a tracked run wins.
TRACKED_AS_NOTE = {
    "run_id": "run_id",
    "trainingjob_id": "trainingjob_id",
    "pipeline_name": "pipeline_name",
    "experiment_id": "experiment_id",
    "tracked_at": "created_at",
}
# A run DELETE stopped tracking (kind 2), its untracked_at in the `created_at` column.
UNTRACKED_AS_NOTE = TRACKED_AS_NOTE | {"tracked_at": "tracked_at", "created_at": "untracked_at"}
HISTORY_TEMPLATE = (
    f"SELECT 0, {', '.join(TRACKED_AS_NOTE.get(n, 'NULL') for n in Notification.__dataclass_fields__)} "
    "FROM tracked_runs WHERE run_id = {run_id} UNION ALL "
    f"SELECT 1, {', '.join(Notification.__dataclass_fields__)} FROM outbox WHERE run_id = {{run_id}} UNION ALL "
    f"SELECT 2, {', '.join(UNTRACKED_AS_NOTE.get(n, 'NULL') for n in Notification.__dataclass_fields__)} "
    "FROM untracked_runs WHERE run_id = {run_id} "
    "ORDER BY 1 LIMIT 1"
)
HISTORY_SQL = {
    "sqlite": HISTORY_TEMPLATE.format(run_id="?"),  # each driver's parameter style
    "postgresql": HISTORY_TEMPLATE.format(run_id="%(run_id)s"),
}


@dataclass(frozen=True)
class Intent:
    """An execution about to ask KFP for a run: the run will carry `run_name`, which holds the token."""

    token: str
    trainingjob_id: str
    pipeline_name: str
    run_name: str
    created_at: float


def tracked_view(run: TrackedRun) -> dict:
    return {
        "run_id": run.run_id,
        "trainingjob_id": run.trainingjob_id,
        "pipeline_name": run.pipeline_name,
        "experiment_id": run.experiment_id,
        "tracked": True,
        "tracked_at": run.created_at,
        "state": None,
        "finished_at": None,
        "notification": {
            "status": "waiting_for_run",
            "attempts": 0,
            "notified_at": None,
            "last_status": None,
            "last_error": None,
            "answer": None,
        },
    }


def untracked_view(row: Any) -> dict:
    """A run DELETE stopped tracking: no notification; its state comes from KFP (`state` None here)."""
    return {
        "run_id": row.run_id,
        "trainingjob_id": row.trainingjob_id,
        "pipeline_name": row.pipeline_name,
        "experiment_id": row.experiment_id,
        "tracked": False,
        "tracked_at": row.tracked_at,
        "untracked_at": row.untracked_at,
        "state": None,
        "finished_at": None,
        "notification": {
            "status": "not_sent",
            "attempts": 0,
            "notified_at": None,
            "last_status": None,
            "last_error": "tracking stopped by DELETE /runs/<run_id>: the training manager is not notified",
            "answer": None,
        },
    }


def finished_view(n: Notification) -> dict:
    return {
        "run_id": n.run_id,
        "trainingjob_id": n.trainingjob_id,
        "pipeline_name": n.pipeline_name,
        "experiment_id": n.experiment_id,
        "tracked": False,
        "tracked_at": n.tracked_at,
        "state": n.run_status,
        "finished_at": n.created_at,
        "notification": {
            "status": "delivered" if n.delivered_at is not None else "pending",
            "attempts": n.attempts,
            "notified_at": n.delivered_at,
            "last_status": n.last_status,
            "last_error": n.last_error,
            "answer": n.tm_answer,
        },
    }
