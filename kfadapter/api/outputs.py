"""Run output routes: every task's outputs as typed JSON, and one artifact's bytes as a download."""
from __future__ import annotations

import re
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request

from ..outputs.service import OutputsService
from .common import json_response

bp = Blueprint("outputs", __name__)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def outputs() -> OutputsService:
    """Return the app's OutputsService."""
    return current_app.extensions["kfadapter.outputs"]


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@bp.get("/runs/<run_id>/outputs")
def run_outputs(run_id: str):
    """Return the run's state and its tasks' outputs; `?task=` filters, `?logs=true` adds main-logs."""
    return json_response(outputs().run_outputs(run_id, task=request.args.get("task") or None, logs=_flag("logs")))


@bp.get("/runs/<run_id>/nodes/<node_id>/artifacts/<name>")
def download_artifact(run_id: str, node_id: str, name: str):
    """Stream an artifact's own bytes as a file; `?member=` picks a file of an archive, `?list=true` lists them."""
    result = outputs().open_artifact(run_id, node_id, name, member=request.args.get("member") or None,
                                     list_members=_flag("list"))
    if isinstance(result, dict):
        return json_response(result)
    resp = Response(result, mimetype="application/octet-stream", direct_passthrough=True)
    resp.headers["Content-Disposition"] = content_disposition(result.filename)
    if result.size is not None:
        resp.headers["Content-Length"] = str(result.size)
    return resp


def content_disposition(filename: str) -> str:
    """Return an attachment header that `curl -OJ` and browsers read, safe for any file name (RFC 6266)."""
    ascii_name = _UNSAFE_FILENAME.sub("_", filename).strip("._") or "artifact"
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header
