"""Step logs of a run, as text: Argo's archived `main-logs` (through KFP's `:read`, v1 and v2 runs) or, on KFP
>= 2.5, each v2 task's `executor-logs` output artifact (ML Metadata + the object store).

Every step's log is streamed (never loaded whole), cut at `MAX_STEP_LOG_BYTES`; `tail=N` keeps the last N lines.
A step that runs and has nothing archived yet says so instead of a log. Steps are the run's tasks as
`GET /runs/<id>` lists them (same id, name, state and order); the log sources found are matched to them.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kfadapter.core import archive
from kfadapter.core.errors import AdapterError, BadRequest, NotFound
from kfadapter.outputs import argo, runinfo
from kfadapter.outputs.mlmd import KFP_STATE_OF
from kfadapter.packages import parsing as pl

log = logging.getLogger(__name__)

MAX_STEP_LOG_BYTES = 16 * 1024 * 1024
MAX_TAIL_LINES = 100_000
_FINISHED = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


@dataclass
class Step:
    """One step whose log can be read: `open` gives its byte chunks, or is None with `missing` saying why."""

    id: str
    name: str
    state: str
    open: Callable[[], tuple[Iterator[bytes], Callable[[], None]]] | None
    missing: str = ""
    source: str = ""
    aliases: tuple[str, ...] = ()  # other names of the step: its MLMD execution id, Argo node id, pod
    pod: str | None = None
    started: str | None = None


def parse_tail(text: str | None) -> int | None:
    """`?tail=N`: a positive number of lines (None: the whole log)."""
    if text in (None, ""):
        return None
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(
            f"tail must be a positive number of lines, not {text!r}", code="invalid_field", details={"field": "tail"}
        )
    return min(int(text), MAX_TAIL_LINES)


class StepLogs:
    """Find a run's steps and open their logs (uses the outputs service's KFP, MLMD and object-store clients)."""

    def __init__(self, outputs) -> None:
        self.outputs = outputs
        self.kf = outputs.kf

    def steps(self, run_id: str, task: str | None = None) -> list[Step]:
        """The run's steps (only `task`, by id, name or alias, when given: 404 if it has no such step)."""
        run = self.kf.get_run(run_id)
        kind = self.outputs._kind(run)
        profile = self.kf.server_profile()
        if kind.kind == pl.V2 and profile.has_executor_logs and self.outputs.objects is not None:
            found = self._v2_steps(run_id)
        else:
            found = self._workflow_steps(run_id, kind.workflow)
        steps = as_run_tasks(found, runinfo.tasks(run))
        if task is None:
            return steps
        chosen = [s for s in steps if task in (s.id, s.name, *s.aliases)]
        if not chosen:
            raise NotFound(
                f"run {run_id!r} has no step {task!r}" + ("" if steps else " (no step has started yet)"),
                code="task_not_found",
                details={"run_id": run_id, "task": task, "tasks": [s.name for s in steps]},
            )
        return chosen

    def _v2_steps(self, run_id: str) -> list[Step]:
        try:
            executions = self.outputs.mlmd.run_executions(run_id)
        except NotFound:
            return []
        profile = self.kf.server_profile()
        steps = []
        for e in sorted(executions, key=lambda x: x.id):
            if e.type == "system.DAGExecution":
                continue
            state = KFP_STATE_OF.get(e.state, "PENDING")
            art = next((a for a in e.artifacts if profile.is_log_artifact(a.name)), None)
            if art is None:
                steps.append(
                    Step(str(e.id), e.name, state, None, _not_archived(state), "executor-logs", pod=e.pod_name)
                )
                continue

            def opener(uri: str = art.uri):
                obj = self.outputs.objects.open(uri)
                return iter(lambda: obj.read(archive.CHUNK), b""), obj.close

            steps.append(Step(str(e.id), e.name, state, opener, source="executor-logs", pod=e.pod_name))
        return steps

    def _workflow_steps(self, run_id: str, workflow: dict | None) -> list[Step]:
        workflow = workflow if workflow is not None else self.kf.workflow(run_id)
        if workflow is None:
            return []  # KFP has not recorded the workflow yet (the run has not started)
        v2 = not argo.is_v1(workflow)
        nodes = argo.nodes_of(workflow)
        steps = []
        for t in argo.tasks_of(workflow, logs=True):
            if v2 and "driver" in t.template:
                continue  # KFP's own driver pods of a v2 run
            name = _v2_task_name(nodes.get(t.id) or {}, t.name) if v2 else t.name
            produced = any(o.name == argo.LOGS and o.produced for o in t.outputs)
            if not produced:
                steps.append(
                    Step(t.id, name, t.state, None, _not_archived(t.state), argo.LOGS, pod=t.id, started=t.started_at)
                )
                continue

            def opener(node_id: str = t.id):
                decoded, close = self.outputs.v1.open(run_id, node_id, argo.LOGS, workflow)
                try:
                    chunks = archive.iter_chosen(decoded, None)
                except BaseException:
                    close()
                    raise
                return chunks, close

            steps.append(Step(t.id, name, t.state, opener, source=argo.LOGS, pod=t.id, started=t.started_at))
        return steps


def as_run_tasks(found: list[Step], known: list[dict]) -> list[Step]:
    """The steps named, stated and ordered as `GET /runs/<id>` has the run's tasks (`known`): a step found
    in a log source takes its task's id (its own becomes an alias) and state; a task with no log source yet
    is a step with nothing archived; steps no task matches follow in their own order."""
    by_task: dict[int, Step] = {}
    rest = []
    for step in found:
        task = runinfo.match_task(known, step.name, pod=step.pod, started=step.started)
        if task is None or id(task) in by_task or not task.get("id"):
            rest.append(step)
            continue
        step.aliases = tuple(a for a in (step.id, step.pod) if a and a != task["id"])
        step.id = task["id"]
        if step.state != task["state"]:
            step.state = task["state"]
            if step.open is None:
                step.missing = _not_archived(step.state)
        by_task[id(task)] = step
    out = []
    for task in known:
        seen = by_task.get(id(task))
        if seen is not None:
            out.append(seen)
        elif task.get("id"):
            out.append(
                Step(
                    task["id"],
                    task["name"],
                    task["state"],
                    None,
                    _not_archived(task["state"]),
                    aliases=tuple(a for a in (task.get("pod"),) if a),
                )
            )
    return out + rest


def _v2_task_name(node: dict, fallback: str) -> str:
    """A v2 run's executor pod is `<wf>.root.<task>.executor`: name it by its task."""
    parts = str(node.get("name") or "").split(".")
    return parts[-2] if fallback == "executor" and len(parts) >= 2 else fallback


def _not_archived(state: str) -> str:
    if state in _FINISHED:
        return f"no log was archived for this step ({state})"
    return f"the step is {state}: its log is archived when it ends, nothing is archived yet"


def step_text(step: Step, tail: int | None) -> Iterator[bytes]:
    """Yield one step's log, cut at MAX_STEP_LOG_BYTES (or its last `tail` lines)."""
    if step.open is None:  # callers check first (api/logs.py answers log_not_available)
        raise NotFound(f"log of step {step.name!r}: {step.missing}", code="log_not_available")
    chunks, close = step.open()
    try:
        if tail is None:
            sent = 0
            for chunk in chunks:
                room = MAX_STEP_LOG_BYTES - sent
                if len(chunk) > room:
                    yield chunk[:room]
                    yield f"\n[log cut at {MAX_STEP_LOG_BYTES} bytes; ?tail=N shows its end]\n".encode()
                    return
                sent += len(chunk)
                yield chunk
            return
        yield from _tail(chunks, tail)
    finally:
        close()


def _tail(chunks: Iterator[bytes], lines: int) -> Iterator[bytes]:
    kept: collections.deque[bytes] = collections.deque(maxlen=lines)
    size, partial = 0, b""
    for chunk in chunks:
        parts = (partial + chunk).split(b"\n")
        partial = parts.pop()
        for line in parts:
            kept.append(line + b"\n")
        if len(partial) > MAX_STEP_LOG_BYTES:
            partial = partial[-MAX_STEP_LOG_BYTES:]  # one endless line: keep its end only
    if partial:
        kept.append(partial)
    out = list(kept)
    size = sum(len(x) for x in out)
    while out and size > MAX_STEP_LOG_BYTES:  # memory and answer stay bounded whatever the line lengths
        size -= len(out.pop(0))
    yield from out


def all_steps_text(steps: list[Step], tail: int | None) -> Iterator[bytes]:
    """Yield every step's log under a header line; a step without a log (yet) or an unreadable one says why."""
    if not steps:
        yield b"no step has started yet (KFP has recorded no step of this run)\n"
        return
    for step in steps:
        yield f"===== {step.name} ({step.id}) {step.state} =====\n".encode()
        if step.open is None:
            yield f"[{step.missing}]\n".encode()
            continue
        ended = True
        try:
            for chunk in step_text(step, tail):
                yield chunk
                ended = chunk.endswith(b"\n")
        except AdapterError as exc:
            # Headers are sent: say it in the text and go on with the next step.
            log.warning("log of step %s unreadable: %s", step.id, exc.message)
            yield ("" if ended else "\n").encode() + f"[log unreadable: {exc.message}]\n".encode()
            continue
        if not ended:
            yield b"\n"
