"""Step logs: `GET /runs/<run_id>/logs[?task=<id or name>][&tail=N]` as text (see kfadapter/outputs/logs.py)."""

from __future__ import annotations

import itertools

from flask import Blueprint, Response, current_app, request

from kfadapter.core.errors import NotFound
from kfadapter.outputs.logs import StepLogs, all_steps_text, parse_tail, step_text

bp = Blueprint("logs", __name__)
TEXT = "text/plain; charset=utf-8"


@bp.get("/runs/<run_id>/logs")
def run_logs(run_id: str):
    """Stream every step's log under a header line, or with `?task=` that step's log alone."""
    tail = parse_tail(request.args.get("tail"))
    task = request.args.get("task") or None
    steps = StepLogs(current_app.extensions["kfadapter.outputs"]).steps(run_id, task)
    if task is None:
        return Response(all_steps_text(steps, tail), content_type=TEXT)
    step = steps[0]
    if step.open is None:
        raise NotFound(
            f"log of step {step.name!r}: {step.missing}",
            code="log_not_available",
            details={"run_id": run_id, "task": step.id, "state": step.state},
        )
    chunks = step_text(step, tail)
    first = next(chunks, b"")  # opens the log now, so a failure is still a JSON error
    resp = Response(itertools.chain([first], chunks), content_type=TEXT)
    resp.headers["X-Kfadapter-Log-Source"] = step.source
    return resp
