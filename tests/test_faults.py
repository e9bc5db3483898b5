"""Faults injected into the sandbox KFP (latency, 5xx, dropped connection, truncated body) on every KFP-backed
route family: the adapter answers 502/504 with the envelope, within its timeout, and recovers at once."""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.kfconnect import KfConnect
from kfadapter.watch.store import Store
from kfadapter.watch.watcher import Watcher

from tests.conftest import package, upload
from tests.support import Service, clean_env
from tests.test_bad_input import assert_envelope

READ_TIMEOUT = 0.4

FAULTS = {
    "slow": ({"delay": 1.2}, 504, "kfp_timeout"),
    "http-500": ({"status": 500}, 502, "kfp_unavailable"),
    "http-503": ({"status": 503}, 502, "kfp_unavailable"),
    "dropped-connection": ({"kind": "reset"}, 502, "kfp_unavailable"),
    "truncated-body": ({"kind": "truncate"}, 502, "kfp_unavailable"),
}

# One route per KFP-backed family; `{pid}` / `{run}` are filled from objects made before the fault.
ROUTES = [
    ("pipelines-list", "get", "/pipelines", {}),
    ("pipeline-id", "get", "/pipelineIds/p", {}),
    ("pipeline-detail", "get", "/pipelines/{pid}", {}),
    ("versions", "get", "/pipelines/p/versions", {}),
    ("upload", "post", "/pipelineIds/p", "upload"),
    ("pipeline-delete", "delete", "/pipelines/{pid}", {}),
    ("experiments", "get", "/experiments", {}),
    ("execution", "post", "/trainingjobs/tj/execution", {"json": {"pipeline_name": "p", "arguments": {}}}),
    ("runs-list", "get", "/runs", {}),
    ("run-detail", "get", "/runs/{run}", {}),
    ("run-terminate", "delete", "/runs/{run}", {}),
]


@pytest.fixture
def fast_fail_client(settings):
    return create_app(dataclasses.replace(settings, kfp_read_timeout=READ_TIMEOUT,
                                          kfp_upload_timeout=READ_TIMEOUT)).test_client()


def _fault(sandbox, **fault):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"path_prefix": "/apis/"} | fault,
                  timeout=5).raise_for_status()


@pytest.mark.parametrize("fault_name", list(FAULTS))
@pytest.mark.parametrize("route", ROUTES, ids=[r[0] for r in ROUTES])
def test_fault_on_route(fast_fail_client, settings, sandbox, fault_name, route):
    client = fast_fail_client
    _, method, path, kwargs = route
    # The pipeline and the run are made with the normal timeouts: on a busy machine 0.4 s is not always enough.
    setup = create_app(settings).test_client()
    made = upload(setup, "p", package("add_v2.yaml")).json
    run = setup.post("/trainingjobs/tj/execution", json={"pipeline_name": "p", "arguments": {}}).json
    path = path.format(pid=made["pipeline_id"], run=run["run_id"])
    fault, status, code = FAULTS[fault_name]
    _fault(sandbox, **fault)
    try:
        start = time.monotonic()
        resp = upload(client, "p", package("add_v2.yaml")) if kwargs == "upload" else \
            getattr(client, method)(path, **kwargs)
        elapsed = time.monotonic() - start
    finally:
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    assert_envelope(resp, status, code)
    # Bounded by the timeout (plus one retried connect), never by the fault: a generous ceiling, not a benchmark.
    assert elapsed < 10 * READ_TIMEOUT + 1
    again = upload(client, "p", package("add_v2.yaml")) if kwargs == "upload" else \
        getattr(client, method)(path, **kwargs)
    assert again.status_code < 500, again.json  # the next request works


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_watcher_keeps_going_through_faults(settings, sandbox, client, tm_receiver, fault_name):
    wsettings = dataclasses.replace(settings, kfp_read_timeout=READ_TIMEOUT, tm_url=tm_receiver.url)
    upload(client, "p", package("add_v2.yaml"))
    run_id = client.post("/trainingjobs/tj/execution", json={"pipeline_name": "p", "arguments": {}}).json["run_id"]
    requests.post(f"{sandbox.url}/_sandbox/runs/{run_id}/state", json={"state": "SUCCEEDED"}, timeout=5)
    watcher = Watcher(KfConnect(wsettings), Store(wsettings.store_path), wsettings, holder="w")
    _fault(sandbox, **FAULTS[fault_name][0])
    try:
        cycle = watcher.poll_once(now=100.0)
    finally:
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    assert cycle.poll.error and tm_receiver.received == []
    watcher.poll_once(now=200.0)
    assert [r["body"]["run_id"] for r in tm_receiver.received] == [run_id]


def test_slow_kfp_does_not_starve_liveness_under_gunicorn(sandbox, tmp_path):
    svc = Service(clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_PATH=str(tmp_path / "s.sqlite"),
                            KFADAPTER_WATCH="false", KFADAPTER_KFP_TIMEOUT="5"), tmp_path / "svc.log")
    try:
        _fault(sandbox, delay=0.3)
        with ThreadPoolExecutor(max_workers=100) as pool:
            slow = [pool.submit(requests.get, f"{svc.url}/experiments", timeout=60) for _ in range(100)]
            time.sleep(0.2)  # the slow requests are in flight
            live = requests.get(f"{svc.url}/liveness", timeout=3)  # a kubelet probe's patience
            answers = [f.result() for f in slow]
        assert live.status_code == 200
        assert [a.status_code for a in answers] == [200] * 100
    finally:
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
        svc.stop()
