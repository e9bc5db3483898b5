"""Helpers for tests that run `kfadapter serve` as a real process."""
from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ENV_PREFIXES = ("KFADAPTER_", "KF_", "KUBEFLOW_", "TRAININGMGR_", "PROMETHEUS_")


# Ports handed to servers the tests start. They come from below Linux's ephemeral range (32768-60999), so a port
# chosen here is never taken meanwhile as the source port of some client connection, and each process walks its own
# sequence from a random start, so parallel test processes (pytest-xdist workers, other checkouts) rarely meet.
_PORTS = range(15000, 32000)
_next_port = itertools.count(random.SystemRandom().randrange(len(_PORTS)))


def serve_in_background(server) -> threading.Thread:
    """Run a socketserver's `serve_forever` on a daemon thread, polling for `shutdown()` every 20 ms.

    socketserver polls every 0.5 s by default, and `shutdown()` waits for the next poll: half a second in the
    teardown of every test that serves something.
    """
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return thread


def status_kib(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def worker_pids(master_pid: int) -> list[int]:
    """The child processes of gunicorn's master: its workers."""
    return [int(pid) for pid in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()]


def free_port() -> int:
    """Return a loopback port that is free now and that no other free_port() call in this process returns soon."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 15000 and 32000")


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment without the adapter's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update(extra)
    return env


def wait_for(predicate, what: str, limit: float = 60.0) -> None:
    """Poll `predicate` until it holds; fail the test after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


class Service:
    """`kfadapter serve` (gunicorn) in its own process group, on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path, args: tuple[str, ...] = (), wait: bool = True) -> None:
        """Start it; with `wait` (the default) return once it answers /liveness, else at once (to start several
        together, or to watch a start that may fail)."""
        self.port = free_port()
        self.log_path = Path(log_path)
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kfadapter.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port), *args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        if not wait:
            return
        try:
            wait_for(self._live, "the service to start")
        except BaseException:
            self.kill9()
            raise

    def readiness(self) -> int:
        """Return /readiness's status code; 0 when nothing answers."""
        try:
            return requests.get(f"{self.url}/readiness", timeout=10).status_code
        except requests.RequestException:
            return 0

    def text(self) -> str:
        """What the service has logged so far."""
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def _live(self) -> bool:
        try:
            return requests.get(f"{self.url}/liveness", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening, or workers still loading
            assert self.proc.poll() is None, "the service exited: " + open(self.log_path).read()[-2000:]
            return False

    def kill9(self) -> None:
        """Kill the whole process group without warning."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        """SIGTERM the server (gunicorn's graceful shutdown) and return its exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode




class SandboxService:
    """`kfadapter serve --sandbox` (adapter, sandbox KFP and watcher in one process) on free loopback ports."""

    def __init__(self, tmp_path, cwd, *args: str, kfp_version: str = "2.17", **env: str) -> None:
        self.port, self.kfp_port = free_port(), free_port()
        self.url, self.kfp_url = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.kfp_port}"
        self.log_path = tmp_path / "serve-sandbox.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kfadapter.cli", "serve", "--sandbox", "--host", "127.0.0.1", "--port",
             str(self.port), "--sandbox-port", str(self.kfp_port), "--kfp-version", kfp_version, *args],
            cwd=cwd,
            # KFADAPTER_STORE_PATH="" leaves the store unconfigured (serve --sandbox then keeps a per-start one).
            env=clean_env(**({"KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite")} | env)), stdout=self.log,
            stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, "kfadapter serve --sandbox to become ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readiness", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            assert self.proc.poll() is None, "serve --sandbox exited: " + self.log_path.read_text()[-2000:]
            return False

    def stop(self) -> None:
        """Terminate the process (it stops its executing runs) and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
