"""The run watcher, one `poll_once()` at a time with an explicit clock: no sleeps anywhere."""
from __future__ import annotations

import dataclasses
import re
import time
import uuid

import pytest
import requests

from kfadapter.kfconnect import KfConnect
from kfadapter.watch.delivery import LeaseRef, backoff, deliver_due
from kfadapter.watch.poller import MANUAL_RECONCILE, poll_once
from kfadapter.watch.store import Store
from kfadapter.watch.watcher import LEASE_NAME, Watcher

from tests.conftest import package, upload


@pytest.fixture
def wsettings(settings, tm_receiver):
    return dataclasses.replace(settings, tm_url=tm_receiver.url, poll_interval=3600.0, notify_timeout=2.0,
                               notify_max_backoff=60.0)


@pytest.fixture
def store(wsettings):
    return Store(wsettings.store_path)


@pytest.fixture
def watcher(wsettings, store):
    return Watcher(KfConnect(wsettings), store, wsettings, holder="test-watcher")


@pytest.fixture
def make_runs(client, sandbox, store):
    """Create n PENDING runs in the sandbox and track them (trainingjob id = tj-<i>)."""
    pid = upload(client, "p", package("add_v2.yaml")).json["pipeline_id"]
    vid = client.get("/pipelines/p/versions").json["versions"][0]["id"]

    def make(n: int) -> list[str]:
        resp = requests.post(f"{sandbox.url}/_sandbox/bulk/runs",
                             json={"count": n, "pipeline_id": pid, "pipeline_version_id": vid}, timeout=60)
        resp.raise_for_status()
        ids = resp.json()["run_ids"]
        for i, run_id in enumerate(ids):
            store.track(run_id, f"tj-{i}")
        return ids

    return make


def set_state(sandbox, run_ids, state):
    requests.post(f"{sandbox.url}/_sandbox/runs/state", json={"run_ids": list(run_ids), "state": state},
                  timeout=30).raise_for_status()


def test_terminal_states_are_notified_once(watcher, make_runs, sandbox, tm_receiver, store):
    ids = make_runs(6)
    for run_id, state in zip(ids, ["SUCCEEDED", "FAILED", "SKIPPED", "RUNNING", "RUNNING", "CANCELED"]):
        set_state(sandbox, [run_id], state)
    requests.post(f"{sandbox.url}/apis/v2beta1/runs/{ids[4]}:terminate", timeout=5).raise_for_status()
    cycle = watcher.poll_once(now=1000.0)
    assert cycle.leader and cycle.poll.error is None
    got = {r["body"]["run_id"]: r["body"] for r in tm_receiver.received}
    assert got == {  # CANCELING (ids[4]) is not an end: KFP has not reported how the terminated run ended
        ids[0]: {"run_id": ids[0], "run_status": "SUCCEEDED", "trainingjob_id": "tj-0"},
        ids[1]: {"run_id": ids[1], "run_status": "FAILED", "trainingjob_id": "tj-1"},
        ids[2]: {"run_id": ids[2], "run_status": "SKIPPED", "trainingjob_id": "tj-2"},
        ids[5]: {"run_id": ids[5], "run_status": "CANCELED", "trainingjob_id": "tj-5"},
    }
    assert {r["content_type"] for r in tm_receiver.received} == {"application/json"}
    assert {r["path"] for r in tm_receiver.received} == {"/trainingjob/pipelineNotification"}
    assert sorted(t.run_id for t in store.tracked()) == sorted([ids[3], ids[4]])
    watcher.poll_once(now=1010.0)
    assert len(tm_receiver.received) == 4  # nothing twice
    set_state(sandbox, [ids[3]], "SUCCEEDED")
    set_state(sandbox, [ids[4]], "FAILED")  # a terminated run's workflow ends Failed (deadline 0)
    watcher.poll_once(now=1020.0)
    got = {r["body"]["run_id"]: r["body"] for r in tm_receiver.received[4:]}
    assert got == {ids[3]: {"run_id": ids[3], "run_status": "SUCCEEDED", "trainingjob_id": "tj-3"},
                   ids[4]: {"run_id": ids[4], "run_status": "FAILED", "trainingjob_id": "tj-4"}}
    assert store.tracked() == []


def test_kfp_unavailable_cycle_changes_nothing(watcher, make_runs, sandbox, tm_receiver, store):
    ids = make_runs(3)
    set_state(sandbox, ids, "FAILED")
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"status": 503, "path_prefix": "/apis/"},
                  timeout=5).raise_for_status()
    cycle = watcher.poll_once(now=1000.0)
    assert cycle.poll.error and tm_receiver.received == [] and len(store.tracked()) == 3
    assert store.pending() == []  # no "Manual reconcile", no failed training
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    watcher.poll_once(now=1010.0)
    assert sorted(tm_receiver.run_ids()) == sorted(ids)
    assert {r["body"]["run_status"] for r in tm_receiver.received} == {"FAILED"}


def test_kfp_slow_cycle_changes_nothing(watcher, make_runs, sandbox, tm_receiver, store, wsettings):
    ids = make_runs(2)
    set_state(sandbox, ids, "SUCCEEDED")
    slow = Watcher(KfConnect(dataclasses.replace(wsettings, kfp_read_timeout=0.2)), store, wsettings,
                   holder="test-watcher")
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"delay": 0.6, "times": 1, "path_prefix": "/apis/"},
                  timeout=5).raise_for_status()
    assert slow.poll_once(now=1000.0).poll.error and tm_receiver.received == []
    slow.poll_once(now=1001.0)
    assert sorted(tm_receiver.run_ids()) == sorted(ids)


def test_run_unknown_to_kfp_is_notified_once_as_manual_reconcile(watcher, store, tm_receiver, make_runs):
    make_runs(1)
    ghost = str(uuid.uuid4())
    store.track(ghost, "tj-ghost")
    watcher.poll_once(now=1000.0)
    watcher.poll_once(now=1010.0)
    assert [r["body"] for r in tm_receiver.received] == [
        {"run_id": ghost, "run_status": MANUAL_RECONCILE, "trainingjob_id": "tj-ghost"}]


def test_receiver_down_then_503_then_up(watcher, make_runs, sandbox, tm_receiver, store, client):
    ids = make_runs(6)
    set_state(sandbox, ids, "SUCCEEDED")
    tm_receiver.stop()  # connection refused
    now = 1000.0
    for _ in range(3):
        watcher.poll_once(now=now)
        now += 61.0  # past the longest backoff
    pending = store.pending()
    assert len(pending) == 6 and all(n.delivered_at is None for n in pending)
    # One failed attempt per cycle: a refused manager is not hammered with the whole queue.
    assert sum(n.attempts for n in pending) == 3
    assert all("connection" in n.last_error for n in pending if n.attempts)
    view = client.get("/watches").json
    assert len(view["pending"]) == 6
    assert {p["next_attempt_at"][-1] for p in view["pending"]} == {"Z"}  # ISO 8601 like every time given
    assert sum(1 for p in view["pending"] if (p["last_error"] or "").startswith("connection")) == 3
    tm_receiver.start()
    tm_receiver.answer = 503
    for _ in range(2):
        watcher.poll_once(now=now)
        now += 61.0
    assert sum(1 for n in store.pending() if n.last_status == 503) == 2 and tm_receiver.received == []
    tm_receiver.answer = 200
    watcher.poll_once(now=now)
    assert sorted(tm_receiver.run_ids()) == sorted(ids)
    assert store.pending() == []
    watcher.poll_once(now=now + 61.0)
    assert len(tm_receiver.received) == 6
    notes = [store.notification(run_id) for run_id in ids]
    assert all(n.last_status == 200 and n.delivered_at for n in notes)
    assert sum(n.attempts for n in notes) == 3 + 2 + 6  # refused, 503s, then one delivery each


def test_backoff_is_respected(watcher, make_runs, sandbox, tm_receiver, store):
    [run_id] = make_runs(1)
    set_state(sandbox, [run_id], "FAILED")
    tm_receiver.answer = 503
    watcher.poll_once(now=1000.0)  # attempt 1 fails: next in about 1 s
    watcher.poll_once(now=1000.5)  # not due yet
    assert store.notification(run_id).attempts == 1
    watcher.poll_once(now=1002.0)  # due: attempt 2 fails, next in about 2 s
    assert store.notification(run_id).attempts == 2
    assert 1003.5 < store.notification(run_id).next_attempt_at < 1004.5


def test_backoff_doubles_up_to_the_cap():
    import random

    rng = random.Random(1)
    waits = [backoff(n, 60.0, rng) for n in range(10)]
    assert 0.9 <= waits[0] <= 1.1 and 7.2 <= waits[3] <= 8.8
    assert max(waits) <= 60.0 and waits[-1] >= 54.0


def test_a_500_from_the_manager_is_delivered_not_retried(watcher, make_runs, sandbox, tm_receiver, store):
    [run_id] = make_runs(1)
    set_state(sandbox, [run_id], "FAILED")
    tm_receiver.answer = 500  # TM's answer to every non-SUCCEEDED notification
    watcher.poll_once(now=1000.0)
    watcher.poll_once(now=2000.0)
    assert len(tm_receiver.received) == 1
    note = store.notification(run_id)
    assert note.delivered_at == 1000.0 and note.attempts == 1 and note.last_status == 500


def test_1000_tracked_runs_cost_5_kfp_requests_per_cycle(watcher, make_runs, sandbox, kfp_counts, tm_receiver):
    ids = make_runs(1000)
    kfp_counts.reset()
    cycle = watcher.poll_once(now=1000.0)
    assert cycle.poll.tracked == 1000 and not cycle.poll.finished
    assert kfp_counts.read()["total"] <= 5
    set_state(sandbox, ids[:100], "SUCCEEDED")
    kfp_counts.reset()
    cycle = watcher.poll_once(now=1010.0)
    assert len(cycle.poll.finished) == 100 and len(tm_receiver.received) == 100
    assert kfp_counts.read()["total"] <= 5


def test_only_the_lease_holder_polls(wsettings, store, make_runs, sandbox, tm_receiver):
    ids = make_runs(10)
    a = Watcher(KfConnect(wsettings), store, wsettings, holder="a")
    b = Watcher(KfConnect(wsettings), store, wsettings, holder="b")
    set_state(sandbox, ids[:5], "SUCCEEDED")
    assert a.poll_once(now=1000.0).leader is True
    assert b.poll_once(now=1001.0).leader is False
    set_state(sandbox, ids[5:], "FAILED")
    assert b.poll_once(now=1002.0).leader is False
    assert a.poll_once(now=1003.0).leader is True
    assert sorted(tm_receiver.run_ids()) == sorted(ids)
    # a stops renewing (killed): once its lease expires, b takes over
    assert b.poll_once(now=1003.0 + a.lease_ttl + 1).leader is True
    assert store.lease(LEASE_NAME)[0] == "b"
    a.stop()  # releasing a lease held by someone else leaves it alone
    assert store.lease(LEASE_NAME)[0] == "b"


def test_thread_stops_promptly(wsettings, store):
    w = Watcher(KfConnect(wsettings), store, wsettings).start()
    w.stop(timeout=5)
    assert w._thread is None and store.lease(LEASE_NAME) is None


def test_watches_route_lists_tracked_runs(client, make_runs):
    ids = make_runs(2)
    view = client.get("/watches").json
    assert sorted(t["run_id"] for t in view["tracked"]) == sorted(ids)
    assert view["pending"] == []
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t["created_at"]) for t in view["tracked"])


def test_a_pass_stops_at_its_next_batch_once_its_lease_is_lost(wsettings, make_runs, sandbox, tm_receiver, store):
    # The lease is renewed per batch (and while POSTs are open), not per notification: the batch read under the
    # lease is delivered (the lease covers each of its POSTs' deadlines), the next renewal fails and the pass ends.
    ids = make_runs(5)
    set_state(sandbox, ids, "SUCCEEDED")
    assert len(poll_once(KfConnect(wsettings), store, now=1000.0).finished) == 5
    lease = LeaseRef(LEASE_NAME, "holder", 60.0)

    def steal(_body):  # while the first notification is on its way, another process takes the lease
        if store.lease(LEASE_NAME)[0] == "holder":
            store.release_lease(LEASE_NAME, "holder")
            assert store.acquire_lease(LEASE_NAME, "thief", 60.0, 1000.0)

    tm_receiver.on_receive = steal
    result = deliver_due(store, tm_receiver.url, now=1000.0, timeout=2.0, max_backoff=60.0, lease=lease,
                         clock=lambda: 1000.0, batch=2)
    assert result.lease_lost and len(result.delivered) == 2 and result.renewals == 1
    assert len(tm_receiver.received) == 2 and len(store.pending()) == 3
    note = store.notification(tm_receiver.run_ids()[0])
    assert note.delivered_at == 1000.0 and note.tm_answer == '{"Message": "Training successful"}'


def test_slow_manager_two_watchers_each_run_notified_once(wsettings, store, make_runs, sandbox, tm_receiver):
    # A pass (12 x 0.4 s) outlasts the lease (ttl 2 x 1.2 + 1 = 3.4 s): the holder renews it as it goes, so the
    # other watcher, polling all the while on the real clock, never takes over mid-pass. The timeout leaves 0.8 s
    # over each answer: a busy machine must not turn a slow answer into a timeout (and a second POST).
    fast = dataclasses.replace(wsettings, lease_ttl=0.5, notify_timeout=1.2, poll_interval=0.05)
    ids = make_runs(12)
    set_state(sandbox, ids, "SUCCEEDED")
    tm_receiver.delay = 0.4
    watchers = [Watcher(KfConnect(fast), store, fast, holder=h).start() for h in ("a", "b")]
    try:
        deadline = time.monotonic() + 60
        while len(tm_receiver.received) < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        for w in watchers:
            w.stop()
    assert watchers[0].lease_ttl < 12 * 0.4
    assert sorted(tm_receiver.run_ids()) == sorted(ids)  # each once, none twice


def test_history_keeps_trainingjob_and_lists_a_jobs_runs(watcher, sandbox, tm_receiver, store, client, wsettings):
    upload(client, "p", package("add_v2.yaml"))
    # The same training job ran three times, started as the training manager starts them (GET /runs/<id> reads
    # the store only for runs an execution started).
    ids = [client.post("/trainingjobs/tj-2/execution", json={"pipeline_name": "p"}).json["run_id"] for _ in range(3)]
    set_state(sandbox, ids[:2], "SUCCEEDED")
    set_state(sandbox, [ids[2]], "RUNNING")
    watcher.poll_once(now=1000.0)
    done = client.get(f"/runs/{ids[0]}").json
    assert done["trainingjob_id"] == "tj-2" and done["tracked"] is False
    assert done["notification"]["status"] == "delivered"
    assert done["notification"]["notified_at"] == "1970-01-01T00:16:40.000Z"  # ISO 8601, like KFP's times
    listing = client.get("/trainingjobs/tj-2/runs")
    assert listing.json["runs"][2]["tracked_at"].endswith("Z")
    assert listing.json["runs"][2]["finished_at"] == "1970-01-01T00:16:40.000Z"
    assert listing.status_code == 200 and listing.headers["Content-Type"] == "application/json"
    runs = listing.json["runs"]
    assert [r["run_id"] for r in runs] == [ids[2], ids[1], ids[0]]  # newest first
    assert [r["state"] for r in runs] == ["RUNNING", "SUCCEEDED", "SUCCEEDED"]
    assert [r["notification"]["status"] for r in runs] == ["waiting_for_run", "delivered", "delivered"]
    assert runs[1]["notification"]["answer"] == '{"Message": "Training successful"}'
    assert runs[1]["notification"]["attempts"] == 1 and runs[1]["notification"]["last_status"] == 200
    assert client.get("/trainingjobs/nobody/runs").json == {"trainingjob_id": "nobody", "runs": []}
    # History goes after KFADAPTER_HISTORY_DAYS (30 by default).
    watcher.poll_once(now=1000.0 + 30 * 86400.0 - 1)
    assert len(client.get("/trainingjobs/tj-2/runs").json["runs"]) == 3
    watcher.poll_once(now=1000.0 + 30 * 86400.0 + 1)
    assert [r["run_id"] for r in client.get("/trainingjobs/tj-2/runs").json["runs"]] == [ids[2]]


def test_delete_keeps_the_run_in_its_jobs_history_with_the_state_it_ends_in(watcher, sandbox, store, client,
                                                                            tm_receiver):
    upload(client, "p", package("add_v2.yaml"))
    run_id = client.post("/trainingjobs/tj-del/execution", json={"pipeline_name": "p"}).json["run_id"]  # as TM does
    set_state(sandbox, [run_id], "RUNNING")
    resp = client.delete(f"/runs/{run_id}")
    assert resp.json["was_tracked"] is True and resp.json["run_status"] == "CANCELING"
    [kept] = client.get("/trainingjobs/tj-del/runs").json["runs"]
    assert (kept["run_id"], kept["state"], kept["tracked"]) == (run_id, "CANCELING", False)  # KFP's state now
    assert kept["notification"]["status"] == "not_sent" and "DELETE" in kept["notification"]["last_error"]
    assert kept["tracked_at"].endswith("Z") and kept["untracked_at"].endswith("Z")
    set_state(sandbox, [run_id], "FAILED")  # how KFP ends a terminated run's workflow
    [kept] = client.get("/trainingjobs/tj-del/runs").json["runs"]
    assert kept["state"] == "FAILED" and kept["finished_at"].endswith("Z")
    run = client.get(f"/runs/{run_id}").json
    assert run["trainingjob_id"] == "tj-del" and run["tracked"] is False
    assert run["notification"]["status"] == "not_sent"
    watcher.poll_once(now=1000.0)
    assert tm_receiver.received == []  # DELETE stopped tracking: the manager is not told
    assert client.get("/watches").json["tracked"] == []
    # Kept for KFADAPTER_HISTORY_DAYS like the runs that were notified.
    watcher.poll_once(now=time.time() + 30 * 86400.0 + 60)
    assert client.get("/trainingjobs/tj-del/runs").json["runs"] == []
