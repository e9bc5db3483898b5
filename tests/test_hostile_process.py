"""Issue #13 against `kfadapter serve` (real gunicorn): forged log lines, and upload temp files after kill -9."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from tests.conftest import package
from tests.support import Service, clean_env, wait_for

FORGED = "/forged%0A2026-11-30 12:00:00,000 INFO kfadapter.access fake line%00%1B[31m"
ESCAPED = "/forged\\x0a2026-11-30 12:00:00,000 INFO kfadapter.access fake line\\x00\\x1b[31m"


@pytest.fixture
def serve(sandbox, tmp_path):
    started: list[Service] = []

    def start(**env: str) -> Service:
        base = {"KFADAPTER_KFP_ENDPOINT": sandbox.url, "KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite"),
                "KFADAPTER_WATCH": "false", "KFADAPTER_GUNICORN_WORKERS": "1"}
        svc = Service(clean_env(**(base | env)), tmp_path / f"service-{len(started)}.log")
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def _log_lines(svc: Service) -> list[str]:
    svc.stop()
    return svc.log_path.read_bytes().decode("utf-8", "replace").splitlines()


def test_text_logs_escape_a_forged_line(serve):
    # gunicorn's access line with the decoded path (%(U)s), not only its default percent-encoded request line
    svc = serve(KFADAPTER_LOG_FORMAT="text", KFADAPTER_GUNICORN_ACCESSLOG="-",
                GUNICORN_CMD_ARGS="--access-logformat 'gunicorn-access %(U)s %(s)s'")
    resp = requests.get(svc.url + FORGED, timeout=10)
    assert resp.status_code == 404 and resp.headers["Content-Type"] == "application/json"
    lines = _log_lines(svc)
    app = [line for line in lines if "kfadapter.access" in line and "GET /forged" in line]
    assert len(app) == 1 and app[0].endswith(ESCAPED + " 404"), app  # one line, its control characters escaped
    assert not any(line.startswith("2026-11-30 12:00:00,000") for line in lines)  # no forged line
    access = [line for line in lines if line.startswith("gunicorn-access /forged")]
    assert access == [f"gunicorn-access {ESCAPED} 404"], access
    text = "\n".join(lines)
    assert "\x00" not in text and "\x1b" not in text


def test_json_logs_escape_a_forged_line(serve):
    svc = serve(KFADAPTER_LOG_FORMAT="json")
    assert requests.get(svc.url + FORGED, timeout=10).status_code == 404
    records = [json.loads(line) for line in _log_lines(svc) if line.startswith("{")]
    hits = [r for r in records if "/forged" in r.get("message", "")]
    assert len(hits) == 1, hits
    assert hits[0]["path"] == ESCAPED and hits[0]["message"] == f"GET {ESCAPED} 404"


def test_upload_temp_files_are_gone_after_kill_9(serve, sandbox, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    svc = serve(TMPDIR=str(tmp), KFADAPTER_KFP_UPLOAD_TIMEOUT="60")
    # KFP takes its time over the upload, so the adapter is killed while the package file is on disk.
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"delay": 20, "times": 1, "method": "POST",
                                                          "path_prefix": "/apis/v2beta1/pipelines/upload"},
                  timeout=5).raise_for_status()
    threading.Thread(target=_upload_ignoring_the_kill, args=(svc.url,), daemon=True).start()
    wait_for(lambda: list(tmp.glob("kfadapter-upload-*/*/pipeline.yaml")), "the upload's temporary file")
    svc.kill9()
    left = {p.name for p in tmp.iterdir()}
    assert any(n.startswith("kfadapter-upload-") for n in left)  # what kill -9 leaves at first
    assert any(n.startswith("kfadapter-metrics-") for n in left)
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()

    again = serve(TMPDIR=str(tmp))
    now = {p.name for p in tmp.iterdir()}
    assert not now & left  # every directory of the killed service is gone
    assert [n for n in now if not n.startswith("kfadapter-metrics-")] == []  # only the new server's metrics dir
    assert requests.post(f"{again.url}/pipelineIds/after", files={"file": ("file", package("add_v2.yaml"))},
                         timeout=30).status_code == 200
    # A finished upload leaves nothing but the live worker's (locked) directory behind either.
    assert [p.name for p in tmp.glob("kfadapter-upload-*/*")] == [".owner"]


def _upload_ignoring_the_kill(url: str) -> None:
    try:
        requests.post(f"{url}/pipelineIds/killed", files={"file": ("file", package("add_v2.yaml"))}, timeout=60)
    except requests.RequestException:
        pass  # the server was killed under it
