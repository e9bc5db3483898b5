"""Every route, bad input: the JSON error envelope with the right status, never a trace or KFP internals."""
from __future__ import annotations

import dataclasses
import io
import socket

import pytest
import requests

from kfadapter.app import create_app

from tests.conftest import package, upload

V2 = package("qoe_train_v2.yaml")
MISSING_ID = "00000000-0000-0000-0000-000000000000"
EXEC = "/trainingjobs/tj1/execution"


def _multipart(data: bytes | None, filename: str = "file", field: str = "file"):
    form = {"description": ""}
    if data is not None:
        form[field] = (io.BytesIO(data), filename)
    return {"data": form, "content_type": "multipart/form-data"}


# (id, method, path, request kwargs, status, code)
CASES = [
    ("upload-no-file", "post", "/pipelineIds/p", _multipart(None), 400, "missing_field"),
    ("upload-wrong-field", "post", "/pipelineIds/p", _multipart(V2, field="pkg"), 400, "missing_field"),
    ("upload-not-yaml", "post", "/pipelineIds/p", _multipart(b"\x00\x01binary"), 400, "invalid_package"),
    ("upload-not-pipeline", "post", "/pipelineIds/p", _multipart(b"kind: Pod\n"), 400, "invalid_package"),
    ("upload-empty", "post", "/pipelineIds/p", _multipart(b""), 400, "invalid_package"),
    ("upload-not-multipart", "post", "/pipelineIds/p", {"json": {"file": "x"}}, 400, "missing_field"),
    ("upload-traversal-name", "post", "/pipelineIds/..%2F..%2Fetc", _multipart(V2), 404, "not_found"),
    ("upload-control-char-name", "post", "/pipelineIds/a%01b", _multipart(V2), 400, "invalid_name"),
    ("exec-no-body", "post", EXEC, {}, 400, "invalid_body"),
    ("exec-not-json", "post", EXEC, {"data": "{nope", "content_type": "application/json"}, 400, "invalid_body"),
    ("exec-array", "post", EXEC, {"json": [1, 2]}, 400, "invalid_body"),
    ("exec-missing-pipeline", "post", EXEC, {"json": {"arguments": {}}}, 400, "missing_field"),
    ("exec-pipeline-not-string", "post", EXEC, {"json": {"pipeline_name": 5}}, 400, "invalid_field"),
    ("exec-arguments-list", "post", EXEC, {"json": {"pipeline_name": "p", "arguments": ["a"]}}, 400,
     "invalid_field"),
    ("exec-unknown-pipeline", "post", EXEC, {"json": {"pipeline_name": "nope"}}, 404, "pipeline_not_found"),
    ("exec-unknown-version", "post", EXEC, {"json": {"pipeline_name": "p", "pipeline_version": "9"}}, 404,
     "version_not_found"),
    ("exec-unknown-experiment", "post", EXEC,
     {"json": {"pipeline_name": "p", "experiment_name": "x", "arguments": {"featurepath": "f"}}}, 404,
     "experiment_not_found"),
    ("exec-bad-argument", "post", EXEC, {"json": {"pipeline_name": "p", "arguments": {"epochs": "x"}}}, 400,
     "invalid_arguments"),
    ("pipeline-id-unknown", "get", "/pipelineIds/nope", {}, 404, "pipeline_not_found"),
    ("versions-unknown", "get", "/pipelines/nope/versions", {}, 404, "pipeline_not_found"),
    ("pipeline-unknown", "get", f"/pipelines/{MISSING_ID}", {}, 404, "pipeline_not_found"),
    ("delete-pipeline-unknown", "delete", f"/pipelines/{MISSING_ID}", {}, 404, "pipeline_not_found"),
    ("delete-version-unknown", "delete", f"/pipelines/{MISSING_ID}/versions/{MISSING_ID}", {}, 404,
     "version_not_found"),
    ("experiment-unknown", "get", "/experiments/nope", {}, 404, "experiment_not_found"),
    ("run-unknown", "get", f"/runs/{MISSING_ID}", {}, 404, "run_not_found"),
    ("terminate-unknown", "delete", f"/runs/{MISSING_ID}", {}, 404, "run_not_found"),
    ("no-such-route", "get", "/nothing/here", {}, 404, "not_found"),
    ("wrong-method", "put", "/pipelines", {}, 405, "method_not_allowed"),
]


def assert_envelope(resp, status: int, code: str) -> None:
    """Check the JSON error envelope and that nothing internal leaks."""
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.get_json()
    assert set(body) == {"status", "code", "message", "details"}
    assert body["status"] == status and body["code"] == code and body["message"]
    text = resp.get_data(as_text=True)
    for leak in ("Traceback", "goroutine", "error_details", "<html", "kfp_server_api", "urllib3"):
        assert leak not in text


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(client, case):
    _, method, path, kwargs, status, code = case
    upload(client, "p", V2)
    resp = getattr(client, method)(path, **kwargs)
    assert_envelope(resp, status, code)


class _HttpResponse:
    """Adapt a requests.Response to what assert_envelope reads."""

    def __init__(self, resp: requests.Response) -> None:
        self.status_code, self.headers, self._resp = resp.status_code, resp.headers, resp

    def get_json(self):
        return self._resp.json()

    def get_data(self, as_text: bool = False):
        return self._resp.text


def _chunked(data: bytes, size: int = 1 << 20):
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("size, chunked", [
    (32 * 1024 * 1024 + 10, False),  # the file alone is over KFP's limit; the body is within ours
    (34 * 1024 * 1024, False),  # the body is over the limit: refused before it is read
    (34 * 1024 * 1024, True),  # no Content-Length: refused while streaming
])
def test_oversize_upload_is_413_and_writes_nothing(adapter_url, size, chunked):
    requests.post(f"{adapter_url}/pipelineIds/p", files={"file": ("file", V2)}, timeout=30).raise_for_status()
    body, content_type = requests.models.RequestEncodingMixin._encode_files({"file": ("file", b"#" * size)}, {})
    data = _chunked(body) if chunked else body
    try:
        resp = requests.post(f"{adapter_url}/pipelineIds/p", data=data, headers={"Content-Type": content_type},
                             timeout=60)
    except requests.ConnectionError:
        pytest.fail("the adapter dropped the connection instead of answering 413")
    assert_envelope(_HttpResponse(resp), 413, "payload_too_large")
    listed = requests.get(f"{adapter_url}/pipelines/p/versions", timeout=10).json()["versions_list"]
    assert listed == ["p"]


def test_nothing_half_written_after_bad_uploads(client):
    upload(client, "p", V2)
    for data in (b"", b"nope: 1", b"kind: Workflow\n"):
        assert client.post("/pipelineIds/p", **_multipart(data)).status_code == 400
    assert client.get("/pipelines/p/versions").get_json()["versions_list"] == ["p"]


def test_traversal_filename_is_ignored(client, tmp_path):
    # The client's filename never names a file: the upload lands under the URL's name.
    resp = client.post("/pipelineIds/safe", **_multipart(V2, filename="../../../../tmp/evil.yaml"))
    assert resp.status_code == 200 and resp.get_json()["pipeline_name"] == "safe"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KFP_ROUTES = [("get", "/pipelines"), ("get", "/pipelineIds/p"), ("get", "/experiments"), ("get", "/runs"),
              ("get", f"/runs/{MISSING_ID}"), ("post", EXEC)]


@pytest.mark.parametrize("method, path", KFP_ROUTES)
def test_kfp_down_is_502(settings, method, path):
    down = create_app(dataclasses.replace(settings, kfp_endpoint=f"http://127.0.0.1:{_closed_port()}"))
    client = down.test_client()
    kwargs = {"json": {"pipeline_name": "p"}} if method == "post" else {}
    assert_envelope(getattr(client, method)(path, **kwargs), 502, "kfp_unavailable")
    assert client.get("/liveness").status_code == 200  # liveness never depends on KFP
    assert_envelope(client.get("/readiness"), 503, "not_ready")


def _fault(sandbox, **fault):
    requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5).raise_for_status()


def test_kfp_slow_is_504(settings, sandbox):
    slow = create_app(dataclasses.replace(settings, kfp_read_timeout=0.3)).test_client()
    _fault(sandbox, delay=1.0, path_prefix="/apis/")
    try:
        assert_envelope(slow.get("/pipelines"), 504, "kfp_timeout")
        assert_envelope(slow.get("/readiness"), 503, "not_ready")
    finally:
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5)
    assert slow.get("/pipelines").status_code == 200


def test_kfp_500_is_502_without_internals(client, sandbox):
    _fault(sandbox, status=500, times=1, path_prefix="/apis/")
    assert_envelope(client.get("/pipelines"), 502, "kfp_unavailable")
    assert client.get("/pipelines").status_code == 200


def test_kfp_upload_error_details_never_reach_the_caller(client, sandbox):
    upload(client, "p", V2)
    # A 400 from KFP's upload endpoint carries a Go stack trace in error_details.
    _fault(sandbox, status=400, times=1, path_prefix="/apis/v2beta1/pipelines/upload_version")
    assert_envelope(upload(client, "p", V2), 400, "kfp_rejected")
