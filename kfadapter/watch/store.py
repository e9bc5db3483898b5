"""The store for state that must survive a restart: tracked runs, execution intents, the notification outbox
(which keeps finished runs as history), and named leases.

SQLite (a file, the embedded default) or PostgreSQL (several replicas), through SQLAlchemy Core; the schema
is versioned with Alembic and migrated when a Store opens, so a store made by an older version keeps its data.
Every statement that decides between concurrent writers is a single conditional statement (an upsert with a
WHERE, a DELETE … RETURNING), so it is atomic on both backends without table locks.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kfadapter.watch import migrate
from kfadapter.watch.db import Database
from kfadapter.watch.records import (
    HISTORY_SQL,
    NOTE_COLUMNS,
    TRACKED_COLUMNS,
    UNTRACKED_COLUMNS,
    Intent,
    Notification,
    TrackedRun,
    finished_view,
    tracked_view,
    untracked_view,
)
from kfadapter.watch.schema import intents, lease, meta, outbox, tracked_runs, untracked_runs

ANSWER_CHARS = 2000  # of the training manager's answer kept in the history
_IDS_PER_STATEMENT = 500  # run ids bound in one IN (well under SQLite's bound-parameter limit)


class Store:
    """Tracked runs, intents, outbox/history and leases in SQLite or PostgreSQL."""

    def __init__(self, path_or_url: str, *, open_now: bool = True) -> None:
        # Without `open_now` nothing is done here: the first use (or `open()`) connects and migrates.
        self.db = Database(path_or_url, opener=migrate.upgrade)
        self.backend = self.db.backend
        if open_now:
            self.open()

    def open(self) -> None:
        """Connect and migrate unless done (raises StoreUnavailable while the database cannot be had)."""
        self.db.open()

    @property
    def is_open(self) -> bool:
        """Whether this process has opened (and migrated) the store."""
        return self.db.opened

    def _insert(self, table):
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a query."""
        with self.db.read() as conn:
            conn.execute(select(1))

    def check_writable(self, now: float | None = None) -> None:
        """Raise StoreUnavailable unless the store takes a write (it does not when its disk is full)."""
        stmt = self._insert(meta).values(key="write_checked_at", value=time.time() if now is None else now)
        with self.db.write() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}))

    def close(self) -> None:
        """Close pooled connections."""
        self.db.dispose()

    # ---- tracked runs -------------------------------------------------------------------------------------

    def track(
        self,
        run_id: str,
        trainingjob_id: str,
        *,
        pipeline_name: str | None = None,
        experiment_id: str | None = None,
        now: float | None = None,
    ) -> None:
        """Start tracking a run (idempotent)."""
        with self.db.write() as conn:
            self._track(conn, run_id, trainingjob_id, pipeline_name, experiment_id, now)

    def _track(self, conn, run_id, trainingjob_id, pipeline_name, experiment_id, now) -> None:
        stmt = self._insert(tracked_runs).values(
            run_id=run_id,
            trainingjob_id=trainingjob_id,
            pipeline_name=pipeline_name,
            experiment_id=experiment_id,
            created_at=time.time() if now is None else now,
        )
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["run_id"], set_={"trainingjob_id": stmt.excluded.trainingjob_id})
        )

    def untrack(self, run_id: str, now: float | None = None) -> bool:
        """Stop tracking a run (no notification will be sent); it stays in its training job's history. Tell
        whether it was tracked."""
        with self.db.write() as conn:
            row = conn.execute(
                delete(tracked_runs).where(tracked_runs.c.run_id == run_id).returning(*TRACKED_COLUMNS)
            ).first()
            if row is None:
                return False
            run = TrackedRun(*row)
            stmt = self._insert(untracked_runs).values(
                run_id=run.run_id,
                trainingjob_id=run.trainingjob_id,
                pipeline_name=run.pipeline_name,
                experiment_id=run.experiment_id,
                tracked_at=run.created_at,
                untracked_at=time.time() if now is None else now,
            )
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["run_id"]))
            return True

    def get(self, run_id: str) -> TrackedRun | None:
        """Return one tracked run, or None."""
        with self.db.read() as conn:
            row = conn.execute(select(*TRACKED_COLUMNS).where(tracked_runs.c.run_id == run_id)).first()
        return TrackedRun(*row) if row else None

    def tracked(self) -> list[TrackedRun]:
        """Return every tracked run, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(*TRACKED_COLUMNS).order_by(tracked_runs.c.created_at, tracked_runs.c.run_id)
            ).all()
        return [TrackedRun(*r) for r in rows]

    # ---- intents ------------------------------------------------------------------------------------------

    def add_intent(self, token: str, trainingjob_id: str, pipeline_name: str, run_name: str, now: float) -> None:
        """Record an execution before KFP is asked for its run (raises StoreUnavailable if it cannot)."""
        with self.db.write() as conn:
            conn.execute(
                intents.insert().values(
                    token=token,
                    trainingjob_id=trainingjob_id,
                    pipeline_name=pipeline_name,
                    run_name=run_name,
                    created_at=now,
                )
            )

    def bind_intent(
        self,
        token: str,
        run_id: str,
        trainingjob_id: str,
        *,
        pipeline_name: str | None,
        experiment_id: str | None,
        now: float,
    ) -> None:
        """Track the run an intent started and drop the intent, in one transaction (idempotent)."""
        with self.db.write() as conn:
            self._track(conn, run_id, trainingjob_id, pipeline_name, experiment_id, now)
            conn.execute(delete(intents).where(intents.c.token == token))

    def drop_intent(self, token: str) -> bool:
        """Forget an intent whose run KFP never started; tell whether it was there."""
        with self.db.write() as conn:
            return conn.execute(delete(intents).where(intents.c.token == token)).rowcount > 0

    def intents(self) -> list[Intent]:
        """Return every intent still waiting for its run id, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(
                    intents.c.token,
                    intents.c.trainingjob_id,
                    intents.c.pipeline_name,
                    intents.c.run_name,
                    intents.c.created_at,
                ).order_by(intents.c.created_at)
            ).all()
        return [Intent(*r) for r in rows]

    # ---- outbox and history -------------------------------------------------------------------------------

    def finish(self, run_id: str, run_status: str, now: float) -> bool:
        """Move a tracked run to the outbox in one transaction; tell whether it was still tracked."""
        return bool(self.finish_all({run_id: run_status}, now))

    def finish_all(self, ends: dict[str, str], now: float) -> list[str]:
        """Move tracked runs (run id → terminal state) to the outbox in one transaction; return those moved."""
        ids = list(ends)
        moved: list[dict[str, Any]] = []
        with self.db.write() as conn:
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                # DELETE … RETURNING: of two concurrent finishers exactly one gets each row.
                rows = conn.execute(
                    delete(tracked_runs)
                    .where(tracked_runs.c.run_id.in_(ids[start : start + _IDS_PER_STATEMENT]))
                    .returning(*TRACKED_COLUMNS)
                ).all()
                for run in (TrackedRun(*r) for r in rows):
                    moved.append(
                        {
                            "run_id": run.run_id,
                            "trainingjob_id": run.trainingjob_id,
                            "run_status": ends[run.run_id],
                            "created_at": now,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "pipeline_name": run.pipeline_name,
                            "experiment_id": run.experiment_id,
                            "tracked_at": run.created_at,
                        }
                    )
            if moved:
                conn.execute(self._insert(outbox).on_conflict_do_nothing(), moved)
        return [m["run_id"] for m in moved]

    def due(self, now: float, limit: int = 100) -> list[Notification]:
        """Return undelivered notifications whose next attempt is due, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(*NOTE_COLUMNS)
                .where(outbox.c.delivered_at.is_(None), outbox.c.next_attempt_at <= now)
                .order_by(outbox.c.next_attempt_at, outbox.c.created_at)
                .limit(limit)
            ).all()
        return [Notification(*r) for r in rows]

    def pending(self) -> list[Notification]:
        """Return every undelivered notification."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(*NOTE_COLUMNS)
                .where(outbox.c.delivered_at.is_(None))
                .order_by(outbox.c.created_at, outbox.c.run_id)
            ).all()
        return [Notification(*r) for r in rows]

    def notification(self, run_id: str) -> Notification | None:
        """Return the notification of one run, delivered or not."""
        with self.db.read() as conn:
            row = conn.execute(select(*NOTE_COLUMNS).where(outbox.c.run_id == run_id)).first()
        return Notification(*row) if row else None

    def recent_deliveries(self, limit: int = 50) -> list[Notification]:
        """Return the most recently delivered notifications."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(*NOTE_COLUMNS)
                .where(outbox.c.delivered_at.is_not(None))
                .order_by(outbox.c.delivered_at.desc())
                .limit(limit)
            ).all()
        return [Notification(*r) for r in rows]

    def claim(self, run_id: str, lease_name: str, holder: str, ttl: float, now: float) -> tuple[bool, bool]:
        """Renew the lease and check the notification is still undelivered, in one transaction.

        Returns (lease held, still to deliver): a pass stops as soon as the first is False.
        """
        with self.db.write() as conn:
            if not self._acquire(conn, lease_name, holder, ttl, now):
                return False, False
            row = conn.execute(select(outbox.c.delivered_at).where(outbox.c.run_id == run_id)).first()
            return True, row is not None and row[0] is None

    def record_attempt(
        self,
        run_id: str,
        *,
        now: float,
        status: int | None,
        error: str | None,
        delivered: bool,
        retry_at: float | None = None,
        answer: str | None = None,
    ) -> None:
        """Record one delivery attempt and the manager's answer: delivered, or due again at `retry_at`."""
        values: dict[str, Any] = {
            "attempts": outbox.c.attempts + 1,
            "last_attempt_at": now,
            "last_status": status,
            "last_error": error,
            "delivered_at": now if delivered else None,
            "tm_answer": answer[:ANSWER_CHARS] if answer is not None else None,
        }
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.db.write() as conn:
            conn.execute(update(outbox).where(outbox.c.run_id == run_id).values(**values))

    def prune_delivered(self, older_than: float) -> int:
        """Forget delivered notifications and untracked runs (history) older than a cutoff; return how many."""
        with self.db.write() as conn:
            gone = conn.execute(
                delete(outbox).where(outbox.c.delivered_at.is_not(None), outbox.c.delivered_at < older_than)
            ).rowcount
            return (
                gone + conn.execute(delete(untracked_runs).where(untracked_runs.c.untracked_at < older_than)).rowcount
            )

    def history(self, run_id: str) -> dict | None:
        """Return what the store knows of one run (tracked, or finished and kept as history), or None."""
        # On every GET /runs/<id> of a run the adapter started: one statement (two primary-key lookups), no
        # transaction, and SQL written once (SQLAlchemy would build and compile the query on every call).
        with self.db.single() as conn:
            row = conn.exec_driver_sql(*self._history_query(run_id)).first()
        if row is None:
            return None
        n = Notification(*row[1:])
        if row[0] == 0:
            return tracked_view(
                TrackedRun(n.run_id, n.trainingjob_id, n.pipeline_name, n.experiment_id, n.tracked_at or 0.0)
            )
        if row[0] == 2:  # untracked by DELETE: `created_at` holds untracked_at
            return untracked_view(
                SimpleNamespace(
                    run_id=n.run_id,
                    trainingjob_id=n.trainingjob_id,
                    pipeline_name=n.pipeline_name,
                    experiment_id=n.experiment_id,
                    tracked_at=n.tracked_at,
                    untracked_at=n.created_at,
                )
            )
        return finished_view(n)

    def _history_query(self, run_id: str) -> tuple[str, Any]:
        if self.backend == "postgresql":
            return HISTORY_SQL["postgresql"], {"run_id": run_id}
        return HISTORY_SQL["sqlite"], (run_id, run_id, run_id)

    def runs_of(self, trainingjob_id: str) -> list[dict]:
        """Return a training job's runs (tracked and finished), newest first."""
        with self.db.read() as conn:
            live = conn.execute(select(*TRACKED_COLUMNS).where(tracked_runs.c.trainingjob_id == trainingjob_id)).all()
            done = conn.execute(select(*NOTE_COLUMNS).where(outbox.c.trainingjob_id == trainingjob_id)).all()
            gone = conn.execute(
                select(*UNTRACKED_COLUMNS).where(untracked_runs.c.trainingjob_id == trainingjob_id)
            ).all()
        views = [tracked_view(TrackedRun(*r)) for r in live] + [finished_view(Notification(*r)) for r in done]
        views += [untracked_view(r) for r in gone]
        return sorted(views, key=lambda v: (v["tracked_at"] or v["finished_at"] or 0.0, v["run_id"]), reverse=True)

    # ---- leases -------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew the named lease for `ttl` seconds unless another live holder has it."""
        with self.db.write() as conn:
            return self._acquire(conn, name, holder, ttl, now)

    def _acquire(self, conn, name: str, holder: str, ttl: float, now: float) -> bool:
        stmt = self._insert(lease).values(name=name, holder=holder, expires_at=now + ttl)
        # One statement: PostgreSQL locks the conflicting row, SQLite holds the write lock, so two
        # contenders cannot both see the lease as free.
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
            where=or_(lease.c.holder == holder, lease.c.expires_at <= now),
        ).returning(lease.c.holder)
        return conn.execute(stmt).first() is not None

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease if this holder has it, so another process can take over at once."""
        with self.db.write() as conn:
            conn.execute(delete(lease).where(and_(lease.c.name == name, lease.c.holder == holder)))

    def lease(self, name: str) -> tuple[str, float] | None:
        """Return (holder, expires_at) of the named lease, or None."""
        with self.db.read() as conn:
            row = conn.execute(select(lease.c.holder, lease.c.expires_at).where(lease.c.name == name)).first()
        return (row[0], row[1]) if row else None

    # ---- watcher status -----------------------------------------------------------------------------------

    def mark_cycle(self, now: float) -> None:
        """Record that the lease holder completed a cycle at `now`."""
        stmt = self._insert(meta).values(key="last_cycle_at", value=now)
        with self.db.write() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}))

    def stats(self) -> dict[str, float | int | None]:
        """Return counts of tracked runs, pending notifications and intents, and the last cycle's time."""
        with self.db.read() as conn:
            tracked = conn.execute(select(func.count()).select_from(tracked_runs)).scalar_one()
            pending = conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.delivered_at.is_(None))
            ).scalar_one()
            waiting = conn.execute(select(func.count()).select_from(intents)).scalar_one()
            last = conn.execute(select(meta.c.value).where(meta.c.key == "last_cycle_at")).scalar_one_or_none()
        return {"tracked": tracked, "pending": pending, "intents": waiting, "last_cycle_at": last}
