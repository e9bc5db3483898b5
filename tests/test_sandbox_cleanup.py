"""The executing sandbox leaves nothing behind: run folders go when their run is deleted or the sandbox is reset,
stopped (SIGTERM) or killed (kill -9, then the next start removes them), and `serve --sandbox` keeps its store
in its per-start folder so a restart brings back no stale runs."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import requests

from kfadapter.app import create_app
from kfadapter.sandbox import SandboxServer, workdirs
from kfadapter.settings import Settings

from tests.conftest import PIPELINES, package, upload
from tests.support import SandboxService, wait_for

ROOT = PIPELINES.parents[2]
V1_ARGS = {"epochs": "3", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "m", "modelVersion": "1"}


def _folders(base: Path) -> list[Path]:
    return sorted(base.glob(workdirs.PREFIX + "*"))


def test_run_folders_go_with_delete_reset_and_stop(tmp_path):
    server = SandboxServer(execute=True, workers=2, workdir=str(tmp_path / "w")).start()
    root = server.executor.root
    try:
        assert root.parent == tmp_path / "w" and (root / workdirs.OWNER).is_file()
        client = create_app(Settings(kfp_endpoint=server.url, store_path=str(tmp_path / "s.sqlite"))).test_client()
        assert upload(client, "echo", package("container_echo_v2.yaml")).status_code == 200
        runs = []
        for tj in ("a", "b", "c"):
            resp = client.post(f"/trainingjobs/{tj}/execution", json={"pipeline_name": "echo",
                                                                        "arguments": {"text": "hi"}})
            runs.append(resp.json["run_id"])
        for run_id in runs:  # container components fail at once, after the run's folder was made
            assert server.executor.wait(run_id, 60)
            assert (root / run_id / "executor.log").is_file()
        assert requests.delete(f"{server.url}/apis/v2beta1/runs/{runs[0]}", timeout=10).ok
        assert not (root / runs[0]).exists() and (root / runs[1]).is_dir()
        assert requests.post(f"{server.url}/_sandbox/reset", timeout=10).ok
        assert not (root / runs[1]).exists() and not (root / runs[2]).exists()
        assert (root / workdirs.OWNER).is_file()  # the sandbox itself still runs
    finally:
        server.stop()
    assert not root.exists() and (tmp_path / "w").is_dir()


def test_sweep_removes_only_folders_of_dead_owners(tmp_path):
    mine = workdirs.create(tmp_path)
    dead = tmp_path / (workdirs.PREFIX + "dead")
    dead.mkdir()
    (dead / workdirs.OWNER).write_text('{"pid": 999999999, "started": "1"}')
    reused = tmp_path / (workdirs.PREFIX + "reused")  # a live pid that started at another time
    reused.mkdir()
    (reused / workdirs.OWNER).write_text(f'{{"pid": {os.getpid()}, "started": "-1"}}')
    foreign = tmp_path / (workdirs.PREFIX + "nobody")  # no owner file: not ours to judge
    foreign.mkdir()
    assert workdirs.sweep(tmp_path) == [dead, reused]
    assert _folders(tmp_path) == sorted([mine, foreign])


def _banner(service: SandboxService, prefix: str) -> Path:
    wait_for(lambda: prefix in service.log_path.read_text(), f"the banner line {prefix!r}")
    return Path(re.search(re.escape(prefix) + r"\s*([^\s)]+)", service.log_path.read_text()).group(1))


def _start_v1_run(url: str, tj: str) -> str:
    with (PIPELINES / "qoe_train_v1_argo.yaml").open("rb") as fh:
        requests.post(f"{url}/pipelineIds/v1", files={"file": ("file", fh)}, timeout=30).raise_for_status()
    resp = requests.post(f"{url}/trainingjobs/{tj}/execution", json={"pipeline_name": "v1", "arguments": V1_ARGS},
                         timeout=30)
    resp.raise_for_status()
    return resp.json()["run_id"]


def _notifications(service: SandboxService) -> list[dict]:
    return [n["body"] for n in requests.get(f"{service.kfp_url}/_sandbox/notifications", timeout=10)
            .json()["notifications"]]


def _finish(service: SandboxService, run_id: str) -> None:
    requests.post(f"{service.kfp_url}/_sandbox/runs/{run_id}/state", json={"state": "SUCCEEDED"},
                  timeout=10).raise_for_status()


def test_kill_9_leftovers_go_at_the_next_start_and_sigterm_leaves_nothing(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir), "KFADAPTER_STORE_PATH": ""}
    (tmp_path / "a").mkdir()
    first = SandboxService(tmp_path / "a", ROOT, **env)
    first_root = _banner(first, "working directories in")
    assert _banner(first, "store of tracked runs:").parent == first_root
    stale = _start_v1_run(first.url, "tj-old")  # tracked in the first start's store
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    first.stop()
    assert first_root.is_dir()  # a killed sandbox cannot clean up

    (tmp_path / "b").mkdir()
    second = SandboxService(tmp_path / "b", ROOT, **env)
    try:
        second_root = _banner(second, "working directories in")
        assert not first_root.exists() and _folders(tmpdir) == [second_root]
        fresh = _start_v1_run(second.url, "tj-new")
        _finish(second, fresh)
        # The watcher ran (the new run's notification came); the old start's run is not in this store at all.
        wait_for(lambda: _notifications(second), "the new run's notification")
        watches = requests.get(f"{second.url}/watches", timeout=10).json()
        assert stale not in str(watches)
        assert _notifications(second) == [{"run_id": fresh, "run_status": "SUCCEEDED", "trainingjob_id": "tj-new"}]
    finally:
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0
        second.stop()
    assert not second_root.exists() and _folders(tmpdir) == []


def test_a_configured_store_is_kept_across_restarts(tmp_path):
    """The counterpart: with KFADAPTER_STORE_PATH set, the store outlives the sandbox (and says so)."""
    store = tmp_path / "kept.sqlite"
    env = {"TMPDIR": str(tmp_path), "KFADAPTER_STORE_PATH": str(store)}
    first = SandboxService(tmp_path, ROOT, **env)
    try:
        assert _banner(first, "store of tracked runs:") == store
        stale = _start_v1_run(first.url, "tj-old")
    finally:
        first.stop()
    assert store.is_file() and _folders(tmp_path) == []
    second = SandboxService(tmp_path, ROOT, **env)
    try:
        # The new sandbox does not know the run: the watcher reports it, as it would for a real KFP.
        wait_for(lambda: _notifications(second), "the stale run's notification")
        assert _notifications(second) == [{"run_id": stale, "run_status": "Manual reconcile",
                                           "trainingjob_id": "tj-old"}]
    finally:
        second.stop()
