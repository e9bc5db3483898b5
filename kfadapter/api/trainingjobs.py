"""`GET /trainingjobs/<trainingjob_id>/runs`: a training job's runs from the store's history, newest first."""

from __future__ import annotations

from flask import Blueprint

from kfadapter.api.common import check_name, json_response, kf, store

bp = Blueprint("trainingjobs", __name__)


@bp.get("/trainingjobs/<trainingjob_id>/runs")
def trainingjob_runs(trainingjob_id: str):
    """Return the training job's runs (state, notification status), newest first; an unknown job has none.

    Finished runs carry their final state from the store; the state of runs still tracked is read from KFP in
    one list call.
    """
    check_name(trainingjob_id, "trainingjob_id")
    runs = store().runs_of(trainingjob_id)
    live = [r["run_id"] for r in runs if r["tracked"]]
    if live:
        states = {r["run_id"]: r.get("state") for r in kf().runs_by_ids(live)}
        for r in runs:
            if r["tracked"]:
                r["state"] = states.get(r["run_id"])
    return json_response({"trainingjob_id": trainingjob_id, "runs": runs})
