"""Test-control API of the sandbox KFP, under ``/_sandbox/`` (never counted, never faulted).

All bodies are JSON unless noted; errors use the grpc body ``{"code", "message", "details"}``.

``POST /_sandbox/reset``
    Fresh state: only the ``Default`` experiment, counters zeroed, faults cleared, clock reset. → ``{}``
``POST|GET|DELETE /_sandbox/notifications``
    The local training-manager receiver (see ``notifications``): take one notification, list them, forget them.
``GET /_sandbox/requests``
    ``{"total": N, "counts": {"GET /apis/v2beta1/pipelines/{pipeline_id}": n, ...}}`` keyed by
    method + route pattern (unknown routes by their literal path).
``DELETE /_sandbox/requests``
    Zero the counters. → ``{}``
``POST /_sandbox/runs/{run_id}/state``
    ``{"state": "RUNNING"|"SUCCEEDED"|"FAILED"|"CANCELED"|..., "error": {"message": "..."}?}``: what KFP's
    persistence agent does when the workflow reports that state: appends to state_history when the state
    changes, sets finished_at for SUCCEEDED/SKIPPED/FAILED/CANCELED (back to 1970-01-01T00:00:00Z
    otherwise). The run never gets an ``error`` (KFP fills none): ``error.message`` becomes the run's
    workflow ``status.message`` (a workflow with only that status when none is attached). → the v2beta1 Run
``POST /_sandbox/runs/state``
    Bulk: ``{"run_ids": [...], "state": ..., "error": ...?}`` (all ids must exist). → ``{"updated": N}``
``PUT /_sandbox/runs/{run_id}/workflow``
    Body = an Argo Workflow dict (any of apiVersion/kind/metadata/spec/status), or just its ``status``.
    Served (JSON string) in ``GET /apis/v1beta1/runs/{run_id}`` ``pipeline_runtime.workflow_manifest``,
    merged over the pipeline's workflow for a v1 run; works for v2 runs too. Its ``status.nodes`` become the
    run's ``run_details.task_details`` (one per node, as KFP reports them). → ``{}``
``PUT /_sandbox/runs/{run_id}/nodes/{node_id}/artifacts/{artifact_name}``
    Raw body bytes = the stored object (typically a gzip'd tar), served base64'd by ``...:read``. → ``{"size": n}``
    With ``?verbatim=true`` the body is served as the whole ``:read`` answer instead (for broken-data tests).
``PUT /_sandbox/runs/{run_id}/mlmd``
    ML Metadata records of a (v2) run, served by the sandbox's MLMD gRPC service (``SandboxServer.mlmd_endpoint``):
    ``{"tasks": [{"name", "state": "COMPLETE"|"RUNNING"|"FAILED"|"CACHED"|..., "type"?: "system.ContainerExecution",
    "pod_name"?, "outputs"?: {name: value}, "artifacts"?: [{"name", "type"?: "system.Model", "uri"?: "minio://b/k",
    "metadata"?: {...}, "content_base64"?: "..."}]}]}``. Makes a ``system.PipelineRun`` context named by the run
    id, one execution per task (``custom_properties`` display_name, task_name, pod_name, outputs) and OUTPUT events
    keyed by artifact name; ``content_base64`` goes into the object store under the uri. Replaces earlier records.
    → ``{"context_id", "executions": {task: id}, "artifacts": {"task/name": id}}`` (routes in ``mlmd_routes``)
``PUT /_sandbox/objects/{bucket}/{key}``
    Raw body = an object-store object, served S3-style (path addressing) by ``GET /_s3/{bucket}/{key}`` to
    SigV4-signed requests with KFP's default keys (minio / minio123; 403 ``InvalidAccessKeyId`` /
    ``SignatureDoesNotMatch`` otherwise, ``NoSuchKey`` when missing). → ``{"size", "uri": "minio://bucket/key"}``
``POST /_sandbox/mlmd/faults`` ``{"code"?: "UNAVAILABLE", "delay"?: seconds, "times"?: N}``, ``DELETE /_sandbox/mlmd/faults``
    The next MLMD gRPC calls sleep ``delay`` and/or fail with that gRPC status; cleared by DELETE and reset.
``POST /_sandbox/faults``
    ``{"status": 503, "delay": 0.0, "times": N|null, "path_prefix": "/apis/", "method": "GET"|null}``: the next
    matching API requests sleep ``delay`` seconds, then (if ``status``) answer it with a grpc body.
    ``times: null`` = until cleared; the first matching fault wins. ``"kind": "reset"`` drops the connection
    without an answer; ``"kind": "truncate"`` sends a 200 whose body stops short of its
    Content-Length. → ``{}``
``DELETE /_sandbox/faults``
    Clear all faults. → ``{}``
``POST /_sandbox/bulk/pipelines``
    ``{"count": N, "prefix": "p", "pipeline_spec": {...}?}``: pipelines ``<prefix>-0000``… each with a first
    version named after it (a tiny IR unless pipeline_spec is given).
    → ``{"pipelines": [{"pipeline_id", "name", "pipeline_version_id"}, ...]}``
``POST /_sandbox/bulk/versions``
    ``{"pipeline_id": ..., "count": N, "prefix": "v", "pipeline_spec": {...}?}`` → ``{"pipeline_version_ids": [...]}``
``POST /_sandbox/bulk/runs``
    ``{"count": N, "pipeline_id": ...?, "pipeline_version_id": ..., "experiment_id": ...?, "prefix": "run"}``:
    PENDING runs (no parameter checks), in Default unless experiment_id. → ``{"run_ids": [...]}``
``POST /_sandbox/clock``
    ``{"advance": seconds}``: move the sandbox clock forward (KFP timestamps have 1 s resolution; ties in
    ``created_at`` sort by id, so tests that need an order advance the clock). → ``{"now": "..."}``
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from kfadapter.sandbox.errors import ApiError
from kfadapter.sandbox.routes_runs import VerbatimAnswer

bp = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


def _state():
    return current_app.extensions["sandbox"]


def _body() -> dict:
    doc = request.get_json(force=True, silent=True)
    if doc is None and request.get_data().strip():
        raise ApiError(3, "control API: body is not JSON")
    if doc is not None and not isinstance(doc, dict):
        raise ApiError(3, "control API: body must be a JSON object")
    return doc or {}


def _int(doc: dict, key: str, default=None, minimum: int = 0):
    value = doc.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiError(3, f"control API: {key} must be an integer >= {minimum}")
    return value


@bp.post("/reset")
def reset():
    """Fresh state (runs the sandbox executes are stopped)."""
    executor = current_app.extensions.get("sandbox_executor")
    if executor is not None:
        executor.cancel_all()
    _state().reset()
    return jsonify({})


@bp.get("/requests")
def request_counts():
    """API request counters by method + route pattern."""
    return jsonify(_state().request_counts())


@bp.delete("/requests")
def clear_request_counts():
    """Zero the counters."""
    _state().clear_counts()
    return jsonify({})


def _state_args(doc: dict) -> tuple[str, dict | None]:
    state, error = doc.get("state"), doc.get("error")
    if not isinstance(state, str):
        raise ApiError(3, "control API: state is required")
    if error is not None and not isinstance(error, dict):
        raise ApiError(3, "control API: error must be an object {code, message}")
    return state, error


@bp.post("/runs/<id:run_id>/state")
def set_run_state(run_id):
    """Move one run to a state."""
    state, error = _state_args(_body())
    _state().set_run_states([run_id], state, error)
    return jsonify(_state().get_run(run_id))


@bp.post("/runs/state")
def set_run_states():
    """Move many runs to a state."""
    doc = _body()
    ids = doc.get("run_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(3, "control API: run_ids must be a list of strings")
    state, error = _state_args(doc)
    return jsonify({"updated": _state().set_run_states(ids, state, error)})


@bp.put("/runs/<id:run_id>/workflow")
def attach_workflow(run_id):
    """Record the run's Argo workflow (or its status)."""
    _state().attach_workflow(run_id, _body())
    return jsonify({})


@bp.put("/runs/<id:run_id>/nodes/<id:node_id>/artifacts/<id:artifact_name>")
def put_artifact(run_id, node_id, artifact_name):
    """Store an artifact object (raw body); with ?verbatim=true the body is the whole :read answer."""
    data = request.get_data()
    if request.args.get("verbatim") == "true":
        data = VerbatimAnswer(data)  # lets tests play a KFP (or proxy) that answers broken data
    _state().put_artifact(run_id, node_id, artifact_name, data)
    return jsonify({"size": len(data)})


@bp.post("/faults")
def add_fault():
    """Inject a fault into API requests."""
    doc = _body()
    status = _int(doc, "status", None, 100)
    delay = doc.get("delay") or 0.0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ApiError(3, "control API: delay must be a number >= 0")
    prefix, method = doc.get("path_prefix") or "/apis/", doc.get("method")
    if not isinstance(prefix, str) or (method is not None and not isinstance(method, str)):
        raise ApiError(3, "control API: path_prefix and method must be strings")
    kind = doc.get("kind")
    if kind not in (None, "reset", "truncate"):
        raise ApiError(3, "control API: kind must be 'reset' or 'truncate'")
    _state().add_fault(
        {
            "status": status,
            "delay": float(delay),
            "times": _int(doc, "times", None, 1),
            "path_prefix": prefix,
            "method": method.upper() if method else None,
            "kind": kind,
        }
    )
    return jsonify({})


@bp.delete("/faults")
def clear_faults():
    """Remove all faults."""
    _state().clear_faults()
    return jsonify({})


@bp.post("/bulk/pipelines")
def bulk_pipelines():
    """Seed many pipelines quickly."""
    doc = _body()
    made = _state().bulk_pipelines(_int(doc, "count", 1), str(doc.get("prefix") or "p"), doc.get("pipeline_spec"))
    return jsonify({"pipelines": made})


@bp.post("/bulk/versions")
def bulk_versions():
    """Seed many versions of one pipeline."""
    doc = _body()
    ids = _state().bulk_versions(
        str(doc.get("pipeline_id") or ""),
        _int(doc, "count", 1),
        str(doc.get("prefix") or "v"),
        doc.get("pipeline_spec"),
    )
    return jsonify({"pipeline_version_ids": ids})


@bp.post("/bulk/runs")
def bulk_runs():
    """Seed many PENDING runs."""
    doc = _body()
    ref = {
        "pipeline_id": str(doc.get("pipeline_id") or ""),
        "pipeline_version_id": str(doc.get("pipeline_version_id") or ""),
    }
    ids = _state().bulk_runs(
        _int(doc, "count", 1), ref, str(doc.get("experiment_id") or ""), str(doc.get("prefix") or "run")
    )
    return jsonify({"run_ids": ids})


@bp.post("/clock")
def advance_clock():
    """Move the sandbox clock forward."""
    doc = _body()
    seconds = doc.get("advance", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ApiError(3, "control API: advance must be a number of seconds >= 0")
    return jsonify({"now": _state().advance_clock(seconds)})
