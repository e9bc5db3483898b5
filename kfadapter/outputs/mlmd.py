"""ML Metadata over gRPC: the few MLMD messages and calls the adapter needs, and a client with deadlines.

Why the messages are assembled here instead of imported or generated: the `ml-metadata` package needs
protobuf < 5 while kfp needs protobuf 6, so its generated code cannot be installed beside kfp; generated code
checked in from a .proto is tied to the protoc that produced it (protobuf >= 5 checks gencode/runtime versions)
and needs a build step to refresh. A FileDescriptorProto built at import time and turned into classes with
`message_factory.GetMessageClass` runs on any protobuf runtime, lives in a private descriptor pool (no clash with
anything else that defines `ml_metadata`), and declares only the fields we read. Field numbers follow MLMD's
`metadata_store.proto` / `metadata_store_service.proto` (proto2); tests/test_mlmd_messages.py proves them by
decoding bytes that the real ml-metadata library serialized. Fields we do not declare survive as unknown fields.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2

from kfadapter.core.errors import MlmdUnavailable, NotFound

SERVICE = "ml_metadata.MetadataStoreService"
PIPELINE_RUN_TYPE = "system.PipelineRun"
_PAGE = 100  # MLMD's default page is 20
_MAX_PAGES = 1000
# A page of executions with large output structs can pass gRPC's 4 MiB default; still bounded
# (KFADAPTER_MLMD_MAX_MESSAGE_BYTES): gRPC refuses a larger answer before decoding it.
_MAX_MESSAGE = 64 * 1024 * 1024

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "string": _F.TYPE_STRING,
    "double": _F.TYPE_DOUBLE,
    "bool": _F.TYPE_BOOL,
}


def _field(
    name: str, number: int, kind: str, *, repeated: bool = False, oneof: int | None = None, enum: bool = False
) -> Any:
    f = _F(name=name, number=number, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if kind in _SCALARS:
        f.type = _SCALARS[kind]
    else:
        f.type = _F.TYPE_ENUM if enum else _F.TYPE_MESSAGE
        f.type_name = kind if kind.startswith(".") else f".ml_metadata.{kind}"
    if oneof is not None:
        f.oneof_index = oneof
    return f


def _message(
    name: str,
    *fields: Any,
    nested: Iterable[descriptor_pb2.DescriptorProto] = (),
    enums: Iterable[descriptor_pb2.EnumDescriptorProto] = (),
    oneofs: Iterable[str] = (),
):
    msg = descriptor_pb2.DescriptorProto(name=name, field=list(fields), nested_type=list(nested), enum_type=list(enums))
    for oneof in oneofs:
        msg.oneof_decl.add(name=oneof)
    return msg


def _enum(name: str, *values: str) -> descriptor_pb2.EnumDescriptorProto:
    return descriptor_pb2.EnumDescriptorProto(
        name=name, value=[descriptor_pb2.EnumValueDescriptorProto(name=v, number=i) for i, v in enumerate(values)]
    )


def _map_entry(owner: str, field_name: str, number: int) -> tuple[Any, descriptor_pb2.DescriptorProto]:
    """A `map<string, Value>` field: a repeated nested *Entry message with map_entry set."""
    entry_name = "".join(part.capitalize() for part in field_name.split("_")) + "Entry"
    entry = _message(entry_name, _field("key", 1, "string"), _field("value", 2, "Value"))
    entry.options.map_entry = True
    return _field(field_name, number, f"{owner}.{entry_name}", repeated=True), entry


def _node(name: str, numbers: dict[str, int], *extra: Any, enums=()) -> descriptor_pb2.DescriptorProto:
    """Artifact, Execution and Context share id/type_id/name/type/properties/custom_properties/times."""
    props, props_entry = _map_entry(name, "properties", 4)
    custom, custom_entry = _map_entry(name, "custom_properties", 5)
    common = [
        _field("id", 1, "int64"),
        _field("type_id", 2, "int64"),
        _field("name", numbers["name"], "string"),
        _field("type", numbers["type"], "string"),
        _field("external_id", numbers["external_id"], "string"),
        _field("create_time_since_epoch", numbers["create"], "int64"),
        _field("last_update_time_since_epoch", numbers["update"], "int64"),
        props,
        custom,
    ]
    return _message(name, *common, *extra, nested=[props_entry, custom_entry], enums=enums)


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="kfadapter/ml_metadata_min.proto",
        package="ml_metadata",
        syntax="proto2",
        dependency=["google/protobuf/struct.proto"],
    )
    fd.message_type.extend(
        [
            _message(
                "Value",
                _field("int_value", 1, "int64", oneof=0),
                _field("double_value", 2, "double", oneof=0),
                _field("string_value", 3, "string", oneof=0),
                _field("struct_value", 4, ".google.protobuf.Struct", oneof=0),
                _field("bool_value", 6, "bool", oneof=0),
                oneofs=["value"],
            ),
            _node(
                "Artifact",
                {"name": 7, "type": 8, "external_id": 11, "create": 9, "update": 10},
                _field("uri", 3, "string"),
                _field("state", 6, "Artifact.State", enum=True),
                enums=[
                    _enum(
                        "State",
                        "UNKNOWN",
                        "PENDING",
                        "LIVE",
                        "MARKED_FOR_DELETION",
                        "DELETED",
                        "ABANDONED",
                        "REFERENCE",
                    )
                ],
            ),
            _node(
                "Execution",
                {"name": 6, "type": 7, "external_id": 10, "create": 8, "update": 9},
                _field("last_known_state", 3, "Execution.State", enum=True),
                enums=[_enum("State", "UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED")],
            ),
            _node("Context", {"name": 3, "type": 6, "external_id": 9, "create": 7, "update": 8}),
            _message(
                "Event",
                _field("artifact_id", 1, "int64"),
                _field("execution_id", 2, "int64"),
                _field("path", 3, "Event.Path"),
                _field("type", 4, "Event.Type", enum=True),
                _field("milliseconds_since_epoch", 5, "int64"),
                nested=[
                    _message(
                        "Path",
                        _field("steps", 1, "Event.Path.Step", repeated=True),
                        nested=[
                            _message(
                                "Step",
                                _field("index", 1, "int64", oneof=0),
                                _field("key", 2, "string", oneof=0),
                                oneofs=["value"],
                            )
                        ],
                    )
                ],
                enums=[
                    _enum(
                        "Type",
                        "UNKNOWN",
                        "DECLARED_OUTPUT",
                        "DECLARED_INPUT",
                        "INPUT",
                        "OUTPUT",
                        "INTERNAL_INPUT",
                        "INTERNAL_OUTPUT",
                        "PENDING_OUTPUT",
                    )
                ],
            ),
            _message(
                "ListOperationOptions",
                _field("max_result_size", 1, "int32"),
                _field("next_page_token", 3, "string"),
                _field("filter_query", 4, "string"),
            ),
            _message(
                "GetContextByTypeAndNameRequest",
                _field("type_name", 1, "string"),
                _field("context_name", 2, "string"),
                _field("type_version", 3, "string"),
            ),
            _message("GetContextByTypeAndNameResponse", _field("context", 1, "Context")),
            _message(
                "GetExecutionsByContextRequest",
                _field("context_id", 1, "int64"),
                _field("options", 2, "ListOperationOptions"),
            ),
            _message(
                "GetExecutionsByContextResponse",
                _field("executions", 1, "Execution", repeated=True),
                _field("next_page_token", 2, "string"),
            ),
            _message(
                "GetArtifactsByContextRequest",
                _field("context_id", 1, "int64"),
                _field("options", 2, "ListOperationOptions"),
            ),
            _message(
                "GetArtifactsByContextResponse",
                _field("artifacts", 1, "Artifact", repeated=True),
                _field("next_page_token", 2, "string"),
            ),
            _message("GetEventsByExecutionIDsRequest", _field("execution_ids", 1, "int64", repeated=True)),
            _message("GetEventsByExecutionIDsResponse", _field("events", 1, "Event", repeated=True)),
        ]
    )
    return fd


def _build_classes() -> dict[str, Any]:  # classes made at run time: no static type to give
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(struct_pb2.DESCRIPTOR.serialized_pb))
    file_desc = pool.Add(_file())
    return {name: message_factory.GetMessageClass(desc) for name, desc in file_desc.message_types_by_name.items()}


MESSAGES = _build_classes()
Value = MESSAGES["Value"]
Artifact = MESSAGES["Artifact"]
Execution = MESSAGES["Execution"]
Context = MESSAGES["Context"]
Event = MESSAGES["Event"]

# method name -> (request class, response class)
METHODS: dict[str, tuple[Any, Any]] = {
    name: (MESSAGES[f"{name}Request"], MESSAGES[f"{name}Response"])
    for name in (
        "GetContextByTypeAndName",
        "GetExecutionsByContext",
        "GetArtifactsByContext",
        "GetEventsByExecutionIDs",
    )
}
OUTPUT_EVENT = Event.Type.Value("OUTPUT")


def value_of(value: Any) -> Any:
    """Return an MLMD `Value` as a plain Python value (Struct → dict/list/number/str/bool/None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "struct_value":
        return json_format.MessageToDict(value.struct_value)
    return getattr(value, kind)


def to_value(obj: Any) -> Any:
    """Build an MLMD `Value` from a Python value (dicts and lists go into struct_value)."""
    value = Value()
    if isinstance(obj, bool):
        value.bool_value = obj
    elif isinstance(obj, int):
        value.int_value = obj
    elif isinstance(obj, float):
        value.double_value = obj
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, dict):
        value.struct_value.update(obj)
    else:
        raise TypeError(f"no MLMD Value for {type(obj).__name__}")
    return value


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
