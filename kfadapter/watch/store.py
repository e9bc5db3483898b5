"""SQLite store for state that must survive a restart: tracked runs, the notification outbox and the lease.

One connection per thread and process keeps it safe across threads and forked gunicorn workers; WAL mode lets
readers and one writer share the file.
"""
from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from contextlib import contextmanager
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
CREATE TABLE IF NOT EXISTS outbox (
    run_id          TEXT PRIMARY KEY,
    trainingjob_id  TEXT NOT NULL,
    run_status      TEXT NOT NULL,
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_attempt_at REAL,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at, next_attempt_at);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  REAL NOT NULL
);
"""


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

    def payload(self) -> dict[str, str]:
        """Return the body the training manager expects."""
        return {"run_id": self.run_id, "run_status": self.run_status, "trainingjob_id": self.trainingjob_id}


_NOTIFICATION_COLUMNS = ("run_id, trainingjob_id, run_status, created_at, attempts, next_attempt_at, "
                         "last_attempt_at, last_status, last_error, delivered_at")


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
        self._local = threading.local()
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._initialise()

    def _initialise(self, attempts: int = 100) -> None:
        # Gunicorn workers open a new store at the same moment; switching a fresh file to WAL answers
        # "database is locked" at once instead of waiting on the busy timeout, so retry for a few seconds.
        for attempt in range(attempts):
            try:
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 + random.random() * 0.05)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per thread and process, reused: opening one costs more than most queries here.
        # A forked gunicorn worker must not share its parent's connection, hence the pid check.
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
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

    # ---- outbox -------------------------------------------------------------------------------------------

    def finish(self, run_id: str, run_status: str, now: float) -> bool:
        """Move a tracked run to the outbox in one transaction; tell whether it was still tracked."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT trainingjob_id FROM tracked_runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is None:
                    db.execute("ROLLBACK")
                    return False
                db.execute("DELETE FROM tracked_runs WHERE run_id = ?", (run_id,))
                db.execute("INSERT OR IGNORE INTO outbox (run_id, trainingjob_id, run_status, created_at,"
                           " next_attempt_at) VALUES (?, ?, ?, ?, ?)", (run_id, row[0], run_status, now, now))
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def due(self, now: float, limit: int = 100) -> list[Notification]:
        """Return undelivered notifications whose next attempt is due, oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_NOTIFICATION_COLUMNS} FROM outbox WHERE delivered_at IS NULL"
                              " AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?",
                              (now, limit)).fetchall()
        return [Notification(*r) for r in rows]

    def pending(self) -> list[Notification]:
        """Return every undelivered notification."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_NOTIFICATION_COLUMNS} FROM outbox WHERE delivered_at IS NULL"
                              " ORDER BY created_at, run_id").fetchall()
        return [Notification(*r) for r in rows]

    def notification(self, run_id: str) -> Notification | None:
        """Return the notification of one run, delivered or not."""
        with self._connect() as db:
            row = db.execute(f"SELECT {_NOTIFICATION_COLUMNS} FROM outbox WHERE run_id = ?", (run_id,)).fetchone()
        return Notification(*row) if row else None

    def recent_deliveries(self, limit: int = 50) -> list[Notification]:
        """Return the most recently delivered notifications."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_NOTIFICATION_COLUMNS} FROM outbox WHERE delivered_at IS NOT NULL"
                              " ORDER BY delivered_at DESC LIMIT ?", (limit,)).fetchall()
        return [Notification(*r) for r in rows]

    def record_attempt(self, run_id: str, *, now: float, status: int | None, error: str | None,
                       delivered: bool, retry_at: float | None = None) -> None:
        """Record one delivery attempt: delivered, or due again at `retry_at`."""
        with self._connect() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?, last_status = ?,"
                       " last_error = ?, delivered_at = ?, next_attempt_at = COALESCE(?, next_attempt_at)"
                       " WHERE run_id = ?",
                       (now, status, error, now if delivered else None, retry_at, run_id))

    def prune_delivered(self, older_than: float) -> int:
        """Forget delivered notifications older than a cutoff; return how many."""
        with self._connect() as db:
            return db.execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                              (older_than,)).rowcount

    # ---- lease --------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew the named lease for `ttl` seconds unless another live holder has it."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer decides, so two processes cannot both win
            try:
                row = db.execute("SELECT holder, expires_at FROM lease WHERE name = ?", (name,)).fetchone()
                if row is not None and row[0] != holder and row[1] > now:
                    db.execute("ROLLBACK")
                    return False
                db.execute("INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT(name)"
                           " DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                           (name, holder, now + ttl))
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease if this holder has it, so another process can take over at once."""
        with self._connect() as db:
            db.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (name, holder))

    def lease(self, name: str) -> tuple[str, float] | None:
        """Return (holder, expires_at) of the named lease, or None."""
        with self._connect() as db:
            row = db.execute("SELECT holder, expires_at FROM lease WHERE name = ?", (name,)).fetchone()
        return (row[0], row[1]) if row else None

    # ---- watcher status -----------------------------------------------------------------------------------

    def mark_cycle(self, now: float) -> None:
        """Record that the lease holder completed a cycle at `now`."""
        with self._connect() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('last_cycle_at', ?)"
                       " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (now,))

    def stats(self) -> dict[str, float | int | None]:
        """Return counts of tracked runs and pending notifications, and the last cycle's time."""
        with self._connect() as db:
            tracked = db.execute("SELECT COUNT(*) FROM tracked_runs").fetchone()[0]
            pending = db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
            row = db.execute("SELECT value FROM meta WHERE key = 'last_cycle_at'").fetchone()
        return {"tracked": tracked, "pending": pending, "last_cycle_at": row[0] if row else None}
