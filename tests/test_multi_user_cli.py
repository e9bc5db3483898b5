"""`kfadapter sandbox --multi-user` and `kfadapter serve --sandbox --multi-user`, as processes over HTTP."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.support import SandboxService, clean_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_sandbox_command_multi_user(tmp_path):
    port = free_port()
    log = open(tmp_path / "sandbox.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "kfadapter.cli", "sandbox", "--port", str(port), "--multi-user"],
                            cwd=ROOT, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/apis/v2beta1/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert proc.poll() is None, (tmp_path / "sandbox.log").read_text()
            return False

    try:
        wait_for(up, "kfadapter sandbox --multi-user")
        assert requests.get(f"{base}/apis/v2beta1/healthz", timeout=5).json()["multi_user"] is True
        assert requests.get(f"{base}/pipeline/apis/v2beta1/healthz", timeout=5).json()["multi_user"] is True
        user = {"kubeflow-userid": "user@example.com"}
        listed = requests.get(f"{base}/apis/v2beta1/experiments", params={"namespace": "a"}, headers=user, timeout=5)
        assert listed.json() == {}
        assert requests.get(f"{base}/apis/v2beta1/experiments", headers=user, timeout=5).status_code == 400
        assert requests.get(f"{base}/apis/v2beta1/experiments", params={"namespace": "a"}, timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_serve_sandbox_multi_user(tmp_path):
    service = SandboxService(tmp_path, ROOT, "--multi-user", KFADAPTER_NAMESPACE="team-a", KFADAPTER_WATCH="false")
    try:
        assert requests.get(f"{service.url}/readiness", timeout=5).json()["kfp"]["multi_user"] is True
        default = requests.get(f"{service.url}/experiments", timeout=10).json()["Default"]
        listed = requests.get(f"{service.kfp_url}/apis/v2beta1/experiments", params={"namespace": "team-a"},
                              headers={"kubeflow-userid": "user@example.com"}, timeout=5).json()["experiments"]
        assert [(e["experiment_id"], e["namespace"]) for e in listed] == [(default, "team-a")]
    finally:
        service.stop()


def test_multi_user_flag_needs_the_sandbox():
    done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "serve", "--multi-user"], cwd=ROOT,
                          env=clean_env(KFADAPTER_KFP_ENDPOINT="http://127.0.0.1:9"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--sandbox" in done.stderr
