"""The sandbox's Argo workflow of an executed run and the task details KFP derives from it (pure parts)."""
from __future__ import annotations

from kfadapter.sandbox import workflow


def test_node_ids_use_argos_fnv32a_hash():
    assert workflow.fnv32a("") == 0x811C9DC5 and workflow.fnv32a("a") == 0xE40C292C
    wf = workflow.ExecutedWorkflow("run", "qoe", "2026-01-01T00:00:00Z", name="qoe-abcde")
    assert wf.node_id("qoe-abcde") == "qoe-abcde"
    assert wf.node_id("qoe-abcde.root") == f"qoe-abcde-{workflow.fnv32a('qoe-abcde.root')}"


def test_a_terminated_workflow_fails_its_running_steps_by_deadline_and_reports_canceling_first():
    wf = workflow.ExecutedWorkflow("run", "qoe", "2026-01-01T00:00:00Z", name="qoe-abcde")
    wf.tasks["prepare"] = workflow.TaskRun("prepare", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "Succeeded")
    wf.tasks["train"] = workflow.TaskRun("train", "2026-01-01T00:00:03Z")
    assert workflow.run_state(wf.manifest()) == "RUNNING"
    wf.terminating = True
    going = wf.manifest()
    assert going["spec"]["activeDeadlineSeconds"] == 0 and workflow.run_state(going) == "CANCELING"
    wf.stop("2026-01-01T00:00:09Z", phase="Failed")
    done = wf.manifest()
    assert workflow.run_state(done) == "FAILED" and "message" not in done["status"]
    by_name = {n["name"]: n for n in done["status"]["nodes"].values()}
    assert by_name["qoe-abcde.root.train.executor"]["message"] == "Step exceeded its deadline"
    assert by_name["qoe-abcde.root.train"]["phase"] == "Failed" and "message" not in by_name["qoe-abcde.root.train"]
    assert by_name["qoe-abcde.root.prepare.executor"]["phase"] == "Succeeded"
    assert by_name["qoe-abcde.root.train.executor"]["boundaryID"] == wf.node_id("qoe-abcde.root.train")


def test_terminated_before_any_step_the_root_driver_fails_by_deadline():
    wf = workflow.ExecutedWorkflow("run", "qoe", "2026-01-01T00:00:00Z", name="qoe-abcde", terminating=True)
    wf.stop("2026-01-01T00:00:01Z", phase="Failed")
    nodes = {n["displayName"]: n for n in wf.manifest()["status"]["nodes"].values()}
    assert set(nodes) == {"qoe-abcde", "root-driver"}
    assert nodes["root-driver"]["phase"] == "Failed" and nodes["root-driver"]["message"] == "Step exceeded its deadline"


def test_task_details_keep_ids_and_grow_their_history_only_on_change():
    wf = workflow.ExecutedWorkflow("run", "qoe", "2026-01-01T00:00:00Z", name="qoe-abcde")
    wf.tasks["train"] = workflow.TaskRun("train", "2026-01-01T00:00:03Z")
    known: dict = {}
    first = workflow.task_details("run", wf.manifest(), "2026-01-01T00:00:00Z", known, "2026-01-01T00:00:04Z")
    again = workflow.task_details("run", wf.manifest(), "2026-01-01T00:00:00Z", known, "2026-01-01T00:00:05Z")
    assert [t["task_id"] for t in first] == [t["task_id"] for t in again] and len(first) == 6
    train = next(t for t in again if t["display_name"] == "train")
    assert train["state_history"] == [{"update_time": "2026-01-01T00:00:04Z", "state": "RUNNING"}]
    assert train["end_time"] == workflow.ZERO_TIME and train["child_tasks"] == [
        {"pod_name": wf.node_id("qoe-abcde.root.train.executor")}]
    wf.stop("2026-01-01T00:00:09Z", phase="Succeeded")
    last = workflow.task_details("run", wf.manifest(), "2026-01-01T00:00:00Z", known, "2026-01-01T00:00:10Z")
    train = next(t for t in last if t["display_name"] == "train")
    assert [h["state"] for h in train["state_history"]] == ["RUNNING", "SUCCEEDED"]
    assert not any({"error", "inputs", "outputs", "execution_id", "pod_name"} & set(t) for t in last)
