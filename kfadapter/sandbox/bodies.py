"""Request bodies checked the way protojson decodes them: proto or camelCase names, unknown fields → 400."""

from __future__ import annotations

import json

from flask import request

from kfadapter.sandbox.errors import ApiError
from kfadapter.sandbox.versions import active

PIPELINE = {"pipeline_id", "display_name", "name", "description", "created_at", "namespace", "error", "tags"}
VERSION = {
    "pipeline_id",
    "pipeline_version_id",
    "display_name",
    "name",
    "description",
    "created_at",
    "package_url",
    "code_source_url",
    "pipeline_spec",
    "error",
    "tags",
}
EXPERIMENT = {
    "experiment_id",
    "display_name",
    "description",
    "created_at",
    "namespace",
    "storage_state",
    "last_run_created_at",
}
RUN = {
    "experiment_id",
    "run_id",
    "display_name",
    "storage_state",
    "description",
    "pipeline_version_id",
    "pipeline_spec",
    "pipeline_version_reference",
    "runtime_config",
    "service_account",
    "created_at",
    "scheduled_at",
    "finished_at",
    "state",
    "error",
    "run_details",
    "recurring_run_id",
    "state_history",
    "plugins_input",
    "plugins_output",
}
VERSION_REF = {"pipeline_id", "pipeline_version_id"}
RUNTIME_CONFIG = {"parameters", "pipeline_root"}
URL = {"pipeline_url"}
RUN_V1 = {
    "id",
    "name",
    "storage_state",
    "description",
    "pipeline_spec",
    "resource_references",
    "service_account",
    "created_at",
    "scheduled_at",
    "finished_at",
    "status",
    "error",
    "metrics",
}
PIPELINE_SPEC_V1 = {
    "pipeline_id",
    "pipeline_name",
    "workflow_manifest",
    "pipeline_manifest",
    "parameters",
    "runtime_config",
}
PARAMETER_V1 = {"name", "value"}
REFERENCE_V1 = {"key", "name", "relationship"}
KEY_V1 = {"type", "id"}


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def fields(doc, allowed: set[str], where: str = "") -> dict:
    """Return `doc` with proto (snake_case) keys; 400 on a field that is not known (from 2.14; before, it is
    dropped: grpc-gateway v1 decodes with jsonpb AllowUnknownFields, runtime/marshal_jsonpb.go)."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ApiError(3, f"proto: syntax error: expected an object for {where or 'the request body'}")
    out = {}
    for key, value in doc.items():
        name = key if key in allowed else _snake(key)
        if name not in allowed:
            if active().lenient_bodies:
                continue
            raise ApiError(3, f'proto: (line 1:2): unknown field "{key}"')
        out[name] = value
    return out


def json_body(allowed: set[str]) -> dict:
    """Parse the request body as one proto message (an empty body is an empty message)."""
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ApiError(3, f"proto: syntax error (line 1:1): {exc}") from exc
    return fields(doc, allowed)


def string(doc: dict, key: str) -> str:
    """A string field ("" when absent); 400 when it has another JSON type."""
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(3, f"proto: (line 1:2): invalid value for string field {key}: {json.dumps(value)}")
    return value
