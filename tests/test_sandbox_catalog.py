"""The sandbox is as strict as KFP 2.17 on pipelines, versions, experiments, names, lists, multi-user mode and the
UI proxy's `/pipeline` prefix (kfp-facts.md, "Read from the KFP 2.17.0 API server source"), driven by the real
kfp.Client over HTTP and by raw requests where the client hides the answer."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from urllib.parse import quote

import kfp
import pytest
import requests
import yaml
from kfp_server_api.exceptions import ApiException

from kfadapter.sandbox import SandboxServer

PIPELINES = Path(__file__).parent / "fixtures" / "pipelines"
V2_PATH = PIPELINES / "qoe_train_v2.yaml"
V2_YAML = V2_PATH.read_bytes()
API = "/apis/v2beta1"


@pytest.fixture(scope="module")
def single():
    with SandboxServer() as server:
        yield server


@pytest.fixture(scope="module")
def multi():
    with SandboxServer(multi_user=True) as server:
        yield server


@pytest.fixture
def sbx(single):
    single.reset()
    return single


@pytest.fixture
def msbx(multi):
    multi.reset()
    return multi


def client_for(url: str, namespace: str = "", token: str | None = None) -> kfp.Client:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=url, namespace=namespace, existing_token=token)


@pytest.fixture
def kc(sbx, monkeypatch, tmp_path):
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))
    return client_for(sbx.url)


@pytest.fixture
def mkc(msbx, monkeypatch, tmp_path):
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))
    return client_for(msbx.url, "team-a", token="observer")  # multi-user KFP needs an identity


def ir_named(tmp_path, name: str) -> str:
    """The qoe package with another pipelineInfo.name, as a file for kfp.Client."""
    doc = yaml.safe_load(V2_YAML)
    doc["pipelineInfo"]["name"] = name
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def raw_upload(sbx, data=V2_YAML, path="/pipelines/upload", **params):
    files = {"uploadfile": ("pipeline.yaml", data, "application/octet-stream")}
    return requests.post(f"{sbx.url}{API}{path}", files=files, params=params, timeout=30)


def get(sbx, path, headers=None, **params):
    return requests.get(sbx.url + path, params=params, headers=headers, timeout=5)


USER = {"kubeflow-userid": "user@example.com"}  # an identity for the multi-user sandbox


def status_of(call) -> tuple[int, str]:
    with pytest.raises(ApiException) as err:
        call()
    body = err.value.body.decode() if isinstance(err.value.body, bytes) else err.value.body
    return err.value.status, body


def first_version(kc, pid: str) -> str:
    return kc.list_pipeline_versions(pid).pipeline_versions[0].pipeline_version_id


# ---- versions ignore the pipeline id of the path -------------------------------------------------------
def test_version_get_and_delete_ignore_the_pipeline_id(kc):
    a = kc.upload_pipeline(str(V2_PATH), pipeline_name="a").pipeline_id
    b = kc.upload_pipeline(str(V2_PATH), pipeline_name="b").pipeline_id
    va = first_version(kc, a)
    assert kc.get_pipeline_version(b, va).pipeline_id == a  # b's path, a's version: KFP answers it
    kc.delete_pipeline_version(b, va)  # ... and deletes it, whichever pipeline owns it
    assert kc.list_pipeline_versions(a).pipeline_versions is None
    assert kc.list_pipeline_versions(b).pipeline_versions is not None


# ---- names -------------------------------------------------------------------------------------------
def test_pipeline_name_over_128_bytes_is_a_text_plain_400(sbx, kc):
    resp = raw_upload(sbx, name="p" * 129)
    assert resp.status_code == 400 and resp.headers["Content-Type"].startswith("text/plain")
    assert resp.text == "Invalid input error: Pipeline.Name length cannot exceed 128\n"
    status, _ = status_of(lambda: kc.upload_pipeline(str(V2_PATH), pipeline_name="é" * 65))  # 130 bytes
    assert status == 400
    body = requests.post(f"{sbx.url}{API}/pipelines", json={"display_name": "p" * 129}, timeout=5)
    assert body.status_code == 400 and "Pipeline.Name length cannot exceed 128" in body.json()["message"]
    # 128 passes the pipeline check, but the first version takes the same name and version names are varchar(127).
    assert raw_upload(sbx, name="p" * 128).status_code == 500
    assert get(sbx, f"{API}/pipelines").json() == {}


def test_version_name_over_127_is_a_400(sbx, kc):
    pid = kc.upload_pipeline(str(V2_PATH), pipeline_name="p").pipeline_id
    resp = raw_upload(sbx, path="/pipelines/upload_version", pipelineid=pid, name="v" * 128)
    assert resp.status_code == 400 and resp.text == "Invalid input error: PipelineVersion.Name length cannot exceed 127\n"
    assert kc.upload_pipeline_version(str(V2_PATH), "v" * 127, pipeline_id=pid).name == "v" * 127


@pytest.mark.parametrize("bad", ["QoE-Train", "qoe_train", "-qoe", "q" * 129, "qoe.train"])
def test_ir_pipeline_name_must_match_kfps_pattern(sbx, kc, tmp_path, bad):
    path = ir_named(tmp_path, bad)
    status, body = status_of(lambda: kc.upload_pipeline(path, pipeline_name="ok"))
    assert status == 400 and "pipeline's name must contain" in json.loads(body)["error_message"]
    assert get(sbx, f"{API}/pipelines").json() == {}  # pipeline and version are one transaction
    pid = kc.upload_pipeline(str(V2_PATH), pipeline_name="ok").pipeline_id
    status, _ = status_of(lambda: kc.upload_pipeline_version(path, "2", pipeline_id=pid))
    assert status == 400
    good = ir_named(tmp_path, "a" + "-0" * 63)  # 127 characters of the allowed alphabet
    assert kc.upload_pipeline_version(good, "3", pipeline_id=pid).name == "3"


def test_names_are_unique_ignoring_case(sbx, kc):
    pid = kc.upload_pipeline(str(V2_PATH), pipeline_name="qoe").pipeline_id
    assert status_of(lambda: kc.upload_pipeline(str(V2_PATH), pipeline_name="QOE"))[0] == 409
    assert kc.get_pipeline_id("qoe") == pid
    assert get(sbx, f"{API}/pipelines/names/QOE").json()["pipeline_id"] == pid
    kc.upload_pipeline_version(str(V2_PATH), "v", pipeline_id=pid)
    assert status_of(lambda: kc.upload_pipeline_version(str(V2_PATH), "V", pipeline_id=pid))[0] == 409
    exp = kc.create_experiment("Exp").experiment_id
    assert kc.create_experiment("exp").experiment_id == exp  # the client looks the name up first: found
    create = kc._experiment_api.experiment_service_create_experiment
    assert status_of(lambda: create({"display_name": "EXP"}))[0] == 409


def test_oversize_upload_is_400_not_413(sbx):
    resp = raw_upload(sbx, data=b"#" * ((32 << 20) + 1) + V2_YAML, name="big")
    assert resp.status_code == 400 and resp.json()["error_message"] == "Failed to read a pipeline spec file"


# ---- experiments -------------------------------------------------------------------------------------
def test_default_experiment_cannot_be_deleted(kc):
    default = kc.get_experiment(experiment_name="Default").experiment_id
    status, body = status_of(lambda: kc.delete_experiment(default))
    assert status == 409 and "default experiment cannot be deleted" in json.loads(body)["message"]
    other = kc.create_experiment("other").experiment_id
    kc.delete_experiment(other)
    assert [e.display_name for e in kc.list_experiments().experiments] == ["Default"]


# ---- lists -------------------------------------------------------------------------------------------
def test_page_size_default_cap_and_negative(sbx, kc):
    requests.post(f"{sbx.url}/_sandbox/bulk/pipelines", json={"count": 230, "prefix": "p"}, timeout=30)
    assert len(kc.list_pipelines(page_size=0).pipelines) == 20
    assert len(kc.list_pipelines(page_size=1000).pipelines) == 200
    assert status_of(lambda: kc.list_pipelines(page_size=-1))[0] == 400


def test_page_token_must_match_the_sort_and_filter(sbx, kc):
    requests.post(f"{sbx.url}/_sandbox/bulk/pipelines", json={"count": 30, "prefix": "p"}, timeout=30)
    first = kc.list_pipelines(page_size=10, sort_by="name desc")
    token = first.next_page_token
    same = kc.list_pipelines(page_size=10, sort_by="NAME DESC", page_token=token)  # lower-cased first
    assert [p.name for p in same.pipelines] == [f"p-{i:04d}" for i in range(19, 9, -1)]
    bare = kc.list_pipelines(page_size=10, page_token=token)  # no criteria: the token's hold
    assert [p.name for p in bare.pipelines] == [p.name for p in same.pipelines]
    assert status_of(lambda: kc.list_pipelines(page_size=10, sort_by="name", page_token=token))[0] == 400
    other = json.dumps({"predicates": [{"operation": "EQUALS", "key": "name", "string_value": "p-0001"}]})
    assert status_of(lambda: kc.list_pipelines(page_size=10, filter=other, page_token=token))[0] == 400


def _eq(key, value="x", field="string_value"):
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, field: value}]})


RUN_KEYS = ["run_id", "id", "display_name", "name", "created_at", "finished_at", "description", "scheduled_at",
            "storage_state", "status", "namespace", "experiment_id", "state", "state_history", "runtime_details",
            "recurring_run_id"]


@pytest.mark.parametrize("path, keys, refused", [
    ("/runs", RUN_KEYS, ["pipeline_id", "pipeline_version_id", "service_account", "error"]),
    ("/pipelines", ["id", "pipeline_id", "name", "display_name", "created_at", "description", "namespace"],
     ["pipeline_version_id", "tags_x", "color"]),
    ("/experiments", ["id", "experiment_id", "name", "display_name", "created_at", "last_run_created_at",
                      "description", "namespace", "storage_state"], ["state", "pipeline_id"]),
])
def test_filter_keys_are_kfps(sbx, path, keys, refused):
    for key in keys:
        value = "2026-01-01T00:00:00Z" if key.endswith("_at") else "x"
        assert get(sbx, API + path, filter=_eq(key, value)).status_code == 200, key
    for key in refused:
        resp = get(sbx, API + path, filter=_eq(key))
        assert resp.status_code == 400 and "unrecognized field" in resp.json()["message"], key


def test_version_filter_keys_and_sort(sbx, kc):
    pid = kc.upload_pipeline(str(V2_PATH), pipeline_name="p").pipeline_id
    for key in ("id", "pipeline_version_id", "name", "display_name", "description", "status"):
        assert get(sbx, f"{API}/pipelines/{pid}/versions", filter=_eq(key)).status_code == 200, key
    assert get(sbx, f"{API}/pipelines/{pid}/versions", filter=_eq("pipeline_id")).status_code == 400
    assert get(sbx, f"{API}/pipelines/{pid}/versions", sort_by="Created_At DESC").status_code == 200


def test_filter_has_no_bool_value(sbx):
    for field in ("bool_value", "boolValue"):
        resp = get(sbx, f"{API}/runs", filter=_eq("state", True, field))
        assert resp.status_code == 400 and "unknown field" in resp.json()["message"]


def test_filter_is_url_decoded_once_more_by_the_server(kc):
    kc.create_experiment("a+b")
    as_sent = _eq("display_name", "a+b")
    assert kc.list_experiments(filter=as_sent).experiments is None  # '+' became ' '
    found = kc.list_experiments(filter=quote(as_sent)).experiments  # quoted once more: found
    assert [e.display_name for e in found] == ["a+b"]
    assert status_of(lambda: kc.list_experiments(filter=_eq("display_name", "100%")))[0] == 400


def test_empty_runtime_config_is_left_out(sbx, kc):
    pid = kc.upload_pipeline(str(PIPELINES / "add_v2.yaml"), pipeline_name="add").pipeline_id
    run = kc.run_pipeline(experiment_id=None, job_name="r", pipeline_id=pid, version_id=first_version(kc, pid))
    body = get(sbx, f"{API}/runs/{run.run_id}").json()
    assert "runtime_config" not in body and body["storage_state"] == "AVAILABLE"


# ---- the ml-pipeline-ui proxy's /pipeline prefix -------------------------------------------------------
def test_every_api_route_answers_under_the_pipeline_prefix(sbx, monkeypatch, tmp_path):
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))
    proxied = client_for(sbx.url + "/pipeline")
    pid = proxied.upload_pipeline(str(V2_PATH), pipeline_name="via-proxy").pipeline_id
    assert proxied.get_pipeline(pid).display_name == "via-proxy"
    run = proxied.run_pipeline(experiment_id=None, job_name="r", pipeline_id=pid,
                               version_id=first_version(proxied, pid), params={"featurepath": "/f"})
    assert proxied.get_run(run.run_id).run_id == run.run_id
    assert get(sbx, "/pipeline/apis/v2beta1/healthz").json()["multi_user"] is False
    assert get(sbx, f"/pipeline/apis/v1beta1/runs/{run.run_id}").status_code == 200
    assert get(sbx, "/pipeline/_sandbox/requests").status_code == 404  # only the API is proxied


# ---- multi-user mode -----------------------------------------------------------------------------------
def test_multi_user_healthz_and_no_default_experiment(msbx, mkc):
    assert get(msbx, f"{API}/healthz").json()["multi_user"] is True
    assert mkc.list_experiments(namespace="team-a").experiments is None
    status, body = status_of(lambda: mkc._experiment_api.experiment_service_list_experiments())
    assert status == 400 and "empty namespace" in json.loads(body)["message"]
    status, _ = status_of(lambda: mkc._experiment_api.experiment_service_create_experiment({"display_name": "e"}))
    assert status == 400


def test_multi_user_namespaces_scope_experiments_runs_and_pipelines(msbx, mkc):
    exp_a = mkc.create_experiment("Default", namespace="team-a").experiment_id
    exp_b = mkc.create_experiment("Default", namespace="team-b").experiment_id  # same name, other namespace
    assert [e.experiment_id for e in mkc.list_experiments(namespace="team-a").experiments] == [exp_a]
    pid = mkc.upload_pipeline(str(V2_PATH), pipeline_name="qoe", namespace="team-a").pipeline_id
    assert mkc.upload_pipeline(str(V2_PATH), pipeline_name="qoe", namespace="team-b").pipeline_id != pid
    assert [p.pipeline_id for p in mkc.list_pipelines(namespace="team-a").pipelines] == [pid]
    assert mkc.list_pipelines(namespace="").pipelines is None  # no shared pipelines
    assert get(msbx, f"{API}/pipelines/names/qoe", USER, namespace="team-a").json()["pipeline_id"] == pid
    assert get(msbx, f"{API}/pipelines/names/qoe", USER, namespace="team-c").status_code == 404
    vid = first_version(mkc, pid)
    status, body = status_of(lambda: mkc.run_pipeline(experiment_id=None, job_name="r", pipeline_id=pid,
                                                      version_id=vid, params={"featurepath": "/f"}))
    assert status == 400 and "Experiment id can not be empty" in json.loads(body)["message"]
    run = mkc.run_pipeline(experiment_id=exp_a, job_name="r", pipeline_id=pid, version_id=vid,
                           params={"featurepath": "/f"})
    assert [r.run_id for r in mkc.list_runs(namespace="team-a").runs] == [run.run_id]
    assert mkc.list_runs(namespace="team-b").runs is None
    assert mkc.list_runs(experiment_id=exp_b).runs is None
    status, _ = status_of(lambda: mkc._run_api.run_service_list_runs())
    assert status == 400
    ns_filter = json.dumps({"predicates": [{"operation": "EQUALS", "key": "namespace", "string_value": "team-a"}]})
    assert len(mkc.list_runs(namespace="team-a", filter=ns_filter).runs) == 1
    # Deleting an experiment is allowed: there is no undeletable Default in multi-user mode.
    mkc.delete_experiment(exp_b)
