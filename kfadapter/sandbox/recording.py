"""What an executed sandbox run leaves in ML Metadata and the artifact store, task by task, as KFP does.

KFP records a v2 run while it goes, not at its end (backend/src/v2/driver/driver.go,
backend/src/v2/component/launcher_v2.go and backend/src/v2/metadata/client.go, 2.3.0 and 2.17.0 alike):
- the root driver opens the run's pipeline-run context (`GetPipeline`) before any task starts;
- each container driver creates its task's execution, RUNNING, before the task's pod starts
  (`CreateExecution`; the launcher's `prePublish` then sets `pod_name` to the executor pod's name);
- each launcher publishes its execution when its task ends (`Execute` → deferred `publish` →
  `PublishExecution`): COMPLETE with the output parameters and output artifacts, or FAILED; from 2.5 the
  task's log is among them as `executor-logs` (uploaded also when the component failed);
- Argo's wait container archives the pod's log as `main-logs` when the pod ends (`archiveLogs: true`).
A pod killed by a terminate never publishes: its execution stays RUNNING, as in KFP. A task whose driver fails
(sandbox/driver.py: 2.3's driver parses the kubernetes config in cmd/driver/main.go before `Container` creates
the execution) has no record at all.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path
from typing import Any

from kfadapter.sandbox import executor, mlmd
from kfadapter.sandbox.errors import ApiError
from kfadapter.sandbox.workflow import ExecutedWorkflow

log = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # larger files are recorded by uri only


class TaskRecords:
    """One executed run's ML Metadata records and archived logs, written as its tasks start and end."""

    def __init__(
        self, state: Any, run_id: str, ir: dict, wf: ExecutedWorkflow, pipeline_root: Path, no_driver: Any = ()
    ) -> None:
        self.state, self.run_id, self.ir, self.wf, self.pipeline_root = state, run_id, ir, wf, pipeline_root
        self.no_driver = frozenset(no_driver)  # tasks whose driver fails: nothing of them is recorded
        self.pipeline = (ir.get("pipelineInfo") or {}).get("name") or "pipeline"
        self.executions: dict[str, int] = {}  # task name -> MLMD execution id
        self.published: set[str] = set()

    def run_started(self) -> None:
        """The root driver: the run's context (a retried run starts a new one)."""
        self._call(mlmd.open_run, self.state, self.run_id, done=True)

    def task_started(self, name: str) -> None:
        """The task's driver: its execution, RUNNING."""
        if name in self.executions or name in self.no_driver:
            return
        exec_id = self._call(mlmd.create_execution, self.state, self.run_id, name, self.wf.pod_name(name))
        if exec_id is not None:
            self.executions[name] = exec_id

    def task_ended(self, name: str, ok: bool) -> None:
        """The task's launcher publishes it, then Argo archives its pod's log."""
        if name in self.no_driver:
            return
        task = self._collected(name, ok)
        if task is None:  # not a root task (inside a sub-DAG): its state, nothing collected
            task = {"name": name, "state": "COMPLETE" if ok else "FAILED", "outputs": {}, "artifacts": []}
        self._publish(task)
        self._archive_log(task)

    def run_ended(self, result: dict) -> None:
        """At the run's end: publish what the progress notes missed (a task that failed before kfp.local noted
        its start). Tasks that never started have no record, as no driver ran for them."""
        for task in result.get("tasks") or []:
            if task["name"] in self.published or task["name"] in self.no_driver:
                continue
            if task.get("state") not in ("COMPLETE", "FAILED"):
                continue
            self.task_started(task["name"])
            self._publish(task)
            self._archive_log(task)

    # ---- helpers ------------------------------------------------------------------------------------------

    def _collected(self, name: str, ok: bool) -> dict | None:
        """The task's state, outputs, artifacts and log from kfp.local's task directory."""
        failed = None if ok else name
        return next((t for t in executor.collect_tasks(self.ir, self.pipeline_root, failed) if t["name"] == name), None)

    def _publish(self, task: dict) -> None:
        name = task["name"]
        exec_id = self.executions.get(name)
        if exec_id is None or name in self.published:
            return
        version = self.state.kfp_version
        salt = str(uuid.uuid4())  # KFP's per-execution random URI segment (driver: uuid.NewString(), from 2.5)
        files = list(task.get("artifacts") or []) if task.get("state") == "COMPLETE" else []
        if version.executor_logs and task.get("log"):
            # From 2.5 the launcher uploads each task's log as its output artifact `executor-logs`.
            files.append({"name": "executor-logs", "type": "system.Artifact", "path": task["log"]})
        artifacts = []
        for art in files:
            entry = {
                "name": art["name"],
                "type": art.get("type") or "system.Artifact",
                "uri": version.artifact_uri(self.pipeline, self.run_id, name, art["name"], salt),
                "metadata": art.get("metadata") or {},
            }
            path = Path(art.get("path") or "")
            if path.is_file() and path.stat().st_size <= MAX_ARTIFACT_BYTES:
                entry["content_base64"] = base64.b64encode(path.read_bytes()).decode()
            artifacts.append(entry)
        complete = task.get("state") == "COMPLETE"
        outputs = (task.get("outputs") or {}) if complete else {}
        state = "COMPLETE" if complete else "FAILED"
        if self._call(mlmd.publish_execution, self.state, self.run_id, exec_id, state, outputs, artifacts, done=True):
            self.published.add(name)

    def _archive_log(self, task: dict) -> None:
        """Argo's `archiveLogs: true`: the executor pod's log becomes its node's `main-logs`."""
        run, log_file = self.wf.tasks.get(task["name"]), Path(task.get("log") or "")
        if run is None or run.log_key or not log_file.is_file() or log_file.stat().st_size > MAX_ARTIFACT_BYTES:
            return
        node_id = self.wf.executor_node(task["name"])
        if self._call(self.state.put_artifact, self.run_id, node_id, "main-logs", log_file.read_bytes(), done=True):
            run.log_key = f"artifacts/{self.wf.name}/{node_id}/main.log"

    def _call(self, fn, *args, done: bool = False) -> Any:
        """Call a recording function; a run deleted meanwhile (or a refused record) is logged, never raised."""
        try:
            value = fn(*args)
        except ApiError as exc:
            log.warning("sandbox run %s: cannot record %s: %s", self.run_id, fn.__name__, exc.message)
            return None
        return True if done else value
