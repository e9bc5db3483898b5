"""KfConnect: no I/O until first use, auth headers, paging, error translation."""
from __future__ import annotations

import dataclasses
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.core.errors import NotFound
from kfadapter.kfconnect import KfConnect

from tests.conftest import package, upload
from tests.support import serve_in_background


class _Recorder(BaseHTTPRequestHandler):
    """A KFP stand-in that only records request headers and answers healthz."""

    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        type(self).seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        body = json.dumps({"commit_sha": "x", "tag_name": "2.3.0", "multi_user": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    serve_in_background(server)
    yield f"http://127.0.0.1:{server.server_port}", _Recorder.seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("namespace", ["kubeflow", "ric"])
def test_no_kfp_request_until_first_use(settings, kfp_counts, namespace):
    kfp_counts.reset()
    app = create_app(dataclasses.replace(settings, namespace=namespace))
    kf = app.extensions["kfadapter.kf"]
    kf.client  # building the kfp.Client must not probe healthz (kfp-facts: constructor I/O)
    assert app.test_client().get("/liveness").data == b"Okay"
    assert kfp_counts.read()["total"] == 0
    kf.list_experiments()
    assert kfp_counts.read()["total"] == 1


def test_static_token_is_sent(settings, recorder):
    url, seen = recorder
    KfConnect(dataclasses.replace(settings, kfp_endpoint=url, kfp_token="static-tok")).health()
    assert seen == [{"path": "/apis/v2beta1/healthz", "authorization": "Bearer static-tok"}]


def test_projected_token_is_reread_on_every_request(settings, recorder, tmp_path):
    url, seen = recorder
    token = tmp_path / "token"
    token.write_text("first")
    kf = KfConnect(dataclasses.replace(settings, kfp_endpoint=url, kfp_token_file=str(token)))
    kf.health()
    token.write_text("rotated")
    kf.health()
    assert [s["authorization"] for s in seen] == ["Bearer first", "Bearer rotated"]


def test_endpoint_path_prefix_is_kept(settings, recorder):
    url, seen = recorder
    KfConnect(dataclasses.replace(settings, kfp_endpoint=url + "/pipeline")).health()
    assert seen[0]["path"] == "/pipeline/apis/v2beta1/healthz"  # the O-RAN UI-proxy path


def test_runs_by_ids_is_one_call_per_200(settings, sandbox, client, kfp_counts):
    pid = upload(client, "p", package("add_v2.yaml")).json["pipeline_id"]
    version = client.get("/pipelines/p/versions").json["versions"][0]["id"]
    made = requests.post(f"{sandbox.url}/_sandbox/bulk/runs",
                         json={"count": 450, "pipeline_id": pid, "pipeline_version_id": version}, timeout=60)
    made.raise_for_status()
    ids = made.json()["run_ids"]
    kf = KfConnect(settings)
    kfp_counts.reset()
    found = kf.runs_by_ids(ids + ["00000000-0000-0000-0000-000000000000"])
    assert sorted(r["run_id"] for r in found) == sorted(ids)
    assert kfp_counts.read()["total"] == 3


def test_not_found_names_the_object(settings):
    kf = KfConnect(settings)
    with pytest.raises(NotFound, match="pipeline 'ghost' not found"):
        kf.find_pipeline("ghost")
    with pytest.raises(NotFound, match="experiment 'ghost' not found"):
        kf.find_experiment("ghost")
