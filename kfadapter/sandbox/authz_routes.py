"""Which authorization check multi-user KFP makes on each API route, and its answer when the check fails.

Read from server/pipeline_server.go (canAccessPipeline, canAccessPipelineVersion), experiment_server.go
(canAccessExperiment), run_server.go (canAccessRun), pipeline_upload_server.go (canUploadVersionedPipeline) and
run_artifact_server.go at 2.17.0, and their 2.3.0 counterparts: the check follows the object look-up (a missing
object stays KFP's 404, answered by the route), and its error is wrapped in the texts each server adds.

- Pipelines of the shared namespace "" skip get / list checks; other verbs on them are checked against KFP's own
  namespace (`kubeflow`) from 2.17, not at all before. Uploads to "" are never checked.
- An unauthorized upload is a 400: with the reason up to 2.14, as bare "Failed to create a pipeline
  (version)" from 2.15.
- From 2.15 `:read` is a plain HTTP handler whose context carries no request headers, so every multi-user
  `:read` fails authentication and answers 403 (also for a run that does not exist).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request

from kfadapter.sandbox import authz, versions
from kfadapter.sandbox.errors import ApiError, UploadError

POLICY = "sandbox_policy"  # app.extensions key of the authz.Policy (absent: any identity may do anything)


@dataclass(frozen=True)
class Check:
    """One SubjectAccessReview to make, and how its failure is written."""

    resource: str
    verb: str
    namespace: str
    name: str
    wrap: str  # the errors KFP wraps around IsAuthorized's, outermost first
    kind: str = "grpc"  # "grpc", "upload" (400) or "read" (the streaming :read handler)
    upload_message: str = ""  # the bare 400 message of an upload from 2.15


def _state() -> Any:
    return current_app.extensions["sandbox"]


def _body() -> dict:
    doc = request.get_json(silent=True)
    return doc if isinstance(doc, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# ---- the objects' namespaces -------------------------------------------------------------------------------
def _pipeline(pipeline_id: str) -> dict | None:
    state = _state()
    with state.lock:
        return state.pipelines.get(pipeline_id)


def _version_pipeline(version_id: str) -> dict | None:
    state = _state()
    with state.lock:
        version = state.versions.get(version_id)
        return state.pipelines.get(version["pipeline_id"]) if version else None


def _experiment(experiment_id: str) -> dict | None:
    state = _state()
    with state.lock:
        return state.experiments.get(experiment_id)


def _run(run_id: str) -> tuple[str, str] | None:
    """(namespace, Kubernetes name of its workflow) of a run, None when it does not exist."""
    state = _state()
    with state.lock:
        rec = state.runs.get(run_id)
        if rec is None:
            return None
        workflow = rec.get("_workflow") or rec.get("_attached") or {}
        name = (workflow.get("metadata") or {}).get("name") if isinstance(workflow, dict) else None
        return rec["_namespace"], name if isinstance(name, str) else ""


# ---- the checks, as each server makes them -----------------------------------------------------------------
def _pipeline_check(namespace: str, verb: str, pipeline_id: str, name: str, wrap: str) -> Check | None:
    """canAccessPipeline: shared pipelines are readable by all, written only with a grant in `kubeflow` (2.17)."""
    if not namespace:
        if verb in ("get", "list") or not versions.active().shared_writes_checked:
            return None
        inner = (
            f"Failed to access shared pipeline {pipeline_id}. Check if you have permission to {verb} shared pipelines"
        )
        return Check("pipelines", verb, authz.POD_NAMESPACE, name, f"{wrap}: {inner}")
    inner = f"Failed to access pipeline {pipeline_id}. Check if you have access to namespace {namespace}"
    return Check("pipelines", verb, namespace, name, f"{wrap}: {inner}")


def _by_pipeline(verb: str, wrap: Callable[[str], str]) -> Callable[[dict], Check | None]:
    def rule(args: dict) -> Check | None:
        pid = args["pipeline_id"]
        pipeline = _pipeline(pid)
        if pipeline is None:
            return None
        ns, name = pipeline["namespace"], pipeline["name"]
        if verb == "list":  # listPipelineVersions reviews the pipeline's namespace without naming the pipeline
            return _pipeline_check(
                ns, verb, "", "", wrap(pid) + f" Check if you have read permission to namespace {ns}"
            )
        return _pipeline_check(ns, verb, pid, name, wrap(pid))

    return rule


def _by_version(verb: str, wrap: Callable[[str, str], str]) -> Callable[[dict], Check | None]:
    def rule(args: dict) -> Check | None:
        pipeline = _version_pipeline(args["version_id"])
        if pipeline is None:
            return None
        pid = pipeline["pipeline_id"]
        return _pipeline_check(
            pipeline["namespace"], verb, pid, pipeline["name"], wrap(args["pipeline_id"], args["version_id"])
        )

    return rule


def _list_pipelines(args: dict) -> Check | None:
    ns = _state().namespace(request.args.get("namespace"))
    wrap = (
        f"Failed to list pipelines in namespace {ns}. Check error stack: Failed to list pipelines due to "
        f"authorization error. Check if you have read permission to namespace {ns}"
    )
    return _pipeline_check(ns, "list", "", "", wrap)


def _pipeline_by_name(args: dict) -> Check | None:
    ns, name = _state().namespace(request.args.get("namespace")), args["name"]
    wrap = (
        f"Failed to get a pipeline with name {name} and namespace {ns}. Check error stack: Failed to fetch a "
        f"pipeline due to authorization error. Check if you have read permission to namespace {ns}"
    )
    return _pipeline_check(ns, "get", "", name, wrap)


def _create_pipeline(args: dict) -> Check | None:
    body = _body()
    and_version = (request.endpoint or "").endswith("create_pipeline_and_version")
    pipe = body.get("pipeline") if and_version else body
    pipe = pipe if isinstance(pipe, dict) else {}
    ns = _state().namespace(_text(pipe.get("namespace")))
    name = _text(pipe.get("name")) or _text(pipe.get("display_name"))
    if and_version:  # createPipelineAndPipelineVersion returns the check's error as it is
        return _pipeline_check(ns, "create", "", name, "Failed to create a pipeline")
    if not name:
        return None  # "name is required" comes first
    wrap = (
        "Failed to create a pipeline due to server error: Failed to create a pipeline due to authorization error. "
        f"Check if you have write permissions to namespace {ns}"
    )
    return _pipeline_check(ns, "create", "", name, wrap)


def _upload(args: dict) -> Check | None:
    if request.files.get("uploadfile") is None:
        return None  # reading the file fails first
    if (request.endpoint or "").endswith("upload_version"):
        pipeline = _pipeline(request.args.get("pipelineid", ""))
        if pipeline is None:
            return None
        ns, bare, wrap = (
            pipeline["namespace"],
            "Failed to create a pipeline version",
            "Failed to create a pipeline version",
        )
    else:
        ns, bare, wrap = (
            _state().namespace(request.args.get("namespace")),
            "Failed to create a pipeline",
            "Failed to create a pipeline",
        )
    if not ns:
        return None  # canUploadVersionedPipeline checks nothing for the shared namespace
    return Check(
        "pipelines", "create", ns, "", f"{wrap} due to authorization error: Authorization Failure", "upload", bare
    )


def _experiment_check(verb: str, namespace: str, name: str, wrap: str) -> Check | None:
    if not namespace:
        return None  # "An experiment cannot have an empty namespace" (the routes answer it)
    return Check("experiments", verb, namespace, name, f"{wrap}: Failed to authorize with API")


def _by_experiment(verb: str, wrap: str) -> Callable[[dict], Check | None]:
    def rule(args: dict) -> Check | None:
        exp = _experiment(args["experiment_id"])
        if exp is None:
            return None
        return _experiment_check(
            verb, exp["namespace"], exp["display_name"], f"{wrap}: Failed to authorize the request"
        )

    return rule


def _create_experiment(args: dict) -> Check | None:
    body = _body()
    ns = _state().namespace(_text(body.get("namespace")))
    return _experiment_check(
        "create", ns, _text(body.get("display_name")), "Failed to create a experiment: Failed to authorize the request"
    )


def _list_experiments(args: dict) -> Check | None:
    ns = _state().namespace(request.args.get("namespace"))
    return _experiment_check("list", ns, "", "List experiments failed: Failed to authorize with API")


def _run_check(verb: str, namespace: str, run_id: str, name: str, wrap: str, kind: str = "grpc") -> Check | None:
    if not namespace:
        return None  # "A run cannot have an empty namespace in multi-user mode" (the routes answer it)
    inner = f"Failed to access run {run_id}. Check if you have access to namespace {namespace}"
    return Check("runs", verb, namespace, name, f"{wrap}: {inner}", kind)


def _by_run(verb: str, v2: str, v1: str | None = None) -> Callable[[dict], Check | None]:
    def rule(args: dict) -> Check | None:
        found = _run(args["run_id"])
        if found is None:
            return None
        outer = v1 if v1 is not None and request.path.startswith("/apis/v1beta1/") else v2
        return _run_check(verb, found[0], args["run_id"], found[1], f"{outer}: Failed to authorize the request")

    return rule


def _create_run(args: dict) -> Check | None:
    body = _body()
    if request.path.startswith("/apis/v1beta1/"):
        name, outer = _text(body.get("name")), "Failed to create a new v1beta1 run"
        raw = body.get("resource_references")
        refs: list = raw if isinstance(raw, list) else []
        keys: list[dict] = [r["key"] for r in refs if isinstance(r, dict) and isinstance(r.get("key"), dict)]
        exp_id = next((_text(k.get("id")) for k in keys if k.get("type") in ("EXPERIMENT", 1)), "")
    else:
        name, outer = _text(body.get("display_name")), "Failed to create a new run"
        exp_id = _text(body.get("experiment_id"))
    exp = _experiment(exp_id) if exp_id else None
    if not name or exp is None:
        return None  # the name and the experiment are validated first
    ns = exp["namespace"]
    wrap = f"{outer}: Failed to create a run due to authorization error. Check if you have write permissions to namespace {ns}"
    return _run_check("create", ns, "", "", wrap)


def _list_runs(args: dict) -> Check | None:
    exp_id = request.args.get("experiment_id") or request.args.get("resource_reference_key.id")
    if exp_id:
        exp = _experiment(exp_id)
        if exp is None:
            return None
        ns = exp["namespace"]
    else:
        ns = _state().namespace(request.args.get("namespace"))
    wrap = f"Failed to list runs: Failed to list runs due to authorization error. Check if you have permission to access namespace {ns}"
    return _run_check("list", ns, "", "", wrap)


def _read_artifact(args: dict) -> Check | None:
    found = _run(args["run_id"])
    if found is None:
        if versions.active().read_streaming:
            # canAccessRun's look-up fails before authentication: still the handler's 403.
            rid = args["run_id"]
            wrap = f"Failed to authorize the request: Failed to authorize with the run ID {rid}"
            return Check("runs", "readArtifact", "", "", f"{wrap}: ResourceNotFoundError: Run {rid} not found", "read")
        return None
    return _run_check("readArtifact", found[0], args["run_id"], found[1], "Failed to authorize the request", "read")


_PIPELINES = "sandbox_pipelines."
_RUNS = "sandbox_runs."
RULES: dict[str, Callable[[dict], Check | None]] = {
    _PIPELINES + "list_pipelines": _list_pipelines,
    _PIPELINES + "create_pipeline": _create_pipeline,
    _PIPELINES + "create_pipeline_and_version": _create_pipeline,
    _PIPELINES + "get_pipeline_by_name": _pipeline_by_name,
    _PIPELINES + "get_pipeline": _by_pipeline(
        "get",
        lambda p: (
            f"Failed to get a pipeline {p}. Check error stack: Failed to get a pipeline due authorization error for pipeline id {p}"
        ),
    ),
    _PIPELINES + "delete_pipeline": _by_pipeline(
        "delete",
        lambda p: (
            f"Failed to delete pipeline {p}. Check error stack: Failed to delete a pipeline due authorization error for pipeline id {p}"
        ),
    ),
    _PIPELINES + "list_versions": _by_pipeline(
        "list",
        lambda p: (
            f"Failed to list pipeline versions for pipeline {p}: Failed to list pipeline versions due to authorization error."
        ),
    ),
    _PIPELINES + "create_version": _by_pipeline(
        "create",
        lambda p: (
            f"Failed to create a pipeline version. Check error stack: Failed to create a pipeline version due authorization error for pipeline id {p}"
        ),
    ),
    _PIPELINES + "get_version": _by_version(
        "get",
        lambda p, v: (
            f"Failed to get a pipeline version {v}: Failed to get a pipeline version due to authorization error for pipeline version id {v}"
        ),
    ),
    _PIPELINES + "delete_version": _by_version(
        "delete",
        lambda p, v: (
            f"Failed to delete a pipeline version id {v} under pipeline id {p}. Check error stack: Failed to delete a pipeline version id {v} due to authorization error for pipeline id {p}"
        ),
    ),
    _PIPELINES + "upload_pipeline": _upload,
    _PIPELINES + "upload_version": _upload,
    _PIPELINES + "list_experiments": _list_experiments,
    _PIPELINES + "create_experiment": _create_experiment,
    _PIPELINES + "get_experiment": _by_experiment("get", "Failed to fetch experiment"),
    _PIPELINES + "delete_experiment": _by_experiment("delete", "Failed to delete experiment"),
    _PIPELINES + "archive_experiment": _by_experiment("archive", "Failed to archive experiment"),
    _PIPELINES + "unarchive_experiment": _by_experiment("unarchive", "Failed to unarchive experiment"),
    _RUNS + "list_runs": _list_runs,
    _RUNS + "create_run": _create_run,
    _RUNS + "create_run_v1": _create_run,
    _RUNS + "get_run": _by_run("get", "Failed to get a run"),
    _RUNS + "get_run_v1": _by_run("get", "Failed to get a v1beta1 run"),
    _RUNS + "delete_run": _by_run("delete", "Failed to delete a run"),
    _RUNS + "terminate_run": _by_run("terminate", "Failed to terminate a run", "Failed to terminate a v1beta1 run"),
    _RUNS + "retry_run": _by_run("retry", "Failed to retry a run"),
    _RUNS + "archive_run": _by_run("archive", "Failed to archive a run"),
    _RUNS + "unarchive_run": _by_run("unarchive", "Failed to unarchive a run"),
    _RUNS + "read_artifact": _read_artifact,
}


def authorize() -> Response | None:
    """Before an API route of a multi-user sandbox: make the route's check and answer its failure as KFP does."""
    state = current_app.extensions["sandbox"]
    rule = RULES.get(request.endpoint or "")
    if not state.multi_user or rule is None:
        return None
    check = rule(request.view_args or {})
    if check is None:
        return None
    policy: authz.Policy = current_app.extensions.get(POLICY) or authz.Policy()
    profile = versions.active()
    if check.kind == "read" and profile.read_streaming:
        # The handler's context carries no headers: authentication always fails, after the run's look-up.
        code, inner = 16, authz.unauthenticated(authz.MISSING) if check.namespace else ""
    else:
        identity, why = policy.identity({k.lower(): v for k, v in request.headers.items()})
        if identity is None:
            code, inner = 16, authz.unauthenticated(why)
        elif not policy.allows(identity, check.namespace, check.resource, check.verb):
            attrs = authz.attributes(check.namespace, check.verb, check.resource, check.name, profile.sar_selectors)
            code, inner = 7, authz.denied(identity, attrs)
        else:
            return None
    message = f"{check.wrap}: {inner}" if inner else check.wrap
    if check.kind == "upload":
        raise UploadError(400, message if profile.upload_authz_reason else check.upload_message)
    if check.kind == "read" and profile.read_streaming:
        # writeErrorToResponse sets Content-Type after WriteHeader, so Go sniffs text/plain.
        body = json.dumps({"error_message": message})
        return Response(body, status=403, content_type="text/plain; charset=utf-8")
    raise ApiError(code, message)
