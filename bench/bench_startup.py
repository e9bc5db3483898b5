"""Start-up and a store that is down (issue #21): prints JSON, writes bench/startup.json.

- race: two `kfadapter serve` (2 gunicorn workers each) started together on a fresh store, N rounds per backend:
  rounds where all four workers came up and both servers became ready, failed workers, tracebacks, servers that
  exited, and how many processes ran the migrations;
- postgres_down_at_start: `kfadapter serve` started with PostgreSQL stopped: whether it stays up, readiness
  answers meanwhile, log lines (and tracebacks) per retry attempt; then PostgreSQL starts: seconds until ready;
- postgres_stopped_during_executions: 30 executions (KFP takes 0.5 s to create each run) while PostgreSQL is
  stopped for 3 s: answers by status, 503s hiding a run KFP started, `/metrics` and `/readiness` meanwhile, and
  whether every run KFP started is tracked or notified once PostgreSQL is back;
- full_disk (root only: a 4 MiB tmpfs): readiness while the SQLite store's file system is full, and after.
Runs on loopback with the sandbox KFP and a throwaway PostgreSQL (tests/postgres.py). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.receiver import Receiver  # noqa: E402
from bench.run import PIPELINE, Sandbox  # noqa: E402
from tests.postgres import PostgresServer, server_binaries  # noqa: E402
from tests.support import Service, clean_env  # noqa: E402

ATTEMPT_MARK = "store not available yet"  # the start-up retry's log line (kfadapter/watch/opening.py)
MIGRATED_MARK = "store schema migrated"  # logged by the one process that ran the migrations


def Server(env: dict[str, str], log_path: Path) -> Service:
    """`kfadapter serve` started without waiting: its exit is observed, not treated as a failure of the bench."""
    return Service(env, log_path, wait=False)


def _env(sandbox: Sandbox, store: dict[str, str], **extra: str) -> dict[str, str]:
    return clean_env(
        KFADAPTER_KFP_ENDPOINT=sandbox.url,
        KFADAPTER_GUNICORN_WORKERS="2",
        KFADAPTER_LOG_FORMAT="text",
        **store,
        **extra,
    )


def _tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def race(sandbox: Sandbox, postgres: PostgresServer, workdir: Path, backend: str, rounds: int) -> dict:
    """Two servers x two workers starting together on a fresh store, `rounds` times."""
    good, failed_workers, tracebacks, exited, migrators = 0, 0, 0, 0, []
    for r in range(rounds):
        store = (
            {"KFADAPTER_STORE_PATH": str(workdir / f"race-{r}.sqlite")}
            if backend == "sqlite"
            else {"KFADAPTER_STORE_URL": postgres.create_database()}
        )
        servers = [Server(_env(sandbox, store), workdir / f"race-{backend}-{r}-{i}.log") for i in range(2)]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = [s.proc.poll() is None and s.readiness() == 200 for s in servers]
            if all(states) or any(s.proc.poll() is not None for s in servers):
                break
            time.sleep(0.1)
        time.sleep(1.0)  # a worker that fails after the first answers fails now
        texts = [s.text() for s in servers]
        ended = [s.proc.poll() is not None for s in servers]
        for s in servers:
            s.stop()
        failed = sum(t.count("Worker failed to boot") + t.count("Exception in worker process") for t in texts)
        good += int(not any(ended) and failed == 0)
        failed_workers += failed
        tracebacks += sum(_tracebacks(t) for t in texts)
        exited += sum(ended)
        migrators.append(sum(t.count(MIGRATED_MARK) for t in texts))
    return {
        "rounds": rounds,
        "rounds_all_workers_up_and_ready": good,
        "failed_workers": failed_workers,
        "tracebacks": tracebacks,
        "servers_exited": exited,
        "processes_migrating_per_round": migrators,
    }


def postgres_down_at_start(sandbox: Sandbox, postgres: PostgresServer, workdir: Path, wait: float) -> dict:
    """Serve with PostgreSQL stopped for `wait` seconds, then start it and time readiness."""
    url = postgres.create_database()
    postgres.stop()
    server = Server(_env(sandbox, {"KFADAPTER_STORE_URL": url}), workdir / "pg-down.log")
    started = time.monotonic()
    codes: dict[int, int] = {}
    exited_after = None
    while time.monotonic() - started < wait:
        if server.proc.poll() is not None:
            exited_after = round(time.monotonic() - started, 1)
            break
        code = server.readiness()
        codes[code] = codes.get(code, 0) + 1
        time.sleep(0.25)
    text = server.text()
    lines = text.splitlines()
    attempts = text.count(ATTEMPT_MARK)
    # gunicorn's own lines ("[time] [pid] [INFO] Booting worker ...") and the command's first line are those
    # of any start; everything else the adapter wrote while waiting counts against the attempts.
    other = [ln for ln in lines if ATTEMPT_MARK not in ln and not ln.startswith("[") and "starting gunicorn" not in ln]
    out = {
        "waited_s": wait,
        "exit_code": server.proc.poll(),
        "exited_after_s": exited_after,
        "readiness_answers": {str(k): v for k, v in sorted(codes.items())},
        "log_lines": len(lines),
        "tracebacks": _tracebacks(text),
        "retry_attempts_logged": attempts,
        "other_adapter_lines": len(other),
        "adapter_lines_per_attempt": round((attempts + len(other)) / attempts, 2) if attempts else None,
    }
    postgres.start()
    back = time.monotonic()
    ready_after = None
    if server.proc.poll() is None:
        while time.monotonic() - back < 60:
            if server.readiness() == 200:
                ready_after = round(time.monotonic() - back, 2)
                break
            time.sleep(0.05)
    out["ready_after_postgres_back_s"] = ready_after
    server.stop()
    return out


def postgres_stopped_during_executions(sandbox: Sandbox, postgres: PostgresServer, workdir: Path) -> dict:
    """30 executions while PostgreSQL is stopped for 3 s; what the caller and the store see."""
    receiver = Receiver(0.0)
    url = postgres.create_database()
    server = Server(
        _env(
            sandbox,
            {"KFADAPTER_STORE_URL": url},
            KFADAPTER_TM_URL=receiver.url,
            KFADAPTER_POLL_INTERVAL="0.5",
            KFADAPTER_INTENT_GRACE="5",
        ),
        workdir / "pg-exec.log",
    )
    deadline = time.monotonic() + 60
    while server.readiness() != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    name = f"startup-{time.time_ns()}"
    requests.post(
        f"{server.url}/pipelineIds/{name}", files={"file": ("file", PIPELINE)}, data={"description": ""}, timeout=60
    ).raise_for_status()
    sandbox.control(
        "POST", "faults", json={"delay": 0.5, "status": None, "method": "POST", "path_prefix": "/apis/v2beta1/runs"}
    )
    answers: list[tuple[int, dict]] = []
    jobs = [f"{name}-tj-{i}" for i in range(30)]

    def execute(i: int) -> None:
        time.sleep(i * 0.1)
        try:
            resp = requests.post(
                f"{server.url}/trainingjobs/{jobs[i]}/execution",
                timeout=60,
                json={"pipeline_name": name, "experiment_name": "Default", "arguments": {}},
            )
            answers.append((resp.status_code, resp.json()))
        except (requests.RequestException, ValueError) as exc:
            answers.append((0, {"error": str(exc)}))

    threads = [threading.Thread(target=execute, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    postgres.stop()
    down: dict[str, int | str] = {}
    try:
        metrics = requests.get(f"{server.url}/metrics", timeout=30)
        down["metrics_status"] = metrics.status_code
        down["metrics_store_up_line"] = next(
            (ln for ln in metrics.text.splitlines() if ln.startswith("kfadapter_store_up")), ""
        )
        down["readiness_status"] = server.readiness()
        time.sleep(2.0)
    finally:
        postgres.start()
    for t in threads:
        t.join(90)
    sandbox.control("DELETE", "faults")
    by_status: dict[str, int] = {}
    for code, _ in answers:
        by_status[str(code)] = by_status.get(str(code), 0) + 1
    hidden = [b["details"]["run_id"] for code, b in answers if code == 503 and (b.get("details") or {}).get("run_id")]
    answered = {b["run_id"] for code, b in answers if code == 200}
    started = {
        r["run_id"]
        for r in requests.get(f"{sandbox.url}/apis/v2beta1/runs?page_size=200", timeout=30).json().get("runs", [])
        if r.get("display_name", "").startswith(f"{name}-tj-")
    }
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        known = _known(server, started)
        if known == started:
            break
        time.sleep(0.5)
    server.stop()
    receiver.stop()
    return {
        "executions": len(answers),
        "answers": by_status,
        "503_hiding_a_started_run": len(hidden),
        "runs_kfp_started": len(started),
        "answered_200": len(answered),
        "started_but_not_answered_200": len(started - answered),
        "started_and_tracked_or_notified_after": len(known),
        "while_down": down,
    }


def _known(server: Server, run_ids: set[str]) -> set[str]:
    known = set()
    for run_id in run_ids:
        try:
            body = requests.get(f"{server.url}/runs/{run_id}", timeout=10).json()
        except (requests.RequestException, ValueError):
            continue
        if body.get("trainingjob_id"):
            known.add(run_id)
    return known


def full_disk(sandbox: Sandbox, workdir: Path) -> dict:
    """Readiness while the SQLite store's file system is full (a 4 MiB tmpfs; root only)."""
    mount = workdir / "small"
    mount.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        return {"skipped": "cannot mount a tmpfs (needs root)"}
    server = None
    try:
        server = Server(_env(sandbox, {"KFADAPTER_STORE_PATH": str(mount / "store.sqlite")}), workdir / "full.log")
        deadline = time.monotonic() + 60
        while server.readiness() != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = server.readiness()
        with open(mount / "filler", "wb", buffering=0) as fh:  # fill the file system to the last byte
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
            try:
                while True:
                    fh.write(b"\0")
                    fh.flush()
            except OSError:
                pass
        full = [server.readiness() for _ in range(3)]
        os.unlink(mount / "filler")
        time.sleep(0.5)
        after = server.readiness()
        return {"readiness_before": before, "readiness_full": full, "readiness_after_freeing": after}
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="race rounds per backend")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds PostgreSQL stays down at start")
    parser.add_argument("--out", default=str(ROOT / "bench" / "startup.json"))
    parser.add_argument("--only", help="comma-separated sections to run (default: all)")
    args = parser.parse_args()
    bindir = server_binaries()
    if bindir is None:
        sys.exit("needs PostgreSQL server binaries (make postgres)")
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-bench-startup-"))
    sandbox = Sandbox(workdir)
    postgres = PostgresServer(bindir)
    sections = {
        "race_sqlite": lambda: race(sandbox, postgres, workdir, "sqlite", args.rounds),
        "race_postgresql": lambda: race(sandbox, postgres, workdir, "postgresql", args.rounds),
        "postgres_down_at_start": lambda: postgres_down_at_start(sandbox, postgres, workdir, args.wait),
        "postgres_stopped_during_executions": lambda: postgres_stopped_during_executions(sandbox, postgres, workdir),
        "full_disk": lambda: full_disk(sandbox, workdir),
    }
    if args.only:
        sections = {k: v for k, v in sections.items() if k in args.only.split(",")}
    result: dict = {}
    try:
        for name, section in sections.items():
            try:
                result[name] = section()
            except Exception as exc:  # a section that breaks is a figure too
                result[name] = {"bench_error": f"{type(exc).__name__}: {exc}"}
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")  # what is done so far
    finally:
        postgres.destroy()
        sandbox.stop()
    result["load_average"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
