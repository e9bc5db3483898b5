"""The few ML Metadata messages and service methods the adapter (and the sandbox's MLMD) use, built at import.

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

from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2

SERVICE = "ml_metadata.MetadataStoreService"
PIPELINE_RUN_TYPE = "system.PipelineRun"

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
