"""The service as deployed: `kfadapter serve` under real gunicorn, configured only by environment."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import requests

from tests.support import Service, clean_env, free_port
from tests.test_kfconnect import recorder  # noqa: F401 - fixture
from tests.test_tm_replay import replay_training_manager


@pytest.fixture
def service(sandbox, tmp_path):
    started: list[Service] = []

    def start(**env: str) -> Service:
        base = {"KFADAPTER_KFP_ENDPOINT": sandbox.url, "KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite")}
        svc = Service(clean_env(**(base | env)), tmp_path / "service.log")
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def test_training_manager_replay_under_gunicorn(service):
    replay_training_manager(service().url)


def test_sigterm_lets_a_slow_request_finish(service, sandbox):
    svc = service(KFADAPTER_KFP_TIMEOUT="10")
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"delay": 1.5, "times": 1, "path_prefix": "/apis/"},
                  timeout=5).raise_for_status()
    answer: dict = {}

    def slow() -> None:
        answer["resp"] = requests.get(f"{svc.url}/experiments", timeout=30)

    thread = threading.Thread(target=slow)
    thread.start()
    # SIGTERM only once the request is inside the adapter, waiting on KFP
    deadline = 200
    while requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()["total"] == 0 and deadline:
        deadline -= 1
        threading.Event().wait(0.01)
    assert svc.stop() == 0
    thread.join(30)
    resp = answer["resp"]
    assert resp.status_code == 200 and "Default" in resp.json()


def test_oran_configmap_points_at_the_ui_proxy_path(tmp_path, recorder):  # noqa: F811
    url, seen = recorder
    host, port = url.removeprefix("http://").split(":")
    env = {"KUBEFLOW_HOST": host, "KUBEFLOW_PORT": port, "KF_NAMESPACE": "ric", "KF_ADAPTER_PORT": "5001",
           "TRAININGMGR_HOST": "127.0.0.1", "TRAININGMGR_PORT": str(free_port()),
           "KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite"), "KFADAPTER_WATCH": "false"}
    svc = Service(clean_env(**env), tmp_path / "oran.log")
    try:
        assert requests.get(f"{svc.url}/readiness", timeout=10).status_code == 200
        assert seen[-1]["path"] == "/pipeline/apis/v2beta1/healthz"
    finally:
        svc.stop()


@pytest.mark.parametrize("env, name", [
    ({"KF_ADAPTER_PORT": "five"}, "KF_ADAPTER_PORT"),
    ({"KFADAPTER_KFP_ENDPOINT": "http://x", "KFADAPTER_LOG_FORMAT": "xml"}, "KFADAPTER_LOG_FORMAT"),
    ({}, "KFADAPTER_KFP_ENDPOINT"),
])
def test_bad_configuration_stops_startup_with_one_line(env, name):
    done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "serve"], env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in done.stderr


def test_secrets_never_logged(service, tmp_path):
    svc = service(KFADAPTER_KFP_TOKEN="tok-very-secret", KFADAPTER_LOG_LEVEL="DEBUG")
    requests.get(f"{svc.url}/experiments", timeout=10)
    svc.stop()
    assert "tok-very-secret" not in (tmp_path / "service.log").read_text()


def test_json_logs_carry_the_request_id(service, tmp_path):
    import json

    svc = service()
    resp = requests.get(f"{svc.url}/experiments", headers={"X-Request-ID": "req-42"}, timeout=10)
    assert resp.headers["X-Request-ID"] == "req-42"
    svc.stop()
    lines = [json.loads(line) for line in (tmp_path / "service.log").read_text().splitlines()
             if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "req-42"]
    assert mine and mine[0]["route"] == "/experiments" and mine[0]["status"] == 200


def test_metrics_cover_every_worker(service, sandbox):
    svc = service(KFADAPTER_GUNICORN_WORKERS="2", KFADAPTER_GUNICORN_THREADS="1")
    for _ in range(10):
        assert requests.get(f"{svc.url}/experiments", timeout=10).status_code == 200
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"status": 503, "times": 1}, timeout=5)
    assert requests.get(f"{svc.url}/experiments", timeout=10).status_code == 502
    text = requests.get(f"{svc.url}/metrics", timeout=10).text
    assert 'kfadapter_http_requests_total{method="GET",route="/experiments",status="200"} 10.0' in text
    assert 'kfadapter_kfp_calls_total{operation="experiment_service_list_experiments"} 11.0' in text
    assert 'kfadapter_kfp_errors_total{error="kfp_unavailable",operation="experiment_service_list_experiments"} 1.0' \
        in text
    assert "kfadapter_watch_pending_notifications 0.0" in text


def test_gunicorn_check_config(tmp_path, sandbox):
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_PATH=str(tmp_path / "s.sqlite"))
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "-c", "python:kfadapter.server.gunicorn_conf",
                           "kfadapter.wsgi:app"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
