"""First contact with `make run` (`kfadapter serve --sandbox`) and `kfadapter sandbox`: a taken 8888 is no dead
end, and the console shows one line per request, no migration narration."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from contextlib import contextmanager

import requests

from tests.support import clean_env, free_port, wait_for


@contextmanager
def port_8888_taken():
    """Hold 127.0.0.1:8888 (if something else holds it already, it is taken all the same)."""
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 8888))
            holder.listen(1)
        except OSError:
            pass
        yield
    finally:
        holder.close()


def _start(tmp_path, *argv: str) -> tuple[subprocess.Popen, object]:
    log = tmp_path / "out.log"
    env = clean_env(KFADAPTER_STORE_PATH=str(tmp_path / "store.sqlite"), KFADAPTER_WATCH="false")
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "kfadapter.cli", *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_a_taken_8888_gives_the_sandbox_a_free_port_and_each_request_one_log_line(tmp_path):
    # One test holds 8888 (tests run side by side): `serve --sandbox` first, then `kfadapter sandbox` alone.
    port = free_port()
    with port_8888_taken():
        _sandbox_alone_takes_a_free_port(tmp_path)
        proc, log = _start(tmp_path, "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port))
        try:
            wait_for(lambda: "kfadapter on http" in log.read_text() or proc.poll() is not None, "the banner")
            text = log.read_text()
            assert proc.poll() is None, text
            assert "port 8888 is taken: the sandbox KFP takes a free port instead" in text
            kfp = re.search(r"sandbox KFP 2\.17 on (http://127\.0\.0\.1:(\d+))", text)
            assert kfp and kfp.group(2) != "8888", text
            assert requests.get(f"{kfp.group(1)}/apis/v2beta1/healthz", timeout=10).ok
            assert f"notifications go to {kfp.group(1)}/_sandbox/notifications" in text
            before = len(log.read_text().splitlines())
            for _ in range(2):
                assert requests.get(f"http://127.0.0.1:{port}/runs", timeout=30).ok
            wait_for(lambda: log.read_text().count("GET /runs") >= 2, "the access log")
            new = log.read_text().splitlines()[before:]
            requests_seen = [line for line in new if "GET /runs" in line]
            assert len(requests_seen) == 2, new  # one line per request: werkzeug's own line is gone
            assert all("kfadapter.access" in line and "GET /runs 200" in line for line in requests_seen)
            assert "werkzeug" not in log.read_text()
            assert "alembic" not in log.read_text()  # the store's migrations do not narrate
        finally:
            _stop(proc)


def _sandbox_alone_takes_a_free_port(tmp_path) -> None:
    proc, log = _start(tmp_path, "sandbox")
    try:
        wait_for(lambda: "listening on" in log.read_text() or proc.poll() is not None, "the sandbox")
        text = log.read_text()
        assert "port 8888 is taken" in text, text
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text).group(1)
        assert not url.endswith(":8888") and requests.get(f"{url}/apis/v2beta1/healthz", timeout=10).ok
    finally:
        _stop(proc)


def test_a_sandbox_port_asked_for_and_taken_is_an_error_naming_the_option(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "serve", "--sandbox", "--port", str(free_port()),
                               "--sandbox-port", str(taken)], env=clean_env(), capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 2
    assert f"port {taken} on 127.0.0.1 is taken (--sandbox-port {taken})" in done.stderr
    assert "Traceback" not in done.stderr
