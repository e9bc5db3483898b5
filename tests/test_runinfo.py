"""Pure: a run's tasks from KFP's task details and its failure reasons from the Argo workflow."""
from __future__ import annotations

import base64
import gzip
import json

from kfadapter.outputs import runinfo


def _detail(name, state="RUNNING", children=(), start="2026-01-01T00:00:01Z", end="0001-01-01T00:00:00Z"):
    return {"display_name": name, "state": state, "start_time": start, "end_time": end, "task_id": f"id-{name}",
            "child_tasks": [{"pod_name": c} for c in children]}


def test_v2_tasks_are_the_ones_with_a_driver_and_their_pod_is_the_executor():
    run = {"run_details": {"task_details": [
        _detail("wf-x", children=["wf-x-1"]), _detail("root-driver", "SUCCEEDED", ["wf-x-2"]),
        _detail("root", children=["wf-x-3"]), _detail("train-driver", "SUCCEEDED", ["wf-x-4"]),
        _detail("train", children=["wf-x-5"], start="2026-01-01T00:00:05Z"),
        _detail("executor", start="2026-01-01T00:00:05Z"),
        _detail("prepare-driver", "SUCCEEDED", ["wf-x-6"]),
        _detail("prepare", "SUCCEEDED", ["wf-x-7"], end="2026-01-01T00:00:04Z"),
        {"run_id": "r", "task_id": "cache-entry", "execution_id": "7"},  # no name: left out
    ]}}
    assert runinfo.tasks(run) == [
        {"id": "id-prepare", "name": "prepare", "state": "SUCCEEDED", "start_time": "2026-01-01T00:00:01Z",
         "end_time": "2026-01-01T00:00:04Z", "pod": "wf-x-7", "task_id": "id-prepare"},
        {"id": "id-train", "name": "train", "state": "RUNNING", "start_time": "2026-01-01T00:00:05Z", "end_time": None,
         "pod": "wf-x-5", "task_id": "id-train"},
    ]


def test_a_step_seen_elsewhere_is_matched_to_its_task_by_name_then_pod_hash_then_start():
    known = [{"id": "a", "name": "train", "pod": "wf-x-11", "start_time": "t1"},
             {"id": "b", "name": "train", "pod": "wf-x-22", "start_time": "t2"},
             {"id": "c", "name": "prepare", "pod": None, "start_time": "t0"}]
    assert runinfo.match_task(known, "prepare")["id"] == "c"
    assert runinfo.match_task(known, "train", pod="wf-x-system-container-impl-22")["id"] == "b"  # MLMD's pod name
    assert runinfo.match_task(known, "train", started="t1")["id"] == "a"
    assert runinfo.match_task(known, "train") is None and runinfo.match_task(known, "nope") is None
    pairs = [(known[1], "B"), (None, "X"), (known[1], "B again"), (known[2], "C")]
    assert runinfo.in_run_order(pairs, known) == [
        (known[0], None), (known[1], "B"), (known[2], "C"), (None, "X"), (None, "B again")]


def test_v1_tasks_are_the_nodes_without_children_and_no_details_means_no_tasks():
    run = {"run_details": {"task_details": [_detail("wf-y", children=["a", "b"]), _detail("train"),
                                            {"display_name": "eval"}]}}
    got = runinfo.tasks(run)
    assert [(t["name"], t["state"], t["pod"]) for t in got] == [
        ("train", "RUNNING", None), ("eval", "RUNTIME_STATE_UNSPECIFIED", None)]
    assert got[1]["start_time"] is None
    assert runinfo.tasks({}) == [] and runinfo.tasks({"run_details": {}}) == []


def _workflow(nodes, message=None, pod_format=None):
    meta = {"name": "wf-x"}
    if pod_format:
        meta["annotations"] = {"workflows.argoproj.io/pod-name-format": pod_format}
    status = {"phase": "Failed", "nodes": nodes}
    if message:
        status["message"] = message
    return {"metadata": meta, "status": status}


NODES = {
    "wf-x": {"name": "wf-x", "displayName": "wf-x", "type": "DAG", "phase": "Failed", "children": ["wf-x-10"]},
    "wf-x-10": {"name": "wf-x.root.train", "displayName": "train", "type": "DAG", "phase": "Failed",
                "templateName": "system-container-executor", "children": ["wf-x-11"]},
    "wf-x-11": {"name": "wf-x.root.train.executor", "displayName": "executor", "type": "Pod", "phase": "Failed",
                "templateName": "system-container-impl", "message": "main: Error (exit code 1)",
                "finishedAt": "2026-01-01T00:00:09Z"},
    "wf-x-12": {"name": "wf-x.step", "displayName": "step", "type": "Pod", "phase": "Error",
                "templateName": "step", "message": "OOMKilled (exit code 137)", "finishedAt": "2026-01-01T00:00:03Z"},
    "wf-x-13": {"name": "wf-x.ok", "displayName": "ok", "type": "Pod", "phase": "Succeeded", "message": "fine"},
}


def test_failure_names_each_failed_node_with_its_task_and_pod():
    got = runinfo.failure(_workflow(NODES, message="child 'wf-x-10' failed"))
    assert got["message"] == ("child 'wf-x-10' failed; step: OOMKilled (exit code 137); "
                              "train: main: Error (exit code 1)")
    assert got["nodes"][1] == {"task": "train", "node_id": "wf-x-11", "pod": "wf-x-system-container-impl-11",
                               "template": "system-container-impl", "phase": "Failed",
                               "message": "main: Error (exit code 1)"}
    assert runinfo.failure(_workflow(NODES, pod_format="v1"))["nodes"][1]["pod"] == "wf-x-11"


def test_failure_reads_compressed_nodes_and_says_when_there_is_nothing_to_read():
    packed = base64.b64encode(gzip.compress(json.dumps(NODES).encode())).decode()
    wf = {"metadata": {"name": "wf-x"}, "status": {"phase": "Failed", "compressedNodes": packed}}
    assert [n["task"] for n in runinfo.failure(wf)["nodes"]] == ["step", "train"]
    assert runinfo.failure(None)["nodes"] == [] and "no workflow" in runinfo.failure(None)["message"]
    assert runinfo.failure(_workflow({}))["message"] == "KFP reports no failure reason for this run"
    broken = {"status": {"compressedNodes": "not base64!"}}
    assert "cannot be read" in runinfo.failure(broken)["message"]
