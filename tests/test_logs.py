"""GET /runs/<id>/logs: each step's log as text, from Argo's archived main-logs (through KFP's :read) or, on
KFP >= 2.5, from a v2 task's executor-logs artifact; against the sandbox at 2.3 and 2.17."""
from __future__ import annotations

import base64
import dataclasses
import gzip
import json

import pytest
import yaml

from kfadapter.app import create_app
from kfadapter.outputs import logs
from kfadapter.sandbox.recording import TaskRecords
from kfadapter.sandbox.workflow import ExecutedWorkflow, TaskRun

from tests.conftest import across_versions, package
from tests.test_outputs import control, start_run, store_v1_run

pytestmark = across_versions  # O-RAN's KFP 2.3 and the newest, 2.17
TRAIN_LOG = "epoch 1\nepoch 2\ndone\n"


@pytest.fixture
def v2_client(settings, sandbox):
    """The adapter with the sandbox's MLMD and object store."""
    return create_app(dataclasses.replace(
        settings, mlmd_endpoint=sandbox.mlmd_endpoint, mlmd_timeout=2.0, object_store_endpoint=f"{sandbox.url}/_s3",
        object_store_access_key="minio", object_store_secret_key="minio123")).test_client()


def task_ids(client, run_id: str) -> dict[str, str]:
    """{task name: id} as GET /runs/<id> lists them: the one identity /logs uses too."""
    return {t["name"]: t["id"] for t in client.get(f"/runs/{run_id}").json["tasks"]}


def test_every_step_under_a_header(client, sandbox):
    run_id, nodes = store_v1_run(sandbox, client)
    ids = task_ids(client, run_id)
    resp = client.get(f"/runs/{run_id}/logs")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = resp.get_data(as_text=True)
    assert f"===== train ({ids['train']}) SUCCEEDED =====\n{TRAIN_LOG}" in text
    # make-blob's workflow lists main-logs but the object is not in the store: said, and the next step still comes
    assert f"===== make-blob ({ids['make-blob']}) SUCCEEDED =====\n[log unreadable:" in text
    assert text.index("make-blob") < text.index("produce-list") < text.index("===== train")


def test_one_step_by_name_or_id_and_its_tail(client, sandbox):
    run_id, nodes = store_v1_run(sandbox, client)
    ids = task_ids(client, run_id)
    by_name = client.get(f"/runs/{run_id}/logs?task=train")
    assert by_name.status_code == 200 and by_name.get_data(as_text=True) == TRAIN_LOG
    assert by_name.headers["X-Kfadapter-Log-Source"] == "main-logs"
    assert client.get(f"/runs/{run_id}/logs?task={ids['train']}").get_data(as_text=True) == TRAIN_LOG
    assert client.get(f"/runs/{run_id}/logs?task={nodes['train']}").get_data(as_text=True) == TRAIN_LOG  # alias
    assert client.get(f"/runs/{run_id}/logs?task=train&tail=2").get_data(as_text=True) == "epoch 2\ndone\n"
    assert "===== train" in client.get(f"/runs/{run_id}/logs?tail=1").get_data(as_text=True)


def test_a_running_step_says_nothing_is_archived_yet(client, sandbox):
    run_id, _ = store_v1_run(sandbox, client, train_phase="Running", run_state="RUNNING")
    ids = task_ids(client, run_id)
    text = client.get(f"/runs/{run_id}/logs").get_data(as_text=True)
    assert (f"===== train ({ids['train']}) RUNNING =====\n[the step is RUNNING: its log is archived when it ends, "
            "nothing is archived yet]\n") in text
    one = client.get(f"/runs/{run_id}/logs?task=train")
    assert one.status_code == 404 and one.json["code"] == "log_not_available"
    assert "nothing is archived yet" in one.json["message"]


def test_bad_requests(client, sandbox):
    run_id, _ = store_v1_run(sandbox, client)
    assert client.get(f"/runs/{run_id}/logs?task=nope").json["code"] == "task_not_found"
    assert client.get(f"/runs/{run_id}/logs?tail=0").status_code == 400
    assert client.get(f"/runs/{run_id}/logs?tail=x").json["details"] == {"field": "tail"}
    assert client.get("/runs/00000000-0000-0000-0000-000000000000/logs").status_code == 404


def test_a_log_is_cut_at_the_cap(client, sandbox, monkeypatch):
    monkeypatch.setattr(logs, "MAX_STEP_LOG_BYTES", 10)
    run_id, _ = store_v1_run(sandbox, client)
    text = client.get(f"/runs/{run_id}/logs?task=train").get_data(as_text=True)
    assert text.startswith("epoch 1\nep\n[log cut at 10 bytes")
    assert client.get(f"/runs/{run_id}/logs?task=train&tail=100").get_data(as_text=True) == "done\n"


def test_a_run_not_started_has_no_steps_yet(client, sandbox):
    run_id = start_run(client, "qoe_train_v2.yaml")
    resp = client.get(f"/runs/{run_id}/logs")
    assert resp.status_code == 200 and "no step has started yet" in resp.get_data(as_text=True)


def test_v2_task_log_is_its_executor_logs_or_main_logs(v2_client, sandbox, kfp_version):
    run_id = start_run(v2_client, "qoe_train_v2.yaml")
    uri = f"minio://mlpipeline/v2/artifacts/qoe-train-v2/{run_id}/train/5e1d/executor-logs"
    tasks = [{"name": "train", "outputs": {"accuracy": 0.9},
              "artifacts": [{"name": "model", "content_base64": base64.b64encode(b"w").decode()}]}]
    if kfp_version != "2.3":  # from 2.5 KFP adds every task's log as an output artifact
        tasks[0]["artifacts"].append({"name": "executor-logs", "uri": uri,
                                      "content_base64": base64.b64encode(b"from executor-logs\n").decode()})
    ids = control(sandbox, "PUT", f"/runs/{run_id}/mlmd", json={"tasks": tasks}).json()
    # Argo's side of the v2 run: a driver pod and the executor pod that archived its log.
    wf = "run-" + run_id[:8]
    nodes = {f"{wf}-1": {"id": f"{wf}-1", "name": f"{wf}.root.train-driver", "displayName": "train-driver",
                         "type": "Pod", "templateName": "system-container-driver", "phase": "Succeeded"},
             f"{wf}-3": {"id": f"{wf}-3", "name": f"{wf}.root.train", "displayName": "train", "type": "DAG",
                         "templateName": "system-container-executor", "phase": "Succeeded", "children": [f"{wf}-2"]},
             f"{wf}-2": {"id": f"{wf}-2", "name": f"{wf}.root.train.executor", "displayName": "executor",
                         "type": "Pod", "templateName": "system-container-impl", "phase": "Succeeded",
                         "outputs": {"artifacts": [{"name": "main-logs", "s3": {"key": "k"}}]}}}
    control(sandbox, "PUT", f"/runs/{run_id}/workflow", json={"phase": "Succeeded", "nodes": nodes})
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{wf}-2/artifacts/main-logs", data=gzip.compress(b"from main-logs\n"))
    control(sandbox, "POST", f"/runs/{run_id}/state", json={"state": "SUCCEEDED"})

    [task] = v2_client.get(f"/runs/{run_id}/outputs").json["tasks"]
    assert [o["name"] for o in task["outputs"]] == ["accuracy", "model"]  # executor-logs is no model output
    assert task["id"] == task_ids(v2_client, run_id)["train"] and task["mlmd_execution_id"] == str(ids["executions"]["train"])
    assert task["log"] == f"/runs/{run_id}/logs?task={task['id']}"
    resp = v2_client.get(task["log"])
    assert resp.status_code == 200, resp.json
    if kfp_version == "2.3":
        assert resp.get_data(as_text=True) == "from main-logs\n"
        assert resp.headers["X-Kfadapter-Log-Source"] == "main-logs"
    else:
        assert resp.get_data(as_text=True) == "from executor-logs\n"
        assert resp.headers["X-Kfadapter-Log-Source"] == "executor-logs"
        by_id = v2_client.get(f"/runs/{run_id}/logs?task={ids['executions']['train']}")
        assert by_id.get_data(as_text=True) == "from executor-logs\n"


def test_a_finished_steps_outputs_and_log_are_there_while_the_next_step_runs(v2_client, sandbox, tmp_path,
                                                                             kfp_version):
    """The sandbox's executor records each task as KFP's drivers and launchers do (sandbox/recording.py); driven
    here step by step the way its runner drives it, with nothing executed (tests/test_versions_execute.py runs
    a real pipeline through the same path)."""
    run_id = start_run(v2_client, "qoe_train_v2.yaml")
    state = sandbox.app.extensions["sandbox"]
    wf = ExecutedWorkflow(run_id, "qoe-train-v2", state._now())
    root = tmp_path / "outputs"
    records = TaskRecords(state, run_id, yaml.safe_load(package("qoe_train_v2.yaml")), wf, root)
    records.run_started()  # the root driver: the run's context
    assert state.report_workflow(run_id, wf.manifest())

    def task_starts(name: str) -> None:
        records.task_started(name)  # its driver: the execution, RUNNING
        wf.tasks[name] = TaskRun(name, started=state._now())
        state.report_workflow(run_id, wf.manifest())

    task_starts("prepare")
    task_dir = root / "qoe-train-v2-20261206" / "prepare"  # kfp.local's layout
    task_dir.mkdir(parents=True)
    (task_dir / "executor_output.json").write_text(json.dumps({"parameterValues": {"row_count": 100}}))
    (task_dir / "task.log").write_text("prepared 100 rows\n")
    records.task_ended("prepare", True)  # its launcher publishes, Argo archives the pod's log; then the node ends
    wf.tasks["prepare"].finished, wf.tasks["prepare"].phase = state._now(), "Succeeded"
    state.report_workflow(run_id, wf.manifest())
    task_starts("train")

    run = v2_client.get(f"/runs/{run_id}").json
    assert run["run_status"] == "RUNNING"
    assert [(t["name"], t["state"]) for t in run["tasks"]] == [("prepare", "SUCCEEDED"), ("train", "RUNNING")]
    ids = {t["name"]: t["id"] for t in run["tasks"]}
    out = v2_client.get(f"/runs/{run_id}/outputs").json
    assert [(t["id"], t["name"], t["state"]) for t in out["tasks"]] == [
        (ids["prepare"], "prepare", "SUCCEEDED"), (ids["train"], "train", "RUNNING")]
    assert [(o["name"], o["value"]) for o in out["tasks"][0]["outputs"]] == [("row_count", 100)]
    assert out["tasks"][1]["outputs"] == [] and out["tasks"][1]["mlmd_state"] == "RUNNING"
    assert out["tasks"][0]["pod_name"].startswith(f"{wf.name}-system-container-impl-")  # the executor pod's name
    log = v2_client.get(f"/runs/{run_id}/logs?task=prepare")
    assert log.status_code == 200, log.json
    assert log.get_data(as_text=True) == "prepared 100 rows\n"
    assert log.headers["X-Kfadapter-Log-Source"] == ("main-logs" if kfp_version == "2.3" else "executor-logs")
    every = v2_client.get(f"/runs/{run_id}/logs").get_data(as_text=True)
    assert every.startswith(f"===== prepare ({ids['prepare']}) SUCCEEDED =====\nprepared 100 rows\n")
    assert f"===== train ({ids['train']}) RUNNING =====\n[the step is RUNNING" in every
    waiting = v2_client.get(f"/runs/{run_id}/logs?task={ids['train']}")
    assert waiting.status_code == 404 and waiting.json["details"]["state"] == "RUNNING"
