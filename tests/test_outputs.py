"""GET /runs/<id>/outputs and artifact downloads, end to end: the adapter reads the sandbox KFP over HTTP with the
real kfp.Client (v1 runs) and the sandbox's ML Metadata over real gRPC (v2 runs)."""
from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import re
import tarfile

import pytest
import requests

from kfadapter import cli
from kfadapter.app import create_app

from tests.conftest import across_versions, package, upload

pytestmark = across_versions  # O-RAN's KFP 2.3 and the newest, 2.17

TM_ARGS = {"epochs": "5", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "qoe",
           "modelVersion": "3", "modellocation": ""}
BLOB = bytes(range(256))
TRAIN_VALUES = {"accuracy": "0.93", "steps": "50", "converged": "True", "model_name": "qoe-model",
                "metrics": json.dumps({"loss": 0.12, "val": [0.5, 0.3]}, sort_keys=True)}
DATA_LIST = json.dumps([str(list(range(i, min(i + 8, 75)))) for i in range(0, 75, 8)])


# ---- building what Argo and KFP store ----------------------------------------------------------------------

def argo_tgz(members: dict[str, bytes] | None = None, **files: bytes) -> bytes:
    """A gzip'd tar as Argo archives an output: by default one member `data`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (members or files).items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1763800000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pod(wf: str, template: str, suffix: str, artifacts: list[str], phase: str = "Succeeded",
        started: str = "2026-11-22T11:00:00Z") -> tuple[str, dict]:
    """A Pod node as Argo records it: keyed by a pod-name-like id, with outputs.artifacts[{name, path, s3}]."""
    node_id = f"{wf}-{suffix}"
    node = {"id": node_id, "name": f"{wf}.{template}", "displayName": template, "type": "Pod",
            "templateName": template, "phase": phase, "boundaryID": wf, "startedAt": started,
            "finishedAt": None if phase == "Running" else "2026-11-22T11:01:00Z"}
    if phase != "Running":
        arts = [{"name": a, "path": f"/tmp/outputs/{a.removeprefix(template + '-')}/data",
                 "s3": {"key": f"artifacts/{wf}/2026/11/22/{node_id}/{a}.tgz"}} for a in artifacts]
        arts.append({"name": "main-logs", "s3": {"key": f"artifacts/{wf}/2026/11/22/{node_id}/main.log"}})
        node["outputs"] = {"artifacts": arts, "exitCode": "0"}
    return node_id, node


def v1_status(wf: str, *, train_phase: str = "Succeeded") -> tuple[dict, dict[str, str]]:
    """A completed (or partly running) workflow status for qoe_train_v1_argo.yaml; returns (status, node ids)."""
    pods = [pod(wf, "make-blob", "1111111111", ["make-blob-blob"]),
            pod(wf, "produce-list", "2222222222", ["produce-list-data_list"], started="2026-11-22T11:00:01Z"),
            pod(wf, "train", "3333333333", [f"train-{n}" for n in sorted(TRAIN_VALUES)], phase=train_phase,
                started="2026-11-22T11:00:02Z")]
    nodes = {wf: {"id": wf, "name": wf, "displayName": wf, "type": "DAG", "templateName": "qoe-train-v1",
                  "phase": "Succeeded" if train_phase == "Succeeded" else "Running",
                  "children": [node_id for node_id, _ in pods]}}
    nodes.update(pods)
    status = {"phase": nodes[wf]["phase"], "startedAt": "2026-11-22T11:00:00Z", "nodes": nodes}
    return status, {n["templateName"]: node_id for node_id, n in pods}


def compress_nodes(status: dict) -> dict:
    """The same status with `compressedNodes` (base64 of gzip'd JSON) instead of `nodes`, as Argo writes it."""
    packed = base64.b64encode(gzip.compress(json.dumps(status["nodes"]).encode())).decode()
    return {k: v for k, v in status.items() if k != "nodes"} | {"compressedNodes": packed}


def control(sandbox, method: str, path: str, **kwargs) -> requests.Response:
    """Call the sandbox's control API and insist it worked."""
    resp = requests.request(method, f"{sandbox.url}/_sandbox{path}", timeout=10, **kwargs)
    assert resp.ok, resp.text
    return resp


def start_run(client, pipeline_file: str, name: str = "qoe") -> str:
    """Upload a pipeline through the adapter and start a run the way TM does; return the run id."""
    assert upload(client, name, package(pipeline_file)).status_code == 200
    body = {"pipeline_name": name, "experiment_name": "Default", "arguments": TM_ARGS}
    resp = client.post("/trainingjobs/tj1/execution", json=body)
    assert resp.status_code == 200, resp.json
    return resp.json["run_id"]


def store_v1_run(sandbox, client, *, compressed: bool = False, train_phase: str = "Succeeded",
                 run_state: str = "SUCCEEDED") -> tuple[str, dict[str, str]]:
    """A v1 run with its workflow status and artifacts stored as Argo stores them."""
    run_id = start_run(client, "qoe_train_v1_argo.yaml")
    wf = f"qoe-train-v1-{run_id[:5]}"
    status, ids = v1_status(wf, train_phase=train_phase)
    control(sandbox, "PUT", f"/runs/{run_id}/workflow", json=compress_nodes(status) if compressed else status)
    objects = {(ids["make-blob"], "make-blob-blob"): BLOB,
               (ids["produce-list"], "produce-list-data_list"): DATA_LIST.encode()}
    if train_phase == "Succeeded":
        objects.update({(ids["train"], f"train-{k}"): v.encode() for k, v in TRAIN_VALUES.items()})
    for (node_id, name), data in objects.items():
        control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node_id}/artifacts/{name}", data=argo_tgz(data=data))
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{ids['train']}/artifacts/main-logs",
            data=gzip.compress(b"epoch 1\nepoch 2\ndone\n"))
    control(sandbox, "POST", f"/runs/{run_id}/state", json={"state": run_state})
    return run_id, ids


def by_name(body: dict) -> dict[str, dict]:
    """{task name: {output name: output}}."""
    return {t["name"]: {o["name"]: o for o in t["outputs"]} for t in body["tasks"]}


# ---- v1 (Argo) ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True], ids=["nodes", "compressedNodes"])
def test_v1_outputs_are_typed_json(client, sandbox, compressed):
    run_id, ids = store_v1_run(sandbox, client, compressed=compressed)
    resp = client.get(f"/runs/{run_id}/outputs")
    assert resp.status_code == 200, resp.json
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json
    assert body["run_status"] == "SUCCEEDED" and body["finished"] is True and body["pipeline_kind"] == "v1"
    assert [t["name"] for t in body["tasks"]] == ["make-blob", "produce-list", "train"]
    assert all(t["state"] == "SUCCEEDED" and t["node_id"] == ids[t["template"]] for t in body["tasks"])
    # One identity per task: the id GET /runs/<id> gives it (KFP's task id); the node id is an alias.
    listed = {t["name"]: t["id"] for t in client.get(f"/runs/{run_id}").json["tasks"]}
    if not compressed:  # the sandbox lists no task details for compressed nodes: ids stay the node ids
        assert {t["name"]: t["id"] for t in body["tasks"]} == listed and all(listed.values())
        assert client.get(f"/runs/{run_id}/outputs?task={ids['train']}").json["tasks"][0]["id"] == listed["train"]
    out = by_name(body)
    data_list = out["produce-list"]["data_list"]
    assert data_list["type"] == "JsonArray" and data_list["value"] == json.loads(DATA_LIST)
    assert isinstance(data_list["value"], list) and data_list["encoding"] == "json"
    train = out["train"]
    assert train["accuracy"]["value"] == 0.93 and type(train["accuracy"]["value"]) is float
    assert train["steps"]["value"] == 50 and type(train["steps"]["value"]) is int
    assert train["converged"]["value"] is True
    assert train["model_name"]["value"] == "qoe-model"
    assert train["metrics"]["value"] == {"loss": 0.12, "val": [0.5, 0.3]}
    assert {o["type"] for o in train.values()} == {"Float", "Integer", "Boolean", "String", "JsonObject"}
    assert "main-logs" not in train  # logs only on request
    blob = out["make-blob"]["blob"]
    assert blob["type"] is None and blob["encoding"] == "base64" and base64.b64decode(blob["value"]) == BLOB
    assert blob["size"] == 256 and blob["member"] == "data" and blob["stored_as"] == "tar+gzip"
    assert blob["download"] == f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/make-blob-blob"


def test_v1_download_returns_the_exact_bytes(adapter_url, client, sandbox):
    run_id, ids = store_v1_run(sandbox, client)
    blob = by_name(client.get(f"/runs/{run_id}/outputs").json)["make-blob"]["blob"]
    resp = requests.get(adapter_url + blob["download"], timeout=10)
    assert resp.status_code == 200 and resp.content == BLOB
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="make-blob-blob"'
    assert resp.headers["Content-Length"] == "256"
    listing = requests.get(adapter_url + blob["download"] + "?list=true", timeout=10).json()
    assert listing["members"] == [{"name": "data", "size": 256, "type": "file"}]


def test_v1_logs_and_task_filter(client, sandbox):
    run_id, ids = store_v1_run(sandbox, client)
    body = client.get(f"/runs/{run_id}/outputs?task=train&logs=true").json
    assert [t["name"] for t in body["tasks"]] == ["train"]
    logs = by_name(body)["train"]["main-logs"]
    assert logs["value"] == "epoch 1\nepoch 2\ndone\n" and logs["encoding"] == "text"
    assert logs["stored_as"] == "gzip"
    by_id = client.get(f"/runs/{run_id}/outputs?task={ids['produce-list']}").json
    assert [t["name"] for t in by_id["tasks"]] == ["produce-list"]
    unknown = client.get(f"/runs/{run_id}/outputs?task=nope")
    assert unknown.status_code == 404 and unknown.json["code"] == "task_not_found"
    assert unknown.json["details"]["task"] == "nope"


def test_v1_partial_outputs_while_running(client, sandbox):
    run_id, _ = store_v1_run(sandbox, client, train_phase="Running", run_state="RUNNING")
    body = client.get(f"/runs/{run_id}/outputs").json
    assert body["run_status"] == "RUNNING" and body["finished"] is False
    out = by_name(body)
    assert out["produce-list"]["data_list"]["value"] == json.loads(DATA_LIST)
    assert {t["name"]: t["state"] for t in body["tasks"]}["train"] == "RUNNING"
    assert all(o["available"] is False and o["value"] is None for o in out["train"].values())
    assert set(out["train"]) == set(TRAIN_VALUES)  # declared outputs are listed before they exist


def test_v1_inline_output_parameters_need_no_artifact_read(client, sandbox, kfp_counts):
    run_id = start_run(client, "qoe_train_v1_argo.yaml")
    status, ids = v1_status(f"wf-{run_id[:5]}")
    node = status["nodes"][ids["train"]]
    node["outputs"]["parameters"] = [{"name": f"train-{k}", "value": v} for k, v in TRAIN_VALUES.items()]
    control(sandbox, "PUT", f"/runs/{run_id}/workflow", json=status)
    kfp_counts.reset()
    out = by_name(client.get(f"/runs/{run_id}/outputs?task=train").json)["train"]
    assert out["steps"]["value"] == 50 and out["steps"]["source"] == "parameter"
    reads = {k: v for k, v in kfp_counts.read()["counts"].items() if k.endswith(":read")}
    assert reads == {}


def test_v1_large_and_multi_file_artifacts(adapter_url, client, sandbox):
    run_id, ids = store_v1_run(sandbox, client)
    rows = "".join(f"{i},{i * i}\n" for i in range(20000)).encode()
    node = ids["produce-list"]
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node}/artifacts/produce-list-data_list", data=argo_tgz(data=rows))
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/make-blob-blob",
            data=argo_tgz({"model/": b"", "model/weights.bin": BLOB, "model/config.json": b"{}"}))
    out = by_name(client.get(f"/runs/{run_id}/outputs").json)
    big = out["produce-list"]["data_list"]
    assert big["truncated"] is True and big["value"] is None and big["size"] == len(rows)
    assert big["preview"].split("\n") == [f"{i},{i * i}" for i in range(20)] and big["encoding"] == "text"
    assert len(json.dumps(big)) < 2000
    full = requests.get(adapter_url + big["download"], timeout=10)
    assert full.content == rows and full.headers["Content-Length"] == str(len(rows))
    multi = out["make-blob"]["blob"]
    assert multi["value"] is None and [m["name"] for m in multi["members"]] == [
        "model", "model/weights.bin", "model/config.json"]
    choose = requests.get(adapter_url + multi["download"], timeout=10)
    assert choose.status_code == 300 and choose.json()["code"] == "choose_member"
    assert [m["name"] for m in choose.json()["details"]["members"]][1:] == ["model/weights.bin", "model/config.json"]
    one = requests.get(adapter_url + multi["download"] + "?member=model/weights.bin", timeout=10)
    assert one.content == BLOB and one.headers["Content-Disposition"] == 'attachment; filename="weights.bin"'
    missing = requests.get(adapter_url + multi["download"] + "?member=nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "member_not_found"


def test_boolean_flags_take_only_true_false_1_0(client, sandbox):
    run_id, ids = store_v1_run(sandbox, client)
    download = f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/make-blob-blob"
    for path, flag in ((f"/runs/{run_id}/outputs?logs=maybe", "logs"), (download + "?list=yes", "list"),
                       (f"/runs/{run_id}/outputs?logs=", "logs")):
        resp = client.get(path)
        assert resp.status_code == 400 and resp.json["code"] == "invalid_flag", path
        assert resp.json["details"]["flag"] == flag and flag in resp.json["message"]
        assert resp.headers["Content-Type"] == "application/json"
    assert resp.json["details"]["value"] == ""
    assert "maybe" in client.get(f"/runs/{run_id}/outputs?logs=maybe").json["message"]
    logs = [o for t in client.get(f"/runs/{run_id}/outputs?logs=1").json["tasks"] for o in t["outputs"]
            if o["name"] == "main-logs"]
    assert len(logs) == 3
    assert all(o["name"] != "main-logs" for t in client.get(f"/runs/{run_id}/outputs?logs=false").json["tasks"]
               for o in t["outputs"])
    assert client.get(download + "?list=0").data == BLOB
    assert client.get(download + "?list=true").json["members"] == [{"name": "data", "size": 256, "type": "file"}]


def test_member_that_names_no_file_is_404(client, sandbox):
    run_id, ids = store_v1_run(sandbox, client)
    node = ids["make-blob"]
    # A plain (not archived) object, as Argo stores with `archive: none`: no member can match.
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob", data=BLOB)
    path = f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob"
    assert client.get(path).data == BLOB
    resp = client.get(path + "?member=data")
    assert resp.status_code == 404 and resp.json["code"] == "member_not_found"
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob", data=argo_tgz(data=BLOB))
    assert client.get(path + "?member=data").data == BLOB
    resp = client.get(path + "?member=other")
    assert resp.status_code == 404 and resp.json["code"] == "member_not_found"


def test_unknown_run_node_and_artifact_are_404(client, sandbox):
    assert client.get("/runs/no-such-run/outputs").json["code"] == "run_not_found"
    resp = client.get("/runs/no-such-run/nodes/n/artifacts/a")
    assert resp.status_code == 404 and resp.json["code"] == "run_not_found"
    run_id, ids = store_v1_run(sandbox, client)
    for path in (f"/runs/{run_id}/nodes/nope/artifacts/make-blob-blob",
                 f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/nope"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.json["code"] == "artifact_not_found", resp.json
        assert resp.headers["Content-Type"] == "application/json"


def test_kfp_failure_is_502_and_the_next_request_works(client, sandbox):
    run_id, ids = store_v1_run(sandbox, client)
    control(sandbox, "POST", "/faults", json={"status": 503, "times": 1, "path_prefix": "/apis/v1beta1/runs"})
    resp = client.get(f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/make-blob-blob")
    assert resp.status_code == 502 and resp.json["code"] == "kfp_unavailable"
    assert client.get(f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/make-blob-blob").data == BLOB


def test_cli_outputs_prints_the_same_json(client, sandbox, capsys):
    run_id, _ = store_v1_run(sandbox, client)
    expected = client.get(f"/runs/{run_id}/outputs").json
    assert cli.main(["outputs", run_id, "--kfp-endpoint", sandbox.url]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert cli.main(["outputs", "no-such-run", "--kfp-endpoint", sandbox.url]) == 1
    assert json.loads(capsys.readouterr().err)["code"] == "run_not_found"


# ---- v2 (IR) through ML Metadata over gRPC ------------------------------------------------------------------------

@pytest.fixture
def mlmd_settings(settings, sandbox):
    """Settings with the sandbox's MLMD and S3-style object store."""
    return dataclasses.replace(settings, mlmd_endpoint=sandbox.mlmd_endpoint, mlmd_timeout=2.0,
                               object_store_endpoint=f"{sandbox.url}/_s3", object_store_access_key="minio",
                               object_store_secret_key="minio123")


@pytest.fixture
def v2_client(mlmd_settings):
    """The adapter app with MLMD and the object store configured."""
    return create_app(mlmd_settings).test_client()


MODEL = b"\x00\x01model-bytes\xff" * 10


def attach_v2(sandbox, run_id: str, *, with_content: bool = True) -> dict:
    """The MLMD records KFP v2 leaves for a qoe_train_v2 run."""
    model = {"name": "model", "type": "system.Model",
             "uri": f"minio://mlpipeline/v2/artifacts/qoe-train-v2/{run_id}/train/7f1c/model"}
    if with_content:
        model["content_base64"] = base64.b64encode(MODEL).decode()
    doc = {"tasks": [
        {"name": "prepare", "outputs": {"row_count": 100.0, "columns": ["pdcp_bytes_dl", "pdcp_bytes_ul"]}},
        {"name": "train", "outputs": {"accuracy": 0.91, "ok": True, "summary": {"rows": 100.0, "epochs": 2.0}},
         "artifacts": [model, {"name": "metrics", "type": "system.Metrics", "metadata": {"accuracy": 0.91}}]},
    ]}
    return control(sandbox, "PUT", f"/runs/{run_id}/mlmd", json=doc).json()


def test_v2_outputs_come_typed_from_mlmd_over_grpc(v2_client, sandbox):
    run_id = start_run(v2_client, "qoe_train_v2.yaml")
    ids = attach_v2(sandbox, run_id)
    control(sandbox, "POST", f"/runs/{run_id}/state", json={"state": "SUCCEEDED"})
    body = v2_client.get(f"/runs/{run_id}/outputs").json
    assert body["pipeline_kind"] == "v2" and body["run_status"] == "SUCCEEDED"
    assert [(t["name"], t["state"]) for t in body["tasks"]] == [("prepare", "SUCCEEDED"), ("train", "SUCCEEDED")]
    out = by_name(body)
    assert out["prepare"]["row_count"]["value"] == 100 and type(out["prepare"]["row_count"]["value"]) is int
    assert out["prepare"]["row_count"]["type"] == "NUMBER_INTEGER"
    assert out["prepare"]["columns"]["value"] == ["pdcp_bytes_dl", "pdcp_bytes_ul"]
    train = out["train"]
    assert train["accuracy"]["value"] == 0.91 and train["accuracy"]["type"] == "NUMBER_DOUBLE"
    assert train["ok"]["value"] is True and train["summary"]["value"] == {"rows": 100.0, "epochs": 2.0}
    model = train["model"]
    assert model["type"] == "system.Model" and model["uri"].startswith("minio://mlpipeline/")
    assert model["encoding"] == "base64" and base64.b64decode(model["value"]) == MODEL
    assert model["download"] == f"/runs/{run_id}/nodes/{ids['executions']['train']}/artifacts/model"
    downloaded = v2_client.get(model["download"])
    assert downloaded.status_code == 200 and downloaded.data == MODEL
    assert downloaded.headers["Content-Disposition"] == 'attachment; filename="model"'
    metrics = train["metrics"]
    assert metrics["metadata"] == {"display_name": "metrics", "accuracy": 0.91}
    # KFP writes no object for a metrics artifact: its values are the MLMD custom properties.
    assert metrics["available"] is True and metrics["source"] == "metadata" and metrics["encoding"] == "json"
    assert metrics["value"] == {"accuracy": 0.91} and "error" not in metrics and "download" not in metrics
    member = v2_client.get(model["download"] + "?member=weights.bin")
    assert member.status_code == 404 and member.json["code"] == "member_not_found"


def test_v2_without_object_store_lists_uris(client, settings, sandbox):
    app = create_app(dataclasses.replace(settings, mlmd_endpoint=sandbox.mlmd_endpoint))
    v2 = app.test_client()
    run_id = start_run(v2, "qoe_train_v2.yaml")
    body = v2.get(f"/runs/{run_id}/outputs").json
    assert body["tasks"] == [] and body["run_status"] == "PENDING"  # not in MLMD yet
    attach_v2(sandbox, run_id, with_content=False)
    model = by_name(v2.get(f"/runs/{run_id}/outputs?task=train").json)["train"]["model"]
    assert model["available"] is False and "no object store configured" in model["reason"]
    assert model["uri"].endswith("/train/7f1c/model") and "download" not in model


def test_v2_pages_through_many_executions(v2_client, sandbox):
    run_id = start_run(v2_client, "qoe_train_v2.yaml")
    tasks = [{"name": f"t{i:03d}", "outputs": {"i": float(i)}} for i in range(250)]
    control(sandbox, "PUT", f"/runs/{run_id}/mlmd", json={"tasks": tasks})
    body = v2_client.get(f"/runs/{run_id}/outputs").json
    assert [t["name"] for t in body["tasks"]] == [f"t{i:03d}" for i in range(250)]
    assert body["tasks"][249]["outputs"][0]["value"] == 249.0


def test_mlmd_failures_are_502_and_504(v2_client, sandbox):
    run_id = start_run(v2_client, "qoe_train_v2.yaml")
    attach_v2(sandbox, run_id)
    control(sandbox, "POST", "/mlmd/faults", json={"code": "UNAVAILABLE", "times": 1})
    resp = v2_client.get(f"/runs/{run_id}/outputs")
    assert resp.status_code == 502 and resp.json["code"] == "mlmd_unavailable"
    control(sandbox, "POST", "/mlmd/faults", json={"delay": 2.5, "times": 1})  # longer than mlmd_timeout
    resp = v2_client.get(f"/runs/{run_id}/outputs")
    assert resp.status_code == 504 and resp.json["code"] == "mlmd_timeout"
    assert v2_client.get(f"/runs/{run_id}/outputs").status_code == 200


def test_unreachable_mlmd_is_502(settings, client):
    app = create_app(dataclasses.replace(settings, mlmd_endpoint="127.0.0.1:9", mlmd_timeout=1.0))
    v2 = app.test_client()
    run_id = start_run(v2, "qoe_train_v2.yaml")
    resp = v2.get(f"/runs/{run_id}/outputs")
    assert resp.status_code == 502 and resp.json["code"] in ("mlmd_unavailable", "mlmd_timeout")
    assert re.match(r"ML Metadata", resp.json["message"])


def test_serve_sandbox_wires_mlmd_and_the_object_store(tmp_path):
    """`kfadapter serve --sandbox` points the adapter at the sandbox's MLMD (gRPC) and object store."""
    from tests.conftest import PIPELINES
    from tests.support import SandboxService, wait_for

    server = SandboxService(tmp_path, PIPELINES.parents[2], KFADAPTER_WATCH="false")
    url, kfp = server.url, server.kfp_url
    try:
        # A container component: the sandbox fails its run at once, so its own ML Metadata records (written as
        # an executed run goes) are all there before the ones attached here replace them.
        with (PIPELINES / "container_echo_v2.yaml").open("rb") as fh:
            assert requests.post(f"{url}/pipelineIds/q", files={"file": ("file", fh)}, timeout=10).ok
        run_id = requests.post(f"{url}/trainingjobs/tj/execution", timeout=10,
                               json={"pipeline_name": "q", "arguments": {"text": "hi"}}).json()["run_id"]
        wait_for(lambda: requests.get(f"{url}/runs/{run_id}", timeout=10).json()["run_status"] == "FAILED",
                 "the run to fail")
        doc = {"tasks": [{"name": "train", "outputs": {"accuracy": 0.5},
                          "artifacts": [{"name": "model", "uri": "minio://mlpipeline/m",
                                         "content_base64": base64.b64encode(b"weights").decode()}]}]}
        assert requests.put(f"{kfp}/_sandbox/runs/{run_id}/mlmd", json=doc, timeout=10).ok
        out = by_name(requests.get(f"{url}/runs/{run_id}/outputs", timeout=10).json())["train"]
        assert out["accuracy"]["value"] == 0.5 and out["model"]["value"] == "weights"
        assert requests.get(url + out["model"]["download"], timeout=10).content == b"weights"
    finally:
        server.stop()
