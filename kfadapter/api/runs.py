"""Run routes: training-job execution, run list, run details, terminate."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from kfadapter.api.common import (
    check_name,
    iso_times,
    json_body,
    json_response,
    kf,
    optional_str,
    required_str,
    store,
)
from kfadapter.core.errors import BadRequest
from kfadapter.kfconnect import UNFINISHED_TIME
from kfadapter.outputs import runinfo
from kfadapter.watch import intents

bp = Blueprint("runs", __name__)


@bp.post("/trainingjobs/<trainingjob_id>/execution")
def execute(trainingjob_id: str):
    """Start a run for a training job and track it until it ends."""
    check_name(trainingjob_id, "trainingjob_id")
    body = json_body()
    pipeline_name = check_name(required_str(body, "pipeline_name"), "pipeline_name")
    version = optional_str(body, "pipeline_version")
    experiment = check_name(optional_str(body, "experiment_name", "Default"), "experiment_name")
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise BadRequest(
            "'arguments' must be a JSON object of name -> value", code="invalid_field", details={"field": "arguments"}
        )
    # Intent first: KFP is asked only once the store holds it, and the answer waits for the run id to be stored.
    return json_response(intents.execute(kf(), store(), trainingjob_id, pipeline_name, version, experiment, arguments))


@bp.get("/runs")
def list_runs():
    """Return `{run name: {run_id, run_description, run_status, experiment_id, pipeline_name, pipeline_id}}`.

    Runs that share a display name are keyed `"<name> (<run_id>)"` so none is hidden.
    """
    connect = kf()
    runs = connect.list_runs()
    names = connect.pipeline_names({pid for r in runs if (pid := _pipeline_id(r)) is not None})
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.get("display_name", "")] = counts.get(r.get("display_name", ""), 0) + 1
    out: dict[str, Any] = {}
    for r in runs:
        key = r.get("display_name", "")
        if counts[key] > 1:
            key = f"{key} ({r['run_id']})"
        out[key] = {
            "run_id": r["run_id"],
            "run_description": r.get("description", ""),
            "run_status": r.get("state"),
            "experiment_id": r.get("experiment_id"),
            "pipeline_name": names.get(_pipeline_id(r) or ""),
            "pipeline_id": _pipeline_id(r),
        }
    return json_response(out)


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    """Return one run's name, state, experiment, pipeline, times, tasks and, when FAILED, why."""
    run = kf().describe_run(run_id)
    # Tracked, finished (or untracked by DELETE) and kept for KFADAPTER_HISTORY_DAYS; a run no execution started is never in the store.
    known = store().history(run_id) if intents.may_be_in_store(run) else None
    return json_response(
        _run_view(run)
        | {
            "trainingjob_id": known["trainingjob_id"] if known else None,
            "tracked": bool(known and known["tracked"]),
            "notification": iso_times(known["notification"], "notified_at") if known else None,
        }
    )


@bp.delete("/runs/<run_id>")
def terminate_run(run_id: str):
    """Terminate a run KFP can still terminate (a CANCELING or finished one is answered as it is); stop tracking it."""
    run = kf().terminate_run(run_id)
    was_tracked = store().untrack(run_id)
    return json_response(_run_view(run) | {"terminated": run["terminated"], "was_tracked": was_tracked})


def _pipeline_id(run: dict) -> str | None:
    return (run.get("pipeline_version_reference") or {}).get("pipeline_id")


def _run_view(run: dict) -> dict:
    # KFP never fills a run's `error`: a FAILED run's reasons come from its workflow (`failure`, GET only).
    failure = run.get("failure")
    ref = run.get("pipeline_version_reference") or {}
    return {
        "run_id": run["run_id"],
        "run_name": run.get("display_name"),
        "run_status": run.get("state"),
        "experiment_id": run.get("experiment_id"),
        "pipeline_id": ref.get("pipeline_id"),
        "pipeline_version_id": ref.get("pipeline_version_id"),
        "created_at": run.get("created_at"),
        "scheduled_at": run.get("scheduled_at"),
        "finished_at": None if run.get("finished_at") in (None, "", UNFINISHED_TIME) else run["finished_at"],
        "error": failure if failure is not None else run.get("error"),
        "tasks": run["tasks"] if "tasks" in run else runinfo.tasks(run),
    }
