"""Run outputs for the routes and the CLI: v1 runs from the Argo workflow + KFP's `:read` (`v1artifacts`), v2 runs
from MLMD.

Data problems of one output (missing, corrupt, hostile) are reported on that output and the rest still
answer; failures of KFP or MLMD themselves fail the request (502/504). Downloads read the object twice when it
is larger than a small buffer: a first pass checks all of it (so every decoding error is a JSON answer before
any byte is sent), a second streams it; memory stays bounded by the chunk and buffer sizes either way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kfadapter.core import archive
from kfadapter.core.errors import NotFound, ObjectStoreUnavailable, Undecodable
from kfadapter.outputs import argo, ir, runinfo, values
from kfadapter.outputs.downloads import ArtifactDownloads
from kfadapter.outputs.mlmd import KFP_STATE_OF, MlmdClient, MlmdExecution
from kfadapter.outputs.objectstore import ObjectStore, parse_uri
from kfadapter.outputs.v1artifacts import V1Artifacts
from kfadapter.packages import parsing as pl

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
# KFP's launcher keeps these artifacts' values in MLMD custom properties and writes no object for them
# (`log_metric` only sets metadata; the launcher skips a missing file); `display_name` and
# `store_session_info` are KFP's bookkeeping, not metrics.
METRICS_TYPES = frozenset({"system.Metrics", "system.ClassificationMetrics", "system.SlicedClassificationMetrics"})
_NOT_METRICS = frozenset({"display_name", "store_session_info"})


@dataclass
class _Kind:
    kind: str  # pl.V1 or pl.V2
    spec: Any = None
    workflow: dict | None = None


class OutputsService(ArtifactDownloads):
    """Read a run's outputs (typed JSON) and open single artifacts for download."""

    def __init__(
        self, settings: Any, kf: Any, *, mlmd: MlmdClient | None = None, objects: ObjectStore | None = None
    ) -> None:
        self.settings, self.kf = settings, kf
        self.mlmd = mlmd or MlmdClient(settings.mlmd_endpoint, settings.mlmd_timeout, settings.mlmd_max_message_bytes)
        if objects is None and settings.object_store_endpoint:
            objects = ObjectStore(
                settings.object_store_endpoint,
                settings.object_store_access_key,
                settings.object_store_secret_key,
                region=settings.object_store_region,
                timeout=(settings.kfp_connect_timeout, settings.object_store_timeout),
            )
        self.objects = objects
        self.limits = archive.Limits(max_bytes=settings.artifact_max_bytes, max_members=settings.artifact_max_members)
        self.v1 = V1Artifacts(kf, objects, self.limits)  # :read, or the object store where KFP refuses :read
        self.inline = settings.output_inline_bytes

    # ---- which kind of run ------------------------------------------------------------------------------

    def _kind(self, run: dict) -> _Kind:
        """v1 or v2 from the run's pipeline; the workflow itself decides when the version is gone."""
        spec = run.get("pipeline_spec")
        ref = run.get("pipeline_version_reference") or {}
        if spec is None and ref.get("pipeline_version_id"):
            try:
                spec = self.kf.version_by_id(ref["pipeline_version_id"]).get("pipeline_spec")
            except NotFound:
                spec = None
        kind = pl.spec_kind(spec)
        if kind is not None:
            return _Kind(kind, spec)
        workflow = self.kf.workflow(run["run_id"])
        return _Kind(pl.V1 if workflow and argo.is_v1(workflow) else pl.V2, None, workflow)

    # ---- GET /runs/<id>/outputs -------------------------------------------------------------------------

    def run_outputs(self, run_id: str, *, task: str | None = None, logs: bool = False) -> dict:
        """Return the run's state and every task's outputs as typed JSON (`task` filters by id or name)."""
        run = self.kf.get_run(run_id)
        kind = self._kind(run)
        known = runinfo.tasks(run)  # GET /runs/<id>'s tasks: their ids, states and order are this answer's too
        if kind.kind == pl.V1:
            tasks = self._v1_tasks(run_id, kind.workflow, task, logs, known)
        else:
            tasks = self._v2_tasks(run_id, kind.spec, task, known)
        if task and not tasks:
            # An unknown task is a 404, not an empty answer (also while the task has not started yet).
            raise NotFound(
                f"run {run_id!r} has no task {task!r} (yet)",
                code="task_not_found",
                details={"run_id": run_id, "task": task},
            )
        state = run.get("state")
        return {
            "run_id": run_id,
            "run_name": run.get("display_name"),
            "run_status": state,
            "finished": state in TERMINAL_STATES,
            "pipeline_kind": kind.kind,
            "tasks": tasks,
        }

    def _v1_tasks(
        self, run_id: str, workflow: dict | None, selected: str | None, logs: bool, known: list[dict]
    ) -> list[dict]:
        workflow = workflow if workflow is not None else self.kf.workflow(run_id)
        found = [] if workflow is None else argo.tasks_of(workflow, logs=logs)
        pairs = [(runinfo.match_task(known, t.name, started=t.started_at), t) for t in found]
        out = []
        for task, t in runinfo.in_run_order(pairs, known):
            ident = (task or {}).get("id") or (t.id if t else "")
            if selected and selected not in (ident, *((t.id, t.name, t.template) if t else _names(task))):
                continue
            if t is None:
                out.append(_not_recorded(run_id, task or {}))
                continue
            out.append(
                {
                    "id": ident,
                    "name": t.name,
                    "node_id": t.id,
                    "template": t.template,
                    "state": task["state"] if task else t.state,
                    "phase": t.phase,
                    "started_at": t.started_at,
                    "finished_at": t.finished_at,
                    "outputs": [self._v1_output(run_id, t, o, workflow) for o in t.outputs],
                    "log": logs_path(run_id, ident),
                }
            )
        return out

    def _v1_output(self, run_id: str, task: argo.Task, output: argo.Output, workflow: dict) -> dict:
        entry: dict[str, Any] = {"name": output.name, "type": output.type}
        if output.parameter is not None:
            data = output.parameter.encode("utf-8")
            entry.update(source="parameter", available=True)
            return entry | values.render(data[: self.inline], len(data), len(data) <= self.inline, output.type)
        assert output.artifact is not None  # an output is an inline parameter or an artifact (argo.outputs_of)
        entry.update(
            source="artifact", artifact=output.artifact, download=download_path(run_id, task.id, output.artifact)
        )
        if not output.produced:
            return entry | {"available": False, "value": None, "reason": "not produced (yet)"}
        try:
            decoded, close = self.v1.open(run_id, task.id, output.artifact or output.name, workflow)
            try:
                found = archive.scan(decoded, head_bytes=self.inline)
            finally:
                close()
        except (NotFound, Undecodable, ObjectStoreUnavailable) as exc:
            return entry | {"available": False, "value": None, "error": exc.to_dict()}
        return entry | _rendered(found, output.type)

    def _v2_tasks(self, run_id: str, spec: Any, selected: str | None, known: list[dict]) -> list[dict]:
        try:
            executions = self.mlmd.run_executions(run_id)
        except NotFound:
            executions = []  # the run has not reached ML Metadata yet
        types = ir.output_types(spec)
        profile = self.kf.server_profile()
        found = [
            e
            for e in sorted(executions, key=lambda x: x.id)
            if not (e.type == "system.DAGExecution" and not e.outputs and not e.artifacts)
        ]
        pairs = [(runinfo.match_task(known, e.name, pod=e.pod_name), e) for e in found]
        out = []
        for task, e in runinfo.in_run_order(pairs, known):
            ident = (task or {}).get("id") or (str(e.id) if e else "")
            if selected and selected not in (ident, *((str(e.id), e.name, e.pod_name) if e else _names(task))):
                continue
            if e is None:
                out.append(_not_recorded(run_id, task or {}))
                continue
            declared = types.get(e.name, {})
            outputs = [self._v2_parameter(name, value, declared.get(name)) for name, value in sorted(e.outputs.items())]
            # KFP >= 2.5's `executor-logs` artifact is the task's log, not something the component produced.
            outputs += [
                self._v2_artifact(run_id, e, a, declared.get(a.name))
                for a in e.artifacts
                if not profile.is_log_artifact(a.name)
            ]
            out.append(
                {
                    "id": ident,
                    "name": e.name,
                    # KFP's state of the task, as GET /runs/<id> has it (a killed pod's execution stays RUNNING)
                    "state": task["state"] if task else KFP_STATE_OF.get(e.state, "PENDING"),
                    "mlmd_state": e.state,
                    "mlmd_execution_id": str(e.id),
                    "pod_name": e.pod_name,
                    "outputs": outputs,
                    "log": logs_path(run_id, ident),
                }
            )
        return out

    def _v2_parameter(self, name: str, value: Any, declared: str | None) -> dict:
        entry = {"name": name, "type": declared, "source": "parameter", "available": True}
        text = json.dumps(value).encode("utf-8")
        if len(text) > self.inline:
            return entry | values.preview(text[: self.inline], len(text))
        return entry | values.from_json_value(value, declared) | {"size": len(text), "truncated": False}

    def _v2_artifact(self, run_id: str, execution: MlmdExecution, art: Any, declared: str | None) -> dict:
        entry: dict[str, Any] = {
            "name": art.name,
            "type": declared or art.type,
            "source": "artifact",
            "uri": art.uri,
            "metadata": art.metadata,
        }
        if (declared or art.type) in METRICS_TYPES:
            return entry | _metrics(art.metadata)
        if self.objects is None:
            return entry | {
                "available": False,
                "value": None,
                "reason": "content unavailable: no object store configured (KFADAPTER_OBJECT_STORE_ENDPOINT)",
            }
        if parse_uri(art.uri) is None:
            return entry | {
                "available": False,
                "value": None,
                "reason": "content unavailable: the URI is not in an S3/MinIO object store",
            }
        entry["download"] = download_path(run_id, str(execution.id), art.name)
        try:
            obj = self.objects.open(art.uri)
            try:
                found = archive.scan(
                    archive.open_object(obj, self.limits, decompress=False), head_bytes=self.inline, known_size=obj.size
                )
            finally:
                obj.close()
        except (NotFound, Undecodable, ObjectStoreUnavailable) as exc:
            # ObjectStoreDenied is not caught: refused credentials refuse every artifact, so the whole answer is a
            # 502 naming the settings to fix rather than each artifact quietly flagged unavailable.
            return entry | {"available": False, "value": None, "error": exc.to_dict()}
        return entry | _rendered(found, None)


def _names(task: dict | None) -> tuple:
    """What a task not recorded yet can be asked for by: its name and pod."""
    return (task or {}).get("name"), (task or {}).get("pod")


def _not_recorded(run_id: str, task: dict) -> dict:
    """A task KFP lists that has recorded nothing yet (its driver or pod has not run, or not ended)."""
    return {
        "id": task.get("id"),
        "name": task.get("name"),
        "state": task.get("state"),
        "outputs": [],
        "log": logs_path(run_id, task.get("id") or task.get("name") or ""),
    }


def _metrics(metadata: dict) -> dict:
    """Render a metrics artifact from its ML Metadata custom properties (KFP stores no file for it)."""
    value = {k: v for k, v in metadata.items() if k not in _NOT_METRICS}
    return {
        "available": True,
        "source": "metadata",
        "value": value,
        "encoding": "json",
        "size": len(json.dumps(value)),
        "truncated": False,
    }


def logs_path(run_id: str, task_id: str) -> str:
    """Return the adapter path that shows one step's log."""
    return f"/runs/{quote(run_id, safe='')}/logs?task={quote(task_id, safe='')}"


def download_path(run_id: str, node_id: str, name: str) -> str:
    """Return the adapter path that downloads one artifact."""
    return f"/runs/{quote(run_id, safe='')}/nodes/{quote(node_id, safe='')}/artifacts/{quote(name, safe='')}"


def _rendered(found: archive.Scan, declared: str | None) -> dict:
    out: dict[str, Any] = {"available": True, "stored_as": found.format}
    if found.members is not None and found.chosen is None:
        # Several files (a directory output): list them; each one downloads with ?member=.
        return out | {
            "value": None,
            "encoding": None,
            "members": [m.to_dict() for m in found.members],
            "size": sum(m.size for m in found.files),
            "truncated": False,
        }
    if found.chosen is not None:
        out["member"] = found.chosen.name
    return out | values.render(found.head, found.size, found.complete, declared)
