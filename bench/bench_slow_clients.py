"""Slow and idle clients against `kfadapter serve` (gunicorn): are /liveness and a KFP-backed request answered?

Phases, each with the probes running throughout: 64 clients sending their request head a byte at a time, 64
uploads sending their body at 50 B/s, 300 idle connections, then all three at once. An attacker whose
connection is closed connects again at once, so the pressure holds for the whole phase. Every second the
prober sends `GET /liveness` and `GET /pipelineIds/<name>` (one KFP call behind it) and counts the answers that
came within 1 s. Prints JSON (and writes bench/slow_clients.json); asserts nothing.

`GUNICORN_CMD_ARGS="--worker-class gthread" python bench/bench_slow_clients.py` measures gunicorn's own gthread
worker for comparison (the command line wins over kfadapter/server/gunicorn_conf.py).
"""
from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Sandbox, upload  # noqa: E402
from tests.support import Service, clean_env  # noqa: E402

SLOW_HEAD = b"GET /liveness HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 8000  # never ends in time
UPLOAD_BODY = 100_000  # bytes announced by each slow upload (at 50 B/s it would take 2,000 s)


class Attacker:
    """One connection that keeps sending `rate` bytes per second of `payload`; reconnects when dropped."""

    def __init__(self, port: int, payload: bytes, rate: float) -> None:
        self.port, self.payload, self.rate = port, payload, rate
        self.sock: socket.socket | None = None
        self.sent = 0
        self.next = 0.0
        self.drops = 0

    def tick(self, now: float) -> None:
        """Send what is due now, reading (and dropping) whatever the server answered."""
        if self.sock is None:
            self._connect()
            return
        try:
            if self.sock.recv(65536) == b"":
                raise ConnectionResetError
        except BlockingIOError:
            pass
        except OSError:
            self._reconnect()
            return
        if self.rate <= 0 or now < self.next:
            return
        step = max(1, int(self.rate / 10))
        chunk = self.payload[self.sent:self.sent + step]
        self.next = now + len(chunk) / self.rate if chunk else now + 1
        if chunk:
            try:
                self.sent += self.sock.send(chunk)
            except BlockingIOError:
                pass
            except OSError:
                self._reconnect()

    def _connect(self) -> None:
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            self.sock.setblocking(False)
            self.sent, self.next = 0, 0.0
        except OSError:
            self.sock = None

    def _reconnect(self) -> None:
        self.drops += 1
        self.close()
        self._connect()

    def close(self) -> None:
        """Close the connection."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def slow_upload_payload(i: int) -> bytes:
    head = (f"POST /pipelineIds/slow-{i} HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {UPLOAD_BODY}\r\n\r\n").encode()
    return head + b"--x\r\n" + b"b" * (UPLOAD_BODY - 5)


def attackers(port: int, slow_heads: int, slow_uploads: int, idle: int) -> list[Attacker]:
    out = [Attacker(port, SLOW_HEAD, 2.0) for _ in range(slow_heads)]
    out += [Attacker(port, slow_upload_payload(i), 50.0) for i in range(slow_uploads)]
    out += [Attacker(port, b"", 0.0) for _ in range(idle)]
    return out


def _probe(url: str, results: list, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ok = requests.get(url, timeout=5).status_code == 200
        except requests.RequestException:
            ok = False
        results.append((ok, time.perf_counter() - started))
        stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))


def _summary(results: list) -> dict:
    within = [s for ok, s in results if ok and s <= 1.0]
    lat = sorted(s for ok, s in results if ok)
    return {"answered_within_1s": len(within), "tries": len(results),
            "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "max_ms": round(max(lat) * 1000, 1) if lat else None,
            "failed_or_over_5s": sum(1 for ok, _ in results if not ok)}


def phase(service: Service, name: str, seconds: float, **counts: int) -> dict:
    """Run one phase: attackers established first, then probes while they keep going."""
    crowd = attackers(service.port, counts.get("slow_heads", 0), counts.get("slow_uploads", 0),
                      counts.get("idle", 0))
    stop, probing = threading.Event(), threading.Event()

    def drive() -> None:
        while not stop.is_set():
            now = time.monotonic()
            for a in crowd:
                a.tick(now)
            time.sleep(0.02)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    time.sleep(3)  # let every attacker connect and start sending
    live, kfp = [], []
    probes = [threading.Thread(target=_probe, args=(f"{service.url}/liveness", live, probing)),
              threading.Thread(target=_probe, args=(f"{service.url}/pipelineIds/bench-slow", kfp, probing))]
    for t in probes:
        t.start()
    time.sleep(seconds)
    probing.set()
    for t in probes:
        t.join()
    stop.set()
    driver.join()
    connected = sum(1 for a in crowd if a.sock is not None)
    for a in crowd:
        a.close()
    return {"phase": name, **counts, "liveness": _summary(live), "kfp_request": _summary(kfp),
            "attacker_connections_open_at_end": connected, "attacker_reconnects": sum(a.drops for a in crowd)}


def main() -> int:
    seconds = 12.0 if "--quick" in sys.argv else 30.0
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-bench-slow-"))
    sandbox = Sandbox(workdir)
    service = Service(clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_PATH=str(workdir / "s.sqlite"),
                                KFADAPTER_WATCH="false", KFADAPTER_LOG_LEVEL="WARNING"), workdir / "adapter.log")
    try:
        upload(service.url, "bench-slow")
        runs = [phase(service, "slow headers", seconds, slow_heads=64),
                phase(service, "slow uploads", seconds, slow_uploads=64),
                phase(service, "idle connections", seconds, idle=300),
                phase(service, "all at once", seconds, slow_heads=64, slow_uploads=64, idle=300)]
    finally:
        service.stop()
        sandbox.stop()
    import os

    text = json.dumps({"worker": os.environ.get("GUNICORN_CMD_ARGS") or "kfadapter/server/gunicorn_conf.py",
                       "seconds_per_phase": seconds, "phases": runs}, indent=2)
    print(text)
    (ROOT / "bench" / "slow_clients.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
