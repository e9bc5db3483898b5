"""The README's walkthrough, run verbatim against `kfadapter serve --sandbox` (only the ports differ)."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def walkthrough() -> str:
    """Return the first sh block after the README's Walkthrough heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Walkthrough"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_readme_walkthrough(tmp_path):
    port, kfp_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFADAPTER_", "KF_", "KUBEFLOW_"))}
    env["KFADAPTER_STORE_PATH"] = str(tmp_path / "store.sqlite")
    server = subprocess.Popen(
        [sys.executable, "-m", "kfadapter.cli", "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port),
         "--sandbox-port", str(kfp_port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{port}/readiness", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("kfadapter serve --sandbox did not become ready")
        script = walkthrough().replace("127.0.0.1:5001", f"127.0.0.1:{port}").replace(
            "127.0.0.1:8888", f"127.0.0.1:{kfp_port}")
        # Same commands, but any HTTP error fails the script.
        strict = "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n" + script
        done = subprocess.run(["bash", "-c", strict], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        out = done.stdout
        assert '"version_name": "qoe_Pipeline"' in out and '"version_name": "2"' in out
        assert '"versions_list": ["qoe_Pipeline", "2"]' in out
        assert '"run_status": "scheduled"' not in out  # captured into $RUN, not printed
        assert '"run_status": "CANCELED"' in out and '"featurepath"' in out
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
