"""Issue #13's hostile inputs through the adapter's routes: each is refused with a 4xx (or, for KFP and ML
Metadata answers, a 502) JSON answer naming its limit, before the parser could allocate without bound.

Memory and time per attack are measured against real gunicorn workers in bench/bench_hostile.py.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import requests

from kfadapter.app import create_app

from tests import hostile
from tests.conftest import package, upload
from tests.test_outputs import attach_v2, control, start_run
from tests.support import serve_in_background

EXEC = "/trainingjobs/tj1/execution"


def _deep_yaml(depth: int) -> bytes:
    rows = ["kind: Workflow", "spec:", "  templates: []"]
    rows += ["  " * (i + 1) + f"k{i}:" for i in range(depth)]
    return ("\n".join(rows) + " 1\n").encode()


PACKAGES = [
    ("billion-laughs", hostile.billion_laughs, 400, "invalid_package", "KFADAPTER_YAML_MAX_NODES"),
    ("gnu-longname-1gib", lambda: hostile.tar_gz_extension("longname"), 400, "invalid_package",
     "extension headers (PAX or GNU long name) of 1073741824 bytes"),
    ("pax-header-1.2gib", lambda: hostile.tar_gz_extension("pax", int(1.2 * hostile.GIB)), 400,
     "invalid_package", "extension headers (PAX or GNU long name) of 1288490188 bytes"),
    ("300k-directories", hostile.tar_gz_directories, 400, "invalid_package", "KFADAPTER_PACKAGE_MAX_MEMBERS"),
    ("gzip-bomb-1gib", hostile.tar_gz_bomb, 413, "payload_too_large", "unpacks to more than"),
    ("zip-70k-directories", hostile.zip_directories, 400, "invalid_package", "KFADAPTER_PACKAGE_MAX_MEMBERS"),
    ("1001-aliases", lambda: b"kind: Workflow\nspec: {templates: []}\nx: &x 1\ny: [" + b"*x," * 1000 + b"*x]\n",
     400, "invalid_package", "KFADAPTER_YAML_MAX_ALIASES"),
    ("recursive-alias", lambda: b"kind: Workflow\nspec: &s {templates: [], me: *s}\n", 400, "invalid_package",
     "refers to a node that contains it"),
    ("yaml-150-deep", lambda: _deep_yaml(150), 400, "invalid_package", "KFADAPTER_MAX_JSON_DEPTH"),
    ("json-150-deep", lambda: b'{"kind": "Workflow", "spec": {"templates": []}, "x": ' + b"[" * 150 + b"]" * 150
     + b"}", 400, "invalid_package", "KFADAPTER_MAX_JSON_DEPTH"),
]


@pytest.mark.parametrize("make, status, code, fragment", [p[1:] for p in PACKAGES], ids=[p[0] for p in PACKAGES])
def test_hostile_package_is_refused_before_kfp_sees_it(adapter_url, kfp_counts, make, status, code, fragment):
    kfp_counts.reset()
    resp = _post_package(adapter_url, make())
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["code"] == code and fragment in resp.json()["message"], resp.json()
    assert kfp_counts.read()["total"] == 0  # refused from headers and counts, before any KFP call
    assert _post_package(adapter_url, package("qoe_train_v1_argo.yaml")).status_code == 200  # still serving


def _post_package(url: str, data: bytes) -> requests.Response:
    return requests.post(f"{url}/pipelineIds/hostile", files={"file": ("file", data)}, data={"description": ""},
                         timeout=60)


def test_packages_with_a_few_aliases_still_upload(client):
    shared = (b"kind: Workflow\nmetadata: {generateName: a-}\nspec:\n  templates:\n"
              b"  - {name: one, container: &c {image: python:3.11, command: [echo]}}\n"
              b"  - {name: two, container: *c}\n")
    resp = upload(client, "aliased", shared)
    assert resp.status_code == 200, resp.json
    assert resp.json["pipeline_kind"] == "v1"


def test_limits_come_from_settings(settings):
    tight = create_app(dataclasses.replace(settings, yaml_max_nodes=50, package_max_members=1)).test_client()
    resp = upload(tight, "p", package("qoe_train_v1_argo.yaml"))
    assert resp.status_code == 400 and "KFADAPTER_YAML_MAX_NODES (50)" in resp.json["message"]
    resp = upload(tight, "p", hostile.tar_gz_directories(1))
    assert resp.status_code == 400 and resp.json["details"] == {"limit": "KFADAPTER_PACKAGE_MAX_MEMBERS", "max": 1}


def test_32_mib_json_body_is_refused_unread(client):
    resp = client.post(EXEC, data=hostile.json_flood(), content_type="application/json")
    assert resp.status_code == 413 and resp.headers["Content-Type"] == "application/json"
    assert resp.json["code"] == "payload_too_large"
    assert resp.json["details"] == {"limit": "KFADAPTER_MAX_JSON_BYTES", "max": 1024 * 1024}


def test_100000_nested_brackets_are_a_400_not_a_recursion_error(client):
    resp = client.post(EXEC, data=hostile.nested_json(), content_type="application/json")
    assert resp.status_code == 400 and resp.headers["Content-Type"] == "application/json"
    assert resp.json["code"] == "invalid_body" and "KFADAPTER_MAX_JSON_DEPTH (100)" in resp.json["message"]
    assert resp.json["details"] == {"limit": "KFADAPTER_MAX_JSON_DEPTH", "max": 100}


def test_brackets_inside_strings_do_not_count(client):
    body = {"pipeline_name": "nope", "arguments": {"x": "[" * 5000, "y": '"{' * 100}}
    resp = client.post(EXEC, json=body)
    assert resp.status_code == 404 and resp.json["code"] == "pipeline_not_found"  # parsed, then looked up


def test_chunked_json_body_is_capped_while_read(adapter_url):
    def chunks():
        for _ in range(64):
            yield b"[" + b"0," * 16 * 1024 + b"0]"

    resp = requests.post(adapter_url + EXEC, data=chunks(), headers={"Content-Type": "application/json"},
                         timeout=30)
    assert resp.status_code == 413 and resp.json()["details"]["limit"] == "KFADAPTER_MAX_JSON_BYTES"


def test_kfp_answer_past_the_cap_is_a_502_naming_it(settings, sandbox):
    control(sandbox, "POST", "/bulk/pipelines", json={"count": 60, "prefix": "big"})
    small = create_app(dataclasses.replace(settings, kfp_max_response_bytes=2048)).test_client()
    resp = small.get("/pipelines")
    assert resp.status_code == 502 and resp.headers["Content-Type"] == "application/json"
    assert resp.json["code"] == "kfp_answer_too_large"
    assert resp.json["details"] == {"limit": "KFADAPTER_KFP_MAX_RESPONSE_BYTES", "max": 2048}
    assert small.get("/pipelineIds/big-0000").status_code == 200  # small answers still pass


def test_kfp_answer_nested_too_deep_is_a_502(client, sandbox):
    deep = {"pipelineInfo": {"name": "deep"}, "root": {"dag": {}}, "x": json.loads("[" * 200 + "]" * 200)}
    created = control(sandbox, "POST", "/bulk/pipelines", json={"count": 1, "prefix": "deep",
                                                               "pipeline_spec": deep}).json()
    resp = client.get(f"/pipelines/{created['pipelines'][0]['pipeline_id']}")
    assert resp.status_code == 502 and resp.json["code"] == "kfp_answer_too_large"
    assert "more than 116 (KFADAPTER_MAX_JSON_DEPTH 100 + 16" in resp.json["message"]


def test_workflow_manifest_nested_too_deep_is_a_502(client, sandbox):
    run_id = start_run(client, "qoe_train_v1_argo.yaml")
    status = {"phase": "Running", "nodes": {}, "x": json.loads("[" * 200 + "]" * 200)}
    control(sandbox, "PUT", f"/runs/{run_id}/workflow", json=status)
    resp = client.get(f"/runs/{run_id}/outputs")
    assert resp.status_code == 502 and "workflow manifest is refused" in resp.json["message"]
    assert resp.json["details"]["limit"] == "KFADAPTER_MAX_JSON_DEPTH"


def test_mlmd_answer_past_the_cap_is_a_502_naming_it(settings, sandbox):
    tight = dataclasses.replace(settings, mlmd_endpoint=sandbox.mlmd_endpoint, mlmd_timeout=5.0,
                                mlmd_max_message_bytes=256)
    v2 = create_app(tight).test_client()
    run_id = start_run(v2, "qoe_train_v2.yaml")
    attach_v2(sandbox, run_id, with_content=False)
    resp = v2.get(f"/runs/{run_id}/outputs")
    assert resp.status_code == 502 and resp.json["code"] == "mlmd_answer_too_large"
    assert resp.json["details"]["limit"] == "KFADAPTER_MLMD_MAX_MESSAGE_BYTES"


class _HugeAnswers:
    """A hostile "KFP" on 127.0.0.1: every answer claims (or streams) 256 MiB; counts what it got to send."""

    SIZE = 256 * 1024 * 1024

    def __init__(self, status: int, declare_length: bool) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.sent = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if declare_length:
                    self.send_header("Content-Length", str(owner.SIZE))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b'{"a": "' + b"x" * (64 * 1024) + b'"}'
                try:
                    while owner.sent < owner.SIZE:
                        data = chunk if declare_length else b"%x\r\n%s\r\n" % (len(chunk), chunk)
                        self.wfile.write(data)
                        owner.sent += len(chunk)
                except OSError:
                    pass  # the adapter hung up: what we measure

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        serve_in_background(self.server)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status, declare_length", [(200, True), (200, False), (500, True)],
                         ids=["content-length", "chunked", "error-body"])
def test_huge_kfp_answers_are_not_read_whole(settings, status, declare_length):
    kfp = _HugeAnswers(status, declare_length)
    try:
        app = create_app(dataclasses.replace(settings, kfp_endpoint=kfp.url, kfp_max_response_bytes=1024 * 1024))
        resp = app.test_client().get("/pipelines")
        assert resp.status_code == 502 and resp.headers["Content-Type"] == "application/json"
        if status == 200:
            assert resp.json["code"] == "kfp_answer_too_large"
            assert resp.json["details"] == {"limit": "KFADAPTER_KFP_MAX_RESPONSE_BYTES", "max": 1024 * 1024}
        else:
            assert resp.json["code"] == "kfp_unavailable"  # KFP's 5xx, its message taken from the first 64 KiB
    finally:
        kfp.stop()
    assert kfp.sent < 32 * 1024 * 1024  # the adapter hung up long before the 256 MiB


def test_a_package_at_the_depth_limit_can_be_read_back(client):
    wf = {"kind": "Workflow", "metadata": {"generateName": "deep-"}, "spec": {"templates": []}}
    wf["x"] = json.loads("[" * 97 + "]" * 97)  # the document's own level + x's list = 98 levels
    assert upload(client, "deep", json.dumps(wf).encode()).status_code == 200
    pipeline = client.get("/pipelineIds/deep").json["id"]
    assert client.get(f"/pipelines/{pipeline}").status_code == 200  # KFP's answer nests it deeper: still read
