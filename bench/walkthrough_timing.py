"""Benchmark: how long the README walkthrough's run takes the first time (cold pip cache) and afterwards.

Starts `kfadapter serve --sandbox` with a fresh, empty PIP_CACHE_DIR, uploads examples/qoe_train_v2.yaml, starts
the walkthrough's run (TM's execution call) and times it from the call to SUCCEEDED; then does the same
`--runs` more times with the cache now warm. Prints one JSON object (seconds per run). The figures go into the
README ("Walkthrough"); they depend on the machine's load and the package index's speed, so the machine's load
average is recorded beside them in bench/walkthrough_timing.json.

    .venv/bin/python bench/walkthrough_timing.py [--runs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import SandboxService  # noqa: E402

BODY = {"pipeline_name": "qoe_Pipeline", "experiment_name": "Default",
        "arguments": {"epochs": "5", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "qoe",
                      "modelVersion": "1", "modellocation": ""}}


def timed_run(url: str, trainingjob_id: str, limit: float = 600.0) -> dict:
    """Start one run the way TM does and return its end state and the seconds it took."""
    started = time.monotonic()
    resp = requests.post(f"{url}/trainingjobs/{trainingjob_id}/execution", json=BODY, timeout=60)
    resp.raise_for_status()
    run_id = resp.json()["run_id"]
    while time.monotonic() - started < limit:
        state = requests.get(f"{url}/runs/{run_id}", timeout=30).json()["run_status"]
        if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            return {"run_status": state, "seconds": round(time.monotonic() - started, 1)}
        time.sleep(0.5)
    return {"run_status": "unfinished", "seconds": limit}


def main() -> int:
    """Run the measurement and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs with the warm cache after the first one")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine slows the runs down
    with tempfile.TemporaryDirectory(prefix="kfadapter-bench-") as tmp:
        tmp_path = Path(tmp)
        service = SandboxService(tmp_path, ROOT, PIP_CACHE_DIR=str(tmp_path / "pip-cache"))
        try:
            with open(ROOT / "examples/qoe_train_v2.yaml", "rb") as fh:
                requests.post(f"{service.url}/pipelineIds/qoe_Pipeline", files={"file": ("file", fh)},
                              data={"description": ""}, timeout=120).raise_for_status()
            first = timed_run(service.url, "cold")
            later = [timed_run(service.url, f"warm{i}") for i in range(args.runs)]
        finally:
            service.stop()
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "first_run_cold_pip_cache": first, "later_runs_warm_cache": later}
    text = json.dumps(result, indent=2)
    (ROOT / "bench" / "walkthrough_timing.json").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
