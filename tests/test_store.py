"""The store on both backends (a SQLite file and a real PostgreSQL): tracked runs survive a new Store (a
restart) and concurrent writers; leases, outbox and history; a store made by the landed version migrates."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

from kfadapter.core.errors import StoreUnavailable
from kfadapter.watch.store import Store

# The schema of the landed version (kfadapter/watch/store.py before Alembic), verbatim: a store it created.
LANDED_SCHEMA = """
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


def test_tracked_runs_survive_reopening(store_url):
    first = Store(store_url)
    first.track("r1", "tj1", pipeline_name="p", experiment_id="e", now=1.0)
    first.track("r2", "tj2", now=2.0)
    again = Store(store_url)
    assert [(r.run_id, r.trainingjob_id) for r in again.tracked()] == [("r1", "tj1"), ("r2", "tj2")]
    assert again.get("r1").pipeline_name == "p" and again.get("nope") is None


def test_sqlite_path_and_sqlite_url_are_the_same_store(tmp_path):
    path = tmp_path / "sub" / "store.sqlite"
    Store(str(path)).track("r1", "tj1")
    assert [r.run_id for r in Store(f"sqlite:///{path}").tracked()] == ["r1"]


def test_track_is_idempotent_and_untrack_reports(store_url):
    store = Store(store_url)
    store.track("r1", "tj1")
    store.track("r1", "tj1")
    assert len(store.tracked()) == 1
    assert store.untrack("r1") is True and store.untrack("r1") is False
    assert store.get("r1") is None and store.history("r1")["notification"]["status"] == "not_sent"  # kept


def test_concurrent_writers(store_url):
    stores = [Store(store_url) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: stores[i % 4].track(f"r{i}", f"tj{i}"), range(200)))
    assert len(Store(store_url).tracked()) == 200


def test_many_processes_open_a_fresh_store_at_once(store_url):
    # What gunicorn workers (or replicas) do on a new volume or database: every one of them must come up,
    # and exactly one of them creates the schema.
    code = ("import sys, time; from kfadapter.watch.store import Store\n"
            "while time.time() < float(sys.argv[3]): pass\n"
            "Store(sys.argv[1]).track(sys.argv[2], 'tj')")
    start = str(time.time() + 3.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url, f"r{i}", start], stderr=subprocess.PIPE)
             for i in range(8)]
    errors = [p.communicate(timeout=90)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert len(Store(store_url).tracked()) == 8


def test_finish_moves_once_and_keeps_history(store_url):
    store = Store(store_url)
    store.track("r1", "tj", pipeline_name="p", experiment_id="e", now=10.0)
    store.track("r2", "tj", now=20.0)
    assert store.finish("r1", "SUCCEEDED", 100.0) is True
    assert store.finish("r1", "SUCCEEDED", 101.0) is False  # a second finisher gets nothing
    assert [n.run_id for n in store.due(100.0)] == ["r1"] and store.due(99.0) == []
    store.record_attempt("r1", now=105.0, status=200, error=None, delivered=True, answer='{"Message": "ok"}')
    assert store.pending() == [] and store.get("r1") is None
    view = store.history("r1")
    assert view["trainingjob_id"] == "tj" and view["state"] == "SUCCEEDED" and view["pipeline_name"] == "p"
    assert view["notification"] == {"status": "delivered", "attempts": 1, "notified_at": 105.0,
                                    "last_status": 200, "last_error": None, "answer": '{"Message": "ok"}'}
    assert [v["run_id"] for v in store.runs_of("tj")] == ["r2", "r1"]  # newest first
    assert store.runs_of("tj")[0]["tracked"] is True and store.runs_of("other") == []
    assert store.prune_delivered(105.0) == 0 and store.prune_delivered(105.1) == 1
    assert store.history("r1") is None


def test_concurrent_finishers_queue_one_notification(store_url):
    stores = [Store(store_url) for _ in range(4)]
    for i in range(50):
        stores[0].track(f"r{i}", "tj")
    with ThreadPoolExecutor(max_workers=8) as pool:
        wins = list(pool.map(lambda k: stores[k % 4].finish(f"r{k // 4}", "FAILED", 1.0), range(200)))
    assert sum(wins) == 50 and len(stores[0].pending()) == 50


def test_lease_has_one_holder_among_concurrent_contenders(store_url):
    stores = [Store(store_url) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(lambda i: stores[i % 4].acquire_lease("l", f"h{i}", 10.0, 100.0), range(32)))
    assert sum(won) == 1
    holder = stores[0].lease("l")[0]
    assert stores[1].acquire_lease("l", holder, 10.0, 105.0) is True  # renewal by the holder
    assert stores[2].acquire_lease("l", "other", 10.0, 114.0) is False  # still live
    assert stores[2].acquire_lease("l", "other", 10.0, 115.0) is True  # expired: taken over
    ok, todo = stores[3].claim("nothing", "l", holder, 10.0, 116.0)
    assert (ok, todo) == (False, False)  # the old holder learns it lost the lease


def test_intents_bind_and_drop(store_url):
    store = Store(store_url)
    store.add_intent("t1", "tj", "p", "tj-run-t1", 1.0)
    store.add_intent("t2", "tj", "p", "tj-run-t2", 2.0)
    assert [i.token for i in store.intents()] == ["t1", "t2"]
    store.bind_intent("t1", "r1", "tj", pipeline_name="p", experiment_id="e", now=3.0)
    store.bind_intent("t1", "r1", "tj", pipeline_name="p", experiment_id="e", now=3.0)  # idempotent
    assert [i.token for i in store.intents()] == ["t2"] and store.get("r1").experiment_id == "e"
    assert store.drop_intent("t2") is True and store.drop_intent("t2") is False
    assert store.stats()["intents"] == 0 and store.stats()["tracked"] == 1


def test_a_store_made_by_the_landed_version_migrates_without_loss(tmp_path):
    path = tmp_path / "landed.sqlite"
    db = sqlite3.connect(path)
    db.executescript(LANDED_SCHEMA)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO tracked_runs VALUES ('r1', 'tj1', 'p', 'e', 10.0)")
    db.execute("INSERT INTO outbox (run_id, trainingjob_id, run_status, created_at, next_attempt_at) "
               "VALUES ('r2', 'tj2', 'FAILED', 20.0, 20.0)")
    db.execute("INSERT INTO outbox (run_id, trainingjob_id, run_status, created_at, attempts, next_attempt_at,"
               " last_attempt_at, last_status, delivered_at) VALUES ('r3', 'tj2', 'SUCCEEDED', 5.0, 1, 5.0, 6.0,"
               " 200, 6.0)")
    db.execute("INSERT INTO lease VALUES ('run-watcher', 'old-holder', 99.0)")
    db.execute("INSERT INTO meta VALUES ('last_cycle_at', 42.0)")
    db.commit()
    db.close()
    store = Store(str(path))
    assert [(t.run_id, t.trainingjob_id, t.pipeline_name, t.experiment_id, t.created_at) for t in store.tracked()] \
        == [("r1", "tj1", "p", "e", 10.0)]
    [pending] = store.pending()
    assert (pending.run_id, pending.run_status, pending.attempts, pending.delivered_at) == ("r2", "FAILED", 0, None)
    assert store.notification("r3").delivered_at == 6.0 and store.notification("r3").last_status == 200
    assert store.lease("run-watcher") == ("old-holder", 99.0) and store.stats()["last_cycle_at"] == 42.0
    assert [v["run_id"] for v in store.runs_of("tj2")] == ["r2", "r3"]
    Store(str(path))  # opening again is a no-op
    version = sqlite3.connect(path).execute("SELECT version_num FROM alembic_version").fetchall()
    assert version == [("0003",)]


def test_a_full_store_answers_store_unavailable(tmp_path):
    path = tmp_path / "ro.sqlite"
    store = Store(str(path))
    store.track("r1", "tj")
    limited = Store(str(path))
    limited.db.engine.dispose()
    # A full disk, without root: each new connection may not grow the file past its present size.
    event.listen(limited.db.engine, "connect", lambda conn, _rec: conn.execute(
        f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"))
    with pytest.raises(StoreUnavailable) as caught:
        for i in range(200):  # fill the pages left
            limited.track(f"x{i}" * 50, "tj")
    assert caught.value.status == 503 and "full" in caught.value.message
    assert limited.get("r1") is not None  # reads still work


def test_threads_of_one_process_open_a_fresh_store_at_once(store_url):
    # Alembic's module-level proxies are not thread-safe: the Store serializes its migrations.
    with ThreadPoolExecutor(max_workers=6) as pool:
        stores = list(pool.map(lambda _: Store(store_url), range(6)))
    stores[0].track("r1", "tj")
    assert all(s.get("r1") is not None for s in stores)
