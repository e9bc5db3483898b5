"""Benchmark: issue #13's hostile inputs against `kfadapter serve` (gunicorn, real workers), one at a time.

For each attack: reset every worker's peak RSS (`5` > /proc/<pid>/clear_refs), send the request, then read each
worker's VmHWM: growth = peak after - RSS before, the largest over the workers. Also the time until the answer
and its status and code. Target (issue #13): no attack grows a worker by more than 100 MiB, and each gets a 4xx
JSON answer within 5 s. Prints one JSON object and writes it to bench/hostile_results.json.

    .venv/bin/python bench/bench_hostile.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import hostile  # noqa: E402
from tests.support import Service, clean_env, status_kib, worker_pids  # noqa: E402

MIB = 1024 * 1024
TARGET_GROWTH_MIB, TARGET_SECONDS = 100, 5.0
EXEC = "/trainingjobs/tj1/execution"


def _attacks() -> list[tuple[str, str, str, bytes]]:
    """(name, route kind, what it is, body) for every attack of the issue's "Why"."""
    return [
        ("billion_laughs", "upload", "v1 package of nested YAML aliases", hostile.billion_laughs()),
        ("gnu_longname_1gib", "upload", "tar.gz whose GNU long-name header declares 1 GiB",
         hostile.tar_gz_extension("longname")),
        ("pax_header_1_2gib", "upload", "tar.gz whose PAX header declares 1.2 GiB",
         hostile.tar_gz_extension("pax", int(1.2 * hostile.GIB))),
        ("directories_300k", "upload", "tar.gz of 300,000 directory entries and the package",
         hostile.tar_gz_directories()),
        ("gzip_bomb_1gib", "upload", "tar.gz holding a 1 GiB file of zeros", hostile.tar_gz_bomb()),
        ("zip_directories_70k", "upload", "zip of 70,000 directory entries and the package",
         hostile.zip_directories()),
        ("json_32mib", "execution", "32 MiB execution body of {}", hostile.json_flood()),
        ("json_nested_100k", "execution", "execution body nested 100,000 brackets deep", hostile.nested_json()),
        ("legit_v1_upload", "upload", "baseline: the real v1 package", hostile.V1_PACKAGE),
    ]


def _send(url: str, kind: str, body: bytes) -> requests.Response:
    if kind == "upload":
        return requests.post(f"{url}/pipelineIds/hostile", files={"file": ("file", body)}, timeout=120)
    return requests.post(url + EXEC, data=body, headers={"Content-Type": "application/json"}, timeout=120)


def measure(url: str, master: int, kind: str, body: bytes) -> dict:
    """Send one request; return its status, code, seconds and the largest worker growth in MiB."""
    workers = worker_pids(master)
    before = {}
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before[pid] = status_kib(pid, "VmRSS")
    started = time.perf_counter()
    resp = _send(url, kind, body)
    seconds = time.perf_counter() - started
    growth = max((status_kib(pid, "VmHWM") - before[pid]) / 1024 for pid in workers)
    answer = resp.json() if resp.headers.get("Content-Type") == "application/json" else {}
    return {"status": resp.status_code, "content_type": resp.headers.get("Content-Type"),
            "code": answer.get("code"), "message": answer.get("message"), "seconds": round(seconds, 3),
            "worker_growth_mib": round(growth, 1)}


def main() -> None:
    """Run every attack `--repeat` times against a fresh service and print the worst figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from kfadapter.sandbox import SandboxServer

    attacks = _attacks()
    sandbox = SandboxServer(host="127.0.0.1", port=0).start()
    with tempfile.TemporaryDirectory(prefix="kfadapter-bench-hostile-") as tmp:
        env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_PATH=f"{tmp}/store.sqlite",
                        KFADAPTER_WATCH="false", KFADAPTER_LOG_LEVEL="WARNING")
        svc = Service(env, Path(tmp) / "service.log")
        try:
            for _ in range(3):  # warm every worker's imports and connection pools
                _send(svc.url, "upload", hostile.V1_PACKAGE)
                _send(svc.url, "execution", b"{}")
            results = {}
            for name, kind, what, body in attacks:
                runs = [measure(svc.url, svc.proc.pid, kind, body) for _ in range(args.repeat)]
                worst = max(runs, key=lambda r: (r["worker_growth_mib"], r["seconds"]))
                results[name] = worst | {"what": what, "request_bytes": len(body),
                                         "max_seconds": max(r["seconds"] for r in runs),
                                         "max_worker_growth_mib": max(r["worker_growth_mib"] for r in runs)}
        finally:
            svc.stop()
        # Instrument check: the same 32 MiB body with the size cap lifted must show the growth the cap prevents.
        lifted = Service(env | {"KFADAPTER_MAX_JSON_BYTES": str(64 * MIB)}, Path(tmp) / "lifted.log")
        try:
            _send(lifted.url, "execution", b"{}")
            control = measure(lifted.url, lifted.proc.pid, "execution", hostile.json_flood())
        finally:
            lifted.stop()
            sandbox.stop()
    hostile_ok = all(r["max_worker_growth_mib"] <= TARGET_GROWTH_MIB and r["max_seconds"] <= TARGET_SECONDS
                     and 400 <= r["status"] < 500 and r["content_type"] == "application/json"
                     for n, r in results.items() if not n.startswith("legit"))
    out = {"target": {"worker_growth_mib": TARGET_GROWTH_MIB, "seconds": TARGET_SECONDS}, "repeat": args.repeat,
           "all_within_target": hostile_ok, "attacks": results,
           "instrument_check": control | {"what": "json_32mib with KFADAPTER_MAX_JSON_BYTES=64 MiB (cap lifted)"}}
    text = json.dumps(out, indent=2)
    print(text)
    (ROOT / "bench" / "hostile_results.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
