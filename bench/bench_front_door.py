"""Issue #21's front door against `kfadapter serve` (gunicorn, 2 workers): the figures of SECURITY.md.

Four attacks, each on a fresh server and sandbox (`kfadapter sandbox` in its own process):

- idle: 2,100 idle connections (more than 2 workers x 1,000 worker_connections), then `GET /liveness` once a
  second for 13 s: how many answered within 1 s (Kubernetes' default probe timeout).
- uploads: 16 uploads of a 31 MiB package at once (a 300 s upload queue, so all are processed): peak RSS growth of each worker (VmHWM after clear_refs),
  RSS still held 5 s later, the answers' statuses and the seconds until the last one.
- lists: 3,000 pipelines, 64 clients each asking `GET /pipelines` 3 times, and a prober asking
  `GET /pipelineIds/<name>` (one KFP call) every 0.2 s meanwhile: KFP list calls at the sandbox, the prober's
  answers within 1 s and its slowest.
- odd bytes: a lone surrogate in a JSON name and malformed chunk sizes on raw sockets: the statuses.

Prints JSON and writes bench/front_door.json under `--label` (default "after"), keeping other labels, so one run
on the code before the change (`--label before`, run from a checkout of it: the server runs the kfadapter
of the current directory) and one after sit side by side. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Sandbox  # noqa: E402
from tests import hostile  # noqa: E402
from tests.support import Service, clean_env, status_kib, worker_pids  # noqa: E402

MIB = 1024 * 1024
PIPELINE = (ROOT / "tests" / "fixtures" / "pipelines" / "add_v2.yaml").read_bytes()


def serve(sandbox: Sandbox, workdir: Path, name: str, **env: str) -> Service:
    base = {"KFADAPTER_KFP_ENDPOINT": sandbox.url, "KFADAPTER_STORE_PATH": str(workdir / f"{name}.sqlite"),
            "KFADAPTER_WATCH": "false", "KFADAPTER_LOG_LEVEL": "WARNING", "KFADAPTER_GUNICORN_WORKERS": "2"}
    return Service(clean_env(**(base | env)), workdir / f"{name}.log")


def idle(sandbox: Sandbox, workdir: Path) -> dict:
    svc = serve(sandbox, workdir, "idle", KFADAPTER_GUNICORN_WORKER_CONNECTIONS="1000")
    crowd, answered, latencies = [], 0, []
    try:
        for _ in range(2100):
            try:
                crowd.append(socket.create_connection(("127.0.0.1", svc.port), timeout=5))
            except OSError:
                pass
        time.sleep(1)
        for _ in range(13):
            began = time.perf_counter()
            try:
                ok = requests.get(f"{svc.url}/liveness", timeout=(1, 1)).status_code == 200
            except requests.RequestException:
                ok = False
            spent = time.perf_counter() - began
            answered += ok
            latencies.append(round(spent * 1000, 1) if ok else None)
            time.sleep(max(0.0, 1 - spent))
        closed = 0
        for sock in crowd:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
    finally:
        for sock in crowd:
            sock.close()
        svc.stop()
    return {"idle_connections": len(crowd), "liveness_answered_within_1s": answered, "liveness_tries": 13,
            "liveness_ms": latencies, "idle_closed_by_server": closed}


def uploads(sandbox: Sandbox, workdir: Path) -> dict:
    body = hostile.large_package()
    svc = serve(sandbox, workdir, "uploads", KFADAPTER_KFP_UPLOAD_TIMEOUT="300", KFADAPTER_UPLOAD_QUEUE_TIMEOUT="300")
    try:
        for _ in range(2):  # warm both workers
            requests.post(f"{svc.url}/pipelineIds/warm", files={"file": ("f.yaml", PIPELINE)}, timeout=60)
        workers = worker_pids(svc.proc.pid)
        before = {}
        for pid in workers:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            before[pid] = status_kib(pid, "VmRSS")
        began = time.perf_counter()

        def send(i: int) -> requests.Response:
            return requests.post(f"{svc.url}/pipelineIds/large-{i}", files={"file": ("f.yaml", body)}, timeout=600)

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, range(16)))
        seconds = time.perf_counter() - began
        peak = {pid: (status_kib(pid, "VmHWM") - before[pid]) / 1024 for pid in workers}
        time.sleep(5)
        held = {pid: (status_kib(pid, "VmRSS") - before[pid]) / 1024 for pid in workers}
    finally:
        svc.stop()
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a.status_code)] = statuses.get(str(a.status_code), 0) + 1
    return {"package_mib": round(len(body) / MIB, 1), "uploads_at_once": 16, "statuses": statuses,
            "seconds_to_last_answer": round(seconds, 1),
            "peak_growth_mib_per_worker": sorted(round(v, 1) for v in peak.values()),
            "held_growth_mib_per_worker_5s_later": sorted(round(v, 1) for v in held.values())}


def lists(sandbox: Sandbox, workdir: Path) -> dict:
    sandbox.control("POST", "reset")
    sandbox.control("POST", "bulk/pipelines", json={"count": 3000, "prefix": "many"})
    svc = serve(sandbox, workdir, "lists", KFADAPTER_GUNICORN_THREADS="32")
    probe: list[float | None] = []
    try:
        requests.post(f"{svc.url}/pipelineIds/probe-me", files={"file": ("f.yaml", PIPELINE)},
                      timeout=60).raise_for_status()
        sandbox.control("DELETE", "requests")
        stop = threading.Event()

        def probing() -> None:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    ok = requests.get(f"{svc.url}/pipelineIds/probe-me", timeout=120).status_code == 200
                except requests.RequestException:
                    ok = False
                probe.append(time.perf_counter() - began if ok else None)
                stop.wait(0.2)

        prober = threading.Thread(target=probing)
        prober.start()
        began = time.perf_counter()
        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(lambda i: [requests.get(f"{svc.url}/pipelines", timeout=300).status_code
                                               for _ in range(3)], range(64)))
        seconds = time.perf_counter() - began
        stop.set()
        prober.join()
        counts = sandbox.control("GET", "requests")["counts"]
    finally:
        svc.stop()
        sandbox.control("POST", "reset")
    ok = [s for s in probe if s is not None]
    return {"pipelines": 3000, "clients": 64, "lists_per_client": 3,
            "all_answered_200": all(s == 200 for a in answers for s in a), "seconds": round(seconds, 1),
            "kfp_list_calls": counts.get("GET /apis/v2beta1/pipelines", 0), "kfp_list_calls_unshared": 64 * 3 * 16,
            "probe_answered_within_1s": sum(1 for s in ok if s <= 1.0), "probe_tries": len(probe),
            "probe_p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
            "probe_max_ms": round(max(ok) * 1000, 1) if ok else None}


def _raw(port: int, data: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while piece := sock.recv(65536):
                answer += piece
                if b"\r\n\r\n" in answer:
                    break
        except OSError:
            pass
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def odd_bytes(sandbox: Sandbox, workdir: Path) -> dict:
    svc = serve(sandbox, workdir, "odd")
    out = {}
    try:
        head = b"POST /trainingjobs/tj/execution HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n"
        for name, body in (("0x0", b"0x0\r\n\r\n"), ("+0", b"+0\r\n\r\n"), ("2_9", b"2_9\r\n" + b"a" * 41 + b"\r\n0\r\n\r\n"),
                           ("bare LF", b"2\n{}\r\n0\r\n\r\n"), ("bad CRLF after data", b"2\r\n{}XY0\r\n\r\n")):
            out[f"chunk size {name}"] = _raw(svc.port, head + body)
        resp = requests.post(f"{svc.url}/trainingjobs/tj/execution", data=b'{"pipeline_name": "\\ud800"}',
                             headers={"Content-Type": "application/json"}, timeout=10)
        out["lone surrogate in a JSON name"] = f"{resp.status_code} {resp.json().get('code')}"
    finally:
        svc.stop()
    out["tracebacks_in_log"] = (workdir / "odd.log").read_text(errors="replace").count("Traceback")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="after")
    parser.add_argument("--only", choices=["idle", "uploads", "lists", "odd_bytes"], action="append")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-bench-door-"))
    sandbox = Sandbox(workdir)
    results = {}
    try:
        for name, fn in (("idle", idle), ("uploads", uploads), ("lists", lists), ("odd_bytes", odd_bytes)):
            if not args.only or name in args.only:
                results[name] = fn(sandbox, workdir)
                print(name, json.dumps(results[name]), flush=True)
    finally:
        sandbox.stop()
    path = ROOT / "bench" / "front_door.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored.setdefault(args.label, {}).update(results)
    path.write_text(json.dumps(stored, indent=2) + "\n")
    print(json.dumps({args.label: stored[args.label]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
