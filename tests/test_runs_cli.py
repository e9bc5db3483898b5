"""`kfadapter runs list|get|wait|logs|outputs` against the adapter served over real HTTP (sandbox KFP behind it;
runs moved through the sandbox's control API, so nothing here executes a pipeline)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from kfadapter import cli

from tests.test_outputs import BLOB, control, start_run, store_v1_run, v1_status

TRAIN_LOG = "epoch 1\nepoch 2\ndone\n"


@pytest.fixture
def runs(adapter_url, capsysbinary):
    """Run `kfadapter runs ...` against the adapter; returns (exit code, stdout, stderr) as text."""

    def call(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["runs", *argv[:1], "--url", adapter_url, *argv[1:]])
        out, err = capsysbinary.readouterr()
        return code, out.decode("utf-8", "surrogateescape"), err.decode("utf-8", "surrogateescape")

    return call


def test_list_get_and_their_json(runs, client, sandbox):
    run_id, _ = store_v1_run(sandbox, client)
    code, out, _ = runs("list")
    assert code == 0 and out.splitlines()[0].split() == ["RUN", "ID", "NAME", "STATUS", "PIPELINE"]
    assert run_id in out and "SUCCEEDED" in out
    code, out, _ = runs("list", "--json")
    assert code == 0 and next(iter(json.loads(out).values()))["run_id"] == run_id  # the adapter's own JSON
    assert runs("list", "-q")[:2] == (0, f"{run_id}\n")
    code, out, _ = runs("list", "--trainingjob", "tj1")
    assert code == 0 and run_id in out and "waiting_for_run" in out
    code, out, _ = runs("get", run_id)
    listed = client.get(f"/runs/{run_id}").json
    assert code == 0 and "status      SUCCEEDED" in out and "trainingjob tj1" in out
    for task in listed["tasks"]:
        assert any(line.split()[:2] == [task["name"], "SUCCEEDED"] and task["id"] in line for line in out.splitlines())
    code, out, _ = runs("get", run_id, "--json")
    assert json.loads(out) == listed


def test_wait_prints_state_changes_and_exits_0_only_on_success(runs, client, sandbox):
    run_id, _ = store_v1_run(sandbox, client, train_phase="Running", run_state="RUNNING")
    wf = f"qoe-train-v1-{run_id[:5]}"

    def finish():
        time.sleep(1.5)
        control(sandbox, "PUT", f"/runs/{run_id}/workflow", json=v1_status(wf)[0])
        control(sandbox, "POST", f"/runs/{run_id}/state", json={"state": "SUCCEEDED"})

    worker = threading.Thread(target=finish)
    worker.start()
    code, out, _ = runs("wait", run_id, "--interval", "0.2", "--timeout", "30")
    worker.join()
    assert code == 0, out
    lines = [line.split()[1:] for line in out.splitlines() if line[:2].isdigit()]  # "HH:MM:SS  what  state"
    assert ["run", "RUNNING"] in lines and ["run", "SUCCEEDED"] in lines
    assert lines.index(["task", "train", "RUNNING"]) < lines.index(["task", "train", "SUCCEEDED"])
    assert lines.count(["task", "make-blob", "SUCCEEDED"]) == 1  # a state is printed when it changes only
    assert "status      SUCCEEDED" in out  # then the run as `get` shows it


def test_wait_exits_1_when_the_run_ends_otherwise_and_3_on_timeout(runs, client, sandbox):
    run_id = start_run(client, "qoe_train_v2.yaml")
    code, _, err = runs("wait", run_id, "--interval", "0.1", "--timeout", "0.5")
    assert code == 3 and f"run {run_id} is still PENDING after 0.5 s" in err
    control(sandbox, "POST", f"/runs/{run_id}/state", json={"state": "FAILED"})
    code, out, _ = runs("wait", run_id, "--json")
    assert code == 1 and json.loads(out[out.index("{"):])["run_status"] == "FAILED"


def test_logs_and_outputs(runs, client, sandbox):
    run_id, _ = store_v1_run(sandbox, client)
    assert runs("logs", run_id, "--task", "train")[:2] == (0, TRAIN_LOG)
    assert runs("logs", run_id, "--task", "train", "--tail", "1")[:2] == (0, "done\n")
    code, out, _ = runs("logs", run_id)
    assert code == 0 and "===== train (" in out and TRAIN_LOG in out
    code, out, _ = runs("outputs", run_id)
    rows = {tuple(line.split()[:3]): line for line in out.splitlines()[3:]}
    assert code == 0 and "0.93" in rows[("train", "SUCCEEDED", "accuracy")]
    assert "/runs/" in rows[("make-blob", "SUCCEEDED", "blob")]  # where its bytes download
    code, out, _ = runs("outputs", run_id, "--task", "train", "--output", "accuracy", "--json")
    [task] = json.loads(out)["tasks"]
    assert code == 0 and [o["value"] for o in task["outputs"]] == [0.93]
    code, out, _ = runs("outputs", run_id, "--task", "make-blob", "--output", "blob", "--download", "-")
    assert code == 0 and out.encode("utf-8", "surrogateescape") == BLOB


def test_download_writes_a_file_and_errors_name_the_problem(runs, client, sandbox, tmp_path):
    run_id, _ = store_v1_run(sandbox, client)
    target = tmp_path / "blob.bin"
    assert runs("outputs", run_id, "--task", "make-blob", "--output", "blob", "--download", str(target))[0] == 0
    assert target.read_bytes() == BLOB
    code, _, err = runs("outputs", run_id, "--output", "blob", "--download", "-", "--output", "")
    assert code == 1 and "--download needs --output" in err
    code, _, err = runs("get", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "404" in err and "run_not_found" in err
    code, _, err = runs("outputs", run_id, "--output", "nope")
    assert code == 1 and "has no output 'nope'" in err
    assert cli.main(["runs", "list", "--url", "http://127.0.0.1:9"]) == 1  # nothing listens there
