"""The adapter on KFP's real catalog semantics, against the strict sandbox over HTTP: version ownership, KFP's
name rules, paths that cannot be rewritten, case-insensitive names, a misconfigured endpoint, the UI proxy's
`/pipeline` prefix and multi-user KFP."""
from __future__ import annotations

import dataclasses
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kfp
import pytest
import requests
import urllib3
import yaml

from kfadapter.app import create_app
from kfadapter.core.errors import BadRequest
from kfadapter.kfconnect import KfConnect
from kfadapter.watch.poller import poll_once
from kfadapter.watch.store import Store

from tests.conftest import package, upload
from tests.support import serve_in_background

V2 = package("qoe_train_v2.yaml")
TM_ARGS = {"epochs": "1", "trainingjob_id": "tj", "featuregroup_name": "fg", "modelName": "m", "modelVersion": "1"}


def kfp_client(url: str, namespace: str = "observer") -> kfp.Client:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=url, namespace=namespace, existing_token="observer")  # an identity for multi-user KFP


def counts(sandbox) -> dict:
    return requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()["counts"]


def zero_counts(sandbox) -> None:
    requests.delete(f"{sandbox.url}/_sandbox/requests", timeout=5).raise_for_status()


def envelope(resp, status: int, code: str) -> dict:
    body = resp.json() if callable(resp.json) else resp.json  # requests or Flask's test client
    assert resp.status_code == status, body
    assert resp.headers["Content-Type"] == "application/json"
    assert set(body) == {"status", "code", "message", "details"} and body["code"] == code, body
    return body


def ir_named(name: str) -> bytes:
    doc = yaml.safe_load(V2)
    doc["pipelineInfo"]["name"] = name
    return yaml.safe_dump(doc).encode()


# ---- version ownership --------------------------------------------------------------------------------
def test_delete_version_of_another_pipeline_is_404_and_deletes_nothing(client, sandbox):
    a = upload(client, "a", V2).json
    b = upload(client, "b", V2).json
    zero_counts(sandbox)
    resp = client.delete(f"/pipelines/{b['pipeline_id']}/versions/{a['version_id']}")
    assert resp.status_code == 404 and resp.json["code"] == "version_not_found"
    assert not any(k.startswith("DELETE") for k in counts(sandbox))  # checked before anything is deleted
    assert [v["id"] for v in client.get("/pipelines/a/versions").json["versions"]] == [a["version_id"]]
    assert client.delete(f"/pipelines/{a['pipeline_id']}/versions/{a['version_id']}").status_code == 200
    assert client.get("/pipelines/a/versions").json["versions"] == []


def test_get_version_checks_the_owner(app, client):
    a = upload(client, "a", V2).json
    b = upload(client, "b", V2).json
    kf = app.extensions["kfadapter.kf"]
    assert kf.get_version(a["pipeline_id"], a["version_id"])["pipeline_version_id"] == a["version_id"]
    with pytest.raises(Exception) as err:
        kf.get_version(b["pipeline_id"], a["version_id"])
    assert getattr(err.value, "code", None) == "version_not_found"


# ---- names KFP refuses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, rule", [
    ("p" * 129, "over 128 bytes"),
    ("é" * 65, "over 128 bytes"),  # 65 characters, 130 bytes: KFP counts bytes
    ("p" * 128, "at most 127 characters"),  # the first version takes the pipeline's name
    ("a%01b", "control characters"),
    ("%2E", "path segments"),
    ("%2E%2E", "path segments"),
])
def test_names_kfp_refuses_are_400_naming_the_rule(adapter_url, sandbox, name, rule):
    zero_counts(sandbox)
    resp = requests.post(f"{adapter_url}/pipelineIds/{name}", files={"file": ("file", V2)}, timeout=10)
    body = envelope(resp, 400, "invalid_name")
    assert rule in body["message"] and rule in body["details"]["rule"]
    assert counts(sandbox) == {}  # refused before KFP was called
    assert requests.post(f"{adapter_url}/pipelineIds/{'p' * 127}", files={"file": ("file", V2)},
                         timeout=10).status_code == 200


def test_pipeline_ids_dot_dot_is_400_not_500(adapter_url, sandbox):
    zero_counts(sandbox)
    for path in ("/pipelineIds/%2E%2E", "/pipelines/%2E%2E/versions", "/experiments/%2E%2E"):
        envelope(requests.get(adapter_url + path, timeout=10), 400, "invalid_name")
    assert counts(sandbox) == {}


def test_urllib3_collapses_dot_segments_so_no_path_parameter_reaches_kfp_as_one(sandbox, adapter_url, settings):
    # The hazard: the real kfp.Client sends /pipelines/names/.. as /pipelines/ (a list call).
    zero_counts(sandbox)
    client = kfp_client(sandbox.url)
    listed = client._pipelines_api.pipeline_service_get_pipeline_by_name("..", _preload_content=False)
    assert listed.status == 200 and counts(sandbox) == {"GET /apis/v2beta1/pipelines": 1}
    assert urllib3.util.parse_url(f"{sandbox.url}/apis/v2beta1/runs/..").path == "/apis/v2beta1/"
    # The adapter refuses every such path parameter, in routes and in KfConnect itself.
    zero_counts(sandbox)
    for path in ("/pipelines/%2E%2E", "/runs/%2E%2E", "/runs/%2E", "/runs/%2E%2E/outputs"):
        body = envelope(requests.get(adapter_url + path, timeout=10), 400, "invalid_path_parameter")
        assert "'..'" in body["message"] or "'.'" in body["message"]
    envelope(requests.delete(f"{adapter_url}/pipelines/x/versions/%2E%2E", timeout=10), 400, "invalid_path_parameter")
    kf = KfConnect(settings)
    for call in (lambda: kf.get_run(".."), lambda: kf.get_pipeline("."), lambda: kf.workflow("..")):
        with pytest.raises(BadRequest):
            call()
    assert counts(sandbox) == {}


def test_a_pipeline_name_with_a_slash_is_400_before_kfp(client, sandbox):
    zero_counts(sandbox)
    resp = client.post("/trainingjobs/tj/execution", json={"pipeline_name": "a/b", "arguments": TM_ARGS})
    assert resp.status_code == 400 and resp.json["code"] == "invalid_name" and "'/'" in resp.json["message"]
    assert counts(sandbox) == {}
    # What KFP would do with it: route on the decoded path, so the name never reaches the by-name lookup.
    assert requests.get(f"{sandbox.url}/apis/v2beta1/pipelines/names/a%2Fb", timeout=5).status_code == 404


def test_ir_pipeline_name_kfp_refuses_is_400_naming_name_and_pattern(client, sandbox):
    zero_counts(sandbox)
    resp = upload(client, "qoe", ir_named("QoE_Train"))
    assert resp.status_code == 400 and resp.json["code"] == "invalid_pipeline_info_name"
    assert "'QoE_Train'" in resp.json["message"] and "^[a-z0-9][a-z0-9-]{0,127}$" in resp.json["message"]
    assert resp.json["details"] == {"pipeline_info_name": "QoE_Train", "pattern": "^[a-z0-9][a-z0-9-]{0,127}$"}
    assert counts(sandbox) == {}
    assert upload(client, "qoe", ir_named("qoe-train")).status_code == 200


def test_a_name_differing_only_in_case_is_a_409_not_an_upload_into_the_other(client):
    first = upload(client, "qoe", V2).json
    resp = upload(client, "QOE", V2)
    assert resp.status_code == 409 and resp.json["code"] == "name_conflict" and "'qoe'" in resp.json["message"]
    assert client.get("/pipelines/qoe/versions").json["versions_list"] == ["qoe"]  # no version "2" added to qoe
    assert client.get("/pipelineIds/QOE").status_code == 404
    assert client.get("/pipelineIds/qoe").json["id"] == first["pipeline_id"]


def test_experiment_names_with_plus_and_percent_are_found(client, sandbox):
    create = kfp_client(sandbox.url)._experiment_api.experiment_service_create_experiment
    for name in ("a+b", "100% c"):
        # (kfp.Client.create_experiment would look the name up first, with the unquoted filter: 400 on '%')
        exp_id = create({"display_name": name}).experiment_id
        assert client.get(f"/experiments/{name.replace('%', '%25').replace('+', '%2B')}").json["id"] == exp_id


# ---- a KFP endpoint that is not the KFP API ------------------------------------------------------------
@pytest.fixture
def html_server():
    """A real local HTTP server answering every GET with a web page, like a UI behind a wrong base path."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            page = b"<!doctype html><html><body>Kubeflow Central Dashboard</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_background(server)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_wrong_base_path_is_502_kfp_misconfigured_and_readiness_says_so(settings, sandbox):
    wrong = create_app(dataclasses.replace(settings, kfp_endpoint=f"{sandbox.url}/wrong")).test_client()
    body = envelope(wrong.get("/experiments"), 502, "kfp_misconfigured")
    assert "KFADAPTER_KFP_ENDPOINT" in body["message"]
    assert body["details"]["url"] == f"{sandbox.url}/wrong/apis/v2beta1/experiments"
    ready = envelope(wrong.get("/readiness"), 503, "kfp_misconfigured")
    assert "KFADAPTER_KFP_ENDPOINT" in ready["message"] and ready["details"]["url"].endswith("/apis/v2beta1/healthz")
    # A KFP 404 in KFP's own error JSON stays a 404.
    right = create_app(settings).test_client()
    assert right.get("/pipelineIds/nope").json["code"] == "pipeline_not_found"


def test_an_html_answer_is_kfp_misconfigured(settings, html_server):
    wrong = create_app(dataclasses.replace(settings, kfp_endpoint=html_server)).test_client()
    body = envelope(wrong.get("/pipelines"), 502, "kfp_misconfigured")
    assert html_server in body["details"]["url"] and "HTML" in body["message"]
    envelope(wrong.get("/readiness"), 503, "kfp_misconfigured")


def test_watcher_keeps_runs_tracked_while_the_endpoint_is_misconfigured(client, sandbox, settings, tmp_path):
    pid = upload(client, "p", package("add_v2.yaml")).json["pipeline_id"]
    vid = client.get("/pipelines/p/versions").json["versions"][0]["id"]
    [run_id] = requests.post(f"{sandbox.url}/_sandbox/bulk/runs", json={"count": 1, "pipeline_id": pid,
                             "pipeline_version_id": vid}, timeout=10).json()["run_ids"]
    store = Store(str(tmp_path / "watch.sqlite"))
    store.track(run_id, "tj-1")
    wrong = KfConnect(dataclasses.replace(settings, kfp_endpoint=f"{sandbox.url}/wrong"))
    result = poll_once(wrong, store, now=1000.0)
    assert "KFADAPTER_KFP_ENDPOINT" in result.error and result.finished == {} and result.vanished == []
    assert [t.run_id for t in store.tracked()] == [run_id] and store.pending() == []  # no "Manual reconcile"
    requests.post(f"{sandbox.url}/_sandbox/runs/{run_id}/state", json={"state": "SUCCEEDED"}, timeout=5)
    assert poll_once(KfConnect(settings), store, now=1010.0).finished == {run_id: "SUCCEEDED"}


# ---- behind the UI proxy's /pipeline prefix ------------------------------------------------------------
def test_the_adapter_works_through_the_pipeline_prefix(settings, sandbox):
    proxied = create_app(dataclasses.replace(settings, kfp_endpoint=f"{sandbox.url}/pipeline")).test_client()
    assert proxied.get("/readiness").status_code == 200
    assert upload(proxied, "qoe", V2).status_code == 200
    body = {"pipeline_name": "qoe", "experiment_name": "Default", "arguments": TM_ARGS}
    run = proxied.post("/trainingjobs/tj/execution", json=body)
    assert run.status_code == 200, run.json
    assert proxied.get(f"/runs/{run.json['run_id']}").json["run_status"] == "PENDING"


# ---- multi-user KFP ----------------------------------------------------------------------------------
def test_multi_user_everything_lives_in_the_namespace(multi_user_app, multi_user_sandbox):
    client = multi_user_app.test_client()
    observer = kfp_client(multi_user_sandbox.url, "team-a")
    assert client.get("/readiness").json["kfp"]["multi_user"] is True
    assert upload(client, "qoe", V2).status_code == 200
    [pipeline] = observer.list_pipelines(namespace="team-a").pipelines
    assert pipeline.namespace == "team-a" and observer.list_pipelines(namespace="").pipelines is None
    assert observer.list_experiments(namespace="team-a").experiments is None  # no Default yet
    runs = [client.post(f"/trainingjobs/tj{i}/execution", json={"pipeline_name": "qoe", "arguments": TM_ARGS})
            for i in range(2)]
    assert [r.status_code for r in runs] == [200, 200], runs[0].json
    [default] = observer.list_experiments(namespace="team-a").experiments  # created once, then reused
    assert default.display_name == "Default" and {r.json["experiment_id"] for r in runs} == {default.experiment_id}
    listed = observer.list_runs(namespace="team-a").runs
    assert sorted(r.run_id for r in listed) == sorted(r.json["run_id"] for r in runs)
    assert observer.list_runs(namespace="team-b").runs is None
    assert set(client.get("/runs").json) == {r.json["run_name"] for r in runs}
    assert client.get("/experiments").json == {"Default": default.experiment_id}


def test_multi_user_default_experiment_is_created_once_under_concurrency(multi_user_app, multi_user_sandbox):
    client = multi_user_app.test_client()
    assert upload(client, "qoe", V2).status_code == 200
    kf = multi_user_app.extensions["kfadapter.kf"]
    barrier, seen = threading.Barrier(6), []

    def go():
        barrier.wait()
        seen.append(kf.default_experiment()["experiment_id"])

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    observer = kfp_client(multi_user_sandbox.url, "team-a")
    [default] = observer.list_experiments(namespace="team-a").experiments
    assert seen == [default.experiment_id] * 6


def test_multi_user_experiments_route_creates_default(multi_user_app, multi_user_sandbox):
    client = multi_user_app.test_client()
    observer = kfp_client(multi_user_sandbox.url, "team-a")
    other = observer.create_experiment("other", namespace="team-b").experiment_id
    body = client.get("/experiments").json
    assert set(body) == {"Default"} and other not in body.values()
