"""Execution and run routes against the sandbox KFP, observed independently through the real kfp.Client."""
from __future__ import annotations

import warnings

import kfp
import pytest
import requests

from kfadapter.watch.store import Store

from .conftest import across_versions, package, upload

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


def test_delete_run_terminates_and_stops_tracking(client, settings, kfp_client):
    upload(client, "a", package("add_v2.yaml"))
    run_id = _execute(client, "a", args={}).json["run_id"]
    resp = client.delete(f"/runs/{run_id}")
    assert resp.status_code == 200
    assert resp.json["run_status"] == "CANCELED" and resp.json["terminated"] is True
    assert resp.json["was_tracked"] is True
    assert kfp_client.get_run(run_id).state == "CANCELED"
    assert Store(settings.store_path).get(run_id) is None
    again = client.delete(f"/runs/{run_id}")  # untracked, already finished: still 200
    assert again.status_code == 200 and again.json["terminated"] is False and again.json["was_tracked"] is False
    assert client.delete("/runs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_experiments(client):
    resp = client.get("/experiments")
    assert resp.status_code == 200 and "Default" in resp.json
    one = client.get("/experiments/Default").json
    assert one["name"] == "Default" and one["id"] == resp.json["Default"]
