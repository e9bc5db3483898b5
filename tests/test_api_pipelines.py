"""Pipeline routes against the sandbox KFP: uploads and version numbering, lists, details, deletes."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import across_versions, package, upload

pytestmark = across_versions  # O-RAN's KFP 2.3 and the newest, 2.17

V2 = package("qoe_train_v2.yaml")
V1 = package("qoe_train_v1_argo.yaml")
ADD = package("add_v2.yaml")


def _versions(client, name):
    resp = client.get(f"/pipelines/{name}/versions")
    assert resp.status_code == 200, resp.json
    return resp.json


def test_first_upload_creates_pipeline_with_version_named_after_it(client):
    resp = upload(client, "qoe_Pipeline", V2, "first")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["created_pipeline"] is True and body["version_name"] == "qoe_Pipeline"
    assert body["pipeline_kind"] == "v2" and body["version_id"]
    ids = client.get("/pipelineIds/qoe_Pipeline").json
    assert ids == {"name": "qoe_Pipeline", "id": body["pipeline_id"]}
    versions = _versions(client, "qoe_Pipeline")
    assert versions["versions_list"] == ["qoe_Pipeline"]
    assert versions["versions"][0]["id"] == body["version_id"]


def test_later_uploads_add_numbered_versions_with_description(client):
    assert upload(client, "p", V2).status_code == 200
    second = upload(client, "p", ADD, "the second one")
    assert second.status_code == 200 and second.json["version_name"] == "2"
    assert second.json["created_pipeline"] is False
    assert upload(client, "p", V1).json["version_name"] == "3"
    versions = _versions(client, "p")
    assert versions["versions_list"] == ["p", "2", "3"]
    assert versions["versions"][1]["description"] == "the second one"


def test_concurrent_uploads_get_unique_consecutive_versions(adapter_url):
    def send(_):
        return requests.post(f"{adapter_url}/pipelineIds/race", files={"file": ("file", V2)},
                             data={"description": ""}, timeout=60)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers if r.status_code != 200]
    names = sorted(r.json()["version_name"] for r in answers)
    assert sorted(names) == sorted(["race"] + [str(n) for n in range(2, 21)])
    listed = requests.get(f"{adapter_url}/pipelines/race/versions", timeout=10).json()["versions_list"]
    assert listed == ["race"] + [str(n) for n in range(2, 21)]


def test_numbering_continues_after_a_deletion(client):
    for _ in range(3):
        assert upload(client, "p", V2).status_code == 200
    versions = _versions(client, "p")
    assert versions["versions_list"] == ["p", "2", "3"]
    two = next(v for v in versions["versions"] if v["name"] == "2")
    deleted = client.delete(f"/pipelines/{versions['pipeline_id']}/versions/{two['id']}")
    assert deleted.status_code == 200 and deleted.json["status"] == "Deleted"
    assert upload(client, "p", V2).json["version_name"] == "4"
    assert _versions(client, "p")["versions_list"] == ["p", "3", "4"]


def _zip(data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pipeline.yaml", data)
    return buf.getvalue()


def _targz(data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("pipeline.yaml")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_package_format_uploads(client):
    import yaml

    as_json = json.dumps(yaml.safe_load(V2)).encode()
    for i, data in enumerate([V2, as_json, _zip(V2), _targz(V1)]):
        resp = upload(client, f"fmt{i}", data)
        assert resp.status_code == 200, (i, resp.json)
        params = client.get(f"/pipelines/{resp.json['pipeline_id']}").json["parameters"]
        assert params, i


def test_lists_are_complete_past_kfp_page_cap(client, sandbox):
    made = requests.post(f"{sandbox.url}/_sandbox/bulk/pipelines", json={"count": 450, "prefix": "bulk"},
                         timeout=60)
    made.raise_for_status()
    pipelines = client.get("/pipelines").json["pipelines"]
    assert len(pipelines) == 450
    assert len({p["pipeline_id"] for p in pipelines}) == 450
    assert {"pipeline_id", "display_name", "description", "created_at"} <= set(pipelines[0])

    assert upload(client, "many", V2).status_code == 200
    pid = client.get("/pipelineIds/many").json["id"]
    requests.post(f"{sandbox.url}/_sandbox/bulk/versions", json={"pipeline_id": pid, "count": 249},
                  timeout=60).raise_for_status()
    versions = _versions(client, "many")["versions_list"]
    assert len(versions) == 250 and len(set(versions)) == 250


def test_pipeline_details_list_v2_parameters(client):
    pid = upload(client, "qoe", V2).json["pipeline_id"]
    body = client.get(f"/pipelines/{pid}").json
    assert body["id"] == pid and body["name"] == "qoe"
    assert body["arguments"] == {"epochs": 2, "featurepath": None, "learning_rate": 0.001, "modelname": "qoe",
                                 "modelversion": "1", "note": None, "options": {"k": 1.0}, "shuffle": True,
                                 "tags": ["a"]}
    types = {p["name"]: (p["type"], p["optional"]) for p in body["parameters"]}
    assert types == {"epochs": ("NUMBER_INTEGER", True), "featurepath": ("STRING", False),
                     "learning_rate": ("NUMBER_DOUBLE", True), "modelname": ("STRING", True),
                     "modelversion": ("STRING", True), "note": ("STRING", True), "options": ("STRUCT", True),
                     "shuffle": ("BOOLEAN", True), "tags": ("LIST", True)}


def test_pipeline_details_list_v1_parameters_and_pick_a_version(client):
    pid = upload(client, "mixed", V1).json["pipeline_id"]
    upload(client, "mixed", ADD)
    newest = client.get(f"/pipelines/{pid}").json
    assert newest["version"]["name"] == "2"
    assert newest["arguments"] == {"a": 1.0, "b": 7.0, "epochs": 3}
    first = client.get(f"/pipelines/{pid}?version=mixed").json
    assert first["arguments"] == {"n": 75, "epochs": 3, "lr": 0.01, "trainingjob_id": "tj-1"}
    assert {p["name"]: p["type"] for p in first["parameters"]} == {
        "n": "NUMBER_INTEGER", "epochs": "NUMBER_INTEGER", "lr": "NUMBER_DOUBLE", "trainingjob_id": "STRING"}
    missing = client.get(f"/pipelines/{pid}?version=nope")
    assert missing.status_code == 404 and "nope" in missing.json["message"]


def test_delete_pipeline_with_versions(client):
    pid = upload(client, "gone", V2).json["pipeline_id"]
    upload(client, "gone", V2)
    resp = client.delete(f"/pipelines/{pid}")
    assert resp.status_code == 200
    assert resp.json == {"id": pid, "name": "gone", "status": "Deleted"}
    assert client.get("/pipelineIds/gone").status_code == 404
    # the name is free again: a new upload starts over
    assert upload(client, "gone", V2).json["version_name"] == "gone"
