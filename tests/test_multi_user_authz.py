"""The adapter on an authorizing multi-user KFP (the sandbox with a policy): 403 `kfp_forbidden` naming what to
bind, its own namespace kept where its token could do more, shared pipelines beside its own, and v1 outputs from the
object store where KFP 2.15+ refuses every `:read`. The adapter reaches the sandbox through the real kfp.Client."""
from __future__ import annotations

import warnings

import kfp
import pytest
import requests

from kfadapter.app import create_app
from kfadapter.sandbox import SandboxServer
from kfadapter.sandbox.authz import Policy
from kfadapter.settings import Settings

from tests.conftest import PIPELINES, package, upload
from tests.test_outputs import BLOB, TRAIN_VALUES, argo_tgz, control, v1_status

ADAPTER = "system:serviceaccount:team-a:kfadapter"
TM_ARGS = {"epochs": "5", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "qoe",
           "modelVersion": "3", "modellocation": ""}
V2 = package("qoe_train_v2.yaml")


def grants(*bindings: dict) -> Policy:
    """The adapter's token and an admin's (everything in team-a, team-b and kubeflow); the adapter gets `bindings`."""
    admin = [{"identity": "admin", "namespace": ns, "verbs": ["*"]} for ns in ("team-a", "team-b", "kubeflow")]
    return Policy.from_doc({"tokens": {"adapter-token": ADAPTER, "admin-token": "admin"},
                            "bindings": [*admin, *bindings]})


def edit(namespace: str, *verbs: str) -> dict:
    return {"identity": ADAPTER, "namespace": namespace, "verbs": list(verbs) or ["*"]}


@pytest.fixture(params=["2.3", "2.17"])
def kfp_sbx(request, multi_user_sandbox_servers):
    server = multi_user_sandbox_servers(request.param)
    server.reset()
    server.set_policy(grants(edit("team-a")))
    return server


@pytest.fixture
def kfp17(multi_user_sandbox_servers):
    server = multi_user_sandbox_servers("2.17")
    server.reset()
    server.set_policy(grants(edit("team-a")))
    return server


def adapter(server: SandboxServer, tmp_path, **extra):
    settings = Settings(kfp_endpoint=server.url, namespace="team-a", kfp_token="adapter-token",
                        store_path=str(tmp_path / "store.sqlite"), kfp_connect_timeout=2.0, kfp_read_timeout=3.0,
                        kfp_upload_timeout=5.0, **extra)
    return create_app(settings).test_client()


def admin(server: SandboxServer) -> kfp.Client:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=server.url, namespace="team-a", existing_token="admin-token")


@pytest.fixture(autouse=True)
def local_context(monkeypatch, tmp_path):
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))


def envelope(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.json
    assert resp.headers["Content-Type"] == "application/json"
    assert set(resp.json) == {"status", "code", "message", "details"} and resp.json["code"] == code, resp.json
    return resp.json


def team_b(server: SandboxServer, fixture: str = "qoe_train_v2.yaml") -> dict:
    """As admin: a pipeline with a version, an experiment and a PENDING run in team-b."""
    kc = admin(server)
    exp = kc.create_experiment("b", namespace="team-b").experiment_id
    path = str(PIPELINES / fixture)
    pid = kc.upload_pipeline(path, pipeline_name="b-pipe", namespace="team-b").pipeline_id
    vid = kc.list_pipeline_versions(pid).pipeline_versions[0].pipeline_version_id
    run = kc.run_pipeline(experiment_id=exp, job_name="b-run", pipeline_id=pid, version_id=vid,
                          params={"featurepath": "/f"}).run_id
    return {"pipeline": pid, "version": vid, "run": run, "experiment": exp}


# ---- 401 and 403 -------------------------------------------------------------------------------------------
def test_a_missing_grant_is_403_kfp_forbidden_naming_namespace_verb_and_rolebinding(kfp_sbx, tmp_path):
    client = adapter(kfp_sbx, tmp_path)
    assert upload(client, "qoe", V2).status_code == 200
    kfp_sbx.set_policy(grants(  # kubeflow-pipelines-view on runs only: no "create"
        {"identity": ADAPTER, "namespace": "team-a", "verbs": ["get", "list", "create"],
         "resources": ["pipelines", "experiments"]},
        {"identity": ADAPTER, "namespace": "team-a", "verbs": ["get", "list"], "resources": ["runs"]}))
    body = envelope(client.post("/trainingjobs/tj1/execution", json={"pipeline_name": "qoe", "arguments": TM_ARGS}),
                    403, "kfp_forbidden")
    details = body["details"]
    assert (details["namespace"], details["verb"], details["resource"]) == ("team-a", "create", "runs")
    assert details["identity"] == ADAPTER and details["cluster_role"] == "kubeflow-pipelines-edit"
    assert details["role_binding"] == ("kubectl create rolebinding kfadapter-pipelines-edit -n team-a "
                                       "--clusterrole=kubeflow-pipelines-edit --serviceaccount=team-a:kfadapter")
    assert "'create' on runs in namespace 'team-a'" in body["message"] and "PermissionDenied" not in body["message"]


def test_an_upload_refused_for_want_of_a_grant_is_403_kfp_forbidden(kfp_sbx, tmp_path):
    kfp_sbx.set_policy(grants(edit("team-a", "get", "list")))
    body = envelope(upload(adapter(kfp_sbx, tmp_path), "qoe", V2), 403, "kfp_forbidden")
    # 2.3 says why in its 400; 2.17 answers a bare "Failed to create a pipeline", which the adapter reads the same.
    assert (body["details"]["namespace"], body["details"]["verb"], body["details"]["resource"]) == (
        "team-a", "create", "pipelines")
    assert admin(kfp_sbx).list_pipelines(namespace="team-a").pipelines is None


def test_no_identity_is_kfps_401_and_the_adapter_says_its_credentials_were_refused(kfp17, tmp_path):
    status = requests.get(f"{kfp17.url}/apis/v2beta1/pipelines", params={"namespace": "team-a"}, timeout=5)
    assert status.status_code == 401
    settings = Settings(kfp_endpoint=kfp17.url, namespace="team-a", store_path=str(tmp_path / "s.sqlite"))
    envelope(create_app(settings).test_client().get("/pipelines"), 502, "kfp_unauthorized")


# ---- its own namespace ------------------------------------------------------------------------------------------
def test_the_adapter_keeps_to_its_namespace_where_its_token_could_do_more(kfp17, tmp_path):
    kfp17.set_policy(grants(edit("team-a"), edit("team-b")))  # e.g. kubeflow-pipelines-edit in both profiles
    b = team_b(kfp17)
    client = adapter(kfp17, tmp_path)
    envelope(client.get(f"/runs/{b['run']}"), 404, "run_not_found")
    envelope(client.delete(f"/runs/{b['run']}"), 404, "run_not_found")  # the adapter's terminate
    envelope(client.get(f"/runs/{b['run']}/outputs"), 404, "run_not_found")
    envelope(client.get(f"/runs/{b['run']}/nodes/n/artifacts/a"), 404, "run_not_found")
    envelope(client.get(f"/pipelines/{b['pipeline']}"), 404, "pipeline_not_found")
    envelope(client.delete(f"/pipelines/{b['pipeline']}/versions/{b['version']}"), 404, "pipeline_not_found")
    envelope(client.delete(f"/pipelines/{b['pipeline']}"), 404, "pipeline_not_found")
    kc = admin(kfp17)
    assert kc.get_run(b["run"]).state == "PENDING"  # not terminated
    assert kc.get_pipeline_version(b["pipeline"], b["version"]).pipeline_version_id == b["version"]
    assert client.get("/pipelines").json["total_size"] == 0  # team-b's pipeline is not listed either


def test_another_namespace_its_token_cannot_read_is_404_too(kfp17, tmp_path):
    b = team_b(kfp17)  # the adapter is bound in team-a only: KFP itself answers 403 about team-b
    client = adapter(kfp17, tmp_path)
    envelope(client.get(f"/runs/{b['run']}"), 404, "run_not_found")
    envelope(client.get(f"/pipelines/{b['pipeline']}"), 404, "pipeline_not_found")
    envelope(client.delete(f"/pipelines/{b['pipeline']}"), 404, "pipeline_not_found")


def test_shared_pipelines_are_listed_found_and_run_beside_the_namespaces_own(kfp_sbx, tmp_path):
    kc = admin(kfp_sbx)
    shared = kc.upload_pipeline(str(PIPELINES / "qoe_train_v2.yaml"), pipeline_name="shared-qoe").pipeline_id
    client = adapter(kfp_sbx, tmp_path)
    own = upload(client, "own-qoe", V2).json["pipeline_id"]
    listed = {p["pipeline_id"]: p["namespace"] for p in client.get("/pipelines").json["pipelines"]}
    assert listed == {own: "team-a", shared: ""}
    assert client.get("/pipelineIds/shared-qoe").json["id"] == shared
    assert client.get(f"/pipelines/{shared}").status_code == 200
    assert client.get("/pipelines/shared-qoe/versions").json["pipeline_id"] == shared
    run = client.post("/trainingjobs/tj1/execution", json={"pipeline_name": "shared-qoe", "arguments": TM_ARGS})
    assert run.status_code == 200, run.json
    assert [r.run_id for r in kc.list_runs(namespace="team-a").runs] == [run.json["run_id"]]
    # Readable, not deletable: it is every namespace's.
    envelope(client.delete(f"/pipelines/{shared}"), 403, "shared_pipeline_read_only")
    assert kc.get_pipeline(shared).pipeline_id == shared
    # Uploading under a shared pipeline's name makes the namespace its own pipeline, found first from then on.
    mine = upload(client, "shared-qoe", V2).json
    assert mine["created_pipeline"] is True and mine["pipeline_id"] != shared
    assert client.get("/pipelineIds/shared-qoe").json["id"] == mine["pipeline_id"]


# ---- v1 outputs where :read is refused ------------------------------------------------------------------------
def test_v1_outputs_at_2_17_multi_user_come_from_the_object_store(kfp17, tmp_path):
    access, secret = kfp17.object_store_keys
    client = adapter(kfp17, tmp_path, object_store_endpoint=kfp17.object_store_endpoint,
                     object_store_access_key=access, object_store_secret_key=secret)
    assert upload(client, "qoe1", package("qoe_train_v1_argo.yaml")).status_code == 200
    run = client.post("/trainingjobs/tj1/execution", json={"pipeline_name": "qoe1", "arguments": TM_ARGS})
    assert run.status_code == 200, run.json
    run_id = run.json["run_id"]
    status, ids = v1_status(f"qoe-train-v1-{run_id[:5]}")
    control(kfp17, "PUT", f"/runs/{run_id}/workflow", json=status)
    objects = {(ids["make-blob"], "make-blob-blob"): BLOB} | {
        (ids["train"], f"train-{k}"): v.encode() for k, v in TRAIN_VALUES.items()}
    for (node_id, name), data in objects.items():  # where Argo put them: the S3 key the workflow records
        [key] = [a["s3"]["key"] for a in status["nodes"][node_id]["outputs"]["artifacts"] if a["name"] == name]
        control(kfp17, "PUT", f"/objects/mlpipeline/{key}", data=argo_tgz(data=data))
    control(kfp17, "POST", f"/runs/{run_id}/state", json={"state": "SUCCEEDED"})
    # KFP itself refuses the :read, even to a caller allowed everything.
    read = f"{kfp17.url}/apis/v1beta1/runs/{run_id}/nodes/{ids['train']}/artifacts/train-accuracy:read"
    assert requests.get(read, headers={"Authorization": "Bearer admin-token"}, timeout=5).status_code == 403
    requests.delete(f"{kfp17.url}/_sandbox/requests", timeout=5)
    body = client.get(f"/runs/{run_id}/outputs").json
    outputs = {t["name"]: {o["name"]: o for o in t["outputs"]} for t in body["tasks"]}
    assert outputs["train"]["accuracy"]["value"] == 0.93 and outputs["train"]["converged"]["value"] is True
    assert outputs["make-blob"]["blob"]["available"] is True
    download = client.get(f"/runs/{run_id}/nodes/{ids['make-blob']}/artifacts/make-blob-blob")
    assert download.status_code == 200 and download.data == BLOB
    counts = requests.get(f"{kfp17.url}/_sandbox/requests", timeout=5).json()["counts"]
    assert not [k for k in counts if k.endswith(":read")], counts  # never asked KFP for a :read
    # Without an object store configured the artifact says where it would have to come from.
    bare = adapter(kfp17, tmp_path)
    blob = {t["name"]: {o["name"]: o for o in t["outputs"]} for t in bare.get(f"/runs/{run_id}/outputs").json["tasks"]}
    assert blob["make-blob"]["blob"]["error"]["code"] == "artifact_unavailable"
