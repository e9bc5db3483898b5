"""Notifications with real deadlines, attacked the way the world would: a training manager that trickles its
answer one byte a second, two watchers on one store, 1,500 runs ending at once, and polling that asks KFP only
for finished runs. Waits are bounded polls on counts; the only time bounds asserted are far below what an
unbounded POST would take (a trickled answer lasts over 100 s)."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
import requests

from kfadapter.kfconnect import KfConnect
from kfadapter.watch.delivery import deliver_due
from kfadapter.watch.poller import MANUAL_RECONCILE, SWEEP, poll_once
from kfadapter.watch.post import post_json
from kfadapter.watch.store import Store
from kfadapter.watch.watcher import Watcher

from tests.slow_manager import SlowManager
from tests.support import wait_for

TRICKLED_ANSWER_S = 100  # the manager's answer is about 110 bytes, one a second


@pytest.fixture
def manager():
    m = SlowManager(interval=1.0)
    yield m
    m.stop()


def _runs(sandbox, n: int) -> list[str]:
    made = requests.post(f"{sandbox.url}/_sandbox/bulk/pipelines", json={"count": 1, "prefix": "d"}, timeout=30)
    p = made.json()["pipelines"][0]
    resp = requests.post(f"{sandbox.url}/_sandbox/bulk/runs", timeout=120,
                         json={"count": n, "pipeline_id": p["pipeline_id"],
                               "pipeline_version_id": p["pipeline_version_id"]})
    resp.raise_for_status()
    return resp.json()["run_ids"]


def _track(store: Store, run_ids: list[str]) -> None:
    for i, run_id in enumerate(run_ids):
        store.track(run_id, f"tj-{i}", now=1.0 + i)


def _set_state(sandbox, run_ids, state) -> None:
    requests.post(f"{sandbox.url}/_sandbox/runs/state", json={"run_ids": list(run_ids), "state": state},
                  timeout=60).raise_for_status()


# ---- one POST ----------------------------------------------------------------------------------------------


def test_a_trickled_answer_ends_at_the_deadline_not_per_byte(manager):
    manager.trickle.add("slow")
    start = time.monotonic()
    answer = post_json(manager.url, {"run_id": "slow"}, timeout=1.0, max_answer=2000)
    took = time.monotonic() - start
    assert answer.timed_out and answer.status is None
    [post] = manager.of("slow")
    wait_for(lambda: post.closed is not None, "the manager to see the POST closed")
    # requests' per-read timeout would keep this POST open for the whole trickle (over 100 s).
    assert took < 10 and post.closed - post.opened < 10 and not post.answered
    print(f"\ntrickled answer, 1 s deadline: POST over after {took:.2f} s (the trickle takes ~{TRICKLED_ANSWER_S} s)")


def test_a_status_line_in_time_is_a_delivery_even_if_the_body_trickles(manager):
    manager.trickle_body.add("slow-body")
    start = time.monotonic()
    answer = post_json(manager.url, {"run_id": "slow-body"}, timeout=1.5, max_answer=2000)
    assert answer.status == 200 and answer.error is None and time.monotonic() - start < 10
    assert answer.body is not None and len(answer.body) < len('{"Message": "Training successful"}')


def test_a_refused_connection_is_a_connection_error():
    answer = post_json("http://127.0.0.1:9/x", {"run_id": "r"}, timeout=1.0, max_answer=10)
    assert answer.status is None and answer.error.startswith("connection error")


# ---- the watcher against a trickling manager ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trickling_manager_two_watchers_no_overlap_and_others_not_held(backend, settings, sandbox, manager,
                                                                       request, tmp_path):
    url = (str(tmp_path / "store.sqlite") if backend == "sqlite"
           else request.getfixturevalue("postgres_server").create_database())
    store = Store(url)
    fast = dataclasses.replace(settings, store_path=url, tm_url=manager.url, notify_timeout=4.0, lease_ttl=1.0,
                               poll_interval=0.2, notify_max_backoff=1.0)
    ids = _runs(sandbox, 6)
    _track(store, ids)
    slow, others = ids[0], ids[1:]
    manager.trickle.add(slow)
    _set_state(sandbox, [slow], "SUCCEEDED")
    watchers = [Watcher(KfConnect(fast), store, fast, holder=h).start() for h in ("a", "b")]
    try:
        wait_for(lambda: manager.of(slow), "the trickled POST", limit=60)
        _set_state(sandbox, others, "SUCCEEDED")  # they end while the trickled POST is open
        wait_for(lambda: len(manager.of(slow)) >= 3, "three timed-out POSTs of the trickled run", limit=120)
        manager.trickle.clear()  # the manager recovers: the next attempt is answered
        wait_for(lambda: not store.pending() and not store.tracked(), "every notification delivered", limit=120)
        time.sleep(1.0)  # more cycles of both watchers
    finally:
        for w in watchers:
            w.stop()
    first = manager.of(slow)[0]
    assert manager.max_overlap() == 1  # never two POSTs of one run open at once, whichever watcher held the lease
    assert sorted(manager.answered()) == sorted(ids)  # each run answered once
    assert all(len(manager.of(r)) == 1 for r in others)
    # The five others, ending while the trickled POST was open, were answered before it ended: the pass polls on
    # while only slow POSTs are open, and one slow answer holds nobody.
    assert all(first.opened < manager.of(r)[0].opened < first.closed for r in others)
    durations = [p.closed - p.opened for p in manager.of(slow) if p.trickled]
    assert durations and max(durations) < 2 * fast.notify_timeout  # the wall bound, not ~100 s of trickle
    note = store.notification(slow)
    assert note.delivered_at and note.attempts == len(manager.of(slow))
    print(f"\n{backend}: trickled run POSTed {len(manager.of(slow))} times, longest {max(durations):.2f} s, "
          f"never overlapping; the 5 others answered within "
          f"{max(manager.of(r)[0].opened for r in others) - first.opened:.2f} s of the trickled POST's start")


def test_slow_answers_overlap_up_to_the_limit_fast_ones_go_one_at_a_time(settings, sandbox, tm_receiver, tmp_path):
    store = Store(str(tmp_path / "store.sqlite"))
    ids = _runs(sandbox, 8)
    _track(store, ids)
    _set_state(sandbox, ids, "FAILED")
    poll_once(KfConnect(settings), store, now=1000.0)
    tm_receiver.delay = 1.6  # each answer takes longer than SLOW_ANSWER (1 s)
    slow = deliver_due(store, tm_receiver.url, now=1000.0, timeout=5.0, max_backoff=60.0, concurrency=3)
    assert sorted(slow.delivered) == sorted(ids) and 2 <= slow.most_in_flight <= 3
    assert sorted(tm_receiver.run_ids()) == sorted(ids)


def test_a_hung_manager_gets_one_post_per_pass(settings, sandbox, manager, tmp_path):
    store = Store(str(tmp_path / "store.sqlite"))
    ids = _runs(sandbox, 5)
    _track(store, ids)
    _set_state(sandbox, ids, "SUCCEEDED")
    manager.trickle.update(ids)  # every answer trickles: nothing is ever answered in time
    poll_once(KfConnect(settings), store, now=1000.0)
    result = deliver_due(store, manager.url, now=1000.0, timeout=1.2, max_backoff=60.0, concurrency=8)
    # The first POST was open past SLOW_ANSWER, so a second started beside it; when the first timed out with no
    # answer anywhere meanwhile, the pass started nothing more.
    assert len(result.retrying) == len(manager.run_ids()) <= 2 and not result.delivered
    assert sum(n.attempts for n in store.pending()) == len(manager.run_ids())


# ---- many runs at once ------------------------------------------------------------------------------------


def test_1500_runs_ending_at_once_are_delivered_in_one_cycle_each_once(settings, sandbox, tm_receiver, store_url):
    store = Store(store_url)
    ids = _runs(sandbox, 1500)
    _track(store, ids)
    _set_state(sandbox, ids, "SUCCEEDED")
    wsettings = dataclasses.replace(settings, tm_url=tm_receiver.url, poll_interval=3600.0)
    watcher = Watcher(KfConnect(wsettings), store, wsettings, holder="one")
    start = time.monotonic()
    cycle = watcher.poll_once(now=1000.0)
    took = time.monotonic() - start
    assert len(cycle.poll.finished) == 1500 and len(cycle.delivery.delivered) == 1500  # no cap per cycle
    assert sorted(tm_receiver.run_ids()) == sorted(ids)
    assert cycle.delivery.renewals <= 1500 // 100 + 2  # per batch of 100, not per notification
    watcher.poll_once(now=1010.0)
    assert len(tm_receiver.received) == 1500 and store.pending() == []
    print(f"\n{store.backend}: 1,500 runs ending at once: one cycle of {took:.1f} s, "
          f"{cycle.delivery.renewals} lease renewals")


def test_1500_runs_two_watchers_each_notified_once(settings, sandbox, tm_receiver, store_url):
    store = Store(store_url)
    ids = _runs(sandbox, 1500)
    _track(store, ids)
    fast = dataclasses.replace(settings, store_path=store_url, tm_url=tm_receiver.url, poll_interval=0.2,
                               lease_ttl=1.0, notify_timeout=2.0)
    watchers = [Watcher(KfConnect(fast), Store(store_url), fast, holder=h).start() for h in ("a", "b")]
    try:
        _set_state(sandbox, ids, "SUCCEEDED")
        wait_for(lambda: len(tm_receiver.received) >= 1500, "1,500 notifications", limit=300)
        time.sleep(1.5)  # more cycles of both watchers
    finally:
        for w in watchers:
            w.stop()
    assert len(tm_receiver.received) == 1500 and sorted(tm_receiver.run_ids()) == sorted(ids)


# ---- polling ----------------------------------------------------------------------------------------------


def test_kfp_sends_only_finished_runs(settings, sandbox):
    ids = _runs(sandbox, 8)
    states = ["SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "RUNNING", "PENDING", "PAUSED", "CANCELING"]
    for run_id, state in zip(ids, states, strict=True):
        _set_state(sandbox, [run_id], state)
    got = {r["run_id"]: r["state"] for r in KfConnect(settings).finished_runs(ids + [str(uuid.uuid4())])}
    assert got == dict(zip(ids[:4], states[:4], strict=True))


def test_each_cycle_costs_one_call_per_200_runs_and_the_window_finds_a_deleted_run(settings, sandbox, tmp_path,
                                                                                    kfp_counts):
    store = Store(str(tmp_path / "store.sqlite"))
    ids = _runs(sandbox, 2 * SWEEP + 50)
    _track(store, ids)
    ghost = str(uuid.uuid4())  # newest: in the last window of the rotation
    store.track(ghost, "tj-ghost", now=1e6)
    kf, cursor, found_at = KfConnect(settings), None, None
    for k in range(3):
        kfp_counts.reset()
        result = poll_once(kf, store, now=1000.0 + k, swept_to=cursor)
        cursor = result.swept_to
        if result.vanished:
            found_at = k
            assert result.vanished == [ghost] and result.finished == {ghost: MANUAL_RECONCILE}
            assert kfp_counts.read()["total"] == 3 + 1  # 451 runs: three list calls, then the 404 for the ghost
        else:
            assert kfp_counts.read()["total"] == 3
    assert found_at == 2  # the third window (runs 401..451) holds it
    assert len(store.tracked()) == len(ids)


def test_a_post_starts_only_while_the_lease_outlasts_its_deadline(settings, sandbox, tm_receiver, tmp_path):
    from kfadapter.watch.delivery import LeaseRef

    store = Store(str(tmp_path / "store.sqlite"))
    ids = _runs(sandbox, 4)
    _track(store, ids)
    _set_state(sandbox, ids, "SUCCEEDED")
    poll_once(KfConnect(settings), store, now=1000.0)
    # A 2 s lease cannot hold a POST with a 2 s deadline plus the margin: it is renewed before every POST.
    short = deliver_due(store, tm_receiver.url, now=1000.0, timeout=2.0, max_backoff=60.0,
                        lease=LeaseRef("run-watcher", "me", 2.0), clock=time.time)
    # One renewal per batch read (two: the second finds nothing left) and one before each of the 4 POSTs.
    assert len(short.delivered) == 4 and short.renewals == 2 + 4
    assert store.lease("run-watcher")[0] == "me"
