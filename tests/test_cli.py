"""The command line: every option explains itself, and the `serve --sandbox` banner gives the endpoints that
`kfadapter outputs` needs (KFP, ML Metadata, object store with its credentials from the environment)."""
from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys

import requests

from kfadapter import cli

from tests.conftest import PIPELINES
from tests.support import SandboxService, clean_env, wait_for


def _commands(parser: argparse.ArgumentParser, path: str = "kfadapter"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def test_every_option_of_every_subcommand_has_help():
    walked, missing = [], []
    for path, parser in _commands(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
                continue
            walked.append(f"{path} {action.dest}")
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    assert "kfadapter sandbox host" in walked and "kfadapter outputs object_store_endpoint" in walked


def _banner(text: str, prefix: str) -> str:
    return re.search(re.escape(prefix) + r" (\S+)", text).group(1)


def test_banner_endpoints_feed_kfadapter_outputs(tmp_path):
    server = SandboxService(tmp_path, PIPELINES.parents[2], KFADAPTER_WATCH="false")
    try:
        wait_for(lambda: "sandbox object store on" in server.log_path.read_text(), "the banner")
        banner = server.log_path.read_text()
        kfp, mlmd = _banner(banner, "sandbox KFP 2.17 on"), _banner(banner, "sandbox ML Metadata (gRPC) on")
        objects = _banner(banner, "sandbox object store on")
        assert kfp == server.kfp_url and objects == f"{kfp}/_s3" and re.fullmatch(r"127\.0\.0\.1:\d+", mlmd)
        with (PIPELINES / "container_echo_v2.yaml").open("rb") as fh:
            assert requests.post(f"{server.url}/pipelineIds/echo", files={"file": ("file", fh)}, timeout=30).ok
        run_id = requests.post(f"{server.url}/trainingjobs/tj/execution", timeout=30, json={
            "pipeline_name": "echo", "arguments": {"text": "hi"}}).json()["run_id"]
        # A container component fails at once; then give the run ML Metadata records with an artifact's bytes.
        wait_for(lambda: requests.get(f"{server.url}/runs/{run_id}", timeout=10).json()["run_status"] == "FAILED",
                 "the run to fail")
        doc = {"tasks": [{"name": "echo", "outputs": {"n": 2.0}, "artifacts": [
            {"name": "model", "uri": "minio://mlpipeline/v2/m", "content_base64": base64.b64encode(b"w").decode()}]}]}
        assert requests.put(f"{kfp}/_sandbox/runs/{run_id}/mlmd", json=doc, timeout=10).ok
        access, secret = re.search(r"access key (\S+), secret key (\S+)\)", banner).groups()
        keys = {"KFADAPTER_OBJECT_STORE_ACCESS_KEY": access, "KFADAPTER_OBJECT_STORE_SECRET_KEY": secret}
        done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "outputs", run_id, "--kfp-endpoint", kfp,
                               "--mlmd-endpoint", mlmd, "--object-store-endpoint", objects],
                              env=clean_env(**keys), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        echo = {o["name"]: o for o in json.loads(done.stdout)["tasks"][0]["outputs"]}
        assert echo["n"]["value"] == 2.0 and echo["model"]["value"] == "w" and echo["model"]["available"] is True
        # The same without --object-store-endpoint: URIs only, and it says why.
        done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "outputs", run_id, "--kfp-endpoint", kfp,
                               "--mlmd-endpoint", mlmd], env=clean_env(), capture_output=True, text=True,
                              timeout=60)
        model = {o["name"]: o for o in json.loads(done.stdout)["tasks"][0]["outputs"]}["model"]
        assert model["available"] is False and "KFADAPTER_OBJECT_STORE_ENDPOINT" in model["reason"]
    finally:
        server.stop()
