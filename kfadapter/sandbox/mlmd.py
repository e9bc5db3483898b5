"""Sandbox ML Metadata: a gRPC `ml_metadata.MetadataStoreService` on 127.0.0.1 serving the records that
`PUT /_sandbox/runs/{run_id}/mlmd` attaches to runs, so the adapter's MLMD client runs over real gRPC.

It answers the four calls the adapter makes, the way MLMD does: `GetContextByTypeAndName` (an empty answer
when there is no such context), `GetExecutionsByContext` / `GetArtifactsByContext` (pages of
`options.max_result_size`, default 20, with `next_page_token`) and `GetEventsByExecutionIDs`. The message
classes are the adapter's own (`kfadapter.outputs.mlmd_messages`), whose wire format tests prove against bytes written
by the real ml-metadata library.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from concurrent import futures
from typing import Any

import grpc

from kfadapter.outputs import mlmd_messages as m
from kfadapter.outputs.objectstore import parse_uri
from kfadapter.sandbox import versions
from kfadapter.sandbox.errors import ApiError

_DEFAULT_PAGE = 20  # MLMD's default max_result_size
_STATES = set(m.Execution.State.keys())
_TYPE_IDS = {"system.PipelineRun": 12, "system.ContainerExecution": 13, "system.DAGExecution": 14}


# ---- records (control API) ------------------------------------------------------------------------------


def artifact_uri(pipeline: str, run_id: str, task: str, output: str) -> str:
    """Where the KFP version played puts a task's output (from 2.5 with a random segment, a UUID in 2.17)."""
    return versions.active().artifact_uri(pipeline or "pipeline", run_id, task, output, str(uuid.uuid4()))


def _new_id(store: dict) -> int:
    value = store["next_id"]
    store["next_id"] += 1
    return value


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ApiError(3, f"control API: {message}")


def _check_value(obj: Any, where: str) -> None:
    try:
        m.to_value(obj)
    except (TypeError, ValueError) as exc:
        raise ApiError(3, f"control API: {where} cannot be an MLMD value ({exc})") from None


def attach(state: Any, run_id: str, doc: dict) -> dict:
    """Record a run's MLMD context, executions, output artifacts and events; returns the ids given."""
    tasks: Any = doc.get("tasks")
    _check(isinstance(tasks, list), "tasks must be a list of {name, state?, type?, outputs?, artifacts?}")
    objects: dict[tuple[str, str], bytes] = {}
    store = state.mlmd
    with state.lock:
        pipeline = state._run(run_id)["_package"].pipeline_name  # 404 for an unknown run
        run = _new_run(store, run_id)
        ids: dict[str, Any] = {"context_id": run["context"]["id"], "executions": {}, "artifacts": {}}
        for task in tasks:
            _check(isinstance(task, dict) and isinstance(task.get("name"), str), "each task needs a name")
            name = task["name"]
            exec_state = task.get("state", "COMPLETE")
            _check(exec_state in _STATES, f"state must be one of {sorted(_STATES)}")
            outputs = task.get("outputs") or {}
            _check(isinstance(outputs, dict), "outputs must be an object")
            _check_value(outputs, f"outputs of {name!r}")
            execution = _new_execution(store, run_id, name, task.get("pod_name"), task.get("type"))
            execution["state"] = exec_state
            if outputs:
                execution["custom"]["outputs"] = outputs
            run["executions"].append(execution)
            ids["executions"][name] = execution["id"]
            for art_name, art_id in _add_artifacts(store, run, execution, pipeline, task.get("artifacts"), objects):
                ids["artifacts"][f"{name}/{art_name}"] = art_id
        store["runs"][run_id] = run
        store["objects"].update(objects)
    return ids


# ---- records as an executed run goes (KFP's drivers and launchers, backend/src/v2) ----------------------


def open_run(state: Any, run_id: str) -> None:
    """The root driver's record (driver.RootDAG → metadata.GetPipeline): the run's context, no execution yet."""
    with state.lock:
        state._run(run_id)  # 404 for a deleted run
        state.mlmd["runs"][run_id] = _new_run(state.mlmd, run_id)


def create_execution(state: Any, run_id: str, task: str, pod_name: str) -> int:
    """A container driver's record (metadata.CreateExecution): the task's execution, RUNNING; returns its id."""
    with state.lock:
        state._run(run_id)
        run = state.mlmd["runs"].get(run_id)
        if run is None:
            raise ApiError(5, f"run {run_id} has no ML Metadata context")
        execution = _new_execution(state.mlmd, run_id, task, pod_name, None)
        run["executions"].append(execution)
        return execution["id"]


def publish_execution(
    state: Any, run_id: str, execution_id: int, exec_state: str, outputs: dict, artifacts: list[dict]
) -> None:
    """The launcher's publish when its task ends (metadata.PublishExecution): state, output parameters, output
    artifacts with their OUTPUT events, and the artifacts' files in the object store."""
    _check(exec_state in _STATES, f"state must be one of {sorted(_STATES)}")
    _check_value(outputs, "outputs")
    objects: dict[tuple[str, str], bytes] = {}
    with state.lock:
        pipeline = state._run(run_id)["_package"].pipeline_name
        run = state.mlmd["runs"].get(run_id)
        execution = next((e for e in (run or {}).get("executions", []) if e["id"] == execution_id), None)
        if run is None or execution is None:
            raise ApiError(5, f"run {run_id} has no execution {execution_id}")
        execution["state"] = exec_state
        if outputs:
            execution["custom"]["outputs"] = outputs
        list(_add_artifacts(state.mlmd, run, execution, pipeline, artifacts, objects))
        state.mlmd["objects"].update(objects)


def _new_run(store: dict, run_id: str) -> dict:
    context = {"id": _new_id(store), "name": run_id, "created": int(time.time() * 1000)}
    return {"context": context, "executions": [], "artifacts": [], "events": []}


def _new_execution(store: dict, run_id: str, name: str, pod_name: str | None, kind: str | None) -> dict:
    exec_id = _new_id(store)
    custom: dict[str, Any] = {
        "display_name": name,
        "task_name": name,
        "namespace": "kubeflow",
        "pod_name": pod_name or f"{run_id[:8]}-{name}-{exec_id}",
    }
    return {
        "id": exec_id,
        "name": f"run/{run_id}/{name}",
        "state": "RUNNING",
        "type": kind or "system.ContainerExecution",
        "custom": custom,
    }


def _add_artifacts(
    store: dict, run: dict, execution: dict, pipeline: str, artifacts: Any, objects: dict[tuple[str, str], bytes]
):
    """Add output artifacts and their events to `run` (content into `objects`); yields (name, artifact id)."""
    name = execution["custom"]["task_name"]
    for art in artifacts or []:
        _check(isinstance(art, dict) and isinstance(art.get("name"), str), "each artifact needs a name")
        meta = art.get("metadata") or {}
        _check(isinstance(meta, dict), "artifact metadata must be an object")
        for key, value in meta.items():
            _check_value(value, f"metadata {key!r}")
        art_id = _new_id(store)
        uri = art.get("uri") or artifact_uri(pipeline, run["context"]["name"], name, art["name"])
        if art.get("content_base64") is not None:
            location: Any = parse_uri(uri)
            _check(location is not None, "content_base64 needs a minio:// or s3:// uri")
            try:
                objects[location] = base64.b64decode(art["content_base64"], validate=True)
            except (binascii.Error, TypeError):
                raise ApiError(3, "control API: content_base64 is not base64") from None
        run["artifacts"].append(
            {
                "id": art_id,
                "uri": uri,
                "type": art.get("type") or "system.Artifact",
                "state": "LIVE",
                "custom": {"display_name": art["name"], **meta},
            }
        )
        run["events"].append({"artifact_id": art_id, "execution_id": execution["id"], "key": art["name"]})
        yield art["name"], art_id


def put_object(state: Any, bucket: str, key: str, data: bytes) -> None:
    """Store an object served by the sandbox's S3-style `GET /_s3/{bucket}/{key}`."""
    with state.lock:
        state.mlmd["objects"][(bucket, key)] = data


def get_object(state: Any, bucket: str, key: str) -> bytes | None:
    """The stored object, None when missing."""
    with state.lock:
        return state.mlmd["objects"].get((bucket, key))


def add_fault(state: Any, code: str | None, delay: float, times: int | None) -> None:
    """Make the next MLMD calls sleep `delay` seconds and/or fail with gRPC status `code`."""
    _check(code is None or code in grpc.StatusCode.__members__, "code must be a gRPC status name")
    with state.lock:
        state.mlmd["faults"].append({"code": code, "delay": delay, "times": times})


def clear_faults(state: Any) -> None:
    """Remove every MLMD fault."""
    with state.lock:
        state.mlmd["faults"].clear()


# ---- the gRPC service -------------------------------------------------------------------------------------


def _props(target: Any, custom: dict) -> None:
    for key, value in custom.items():
        target[key].CopyFrom(m.to_value(value))


def _execution(rec: dict) -> Any:
    e = m.Execution(
        id=rec["id"],
        type_id=_TYPE_IDS.get(rec["type"], 15),
        name=rec["name"],
        type=rec["type"],
        last_known_state=m.Execution.State.Value(rec["state"]),
    )
    _props(e.custom_properties, rec["custom"])
    return e


def _artifact(rec: dict) -> Any:
    a = m.Artifact(
        id=rec["id"], type_id=20, uri=rec["uri"], type=rec["type"], state=m.Artifact.State.Value(rec["state"])
    )
    _props(a.custom_properties, rec["custom"])
    return a


class _Service:
    def __init__(self, state: Any) -> None:
        self.state = state

    def _fault(self, context: grpc.ServicerContext) -> None:
        with self.state.lock:
            faults = self.state.mlmd["faults"]
            fault = dict(faults[0]) if faults else None
            if fault and fault["times"] is not None:
                faults[0]["times"] -= 1
                if faults[0]["times"] <= 0:
                    faults.pop(0)
        if fault is None:
            return
        if fault["delay"]:
            time.sleep(fault["delay"])  # no lock held
        if fault["code"]:
            context.abort(grpc.StatusCode[fault["code"]], "sandbox: injected fault")

    def _run_by_context(self, context_id: int) -> dict | None:
        return next((r for r in self.state.mlmd["runs"].values() if r["context"]["id"] == context_id), None)

    def _page(self, request: Any, items: list, build, response_cls: type, key: str, context: Any) -> Any:
        size = request.options.max_result_size or _DEFAULT_PAGE
        token = request.options.next_page_token
        try:
            start = int(token) if token else 0
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid next_page_token")
        resp = response_cls()
        getattr(resp, key).extend(build(rec) for rec in items[start : start + size])
        if start + size < len(items):
            resp.next_page_token = str(start + size)
        return resp

    def GetContextByTypeAndName(self, request: Any, context: Any) -> Any:
        self._fault(context)
        _, resp_cls = m.METHODS["GetContextByTypeAndName"]
        resp = resp_cls()
        with self.state.lock:
            run = self.state.mlmd["runs"].get(request.context_name)
            if run is not None and request.type_name == m.PIPELINE_RUN_TYPE:
                ctx = run["context"]
                resp.context.CopyFrom(
                    m.Context(
                        id=ctx["id"],
                        type_id=_TYPE_IDS[m.PIPELINE_RUN_TYPE],
                        name=ctx["name"],
                        type=m.PIPELINE_RUN_TYPE,
                        create_time_since_epoch=ctx["created"],
                        last_update_time_since_epoch=ctx["created"],
                    )
                )
        return resp  # MLMD answers an empty response, not NOT_FOUND, for an unknown name

    def GetExecutionsByContext(self, request: Any, context: Any) -> Any:
        self._fault(context)
        with self.state.lock:
            run = self._run_by_context(request.context_id)
            items = list(run["executions"]) if run else []
        return self._page(request, items, _execution, m.METHODS["GetExecutionsByContext"][1], "executions", context)

    def GetArtifactsByContext(self, request: Any, context: Any) -> Any:
        self._fault(context)
        with self.state.lock:
            run = self._run_by_context(request.context_id)
            items = list(run["artifacts"]) if run else []
        return self._page(request, items, _artifact, m.METHODS["GetArtifactsByContext"][1], "artifacts", context)

    def GetEventsByExecutionIDs(self, request: Any, context: Any) -> Any:
        self._fault(context)
        wanted = set(request.execution_ids)
        _, resp_cls = m.METHODS["GetEventsByExecutionIDs"]
        resp = resp_cls()
        with self.state.lock:
            for run in self.state.mlmd["runs"].values():
                for ev in run["events"]:
                    if ev["execution_id"] in wanted:
                        event = resp.events.add(
                            artifact_id=ev["artifact_id"],
                            execution_id=ev["execution_id"],
                            type=m.OUTPUT_EVENT,
                            milliseconds_since_epoch=int(time.time() * 1000),
                        )
                        event.path.steps.add(key=ev["key"])
        return resp


class MlmdServer:
    """The sandbox's MLMD gRPC server (port 0 = an ephemeral port)."""

    def __init__(self, state: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state, self._host, self._port = state, host, port
        self._server: grpc.Server | None = None
        self.port: int | None = None

    def start(self) -> MlmdServer:
        """Bind and serve on gRPC's own threads; returns self."""
        service = _Service(self._state)
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(service, name), request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )
            for name, (req, resp) in m.METHODS.items()
        }
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-mlmd"))
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(m.SERVICE, handlers),))
        self.port = self._server.add_insecure_port(f"{self._host}:{self._port}")
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    @property
    def endpoint(self) -> str:
        """`host:port` for a gRPC channel (KFADAPTER_MLMD_ENDPOINT)."""
        if self.port is None:
            raise RuntimeError("MlmdServer is not started")
        return f"{self._host}:{self.port}"
