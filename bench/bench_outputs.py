"""Benchmark: downloading a large v1 artifact streams, so the adapter's peak memory grows far less than 3x its size.

Runs the sandbox KFP and the adapter (gunicorn, one gthread worker, as `kfadapter serve` runs it) as two
subprocesses on 127.0.0.1, stores a 50 MiB artifact the way Argo does (a gzip'd tar holding `data`, served by
KFP's `:read` as {"data": base64}, ~67 MB of JSON), downloads it through the adapter and reads the worker's
peak RSS (VmHWM in /proc/<pid>/status) before and after. Prints one JSON object.

    .venv/bin/python bench/bench_outputs.py [--mib 50]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import status_kib, worker_pids  # noqa: E402

V1_PACKAGE = ROOT / "tests" / "fixtures" / "pipelines" / "qoe_train_v1_argo.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _worker_pid(master: int) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = worker_pids(master)
        if children:
            return children[0]
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def _argo_tgz(data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def main() -> None:
    """Run the benchmark and print its JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=50)
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    kfp_port, port = _free_port(), _free_port()
    kfp_url, url = f"http://127.0.0.1:{kfp_port}", f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="kfadapter-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KFADAPTER_", "KF_", "KUBEFLOW_"))}
        env.update(KFADAPTER_KFP_ENDPOINT=kfp_url, KFADAPTER_HOST="127.0.0.1", KFADAPTER_PORT=str(port),
                   KFADAPTER_STORE_PATH=f"{tmp}/store.sqlite", KFADAPTER_WATCH="false",
                   KFADAPTER_GUNICORN_WORKERS="1", KFADAPTER_LOG_LEVEL="WARNING", HOME=tmp)
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "kfadapter.cli", "sandbox", "--port", str(kfp_port)],
                                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait(f"{kfp_url}/apis/v2beta1/healthz")
            procs.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:kfadapter.server.gunicorn_conf",
                                           "kfadapter.wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            _wait(f"{url}/liveness")
            worker = _worker_pid(procs[1].pid)

            with V1_PACKAGE.open("rb") as fh:
                requests.post(f"{url}/pipelineIds/bench", files={"file": ("file", fh)}, timeout=30).raise_for_status()
            run = requests.post(f"{url}/trainingjobs/tj/execution", json={"pipeline_name": "bench", "arguments": {}},
                                timeout=30)
            run.raise_for_status()
            run_id = run.json()["run_id"]
            node = f"bench-{run_id[:5]}-1"
            status = {"phase": "Succeeded", "nodes": {node: {
                "id": node, "displayName": "make-blob", "type": "Pod", "templateName": "make-blob",
                "phase": "Succeeded", "outputs": {"artifacts": [{"name": "make-blob-blob", "s3": {"key": "k"}}]}}}}
            requests.put(f"{kfp_url}/_sandbox/runs/{run_id}/workflow", json=status, timeout=30).raise_for_status()
            control = f"{kfp_url}/_sandbox/runs/{run_id}/nodes/{node}/artifacts"
            requests.put(f"{control}/small", data=_argo_tgz(b"warm-up" * 1000), timeout=30).raise_for_status()
            payload = os.urandom(size)  # incompressible: the :read answer is ~4/3 of it
            digest = hashlib.sha256(payload).hexdigest()
            requests.put(f"{control}/make-blob-blob", data=_argo_tgz(payload), timeout=120).raise_for_status()
            del payload

            # Warm up the same code path (imports, connection pools) with a small artifact.
            requests.get(f"{url}/runs/{run_id}/nodes/{node}/artifacts/small", timeout=30).raise_for_status()
            rss_before, hwm_before = status_kib(worker, "VmRSS") * 1024, status_kib(worker, "VmHWM") * 1024
            started = time.monotonic()
            got, sha = 0, hashlib.sha256()
            with requests.get(f"{url}/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob", stream=True,
                              timeout=120) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_content(256 * 1024):
                    got += len(chunk)
                    sha.update(chunk)
            seconds = time.monotonic() - started
            hwm_after = status_kib(worker, "VmHWM") * 1024
            outputs = requests.get(f"{url}/runs/{run_id}/outputs", timeout=120)
            hwm_outputs = status_kib(worker, "VmHWM") * 1024
            growth = max(hwm_after - hwm_before, 0)
            result = {
                "artifact_bytes": size, "read_answer_bytes_approx": (size + 2) // 3 * 4 + 12,
                "downloaded_bytes": got, "sha256_ok": sha.hexdigest() == digest, "seconds": round(seconds, 2),
                "worker_rss_before": rss_before, "worker_hwm_before": hwm_before, "worker_hwm_after": hwm_after,
                "peak_growth_bytes": growth, "peak_growth_x_artifact": round(growth / size, 3),
                "under_3x": growth < 3 * size,
                "outputs_status": outputs.status_code,
                "outputs_preview_truncated": (outputs.json()["tasks"][0]["outputs"][0].get("truncated")
                                              if outputs.ok else None),
                "peak_growth_after_outputs_bytes": max(hwm_outputs - hwm_before, 0),
            }
            print(json.dumps(result, indent=2))
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
