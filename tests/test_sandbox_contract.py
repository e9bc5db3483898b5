"""Contract: every body the sandbox answers on a route the adapter calls has KFP's shape (tests/kfp_contract.py):
no key kfp-server-api's models (or the v1beta1 swagger) lack, every value of the declared type, unset fields
omitted. A field the sandbox invents fails here, as the checks of the checker itself show.

Bodies are read as raw HTTP on purpose: kfp.Client's model deserialization drops unknown keys without a word, which
is exactly what this test has to see."""
from __future__ import annotations

import copy
import json

import pytest
import requests
import yaml

from tests import kfp_contract
from tests.conftest import package

V2 = "/apis/v2beta1"
V1 = "/apis/v1beta1"
# The KFP routes the adapter calls (kfadapter/kfconnect), as the sandbox counts them.
ADAPTER_ROUTES = {
    f"GET {V2}/healthz", f"POST {V2}/pipelines/upload", f"POST {V2}/pipelines/upload_version",
    f"GET {V2}/pipelines", f"GET {V2}/pipelines/names/{{name}}", f"GET {V2}/pipelines/{{pipeline_id}}",
    f"DELETE {V2}/pipelines/{{pipeline_id}}", f"GET {V2}/pipelines/{{pipeline_id}}/versions",
    f"GET {V2}/pipelines/{{pipeline_id}}/versions/{{version_id}}",
    f"DELETE {V2}/pipelines/{{pipeline_id}}/versions/{{version_id}}",
    f"GET {V2}/experiments", f"POST {V2}/experiments", f"GET {V2}/experiments/{{experiment_id}}",
    f"DELETE {V2}/experiments/{{experiment_id}}",
    f"GET {V2}/runs", f"POST {V2}/runs", f"GET {V2}/runs/{{run_id}}", f"POST {V2}/runs/{{run_id}}:terminate",
    f"DELETE {V2}/runs/{{run_id}}", f"POST {V1}/runs", f"GET {V1}/runs/{{run_id}}",
}


class Api:
    """Raw HTTP to the sandbox: every answer is checked against its KFP model before the test reads it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.checked: list[str] = []

    def call(self, method: str, path: str, kind: str | None, *, status: int = 200, **kwargs) -> dict:
        resp = requests.request(method, self.url + path, timeout=10, **kwargs)
        assert resp.status_code == status, (method, path, resp.text)
        assert resp.headers["Content-Type"].split(";")[0] == "application/json", resp.headers["Content-Type"]
        doc = resp.json()
        if kind is None:  # an empty answer (google.protobuf.Empty)
            assert doc == {}, (method, path, doc)
        else:
            problems = kfp_contract.check(doc, kind)
            assert not problems, f"{method} {path} is not a KFP {kind}:\n" + "\n".join(problems)
        self.checked.append(f"{method} {path} {kind}")
        return doc

    def control(self, method: str, path: str, **kwargs) -> dict:
        resp = requests.request(method, f"{self.url}/_sandbox{path}", timeout=10, **kwargs)
        assert resp.ok, resp.text
        return resp.json()

    def upload(self, path: str, data: bytes, kind: str, **params) -> dict:
        return self.call("POST", f"{V2}/pipelines/{path}", kind, params=params,
                         files={"uploadfile": ("pipeline.yaml", data)})


@pytest.fixture
def api(sandbox) -> Api:
    return Api(sandbox.url)


def test_healthz_is_kfps_handler_shape(api):
    # main.go writes it by hand (encoding/json): commit_sha, tag_name and multi_user always, beside the model's fields.
    doc = requests.get(f"{api.url}{V2}/healthz", timeout=5).json()
    assert isinstance(doc.pop("commit_sha"), str) and isinstance(doc.pop("tag_name"), str)
    assert "multi_user" in doc
    assert kfp_contract.check(doc, "V2beta1GetHealthzResponse", omit_empty=False) == []
    assert doc.get("pipeline_store", "x") != ""  # omitempty


def test_catalog_bodies_are_kfp_models(api):
    v2, v1 = package("qoe_train_v2.yaml"), package("qoe_train_v1_argo.yaml")
    pipe = api.upload("upload", v2, "V2beta1Pipeline", name="qoe", description="QoE model")
    pid = pipe["pipeline_id"]
    api.upload("upload", v1, "V2beta1Pipeline", name="qoe-v1")
    ver = api.upload("upload_version", v2, "V2beta1PipelineVersion", pipelineid=pid, name="2")
    created = api.call("POST", f"{V2}/pipelines", "V2beta1Pipeline", json={"display_name": "made", "name": "made"})
    api.call("POST", f"{V2}/pipelines/{created['pipeline_id']}/versions", "V2beta1PipelineVersion",
             json={"name": "made-1", "pipeline_spec": yaml.safe_load(v2)})
    page = api.call("GET", f"{V2}/pipelines", "V2beta1ListPipelinesResponse", params={"page_size": 1})
    assert page["next_page_token"]
    api.call("GET", f"{V2}/pipelines", "V2beta1ListPipelinesResponse",
             params={"page_token": page["next_page_token"], "page_size": 1})
    api.call("GET", f"{V2}/pipelines", "V2beta1ListPipelinesResponse",
             params={"filter": json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                                           "string_value": "nothing"}]})})
    api.call("GET", f"{V2}/pipelines/names/qoe", "V2beta1Pipeline")
    api.call("GET", f"{V2}/pipelines/{pid}", "V2beta1Pipeline")
    api.call("GET", f"{V2}/pipelines/{pid}/versions", "V2beta1ListPipelineVersionsResponse", params={"page_size": 1})
    api.call("GET", f"{V2}/pipelines/{pid}/versions/{ver['pipeline_version_id']}", "V2beta1PipelineVersion")
    api.call("DELETE", f"{V2}/pipelines/{pid}/versions/{ver['pipeline_version_id']}", None)
    api.call("DELETE", f"{V2}/pipelines/{pid}", None, params={"cascade": "true"})
    exp = api.call("POST", f"{V2}/experiments", "V2beta1Experiment", json={"display_name": "e", "description": "d"})
    api.call("GET", f"{V2}/experiments", "V2beta1ListExperimentsResponse", params={"page_size": 1})
    api.call("GET", f"{V2}/experiments/{exp['experiment_id']}", "V2beta1Experiment")
    api.call("DELETE", f"{V2}/experiments/{exp['experiment_id']}", None)
    api.call("GET", f"{V2}/experiments", "V2beta1ListExperimentsResponse",
             params={"filter": json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                                           "string_value": "none"}]})})
    missing = api.call("GET", f"{V2}/pipelines/no-such-id", "GoogleRpcStatus", status=404)
    assert missing["code"] == 5


def _run_bodies(api: Api) -> tuple[str, str]:
    v2_pipe = api.upload("upload", package("qoe_train_v2.yaml"), "V2beta1Pipeline", name="qoe")
    v1_pipe = api.upload("upload", package("qoe_train_v1_argo.yaml"), "V2beta1Pipeline", name="qoe-v1")
    versions = {}
    for pipe in (v2_pipe, v1_pipe):
        listed = api.call("GET", f"{V2}/pipelines/{pipe['pipeline_id']}/versions",
                          "V2beta1ListPipelineVersionsResponse")
        versions[pipe["pipeline_id"]] = listed["pipeline_versions"][0]["pipeline_version_id"]
    exp = api.call("POST", f"{V2}/experiments", "V2beta1Experiment", json={"display_name": "runs"})["experiment_id"]
    ref = {"pipeline_id": v2_pipe["pipeline_id"], "pipeline_version_id": versions[v2_pipe["pipeline_id"]]}
    run = api.call("POST", f"{V2}/runs", "V2beta1Run", json={
        "display_name": "r1", "experiment_id": exp, "pipeline_version_reference": ref,
        "runtime_config": {"parameters": {"featurepath": "/f", "epochs": 3, "shuffle": False, "note": ""}}})
    v1_ref = {"pipeline_id": v1_pipe["pipeline_id"], "pipeline_version_id": versions[v1_pipe["pipeline_id"]]}
    bare = api.call("POST", f"{V2}/runs", "V2beta1Run",
                    json={"display_name": "r2", "pipeline_version_reference": v1_ref})
    # toApiRun (api_converter.go) leaves runtime_config and run_details nil when they hold nothing.
    assert "runtime_config" not in bare and "run_details" not in bare
    v1_run = api.call("POST", f"{V1}/runs", "apiRunDetail", json={
        "name": "r3", "pipeline_spec": {"parameters": [{"name": "epochs", "value": "9"}]},
        "resource_references": [{"key": {"type": "EXPERIMENT", "id": exp}, "relationship": "OWNER"},
                                {"key": {"type": "PIPELINE_VERSION", "id": v1_ref["pipeline_version_id"]},
                                 "relationship": "CREATOR"}]})["run"]["id"]
    return run["run_id"], v1_run


def test_run_bodies_are_kfp_models_through_their_lifecycle(api):
    run_id, v1_run = _run_bodies(api)
    # What a v2 run leaves behind while it goes: MLMD records (task progress) and the Argo workflow.
    api.control("PUT", f"/runs/{run_id}/mlmd", json={"tasks": [{"name": "prepare", "outputs": {"rows": 3.0}},
                                                               {"name": "train", "state": "RUNNING"}]})
    api.control("PUT", f"/runs/{run_id}/workflow", json={"phase": "Running", "nodes": {}})
    for state in ("RUNNING", "SUCCEEDED"):
        api.control("POST", f"/runs/{run_id}/state", json={"state": state})
        api.call("GET", f"{V2}/runs/{run_id}", "V2beta1Run")
        api.call("GET", f"{V1}/runs/{run_id}", "apiRunDetail")
    api.control("POST", f"/runs/{v1_run}/state", json={"state": "RUNNING"})
    api.control("PUT", f"/runs/{v1_run}/workflow", json={"phase": "Running", "nodes": {}})
    detail = api.call("GET", f"{V1}/runs/{v1_run}", "apiRunDetail")
    assert json.loads(detail["pipeline_runtime"]["workflow_manifest"])["kind"] == "Workflow"
    api.call("POST", f"{V2}/runs/{v1_run}:terminate", None)
    api.call("GET", f"{V2}/runs/{v1_run}", "V2beta1Run")
    api.control("POST", f"/runs/{v1_run}/state", json={"state": "FAILED"})
    api.call("GET", f"{V2}/runs/{v1_run}", "V2beta1Run")
    api.call("GET", f"{V1}/runs/{v1_run}", "apiRunDetail")
    page = api.call("GET", f"{V2}/runs", "V2beta1ListRunsResponse",
                    params={"page_size": 1, "sort_by": "created_at desc"})
    api.call("GET", f"{V2}/runs", "V2beta1ListRunsResponse",
             params={"page_size": 1, "sort_by": "created_at desc", "page_token": page["next_page_token"]})
    api.call("GET", f"{V2}/runs", "V2beta1ListRunsResponse", params={"filter": json.dumps({"predicates": [
        {"operation": "IN", "key": "run_id", "string_values": {"values": [run_id, v1_run]}}]})})
    api.call("DELETE", f"{V2}/runs/{run_id}", None)
    api.call("GET", f"{V2}/runs/{run_id}", "GoogleRpcStatus", status=404)


def test_every_route_the_adapter_calls_is_covered(api, kfp_counts):
    kfp_counts.reset()
    test_healthz_is_kfps_handler_shape(api)
    test_catalog_bodies_are_kfp_models(api)
    called = set(kfp_counts.read()["counts"])
    api.control("POST", "/reset")  # zeroes the counters too
    test_run_bodies_are_kfp_models_through_their_lifecycle(api)
    called |= set(kfp_counts.read()["counts"])
    assert ADAPTER_ROUTES <= called, sorted(ADAPTER_ROUTES - called)


# ---- the checker catches what KFP would not write (so the tests above can fail) --------------------------------------

RUN = {"run_id": "r", "experiment_id": "e", "display_name": "n", "storage_state": "AVAILABLE",
       "pipeline_version_reference": {"pipeline_id": "p", "pipeline_version_id": "v"},
       "runtime_config": {"parameters": {"epochs": 3, "flag": False, "s": ""}}, "state": "RUNNING",
       "created_at": "2026-01-01T00:00:00Z", "scheduled_at": "2026-01-01T00:00:00Z",
       "finished_at": "1970-01-01T00:00:00Z", "state_history": [{"update_time": "2026-01-01T00:00:00Z",
                                                                 "state": "PENDING"}],
       "run_details": {"pipeline_run_context_id": "12", "task_details": [
           {"run_id": "r", "task_id": "t", "display_name": "train", "state": "RUNNING", "execution_id": "7",
            "child_tasks": [{"pod_name": "train-1"}], "create_time": "2026-01-01T00:00:01.250Z"}]}}


def test_checker_accepts_a_body_kfp_would_write():
    assert kfp_contract.check(RUN, "V2beta1Run") == []
    assert kfp_contract.check({"runs": [RUN], "total_size": 3, "next_page_token": "x"}, "V2beta1ListRunsResponse") == []
    assert kfp_contract.check({"run": {"id": "r", "name": "n", "status": "Running", "resource_references": [
        {"key": {"type": "EXPERIMENT", "id": "e"}, "relationship": "OWNER"}]},
        "pipeline_runtime": {"workflow_manifest": "{}"}}, "apiRunDetail") == []


def _broken(path: list, value) -> dict:
    doc = copy.deepcopy(RUN)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "found"), [
    (["sandbox_note"], "x", "V2beta1Run has no field 'sandbox_note'"),  # a field the sandbox invents
    (["run_details", "task_details", 0, "progress"], 50, "V2beta1PipelineTaskDetail has no field 'progress'"),
    (["pipeline_version_reference", "pipeline_name"], "q", "has no field 'pipeline_name'"),
    (["run_details", "task_details", 0, "execution_id"], 7, "execution_id: expected str"),  # int64 is a JSON string
    (["created_at"], "2026-01-01 00:00:00", "RFC 3339"),
    (["state"], "DONE", "one of V2beta1RuntimeState"),
    (["storage_state"], "STORAGE_STATE_UNSPECIFIED", "zero value"),
    (["description"], "", "unset value"),
    (["state_history"], [], "unset value"),
    (["state_history", 0, "state"], 3, "one of V2beta1RuntimeState"),
    (["run_details", "task_details"], {"0": {}}, "expected a list"),
], ids=["invented-field", "nested-invented", "ref-extra", "int64-as-number", "timestamp", "enum", "enum-zero",
        "empty-string", "empty-list", "enum-number", "list-type"])
def test_checker_rejects_what_kfp_would_not_write(path, value, found):
    problems = kfp_contract.check(_broken(path, value), "V2beta1Run")
    assert len(problems) == 1 and found in problems[0], problems


def test_checker_rejects_a_new_field_on_a_real_sandbox_answer(api):
    """What a sandbox that grew a field KFP does not have would answer: the check fails on it."""
    pipe = api.upload("upload", package("qoe_train_v2.yaml"), "V2beta1Pipeline", name="qoe")
    grown = dict(pipe, parameters=[{"name": "epochs"}])  # the O-RAN adapter's assumption; KFP has none
    assert kfp_contract.check(grown, "V2beta1Pipeline") == [
        "$.parameters: V2beta1Pipeline has no field 'parameters' (KFP would never write it)"]


def test_checker_knows_v1beta1_int_and_enum_rules():
    bad = {"run": {"id": "r", "status": 3, "storage_state": "STORAGESTATE_AVAILABLE", "colour": "x",
                   "resource_references": [{"key": {"type": "TEAM", "id": "e"}}]}}
    problems = "\n".join(kfp_contract.check(bad, "apiRunDetail"))
    for expected in ("status: expected str", "STORAGESTATE_AVAILABLE' is the enum's zero value",
                     "apiRun has no field 'colour'", "one of apiResourceType"):
        assert expected in problems, problems
    total = kfp_contract.check({"total_size": "3"}, "V2beta1ListRunsResponse")  # int32 is a JSON number
    assert total[0].startswith("$.total_size: expected int")


@pytest.mark.parametrize(("accepted", "kind"), [
    ("PIPELINE", "V2beta1Pipeline"), ("VERSION", "V2beta1PipelineVersion"), ("EXPERIMENT", "V2beta1Experiment"),
    ("RUN", "V2beta1Run"), ("VERSION_REF", "V2beta1PipelineVersionReference"),
    ("RUNTIME_CONFIG", "V2beta1RuntimeConfig"), ("URL", "V2beta1Url"), ("RUN_V1", "apiRun"), ("PIPELINE_SPEC_V1", "apiPipelineSpec"),
    ("PARAMETER_V1", "apiParameter"), ("REFERENCE_V1", "apiResourceReference"), ("KEY_V1", "apiResourceKey"),
])
def test_request_bodies_accept_exactly_kfps_fields(accepted, kind):
    """The sandbox decodes requests like protojson: every field of the message, and nothing else (unknown → 400)."""
    from kfadapter.sandbox import bodies

    assert getattr(bodies, accepted) == set(kfp_contract.schema(kind))
