"""KFP v2beta1 routes for health, pipelines, pipeline versions, uploads and experiments."""

from __future__ import annotations

import urllib.request

from flask import Blueprint, current_app, jsonify, request

from kfadapter.sandbox import bodies, packages, versions
from kfadapter.sandbox.errors import ApiError, PlainError, UploadError
from kfadapter.sandbox.state_catalog import NAMESPACE_MAX, PIPELINE_NAME_MAX, VERSION_NAME_MAX, too_long

bp = Blueprint("sandbox_pipelines", __name__)
V2 = "/apis/v2beta1"


def _state():
    return current_app.extensions["sandbox"]


@bp.get(f"{V2}/healthz")
@bp.get("/apis/v1beta1/healthz")
def healthz():
    """KFP health: `multi_user` tells the mode, `tag_name` the version played."""
    api = "v1beta1" if "/v1beta1/" in request.path else "v2beta1"
    body = versions.active().healthz(api, current_app.config.get("SANDBOX_TAG_NAME"))
    return jsonify({**body, "multi_user": _state().multi_user})


# ---- pipelines ------------------------------------------------------------------------------
@bp.get(f"{V2}/pipelines")
def list_pipelines():
    """List the pipelines of ?namespace= (ignored in single-user mode)."""
    return jsonify(_state().list_pipelines(request.args))


@bp.post(f"{V2}/pipelines")
def create_pipeline():
    """Create a pipeline without versions."""
    body = bodies.json_body(versions.active().body_fields(bodies.PIPELINE))
    name, display = bodies.string(body, "name"), bodies.string(body, "display_name")
    pipeline, _ = _state().create_pipeline(
        name or display, display, bodies.string(body, "description"), namespace=bodies.string(body, "namespace")
    )
    return jsonify(pipeline)


@bp.post(f"{V2}/pipelines/create")
def create_pipeline_and_version():
    """Create a pipeline and its first version in one call (CreatePipelineAndVersion)."""
    body = bodies.json_body({"pipeline", "pipeline_version"})
    fields = versions.active().body_fields
    pipe = bodies.fields(body.get("pipeline"), fields(bodies.PIPELINE), "pipeline")
    ver = bodies.fields(body.get("pipeline_version"), fields(bodies.VERSION), "pipeline_version")
    name, display = bodies.string(pipe, "name"), bodies.string(pipe, "display_name")
    pipeline, _ = _state().create_pipeline(
        name or display,
        display,
        bodies.string(pipe, "description"),
        _version_package(ver),
        bodies.string(pipe, "namespace"),
    )
    return jsonify(pipeline)


@bp.get(f"{V2}/pipelines/names/<name>")
def get_pipeline_by_name(name):
    """Exact lookup by the pipeline's unique name."""
    return jsonify(_state().get_pipeline_by_name(name, request.args.get("namespace", "")))


@bp.get(f"{V2}/pipelines/<id:pipeline_id>")
def get_pipeline(pipeline_id):
    """One pipeline."""
    return jsonify(_state().get_pipeline(pipeline_id))


@bp.delete(f"{V2}/pipelines/<id:pipeline_id>")
def delete_pipeline(pipeline_id):
    """Delete a pipeline: 400 while versions exist unless ?cascade=true (from KFP 2.14)."""
    _state().delete_pipeline(pipeline_id, versions.active().cascade_arg(request.args))
    return jsonify({})


# ---- versions -------------------------------------------------------------------------------
@bp.get(f"{V2}/pipelines/<id:pipeline_id>/versions")
def list_versions(pipeline_id):
    """List one pipeline's versions."""
    return jsonify(_state().list_versions(pipeline_id, request.args))


def _fetch(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise ApiError(3, f"Failed to create a pipeline version: Invalid input error: unsupported package url {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # outside the state lock
            return resp.read(packages.MAX_PACKAGE_BYTES + 1)
    except OSError as exc:
        raise ApiError(
            3, f"Failed to create a pipeline version: Invalid input error: cannot download {url}: {exc}"
        ) from exc


def _version_package(body: dict) -> packages.Package:
    url = bodies.string(bodies.fields(body.get("package_url"), bodies.URL, "package_url"), "pipeline_url")
    try:
        if body.get("pipeline_spec") is not None:
            package = packages.from_dict(body["pipeline_spec"])
        elif url:
            package = packages.parse(packages.unpack(url.rsplit("/", 1)[-1], _fetch(url)))
        else:
            raise ApiError(
                3, "Failed to create a pipeline version: Invalid input error: pipeline spec or package url is required"
            )
    except packages.PackageError as exc:
        raise ApiError(3, f"Failed to create a pipeline version: Invalid input error: {exc.message}") from exc
    problem = versions.active().ir_problem(package.ir) if package.kind == "v2" and package.ir is not None else None
    if problem:
        raise ApiError(3, f"Failed to create a pipeline version: Invalid input error: {problem}")
    return _as_stored(package)


def _as_stored(package: packages.Package) -> packages.Package:
    """The package as the played version keeps it (2.3 drops a platform spec it cannot parse, silently)."""
    platform = package.spec.get("platform_spec") if package.kind == "v2" else None
    if isinstance(platform, dict) and package.ir is not None and versions.active().kept_platform_spec(platform) is None:
        return packages.Package("v2", package.ir, ir=package.ir)
    return package


@bp.post(f"{V2}/pipelines/<id:pipeline_id>/versions")
def create_version(pipeline_id):
    """Create a version from an inline pipeline_spec or a package_url."""
    body = bodies.json_body(versions.active().body_fields(bodies.VERSION))
    package = _version_package(body)
    name, display = bodies.string(body, "name"), bodies.string(body, "display_name")
    message = too_long("PipelineVersion", "Name", name or display, VERSION_NAME_MAX)
    if message and versions.active().name_length_limits:
        raise ApiError(3, message)
    version = _state().create_version(
        pipeline_id,
        name or display,
        display,
        bodies.string(body, "description"),
        package,
        bodies.string(body, "code_source_url"),
    )
    return jsonify(version)


@bp.get(f"{V2}/pipelines/<id:pipeline_id>/versions/<id:version_id>")
def get_version(pipeline_id, version_id):
    """One pipeline version (pipeline_spec included), whatever pipeline id the path names."""
    return jsonify(_state().get_version(pipeline_id, version_id))


@bp.delete(f"{V2}/pipelines/<id:pipeline_id>/versions/<id:version_id>")
def delete_version(pipeline_id, version_id):
    """Delete one pipeline version, whichever pipeline owns it (KFP does not check the path's pipeline id)."""
    _state().delete_version(pipeline_id, version_id)
    return jsonify({})


# ---- uploads (multipart, upload error bodies) --------------------------------------------------
def _read_upload(fallback_message: str) -> tuple[packages.Package, str]:
    upload = request.files.get("uploadfile")
    if upload is None:
        raise UploadError(400, fallback_message)
    data = upload.stream.read(packages.MAX_PACKAGE_BYTES + 1)
    if len(data) > packages.MAX_PACKAGE_BYTES:
        raise UploadError(400, fallback_message)  # KFP's ReadPipelineFile: a 400 with no more detail, not 413
    try:
        package = packages.parse(packages.unpack(upload.filename or "", data))
    except packages.PackageError as exc:
        raise UploadError(exc.status, f"{fallback_message}: {exc.message}") from exc
    version = versions.active()
    problem = version.ir_problem(package.ir) if package.kind == "v2" and package.ir is not None else None
    if problem:  # KFP < 2.17 answers these with 500
        raise UploadError(version.invalid_ir_status, f"{fallback_message}: {problem}")
    return _as_stored(package), upload.filename or ""


def _check_length(model: str, field: str, value: str, limit: int) -> None:
    # validation/length.go exists from KFP 2.15: older servers take any length.
    message = too_long(model, field, value, limit) if versions.active().name_length_limits else None
    if message:
        raise PlainError(400, message)  # written with http.Error: text/plain, not the upload JSON


def _upload_failure(exc: ApiError, message: str) -> UploadError:
    status = {6: 409, 3: 400, 5: 400}.get(exc.code, 500)
    return UploadError(status, f"{message}: {exc.message}")


@bp.post(f"{V2}/pipelines/upload")
def upload_pipeline():
    """Upload a package: creates the pipeline and its first version named after it."""
    package, filename = _read_upload("Failed to read a pipeline spec file")
    args = request.args
    _check_length("Pipeline", "Namespace", args.get("namespace", ""), NAMESPACE_MAX)
    # Like KFP: name, else display_name (read from 2.14), else the uploaded file's name.
    display = versions.active().upload_display_name_arg(args)
    name = args.get("name") or display or filename or package.pipeline_name
    _check_length("Pipeline", "Name", name, PIPELINE_NAME_MAX)
    try:
        pipeline, _ = _state().create_pipeline(
            name, display, args.get("description", ""), package, args.get("namespace", "")
        )
    except ApiError as exc:
        raise _upload_failure(exc, "Failed to create a pipeline and a pipeline version") from exc
    return jsonify(pipeline)


@bp.post(f"{V2}/pipelines/upload_version")
def upload_version():
    """Upload a package as a new version of ?pipelineid=."""
    package, filename = _read_upload("Failed to create a pipeline version")
    args = request.args
    pipeline_id = args.get("pipelineid", "")
    if not pipeline_id:
        raise UploadError(400, "Failed to create a pipeline version: pipelineid is required")
    display = versions.active().upload_display_name_arg(args)
    name = args.get("name") or display or filename or package.pipeline_name
    _check_length("PipelineVersion", "Name", name, VERSION_NAME_MAX)
    try:
        version = _state().create_version(
            pipeline_id, name, display, args.get("description", ""), package, args.get("code_source_url", "")
        )
    except ApiError as exc:
        raise _upload_failure(exc, "Failed to create a pipeline version") from exc
    return jsonify(version)


# ---- experiments ----------------------------------------------------------------------------
@bp.get(f"{V2}/experiments")
def list_experiments():
    """List experiments."""
    return jsonify(_state().list_experiments(request.args))


@bp.post(f"{V2}/experiments")
def create_experiment():
    """Create an experiment (409 on a duplicate display_name)."""
    body = bodies.json_body(bodies.EXPERIMENT)
    return jsonify(
        _state().create_experiment(
            bodies.string(body, "display_name"), bodies.string(body, "description"), bodies.string(body, "namespace")
        )
    )


@bp.get(f"{V2}/experiments/<id:experiment_id>")
def get_experiment(experiment_id):
    """One experiment."""
    return jsonify(_state().get_experiment(experiment_id))


@bp.delete(f"{V2}/experiments/<id:experiment_id>")
def delete_experiment(experiment_id):
    """Delete an experiment (409 for the Default experiment)."""
    _state().delete_experiment(experiment_id)
    return jsonify({})


@bp.post(f"{V2}/experiments/<id:experiment_id>:archive")
def archive_experiment(experiment_id):
    """Archive an experiment."""
    _state().set_experiment_storage(experiment_id, "ARCHIVED")
    return jsonify({})


@bp.post(f"{V2}/experiments/<id:experiment_id>:unarchive")
def unarchive_experiment(experiment_id):
    """Unarchive an experiment."""
    _state().set_experiment_storage(experiment_id, "AVAILABLE")
    return jsonify({})
