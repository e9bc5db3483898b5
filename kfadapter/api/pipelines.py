"""Pipeline routes: ids by name, versioned uploads, lists, details with parameters, deletes."""

from __future__ import annotations

import io

from flask import Blueprint, current_app, request

from kfadapter.api.common import check_name, json_response, kf
from kfadapter.core.errors import BadRequest, Busy, NotFound, PayloadTooLarge
from kfadapter.core.limits import Limits
from kfadapter.packages import check as package_check
from kfadapter.packages import names
from kfadapter.packages import parsing as pl
from kfadapter.packages import volume_passing as vp

bp = Blueprint("pipelines", __name__)


@bp.get("/pipelineIds/<pipeline_name>")
def pipeline_id(pipeline_name: str):
    """Return `{"name", "id"}` of the pipeline with this name."""
    pipeline = kf().find_pipeline(check_name(pipeline_name, "pipeline name"))
    return json_response({"name": pipeline_name, "id": pipeline["pipeline_id"]})


@bp.post("/pipelineIds/<pipeline_name>")
def upload(pipeline_name: str):
    """Upload a package: a new pipeline, or the next numbered version of an existing one.

    At most KFADAPTER_MAX_CONCURRENT_UPLOADS are processed at once per worker process; another waits for a
    slot up to KFADAPTER_UPLOAD_QUEUE_TIMEOUT before its body is parsed, then gets 503 with Retry-After. The
    package is read from the request's spooled file, never copied into memory whole (only its parsed document
    is held).
    """
    names.check_pipeline_name(pipeline_name)
    settings = current_app.config["KFADAPTER_SETTINGS"]
    slots = current_app.extensions["kfadapter.uploads"]
    if not slots.acquire(timeout=settings.upload_queue_timeout):
        raise Busy(
            f"{settings.max_concurrent_uploads} uploads are being processed (KFADAPTER_MAX_CONCURRENT_UPLOADS) "
            f"and none ended within {settings.upload_queue_timeout:g} s (KFADAPTER_UPLOAD_QUEUE_TIMEOUT); retry "
            "shortly",
            code="too_many_uploads",
            details={"limit": "KFADAPTER_MAX_CONCURRENT_UPLOADS", "max": settings.max_concurrent_uploads},
        )
    try:
        return _upload(pipeline_name)
    finally:
        slots.release()


def _upload(pipeline_name: str):
    # The training manager sends the field `file`; KFP's own clients call it `uploadfile`.
    upload_file = request.files.get("file") or request.files.get("uploadfile")
    if upload_file is None:
        raise BadRequest(
            "the multipart field 'file' with the pipeline package is required",
            code="missing_field",
            details={"field": "file"},
        )
    settings = current_app.config["KFADAPTER_SETTINGS"]
    data = upload_file.stream  # werkzeug's spool: memory up to 500 KiB, then an anonymous temporary file
    if data.seek(0, io.SEEK_END) > settings.max_upload_bytes:
        raise PayloadTooLarge("the pipeline package is larger than 32 MiB, the most KFP accepts")
    data.seek(0)
    description = request.form.get("description") or None
    package = pl.load_package(data, Limits.of(settings))
    if package.kind == pl.V2:
        # Before any KFP call: KFP < 2.17 answers an invalid package with 500 (package_check.py).
        package_check.validate_ir(package_check.ir_of(package))
    # `?data_passing=volume&volume=<claim or JSON>` uploads a rewritten v1 workflow instead (README).
    package, payload = vp.apply_data_passing(
        package, data, request.args.get("data_passing"), request.args.get("volume")
    )
    result = kf().upload(pipeline_name, payload, package, description)
    # `name` and `id` are the O-RAN adapter's answer (the pipeline's); ours sit beside them.
    return json_response(
        {"name": pipeline_name, "id": result["pipeline_id"]}
        | result
        | {"pipeline_kind": package.kind, "description": description or ""}
    )


@bp.get("/pipelines")
def list_pipelines():
    """Return every pipeline (all pages) in the O-RAN shape."""
    items = [
        {
            "pipeline_id": p["pipeline_id"],
            "display_name": p.get("display_name"),
            "name": p.get("name"),
            "description": p.get("description", ""),
            "created_at": p.get("created_at"),
            "namespace": p.get("namespace", ""),
        }
        for p in kf().list_pipelines()
    ]
    # O-RAN's keys: `next_page_token` is always null because every KFP page is already in `pipelines`.
    return json_response({"next_page_token": None, "total_size": len(items), "pipelines": items})


@bp.get("/pipelines/<pipeline_name>/versions")
def list_versions(pipeline_name: str):
    """Return every version name of a pipeline, in numeric order, plus the versions as objects."""
    connect = kf()
    pipeline = connect.find_pipeline(check_name(pipeline_name, "pipeline name"))
    versions = [
        {
            "id": v["pipeline_version_id"],
            "name": v.get("display_name") or v.get("name"),
            "created_at": v.get("created_at"),
            "description": v.get("description", ""),
        }
        for v in connect.list_versions(pipeline["pipeline_id"])
    ]
    return json_response(
        {"versions_list": [v["name"] for v in versions], "versions": versions, "pipeline_id": pipeline["pipeline_id"]}
    )


@bp.get("/pipelines/<pipeline_id>")
def get_pipeline(pipeline_id: str):
    """Return a pipeline with its parameters; `?version=<name>` picks a version, default the newest."""
    connect = kf()
    pipeline = connect.get_pipeline(pipeline_id)
    version_name = request.args.get("version")
    try:
        version = connect.find_version(pipeline, version_name)
    except NotFound:
        if version_name:
            raise
        version = None  # a pipeline created without any version has no parameters yet
    params = pl.parameters_of(connect.version_spec(version)) if version else []
    return json_response(
        {
            "id": pipeline["pipeline_id"],
            "name": pipeline.get("display_name"),
            "description": pipeline.get("description", ""),
            "arguments": {p.name: p.default for p in params},
            "parameters": [p.to_dict() for p in params],
            "version": (
                {"id": version["pipeline_version_id"], "name": version.get("display_name")} if version else None
            ),
            "created_at": pipeline.get("created_at"),
        }
    )


@bp.delete("/pipelines/<pipeline_id>")
def delete_pipeline(pipeline_id: str):
    """Delete a pipeline and all its versions."""
    return json_response(kf().delete_pipeline(pipeline_id))


@bp.delete("/pipelines/<pipeline_id>/versions/<version_id>")
def delete_version(pipeline_id: str, version_id: str):
    """Delete one version of a pipeline; 404 unless the version belongs to it (checked before deleting)."""
    return json_response(kf().delete_version(pipeline_id, version_id))
