"""Experiment routes: the name → id map the training manager reads, and one lookup by name."""

from __future__ import annotations

from flask import Blueprint

from kfadapter.api.common import check_name, json_response, kf
from kfadapter.kfconnect.experiments import DEFAULT_EXPERIMENT

bp = Blueprint("experiments", __name__)


@bp.get("/experiments")
def list_experiments():
    """Return `{experiment name: experiment id}` for every experiment, `Default` always among them.

    Multi-user KFP has no `Default` experiment; TM offers the names it reads here and sends "Default" by
    default, so the adapter creates it in its namespace (once; single-user KFP always has it)."""
    connect = kf()
    experiments = {e.get("display_name"): e["experiment_id"] for e in connect.list_experiments()}
    if DEFAULT_EXPERIMENT not in experiments:
        experiments[DEFAULT_EXPERIMENT] = connect.default_experiment()["experiment_id"]
    return json_response(experiments)


@bp.get("/experiments/<experiment_name>")
def get_experiment(experiment_name: str):
    """Return `{"name", "id"}` of the experiment with this name."""
    exp = kf().find_experiment(check_name(experiment_name, "experiment name"))
    return json_response(
        {
            "name": experiment_name,
            "id": exp["experiment_id"],
            "description": exp.get("description", ""),
            "created_at": exp.get("created_at"),
        }
    )
