"""Sandbox routes around ML Metadata: the control calls that attach MLMD records and store objects, and the
S3-style `GET /_s3/{bucket}/{key}` that serves those objects to the adapter's boto3 client (path-style)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from . import mlmd, versions
from .control import _body, _int
from .errors import ApiError

bp = Blueprint("sandbox_mlmd", __name__)


def _state():
    return current_app.extensions["sandbox"]


@bp.put("/_sandbox/runs/<id:run_id>/mlmd")
def attach_mlmd(run_id):
    """Record the run's MLMD context, executions, output parameters and artifacts."""
    return jsonify(mlmd.attach(_state(), run_id, _body()))


@bp.put("/_sandbox/objects/<bucket>/<path:key>")
def put_object(bucket, key):
    """Store an object (raw body) in the sandbox object store."""
    data = request.get_data()
    mlmd.put_object(_state(), bucket, key, data)
    return jsonify({"size": len(data), "uri": f"minio://{bucket}/{key}"})


@bp.post("/_sandbox/mlmd/faults")
def add_mlmd_fault():
    """Make the next MLMD calls slow or failing."""
    doc = _body()
    delay = doc.get("delay") or 0.0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ApiError(3, "control API: delay must be a number >= 0")
    mlmd.add_fault(_state(), doc.get("code"), float(delay), _int(doc, "times", None, 1))
    return jsonify({})


@bp.delete("/_sandbox/mlmd/faults")
def clear_mlmd_faults():
    """Remove every MLMD fault."""
    mlmd.clear_faults(_state())
    return jsonify({})


def _s3_error(status: int, code: str, message: str) -> Response:
    body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Response(body, status=status, content_type="application/xml")


@bp.route("/_s3/<bucket>/<path:key>", methods=["GET", "HEAD"])
def get_object(bucket, key):
    """The object as S3/MinIO serves it (no signature check), or S3's NoSuchKey XML error."""
    data = mlmd.get_object(_state(), bucket, key)
    if data is None:
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    return Response(data, content_type="application/octet-stream",
                    headers={"ETag": f'"{len(data):x}"', "Server": versions.active().object_store.server_header})
