"""The sandbox that really runs pipelines: `SandboxServer(execute=True)` executes v2 runs with kfp.local.

The tests marked `execute` run real components (tens of seconds each, pip needs PyPI; they skip without it).
The others are fast: the executor's helpers, a container component refused before any pip, execution left off,
and the local notification receiver."""
from __future__ import annotations

import json
import re
import time

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.sandbox import SandboxServer, executor, task_venv
from kfadapter.settings import Settings

from tests.conftest import PIPELINES, package, upload
from tests.execution import process_group_members, require_kfp_local, running_in_group, wait_for

TM_ARGS = {"epochs": "5", "trainingjob_id": "tj1", "featuregroup_name": "fg", "modelName": "qoe",
           "modelVersion": "1", "modellocation": ""}
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@pytest.fixture(scope="module")
def xsandbox(tmp_path_factory):
    """A sandbox KFP that executes v2 runs (two at a time), runs' working directories in a temp dir."""
    with SandboxServer(execute=True, workers=2, workdir=str(tmp_path_factory.mktemp("runs"))) as server:
        yield server


@pytest.fixture
def xsettings(xsandbox, tmp_path, tm_receiver) -> Settings:
    xsandbox.reset()
    return Settings(kfp_endpoint=xsandbox.url, store_path=str(tmp_path / "store.sqlite"), kfp_connect_timeout=2.0,
                    kfp_read_timeout=5.0, kfp_upload_timeout=10.0, mlmd_endpoint=xsandbox.mlmd_endpoint,
                    object_store_endpoint=xsandbox.object_store_endpoint,
                    object_store_access_key=xsandbox.object_store_keys[0],
                    object_store_secret_key=xsandbox.object_store_keys[1], tm_url=tm_receiver.url, poll_interval=3600.0,
                    notify_timeout=2.0)


@pytest.fixture
def xapp(xsettings):
    return create_app(xsettings)


@pytest.fixture
def xclient(xapp):
    return xapp.test_client()


def start(client, fixture: str, name: str, arguments: dict, tj: str = "tj1") -> str:
    """Upload a package and start a training job the way TM does; returns the run id."""
    assert upload(client, name, package(fixture)).status_code == 200
    resp = client.post(f"/trainingjobs/{tj}/execution", json={"pipeline_name": name, "arguments": arguments})
    assert resp.status_code == 200, resp.json
    return resp.json["run_id"]


def run_state(client, run_id: str) -> dict:
    resp = client.get(f"/runs/{run_id}")
    assert resp.status_code == 200, resp.json
    return resp.json


def manifest(xsandbox, run_id: str) -> dict:
    """The run's Argo workflow as KFP's v1beta1 GET serves it."""
    detail = requests.get(f"{xsandbox.url}/apis/v1beta1/runs/{run_id}", timeout=5).json()
    return json.loads(detail["pipeline_runtime"]["workflow_manifest"])


def wait_terminal(client, run_id: str, timeout: float) -> dict:
    return wait_for(lambda: (lambda r: r if r["run_status"] in TERMINAL else None)(run_state(client, run_id)),
                    timeout, what=f"run {run_id} to finish")


def notified(xapp, tm_receiver, run_id: str) -> dict:
    """Run watcher cycles until the training manager got this run's notification."""
    def got():
        xapp.extensions["kfadapter.watcher"].poll_once()
        return next((r["body"] for r in tm_receiver.received if r["body"]["run_id"] == run_id), None)
    return wait_for(got, 10, interval=0.5, what="the notification")


# ---- real executions (slow) --------------------------------------------------------------------------------

@pytest.mark.execute
def test_qoe_train_v2_runs_for_real_and_outputs_are_what_the_components_produced(xclient, xapp, tm_receiver):
    require_kfp_local()
    started = time.monotonic()
    run_id = start(xclient, "qoe_train_v2.yaml", "qoe", TM_ARGS)
    assert run_state(xclient, run_id)["run_status"] in ("PENDING", "RUNNING")
    # Every task's progress while the run goes: `prepare` runs (or ran) while `train` has not ended.
    going = wait_for(lambda: (lambda r: r if any(t["name"] == "prepare" for t in r["tasks"])
                              and r["run_status"] == "RUNNING" else None)(run_state(xclient, run_id)),
                     120, what="the first task to start")
    assert going["tasks"][0]["name"] == "prepare" and going["tasks"][0]["state"] in ("RUNNING", "SUCCEEDED")
    assert going["tasks"][0]["start_time"] and going["tasks"][0]["pod"]
    assert all(t["end_time"] is None for t in going["tasks"] if t["state"] == "RUNNING")
    run = wait_terminal(xclient, run_id, 240)
    elapsed = time.monotonic() - started
    print(f"qoe_train_v2 executed in {elapsed:.1f} s")  # about 15 s idle; minutes on a loaded 2-core machine
    assert run["run_status"] == "SUCCEEDED", run
    assert run["error"] is None and run["finished_at"]
    assert [(t["name"], t["state"]) for t in run["tasks"]] == [("prepare", "SUCCEEDED"), ("train", "SUCCEEDED")]
    assert all(t["start_time"] and t["end_time"] and t["pod"] for t in run["tasks"])
    out = xclient.get(f"/runs/{run_id}/outputs").json
    assert out["finished"] is True and out["pipeline_kind"] == "v2"
    tasks = {t["name"]: {o["name"]: o for o in t["outputs"]} for t in out["tasks"]}
    train = tasks["train"]
    assert train["accuracy"]["value"] == 0.91 and isinstance(train["accuracy"]["value"], float)
    assert train["summary"]["value"] == {"epochs": 5, "rows": 100}  # "5" from TM, converted, used by the code
    assert train["ok"]["value"] is True
    assert tasks["prepare"]["row_count"]["value"] == 100
    model = train["model"]
    assert model["type"] == "system.Model" and model["available"] is True
    # The driver's layout: a fresh random segment (a UUID) between the task and the output name.
    assert re.fullmatch(rf"minio://mlpipeline/v2/artifacts/qoe-train-v2/{run_id}/train/[0-9a-f-]{{36}}/model",
                        model["uri"]), model["uri"]
    assert json.loads(xclient.get(model["download"]).data) == {"name": "qoe", "version": "1", "weights": [0.1, 0.2]}
    assert notified(xapp, tm_receiver, run_id) == {"run_id": run_id, "run_status": "SUCCEEDED",
                                                    "trainingjob_id": "tj1"}
    # Each task ran in a copy of the prepared environment (sandbox/task_venv.py): the component's own
    # `pip install kfp==...` went into its copy (the tasks ran kfp's executor), never into the prepared one.
    prepared = task_venv.prepared_path()
    assert (prepared / ".kfadapter-ready").is_file()
    assert not list(prepared.glob("lib/python*/site-packages/kfp")), "a task installed into the prepared environment"


@pytest.mark.execute
def test_terminate_kills_the_process_group_and_the_run_ends_as_its_workflow_does(xclient, xapp, xsandbox,
                                                                                 tm_receiver):
    require_kfp_local()
    run_id = start(xclient, "slow_sleep_v2.yaml", "slow", {"seconds": "60"})
    # Wait until the component itself sleeps (its venv and pip install are done).
    proc = wait_for(lambda: xsandbox.executor._procs.get(run_id), 60, what="the executor child")
    # kfp.local runs `python -m kfp.dsl.executor_main` (the component's code) once its venv and pip are ready
    # (a generous bound: on a loaded 2-core machine the venv and pip install alone took 50 s).
    wait_for(lambda: running_in_group(proc.pid, "kfp.dsl.executor_main"), 180, what="the component to start")
    members = process_group_members(proc.pid)
    assert len(members) >= 3  # the executor child, sh, the component's python
    going = run_state(xclient, run_id)
    assert going["run_status"] == "RUNNING" and [(t["name"], t["state"]) for t in going["tasks"]] == \
        [("sleep-for", "RUNNING")]
    resp = requests.post(f"{xsandbox.url}/apis/v2beta1/runs/{run_id}:terminate", timeout=10)
    assert resp.status_code == 200
    assert run_state(xclient, run_id)["run_status"] in ("CANCELING", "FAILED")  # never CANCELED
    again = requests.post(f"{xsandbox.url}/apis/v2beta1/runs/{run_id}:terminate", timeout=10)
    assert again.status_code == 400 and "Row not found" in again.json()["message"]
    run = wait_terminal(xclient, run_id, 15)
    # Argo fails a workflow whose activeDeadlineSeconds KFP set to 0: the run ends FAILED.
    assert run["run_status"] == "FAILED"
    assert run["error"]["message"] == "sleep-for: Step exceeded its deadline"
    assert [(t["name"], t["state"]) for t in run["tasks"]] == [("sleep-for", "FAILED")]
    wait_for(lambda: not process_group_members(proc.pid), 10, what="every process of the run to end")
    raw = requests.get(f"{xsandbox.url}/apis/v2beta1/runs/{run_id}", timeout=5).json()
    assert [h["state"] for h in raw["state_history"]] == ["PENDING", "RUNNING", "CANCELING", "FAILED"]
    assert "error" not in raw
    wf = manifest(xsandbox, run_id)
    assert wf["spec"]["activeDeadlineSeconds"] == 0 and wf["status"]["phase"] == "Failed"
    executor_node = next(n for n in wf["status"]["nodes"].values() if n["templateName"] == "system-container-impl")
    assert executor_node["phase"] == "Failed" and executor_node["message"] == "Step exceeded its deadline"
    assert notified(xapp, tm_receiver, run_id) == {"run_id": run_id, "run_status": "FAILED",
                                                    "trainingjob_id": "tj1"}


@pytest.mark.execute
def test_a_component_that_raises_fails_the_run_and_the_workflow_says_where(xclient, xapp, xsandbox, tm_receiver):
    require_kfp_local()
    run_id = start(xclient, "raise_error_v2.yaml", "boom", {"message": "row 7"}, tj="tj-boom")
    run = wait_terminal(xclient, run_id, 180)
    assert run["run_status"] == "FAILED"
    # KFP gives no run error; the failed pod's node in the workflow says why, as Argo writes it.
    assert run["error"]["message"] == "explode: main: Error (exit code 1)"
    node = run["error"]["nodes"][0]
    assert node["task"] == "explode" and node["template"] == "system-container-impl"
    assert node["pod"].startswith(manifest(xsandbox, run_id)["metadata"]["name"] + "-system-container-impl-")
    assert [(t["name"], t["state"]) for t in run["tasks"]] == [("explode", "FAILED")]
    raw = requests.get(f"{xsandbox.url}/apis/v2beta1/runs/{run_id}", timeout=5).json()
    assert "error" not in raw
    assert all("error" not in t for t in raw["run_details"]["task_details"])
    wf = manifest(xsandbox, run_id)
    assert wf["status"]["phase"] == "Failed" and "message" not in wf["status"]  # a DAG's failure has no message
    by_name = {n["displayName"]: n for n in wf["status"]["nodes"].values()}
    assert by_name["executor"]["message"] == "main: Error (exit code 1)" and by_name["explode"]["phase"] == "Failed"
    assert notified(xapp, tm_receiver, run_id) == {"run_id": run_id, "run_status": "FAILED",
                                                    "trainingjob_id": "tj-boom"}


# ---- fast ----------------------------------------------------------------------------------------------------

def test_container_components_fail_the_run_with_a_clear_error(xclient, xsandbox):
    run_id = start(xclient, "container_echo_v2.yaml", "echo", {"text": "hi"})
    run = wait_terminal(xclient, run_id, 20)
    assert run["run_status"] == "FAILED"
    # The sandbox cannot run them: its workflow fails with that as status.message (no run error, as in KFP).
    assert "container component" in run["error"]["message"]
    assert "only lightweight Python components" in run["error"]["message"]
    assert "container component" in manifest(xsandbox, run_id)["status"]["message"]


def test_without_execute_runs_stay_pending(client, sandbox):
    run_id = start(client, "qoe_train_v2.yaml", "qoe", TM_ARGS)
    time.sleep(0.5)
    assert run_state(client, run_id)["run_status"] == "PENDING"
    assert "sandbox_executor" not in sandbox.app.extensions


def test_v1_runs_are_not_executed(xclient, xsandbox):
    run_id = start(xclient, "qoe_train_v1_argo.yaml", "v1", {"epochs": "3", "trainingjob_id": "tj1",
                                                             "featuregroup_name": "fg"})
    time.sleep(0.5)
    assert run_state(xclient, run_id)["run_status"] == "PENDING"
    assert not xsandbox.executor.owns(run_id)


def test_notification_receiver_answers_like_tm(sandbox):
    url = f"{sandbox.url}/_sandbox/notifications"
    requests.delete(url, timeout=5)
    ok = requests.post(url, json={"run_id": "r1", "run_status": "SUCCEEDED", "trainingjob_id": "t"}, timeout=5)
    bad = requests.post(f"{url}/trainingjob/pipelineNotification",
                        json={"run_id": "r2", "run_status": "FAILED", "trainingjob_id": "t"}, timeout=5)
    assert ok.status_code == 200 and bad.status_code == 500
    got = requests.get(url, timeout=5).json()["notifications"]
    assert [(n["run_id"], n["run_status"]) for n in got] == [("r1", "SUCCEEDED"), ("r2", "FAILED")]


def test_optional_parameters_without_default_are_filled_for_kfp_local():
    ir = {"root": {"dag": {"tasks": {"t": {"inputs": {"parameters": {"x": {"componentInputParameter": "used"}}}}}},
                   "inputDefinitions": {"parameters": {
                       "used": {"parameterType": "NUMBER_INTEGER", "isOptional": True},
                       "unused": {"parameterType": "STRING", "isOptional": True},
                       "given": {"parameterType": "STRING", "isOptional": True},
                       "defaulted": {"parameterType": "STRING", "defaultValue": "d"}}}}}
    patched = executor.fill_optional_parameters(ir, {"given": "g"})
    params = patched["root"]["inputDefinitions"]["parameters"]
    assert params["used"]["defaultValue"] == 0 and "unused" not in params and "defaultValue" not in params["given"]
    assert "unused" in ir["root"]["inputDefinitions"]["parameters"]  # the original is untouched
    assert executor.fill_optional_parameters(ir, {"used": 1, "unused": "u", "given": "g"}) is ir


def test_error_is_the_components_exception(tmp_path):
    log = tmp_path / "executor.log"
    log.write_text("Traceback (most recent call last):\n  File \"x\", line 1\n"
                   "\x1b[91mValueError: training data is corrupt: row 7\x1b[0m\n"
                   "Pipeline 'p' finished with status FAILURE. Inner task failed: 'explode'.\n")
    assert executor.error_from_log(log, "explode", "fallback") == \
        "task 'explode' failed: ValueError: training data is corrupt: row 7"
    assert executor.error_from_log(tmp_path / "missing", "explode", "fallback") == "fallback"


def test_executor_child_reports_unloadable_packages(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Workflow\n")
    assert executor.main(["--package", str(bad), "--workdir", str(tmp_path / "w")]) == 1
    result = json.loads((tmp_path / "w" / "result.json").read_text())
    assert result["state"] == "FAILED" and "not a KFP v2 pipeline spec" in result["error"]


def test_unsupported_components_lists_container_executors():
    import yaml

    ir = yaml.safe_load((PIPELINES / "container_echo_v2.yaml").read_text())
    assert executor.unsupported_components(ir)[0].startswith("exec-echo-container is a container component")
    assert executor.unsupported_components(yaml.safe_load((PIPELINES / "qoe_train_v2.yaml").read_text())) == []


def test_settings_read_the_sandbox_pool_size():
    assert Settings.from_env({}).sandbox_workers == 2
    assert Settings.from_env({"KFADAPTER_SANDBOX_WORKERS": "4"}).sandbox_workers == 4


def test_retry_executes_an_executed_run_again(xclient, xsandbox):
    run_id = start(xclient, "container_echo_v2.yaml", "echo", {"text": "hi"})
    assert wait_terminal(xclient, run_id, 20)["run_status"] == "FAILED"
    assert requests.post(f"{xsandbox.url}/apis/v2beta1/runs/{run_id}:retry", timeout=5).status_code == 200
    xsandbox.executor.wait(run_id, 20)
    run = requests.get(f"{xsandbox.url}/apis/v2beta1/runs/{run_id}", timeout=5).json()
    assert run["state"] == "FAILED" and "error" not in run
    assert "container component" in manifest(xsandbox, run_id)["status"]["message"]
    assert [h["state"] for h in run["state_history"]] == ["PENDING", "RUNNING", "FAILED", "RUNNING", "FAILED"]
