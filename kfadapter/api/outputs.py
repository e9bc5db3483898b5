"""Run output routes: every task's outputs as typed JSON, and one artifact's bytes as a download."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request

from kfadapter.api.common import json_response
from kfadapter.core.errors import BadRequest
from kfadapter.outputs.service import OutputsService

bp = Blueprint("outputs", __name__)
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def outputs() -> OutputsService:
    """Return the app's OutputsService."""
    return current_app.extensions["kfadapter.outputs"]


def _flag(name: str) -> bool:
    """Read a boolean query flag: absent = false; only `true|false|1|0`, anything else is a 400 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    # A typo like `?logs=maybe` must not silently mean false.
    raise BadRequest(
        f"query flag {name!r} must be true, false, 1 or 0, got {raw[:80]!r}",
        code="invalid_flag",
        details={"flag": name, "value": raw[:80]},
    )


@bp.get("/runs/<run_id>/outputs")
def run_outputs(run_id: str):
    """Return the run's state and its tasks' outputs; `?task=` filters, `?logs=true` adds main-logs."""
    logs = _flag("logs")
    return json_response(outputs().run_outputs(run_id, task=request.args.get("task") or None, logs=logs))


@bp.get("/runs/<run_id>/nodes/<node_id>/artifacts/<name>")
def download_artifact(run_id: str, node_id: str, name: str):
    """Stream an artifact's own bytes as a file; `?member=` picks a file of an archive, `?list=true` lists them."""
    list_members = _flag("list")
    result = outputs().open_artifact(
        run_id, node_id, name, member=request.args.get("member") or None, list_members=list_members
    )
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
