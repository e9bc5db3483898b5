"""The SQLite store: tracked runs survive a new Store (a restart) and concurrent writers."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from kfadapter.watch.store import Store


def test_tracked_runs_survive_reopening(tmp_path):
    path = str(tmp_path / "sub" / "store.sqlite")
    first = Store(path)
    first.track("r1", "tj1", pipeline_name="p", experiment_id="e")
    first.track("r2", "tj2")
    again = Store(path)
    assert [(r.run_id, r.trainingjob_id) for r in again.tracked()] == [("r1", "tj1"), ("r2", "tj2")]
    assert again.get("r1").pipeline_name == "p" and again.get("nope") is None


def test_track_is_idempotent_and_untrack_reports(tmp_path):
    store = Store(str(tmp_path / "s.sqlite"))
    store.track("r1", "tj1")
    store.track("r1", "tj1")
    assert len(store.tracked()) == 1
    assert store.untrack("r1") is True and store.untrack("r1") is False


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "s.sqlite")
    stores = [Store(path) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: stores[i % 4].track(f"r{i}", f"tj{i}"), range(200)))
    assert len(Store(path).tracked()) == 200


def test_many_processes_open_a_fresh_store_at_once(tmp_path):
    # What gunicorn workers do on a new volume: every one of them must come up.
    import subprocess
    import sys

    import time

    path = str(tmp_path / "fresh.sqlite")
    # All of them open the store in the same instant (a spin until a shared start time), as forked workers do.
    code = ("import sys, time; from kfadapter.watch.store import Store\n"
            "while time.time() < float(sys.argv[3]): pass\n"
            "Store(sys.argv[1]).track(sys.argv[2], 'tj')")
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, path, f"r{i}", start], stderr=subprocess.PIPE)
             for i in range(8)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert len(Store(path).tracked()) == 8
