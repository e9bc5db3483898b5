"""Sandbox routes around ML Metadata: the control calls that attach MLMD records and store objects (served by
the S3-style `GET /_s3/{bucket}/{key}` of `objectstore`)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from kfadapter.sandbox import mlmd
from kfadapter.sandbox.control import _body, _int
from kfadapter.sandbox.errors import ApiError

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
