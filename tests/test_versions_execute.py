"""A package compiled with resource setters (kfp SDK 2.17.3: resourceCpuLimit ... beside cpuLimit ...) uploaded
through the adapter to a sandbox playing KFP 2.3 and 2.17 (through the UI proxy) and an unlabelled 2.5, then
really run: its outputs and each step's log (main-logs on 2.3, executor-logs from 2.5). Marked `execute` (slow,
needs PyPI)."""
from __future__ import annotations

import dataclasses

import pytest

from kfadapter.app import create_app
from kfadapter.sandbox import SandboxServer
from kfadapter.settings import Settings

from tests.conftest import ACROSS, door_url, package, upload
from tests.execution import require_kfp_local, wait_for

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@pytest.fixture(scope="module", params=ACROSS, ids=[f"{v}-{d}" for v, d in ACROSS])
def xsandbox(request, tmp_path_factory):
    """A sandbox KFP playing the version that executes v2 runs, and the door the adapter takes to it (2.3 and 2.17
    through the UI proxy, the unlabelled 2.5 through the API server)."""
    version, door = request.param
    with SandboxServer(execute=True, workers=1, workdir=str(tmp_path_factory.mktemp("runs")),
                       kfp_version=version) as server:
        server.door = door
        yield server


@pytest.fixture
def xclient(xsandbox, tmp_path):
    xsandbox.reset()
    settings = Settings(kfp_endpoint=door_url(xsandbox, xsandbox.door), store_path=str(tmp_path / "store.sqlite"), kfp_connect_timeout=2.0,
                        kfp_read_timeout=5.0, kfp_upload_timeout=10.0, mlmd_endpoint=xsandbox.mlmd_endpoint,
                        object_store_endpoint=f"{xsandbox.url}/_s3", object_store_access_key="minio",
                        object_store_secret_key="minio123", poll_interval=3600.0)
    return create_app(dataclasses.replace(settings)).test_client()


@pytest.mark.execute
def test_resource_setters_package_runs_across_versions_and_doors(xclient, xsandbox):
    require_kfp_local()
    assert upload(xclient, "res", package("resource_setters_v2.yaml")).status_code == 200
    resp = xclient.post("/trainingjobs/tj1/execution", json={"pipeline_name": "res", "arguments": {"epochs": "3"}})
    assert resp.status_code == 200, resp.json
    run_id = resp.json["run_id"]
    run = wait_for(lambda: (lambda r: r if r["run_status"] in TERMINAL else None)(xclient.get(f"/runs/{run_id}").json),
                   300, what="the run to finish")  # two tasks, each a venv and a pip install
    assert run["run_status"] == "SUCCEEDED", run
    out = xclient.get(f"/runs/{run_id}/outputs").json
    tasks = {t["name"]: t for t in out["tasks"]}
    assert sorted(tasks) == ["report", "train"]
    assert sorted(o["name"] for o in tasks["train"]["outputs"]) == ["Output", "model"]  # no executor-logs here
    uri = next(o["uri"] for o in tasks["train"]["outputs"] if o["name"] == "model")
    # From 2.5 KFP puts a random segment before the output name.
    assert len(uri.split(f"/{run_id}/train/")[1].split("/")) == (1 if xsandbox.kfp_version == "2.3" else 2)
    log = xclient.get(tasks["train"]["log"])
    assert log.status_code == 200, log.json
    assert "training for 3 epochs" in log.get_data(as_text=True)
    assert log.headers["X-Kfadapter-Log-Source"] == ("main-logs" if xsandbox.kfp_version == "2.3" else "executor-logs")
    every = xclient.get(f"/runs/{run_id}/logs").get_data(as_text=True)
    assert "===== train (" in every and "accuracy is 0.5" in every
    print(f"KFP {xsandbox.kfp_version}: ran in {run['finished_at']} (created {run['created_at']})")


@pytest.mark.execute
def test_a_finished_steps_log_and_outputs_are_read_while_the_next_step_runs(xclient, xsandbox):
    """KFP records each task when it ends (its launcher publishes to ML Metadata, Argo archives its log), so the
    first step's log and outputs are there while the second runs, and every view agrees with GET /runs/<id>."""
    require_kfp_local()
    assert upload(xclient, "wait", package("step_then_wait_v2.yaml")).status_code == 200
    resp = xclient.post("/trainingjobs/tj-wait/execution",
                        json={"pipeline_name": "wait", "arguments": {"rows": "3", "seconds": "600"}})
    assert resp.status_code == 200, resp.json
    run_id = resp.json["run_id"]

    def going():
        run = xclient.get(f"/runs/{run_id}").json
        states = {t["name"]: t["state"] for t in run["tasks"]}
        return run if states == {"make-data": "SUCCEEDED", "evaluate": "RUNNING"} else None

    run = wait_for(going, 300, what="make-data to end and evaluate to run")
    ids = {t["name"]: t["id"] for t in run["tasks"]}
    assert [t["name"] for t in run["tasks"]] == ["make-data", "evaluate"] and all(ids.values())
    log = xclient.get(f"/runs/{run_id}/logs?task=make-data")
    assert log.status_code == 200, log.json
    assert "making 3 rows" in log.get_data(as_text=True) and "make-data done" in log.get_data(as_text=True)
    assert log.headers["X-Kfadapter-Log-Source"] == ("main-logs" if xsandbox.kfp_version == "2.3" else "executor-logs")
    every = xclient.get(f"/runs/{run_id}/logs").get_data(as_text=True)
    assert f"===== make-data ({ids['make-data']}) SUCCEEDED =====\n" in every and "make-data done" in every
    assert f"===== evaluate ({ids['evaluate']}) RUNNING =====\n[the step is RUNNING" in every
    assert every.index("===== make-data") < every.index("===== evaluate")
    waiting = xclient.get(f"/runs/{run_id}/logs?task=evaluate")
    assert waiting.status_code == 404 and waiting.json["code"] == "log_not_available"
    assert waiting.json["details"]["state"] == "RUNNING"
    out = xclient.get(f"/runs/{run_id}/outputs").json
    assert out["finished"] is False and out["run_status"] == "RUNNING"
    assert [(t["name"], t["id"], t["state"]) for t in out["tasks"]] == [
        (t["name"], t["id"], t["state"]) for t in run["tasks"]]
    made = {o["name"]: o for o in out["tasks"][0]["outputs"]}
    assert made["Output"]["value"] == 3 and made["data"]["available"] is True
    assert made["data"]["value"] == "0\n1\n2"
    assert out["tasks"][1]["outputs"] == []  # evaluate has published nothing yet
    # The task's other names are aliases of the one id.
    alias = out["tasks"][0]["mlmd_execution_id"]
    assert xclient.get(f"/runs/{run_id}/outputs?task={alias}").json["tasks"][0]["id"] == ids["make-data"]
    assert xclient.get(f"/runs/{run_id}/logs?task={ids['make-data']}").status_code == 200
    # DELETE stops it; the training job's history keeps the run with the state it ends in.
    stopped = xclient.delete(f"/runs/{run_id}")
    assert stopped.status_code == 200 and stopped.json["terminated"] is True
    ended = wait_for(lambda: (lambda r: r if r["run_status"] in TERMINAL else None)(xclient.get(f"/runs/{run_id}").json),
                     60, what="the terminated run to end")
    assert ended["run_status"] == "FAILED" and ended["trainingjob_id"] == "tj-wait" and ended["tracked"] is False
    [kept] = xclient.get("/trainingjobs/tj-wait/runs").json["runs"]
    assert kept["run_id"] == run_id and kept["state"] == "FAILED" and kept["notification"]["status"] == "not_sent"
