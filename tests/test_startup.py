"""Start-up that waits instead of dying, and a store that goes down while the adapter serves (issue #21).

Real `kfadapter serve` (gunicorn, 2 workers), real PostgreSQL stopped and started (tests/postgres.py), real
SQLite files; waits are bounded polls, never timing asserts. Figures: bench/bench_startup.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests
from sqlalchemy import text

from kfadapter.app import create_app
from kfadapter.watch import opening
from kfadapter.watch.store import Store
from tests.conftest import package
from tests.support import Service, clean_env, wait_for

ATTEMPT = "store not available yet (attempt "
MIGRATED = "store schema migrated"
ROUNDS = 3  # fresh stores per backend; bench/bench_startup.py runs more


def _ready(server: Service) -> bool:
    """Whether the server answers ready; fails the test at once when it has exited."""
    assert server.proc.poll() is None, "the server exited: " + server.text()[-3000:]
    return server.readiness() == 200


def _head() -> str:
    """The newest migration's revision (what every store must be at once a server is ready)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "kfadapter.watch:migrations")
    return ScriptDirectory.from_config(cfg).get_current_head()


def _revision(url: str) -> str:
    store = Store(url)
    with store.db.read() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_servers_of_two_workers_start_together_on_a_fresh_store(backend, sandbox, tmp_path, request):
    for round_ in range(ROUNDS):
        if backend == "sqlite":
            store = {"KFADAPTER_STORE_PATH": str(tmp_path / f"fresh-{round_}.sqlite")}
        else:
            store = {"KFADAPTER_STORE_URL": request.getfixturevalue("postgres_server").create_database()}
        env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_GUNICORN_WORKERS="2", **store)
        servers = [Service(env, tmp_path / f"serve-{round_}-{i}.log", wait=False) for i in range(2)]
        try:
            wait_for(lambda ss=servers: all(_ready(s) for s in ss), f"round {round_}: both servers ready", limit=120)
            time.sleep(0.5)  # a worker dying after the first answers would die now
            for s in servers:  # every worker of each server answers ready (new connections spread over both)
                assert all(requests.get(f"{s.url}/readiness", timeout=10).status_code == 200 for _ in range(6))
            logs = [s.text() for s in servers]
            assert all(s.proc.poll() is None for s in servers)
        finally:
            for s in servers:
                s.stop()
        for log in logs:
            assert log.count("Booting worker with pid") == 2, log[-3000:]  # no worker replaced
            assert "Worker failed to boot" not in log and "Traceback" not in log, log[-3000:]
        # The migrations ran in exactly one of the four workers; the other three found the schema at head.
        assert sum(log.count(MIGRATED) for log in logs) == 1, "\n".join(logs)[-4000:]
        assert _revision(store.get("KFADAPTER_STORE_URL") or store["KFADAPTER_STORE_PATH"]) == _head()


def _adapter_lines(log: str) -> list[str]:
    # JSON lines are the adapter's; gunicorn's own ("[time] [pid] [INFO] Booting worker ...") are not.
    return [line for line in log.splitlines() if line.startswith("{")]


def test_postgres_down_at_start_is_waited_for_with_one_line_per_attempt(sandbox, postgres_server, tmp_path):
    url = postgres_server.create_database()
    postgres_server.stop()
    try:
        env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_URL=url, KFADAPTER_GUNICORN_WORKERS="2")
        svc = Service(env, tmp_path / "serve.log")  # waits for liveness: the workers booted
        try:
            answers = []
            for _ in range(4):
                resp = requests.get(f"{svc.url}/readiness", timeout=30)
                answers.append((resp.status_code, resp.json()["code"], resp.headers["Content-Type"]))
                time.sleep(0.5)
            assert set(answers) == {(503, "store_unavailable", "application/json")}
            assert requests.get(f"{svc.url}/metrics", timeout=30).status_code == 200
            wait_for(lambda: svc.log_path.read_text().count(f"{ATTEMPT}3)") >= 2, "three attempts in each worker")
            assert svc.proc.poll() is None  # still serving, not exited
        finally:
            postgres_server.start()
        wait_for(lambda: requests.get(f"{svc.url}/readiness", timeout=30).status_code == 200, "ready", limit=60)
        log = svc.log_path.read_text()
        svc.stop()
    finally:
        _ensure_started(postgres_server)
    assert "Traceback" not in log and "Worker failed to boot" not in log, log[-3000:]
    records = [json.loads(line) for line in _adapter_lines(log)]
    attempts = [r for r in records if r["message"].startswith(ATTEMPT)]
    numbers = Counter(int(r["message"][len(ATTEMPT) :].split(")")[0]) for r in attempts)
    # One line per attempt and worker: attempts 1, 2, 3 ... each logged once by each of the two workers.
    assert numbers[1] == numbers[2] == numbers[3] == 2 and max(numbers.values()) == 2, numbers
    assert {r["level"] for r in attempts} == {"WARNING"}
    assert all("refused" in r["message"] or "connect" in r["message"] for r in attempts), attempts[0]
    # Nothing else was worth a warning while the database was down.
    assert [r for r in records if r["level"] in ("WARNING", "ERROR") and r not in attempts] == []


@pytest.mark.slow  # an attempt lasts the busy timeout (10 s)
def test_a_locked_sqlite_store_at_start_is_waited_for(settings, tmp_path, caplog):
    path = tmp_path / "locked.sqlite"
    Store(str(path)).close()  # an existing store, at head
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program (a backup, the sqlite3 shell) holds the file
    app = create_app(dataclasses.replace(settings, store_path=str(path)))
    store = app.extensions["kfadapter.store"]
    client = app.test_client()
    caplog.set_level(logging.WARNING, logger="kfadapter.watch.opening")
    try:
        opening.open_in_background(store)
        wait_for(lambda: any("locked" in r.getMessage() for r in caplog.records), "a failed attempt", limit=60)
        ready = client.get("/readiness")
        assert ready.status_code == 503 and ready.json["code"] == "store_unavailable"
        assert client.get("/liveness").status_code == 200
    finally:
        holder.rollback()
        holder.close()
    wait_for(lambda: store.is_open, "the store open once the lock is gone", limit=60)
    assert client.get("/readiness").status_code == 200
    lines = [r for r in caplog.records if r.name == "kfadapter.watch.opening" and r.levelno >= logging.WARNING]
    assert lines and all(r.exc_info is None and r.getMessage().startswith(ATTEMPT) for r in lines)


def test_store_unreachable_keeps_metrics_and_liveness_and_refuses_executions(settings, sandbox, kfp_counts):
    with socket.socket() as s:  # a port nothing listens on: PostgreSQL is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = dataclasses.replace(settings, store_url=f"postgresql://kfadapter@127.0.0.1:{port}/none")
    client = create_app(down).test_client()  # the factory does no I/O: it builds although the store is down
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "kfadapter_store_up 0.0" in metrics.text and "kfadapter_watch_tracked_runs NaN" in metrics.text
    assert client.get("/liveness").status_code == 200
    ready = client.get("/readiness")
    assert ready.status_code == 503 and ready.json["code"] == "store_unavailable"
    kfp_counts.reset()
    resp = client.post("/trainingjobs/tj-1/execution", json={"pipeline_name": "p", "arguments": {}})
    assert resp.status_code == 503 and resp.json["code"] == "store_unavailable"
    assert kfp_counts.read()["total"] == 0  # the intent could not be written: KFP was never asked


def test_metrics_say_the_store_is_up(client):
    assert "kfadapter_store_up 1.0" in client.get("/metrics").text


def test_readiness_is_503_while_the_stores_disk_is_full(settings, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        client = create_app(dataclasses.replace(settings, store_path=str(mount / "store.sqlite"))).test_client()
        assert client.get("/readiness").status_code == 200
        with open(mount / "filler", "wb", buffering=0) as fh:  # every byte of the file system
            for size in (65536, 1):
                try:
                    while True:
                        fh.write(b"\0" * size)
                        fh.flush()
                except OSError:
                    pass
        full = client.get("/readiness")
        assert full.status_code == 503 and full.json["code"] == "store_unavailable"
        assert "full" in full.json["message"]
        assert client.get("/metrics").status_code == 200
        os.unlink(mount / "filler")
        assert client.get("/readiness").status_code == 200
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _ensure_started(postgres) -> None:
    if postgres._run("pg_ctl", "-D", postgres.data, "status", check=False).returncode != 0:
        postgres.start()


def _set_state(sandbox, run_ids, state):
    requests.post(
        f"{sandbox.url}/_sandbox/runs/state", json={"run_ids": list(run_ids), "state": state}, timeout=30
    ).raise_for_status()


def test_postgres_stopped_during_executions_hides_no_started_run(sandbox, postgres_server, tm_receiver, tmp_path):
    url = postgres_server.create_database()
    env = clean_env(
        KFADAPTER_KFP_ENDPOINT=sandbox.url,
        KFADAPTER_STORE_URL=url,
        KFADAPTER_TM_URL=tm_receiver.url,
        KFADAPTER_POLL_INTERVAL="0.3",
        KFADAPTER_INTENT_GRACE="60",
    )
    svc = Service(env, tmp_path / "serve.log")
    try:
        wait_for(lambda: requests.get(f"{svc.url}/readiness", timeout=30).status_code == 200, "ready")
        requests.post(
            f"{svc.url}/pipelineIds/p",
            files={"file": ("file", package("add_v2.yaml"))},
            data={"description": ""},
            timeout=30,
        ).raise_for_status()
        # KFP takes 0.5 s to create each run and executions start 0.1 s apart, so when PostgreSQL stops some
        # have their intent written and wait for KFP: their run starts while the store is down.
        requests.post(
            f"{sandbox.url}/_sandbox/faults",
            json={"delay": 0.5, "status": None, "method": "POST", "path_prefix": "/apis/v2beta1/runs"},
            timeout=5,
        ).raise_for_status()
        answers: dict[str, tuple[int, dict]] = {}

        def execute(i: int) -> None:
            time.sleep(i * 0.1)
            resp = requests.post(
                f"{svc.url}/trainingjobs/tj-{i}/execution",
                timeout=60,
                json={"pipeline_name": "p", "experiment_name": "Default", "arguments": {}},
            )
            answers[f"tj-{i}"] = (resp.status_code, resp.json())

        threads = [threading.Thread(target=execute, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        postgres_server.stop()
        try:
            metrics = requests.get(f"{svc.url}/metrics", timeout=30)
            assert metrics.status_code == 200 and "kfadapter_store_up 0.0" in metrics.text
            ready = requests.get(f"{svc.url}/readiness", timeout=30)
            assert ready.status_code == 503 and ready.json()["code"] == "store_unavailable"
            time.sleep(1.5)
        finally:
            postgres_server.start()
        for t in threads:
            t.join(60)
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()
        assert len(answers) == 20 and {code for code, _ in answers.values()} <= {200, 503}
        runs = requests.get(f"{sandbox.url}/apis/v2beta1/runs?page_size=200", timeout=30).json().get("runs") or []
        started = {r["display_name"].rsplit("-", 2)[0]: r["run_id"] for r in runs}
        answered = {job: body["run_id"] for job, (code, body) in answers.items() if code == 200}
        # Every run KFP started was answered 200 with its id; every 503 left KFP untouched.
        assert started == answered, (started, answers)
        assert all("run_id" not in (body.get("details") or {}) for code, body in answers.values() if code == 503)
        deferred = [job for job, (code, body) in answers.items() if code == 200 and body.get("tracking") == "deferred"]
        assert deferred, "no run started while the store was down: the attack missed"
        # Once the store is back, each is tracked through its intent and its end notified exactly once.
        _set_state(sandbox, started.values(), "SUCCEEDED")
        wait_for(lambda: len(tm_receiver.received) >= len(started), "every started run notified", limit=60)
        time.sleep(1.0)
        assert sorted(tm_receiver.run_ids()) == sorted(started.values())
        print(
            f"\nPostgreSQL stopped during 20 executions: {len(answered)} answered 200 ({len(deferred)} deferred), "
            f"{20 - len(answered)} answered 503 with no run, 0 hidden; {len(tm_receiver.received)} notified"
        )
    finally:
        svc.stop()
        _ensure_started(postgres_server)
