"""Pure: a run's tasks (from KFP's `run_details.task_details`) and why it failed (from its Argo workflow).

KFP 2.17 turns every node of the run's Argo workflow into a task detail, with no error and no pod name of
its own (only its children's, in `child_tasks[].pod_name`), and never fills the run's `error`. A v2 pipeline's
workflow wraps each task T in KFP's plumbing (`T-driver`, the DAG `T` whose child is the pod `executor`,
`root`, `root-driver` and the workflow's own node); the tasks shown are the pipeline's own. Why a run failed is
only in the workflow (`GET /apis/v1beta1/runs/{id}` → `pipeline_runtime.workflow_manifest`): `status.message`
and each failed node's `message` (`main: Error (exit code 1)`, `Step exceeded its deadline`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from kfadapter.core.errors import Undecodable
from kfadapter.outputs.argo import nodes_of

T = TypeVar("T")
UNSET_TIMES = frozenset({"", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"})  # KFP's "not yet"
_V2_PLUMBING = {"root", "root-driver", "executor"}
_FAILED_PHASES = ("Failed", "Error")


def _time(value: Any) -> str | None:
    return None if value in UNSET_TIMES or value is None else str(value)


def tasks(run: Mapping[str, Any]) -> list[dict]:
    """The pipeline's tasks with name, state, start/end time and pod, in start order.

    v2 runs (KFP lists a `<task>-driver` node beside each task): the tasks that have a driver, their pod being
    the `executor` child KFP names in `child_tasks`. v1 (Argo) runs: the nodes without children (the steps'
    pods; KFP gives no pod name for them). Entries without a name are left out."""
    details = [d for d in ((run.get("run_details") or {}).get("task_details") or []) if d.get("display_name")]
    names = {d["display_name"] for d in details}
    v2 = any(n.endswith("-driver") and n[: -len("-driver")] in names for n in names)
    out = []
    for d in details:
        name = d["display_name"]
        children = [c["pod_name"] for c in d.get("child_tasks") or [] if isinstance(c, dict) and c.get("pod_name")]
        if v2:
            keep = f"{name}-driver" in names and name not in _V2_PLUMBING
        else:
            keep = not d.get("child_tasks")
        if keep:
            out.append(
                {
                    "id": d.get("task_id"),  # the task's one identity in /runs, /outputs and /logs
                    "name": name,
                    "state": d.get("state") or "RUNTIME_STATE_UNSPECIFIED",
                    "start_time": _time(d.get("start_time")),
                    "end_time": _time(d.get("end_time")),
                    "pod": children[0] if v2 and children else None,
                    "task_id": d.get("task_id"),
                }
            )
    out.sort(key=lambda t: (t["start_time"] or "9999", t["name"]))
    return out


def match_task(known: list[dict], name: str, *, pod: str | None = None, started: str | None = None) -> dict | None:
    """The task of `tasks(run)` that a step seen elsewhere (an ML Metadata execution, a workflow node) is.

    By name; among several tasks of that name (loops), by the pod's Argo hash (a node id `<wf>-<hash>` and
    its pod's name `<wf>-<template>-<hash>` end alike) or by the start time. None when nothing or several fit.
    """
    same = [t for t in known if t["name"] == name]
    if len(same) > 1 and pod:
        digest = pod.rsplit("-", 1)[-1]
        same = [t for t in same if t.get("pod") and str(t["pod"]).rsplit("-", 1)[-1] == digest] or same
    if len(same) > 1 and started:
        same = [t for t in same if t.get("start_time") == started] or same
    return same[0] if len(same) == 1 else None


def in_run_order(found: list[tuple[dict | None, T]], known: list[dict]) -> list[tuple[dict | None, T | None]]:
    """`(task, item)` pairs (items matched to `tasks(run)` by `match_task`) in the order the tasks ran: every
    task once (with None while nothing of it was found), then the items no task matched, in their order."""
    by_task: dict[int, T] = {}
    rest: list[tuple[dict | None, T | None]] = []
    for task, item in found:
        if task is None or id(task) in by_task:
            rest.append((None, item))
        else:
            by_task[id(task)] = item
    return [(task, by_task.get(id(task))) for task in known] + rest


def pod_name(workflow: Mapping[str, Any], node_id: str, node: Mapping[str, Any]) -> str | None:
    """The Kubernetes pod of a Pod node, named as Argo does (KFP's util.RetrievePodName)."""
    if node.get("type") != "Pod":
        return None
    meta = workflow.get("metadata") or {}
    wf_name = meta.get("name") or ""
    if (meta.get("annotations") or {}).get("workflows.argoproj.io/pod-name-format") == "v1" or not wf_name:
        return node_id
    if node.get("name") == wf_name:
        return wf_name
    digest = node_id.rsplit("-", 1)[-1]
    prefix = wf_name if ".inline" in str(node.get("name") or "") else f"{wf_name}-{node.get('templateName')}"
    return f"{prefix}-{digest}"


def failure(workflow: Mapping[str, Any] | None) -> dict:
    """`{message, nodes: [{task, node_id, pod, template, phase, message}]}` from a failed run's workflow."""
    if not workflow:
        return {"message": "KFP has recorded no workflow for this run, so it gives no failure reason", "nodes": []}
    try:
        nodes = nodes_of(workflow)
    except Undecodable as exc:
        return {"message": f"the run's workflow nodes cannot be read: {exc.message}", "nodes": []}
    parents = {child: node for node in nodes.values() if isinstance(node, dict) for child in node.get("children") or []}
    failed: list[tuple[str, str, dict[str, Any]]] = []
    for node_id, node in nodes.items():
        if not isinstance(node, dict) or node.get("phase") not in _FAILED_PHASES or not node.get("message"):
            continue
        task = node.get("displayName") or node.get("name") or node_id
        if task == "executor" and node_id in parents:  # a v2 task's pod: name it after its task
            task = parents[node_id].get("displayName") or task
        failed.append(
            (
                str(node.get("finishedAt") or ""),
                task,
                {
                    "task": task,
                    "node_id": node_id,
                    "pod": pod_name(workflow, node_id, node),
                    "template": node.get("templateName"),
                    "phase": node.get("phase"),
                    "message": str(node["message"]),
                },
            )
        )
    reasons = [f for _, _, f in sorted(failed, key=lambda f: f[:2])]
    status_message = str((workflow.get("status") or {}).get("message") or "")
    parts = ([status_message] if status_message else []) + [f"{f['task']}: {f['message']}" for f in reasons]
    return {"message": "; ".join(parts) or "KFP reports no failure reason for this run", "nodes": reasons}
