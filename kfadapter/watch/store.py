"""SQLite store for state that must survive a restart: the runs the adapter tracks for the training manager.

One short-lived connection per operation (cheap for SQLite) keeps it safe across threads and forked
gunicorn workers; WAL mode lets readers and one writer share the file.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracked_runs (
    run_id          TEXT PRIMARY KEY,
    trainingjob_id  TEXT NOT NULL,
    pipeline_name   TEXT,
    experiment_id   TEXT,
    created_at      REAL NOT NULL
);
"""


@dataclass(frozen=True)
class TrackedRun:
    """A run whose terminal state the training manager must be told about."""

    run_id: str
    trainingjob_id: str
    pipeline_name: str | None
    experiment_id: str | None
    created_at: float


class Store:
    """Tracked runs in a SQLite file (WAL)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10.0, isolation_level=None)) as db:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db

    def track(self, run_id: str, trainingjob_id: str, *, pipeline_name: str | None = None,
              experiment_id: str | None = None) -> None:
        """Start tracking a run (idempotent)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO tracked_runs (run_id, trainingjob_id, pipeline_name, experiment_id, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET trainingjob_id = excluded.trainingjob_id",
                (run_id, trainingjob_id, pipeline_name, experiment_id, time.time()))

    def untrack(self, run_id: str) -> bool:
        """Stop tracking a run; tell whether it was tracked."""
        with self._connect() as db:
            return db.execute("DELETE FROM tracked_runs WHERE run_id = ?", (run_id,)).rowcount > 0

    def get(self, run_id: str) -> TrackedRun | None:
        """Return one tracked run, or None."""
        with self._connect() as db:
            row = db.execute("SELECT run_id, trainingjob_id, pipeline_name, experiment_id, created_at"
                             " FROM tracked_runs WHERE run_id = ?", (run_id,)).fetchone()
        return TrackedRun(*row) if row else None

    def tracked(self) -> list[TrackedRun]:
        """Return every tracked run, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT run_id, trainingjob_id, pipeline_name, experiment_id, created_at"
                              " FROM tracked_runs ORDER BY created_at, run_id").fetchall()
        return [TrackedRun(*r) for r in rows]
