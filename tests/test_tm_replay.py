"""Replay the training manager's six calls exactly as its code makes them, over real HTTP.

TM compares `content-type` with the exact string `application/json` on calls 1, 2, 3 and 6, sends the
multipart file with the filename `file` and an empty description, and sends every argument as a string.
"""
from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import across_versions, package

pytestmark = across_versions  # O-RAN's KFP 2.3 and the newest, 2.17, through the UI proxy; an unlabelled 2.5

JSON = "application/json"


def _raw_content_type(url: str, path: str) -> str:
    """Read the header as sent on the wire (no client-side normalisation)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.getheader("Content-Type")


def test_training_manager_replay(adapter_url, kfp_version, kfp_door):
    """On a single-user KFP: 2.3 and 2.17 through the UI proxy, an unlabelled 2.5 through the API server."""
    replay_training_manager(adapter_url)


def test_training_manager_replay_multi_user(multi_user_adapter_url):
    """On a multi-user KFP (namespace team-a, no Default experiment)."""
    replay_training_manager(multi_user_adapter_url)


def replay_training_manager(adapter_url: str) -> None:
    """Make TM's six calls against `adapter_url` and check what TM checks, plus the exact header bytes."""
    # 4. upload (TM: requests.post(url, files={'file': ('file', fh)}, data={'description': desc}))
    for _ in range(2):
        resp = requests.post(f"{adapter_url}/pipelineIds/qoe_Pipeline",
                             files={"file": ("file", package("qoe_train_v2.yaml"))}, data={"description": ""},
                             timeout=30)
        assert resp.status_code == 200, resp.text

    # 2. GET /pipelines
    resp = requests.get(f"{adapter_url}/pipelines", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"] == JSON
    assert _raw_content_type(adapter_url, "/pipelines") == JSON
    [p] = resp.json()["pipelines"]
    assert p["display_name"] == "qoe_Pipeline" and p["description"] == "" and p["pipeline_id"]
    assert p["created_at"].endswith("Z")  # rendered by new Date(created_at)

    # 3. GET /pipelines/<name>/versions
    resp = requests.get(f"{adapter_url}/pipelines/qoe_Pipeline/versions", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"] == JSON
    assert resp.json()["versions_list"] == ["qoe_Pipeline", "2"]

    # 6. GET /experiments: TM reads the keys
    resp = requests.get(f"{adapter_url}/experiments", timeout=10)
    assert resp.headers["content-type"] == JSON and "Default" in resp.json()

    # 1. execution with TM's body: every value a string
    body = {"pipeline_name": "qoe_Pipeline", "pipeline_version": "qoe_Pipeline", "experiment_name": "Default",
            "arguments": {"epochs": "1", "trainingjob_id": "tj-9", "featuregroup_name": "fg1",
                          "modelName": "qoe", "modelVersion": "1", "modellocation": ""}}
    resp = requests.post(f"{adapter_url}/trainingjobs/tj-9/execution", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == JSON
    out = resp.json()
    assert out["run_status"] == "scheduled" and out["run_id"]
    for key in ("trainingjob_id", "run_id", "run_name", "experiment_name", "experiment_id", "pipeline_name",
                "pipeline_id", "run_status"):
        assert key in out

    # 5. terminate when the job is deleted mid-training
    resp = requests.delete(f"{adapter_url}/runs/{out['run_id']}", timeout=10)
    assert resp.status_code == 200


def test_upload_failure_gives_tm_a_message(adapter_url):
    resp = requests.post(f"{adapter_url}/pipelineIds/bad", files={"file": ("file", b"not: a pipeline")},
                         data={"description": ""}, timeout=10)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == JSON and "message" in resp.json()
