"""KFP version differences: the sandbox plays 2.3, 2.5, 2.14 and 2.17 as those API servers behave, and the adapter
learns the server's version from healthz and adapts (fitting packages, local validation, names, `:read`, filters).
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from urllib.parse import quote

import pytest
import requests
import yaml

from kfadapter.app import create_app

from tests.conftest import package, upload

API = "/apis/v2beta1"
RESOURCES = package("resource_setters_v2.yaml")
QOE = package("qoe_train_v2.yaml")


def ir_with(base: bytes = QOE, **changes) -> bytes:
    """A package with top-level changes (None deletes a key)."""
    doc = yaml.safe_load(base)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return yaml.safe_dump(doc).encode()


def only_new_resource_fields() -> bytes:
    """The package as a server-side placeholder would leave it: resourceCpuLimit without the numeric cpuLimit."""
    doc = yaml.safe_load(RESOURCES)
    res = doc["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    del res["cpuLimit"]
    return yaml.safe_dump(doc).encode()


def sandbox_upload(sandbox, data: bytes, name: str, **params) -> requests.Response:
    return requests.post(f"{sandbox.url}{API}/pipelines/upload", params={"name": name, **params},
                         files={"uploadfile": ("pipeline.yaml", data)}, timeout=10)


@pytest.fixture(params=["2.3", "2.5", "2.14", "2.17"])
def any_version(request, sandbox_servers):
    """The sandbox playing each of the four versions, reset."""
    server = sandbox_servers(request.param)
    server.reset()
    return server


# ---- the sandbox per version --------------------------------------------------------------------------------

def test_healthz_reports_the_version_like_kfp(any_version):
    body = requests.get(f"{any_version.url}{API}/healthz", timeout=5).json()
    # The official images 2.5.0-2.15.x were built without TAG_NAME (backend/Dockerfile: ARG TAG_NAME=unknown).
    tag = {"2.3": "2.3.0", "2.5": "unknown", "2.14": "unknown", "2.17": "2.17.0"}[any_version.kfp_version]
    assert body["tag_name"] == tag and body["multi_user"] is False and body["commit_sha"]
    assert ("pipeline_store" in body) == (any_version.kfp_version in ("2.14", "2.17"))
    assert "pipeline_store" not in requests.get(f"{any_version.url}/apis/v1beta1/healthz", timeout=5).json()


def test_error_body_shape_and_pipeline_name_field(any_version):
    old = any_version.kfp_version in ("2.3", "2.5")
    missing = requests.get(f"{any_version.url}{API}/pipelines/nope", timeout=5)
    assert missing.status_code == 404
    assert ("error" in missing.json()) == old and missing.json()["code"] == 5
    assert sandbox_upload(any_version, QOE, "qoe").status_code == 200
    [pipeline] = requests.get(f"{any_version.url}{API}/pipelines", timeout=5).json()["pipelines"]
    assert pipeline["display_name"] == "qoe"
    assert ("name" in pipeline) == (any_version.kfp_version in ("2.14", "2.17"))
    created = requests.post(f"{any_version.url}{API}/pipelines", json={"name": "x", "display_name": "x"}, timeout=5)
    assert created.status_code == 200, created.text  # before 2.14 `name` is not a field: ignored, like any other
    assert ("name" in created.json()) == (not old)
    # grpc-gateway v1 (<= 2.5) drops unknown body fields; from 2.14 protojson refuses them
    bogus = requests.post(f"{any_version.url}{API}/experiments", json={"display_name": "e", "owner": "me"}, timeout=5)
    assert bogus.status_code == (200 if old else 400)
    if not old:
        assert 'unknown field "owner"' in bogus.json()["message"]


def test_upload_display_name_and_cascade_from_2_14(any_version):
    new = any_version.kfp_version in ("2.14", "2.17")
    resp = sandbox_upload(any_version, QOE, "", display_name="Shown")
    assert resp.status_code == 200
    # Before 2.14 display_name is ignored: the name comes from the uploaded file's name.
    assert resp.json()["display_name"] == ("Shown" if new else "pipeline.yaml")
    deleted = requests.delete(f"{any_version.url}{API}/pipelines/{resp.json()['pipeline_id']}",
                              params={"cascade": "true"}, timeout=5)
    assert deleted.status_code == (200 if new else 400)


@pytest.mark.parametrize("change, problem", [
    ({"schemaVersion": "2.0.0"}, "schema version"),
    ({"pipelineInfo": {"name": "Bad_Name"}}, "pipeline's name"),
    ({"extra": 1}, "unknown template format"),  # the strict parse fails: template.go finds no v2 spec
    ({"pipelineInfo": {"name": ""}}, "unknown template format"),
])
def test_invalid_ir_is_500_before_2_17(any_version, change, problem):
    resp = sandbox_upload(any_version, ir_with(**change), "p")
    assert resp.status_code == (400 if any_version.kfp_version == "2.17" else 500)
    assert problem in resp.json()["error_message"]


def test_newer_spec_fields_are_refused_by_older_pipeline_spec_copies(any_version):
    # resource setters (kfp SDK >= 2.10) live in deploymentSpec, a Struct: every version takes them
    resp = sandbox_upload(any_version, RESOURCES, "res")
    assert resp.status_code == 200, resp.text
    # a field of a typed part 2.3's pipeline-spec copy lacks: its strict parse fails, "unknown template format"
    doc = yaml.safe_load(RESOURCES)
    doc["root"]["dag"]["tasks"]["train"]["cachingOptions"] = {"enableCache": True, "cacheKey": "k"}
    resp = sandbox_upload(any_version, yaml.safe_dump(doc).encode(), "ck")
    assert resp.status_code == (500 if any_version.kfp_version == "2.3" else 200)
    if resp.status_code == 500:
        assert resp.json()["error_message"].endswith("unknown template format")
    # literals (2.16): unknown to 2.3, 2.5 and 2.14
    doc = yaml.safe_load(RESOURCES)
    doc["root"]["inputDefinitions"]["parameters"]["epochs"]["literals"] = [1, 2]
    resp = sandbox_upload(any_version, yaml.safe_dump(doc).encode(), "lit")
    assert resp.status_code == (200 if any_version.kfp_version == "2.17" else 500)


def test_create_run_with_an_unknown_version_is_500(any_version):
    # resource_manager.go CreateRun: any failure fetching the manifest is an InternalServerError
    resp = requests.post(f"{any_version.url}{API}/runs", json={
        "display_name": "r", "pipeline_version_reference": {"pipeline_id": "p", "pipeline_version_id": "nope"}},
        timeout=5)
    assert resp.status_code == 500 and resp.json()["code"] == 13
    assert "error fetching manifest" in resp.json()["message"] and "PipelineVersion nope not found" in resp.json()[
        "message"]


def test_read_of_a_run_without_workflow(any_version):
    assert sandbox_upload(any_version, QOE, "qoe").status_code == 200
    seed = {"count": 1, "pipeline_version_id": _version_id(any_version)}
    run = requests.post(f"{any_version.url}/_sandbox/bulk/runs", json=seed, timeout=5).json()["run_ids"][0]
    resp = requests.get(f"{any_version.url}{API}/runs/{run}/nodes/n/artifacts/a:read", timeout=5)
    if any_version.kfp_version == "2.17":
        assert resp.status_code == 500 and resp.headers["Content-Type"].startswith("text/plain")
    else:
        assert resp.status_code == 400 and resp.json()["code"] == 3  # a grpc-gateway method before 2.15


def _version_id(sandbox) -> str:
    [p] = requests.get(f"{sandbox.url}{API}/pipelines", timeout=5).json()["pipelines"]
    versions = requests.get(f"{sandbox.url}{API}/pipelines/{p['pipeline_id']}/versions", timeout=5).json()
    [v] = versions["pipeline_versions"]
    return v["pipeline_version_id"]


def test_filters_are_url_decoded_twice(sandbox):
    requests.post(f"{sandbox.url}{API}/experiments", json={"display_name": "a+b%41"}, timeout=5).raise_for_status()
    text = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": "a+b%41"}]})
    usual = requests.get(f"{sandbox.url}{API}/experiments", params={"filter": text}, timeout=5).json()
    assert "experiments" not in usual  # KFP looked for "a bA"
    twice = requests.get(f"{sandbox.url}{API}/experiments", params={"filter": quote(text, safe="")}, timeout=5).json()
    assert [e["display_name"] for e in twice["experiments"]] == ["a+b%41"]
    bad = requests.get(f"{sandbox.url}{API}/experiments", params={"filter": '{"predicates": "%zz"}'}, timeout=5)
    assert bad.status_code == 400


def test_cli_refuses_an_unknown_kfp_version():
    done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "sandbox", "--kfp-version", "2.9"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--kfp-version" in done.stderr


# ---- the adapter adapting --------------------------------------------------------------------------------

def cache_key_package() -> bytes:
    """A package using cacheKey (kfp SDK >= 2.5 with a custom cache key): a typed field 2.3 does not know."""
    doc = yaml.safe_load(RESOURCES)
    doc["root"]["dag"]["tasks"]["train"]["cachingOptions"] = {"enableCache": True, "cacheKey": "k"}
    return yaml.safe_dump(doc).encode()


def test_version_is_learnt_once_lazily_and_a_failed_healthz_is_retried(settings, sandbox_servers):
    old = sandbox_servers("2.3")
    old.reset()
    app = create_app(dataclasses.replace(settings, kfp_endpoint=old.url))
    client = app.test_client()
    assert requests.get(f"{old.url}/_sandbox/requests", timeout=5).json()["total"] == 0  # nothing at start-up
    requests.post(f"{old.url}/_sandbox/faults", json={"status": 503, "times": 1, "path_prefix": f"{API}/healthz"},
                  timeout=5).raise_for_status()
    first = upload(client, "ck", cache_key_package())  # version unknown: sent as is, and 2.3 refuses it
    assert first.status_code == 502 and first.json["code"] == "kfp_unavailable"
    second = upload(client, "ck", cache_key_package())  # healthz asked again, now it answers: refused here
    assert second.status_code == 400 and second.json["details"]["kfp_version"] == "KFP 2.3.0", second.json
    assert upload(client, "res", RESOURCES).status_code == 200
    counts = requests.get(f"{old.url}/_sandbox/requests", timeout=5).json()["counts"]
    assert counts["GET /apis/v2beta1/healthz"] == 2  # the failed one and the one that answered, then cached
    assert counts["POST /apis/v2beta1/pipelines/upload"] == 2  # the first cacheKey package and RESOURCES


@pytest.mark.across_versions
def test_resource_setters_reach_every_server_whole(client, sandbox, kfp_version):
    resp = upload(client, "res", RESOURCES)  # kfp SDK >= 2.13: the old numeric fields beside the new ones
    assert resp.status_code == 200, resp.json
    resources = _stored_resources(sandbox, resp.json["pipeline_id"])
    assert resources["cpuLimit"] == 0.5 and resources["memoryRequest"] == 0.536870912
    assert resources["resourceCpuLimit"] == "500m"  # 2.3 takes them too (deploymentSpec is a Struct)


def _stored_resources(sandbox, pid: str) -> dict:
    [version] = requests.get(f"{sandbox.url}{API}/pipelines/{pid}/versions", timeout=5).json()["pipeline_versions"]
    spec = requests.get(f"{sandbox.url}{API}/pipelines/{pid}/versions/{version['pipeline_version_id']}",
                        timeout=5).json()["pipeline_spec"]
    return spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]


@pytest.mark.across_versions
def test_limits_only_in_new_fields_are_made_to_apply_on_2_3(client, sandbox, kfp_counts, kfp_version):
    resp = upload(client, "res", only_new_resource_fields())  # as kfp SDK 2.10-2.12 wrote constant limits
    assert resp.status_code == 200, resp.json
    resources = _stored_resources(sandbox, resp.json["pipeline_id"])
    # 2.3's driver reads only cpuLimit: the adapter wrote it (500m -> 0.5 cores); newer KFPs read resourceCpuLimit
    assert resources.get("cpuLimit") == (0.5 if kfp_version == "2.3" else None)
    assert resources["resourceCpuLimit"] == "500m"
    kfp_counts.reset()
    doc = yaml.safe_load(only_new_resource_fields())
    doc["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]["resourceCpuLimit"] = (
        "{{$.inputs.parameters['pipelinechannel--cpu']}}")
    resp = upload(client, "param", yaml.safe_dump(doc).encode())
    if kfp_version != "2.3":
        assert resp.status_code == 200, resp.json
        return
    assert resp.status_code == 400 and resp.json["code"] == "kfp_would_ignore", resp.json
    assert resp.json["details"] == {"field": "deploymentSpec.executors.exec-train.container.resources.resourceCpuLimit",
                                    "kfp_version": "KFP 2.3.0"}
    assert "would accept it but not apply it" in resp.json["message"]
    assert not [k for k in kfp_counts.read()["counts"] if "upload" in k]


@pytest.mark.across_versions
def test_a_typed_field_the_server_refuses_is_a_400_naming_it(client, kfp_counts, kfp_version):
    kfp_counts.reset()
    resp = upload(client, "ck", cache_key_package())
    if kfp_version != "2.3":
        assert resp.status_code == 200, resp.json
        return
    assert resp.status_code == 400 and resp.json["code"] == "package_too_new"
    assert resp.json["details"] == {"field": "root.dag.tasks.train.cachingOptions.cacheKey", "kfp_version": "KFP 2.3.0"}
    assert not [k for k in kfp_counts.read()["counts"] if "upload" in k]


@pytest.mark.across_versions
@pytest.mark.parametrize("change, field", [
    ({"schemaVersion": "2.0.0"}, "schemaVersion"),
    ({"pipelineInfo": {"name": "Bad_Name"}}, "pipelineInfo.name"),
    ({"pipelineInfo": {"name": "x" * 129}}, "pipelineInfo.name"),
    ({"root": {"inputDefinitions": {}}}, "root"),
    ({"schemaVersion": None}, "schemaVersion"),
    ({"sdkVersions": "kfp-2"}, "sdkVersions"),
])
def test_invalid_packages_are_a_400_naming_the_problem(client, kfp_counts, kfp_version, change, field):
    kfp_counts.reset()
    resp = upload(client, "bad", ir_with(**change))
    assert resp.status_code == 400, resp.json
    if field == "pipelineInfo.name":  # checked first with the other name rules (kfadapter/names.py)
        assert resp.json["code"] == "invalid_pipeline_info_name" and resp.json["details"]["pattern"]
    else:
        assert resp.json["code"] == "invalid_package" and resp.json["details"]["field"] == field
    assert not [k for k in kfp_counts.read()["counts"] if "upload" in k]  # KFP never saw it


@pytest.mark.across_versions
def test_names_delete_and_experiments_with_any_name(client, sandbox, kfp_version):
    assert upload(client, "qoe_Pipeline", QOE).status_code == 200
    assert upload(client, "qoe_Pipeline", QOE).status_code == 200
    [p] = client.get("/pipelines").json["pipelines"]
    assert p["name"] == "qoe_Pipeline"  # filled from display_name where KFP has no `name` (before 2.14)
    for name in ("a+b", "50% off", "x%2By"):
        requests.post(f"{sandbox.url}{API}/experiments", json={"display_name": name}, timeout=5).raise_for_status()
        found = client.get(f"/experiments/{quote(name, safe='')}")
        assert found.status_code == 200 and found.json["name"] == name, found.json
    args = {"trainingjob_id": "tj1", "featuregroup_name": "f", "modelName": "m", "modelVersion": "1", "epochs": "1"}
    run = client.post("/trainingjobs/tj1/execution",
                      json={"pipeline_name": "qoe_Pipeline", "experiment_name": "a+b", "arguments": args})
    assert run.status_code == 200, run.json
    deleted = client.delete(f"/pipelines/{p['pipeline_id']}")
    assert deleted.status_code == 200 and deleted.json["status"] == "Deleted"
    assert client.get("/pipelines").json["pipelines"] == []


@pytest.mark.across_versions
def test_download_before_kfp_recorded_the_workflow_is_a_404(settings, sandbox, kfp_version):
    client = create_app(dataclasses.replace(settings, mlmd_endpoint=sandbox.mlmd_endpoint)).test_client()
    assert upload(client, "qoe", QOE).status_code == 200
    run = client.post("/trainingjobs/tj1/execution", json={"pipeline_name": "qoe", "arguments": {
        "trainingjob_id": "tj1", "featuregroup_name": "f", "modelName": "m", "modelVersion": "1", "epochs": "1"}})
    resp = client.get(f"/runs/{run.json['run_id']}/nodes/n1/artifacts/model")
    assert resp.status_code == 404, resp.json  # 2.3 answered 400 (was kfp_rejected), 2.17 500 (was a 502)


def test_name_length_limits_from_2_15(any_version):
    resp = sandbox_upload(any_version, QOE, "p" * 129)
    if any_version.kfp_version == "2.17":
        assert resp.status_code == 400
        assert resp.text == "Invalid input error: Pipeline.Name length cannot exceed 128\n"  # http.Error(err.Error())
        assert resp.headers["Content-Type"].startswith("text/plain")
    else:
        assert resp.status_code == 200


def test_serve_sandbox_plays_the_version_asked_for(tmp_path):
    from pathlib import Path

    from tests.support import SandboxService

    server = SandboxService(tmp_path, Path(__file__).resolve().parent.parent, kfp_version="2.3")
    try:
        ready = requests.get(f"{server.url}/readiness", timeout=10).json()
        assert ready["kfp"]["tag_name"] == "2.3.0"
        assert "error" in requests.get(f"{server.kfp_url}{API}/pipelines/nope", timeout=10).json()
    finally:
        server.stop()
