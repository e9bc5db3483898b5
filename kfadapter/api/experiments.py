"""Experiment routes: the name → id map the training manager reads, and one lookup by name."""
from __future__ import annotations

from flask import Blueprint

from .common import check_name, json_response, kf

bp = Blueprint("experiments", __name__)


@bp.get("/experiments")
def list_experiments():
    """Return `{experiment name: experiment id}` for every experiment."""
    return json_response({e.get("display_name"): e["experiment_id"] for e in kf().list_experiments()})


@bp.get("/experiments/<experiment_name>")
def get_experiment(experiment_name: str):
    """Return `{"name", "id"}` of the experiment with this name."""
    exp = kf().find_experiment(check_name(experiment_name, "experiment name"))
    return json_response({"name": experiment_name, "id": exp["experiment_id"],
                          "description": exp.get("description", ""), "created_at": exp.get("created_at")})
