"""The store's database engine: a SQLite file (embedded default) or PostgreSQL, chosen by URL.

SQLAlchemy Core with the psycopg 3 driver; every database failure leaves here as `StoreUnavailable` (503), so a
route never answers 500 because the store's disk is full or its server is restarting.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from kfadapter.core.errors import StoreUnavailable

SQLITE_BUSY_MS = 10_000
PG_CONNECT_TIMEOUT = 5  # seconds; a stopped server must not hang a request
PG_STATEMENT_TIMEOUT_MS = 15_000
# A request arriving while another thread opens the store (migrations under way) waits this long for it
# rather than answering 503 at once; a failed attempt frees the lock at once, so a down database costs no wait.
OPEN_WAIT = 10.0


def store_url(path_or_url: str) -> str:
    """Return a SQLAlchemy URL for a file path, a `sqlite:///path` URL or a `postgresql://` URL."""
    if "://" not in path_or_url:
        return f"sqlite:///{os.path.abspath(path_or_url)}"
    scheme, rest = path_or_url.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return path_or_url
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite:///path or postgresql://")


def make_engine(path_or_url: str) -> Engine:
    """Create the engine; for SQLite also create the file's directory and set WAL and busy timeouts."""
    url = make_url(store_url(path_or_url))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False},
            pool_size=8,
            max_overflow=32,
        )
        _sqlite_transactions(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=20,
        pool_timeout=10,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT,
            "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
        },
    )


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and never takes the write lock up front; a read that
    # later writes can then fail at once with "database is locked". Writers here begin IMMEDIATE instead.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("single"):
            return  # one statement (Database.single): SQLite runs it in a read transaction of its own
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")


class Database:
    """An engine plus transactions that turn database failures into `StoreUnavailable`.

    Creating one does no I/O. The first transaction opens it: `opener` (the Store's migrations) runs once per
    process, and until it has succeeded every transaction raises StoreUnavailable, so a worker boots and
    answers 503 while the database is down instead of dying.
    """

    def __init__(self, path_or_url: str, opener: Callable[[Database], None] | None = None) -> None:
        self.engine = make_engine(path_or_url)
        self.backend = self.engine.dialect.name  # "sqlite" or "postgresql"
        self.path = self.engine.url.database if self.backend == "sqlite" else None
        self._pid = os.getpid()
        self._opener = opener
        self._opening = threading.Lock()
        self.opened = opener is None
        # Pooled connections are closed when the Database goes, not left to the garbage collector.
        weakref.finalize(self, self.engine.dispose)

    def open(self, *, wait: float | None = None) -> None:
        """Run the opener unless done; wait at most `wait` seconds (None: no limit) for a thread already opening."""
        if self.opened:
            return
        if not self._opening.acquire(timeout=-1 if wait is None else wait):
            raise StoreUnavailable(
                "the store is being opened (migrations under way)", details={"backend": self.backend}
            )
        try:
            if not self.opened:
                if self._opener is not None:
                    self._opener(self)
                self.opened = True
        finally:
            self._opening.release()

    def wal(self, attempts: int = 100) -> None:
        """Switch a SQLite file to write-ahead logging (persistent, a no-op once done)."""
        # Processes opening a fresh file at the same moment get "database is locked" at once instead of
        # waiting on the busy timeout, so retry for a few seconds. The switch cannot happen inside a
        # transaction, hence the bare driver connection.
        for attempt in range(attempts):
            try:
                with self._translate(), self._engine().connect() as conn:
                    driver = conn.connection.driver_connection
                    assert driver is not None  # an open connection has its sqlite3 connection
                    driver.execute("PRAGMA journal_mode=WAL")
                return
            except StoreUnavailable as exc:
                orig = getattr(exc.__cause__, "orig", None)
                if (
                    not isinstance(orig, sqlite3.OperationalError)
                    or "locked" not in str(orig)
                    or attempt == attempts - 1
                ):
                    raise
                time.sleep(0.05 + random.random() * 0.05)

    def _engine(self) -> Engine:
        # A forked gunicorn worker must not use its parent's pooled connections.
        if self._pid != os.getpid():
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        return self.engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Run a read-write transaction (IMMEDIATE on SQLite), committed on exit."""
        self.open(wait=OPEN_WAIT)
        with self.setup_write() as conn:
            yield conn

    @contextmanager
    def setup_write(self) -> Iterator[Connection]:
        """Run a read-write transaction whether or not the database is open yet (for the opener)."""
        with self._translate(), self._engine().connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Run a read-only transaction."""
        self.open(wait=OPEN_WAIT)
        with self._translate(), self._engine().connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def single(self) -> Iterator[Connection]:
        """Give a connection for one read-only statement with no transaction around it: one round trip.

        A single statement reads one consistent snapshot on both backends; BEGIN / COMMIT would only add round
        trips (PostgreSQL runs it in autocommit, SQLite gets no BEGIN).
        """
        self.open(wait=OPEN_WAIT)
        options = {"isolation_level": "AUTOCOMMIT"} if self.backend == "postgresql" else {"single": True}
        with self._translate(), self._engine().connect().execution_options(**options) as conn:
            yield conn

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise StoreUnavailable(
                f"the store cannot be used: {_reason(exc)}", details={"backend": self.backend}
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"the store cannot be used: {type(exc).__name__}", details={"backend": self.backend}
            ) from exc

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _reason(exc: DBAPIError) -> str:
    # The driver's first line names the cause ("database or disk is full", "connection refused") without the
    # statement or its parameters.
    text = str(exc.orig).strip().splitlines()
    return text[0][:200] if text else type(exc.orig).__name__
