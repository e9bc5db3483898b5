"""`GET /trainingjobs/<trainingjob_id>/runs`: a training job's runs from the store's history, newest first."""

from __future__ import annotations

from flask import Blueprint

from kfadapter.api.common import check_name, iso_times, json_response, kf, store
from kfadapter.kfconnect import UNFINISHED_TIME

bp = Blueprint("trainingjobs", __name__)
HISTORY_TIMES = ("tracked_at", "finished_at", "untracked_at")  # epoch seconds in the store, ISO 8601 here


@bp.get("/trainingjobs/<trainingjob_id>/runs")
def trainingjob_runs(trainingjob_id: str):
    """Return the training job's runs (state, notification status), newest first; an unknown job has none.

    Finished runs carry their final state from the store; the state (and end) of runs still tracked, and of
    runs whose tracking DELETE /runs/<id> stopped, is read from KFP in one list call.
    """
    check_name(trainingjob_id, "trainingjob_id")
    runs = [iso_times(r, *HISTORY_TIMES) for r in store().runs_of(trainingjob_id)]
    live = [r["run_id"] for r in runs if r["state"] is None]
    if live:
        found = {r["run_id"]: r for r in kf().runs_by_ids(live)}
        for r in runs:
            run = found.get(r["run_id"]) if r["state"] is None else None
            if run is not None:
                r["state"] = run.get("state")
                if run.get("finished_at") not in (None, "", UNFINISHED_TIME):
                    r["finished_at"] = run["finished_at"]
    return json_response({"trainingjob_id": trainingjob_id, "runs": runs})
