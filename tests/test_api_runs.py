"""Execution and run routes against the sandbox KFP, observed independently through the real kfp.Client."""
from __future__ import annotations

import threading
import time
import warnings

import kfp
import pytest
import requests

from kfadapter.sandbox.workflow import ExecutedWorkflow, TaskRun
from kfadapter.watch.store import Store

from tests.conftest import across_versions, package, upload

pytestmark = across_versions  # O-RAN's KFP 2.3 and the newest, 2.17

TM_ARGS = {"epochs": "5", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "qoe",
           "modelVersion": "3", "modellocation": "s3://bucket/qoe"}


@pytest.fixture
def kfp_client(sandbox):
    """An independent kfp.Client on the sandbox, to check what the adapter really created."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=sandbox.url, namespace="observer")


def _execute(client, pipeline, version=None, args=TM_ARGS, tj="tj1", experiment="Default"):
    body = {"pipeline_name": pipeline, "experiment_name": experiment, "arguments": dict(args)}
    if version is not None:
        body["pipeline_version"] = version
    return client.post(f"/trainingjobs/{tj}/execution", json=body)


def _set_state(sandbox, run_id, state):
    requests.post(f"{sandbox.url}/_sandbox/runs/{run_id}/state", json={"state": state},
                  timeout=5).raise_for_status()


def test_execute_v2_converts_tm_strings_to_declared_types(client, kfp_client, settings):
    upload(client, "qoe_Pipeline", package("qoe_train_v2.yaml"))
    resp = _execute(client, "qoe_Pipeline", "qoe_Pipeline")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["run_status"] == "scheduled" and body["trainingjob_id"] == "tj1"
    assert {"run_id", "run_name", "experiment_name", "experiment_id", "pipeline_name", "pipeline_id"} <= set(body)
    assert body["ignored_arguments"] == ["featuregroup_name", "modelName", "modelVersion", "modellocation",
                                         "trainingjob_id"]
    run = kfp_client.get_run(body["run_id"])
    params = run.runtime_config.parameters
    assert params == {"epochs": 5, "featurepath": "fg_tj1", "modelname": "qoe", "modelversion": "3"}
    assert type(params["epochs"]) is int
    assert run.pipeline_version_reference.pipeline_version_id == body["pipeline_version_id"]
    tracked = Store(settings.store_path).get(body["run_id"])
    assert tracked is not None and tracked.trainingjob_id == "tj1"


def test_execute_latest_version_by_default(client, kfp_client):
    upload(client, "p", package("qoe_train_v2.yaml"))
    upload(client, "p", package("add_v2.yaml"))
    for version in (None, "latest", ""):
        resp = _execute(client, "p", version, args={"a": "2.5", "epochs": "9"})
        assert resp.status_code == 200, resp.json
        assert resp.json["pipeline_version"] == "2"
        assert kfp_client.get_run(resp.json["run_id"]).runtime_config.parameters == {"a": 2.5, "epochs": 9}


def test_execute_v1_keeps_parameters_through_v1beta1(client, sandbox, kfp_client):
    upload(client, "argo", package("qoe_train_v1_argo.yaml"))
    resp = _execute(client, "argo", args=TM_ARGS | {"lr": "0.5"}, tj="tj7")
    assert resp.status_code == 200, resp.json
    assert resp.json["pipeline_kind"] == "v1"
    assert resp.json["parameters"] == {"epochs": "5", "lr": "0.5", "trainingjob_id": "tj1"}
    run = requests.get(f"{sandbox.url}/apis/v1beta1/runs/{resp.json['run_id']}", timeout=5).json()["run"]
    sent = {p["name"]: p["value"] for p in run["pipeline_spec"]["parameters"]}
    assert sent == {"epochs": "5", "lr": "0.5", "trainingjob_id": "tj1"}


def test_execute_rejects_bad_arguments_and_creates_nothing(client, kfp_client, kfp_counts):
    upload(client, "p", package("qoe_train_v2.yaml"))
    kfp_counts.reset()
    resp = _execute(client, "p", args={"epochs": "five", "shuffle": "perhaps", "featuregroup_name": "fg"})
    assert resp.status_code == 400
    assert resp.json["code"] == "invalid_arguments"
    assert set(resp.json["details"]["invalid"]) == {"epochs", "shuffle"}
    assert "epochs" in resp.json["message"] and "shuffle" in resp.json["message"]
    counts = kfp_counts.read()["counts"]
    assert not any(k.startswith("POST") for k in counts), counts
    missing = _execute(client, "p", args={})
    assert missing.status_code == 400 and missing.json["details"]["missing"] == ["featurepath"]


@pytest.mark.parametrize("field, value, fragment", [
    ("pipeline_name", "nope", "pipeline 'nope'"),
    ("pipeline_version", "99", "version '99'"),
    ("experiment_name", "Other", "experiment 'Other'"),
])
def test_execute_unknown_names_are_404(client, field, value, fragment):
    upload(client, "p", package("qoe_train_v2.yaml"))
    body = {"pipeline_name": "p", "experiment_name": "Default", "arguments": TM_ARGS} | {field: value}
    resp = client.post("/trainingjobs/tj/execution", json=body)
    assert resp.status_code == 404 and fragment in resp.json["message"]


def test_list_runs_costs_one_kfp_call_per_pipeline(client, kfp_counts):
    upload(client, "a", package("add_v2.yaml"))
    upload(client, "b", package("add_v2.yaml"))
    made = [_execute(client, name, args={}, tj=f"tj{i}").json for i, name in enumerate(["a", "a", "a", "b", "b"])]
    kfp_counts.reset()
    resp = client.get("/runs")
    assert resp.status_code == 200
    runs = resp.json
    assert len(runs) == 5
    by_id = {v["run_id"]: v for v in runs.values()}
    for m in made:
        entry = by_id[m["run_id"]]
        assert entry["pipeline_name"] == m["pipeline_name"] and entry["pipeline_id"] == m["pipeline_id"]
        assert entry["run_status"] == "PENDING" and entry["experiment_id"] == m["experiment_id"]
        assert set(entry) == {"run_id", "run_description", "run_status", "experiment_id", "pipeline_name",
                              "pipeline_id"}
    counts = kfp_counts.read()
    assert counts["total"] == 3, counts  # one list page + one lookup for each of the two pipelines


def test_get_run_reports_times_and_state(client, sandbox):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    body = client.get(f"/runs/{run_id}").json
    assert body["run_id"] == run_id and body["run_status"] == "PENDING" and body["finished_at"] is None
    assert body["tracked"] is True and body["trainingjob_id"] == "tj1"
    _set_state(sandbox, run_id, "SUCCEEDED")
    done = client.get(f"/runs/{run_id}").json
    assert done["run_status"] == "SUCCEEDED" and done["finished_at"]


def test_delete_run_terminates_and_stops_tracking(client, settings, kfp_client, sandbox, kfp_counts):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    resp = client.delete(f"/runs/{run_id}")
    assert resp.status_code == 200
    # KFP moves a terminated run to CANCELING; the end comes from its workflow, never assumed.
    assert resp.json["run_status"] == "CANCELING" and resp.json["terminated"] is True
    assert resp.json["was_tracked"] is True and resp.json["finished_at"] is None
    assert kfp_client.get_run(run_id).state == "CANCELING"
    assert Store(settings.store_path).get(run_id) is None
    kfp_counts.reset()
    again = client.delete(f"/runs/{run_id}")  # CANCELING: KFP would answer 400, so nothing is sent
    assert again.status_code == 200 and again.json["terminated"] is False and again.json["was_tracked"] is False
    assert again.json["run_status"] == "CANCELING"
    assert kfp_counts.read() == {"total": 1, "counts": {"GET /apis/v2beta1/runs/{run_id}": 1}}
    assert client.get(f"/runs/{run_id}").json["run_status"] == "CANCELING"  # until KFP reports the end
    _set_state(sandbox, run_id, "FAILED")
    kfp_counts.reset()
    ended = client.delete(f"/runs/{run_id}")
    assert ended.status_code == 200 and ended.json["run_status"] == "FAILED" and ended.json["terminated"] is False
    assert kfp_counts.read() == {"total": 1, "counts": {"GET /apis/v2beta1/runs/{run_id}": 1}}
    assert client.delete("/runs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_delete_run_that_ends_while_terminating_answers_the_end(client, sandbox, kfp_counts):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    _set_state(sandbox, run_id, "RUNNING")
    # Hold the terminate call in the sandbox until the run has ended: KFP then answers 400 (no row to update).
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"delay": 1.0, "times": 1, "method": "POST",
                                                         "path_prefix": f"/apis/v2beta1/runs/{run_id}:terminate"},
                  timeout=5).raise_for_status()
    kfp_counts.reset()
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(resp=client.delete(f"/runs/{run_id}")))
    worker.start()
    key = "POST /apis/v2beta1/runs/{run_id}:terminate"
    deadline = time.monotonic() + 10
    while not kfp_counts.read()["counts"].get(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    _set_state(sandbox, run_id, "SUCCEEDED")  # the run ends while the terminate is on its way
    worker.join(10)
    resp = answer["resp"]
    assert resp.status_code == 200, resp.json
    assert resp.json["run_status"] == "SUCCEEDED" and resp.json["terminated"] is False
    counts = kfp_counts.read()["counts"]
    assert counts == {"GET /apis/v2beta1/runs/{run_id}": 2, key: 1}  # read, terminate (400), read again


def test_delete_run_still_fails_when_kfp_refuses_for_another_reason(client, sandbox):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"status": 400, "times": 1, "method": "POST",
                                                         "path_prefix": f"/apis/v2beta1/runs/{run_id}:terminate"},
                  timeout=5).raise_for_status()
    resp = client.delete(f"/runs/{run_id}")  # the run is still PENDING after KFP's 400: not a race
    assert resp.status_code == 400 and resp.json["code"] == "kfp_rejected"
    assert client.get(f"/runs/{run_id}").json["tracked"] is True


def test_get_run_shows_every_task_while_it_goes_and_why_it_failed(client, sandbox):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    assert client.get(f"/runs/{run_id}").json["tasks"] == []  # no workflow reported yet
    wf = ExecutedWorkflow(run_id, "add", "2026-01-01T00:00:00Z")
    wf.tasks["prepare"] = TaskRun("prepare", started="2026-01-01T00:00:01Z", finished="2026-01-01T00:00:05Z",
                                  phase="Succeeded")
    wf.tasks["add"] = TaskRun("add", started="2026-01-01T00:00:06Z")
    _report(sandbox, run_id, wf, "RUNNING")
    going = client.get(f"/runs/{run_id}").json
    assert [(t["name"], t["state"]) for t in going["tasks"]] == [("prepare", "SUCCEEDED"), ("add", "RUNNING")]
    add = going["tasks"][1]
    assert add["start_time"] == "2026-01-01T00:00:06Z" and add["end_time"] is None
    assert add["pod"] == wf.node_id(f"{wf.name}.root.add.executor")  # KFP's child_tasks[].pod_name
    assert going["error"] is None and going["run_status"] == "RUNNING"
    wf.tasks["add"].phase, wf.tasks["add"].finished = "Failed", "2026-01-01T00:00:09Z"
    wf.tasks["add"].message = "main: Error (exit code 1)"
    wf.stop("2026-01-01T00:00:10Z", phase="Failed")
    _report(sandbox, run_id, wf, "FAILED")
    failed = client.get(f"/runs/{run_id}").json
    assert failed["run_status"] == "FAILED"
    assert [(t["name"], t["state"]) for t in failed["tasks"]] == [("prepare", "SUCCEEDED"), ("add", "FAILED")]
    assert failed["tasks"][1]["end_time"] == "2026-01-01T00:00:09Z"
    assert failed["error"]["message"] == "add: main: Error (exit code 1)"
    node_id = wf.node_id(f"{wf.name}.root.add.executor")
    assert failed["error"]["nodes"] == [{
        "task": "add", "node_id": node_id, "template": "system-container-impl", "phase": "Failed",
        "message": "main: Error (exit code 1)",
        "pod": f"{wf.name}-system-container-impl-{node_id.rsplit('-', 1)[1]}"}]


def test_failed_run_error_without_nodes_comes_from_the_workflow_message(client, sandbox):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    _set_state(sandbox, run_id, "FAILED")
    body = client.get(f"/runs/{run_id}").json
    assert body["error"] == {"message": "KFP has recorded no workflow for this run, so it gives no failure reason",
                             "nodes": []}
    requests.post(f"{sandbox.url}/_sandbox/runs/{run_id}/state",
                  json={"state": "FAILED", "error": {"message": "pods \"x\" is forbidden: exceeded quota"}},
                  timeout=5).raise_for_status()
    assert client.get(f"/runs/{run_id}").json["error"]["message"] == 'pods "x" is forbidden: exceeded quota'


def _report(sandbox, run_id: str, wf: ExecutedWorkflow, state: str) -> None:
    """Play KFP's persistence agent: the workflow and the state it reports."""
    requests.put(f"{sandbox.url}/_sandbox/runs/{run_id}/workflow", json=wf.manifest(), timeout=5).raise_for_status()
    _set_state(sandbox, run_id, state)


def test_experiments(client):
    resp = client.get("/experiments")
    assert resp.status_code == 200 and "Default" in resp.json
    one = client.get("/experiments/Default").json
    assert one["name"] == "Default" and one["id"] == resp.json["Default"]
