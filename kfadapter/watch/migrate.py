"""The store's schema migrations, run once across every worker and replica that opens the same store.

One process migrates, the others wait and then find the schema at head: on PostgreSQL under an advisory
transaction lock, on SQLite under an `flock` on `<file>-migrate.lock` (which also covers the switch to WAL)
and then a write (IMMEDIATE) transaction. Nothing here ends a process: a lock not had in time, like a database
that does not answer, is a StoreUnavailable that the caller retries.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from kfadapter.core.errors import StoreUnavailable
from kfadapter.watch.db import Database

log = logging.getLogger(__name__)

_ADVISORY_KEY = 0x6B666164  # pg_advisory_xact_lock key: one replica migrates, the others wait
FILE_LOCK_WAIT = 30.0  # seconds a SQLite opener waits for another process's migrations before retrying later
# Alembic's `op` and `context` are module-level proxies: two threads of one process must not migrate at once.
_MIGRATING = threading.Lock()


def upgrade(db: Database) -> None:
    """Bring the store's schema to head unless another process did; log once when this one changed it."""
    cfg = Config()
    cfg.set_main_option("script_location", "kfadapter.watch:migrations")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with _MIGRATING, _file_lock(db):
        if db.backend == "sqlite":
            db.wal()
        with db.setup_write() as conn:  # SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory lock below
            if db.backend == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})")
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return  # the usual case: another worker, replica or start did it
            cfg.attributes["connection"] = conn
            if current is None and "tracked_runs" in set(inspect(conn).get_table_names()):
                command.stamp(cfg, "0001")  # made by the landed version, which had no version table
                current = "0001"
            command.upgrade(cfg, "head")
    log.info("store schema migrated from %s to %s", current or "an empty store", head)


@contextmanager
def _file_lock(db: Database) -> Iterator[None]:
    # SQLite's own locks do not cover the switch to WAL, and a fresh file answers "database is locked" at once
    # to the second of two processes creating it; an flock beside the file orders them. Bounded, not blocking.
    if db.backend != "sqlite" or not db.path or db.path == ":memory:":
        yield
        return
    path = f"{db.path}-migrate.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreUnavailable(
            f"the store cannot be used: {exc.strerror}: {path}", details={"backend": "sqlite"}
        ) from exc
    try:
        deadline = time.monotonic() + FILE_LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        "another process is migrating the store", details={"backend": "sqlite"}
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # drops the lock
