"""KFP run routes: v2beta1 runs, the v1beta1 subset the adapter needs, and artifact :read."""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from kfadapter.sandbox import bodies, packages, versions
from kfadapter.sandbox.errors import ApiError, grpc_response

bp = Blueprint("sandbox_runs", __name__)
V2 = "/apis/v2beta1"
V1 = "/apis/v1beta1"
# v1 ResourceType enum numbers, for clients that send numbers instead of names.
_V1_TYPES: dict[Any, str] = {1: "EXPERIMENT", 2: "JOB", 3: "PIPELINE", 4: "PIPELINE_VERSION", 5: "NAMESPACE"}


def _state():
    return current_app.extensions["sandbox"]


def _executor():
    """The run executor when the sandbox executes pipelines (`SandboxServer(execute=True)`), else None."""
    return current_app.extensions.get("sandbox_executor")


def _inline_package(spec) -> packages.Package:
    try:
        return packages.from_dict(spec)
    except packages.PackageError as exc:
        raise ApiError(3, f"Failed to create a run: Invalid input error: {exc.message}") from exc


# ---- v2beta1 --------------------------------------------------------------------------------
@bp.get(f"{V2}/runs")
def list_runs():
    """List runs (?experiment_id=, filter, sort, paging)."""
    return jsonify(_state().list_runs(request.args))


@bp.post(f"{V2}/runs")
def create_run():
    """Create a run from a pipeline version reference or an inline pipeline_spec."""
    body = bodies.json_body(bodies.RUN)
    ref = body.get("pipeline_version_reference")
    ref = bodies.fields(ref, bodies.VERSION_REF, "pipeline_version_reference") if ref is not None else None
    if ref is not None:
        ref = {k: bodies.string(ref, k) for k in bodies.VERSION_REF}
    elif body.get("pipeline_version_id"):
        ref = {"pipeline_version_id": bodies.string(body, "pipeline_version_id")}
    package = _inline_package(body["pipeline_spec"]) if ref is None and body.get("pipeline_spec") else None
    config = bodies.fields(body.get("runtime_config"), bodies.RUNTIME_CONFIG, "runtime_config")
    params = config.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(3, "proto: syntax error: runtime_config.parameters must be an object")
    run = _state().create_run(
        display_name=bodies.string(body, "display_name"),
        description=bodies.string(body, "description"),
        experiment_id=bodies.string(body, "experiment_id"),
        version_ref=ref,
        package=package,
        parameters=params,
        pipeline_root=bodies.string(config, "pipeline_root"),
        service_account=bodies.string(body, "service_account"),
    )
    executor = _executor()
    if executor is not None:  # v2 runs really execute (kfp.local); v1 runs stay driven by the control API
        run_package, run_params = _state().run_package(run["run_id"])
        executor.submit(run["run_id"], run_package, run_params)
    return jsonify(run)


@bp.get(f"{V2}/runs/<id:run_id>")
def get_run(run_id):
    """One run."""
    return jsonify(_state().get_run(run_id))


@bp.delete(f"{V2}/runs/<id:run_id>")
def delete_run(run_id):
    """Delete a run (an executing one is killed)."""
    _state().delete_run(run_id)
    if _executor() is not None:
        _executor().forget(run_id)
    return jsonify({})


@bp.post(f"{V2}/runs/<id:run_id>:terminate")
@bp.post(f"{V1}/runs/<id:run_id>/terminate")
def terminate_run(run_id):
    """KFP's terminate: CANCELING from PENDING/RUNNING/PAUSED (else 400); an executing run's processes are
    killed and its workflow ends Failed, which the run then reports."""
    _state().terminate_run(run_id)
    if _executor() is not None:
        _executor().terminate(run_id)
    return jsonify({})


@bp.post(f"{V2}/runs/<id:run_id>:retry")
@bp.post(f"{V1}/runs/<id:run_id>/retry")
def retry_run(run_id):
    """Retry a failed or canceled run (an executed one executes again, from the start)."""
    _state().retry_run(run_id)
    executor = _executor()
    if executor is not None and executor.owns(run_id):
        run_package, run_params = _state().run_package(run_id)
        executor.submit(run_id, run_package, run_params)
    return jsonify({})


@bp.post(f"{V2}/runs/<id:run_id>:archive")
def archive_run(run_id):
    """Archive a run."""
    _state().set_run_storage(run_id, "ARCHIVED")
    return jsonify({})


@bp.post(f"{V2}/runs/<id:run_id>:unarchive")
def unarchive_run(run_id):
    """Unarchive a run."""
    _state().set_run_storage(run_id, "AVAILABLE")
    return jsonify({})


# ---- v1beta1 --------------------------------------------------------------------------------
def _v1_parameters(spec: dict) -> dict[str, str]:
    params = {}
    for raw in spec.get("parameters") or []:
        param = bodies.fields(raw, bodies.PARAMETER_V1, "parameter")
        params[bodies.string(param, "name")] = bodies.string(param, "value")  # v1 values are strings
    return params


def _v1_references(refs) -> tuple[str, str]:
    experiment_id = version_id = ""
    for raw in refs or []:
        ref = bodies.fields(raw, bodies.REFERENCE_V1, "resource_reference")
        key = bodies.fields(ref.get("key"), bodies.KEY_V1, "resource_reference.key")
        kind = _V1_TYPES.get(key.get("type"), key.get("type"))
        if kind == "EXPERIMENT":
            experiment_id = bodies.string(key, "id")
        elif kind == "PIPELINE_VERSION":
            version_id = bodies.string(key, "id")
    return experiment_id, version_id


@bp.post(f"{V1}/runs")
def create_run_v1():
    """v1beta1 create: keeps string parameters, also for v1 (Argo) versions."""
    body = bodies.json_body(bodies.RUN_V1)
    spec = bodies.fields(body.get("pipeline_spec"), bodies.PIPELINE_SPEC_V1, "pipeline_spec")
    experiment_id, version_id = _v1_references(body.get("resource_references"))
    ref, package = None, None
    if version_id:
        ref = {"pipeline_version_id": version_id}
    elif spec.get("pipeline_id"):
        ref = {"pipeline_id": bodies.string(spec, "pipeline_id")}
    elif spec.get("workflow_manifest"):
        try:
            package = _inline_package(json.loads(bodies.string(spec, "workflow_manifest")))
        except ValueError as exc:
            raise ApiError(3, "Failed to create a run: Invalid input error: workflow_manifest is not JSON") from exc
    state = _state()
    run = state.create_run(
        display_name=bodies.string(body, "name"),
        description=bodies.string(body, "description"),
        experiment_id=experiment_id,
        version_ref=ref,
        package=package,
        parameters=_v1_parameters(spec),
        service_account=bodies.string(body, "service_account"),
        api="v1beta1",
    )
    return jsonify(state.get_run_v1(run["run_id"]))


@bp.get(f"{V1}/runs/<id:run_id>")
def get_run_v1(run_id):
    """v1beta1 RunDetail: the run plus pipeline_runtime.workflow_manifest (a JSON string)."""
    return jsonify(_state().get_run_v1(run_id))


# ---- artifacts ------------------------------------------------------------------------------
class VerbatimAnswer(bytes):
    """A stored artifact that is served as the whole :read answer, as it is (control API ?verbatim=true)."""


def _artifact_error(status: int, message: str) -> Response:
    if not versions.active().read_streaming:  # before 2.15 :read was a grpc-gateway method
        return grpc_response({400: 3, 404: 5}.get(status, 13), message, http_status=status)
    # Since KFP 2.15 the handler writes JSON after the status line, so Go sniffs text/plain.
    return Response(json.dumps({"error_message": message}), status=status, content_type="text/plain; charset=utf-8")


@bp.get(f"{V2}/runs/<id:run_id>/nodes/<id:node_id>/artifacts/<id:artifact_name>:read")
@bp.get(f"{V1}/runs/<id:run_id>/nodes/<id:node_id>/artifacts/<id:artifact_name>:read")
def read_artifact(run_id, node_id, artifact_name):
    """The stored object as {"data": base64}; 404 when missing, 400 (< 2.15) or 500 without a workflow."""
    try:
        data = _state().read_artifact(run_id, node_id, artifact_name)
    except ApiError as exc:
        return _artifact_error(versions.active().read_unrecorded_status, exc.message)
    if data is None:
        return _artifact_error(404, "artifact not found: <nil>")
    if isinstance(data, VerbatimAnswer):
        return Response(bytes(data), content_type="application/json")
    return jsonify({"data": base64.b64encode(data).decode()})
