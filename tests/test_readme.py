"""The README's walkthrough, run verbatim against `kfadapter serve --sandbox` (only the ports differ)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.execution import require_kfp_local
from tests.support import SandboxService

ROOT = Path(__file__).resolve().parent.parent


def walkthrough() -> str:
    """Return the first sh block after the README's Walkthrough heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Walkthrough"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def _json_lines(out: str) -> list:
    """Every JSON document the walkthrough printed (curl answers end without a newline: split them apart)."""
    import json

    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(out):
        if out[i] in "{[":
            try:
                doc, end = decoder.raw_decode(out, i)
            except ValueError:
                i += 1
                continue
            docs.append(doc)
            i = end
        else:
            i += 1
    return docs


@pytest.mark.execute
@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
@pytest.mark.parametrize("kfp_version", ["2.3", "2.17"])  # O-RAN's KFP and the newest
def test_readme_walkthrough(tmp_path, kfp_version):
    require_kfp_local()  # the walkthrough's run really executes (kfp.local pip-installs kfp in each task)
    server = SandboxService(tmp_path, ROOT, kfp_version=kfp_version)
    port, kfp_port = server.port, server.kfp_port
    try:
        script = walkthrough().replace("127.0.0.1:5001", f"127.0.0.1:{port}").replace(
            "127.0.0.1:8888", f"127.0.0.1:{kfp_port}")
        if not (ROOT / ".venv/bin/kfadapter").exists():  # tests run from another environment than `make`'s
            script = script.replace(".venv/bin/kfadapter", f"{sys.executable} -m kfadapter.cli")
        # Same commands, but any HTTP error fails the script.
        strict = "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n" + script
        done = subprocess.run(["bash", "-c", strict], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        out = done.stdout
        answers = [a for a in _json_lines(out) if isinstance(a, dict)]  # the tables and logs hold brackets too
        assert {a.get("version_name") for a in answers} >= {"qoe_Pipeline", "2"}
        assert ["qoe_Pipeline", "2"] in [a.get("versions_list") for a in answers]
        assert "scheduled" in [a.get("run_status") for a in answers]  # the execution's answer, as TM reads it
        assert '"featurepath"' in out
        run_id = next(a["run_id"] for a in answers if a.get("run_status") in ("PENDING", "RUNNING"))
        # `kfadapter runs wait` printed each change, then the run as a table (and exited 0: it SUCCEEDED)
        changes = re.findall(r"^\d\d:\d\d:\d\d  (run|task \S+) +(\S+)$", out, re.M)
        assert ("task train", "SUCCEEDED") in changes and ("run", "SUCCEEDED") in changes, out[-3000:]
        assert changes.index(("task prepare", "SUCCEEDED")) < changes.index(("task train", "SUCCEEDED"))
        assert re.search(rf"^run {run_id} .*\nstatus      SUCCEEDED\ncreated .*\nfinished    \S+Z$", out, re.M)
        assert re.search(r"^prepare +SUCCEEDED", out, re.M) and re.search(r"^train +SUCCEEDED", out, re.M)
        notes = next(a["notifications"] for a in answers if "notifications" in a)
        assert {"run_id": run_id, "run_status": "SUCCEEDED", "trainingjob_id": "tj1"} in [n["body"] for n in notes]
        outputs = next(a for a in answers if "tasks" in a and "finished" in a and a.get("run_id") == run_id)  # /outputs
        train = {o["name"]: o for t in outputs["tasks"] if t["name"] == "train" for o in t["outputs"]}
        assert train["accuracy"]["value"] == 0.91 and isinstance(train["accuracy"]["value"], float)
        assert train["summary"]["value"] == {"epochs": 5, "rows": 100} and train["ok"]["value"] is True
        assert train["metrics"]["available"] is True and train["metrics"]["value"] == {"accuracy": 0.91}
        assert next(a for a in answers if "service" in a)["links"]["openapi"] == "/openapi.json"
        assert {"name": "qoe", "version": "1", "weights": [0.1, 0.2]} in answers  # the model artifact's bytes
        assert "Wrote executor output file" in out  # the end of the train step's log (kfp's executor says it)
        # DELETE answers the terminated run as KFP has it then (CANCELING, or already FAILED); its workflow,
        # stopped by a deadline of 0, ends Failed and says so in the failed step's message.
        stopped = next(a for a in answers if a.get("terminated") is True)
        assert stopped["run_id"] != run_id and stopped["run_status"] in ("CANCELING", "FAILED"), out[-3000:]
        ended = re.search(rf"^run {stopped['run_id']} .*\nstatus      FAILED\n(?:.*\n)*?error +(.*)$", out, re.M)
        assert ended and "Step exceeded its deadline" in ended.group(1), out[-3000:]
        assert f"run {stopped['run_id']} did not succeed: it was stopped" in out  # `wait` exited 1
        history = next(a for a in answers if a.get("trainingjob_id") == "tj2" and "runs" in a)["runs"]
        assert [(r["run_id"], r["state"], r["notification"]["status"]) for r in history] == [
            (stopped["run_id"], "FAILED", "not_sent")]  # DELETE kept it in the job's history
        assert not any(a.get("run_status") == "CANCELED" for a in answers)
        assert any(a.get("counts") for a in answers)  # the sandbox's request counters
    finally:
        server.stop()
