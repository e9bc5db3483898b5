"""ML Metadata over gRPC: a client with deadlines for the calls the adapter makes (messages: `mlmd_messages`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import grpc

from kfadapter.core.errors import MlmdUnavailable, NotFound
from kfadapter.outputs.mlmd_messages import (
    METHODS,
    OUTPUT_EVENT,
    PIPELINE_RUN_TYPE,
    SERVICE,
    Artifact,
    Execution,
    value_of,
)

_PAGE = 100  # MLMD's default page is 20
_MAX_PAGES = 1000
# A page of executions with large output structs can pass gRPC's 4 MiB default; still bounded
# (KFADAPTER_MLMD_MAX_MESSAGE_BYTES): gRPC refuses a larger answer before decoding it.
_MAX_MESSAGE = 64 * 1024 * 1024
# An MLMD execution's state as the task state KFP shows for it.
KFP_STATE_OF = {
    "COMPLETE": "SUCCEEDED",
    "CACHED": "SUCCEEDED",
    "RUNNING": "RUNNING",
    "NEW": "PENDING",
    "FAILED": "FAILED",
    "CANCELED": "CANCELED",
    "UNKNOWN": "PENDING",
}


# ---- what the adapter reads -------------------------------------------------------------------------------


@dataclass
class MlmdArtifact:
    """One output artifact of an execution."""

    id: int
    name: str  # the output's name: the OUTPUT event's path key
    uri: str
    type: str
    state: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class MlmdExecution:
    """One task of a v2 run as MLMD records it."""

    id: int
    name: str
    type: str
    state: str
    pod_name: str | None
    outputs: dict[str, Any]
    artifacts: list[MlmdArtifact] = field(default_factory=list)


class MlmdClient:
    """A minimal MLMD gRPC client: every call has a deadline; failures become NotFound / MlmdUnavailable."""

    def __init__(self, endpoint: str, timeout: float, max_message_bytes: int = _MAX_MESSAGE) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    def _call(self, method: str, request: Any) -> Any:
        req_cls, resp_cls = METHODS[method]
        with self._lock:  # creating a channel does no I/O; it connects on the first call
            if self._channel is None:
                self._channel = grpc.insecure_channel(
                    self.endpoint, options=[("grpc.max_receive_message_length", self.max_message_bytes)]
                )
        stub = self._channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        try:
            return stub(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _translate(exc, method, self.endpoint, self.max_message_bytes) from None

    def close(self) -> None:
        """Close the channel (a new one is made on the next call)."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def run_context_id(self, run_id: str) -> int:
        """Return the id of the `system.PipelineRun` context named after the run; NotFound when MLMD has none."""
        req_cls, _ = METHODS["GetContextByTypeAndName"]
        resp = self._call("GetContextByTypeAndName", req_cls(type_name=PIPELINE_RUN_TYPE, context_name=run_id))
        if not resp.HasField("context") or not resp.context.id:
            raise NotFound(
                f"ML Metadata has no record of run {run_id!r}", code="run_not_in_mlmd", details={"run_id": run_id}
            )
        return resp.context.id

    def _paged(self, method: str, key: str, context_id: int) -> list[Any]:
        req_cls, _ = METHODS[method]
        items: list[Any] = []
        token = ""
        for _ in range(_MAX_PAGES):
            request = req_cls(context_id=context_id)
            request.options.max_result_size = _PAGE
            if token:
                request.options.next_page_token = token
            resp = self._call(method, request)
            items.extend(getattr(resp, key))
            token = resp.next_page_token
            if not token:
                return items
        raise MlmdUnavailable(f"ML Metadata kept returning page tokens after {_MAX_PAGES} pages")

    def run_executions(self, run_id: str) -> list[MlmdExecution]:
        """Return the run's executions with their output parameters and output artifacts."""
        context_id = self.run_context_id(run_id)
        executions = self._paged("GetExecutionsByContext", "executions", context_id)
        artifacts = {a.id: a for a in self._paged("GetArtifactsByContext", "artifacts", context_id)}
        events: list[Any] = []
        ids = [e.id for e in executions]
        req_cls, _ = METHODS["GetEventsByExecutionIDs"]
        for start in range(0, len(ids), _PAGE):
            events.extend(
                self._call("GetEventsByExecutionIDs", req_cls(execution_ids=ids[start : start + _PAGE])).events
            )
        out = {e.id: _execution(e) for e in executions}
        for event in events:
            art = artifacts.get(event.artifact_id)
            task = out.get(event.execution_id)
            if event.type != OUTPUT_EVENT or art is None or task is None:
                continue
            keys = [s.key for s in event.path.steps if s.WhichOneof("value") == "key"]
            task.artifacts.append(
                MlmdArtifact(
                    id=art.id,
                    name=keys[0] if keys else (art.name or str(art.id)),
                    uri=art.uri,
                    type=art.type,
                    state=Artifact.State.Name(art.state),
                    metadata={k: value_of(v) for k, v in art.custom_properties.items()},
                )
            )
        return list(out.values())


def _execution(e: Any) -> MlmdExecution:
    props = {k: value_of(v) for k, v in e.custom_properties.items()}
    outputs = props.get("outputs")
    return MlmdExecution(
        id=e.id,
        name=str(props.get("display_name") or props.get("task_name") or e.name or e.id),
        type=e.type,
        state=Execution.State.Name(e.last_known_state),
        pod_name=props.get("pod_name"),
        outputs=outputs if isinstance(outputs, dict) else {},
    )


def _translate(exc: grpc.RpcError, method: str, endpoint: str, max_bytes: int = _MAX_MESSAGE) -> Exception:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = {"mlmd_endpoint": endpoint, "grpc_status": code.name if code else None}
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # the answer passed max_receive_message_length
        return MlmdUnavailable(
            f"ML Metadata {method}: the answer is larger than KFADAPTER_MLMD_MAX_MESSAGE_BYTES ({max_bytes} bytes)",
            code="mlmd_answer_too_large",
            details=details | {"limit": "KFADAPTER_MLMD_MAX_MESSAGE_BYTES", "max": max_bytes},
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"ML Metadata {method}: not found", code="run_not_in_mlmd", details=details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return MlmdUnavailable(
            f"ML Metadata {method}: no answer in time", code="mlmd_timeout", status=504, details=details
        )
    return MlmdUnavailable(f"ML Metadata {method} failed ({code.name if code else 'error'})", details=details)
