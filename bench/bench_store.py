"""The store's figures on SQLite and PostgreSQL side by side (prints JSON, writes bench/results_store.json).

- watcher cycle with 1,000 tracked runs (100 of them finished): seconds and KFP calls;
- execution overhead: median ms of `POST /trainingjobs/<id>/execution` through `kfadapter serve` per backend;
- exactly once: two `kfadapter serve` (2 workers each) on one store, N runs finishing together, a training
  manager answering after 0.5 s and after 2 s: notifications received, duplicates;
- kill -9 of the lease holder mid-delivery, three times: duplicates (at most one per kill is the promise).
Runs on loopback with the sandbox KFP and a throwaway PostgreSQL (tests/postgres.py). Nothing here asserts.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.receiver import Receiver  # noqa: E402
from bench.run import PIPELINE, Sandbox  # noqa: E402
from tests.postgres import PostgresServer, server_binaries  # noqa: E402
from tests.support import Service, clean_env, wait_for  # noqa: E402


def _store_env(backend: str, workdir: Path, postgres: PostgresServer, tag: str) -> dict[str, str]:
    if backend == "sqlite":
        return {"KFADAPTER_STORE_PATH": str(workdir / f"{tag}.sqlite")}
    return {"KFADAPTER_STORE_URL": postgres.create_database()}


def _store(env: dict[str, str]):
    from kfadapter.watch.store import Store

    return Store(env.get("KFADAPTER_STORE_URL") or env["KFADAPTER_STORE_PATH"])


def _runs(sandbox: Sandbox, n: int) -> list[str]:
    made = sandbox.control("POST", "bulk/pipelines", json={"count": 1, "prefix": f"b{time.time_ns()}"})["pipelines"][0]
    return sandbox.control("POST", "bulk/runs", json={"count": n, "pipeline_id": made["pipeline_id"],
                                                      "pipeline_version_id": made["pipeline_version_id"]})["run_ids"]


def bench_watcher_cycle(sandbox: Sandbox, store_env: dict[str, str]) -> dict:
    """One cycle over 1,000 tracked runs, 100 of them finished (and notified)."""
    from kfadapter.kfconnect import KfConnect
    from kfadapter.settings import Settings
    from kfadapter.watch.watcher import Watcher

    receiver = Receiver(0.0)
    settings = Settings(kfp_endpoint=sandbox.url, store_path=store_env.get("KFADAPTER_STORE_PATH", "unused"),
                        store_url=store_env.get("KFADAPTER_STORE_URL"), tm_url=receiver.url, poll_interval=3600)
    store = _store(store_env)
    ids = _runs(sandbox, 1000)
    for i, run_id in enumerate(ids):
        store.track(run_id, f"tj-{i}")
    watcher = Watcher(KfConnect(settings), store, settings, holder="bench")
    watcher.poll_once(now=1.0)  # warm: builds the kfp client
    idle = []
    for k in range(5):
        start = time.perf_counter()
        watcher.poll_once(now=2.0 + k)
        idle.append(time.perf_counter() - start)
    sandbox.control("POST", "runs/state", json={"run_ids": ids[:100], "state": "SUCCEEDED"})
    sandbox.control("DELETE", "requests")
    start = time.perf_counter()
    cycle = watcher.poll_once(now=10.0)
    elapsed = time.perf_counter() - start
    calls = sandbox.control("GET", "requests")["total"]
    receiver.stop()
    return {"tracked": 1000, "idle_cycle_s_median": round(statistics.median(idle), 3),
            "cycle_with_100_finished_s": round(elapsed, 3), "finished": len(cycle.poll.finished),
            "notified": len(receiver.received), "kfp_calls": calls}


def bench_execution(sandbox: Sandbox, store_env: dict[str, str], workdir: Path, n: int) -> dict:
    """Median and p90 ms of an execution through `kfadapter serve` (intent, KFP calls, run id stored)."""
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_WATCH="false", KFADAPTER_LOG_LEVEL="WARNING",
                    **store_env)
    adapter = Service(env, workdir / f"exec-{time.time_ns()}.log")
    try:
        name = f"e{time.time_ns()}"
        requests.post(f"{adapter.url}/pipelineIds/{name}", files={"file": ("file", PIPELINE)},
                      data={"description": ""}, timeout=60).raise_for_status()
        body = {"pipeline_name": name, "experiment_name": "Default", "arguments": {"a": "1", "b": "2"}}
        samples = []
        for i in range(n + 10):
            start = time.perf_counter()
            requests.post(f"{adapter.url}/trainingjobs/tj-{i}/execution", json=body, timeout=60).raise_for_status()
            if i >= 10:  # the first ones warm connections and caches
                samples.append((time.perf_counter() - start) * 1000)
    finally:
        adapter.stop()
    samples.sort()
    return {"executions": n, "median_ms": round(statistics.median(samples), 2),
            "p90_ms": round(samples[int(0.9 * len(samples))], 2)}


def bench_exactly_once(sandbox: Sandbox, store_env: dict[str, str], workdir: Path, runs: int, delay: float) -> dict:
    """Two servers on one store, `runs` runs finishing together, a manager answering after `delay` s."""
    receiver = Receiver(delay)
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_TM_URL=receiver.url, KFADAPTER_POLL_INTERVAL="1",
                    KFADAPTER_NOTIFY_TIMEOUT=str(delay + 3), KFADAPTER_LOG_LEVEL="WARNING", **store_env)
    store, ids = _tracked_runs(sandbox, store_env, runs)
    servers = [Service(env, workdir / f"once-{time.time_ns()}.log") for _ in range(2)]
    try:
        start = time.monotonic()
        sandbox.control("POST", "runs/state", json={"run_ids": ids, "state": "SUCCEEDED"})
        wait_for(lambda: len(set(receiver.received)) >= runs, "every notification", limit=runs * delay * 3 + 120)
        took = time.monotonic() - start
        time.sleep(3.0)  # more cycles of all four watchers
    finally:
        for s in servers:
            s.stop()
        receiver.stop()
    return {"runs": runs, "manager_delay_s": delay, "received": len(receiver.received),
            "distinct": len(set(receiver.received)), "duplicates": receiver.duplicates(), "seconds": round(took, 1)}


def _tracked_runs(sandbox: Sandbox, store_env: dict[str, str], runs: int):
    """`runs` fresh sandbox runs, each tracked in the store under its own training job."""
    store = _store(store_env)
    ids = _runs(sandbox, runs)
    for i, run_id in enumerate(ids):
        store.track(run_id, f"tj-{i}")
    return store, ids


def _holder_pid(store) -> int | None:
    from kfadapter.watch.watcher import LEASE_NAME

    lease = store.lease(LEASE_NAME)
    return int(lease[0].split(":")[1]) if lease else None


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def bench_kill_holder(sandbox: Sandbox, store_env: dict[str, str], workdir: Path, runs: int, kills: int) -> dict:
    """kill -9 the server whose worker holds the lease, mid-delivery, `kills` times; count duplicates."""
    receiver = Receiver(0.5)
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_TM_URL=receiver.url, KFADAPTER_POLL_INTERVAL="0.5",
                    KFADAPTER_LEASE_TTL="2", KFADAPTER_NOTIFY_TIMEOUT="1", KFADAPTER_LOG_LEVEL="WARNING", **store_env)
    store, ids = _tracked_runs(sandbox, store_env, runs)
    servers = [Service(env, workdir / f"kill-{time.time_ns()}.log") for _ in range(2)]
    try:
        sandbox.control("POST", "runs/state", json={"run_ids": ids, "state": "SUCCEEDED"})
        for k in range(kills):
            target = runs * (k + 1) // (kills + 1)  # kills spread over the whole delivery
            wait_for(lambda: len(set(receiver.received)) >= target, "deliveries under way", limit=300)
            pid = _holder_pid(store)
            holder = next(s for s in servers if pid and _parent(pid) == s.proc.pid)
            holder.kill9()
            servers.remove(holder)
            servers.append(Service(env, workdir / f"kill-{time.time_ns()}.log"))
        wait_for(lambda: len(set(receiver.received)) >= runs, "every notification", limit=600)
        time.sleep(3.0)
    finally:
        for s in servers:
            s.stop()
        receiver.stop()
    return {"runs": runs, "kills": kills, "received": len(receiver.received), "distinct": len(set(receiver.received)),
            "duplicates": receiver.duplicates()}


def main() -> int:
    quick = "--quick" in sys.argv
    runs = 40 if quick else 200
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-bench-store-"))
    sandbox = Sandbox(workdir)
    postgres = PostgresServer(server_binaries())
    backends = ("sqlite", "postgresql")
    results: dict = {}
    try:
        for backend in backends:
            results.setdefault(backend, {})["watcher_cycle_1000"] = bench_watcher_cycle(
                sandbox, _store_env(backend, workdir, postgres, "cycle"))
            results[backend]["execution"] = bench_execution(sandbox, _store_env(backend, workdir, postgres, "exec"),
                                                            workdir, 50 if quick else 200)
        # The slow-manager cases mostly wait: all of them at once.
        jobs = {(b, d): (b, d) for b in backends for d in (0.5, 2.0)}
        with ThreadPoolExecutor(max_workers=len(jobs) + 2) as pool:
            once = {key: pool.submit(bench_exactly_once, sandbox, _store_env(key[0], workdir, postgres, f"once{key[1]}"),
                                     workdir, runs, key[1]) for key in jobs}
            kill = {b: pool.submit(bench_kill_holder, sandbox, _store_env(b, workdir, postgres, "kill"), workdir,
                                   100 if not quick else 40, 3) for b in backends}
            for (backend, delay), future in once.items():
                results[backend][f"exactly_once_{delay}s_manager"] = future.result()
            for backend, future in kill.items():
                results[backend]["kill9_lease_holder"] = future.result()
    finally:
        sandbox.stop()
        postgres.destroy()
    results["postgresql_over_sqlite_execution"] = round(
        results["postgresql"]["execution"]["median_ms"] / results["sqlite"]["execution"]["median_ms"], 2)
    text = json.dumps(results, indent=2)
    print(text)
    if not quick:
        (ROOT / "bench" / "results_store.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
