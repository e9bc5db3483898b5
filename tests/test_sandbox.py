"""The sandbox KFP, driven over HTTP by the real kfp.Client and by raw requests."""
from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import time
import zipfile
from pathlib import Path

import kfp
import pytest
import requests
import yaml
from kfp_server_api.exceptions import ApiException

from kfadapter.sandbox import SandboxServer, create_sandbox_app

PIPELINES = Path(__file__).parent / "fixtures" / "pipelines"
V2_YAML = (PIPELINES / "qoe_train_v2.yaml").read_bytes()
ADD_YAML = (PIPELINES / "add_v2.yaml").read_bytes()
V1_YAML = (PIPELINES / "qoe_train_v1_argo.yaml").read_bytes()
API = "/apis/v2beta1"
EPOCH = "1970-01-01T00:00:00Z"


# ---- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sbx_server():
    """One sandbox for this module on an ephemeral loopback port."""
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sbx(sbx_server):
    """The sandbox reset to a fresh KFP."""
    sbx_server.reset()
    return sbx_server


@pytest.fixture
def kfp_client(sbx, monkeypatch, tmp_path):
    """The real kfp.Client on the sandbox (namespace given: no healthz retry loop)."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))
    return kfp.Client(host=sbx.url, namespace="")


def get(sbx, path, **params):
    return requests.get(sbx.url + path, params=params, timeout=5)


def post(sbx, path, body=None, **params):
    return requests.post(sbx.url + path, json=body, params=params, timeout=5)


def upload(sbx, data: bytes, filename="pipeline.yaml", path="/pipelines/upload", **params):
    files = {"uploadfile": (filename, data, "application/octet-stream")}
    return requests.post(f"{sbx.url}{API}{path}", files=files, params=params, timeout=30)


def uploaded(sbx, data=V2_YAML, name="qoe") -> tuple[str, str]:
    """Upload a package; return (pipeline_id, first version id)."""
    resp = upload(sbx, data, name=name)
    assert resp.status_code == 200, resp.text
    pid = resp.json()["pipeline_id"]
    versions = get(sbx, f"{API}/pipelines/{pid}/versions").json()["pipeline_versions"]
    return pid, versions[0]["pipeline_version_id"]


def create_run(sbx, pid, vid, params=None, **extra):
    body = {"display_name": "r", "pipeline_version_reference": {"pipeline_id": pid, "pipeline_version_id": vid},
            "runtime_config": {"parameters": params or {}}, **extra}
    return post(sbx, f"{API}/runs", body)


def assert_grpc(resp, status, *words):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "details"}
    assert body["details"] == [{"@type": "type.googleapis.com/google.rpc.Status", "code": body["code"],
                                "message": body["message"]}]
    for word in words:
        assert word in body["message"]
    return body


def _zip(data: bytes, member="pipeline.yaml") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(member, data)
    return buf.getvalue()


def _targz(data: bytes, member="pipeline.yaml") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _filter(*predicates) -> str:
    return json.dumps({"predicates": list(predicates)})


# ---- health, pipelines, uploads ------------------------------------------------------------------
def test_healthz_and_default_experiment(kfp_client):
    health = kfp_client.get_kfp_healthz()
    assert health.multi_user is False and health.pipeline_store == "database"
    experiments = kfp_client.list_experiments().experiments
    assert [e.display_name for e in experiments] == ["Default"]
    assert experiments[0].storage_state == "AVAILABLE"


def test_upload_with_kfp_client_creates_first_version_named_after_pipeline(kfp_client, tmp_path):
    path = tmp_path / "qoe_train_v2.yaml"
    path.write_bytes(V2_YAML)
    pipeline = kfp_client.upload_pipeline(str(path), pipeline_name="qoe", description="d")
    assert pipeline.display_name == "qoe" and pipeline.name == "qoe" and pipeline.description == "d"
    versions = kfp_client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert [v.name for v in versions] == ["qoe"]
    spec = kfp_client.get_pipeline_version(pipeline.pipeline_id, versions[0].pipeline_version_id).pipeline_spec
    assert spec["pipelineInfo"]["name"] == "qoe-train-v2"
    v2 = kfp_client.upload_pipeline_version(str(path), "2", pipeline_id=pipeline.pipeline_id)
    assert v2.name == "2" and v2.pipeline_id == pipeline.pipeline_id
    assert kfp_client.get_pipeline_id("qoe") == pipeline.pipeline_id


@pytest.mark.parametrize("data, filename, kind", [
    (V2_YAML, "p.yaml", "v2"),
    (V1_YAML, "p.yml", "v1"),
    (json.dumps(yaml.safe_load(V2_YAML)).encode(), "p.json", "v2"),
    (_zip(V2_YAML), "p.zip", "v2"),
    (_targz(V1_YAML), "p.tar.gz", "v1"),
    (_zip(ADD_YAML, "other.yaml"), "upload", "v2"),  # no extension: sniffed
])
def test_upload_formats(sbx, data, filename, kind):
    resp = upload(sbx, data, filename, name="p")
    assert resp.status_code == 200, resp.text
    pid = resp.json()["pipeline_id"]
    version = get(sbx, f"{API}/pipelines/{pid}/versions").json()["pipeline_versions"][0]
    spec = version["pipeline_spec"]
    assert ("pipelineInfo" in spec) if kind == "v2" else (spec["kind"] == "Workflow")
    assert "package_url" not in version and "code_source_url" not in version


def test_upload_names_default_like_kfp(sbx):
    # No name: display_name, else the uploaded file's name (KFP keeps it whole).
    assert upload(sbx, V2_YAML, display_name="Shown").json()["name"] == "Shown"
    assert upload(sbx, V2_YAML, "qoe_train_v2.yaml").json()["name"] == "qoe_train_v2.yaml"
    pid = upload(sbx, V2_YAML, name="x").json()["pipeline_id"]
    ver = upload(sbx, ADD_YAML, "add.yaml", "/pipelines/upload_version", pipelineid=pid).json()
    assert ver["name"] == "add.yaml" and ver["pipeline_id"] == pid


def test_upload_keeps_platform_spec_of_second_document(sbx):
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    data = V2_YAML + b"\n---\n" + yaml.safe_dump(platform).encode()
    pid, vid = uploaded(sbx, data)
    spec = get(sbx, f"{API}/pipelines/{pid}/versions/{vid}").json()["pipeline_spec"]
    assert spec["platform_spec"] == platform and spec["pipeline_spec"]["pipelineInfo"]["name"] == "qoe-train-v2"


def test_upload_errors_use_the_upload_body(sbx):
    uploaded(sbx)
    dup = upload(sbx, V2_YAML, name="qoe")
    assert dup.status_code == 409
    body = dup.json()
    assert set(body) == {"error_message", "error_details"} and "github.com/kubeflow" in body["error_details"]
    bad = upload(sbx, b"kind: ConfigMap\n", "x.yaml", name="bad")
    assert bad.status_code == 400 and "error_details" in bad.json()
    unknown = upload(sbx, b"\x00\x01garbage", "blob", name="bad")
    assert unknown.status_code == 400
    missing = requests.post(f"{sbx.url}{API}/pipelines/upload", files={"file": ("p.yaml", V2_YAML)}, timeout=5)
    assert missing.status_code == 400 and "error_message" in missing.json()
    assert get(sbx, f"{API}/pipelines").json()["total_size"] == 1


def test_upload_version_duplicate_is_409_and_unknown_pipeline_400(kfp_client, sbx, tmp_path):
    pid, _ = uploaded(sbx)
    path = tmp_path / "v.yaml"
    path.write_bytes(V2_YAML)
    with pytest.raises(ApiException) as err:
        kfp_client.upload_pipeline_version(str(path), "qoe", pipeline_id=pid)
    assert err.value.status == 409 and "error_details" in json.loads(err.value.body)
    assert upload(sbx, V2_YAML, path="/pipelines/upload_version", pipelineid="nope", name="v").status_code == 400


def test_upload_over_32_mib_is_400_like_kfp(sbx):
    # KFP's ReadPipelineFile refuses it as a user error: 400 "Failed to read a pipeline spec file", not 413.
    big = b"# pad\n" * ((32 << 20) // 6 + 10) + V2_YAML
    resp = upload(sbx, big, "big.yaml", name="big")
    assert resp.status_code == 400 and resp.json()["error_message"] == "Failed to read a pipeline spec file"
    assert get(sbx, f"{API}/pipelines").json() == {}


def test_list_paging_cap_and_omitted_fields(sbx, kfp_client):
    assert get(sbx, f"{API}/pipelines").json() == {}
    assert kfp_client.list_pipelines().pipelines is None
    made = post(sbx, "/_sandbox/bulk/pipelines", {"count": 450, "prefix": "bulk"}).json()["pipelines"]
    assert len(made) == 450
    seen, token, pages = [], None, 0
    while True:
        page = get(sbx, f"{API}/pipelines", page_size=1000, page_token=token or "").json()
        pages += 1
        assert page["total_size"] == 450 and len(page["pipelines"]) <= 200
        seen += [(p["created_at"], p["pipeline_id"]) for p in page["pipelines"]]
        token = page.get("next_page_token")
        if token is None:
            assert "next_page_token" not in page
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 450
    # Default order: created_at (whole seconds: a busy machine spreads the 450 over two), then the UUID.
    assert seen == sorted(seen)
    assert len(get(sbx, f"{API}/pipelines").json()["pipelines"]) == 20
    empty = post(sbx, f"{API}/pipelines", {"display_name": "empty"}).json()
    assert get(sbx, f"{API}/pipelines/{empty['pipeline_id']}/versions").json() == {}
    assert_grpc(get(sbx, f"{API}/pipelines", page_token="garbage"), 400)
    assert_grpc(get(sbx, f"{API}/pipelines", sort_by="bogus desc"), 400)


def test_filter_and_sort(sbx, kfp_client):
    for name in ("b", "a", "c"):
        upload(sbx, ADD_YAML, name=name)
        post(sbx, "/_sandbox/clock", {"advance": 2})
    names = lambda page: [p["name"] for p in page.get("pipelines", [])]  # noqa: E731
    assert names(get(sbx, f"{API}/pipelines", sort_by="name").json()) == ["a", "b", "c"]
    assert names(get(sbx, f"{API}/pipelines", sort_by="display_name desc").json()) == ["c", "b", "a"]
    assert names(get(sbx, f"{API}/pipelines", sort_by="created_at desc").json()) == ["c", "a", "b"]
    eq = _filter({"operation": 1, "key": "display_name", "stringValue": "a"})
    assert names(get(sbx, f"{API}/pipelines", filter=eq).json()) == ["a"]
    inn = _filter({"operation": "IN", "key": "name", "string_values": {"values": ["a", "c", "zz"]}})
    assert names(get(sbx, f"{API}/pipelines", filter=inn, sort_by="name").json()) == ["a", "c"]
    ne = _filter({"operation": "NOT_EQUALS", "key": "name", "string_value": "a"},
                 {"operation": 9, "key": "name", "stringValue": "c"})
    assert names(get(sbx, f"{API}/pipelines", filter=ne).json()) == ["c"]
    none = _filter({"operation": "EQUALS", "key": "name", "string_value": "zz"})
    assert get(sbx, f"{API}/pipelines", filter=none).json() == {}
    assert kfp_client.get_pipeline_id("b") is not None and kfp_client.get_pipeline_id("zz") is None
    assert_grpc(get(sbx, f"{API}/pipelines", filter=_filter({"operation": 1, "key": "color", "string_value": "x"})),
                400, "color")
    assert_grpc(get(sbx, f"{API}/pipelines", filter="{not json"), 400)


def test_get_by_name_get_and_404(sbx, kfp_client):
    pid, _ = uploaded(sbx)
    by_name = get(sbx, f"{API}/pipelines/names/qoe", namespace="").json()
    assert by_name["pipeline_id"] == pid and set(by_name) == {"pipeline_id", "name", "display_name", "created_at"}
    assert kfp_client.get_pipeline(pid).name == "qoe"
    assert_grpc(get(sbx, f"{API}/pipelines/names/nope"), 404)
    assert_grpc(get(sbx, f"{API}/pipelines/nope"), 404)
    assert_grpc(get(sbx, f"{API}/pipelines/{pid}/versions/nope"), 404)
    assert_grpc(get(sbx, f"{API}/no/such/route"), 404)


def test_delete_pipeline_needs_cascade(sbx, kfp_client):
    pid, vid = uploaded(sbx)
    with pytest.raises(ApiException) as err:
        kfp_client.delete_pipeline(pid)
    assert err.value.status == 400 and "versions" in json.loads(err.value.body)["message"]
    resp = requests.delete(f"{sbx.url}{API}/pipelines/{pid}", params={"cascade": "true"}, timeout=5)
    assert resp.status_code == 200 and resp.json() == {}
    assert_grpc(get(sbx, f"{API}/pipelines/{pid}/versions/{vid}"), 404)
    pid2, vid2 = uploaded(sbx)
    kfp_client.delete_pipeline_version(pid2, vid2)
    assert kfp_client.delete_pipeline(pid2) == {}


def test_create_pipeline_and_version_from_json(sbx):
    pipe = post(sbx, f"{API}/pipelines", {"name": "j", "display_name": "J"}).json()
    assert pipe["name"] == "j" and pipe["display_name"] == "J"
    assert_grpc(post(sbx, f"{API}/pipelines", {"name": "j"}), 409)
    assert_grpc(post(sbx, f"{API}/pipelines", {"name": "k", "colour": "x"}), 400, "colour")
    ver = post(sbx, f"{API}/pipelines/{pipe['pipeline_id']}/versions",
               {"name": "1", "pipeline_spec": yaml.safe_load(ADD_YAML)}).json()
    assert ver["pipeline_spec"]["pipelineInfo"]["name"] == "addpipe"
    both = post(sbx, f"{API}/pipelines/create", {"pipeline": {"name": "both"},
                                                 "pipeline_version": {"pipeline_spec": yaml.safe_load(V1_YAML)}})
    assert both.status_code == 200, both.text


# ---- experiments -----------------------------------------------------------------------------------
def test_experiments(sbx, kfp_client):
    exp = kfp_client.create_experiment("e1", description="first")
    assert exp.display_name == "e1" and exp.storage_state == "AVAILABLE"
    assert kfp_client.create_experiment("e1").experiment_id == exp.experiment_id  # kfp looks it up first
    assert_grpc(post(sbx, f"{API}/experiments", {"display_name": "e1"}), 409)
    assert_grpc(post(sbx, f"{API}/experiments", {"display_name": "e2", "bogus": 1}), 400, "bogus")
    assert kfp_client.get_experiment(experiment_name="Default").display_name == "Default"
    assert get(sbx, f"{API}/experiments").json()["total_size"] == 2
    kfp_client.archive_experiment(exp.experiment_id)
    assert kfp_client.get_experiment(exp.experiment_id).storage_state == "ARCHIVED"
    kfp_client.delete_experiment(exp.experiment_id)
    assert_grpc(get(sbx, f"{API}/experiments/{exp.experiment_id}"), 404)


# ---- runs ---------------------------------------------------------------------------------------------
def test_create_run_shape(sbx, kfp_client):
    pid, vid = uploaded(sbx)
    run = kfp_client.run_pipeline(None, "first", params={"featurepath": "/f", "epochs": 3},
                                  pipeline_id=pid, version_id=vid)
    assert run.state == "PENDING" and run.display_name == "first"
    raw = get(sbx, f"{API}/runs/{run.run_id}").json()
    default = kfp_client.get_experiment(experiment_name="Default").experiment_id
    assert raw["experiment_id"] == default
    assert raw["finished_at"] == EPOCH and raw["created_at"] == raw["scheduled_at"]
    assert raw["state_history"] == [{"update_time": raw["created_at"], "state": "PENDING"}]
    assert raw["runtime_config"] == {"parameters": {"featurepath": "/f", "epochs": 3}}
    assert raw["pipeline_version_reference"] == {"pipeline_id": pid, "pipeline_version_id": vid}
    assert raw["storage_state"] == "AVAILABLE"
    assert not {"error", "run_details", "pipeline_spec", "description"} & set(raw)


@pytest.mark.parametrize("params, word", [
    ({"featurepath": "/f", "epochs": "3"}, "epochs"),
    ({"featurepath": "/f", "learning_rate": True}, "learning_rate"),
    ({"featurepath": 7}, "featurepath"),
    ({"featurepath": "/f", "shuffle": "true"}, "shuffle"),
    ({"featurepath": "/f", "tags": "a"}, "tags"),
    ({"featurepath": "/f", "options": []}, "options"),
    ({"featurepath": "/f", "nope": 1}, "nope"),
    ({"epochs": 3}, "featurepath"),
])
def test_create_run_type_checks(sbx, params, word):
    pid, vid = uploaded(sbx)
    assert_grpc(create_run(sbx, pid, vid, params), 400, word)
    assert get(sbx, f"{API}/runs").json() == {}


def test_create_run_accepts_every_kind(sbx):
    pid, vid = uploaded(sbx)
    params = {"featurepath": "/f", "epochs": 3.0, "learning_rate": 1, "shuffle": False, "tags": [],
              "options": {"a": [1]}, "note": "n", "modelname": "m", "modelversion": "2"}
    assert create_run(sbx, pid, vid, params).status_code == 200


def test_number_integer_takes_any_json_number_like_kfp(sbx):
    # KFP's v2_template checks only that a NUMBER_INTEGER value is a JSON number: 3.5 passes, "3" does not.
    pid, vid = uploaded(sbx)
    run = create_run(sbx, pid, vid, {"featurepath": "/f", "epochs": 3.5})
    assert run.status_code == 200 and run.json()["runtime_config"]["parameters"]["epochs"] == 3.5
    assert_grpc(create_run(sbx, pid, vid, {"featurepath": "/f", "epochs": "3"}), 400, "epochs")


def test_create_run_rejects_bad_bodies(sbx):
    pid, vid = uploaded(sbx)
    assert_grpc(create_run(sbx, pid, vid, {"featurepath": "/f"}, colour="red"), 400, "colour")
    body = {"display_name": "r", "pipeline_version_reference": {"pipeline_id": pid, "pipeline_version_id": vid,
                                                                "x": 1}}
    assert_grpc(post(sbx, f"{API}/runs", body), 400, "x")
    # an unknown version is a 500 (resource_manager.go: error fetching manifest), not a 404
    assert_grpc(create_run(sbx, pid, "nope", {"featurepath": "/f"}), 500, "error fetching manifest")
    assert_grpc(create_run(sbx, pid, vid, {"featurepath": "/f"}, experiment_id="nope"), 404)
    assert_grpc(post(sbx, f"{API}/runs", {"display_name": "r"}), 400)
    assert_grpc(requests.post(f"{sbx.url}{API}/runs", data="{", timeout=5), 400)


def test_run_from_inline_spec_is_checked_too(sbx, kfp_client, tmp_path):
    path = tmp_path / "add.yaml"
    path.write_bytes(ADD_YAML)
    run = kfp_client.run_pipeline(None, "inline", pipeline_package_path=str(path), params={"a": 2.0})
    assert get(sbx, f"{API}/runs/{run.run_id}").json()["pipeline_spec"]["pipelineInfo"]["name"] == "addpipe"
    with pytest.raises(ApiException) as err:
        kfp_client.run_pipeline(None, "inline", pipeline_package_path=str(path), params={"a": "2"})
    assert err.value.status == 400 and '"a"' in json.loads(err.value.body)["message"]


def test_v2beta1_run_of_v1_version_drops_parameters(sbx, kfp_client):
    pid, vid = uploaded(sbx, V1_YAML, "v1")
    run = kfp_client.run_pipeline(None, "v1", params={"epochs": "9", "bogus": "x"}, pipeline_id=pid, version_id=vid)
    assert "runtime_config" not in get(sbx, f"{API}/runs/{run.run_id}").json()  # nil in toApiRun, so omitted
    detail = get(sbx, f"/apis/v1beta1/runs/{run.run_id}").json()
    workflow = json.loads(detail["pipeline_runtime"]["workflow_manifest"])
    assert {"name": "epochs", "value": "3"} in workflow["spec"]["arguments"]["parameters"]  # the default


def test_v1beta1_create_keeps_parameters(sbx):
    pid, vid = uploaded(sbx, V1_YAML, "v1")
    exp = post(sbx, f"{API}/experiments", {"display_name": "x"}).json()["experiment_id"]
    body = {"name": "v1run", "pipeline_spec": {"parameters": [{"name": "epochs", "value": "9"}]},
            "resource_references": [
                {"key": {"type": "EXPERIMENT", "id": exp}, "relationship": "OWNER"},
                {"key": {"type": "PIPELINE_VERSION", "id": vid}, "relationship": "CREATOR"}]}
    resp = post(sbx, "/apis/v1beta1/runs", body)
    assert resp.status_code == 200, resp.text
    run = resp.json()["run"]
    assert run["name"] == "v1run" and run["status"] == "Pending"
    assert run["pipeline_spec"]["parameters"] == [{"name": "epochs", "value": "9"}]
    assert {"key": {"type": "PIPELINE_VERSION", "id": vid}, "name": "v1", "relationship": "CREATOR"} \
        in run["resource_references"]
    detail = get(sbx, f"/apis/v1beta1/runs/{run['id']}").json()
    workflow = json.loads(detail["pipeline_runtime"]["workflow_manifest"])
    assert {"name": "epochs", "value": "9"} in workflow["spec"]["arguments"]["parameters"]
    assert {"name": "n", "value": "75"} in workflow["spec"]["arguments"]["parameters"]
    v2 = get(sbx, f"{API}/runs/{run['id']}").json()
    assert v2["runtime_config"]["parameters"] == {"epochs": "9"} and v2["experiment_id"] == exp
    body["pipeline_spec"]["parameters"] = [{"name": "bogus", "value": "1"}]
    assert_grpc(post(sbx, "/apis/v1beta1/runs", body), 400, "bogus")
    body["pipeline_spec"]["parameters"] = [{"name": "epochs", "value": 9}]
    assert_grpc(post(sbx, "/apis/v1beta1/runs", body), 400)
    body["colour"] = "x"
    assert_grpc(post(sbx, "/apis/v1beta1/runs", body), 400, "colour")


def test_list_runs_filters_and_paging(sbx, kfp_client):
    pid, vid = uploaded(sbx)
    ids = post(sbx, "/_sandbox/bulk/runs", {"count": 250, "pipeline_id": pid, "pipeline_version_id": vid}).json()["run_ids"]
    assert len(ids) == 250
    done = ids[:30]
    assert post(sbx, "/_sandbox/runs/state", {"run_ids": done, "state": "SUCCEEDED"}).json() == {"updated": 30}
    by_state = _filter({"operation": "EQUALS", "key": "state", "string_value": "SUCCEEDED"})
    page = get(sbx, f"{API}/runs", filter=by_state, page_size=200).json()
    assert page["total_size"] == 30 and {r["run_id"] for r in page["runs"]} == set(done)
    some = ids[100:110] + ["missing"]
    by_id = _filter({"operation": "IN", "key": "run_id", "stringValues": {"values": some}})
    listed = kfp_client.list_runs(filter=by_id, page_size=100).runs
    assert sorted(r.run_id for r in listed) == sorted(ids[100:110])
    first = get(sbx, f"{API}/runs", page_size=500).json()
    assert len(first["runs"]) == 200 and first["total_size"] == 250
    rest = get(sbx, f"{API}/runs", page_size=500, page_token=first["next_page_token"]).json()
    assert len(rest["runs"]) == 50 and "next_page_token" not in rest
    exp = kfp_client.create_experiment("other").experiment_id
    assert get(sbx, f"{API}/runs", experiment_id=exp).json() == {}
    assert kfp_client.list_runs(experiment_id=exp).runs is None


def test_terminate_and_state_controls(sbx, kfp_client):
    pid, vid = uploaded(sbx)
    run_id = create_run(sbx, pid, vid, {"featurepath": "/f"}).json()["run_id"]
    post(sbx, "/_sandbox/clock", {"advance": 5})
    kfp_client.terminate_run(run_id)
    run = kfp_client.get_run(run_id)
    # KFP's TerminateRun: CANCELING, no state_history entry, still unfinished; never CANCELED by itself.
    assert run.state == "CANCELING" and run.finished_at.year == 1970
    assert [h.state for h in run.state_history] == ["PENDING"]
    again = requests.post(f"{sbx.url}{API}/runs/{run_id}:terminate", timeout=5)
    assert_grpc(again, 400, "Row not found")  # a second terminate: the SQL update matches no row
    v1 = requests.post(f"{sbx.url}/apis/v1beta1/runs/{run_id}/terminate", timeout=5)
    assert_grpc(v1, 400, "Row not found")
    assert kfp_client.get_run(run_id).state == "CANCELING"
    # The workflow (here the control API) decides the end: a deadline-stopped Argo workflow is Failed.
    ended = post(sbx, f"/_sandbox/runs/{run_id}/state", {"state": "FAILED"}).json()
    assert ended["state"] == "FAILED" and ended["finished_at"] != EPOCH and "error" not in ended
    assert [h["state"] for h in ended["state_history"]] == ["PENDING", "FAILED"]
    assert_grpc(requests.post(f"{sbx.url}{API}/runs/{run_id}:terminate", timeout=5), 400)
    kfp_client.archive_run(run_id)
    assert get(sbx, f"{API}/runs/{run_id}").json()["storage_state"] == "ARCHIVED"

    other = create_run(sbx, pid, vid, {"featurepath": "/f"}).json()["run_id"]
    moved = post(sbx, f"/_sandbox/runs/{other}/state", {"state": "RUNNING"}).json()
    assert moved["state"] == "RUNNING" and moved["finished_at"] == EPOCH
    failed = post(sbx, f"/_sandbox/runs/{other}/state", {"state": "FAILED", "error": {"code": 2, "message": "oom"}})
    assert "error" not in failed.json() and failed.json()["finished_at"] != EPOCH  # KFP never fills a run's error
    detail = get(sbx, f"/apis/v1beta1/runs/{other}").json()
    assert detail["run"]["status"] == "Failed" and "error" not in detail["run"]
    assert json.loads(detail["pipeline_runtime"]["workflow_manifest"])["status"] == {"message": "oom",
                                                                                     "phase": "Failed"}
    assert requests.post(f"{sbx.url}{API}/runs/{other}:retry", timeout=5).status_code == 200
    assert kfp_client.get_run(other).state == "RUNNING"
    assert_grpc(requests.post(f"{sbx.url}{API}/runs/{other}:retry", timeout=5), 400)
    for state in ("PAUSED", "RUNTIME_STATE_UNSPECIFIED", "PENDING"):
        post(sbx, f"/_sandbox/runs/{other}/state", {"state": state})
        assert requests.post(f"{sbx.url}{API}/runs/{other}:terminate", timeout=5).status_code == 200
        assert get(sbx, f"{API}/runs/{other}").json()["state"] == "CANCELING"
    for state in ("SUCCEEDED", "SKIPPED", "CANCELED"):
        post(sbx, f"/_sandbox/runs/{other}/state", {"state": state})
        assert_grpc(requests.post(f"{sbx.url}{API}/runs/{other}:terminate", timeout=5), 400, "Row not found")
        assert get(sbx, f"{API}/runs/{other}").json()["state"] == state
    assert_grpc(post(sbx, f"/_sandbox/runs/{other}/state", {"state": "DONE"}), 400)
    assert_grpc(post(sbx, "/_sandbox/runs/nope/state", {"state": "RUNNING"}), 404)
    kfp_client.delete_run(other)
    assert_grpc(get(sbx, f"{API}/runs/{other}"), 404)


def test_task_details_come_from_the_reported_workflow_nodes(sbx, kfp_client):
    pid, vid = uploaded(sbx)
    run_id = create_run(sbx, pid, vid, {"featurepath": "/f"}).json()["run_id"]
    assert "run_details" not in get(sbx, f"{API}/runs/{run_id}").json()  # no workflow reported yet
    nodes = {
        "wf-abcde": {"id": "wf-abcde", "name": "wf-abcde", "displayName": "wf-abcde", "type": "DAG",
                     "phase": "Running", "startedAt": "2026-01-01T00:00:01Z", "children": ["wf-abcde-1"]},
        "wf-abcde-1": {"id": "wf-abcde-1", "name": "wf-abcde.train", "displayName": "train", "type": "Pod",
                       "phase": "Running", "startedAt": "2026-01-01T00:00:02Z"},
    }
    requests.put(f"{sbx.url}/_sandbox/runs/{run_id}/workflow", json={"nodes": nodes}, timeout=5).raise_for_status()
    raw = get(sbx, f"{API}/runs/{run_id}").json()
    tasks = {t["display_name"]: t for t in raw["run_details"]["task_details"]}
    train = tasks["train"]
    assert set(train) == {"run_id", "task_id", "display_name", "create_time", "start_time", "end_time", "state",
                          "state_history"}  # no error, inputs, outputs, execution_id, pod_name
    assert train["run_id"] == run_id and train["state"] == "RUNNING" and train["start_time"] == "2026-01-01T00:00:02Z"
    assert train["end_time"] == "0001-01-01T00:00:00Z"  # Go's zero time while the node has not finished
    assert train["create_time"] == raw["created_at"]
    assert tasks["wf-abcde"]["child_tasks"] == [{"pod_name": "wf-abcde-1"}]
    nodes["wf-abcde-1"] |= {"phase": "Failed", "message": "main: Error (exit code 1)",
                            "finishedAt": "2026-01-01T00:00:09Z"}
    requests.put(f"{sbx.url}/_sandbox/runs/{run_id}/workflow", json={"nodes": nodes}, timeout=5).raise_for_status()
    again = {t.display_name: t for t in kfp_client.get_run(run_id).run_details.task_details}
    assert again["train"].task_id == train["task_id"]  # KFP keeps a task's id across reports
    assert again["train"].state == "FAILED" and again["train"].end_time.year == 2026
    assert [h.state for h in again["train"].state_history] == ["RUNNING", "FAILED"]
    assert again["train"].error is None
    listed = get(sbx, f"{API}/runs").json()["runs"][0]
    assert len(listed["run_details"]["task_details"]) == 2  # the list carries them too


# ---- workflows and artifacts ---------------------------------------------------------------------------
def test_workflow_status_is_served_by_v1beta1(sbx):
    pid, vid = uploaded(sbx, V1_YAML, "v1")
    run_id = create_run(sbx, pid, vid).json()["run_id"]
    status = {"phase": "Succeeded", "nodes": {"n-1": {"id": "n-1", "type": "Pod", "phase": "Succeeded"}}}
    assert requests.put(f"{sbx.url}/_sandbox/runs/{run_id}/workflow", json=status, timeout=5).status_code == 200
    post(sbx, f"/_sandbox/runs/{run_id}/state", {"state": "SUCCEEDED"})
    detail = get(sbx, f"/apis/v1beta1/runs/{run_id}").json()
    workflow = json.loads(detail["pipeline_runtime"]["workflow_manifest"])
    assert workflow["status"] == status and workflow["kind"] == "Workflow"
    assert workflow["spec"]["templates"] and detail["run"]["status"] == "Succeeded"
    v2_run = create_run(sbx, *uploaded(sbx, ADD_YAML, "add")).json()["run_id"]
    assert get(sbx, f"/apis/v1beta1/runs/{v2_run}").json()["pipeline_runtime"] == {}
    full = {"metadata": {"name": "wf"}, "status": {"phase": "Running"}}
    requests.put(f"{sbx.url}/_sandbox/runs/{v2_run}/workflow", json=full, timeout=5)
    manifest = get(sbx, f"/apis/v1beta1/runs/{v2_run}").json()["pipeline_runtime"]["workflow_manifest"]
    assert json.loads(manifest)["status"] == {"phase": "Running"}


def test_artifact_read(sbx, kfp_client):
    missing = get(sbx, f"{API}/runs/nope/nodes/n/artifacts/a:read")
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/plain")
    assert missing.json() == {"error_message": "artifact not found: <nil>"}
    pid, vid = uploaded(sbx, ADD_YAML, "add")
    run_id = create_run(sbx, pid, vid).json()["run_id"]
    assert get(sbx, f"{API}/runs/{run_id}/nodes/n/artifacts/a:read").status_code == 500  # no workflow yet
    requests.put(f"{sbx.url}/_sandbox/runs/{run_id}/workflow", json={"phase": "Succeeded"}, timeout=5)
    obj = gzip.compress(b"tar-bytes")
    put = requests.put(f"{sbx.url}/_sandbox/runs/{run_id}/nodes/add-123/artifacts/add-Output", data=obj, timeout=5)
    assert put.json() == {"size": len(obj)}
    for version in ("v1beta1", "v2beta1"):
        resp = get(sbx, f"/apis/{version}/runs/{run_id}/nodes/add-123/artifacts/add-Output:read")
        assert resp.status_code == 200 and base64.b64decode(resp.json()["data"]) == obj
    # The way the adapter calls it: through kfp's own ApiClient.
    data = kfp_client._run_api.api_client.call_api(
        f"/apis/v1beta1/runs/{run_id}/nodes/add-123/artifacts/add-Output:read", "GET",
        response_type="object", auth_settings=["Bearer"], _return_http_data_only=True)
    assert base64.b64decode(data["data"]) == obj
    assert get(sbx, f"{API}/runs/{run_id}/nodes/other/artifacts/add-Output:read").status_code == 404


# ---- control API: counters, faults, reset ----------------------------------------------------------------
def test_request_counters_use_route_patterns(sbx, kfp_client):
    pid, _ = uploaded(sbx)
    kfp_client.get_pipeline(pid)
    get(sbx, f"{API}/pipelines/{pid}")
    counts = get(sbx, "/_sandbox/requests").json()
    assert counts["counts"]["GET /apis/v2beta1/pipelines/{pipeline_id}"] == 2
    assert counts["counts"]["POST /apis/v2beta1/pipelines/upload"] == 1
    assert counts["counts"]["GET /apis/v2beta1/healthz"] == 1  # kfp.Client's constructor
    assert counts["total"] == sum(counts["counts"].values())
    assert not any("_sandbox" in key for key in counts["counts"])
    run = requests.post(f"{sbx.url}{API}/runs/x:terminate", timeout=5)
    assert run.status_code == 404
    assert get(sbx, "/_sandbox/requests").json()["counts"]["POST /apis/v2beta1/runs/{run_id}:terminate"] == 1
    assert requests.delete(f"{sbx.url}/_sandbox/requests", timeout=5).json() == {}
    assert get(sbx, "/_sandbox/requests").json() == {"total": 0, "counts": {}}


def test_faults(sbx, kfp_client):
    post(sbx, "/_sandbox/faults", {"status": 503, "times": 2, "path_prefix": "/apis/v2beta1/pipelines"})
    assert_grpc(get(sbx, f"{API}/pipelines"), 503)
    with pytest.raises(ApiException) as err:
        kfp_client.list_pipelines()
    assert err.value.status == 503
    assert get(sbx, f"{API}/pipelines").status_code == 200
    post(sbx, "/_sandbox/faults", {"status": 500, "path_prefix": "/apis/", "method": "POST"})
    assert get(sbx, f"{API}/experiments").status_code == 200
    assert_grpc(post(sbx, f"{API}/experiments", {"display_name": "x"}), 500)
    assert_grpc(post(sbx, f"{API}/experiments", {"display_name": "x"}), 500)  # times: null = until cleared
    upload_fault = upload(sbx, V2_YAML, name="p")
    assert upload_fault.status_code == 500 and "error_details" in upload_fault.json()
    assert requests.delete(f"{sbx.url}/_sandbox/faults", timeout=5).json() == {}
    assert post(sbx, f"{API}/experiments", {"display_name": "x"}).status_code == 200
    post(sbx, "/_sandbox/faults", {"delay": 0.3, "times": 1})
    start = time.monotonic()
    assert get(sbx, f"{API}/experiments").status_code == 200
    assert time.monotonic() - start >= 0.3
    assert get(sbx, "/_sandbox/requests").json()["counts"]["GET /apis/v2beta1/pipelines"] == 3


def test_reset_restores_a_fresh_kfp(sbx):
    uploaded(sbx)
    post(sbx, "/_sandbox/faults", {"status": 503})
    assert post(sbx, "/_sandbox/reset").json() == {}
    assert get(sbx, f"{API}/pipelines").json() == {}
    assert [e["display_name"] for e in get(sbx, f"{API}/experiments").json()["experiments"]] == ["Default"]
    assert get(sbx, "/_sandbox/requests").json()["counts"] == {"GET /apis/v2beta1/pipelines": 1,
                                                               "GET /apis/v2beta1/experiments": 1}


def test_app_factory_is_independent():
    one, two = create_sandbox_app().test_client(), create_sandbox_app().test_client()
    one.post(f"{API}/experiments", json={"display_name": "only-here"})
    assert two.get(f"{API}/experiments").json["total_size"] == 1
    assert one.get(f"{API}/experiments").json["total_size"] == 2
