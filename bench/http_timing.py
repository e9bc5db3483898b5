"""HTTP timing for the benches: latency on kept-alive or new connections, interleaved, and throughput.

Both the adapter and the floor (the same KFP call made directly to the sandbox) are timed with the same small
client (http.client), so the client's own cost weighs alike on both sides.
"""

from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

SIDES = ("adapter", "floor")
MODES = ("kept_alive", "new_connection")


class Client:
    """GET over http.client: `keep` reuses one connection (reopened if the server closed it), else one per request."""

    def __init__(self, base_url: str, keep: bool) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.keep = parts.hostname, parts.port, keep
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> None:
        """Make one GET and read the whole answer; raise unless it is a 200."""
        if not self.keep:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self._exchange(conn, path)
            finally:
                conn.close()
            return
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self._exchange(self._conn, path)
                return
            except (http.client.RemoteDisconnected, ConnectionError):  # the server closed an idle connection
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise

    def _exchange(self, conn: http.client.HTTPConnection, path: str) -> None:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        if resp.will_close:
            conn.close()
            if conn is self._conn:
                self._conn = None

    def close(self) -> None:
        """Close the kept connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def summary(samples: list[float]) -> dict:
    """Median and p95 (ms) of samples in seconds."""
    ms = sorted(s * 1000 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(statistics.quantiles(ms, n=20)[18], 3),
        "n": len(ms),
    }


def latency(urls: dict[str, str], routes: dict[str, dict[str, str]], rounds: int, per_round: int) -> dict:
    """Time each route on each side and mode, interleaved round by round so drift hits all alike.

    `urls` maps side -> base URL; `routes` maps label -> {side: path}. Returns label -> mode -> side -> summary,
    plus the added median and p95 (adapter - floor).
    """
    clients = {(side, mode): Client(urls[side], mode == "kept_alive") for side in SIDES for mode in MODES}
    samples: dict = {label: {mode: {side: [] for side in SIDES} for mode in MODES} for label in routes}
    for (side, _mode), client in clients.items():  # warm up: connections, caches, the kfp client
        for paths in routes.values():
            for _ in range(5):
                client.get(paths[side])
    for r in range(rounds):
        for label, paths in routes.items():
            for mode in MODES:
                for side in SIDES if r % 2 == 0 else tuple(reversed(SIDES)):
                    client, path, out = clients[side, mode], paths[side], samples[label][mode][side]
                    for _ in range(per_round):
                        start = time.perf_counter()
                        client.get(path)
                        out.append(time.perf_counter() - start)
    for client in clients.values():
        client.close()
    result: dict = {}
    for label, modes in samples.items():
        result[label] = {}
        for mode, sides in modes.items():
            a, f = summary(sides["adapter"]), summary(sides["floor"])
            result[label][mode] = {
                "adapter": a,
                "floor": f,
                "added_median_ms": round(a["median_ms"] - f["median_ms"], 3),
                "added_p95_ms": round(a["p95_ms"] - f["p95_ms"], 3),
            }
    return result


def throughput(base_url: str, path: str, connections: int, seconds: float) -> int:
    """Count the answers `connections` kept-alive clients get in `seconds` (one thread each)."""
    done = [0] * connections
    stop = time.monotonic() + seconds
    failures: list[BaseException] = []

    def work(i: int) -> None:
        client = Client(base_url, keep=True)
        try:
            while time.monotonic() < stop:
                client.get(path)
                done[i] += 1
        except BaseException as exc:  # reported after the window
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"throughput on {path}: {failures[0]!r}")
    return sum(done)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (from /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def throughputs(
    urls: dict[str, str],
    routes: dict[str, dict[str, str]],
    connections: int,
    window: float,
    windows: int,
    pids: dict[str, list[int]],
) -> dict:
    """Requests per second of adapter and floor per route, in alternating windows, and their ratio.

    Also the CPU each request costs the adapter's workers and the sandbox (`pids`: "adapter" and "sandbox"),
    which a shared, busy machine disturbs far less than it disturbs the rates.
    """
    out = {}
    for label, paths in routes.items():
        counts = {side: 0 for side in SIDES}
        cpu = {(side, proc): 0.0 for side in SIDES for proc in pids}
        for w in range(windows):
            for side in SIDES if w % 2 == 0 else tuple(reversed(SIDES)):
                before = {proc: cpu_seconds(p) for proc, p in pids.items()}
                counts[side] += throughput(urls[side], paths[side], connections, window)
                for proc, p in pids.items():
                    cpu[side, proc] += cpu_seconds(p) - before[proc]
        rps = {side: counts[side] / (window * windows) for side in SIDES}
        out[label] = {
            "connections": connections,
            "adapter_rps": round(rps["adapter"], 1),
            "floor_rps": round(rps["floor"], 1),
            "share_of_floor": round(rps["adapter"] / rps["floor"], 3),
            "adapter_cpu_ms_per_request": round(cpu["adapter", "adapter"] * 1000 / max(counts["adapter"], 1), 3),
            "sandbox_cpu_ms_per_request": round(cpu["floor", "sandbox"] * 1000 / max(counts["floor"], 1), 3),
        }
    return out
