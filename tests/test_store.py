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
