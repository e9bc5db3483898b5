"""Benchmarks: what the adapter costs on top of KFP, as ratios and counts measured in one run.

Everything runs on loopback: the sandbox KFP and the adapter (gunicorn) in processes of their own, the clients
here. Prints one JSON object and writes it to bench/results.json. Not part of `make test`: nothing here asserts
on time; targets are compared and reported.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.receiver import Receiver  # noqa: E402
from tests.support import Service, clean_env, free_port, wait_for  # noqa: E402

PIPELINE = (ROOT / "tests/fixtures/pipelines/add_v2.yaml").read_bytes()
TARGETS = {"overhead_ratio": 1.5, "overhead_added_ms": 2.0, "throughput_share": 0.6, "upload": 3, "execution": 4,
           "watcher_calls": 5, "watcher_cycle_s": 2.0, "download_rss_ratio": 3.0}


class Sandbox:
    """`kfadapter sandbox` in a process of its own."""

    def __init__(self, workdir: Path) -> None:
        import subprocess

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "sandbox.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kfadapter.cli", "sandbox", "--port", str(self.port)],
                                     env=clean_env(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, "the sandbox")

    def _up(self) -> bool:
        try:
            return requests.get(f"{self.url}/apis/v2beta1/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def control(self, method: str, path: str, **kw):
        resp = requests.request(method, f"{self.url}/_sandbox/{path}", timeout=120, **kw)
        resp.raise_for_status()
        return resp.json() if resp.content else {}

    def count(self, fn) -> int:
        """Return how many KFP requests `fn()` causes."""
        self.control("DELETE", "requests")
        fn()
        return self.control("GET", "requests")["total"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def _median_ms(fn, n: int) -> float:
    for _ in range(min(20, n)):  # warm up connections and caches
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _throughput(fn, clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            fn(i)
            done[i] += 1

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, range(clients)))
    return sum(done) / seconds


def kfp_client(url: str):
    import kfp

    kfp.Client._LOCAL_KFP_CONTEXT = os.path.join(tempfile.mkdtemp(), "context.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=url, namespace="bench")


def upload(url: str, name: str, data: bytes = PIPELINE) -> dict:
    resp = requests.post(f"{url}/pipelineIds/{name}", files={"file": ("file", data)}, data={"description": ""},
                         timeout=60)
    resp.raise_for_status()
    return resp.json()


def bench_overhead(adapter: Service, sandbox: Sandbox, n: int) -> dict:
    client = kfp_client(sandbox.url)
    up = upload(adapter.url, "bench-overhead")
    run = requests.post(f"{adapter.url}/trainingjobs/tj-bench/execution",
                        json={"pipeline_name": "bench-overhead", "arguments": {}}, timeout=30).json()
    # urllib3 on both sides: the client library's own cost should not count against the adapter.
    import urllib3

    pool = urllib3.PoolManager(maxsize=4)

    def get(path: str) -> None:
        resp = pool.request("GET", f"{adapter.url}{path}")
        assert resp.status == 200, resp.status

    api = client._pipelines_api
    out = {}
    pairs = {
        "GET /pipelineIds/<name>": (
            lambda: get("/pipelineIds/bench-overhead"),
            lambda: api.pipeline_service_get_pipeline_by_name("bench-overhead", namespace="bench")),
        "GET /runs/<id>": (
            lambda: get(f"/runs/{run['run_id']}"),
            lambda: client.get_run(run["run_id"])),
    }
    for label, (via_adapter, direct) in pairs.items():
        # Interleave rounds so drift on a shared machine hits both sides alike.
        a, d = [], []
        for _ in range(5):
            a.append(_median_ms(via_adapter, n // 5))
            d.append(_median_ms(direct, n // 5))
        adapter_ms, direct_ms = statistics.median(a), statistics.median(d)
        out[label] = {"adapter_ms": round(adapter_ms, 3), "kfp_client_ms": round(direct_ms, 3),
                      "ratio": round(adapter_ms / direct_ms, 3), "added_ms": round(adapter_ms - direct_ms, 3)}
    assert up["pipeline_id"]
    # The floor of any proxy: one loopback HTTP round trip through gunicorn with no KFP call behind it.
    out["hop_floor_ms"] = {"GET /liveness": round(_median_ms(lambda: get("/liveness"), n), 3)}
    return out


def bench_throughput(adapter: Service, sandbox: Sandbox, seconds: float, clients: int = 32) -> dict:
    upload(adapter.url, "bench-tp")
    sessions = [requests.Session() for _ in range(clients)]
    pid = requests.get(f"{adapter.url}/pipelineIds/bench-tp", timeout=10).json()["id"]
    adapter_rps = _throughput(
        lambda i: sessions[i].get(f"{adapter.url}/pipelines/bench-tp/versions", timeout=30).raise_for_status(),
        clients, seconds)

    def underlying(i: int) -> None:
        # The same two KFP calls the route makes: the pipeline by name, then its versions.
        sessions[i].get(f"{sandbox.url}/apis/v2beta1/pipelines/names/bench-tp", timeout=30).raise_for_status()
        sessions[i].get(f"{sandbox.url}/apis/v2beta1/pipelines/{pid}/versions?page_size=200",
                        timeout=30).raise_for_status()

    ceiling_rps = _throughput(underlying, clients, seconds)
    return {"clients": clients, "adapter_rps": round(adapter_rps, 1), "sandbox_ceiling_rps": round(ceiling_rps, 1),
            "share_of_ceiling": round(adapter_rps / ceiling_rps, 3)}


def bench_kfp_calls(adapter: Service, sandbox: Sandbox) -> dict:
    out = {}
    upload(adapter.url, "bench-calls")
    out["upload_new_version"] = sandbox.count(lambda: upload(adapter.url, "bench-calls"))
    out["upload_new_pipeline"] = sandbox.count(lambda: upload(adapter.url, "bench-calls-new"))
    body = {"pipeline_name": "bench-calls", "experiment_name": "Default", "arguments": {"a": "1"}}
    out["execution"] = sandbox.count(
        lambda: requests.post(f"{adapter.url}/trainingjobs/tj/execution", json=body, timeout=30).raise_for_status())
    sandbox.control("POST", "reset")
    for i in range(5):
        made = upload(adapter.url, f"bench-runs-{i}")
        sandbox.control("POST", "bulk/runs", json={"count": 40, "pipeline_id": made["pipeline_id"],
                                                   "pipeline_version_id": made["version_id"]})
    out["get_runs_200_runs_5_pipelines"] = sandbox.count(
        lambda: requests.get(f"{adapter.url}/runs", timeout=60).raise_for_status())
    sandbox.control("POST", "reset")
    sandbox.control("POST", "bulk/pipelines", json={"count": 450, "prefix": "bench"})
    out["get_pipelines_450"] = sandbox.count(
        lambda: requests.get(f"{adapter.url}/pipelines", timeout=60).raise_for_status())
    out["get_pipelines_450_pages"] = 3
    return out


def bench_watcher(sandbox: Sandbox, workdir: Path) -> dict:
    from kfadapter.kfconnect import KfConnect
    from kfadapter.settings import Settings
    from kfadapter.watch.store import Store
    from kfadapter.watch.watcher import Watcher

    sandbox.control("POST", "reset")
    receiver = Receiver()
    settings = Settings(kfp_endpoint=sandbox.url, store_path=str(workdir / "watch.sqlite"), tm_url=receiver.url,
                        poll_interval=3600)
    store = Store(settings.store_path)
    made = sandbox.control("POST", "bulk/pipelines", json={"count": 1, "prefix": "w"})["pipelines"][0]
    ids = sandbox.control("POST", "bulk/runs", json={"count": 1000, "pipeline_id": made["pipeline_id"],
                                                     "pipeline_version_id": made["pipeline_version_id"]})["run_ids"]
    for i, run_id in enumerate(ids):
        store.track(run_id, f"tj-{i}")
    watcher = Watcher(KfConnect(settings), store, settings, holder="bench")
    watcher.poll_once(now=1.0)  # warm: builds the kfp client
    sandbox.control("POST", "runs/state", json={"run_ids": ids[:100], "state": "SUCCEEDED"})
    sandbox.control("DELETE", "requests")
    start = time.perf_counter()
    cycle = watcher.poll_once(now=2.0)
    elapsed = time.perf_counter() - start
    calls = sandbox.control("GET", "requests")["total"]
    receiver.stop()
    return {"tracked": 1000, "finished": len(cycle.poll.finished), "notified": len(receiver.received),
            "cycle_s": round(elapsed, 3), "kfp_calls": calls}


def main() -> int:
    quick = "--quick" in sys.argv
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-bench-"))
    sandbox = Sandbox(workdir)
    adapter = Service(clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_PATH=str(workdir / "s.sqlite"),
                                KFADAPTER_WATCH="false", KFADAPTER_LOG_LEVEL="WARNING",
                                KFADAPTER_GUNICORN_WORKERS=os.environ.get("KFADAPTER_GUNICORN_WORKERS", "2")),
                      workdir / "adapter.log")
    try:
        results = {
            "overhead": bench_overhead(adapter, sandbox, 100 if quick else 500),
            "throughput": bench_throughput(adapter, sandbox, 2.0 if quick else 8.0),
            "kfp_calls": bench_kfp_calls(adapter, sandbox),
            "watcher": bench_watcher(sandbox, workdir),
        }
    finally:
        adapter.stop()
        sandbox.stop()
    outputs_bench = ROOT / "bench" / "bench_outputs.py"
    if outputs_bench.exists():
        import subprocess

        done = subprocess.run([sys.executable, str(outputs_bench)], capture_output=True, text=True, timeout=900)
        try:
            results["outputs"] = json.loads(done.stdout[done.stdout.index("{"):])
        except (ValueError, IndexError):
            results["outputs"] = {"error": (done.stderr or done.stdout)[-500:]}
    results["targets"] = _targets(results)
    text = json.dumps(results, indent=2)
    print(text)
    (ROOT / "bench" / "results.json").write_text(text + "\n")
    return 0


def _targets(r: dict) -> dict:
    over = [v for k, v in r["overhead"].items() if k != "hop_floor_ms"]
    calls = r["kfp_calls"]
    met = {
        "overhead_ratio<=1.5": all(o["ratio"] <= TARGETS["overhead_ratio"] for o in over),
        "overhead_added_ms<=2": all(o["added_ms"] <= TARGETS["overhead_added_ms"] for o in over),
        "throughput>=60%": r["throughput"]["share_of_ceiling"] >= TARGETS["throughput_share"],
        "upload<=3": calls["upload_new_version"] <= TARGETS["upload"],
        "execution<=4": calls["execution"] <= TARGETS["execution"],
        "get_runs<=1+pipelines": calls["get_runs_200_runs_5_pipelines"] <= 1 + 5,
        "get_pipelines==pages": calls["get_pipelines_450"] == calls["get_pipelines_450_pages"],
        "watcher<=5_calls": r["watcher"]["kfp_calls"] <= TARGETS["watcher_calls"],
        "watcher_cycle<2s": r["watcher"]["cycle_s"] < TARGETS["watcher_cycle_s"],
    }
    outputs = r.get("outputs") or {}
    if "peak_growth_x_artifact" in outputs:
        met["download_rss<=3x"] = outputs["peak_growth_x_artifact"] <= TARGETS["download_rss_ratio"]
        outputs["download_mib_per_s"] = round(outputs["artifact_bytes"] / 2**20 / outputs["seconds"], 1)
    return met


if __name__ == "__main__":
    sys.exit(main())
