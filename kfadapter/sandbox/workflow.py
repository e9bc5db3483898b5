"""The Argo side of sandbox runs: the workflow KFP would run for an executed v2 run, and task details.

KFP 2.17 compiles a v2 pipeline into an Argo Workflow named `<pipelineInfo.name>-<5 random chars>` whose DAG is
`entrypoint` → `root-driver` (template system-dag-driver) → `root` (the pipeline's DAG); every task T of the
root DAG becomes `T-driver` (system-container-driver) → `T` (DAG, system-container-executor) → `executor`
(Pod, system-container-impl). Argo names the nodes `<workflow>.root.T.executor`, gives them the id
`<workflow>-<fnv32a of that name>` (the workflow's own node has the workflow name as id) and writes why a pod
failed in its node's `message` (`main: Error (exit code 1)`; `Step exceeded its deadline` for pods stopped
by a terminate, which sets `activeDeadlineSeconds: 0`). A failing DAG node carries no message of its own.

KFP's persistence agent reports the workflow to the API server, which turns every node into a
`run_details.task_details[]` entry (toModelTasks / toApiPipelineTaskDetail): display_name = node displayName,
create_time = the workflow's creation, start/end_time = the node's (Go's zero time, year 1, while unset),
state = the node phase as a RuntimeState, child_tasks[].pod_name = the node's children (node ids),
state_history grown at each report where the state changed; no error, no inputs/outputs, no execution_id.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's time.Time{} through timestamppb, what KFP shows for an unset time
# Argo node phase -> KFP RuntimeState (model.RuntimeState.ToV2; Omitted has no v2 name).
PHASE_STATE = {
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Succeeded": "SUCCEEDED",
    "Skipped": "SKIPPED",
    "Failed": "FAILED",
    "Error": "FAILED",
}
EXIT_1 = "main: Error (exit code 1)"
DEADLINE = "Step exceeded its deadline"


def fnv32a(text: str) -> int:
    """Argo's node-id hash (hash/fnv New32a)."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


@dataclass
class TaskRun:
    """One root task of an executed run as the executor reported it."""

    name: str
    started: str
    finished: str | None = None
    phase: str = "Running"  # Running, Succeeded, Failed
    message: str | None = None
    log_key: str | None = None  # where Argo archived the pod's log (`main-logs`), once the step ended


@dataclass
class ExecutedWorkflow:
    """The Argo workflow of one executed sandbox run; `manifest()` renders it at its current progress."""

    run_id: str
    pipeline: str
    created: str
    name: str = ""
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    phase: str = "Running"  # Running, Succeeded, Failed
    finished: str | None = None
    message: str | None = None  # a workflow-level failure (the sandbox could not run the pipeline at all)
    terminating: bool = False
    tasks: dict[str, TaskRun] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name:
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            self.name = f"{(self.pipeline or 'pipeline')[:57]}-{suffix}"

    def node_id(self, node_name: str) -> str:
        """Argo's id of the node called `node_name`."""
        return self.name if node_name == self.name else f"{self.name}-{fnv32a(node_name)}"

    def executor_node(self, task: str) -> str:
        """The id of a task's executor pod node (`<workflow>.root.<task>.executor`)."""
        return self.node_id(f"{self.name}.root.{task}.executor")

    def pod_name(self, task: str) -> str:
        """The Kubernetes pod of a task's executor node, named as Argo names it (`<wf>-<template>-<hash>`)."""
        return f"{self.name}-system-container-impl-{fnv32a(f'{self.name}.root.{task}.executor')}"

    def stop(self, now: str, *, phase: str, message: str | None = None) -> None:
        """The workflow ended: unfinished tasks end with it (Failed, deadline message, when terminated)."""
        for task in self.tasks.values():
            if task.finished is None:
                task.finished = now
                task.phase = "Failed" if phase != "Succeeded" else "Succeeded"
                if task.phase == "Failed" and task.message is None:
                    task.message = DEADLINE if self.terminating else EXIT_1
        self.phase, self.finished, self.message = phase, now, message

    def manifest(self) -> dict:
        """The Workflow as KFP stores it (v1beta1 `pipeline_runtime.workflow_manifest`)."""
        nodes: dict[str, dict] = {}
        end = self.finished
        w = self.name
        root_started = self.created

        def add(name, display, kind, template, phase, started, finished, children=(), message=None, outputs=None):
            node = {
                "id": self.node_id(name),
                "name": name,
                "displayName": display,
                "type": kind,
                "templateName": template,
                "templateScope": f"local/{w}",
                "phase": phase,
                "startedAt": started,
                "finishedAt": finished,
                "children": [self.node_id(c) for c in children],
                "outputs": outputs,
            }
            if name != w:
                node["boundaryID"] = self.node_id(name.rsplit(".", 1)[0] if "." in name else w)
            if message:
                node["message"] = message
            nodes[node["id"]] = {k: v for k, v in node.items() if v not in (None, [])}

        done = self.phase != "Running"
        dag_phase = self.phase
        add(w, w, "DAG", "entrypoint", dag_phase, root_started, end, [f"{w}.root-driver"])
        if self.terminating and done and not self.tasks:  # stopped before its first step ended
            add(
                f"{w}.root-driver",
                "root-driver",
                "Pod",
                "system-dag-driver",
                "Failed",
                root_started,
                end,
                message=DEADLINE,
            )
            return self._document(nodes)
        add(
            f"{w}.root-driver",
            "root-driver",
            "Pod",
            "system-dag-driver",
            "Succeeded",
            root_started,
            root_started,
            [f"{w}.root"],
        )
        add(
            f"{w}.root",
            "root",
            "DAG",
            "root",
            dag_phase,
            root_started,
            end,
            [f"{w}.root.{t}-driver" for t in self.tasks],
        )
        for t in self.tasks.values():
            base = f"{w}.root.{t.name}"
            add(
                f"{base}-driver",
                f"{t.name}-driver",
                "Pod",
                "system-container-driver",
                "Succeeded",
                t.started,
                t.started,
                [base],
            )
            add(base, t.name, "DAG", "system-container-executor", t.phase, t.started, t.finished, [f"{base}.executor"])
            # archiveLogs: true (O-RAN's and KFP's default): the pod's log is the artifact `main-logs`.
            logs = {"artifacts": [{"name": "main-logs", "s3": {"key": t.log_key}}]} if t.log_key else None
            add(
                f"{base}.executor",
                "executor",
                "Pod",
                "system-container-impl",
                t.phase,
                t.started,
                t.finished,
                message=t.message if t.phase == "Failed" else None,
                outputs=logs,
            )
        return self._document(nodes)

    def _document(self, nodes: dict) -> dict:
        end, w = self.finished, self.name
        spec: dict[str, Any] = {
            "entrypoint": "entrypoint",
            "serviceAccountName": "pipeline-runner",
            "podMetadata": {"labels": {"pipelines.kubeflow.org/v2_component": "true"}},
        }
        if self.terminating:
            spec["activeDeadlineSeconds"] = 0
        status = {
            "phase": self.phase,
            "startedAt": self.created,
            "finishedAt": end,
            "nodes": nodes,
            "progress": f"{sum(1 for t in self.tasks.values() if t.phase == 'Succeeded')}/{max(len(self.tasks), 1)}",
        }
        if self.message and self.phase != "Running":
            status["message"] = self.message
        return {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": w,
                "namespace": "kubeflow",
                "uid": self.uid,
                "creationTimestamp": self.created,
                "generateName": f"{self.pipeline}-",
                "labels": {"pipeline/runid": self.run_id, "workflows.argoproj.io/phase": self.phase},
            },
            "spec": spec,
            "status": {k: v for k, v in status.items() if v is not None},
        }


def task_details(run_id: str, workflow: dict, created: str, known: dict[str, dict], now: str) -> list[dict]:
    """KFP's `run_details.task_details` for a reported workflow; `known` (node id -> {task_id, state_history})
    keeps task ids and state histories across reports, as KFP's tasks table does."""
    out = []
    nodes = (workflow.get("status") or {}).get("nodes") or {}
    for node_id in sorted(nodes):
        node = nodes[node_id] or {}
        state = PHASE_STATE.get(node.get("phase") or "", "RUNTIME_STATE_UNSPECIFIED")
        entry = known.setdefault(node_id, {"task_id": str(uuid.uuid4()), "state_history": []})
        history = entry["state_history"]
        if not history or history[-1]["state"] != state:
            history.append({"update_time": now, "state": state})
        detail = {
            "run_id": run_id,
            "task_id": entry["task_id"],
            "display_name": node.get("displayName") or "",
            "create_time": created,
            "start_time": node.get("startedAt") or ZERO_TIME,
            "end_time": node.get("finishedAt") or ZERO_TIME,
            "state": state,
            "state_history": [dict(h) for h in history],
            "child_tasks": [{"pod_name": child} for child in node.get("children") or []],
        }
        if state == "RUNTIME_STATE_UNSPECIFIED":
            del detail["state"]  # protojson omits an enum's zero value
        out.append({k: v for k, v in detail.items() if v not in ("", [], None)})
    return out


def run_state(workflow: dict) -> str:
    """The run state KFP derives from a reported workflow (CANCELING while a terminated one is unfinished)."""
    phase = (workflow.get("status") or {}).get("phase") or ""
    final = phase in ("Succeeded", "Failed", "Error")
    if (workflow.get("spec") or {}).get("activeDeadlineSeconds") == 0 and not final:
        return "CANCELING"
    return PHASE_STATE.get(phase, "RUNTIME_STATE_UNSPECIFIED")
