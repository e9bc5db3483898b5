"""Every answer keeps the O-RAN Kubeflow Adapter's keys (tm-contract.md), with ours beside them.

One test per route, over real HTTP (byte-exact Content-Type), holding the keys the O-RAN adapter answers.
"""
from __future__ import annotations

import requests

from tests.conftest import package

JSON = "application/json"
TM_ARGS = {"epochs": "5", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "qoe",
           "modelVersion": "1", "modellocation": ""}


def _json(resp: requests.Response, status: int = 200) -> object:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == JSON
    return resp.json()


def _upload(url: str, name: str = "qoe_Pipeline", fixture: str = "qoe_train_v2.yaml") -> dict:
    return _json(requests.post(f"{url}/pipelineIds/{name}", files={"file": ("file", package(fixture))},
                               data={"description": ""}, timeout=30))


def _has(body: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in body]
    assert not missing, f"O-RAN keys missing: {missing} in {sorted(body)}"


def test_upload_answers_name_and_id(adapter_url):
    first = _upload(adapter_url)
    _has(first, "name", "id")
    assert first["name"] == "qoe_Pipeline" and first["id"] == first["pipeline_id"]
    second = _upload(adapter_url)  # a new version: still the pipeline's name and id
    assert (second["name"], second["id"]) == ("qoe_Pipeline", first["id"]) and second["version_name"] == "2"


def test_list_pipelines_has_next_page_token_total_size_and_pipelines(adapter_url):
    pid = _upload(adapter_url)["id"]
    body = _json(requests.get(f"{adapter_url}/pipelines", timeout=30))
    _has(body, "next_page_token", "total_size", "pipelines")
    assert body["next_page_token"] is None and body["total_size"] == len(body["pipelines"]) == 1
    item = body["pipelines"][0]
    _has(item, "pipeline_id", "display_name", "description", "created_at")
    assert item["pipeline_id"] == pid and item["display_name"] == "qoe_Pipeline"


def test_versions_list(adapter_url):
    _upload(adapter_url)
    _upload(adapter_url)
    body = _json(requests.get(f"{adapter_url}/pipelines/qoe_Pipeline/versions", timeout=30))
    assert body["versions_list"] == ["qoe_Pipeline", "2"]


def test_pipeline_ids_by_name(adapter_url):
    pid = _upload(adapter_url)["id"]
    assert _json(requests.get(f"{adapter_url}/pipelineIds/qoe_Pipeline", timeout=30)) == {
        "name": "qoe_Pipeline", "id": pid}


def test_pipeline_details(adapter_url):
    pid = _upload(adapter_url)["id"]
    body = _json(requests.get(f"{adapter_url}/pipelines/{pid}", timeout=30))
    _has(body, "id", "name", "description", "arguments")
    assert body["id"] == pid and body["name"] == "qoe_Pipeline" and body["arguments"]["epochs"] == 2


def test_delete_pipeline(adapter_url):
    pid = _upload(adapter_url)["id"]
    body = _json(requests.delete(f"{adapter_url}/pipelines/{pid}", timeout=30))
    _has(body, "id", "status")
    assert body["id"] == pid and body["status"] == "Deleted"


def test_experiments_map_names_to_ids(adapter_url):
    body = _json(requests.get(f"{adapter_url}/experiments", timeout=30))
    assert isinstance(body.get("Default"), str) and body["Default"]


def test_experiment_by_name(adapter_url):
    default_id = _json(requests.get(f"{adapter_url}/experiments", timeout=30))["Default"]
    body = _json(requests.get(f"{adapter_url}/experiments/Default", timeout=30))
    _has(body, "name", "id")
    assert (body["name"], body["id"]) == ("Default", default_id)


def _execute(url: str) -> dict:
    _upload(url)
    return _json(requests.post(f"{url}/trainingjobs/tj1/execution", timeout=30, json={
        "pipeline_name": "qoe_Pipeline", "pipeline_version": "qoe_Pipeline", "experiment_name": "Default",
        "arguments": TM_ARGS}))


def test_execution(adapter_url):
    body = _execute(adapter_url)
    _has(body, "trainingjob_id", "run_id", "run_name", "experiment_name", "experiment_id", "pipeline_name",
         "pipeline_id", "run_status")
    assert body["run_status"] == "scheduled" and body["trainingjob_id"] == "tj1"
    assert body["experiment_name"] == "Default" and body["pipeline_name"] == "qoe_Pipeline"


def test_runs_map_names_to_runs(adapter_url):
    started = _execute(adapter_url)
    body = _json(requests.get(f"{adapter_url}/runs", timeout=30))
    entry = body[started["run_name"]]
    _has(entry, "run_id", "run_description", "run_status", "experiment_id", "pipeline_name", "pipeline_id")
    assert entry["run_id"] == started["run_id"] and entry["pipeline_name"] == "qoe_Pipeline"
    assert entry["pipeline_id"] == started["pipeline_id"] and entry["experiment_id"] == started["experiment_id"]


def test_run_details(adapter_url):
    started = _execute(adapter_url)
    body = _json(requests.get(f"{adapter_url}/runs/{started['run_id']}", timeout=30))
    _has(body, "run_id", "run_name", "run_status")
    assert (body["run_id"], body["run_name"]) == (started["run_id"], started["run_name"])


def test_liveness_answers_okay(adapter_url):
    resp = requests.get(f"{adapter_url}/liveness", timeout=30)
    assert resp.status_code == 200 and resp.text == "Okay"


def test_errors_carry_message_and_status(adapter_url):
    body = _json(requests.get(f"{adapter_url}/pipelineIds/nope", timeout=30), 404)
    assert isinstance(body["message"], str) and body["status"] == 404
