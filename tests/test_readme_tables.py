"""The README's tables stay complete: every variable the code reads is in the settings table, every route of
the OpenAPI document is in the routes table; and the walkthrough's `wait_run` says when it gives up."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import package, upload
from tests.test_readme import walkthrough

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The adapter's own names (gunicorn's knobs included) and the O-RAN names it still honours.
VARIABLE = re.compile(r"\b(?:KFADAPTER_[A-Z0-9_]*[A-Z0-9]|KUBEFLOW_[A-Z0-9_]*[A-Z0-9]|KF_[A-Z0-9_]*[A-Z0-9]"
                      r"|TRAININGMGR_[A-Z0-9_]*[A-Z0-9]|PROMETHEUS_MULTIPROC_DIR)\b")


NOT_VARIABLES = {"KFADAPTER_SETTINGS"}  # the Flask config key that holds the Settings object, not the environment


def variables_in_code() -> set[str]:
    """Every variable name the package's source mentions (settings, gunicorn config, CLI, sandbox)."""
    found = set()
    for path in (ROOT / "kfadapter").rglob("*.py"):
        found |= set(VARIABLE.findall(path.read_text(encoding="utf-8")))
    return found - NOT_VARIABLES


def _table(heading: str) -> list[str]:
    """The rows of the first table after `heading`."""
    section = README[README.index(heading):]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows[2:]  # header and separator


def variables_in_table() -> set[str]:
    """Names in the Configuration table; `KFADAPTER_A_B` / `_C` in one cell also lists `KFADAPTER_A_C`."""
    named = set()
    for row in _table("## Configuration"):
        for cell in row.split("|"):
            full = VARIABLE.findall(cell)
            named |= set(full)
            for suffix in re.findall(r"`(_[A-Z0-9_]+)`", cell):
                for name in full:  # each shorter prefix of a full name in the cell, plus the suffix
                    parts = name.split("_")
                    named |= {"_".join(parts[:i]) + suffix for i in range(1, len(parts))}
    return named


def test_settings_table_lists_every_variable_the_code_reads():
    in_code = variables_in_code()
    assert {"KFADAPTER_KFP_ENDPOINT", "KFADAPTER_GUNICORN_WORKERS", "KUBEFLOW_HOST", "KFADAPTER_LOG_LEVEL",
            "KFADAPTER_API_TOKEN_FILE"} <= in_code  # the scan itself finds names
    missing = sorted(in_code - variables_in_table())
    assert missing == [], f"missing from the README's Configuration table: {missing}"


def _normalize(path: str) -> str:
    path = re.split(r"[\[?]", path, maxsplit=1)[0]
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_routes_table_lists_every_route_of_the_openapi_document():
    doc = yaml.safe_load((ROOT / "kfadapter/api/openapi.yaml").read_text(encoding="utf-8"))
    documented = {(method.upper(), _normalize(path)) for path, item in doc["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    listed = set()
    for row in _table("## Routes"):
        match = re.match(r"\|\s*`([A-Z]+) ([^`]+)`", row)
        if match:
            listed.add((match.group(1), _normalize(match.group(2))))
    assert ("GET", "/metrics") in documented and ("GET", "/openapi.json") in documented
    missing = sorted(documented - listed)
    assert missing == [], f"missing from the README's Routes table: {missing}"


def test_the_walkthroughs_wait_says_when_it_gives_up(client, adapter_url):
    """The walkthrough's own `kfadapter runs wait`, with a 2 s limit, on a run that stays PENDING (v1: never
    executed): exit 3 and one line saying so."""
    line = next(x for x in walkthrough().splitlines() if "runs wait $RUN " in x)
    limit = re.search(r"--timeout (\d+)", line).group(1)
    assert upload(client, "v1", package("qoe_train_v1_argo.yaml")).status_code == 200
    run_id = client.post("/trainingjobs/tj/execution", json={"pipeline_name": "v1", "arguments": {
        "epochs": "1", "trainingjob_id": "tj", "featuregroup_name": "fg"}}).json["run_id"]
    shell = line.replace(f"--timeout {limit}", "--timeout 2").replace(".venv/bin/kfadapter",
                                                                     f"{sys.executable} -m kfadapter.cli")
    env = {**os.environ, "KFADAPTER_URL": adapter_url, "RUN": run_id}
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3, done.stderr
    assert done.stdout.split()[1:] == ["run", "PENDING"]  # the state it saw, once
    assert done.stderr.strip() == f"kfadapter runs wait: run {run_id} is still PENDING after 2 s, giving up"
