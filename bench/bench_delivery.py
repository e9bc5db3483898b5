"""Notification delivery under a slow, large or trickling world (prints JSON, writes bench/results_delivery.json).

- bulk drain: 1,500 runs ending at once, two `kfadapter serve` (2 workers each) on one store, a manager answering
  at once: seconds until every run is notified, duplicates;
- trickling manager: one run whose answer trickles one byte a second (status line included) and five answered at
  once, two servers on one store, KFADAPTER_NOTIFY_TIMEOUT 10: the longest POST, when the five were answered,
  the most POSTs of one run open at once;
- polling 10,000 tracked runs (none finished): seconds per cycle and KFP calls;
- the watcher cycle of bench_store.py (1,000 tracked, 100 finished and notified) on SQLite and PostgreSQL.
The machine's load average and a fixed CPU loop's time are written alongside: on a shared machine every figure
scales with them. Nothing here asserts.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_store import _runs, _store, _store_env, _tracked_runs, bench_watcher_cycle  # noqa: E402
from bench.receiver import Receiver  # noqa: E402
from bench.run import Sandbox  # noqa: E402
from tests.postgres import PostgresServer, server_binaries  # noqa: E402
from tests.slow_manager import SlowManager  # noqa: E402
from tests.support import Service, clean_env, wait_for  # noqa: E402


def cpu_loop_ms() -> float:
    """Milliseconds of a fixed pure-Python loop (about 2 ms on an idle core of this machine's kind)."""
    start = time.perf_counter()
    sum(range(100_000))
    return round((time.perf_counter() - start) * 1000, 2)


def _servers(env: dict[str, str], workdir: Path, tag: str, n: int = 2) -> list[Service]:
    return [Service(env, workdir / f"{tag}-{time.time_ns()}.log") for _ in range(n)]


def bench_bulk_drain(sandbox: Sandbox, store_env: dict[str, str], workdir: Path, runs: int) -> dict:
    """`runs` runs ending at once, two servers on one store: time to notify all, duplicates."""
    receiver = Receiver(0.0)
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_TM_URL=receiver.url, KFADAPTER_POLL_INTERVAL="1",
                    KFADAPTER_LOG_LEVEL="WARNING", **store_env)
    _, ids = _tracked_runs(sandbox, store_env, runs)
    servers = _servers(env, workdir, "drain")
    try:
        start = time.monotonic()
        sandbox.control("POST", "runs/state", json={"run_ids": ids, "state": "SUCCEEDED"})
        wait_for(lambda: len(set(receiver.received)) >= runs, "every notification", limit=600)
        took = time.monotonic() - start
        time.sleep(3.0)  # more cycles of all four watchers
    finally:
        for s in servers:
            s.stop()
        receiver.stop()
    return {"runs": runs, "seconds_to_notify_all": round(took, 1), "received": len(receiver.received),
            "distinct": len(set(receiver.received)), "duplicates": receiver.duplicates()}


def bench_trickling_manager(sandbox: Sandbox, store_env: dict[str, str], workdir: Path) -> dict:
    """One run's answer trickles at 1 byte/s, five are answered at once; two servers on one store."""
    manager = SlowManager(interval=1.0)
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_TM_URL=manager.url, KFADAPTER_POLL_INTERVAL="1",
                    KFADAPTER_NOTIFY_TIMEOUT="10", KFADAPTER_NOTIFY_MAX_BACKOFF="2", KFADAPTER_LOG_LEVEL="WARNING",
                    **store_env)
    store, ids = _tracked_runs(sandbox, store_env, 6)
    slow, others = ids[0], ids[1:]
    manager.trickle.add(slow)
    servers = _servers(env, workdir, "trickle")
    try:
        sandbox.control("POST", "runs/state", json={"run_ids": [slow], "state": "SUCCEEDED"})
        wait_for(lambda: manager.of(slow), "the trickled POST", limit=120)
        first = manager.of(slow)[0]
        sandbox.control("POST", "runs/state", json={"run_ids": others, "state": "SUCCEEDED"})
        wait_for(lambda: set(manager.answered()) >= set(others), "the five others", limit=300)
        others_s = max(manager.of(r)[0].closed for r in others) - first.opened
        wait_for(lambda: len(manager.of(slow)) >= 3, "three POSTs of the trickled run", limit=300)
        manager.trickle.clear()
        wait_for(lambda: not store.pending() and not store.tracked(), "every notification delivered", limit=300)
        time.sleep(2.0)
    finally:
        for s in servers:
            s.stop()
        manager.stop()
    trickled = [p.closed - p.opened for p in manager.of(slow) if p.trickled and p.closed is not None]
    return {"notify_timeout_s": 10, "trickled_posts": len(trickled), "longest_post_s": round(max(trickled), 2),
            "five_others_answered_after_s": round(others_s, 2), "max_open_posts_per_run": manager.max_overlap(),
            "posts_per_fast_run": max(len(manager.of(r)) for r in others),
            "trickled_run_delivered_once": manager.answered().count(slow) == 1}


def bench_poll_10000(sandbox: Sandbox, store_env: dict[str, str]) -> dict:
    """One poll over 10,000 tracked runs, none finished: seconds (median of 5) and KFP calls."""
    from kfadapter.kfconnect import KfConnect
    from kfadapter.settings import Settings
    from kfadapter.watch.poller import poll_once

    store = _store(store_env)
    ids: list[str] = []
    for _ in range(10):
        ids += _runs(sandbox, 1000)
    for i, run_id in enumerate(ids):
        store.track(run_id, f"tj-{i}", now=float(i))
    kf = KfConnect(Settings(kfp_endpoint=sandbox.url, store_path="unused"))
    cursor = poll_once(kf, store, 1.0).swept_to  # warm: builds the kfp client
    took = []
    for k in range(5):
        sandbox.control("DELETE", "requests")
        start = time.perf_counter()
        cursor = poll_once(kf, store, 2.0 + k, cursor).swept_to
        took.append(time.perf_counter() - start)
    calls = sandbox.control("GET", "requests")["total"]
    return {"tracked": len(ids), "cycle_s_median": round(statistics.median(took), 3),
            "cycle_s_min": round(min(took), 3), "kfp_calls": calls}


def main() -> int:
    quick = "--quick" in sys.argv
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-bench-delivery-"))
    sandbox = Sandbox(workdir)
    postgres = PostgresServer(server_binaries())
    results: dict = {"load_average_at_start": os.getloadavg(), "cpu_loop_ms_at_start": cpu_loop_ms()}
    try:
        for backend in ("sqlite", "postgresql"):
            cycle = [bench_watcher_cycle(sandbox, _store_env(backend, workdir, postgres, f"cycle{k}"))
                     for k in range(1 if quick else 3)]
            results.setdefault(backend, {})["watcher_cycle_1000"] = min(
                cycle, key=lambda c: c["cycle_with_100_finished_s"]) | {
                "cycle_with_100_finished_s_all": [c["cycle_with_100_finished_s"] for c in cycle]}
        results["sqlite"]["poll_10000_tracked"] = bench_poll_10000(sandbox, _store_env("sqlite", workdir, postgres, "p"))
        for backend in ("sqlite", "postgresql"):
            results[backend]["bulk_drain"] = bench_bulk_drain(
                sandbox, _store_env(backend, workdir, postgres, "drain"), workdir, 300 if quick else 1500)
            results[backend]["trickling_manager"] = bench_trickling_manager(
                sandbox, _store_env(backend, workdir, postgres, "trickle"), workdir)
    finally:
        sandbox.stop()
        postgres.destroy()
    results["load_average_at_end"] = os.getloadavg()
    results["cpu_loop_ms_at_end"] = cpu_loop_ms()
    text = json.dumps(results, indent=2)
    print(text)
    if not quick:
        (ROOT / "bench" / "results_delivery.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
