"""Check a JSON body against the shape KFP's API server writes: kfp-server-api's generated models for v2beta1, and
the v1beta1 run messages (kfp-server-api 2.x has none) as backend/api/v1beta1/swagger/run.swagger.json of KFP 2.17.0
declares them.

The rules follow how KFP serializes (backend/src/apiserver/common/utils.go CustomMarshaler: protojson with proto
field names and EmitUnpopulated=false):
- every key is a field of the model (its JSON name from `attribute_map`); nested models, lists and maps are followed;
- `str` is a JSON string (int64 fields are declared `str` because protojson writes int64 as a string), `int` a JSON
  integer (int32), `float` a number, `bool` a boolean, `datetime` an RFC 3339 string, an enum one of its names;
- unset fields are omitted: no "", 0, false, [], {} for a scalar/list/map field and no enum zero value;
  `object` (google.protobuf.Struct / Value) holds any JSON.
"""
from __future__ import annotations

import re

import kfp_server_api.models as models

# backend/api/v1beta1/swagger/run.swagger.json (KFP 2.17.0): the messages of GET/POST /apis/v1beta1/runs.
V1BETA1: dict[str, dict[str, str] | list[str]] = {
    "apiRunDetail": {"run": "apiRun", "pipeline_runtime": "apiPipelineRuntime"},
    "apiRun": {"id": "str", "name": "str", "storage_state": "apiRunStorageState", "description": "str",
               "pipeline_spec": "apiPipelineSpec", "resource_references": "list[apiResourceReference]",
               "service_account": "str", "created_at": "datetime", "scheduled_at": "datetime",
               "finished_at": "datetime", "status": "str", "error": "str", "metrics": "list[apiRunMetric]"},
    "apiPipelineSpec": {"pipeline_id": "str", "pipeline_name": "str", "workflow_manifest": "str",
                        "pipeline_manifest": "str", "parameters": "list[apiParameter]",
                        "runtime_config": "PipelineSpecRuntimeConfig"},
    "PipelineSpecRuntimeConfig": {"parameters": "dict(str, object)", "pipeline_root": "str"},
    "apiParameter": {"name": "str", "value": "str"},
    "apiResourceReference": {"key": "apiResourceKey", "name": "str", "relationship": "apiRelationship"},
    "apiResourceKey": {"type": "apiResourceType", "id": "str"},
    "apiPipelineRuntime": {"pipeline_manifest": "str", "workflow_manifest": "str"},
    "apiRunMetric": {"name": "str", "node_id": "str", "number_value": "float", "format": "RunMetricFormat"},
    "apiRunStorageState": ["STORAGESTATE_AVAILABLE", "STORAGESTATE_ARCHIVED"],
    "apiRelationship": ["UNKNOWN_RELATIONSHIP", "OWNER", "CREATOR"],
    "apiResourceType": ["UNKNOWN_RESOURCE_TYPE", "EXPERIMENT", "JOB", "PIPELINE", "PIPELINE_VERSION", "NAMESPACE"],
    "RunMetricFormat": ["UNSPECIFIED", "RAW", "PERCENTAGE"],
}
# protojson's Timestamp: RFC 3339 in UTC with an optional fraction of 3, 6 or 9 digits.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")
_LIST = re.compile(r"list\[(.+)\]$")
_DICT = re.compile(r"dict\(str, (.+)\)$")
_ANY_EXTRA = "ProtobufAny"  # an Any carries the packed message's own fields beside "@type"


def schema(name: str) -> dict[str, str] | list[str]:
    """A model's fields (JSON name → declared type) or an enum's names."""
    if name in V1BETA1:
        return V1BETA1[name]
    cls = getattr(models, name, None)
    if cls is None:
        raise KeyError(f"no model {name!r} in kfp_server_api.models or the v1beta1 table")
    if not cls.openapi_types:
        return list(cls.allowable_values)
    return {cls.attribute_map[attr]: kind for attr, kind in cls.openapi_types.items()}


def check(doc, kind: str, path: str = "$", *, omit_empty: bool = True) -> list[str]:
    """Return every way `doc` differs from what KFP would write for `kind` (empty when it fits)."""
    problems: list[str] = []
    _check(doc, kind, path, problems, omit_empty)
    return problems


def _check(doc, kind: str, path: str, problems: list[str], omit_empty: bool) -> None:
    if kind == "object":
        return  # google.protobuf.Struct / Value: any JSON
    if kind == "str":
        _expect(isinstance(doc, str), doc, kind, path, problems)
    elif kind == "int":
        _expect(isinstance(doc, int) and not isinstance(doc, bool), doc, kind, path, problems)
    elif kind == "float":
        _expect(isinstance(doc, (int, float)) and not isinstance(doc, bool), doc, kind, path, problems)
    elif kind == "bool":
        _expect(isinstance(doc, bool), doc, kind, path, problems)
    elif kind == "datetime":
        _expect(isinstance(doc, str) and bool(_TIMESTAMP.match(doc)), doc, "an RFC 3339 UTC timestamp", path,
                problems)
    elif match := _LIST.match(kind):
        if _expect(isinstance(doc, list), doc, "a list", path, problems):
            for i, item in enumerate(doc):
                _check(item, match.group(1), f"{path}[{i}]", problems, omit_empty)
    elif match := _DICT.match(kind):
        if _expect(isinstance(doc, dict), doc, "a map", path, problems):
            for key, item in doc.items():
                _check(item, match.group(1), f"{path}[{key!r}]", problems, omit_empty)
    else:
        _check_model(doc, kind, path, problems, omit_empty)


def _check_model(doc, kind: str, path: str, problems: list[str], omit_empty: bool) -> None:
    shape = schema(kind)
    if isinstance(shape, list):  # an enum: protojson writes its name, never the zero value of an omitted field
        if _expect(isinstance(doc, str) and doc in shape, doc, f"one of {kind} {shape}", path, problems) \
                and omit_empty and doc == shape[0]:
            problems.append(f"{path}: {doc!r} is the enum's zero value, which KFP omits")
        return
    if not _expect(isinstance(doc, dict), doc, f"a {kind} object", path, problems):
        return
    for key, value in doc.items():
        where = f"{path}.{key}"
        if key not in shape:
            if kind != _ANY_EXTRA:
                problems.append(f"{where}: {kind} has no field {key!r} (KFP would never write it)")
            continue
        declared = shape[key]
        if omit_empty and declared != "object" and value in ("", 0, False, [], {}) and not _is_model(declared):
            problems.append(f"{where}: {value!r} is an unset value, which KFP omits")
            continue
        _check(value, declared, where, problems, omit_empty)


def _is_model(kind: str) -> bool:
    if kind in ("str", "int", "float", "bool", "datetime", "object") or _LIST.match(kind) or _DICT.match(kind):
        return False
    return isinstance(schema(kind), dict)


def _expect(ok: bool, doc, what: str, path: str, problems: list[str]) -> bool:
    if not ok:
        problems.append(f"{path}: expected {what}, got {type(doc).__name__} {doc!r:.80}")
    return ok
