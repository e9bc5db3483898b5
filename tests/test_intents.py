"""Intent before action: the store holds an execution before KFP is asked for its run; reconciliation tracks
the run of an intent whose execution died, or drops the intent after the grace period."""
from __future__ import annotations

import dataclasses

import pytest
import requests
from sqlalchemy import event

from kfadapter.app import create_app
from kfadapter.core.errors import StoreUnavailable
from kfadapter.kfconnect import KfConnect
from kfadapter.watch.store import Store
from kfadapter.watch.watcher import Watcher

from tests.conftest import package, upload

EXECUTION = {"pipeline_name": "p", "experiment_name": "Default", "arguments": {"a": "1", "b": "2"}}


def _full(store: Store) -> Store:
    """Make every new connection of `store` unable to grow its file: a full disk, without root."""
    store.db.engine.dispose()
    event.listen(store.db.engine, "connect", lambda conn, _rec: conn.execute(
        f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"))
    return store


def test_full_store_answers_503_and_kfp_is_never_called(settings, sandbox, kfp_counts, client):
    upload(client, "p", package("add_v2.yaml"))
    limited = _full(Store(settings.store_path))
    for size in (200, 1):  # use up the pages left in the file, then the room left in the intents' pages
        with pytest.raises(StoreUnavailable):
            for i in range(5000):
                limited.add_intent(f"f{size}-{i}", "t", "p", "x" * size, 0.0)
    full = create_app(settings, store=limited).test_client()
    kfp_counts.reset()
    answers = [full.post(f"/trainingjobs/tj-{i}/execution", json=EXECUTION) for i in range(10)]
    assert {a.status_code for a in answers} == {503}
    assert answers[0].headers["Content-Type"] == "application/json"
    assert answers[0].json["code"] == "store_unavailable" and "full" in answers[0].json["message"]
    assert kfp_counts.read()["total"] == 0  # not one KFP call, so no run was started
    assert requests.get(f"{sandbox.url}/apis/v2beta1/runs", timeout=5).json().get("runs") is None


def test_execution_leaves_no_intent_and_a_kfp_refusal_drops_its_intent(client, settings):
    upload(client, "p", package("add_v2.yaml"))
    resp = client.post("/trainingjobs/tj-1/execution", json=EXECUTION)
    assert resp.status_code == 200
    store = Store(settings.store_path)
    assert store.intents() == [] and store.get(resp.json["run_id"]).trainingjob_id == "tj-1"
    assert resp.json["run_name"].startswith("tj-1-")
    bad = client.post("/trainingjobs/tj-2/execution", json=EXECUTION | {"pipeline_name": "nope"})
    assert bad.status_code == 404 and store.intents() == []


def _kfp_run(sandbox, client, display_name: str) -> str:
    pid = client.get("/pipelineIds/p").json["id"]
    vid = client.get("/pipelines/p/versions").json["versions"][0]["id"]
    exp = client.get("/experiments").json["Default"]
    resp = requests.post(f"{sandbox.url}/apis/v2beta1/runs", timeout=5, json={
        "display_name": display_name, "experiment_id": exp,
        "pipeline_version_reference": {"pipeline_id": pid, "pipeline_version_id": vid},
        "runtime_config": {"parameters": {"a": 1, "b": 2}}})
    resp.raise_for_status()
    return resp.json()["run_id"]


def test_reconcile_tracks_found_runs_and_drops_stale_intents(settings, sandbox, client, tm_receiver):
    upload(client, "p", package("add_v2.yaml"))
    wsettings = dataclasses.replace(settings, tm_url=tm_receiver.url, intent_grace=60.0)
    store = Store(settings.store_path)
    # Three executions died: one after KFP started its run, two before (or KFP never got the request).
    store.add_intent("tok1", "tj-1", "p", "tj-1-20260101000000-tok1", 1000.0)
    store.add_intent("tok2", "tj-2", "p", "tj-2-20260101000000-tok2", 1000.0)
    store.add_intent("tok3", "tj-3", "p", "tj-3-20260101000000-tok3", 1050.0)
    run_id = _kfp_run(sandbox, client, "tj-1-20260101000000-tok1")
    watcher = Watcher(KfConnect(wsettings), store, wsettings, holder="w")
    cycle = watcher.poll_once(now=1070.0)
    assert cycle.intents.found == {"tok1": run_id} and cycle.intents.dropped == ["tok2"]
    assert cycle.intents.waiting == 1 and [i.token for i in store.intents()] == ["tok3"]
    assert store.get(run_id).trainingjob_id == "tj-1"
    requests.post(f"{sandbox.url}/_sandbox/runs/state", json={"run_ids": [run_id], "state": "SUCCEEDED"},
                  timeout=5).raise_for_status()
    watcher.poll_once(now=1111.0)
    assert [r["body"] for r in tm_receiver.received] == [
        {"run_id": run_id, "run_status": "SUCCEEDED", "trainingjob_id": "tj-1"}]
    assert store.intents() == []  # tok3's grace ran out too
