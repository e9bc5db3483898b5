"""Liveness (never touches KFP) and readiness (KFP must answer)."""
from __future__ import annotations

from flask import Blueprint, Response

from .common import json_response, kf

bp = Blueprint("health", __name__)


@bp.get("/liveness")
def liveness():
    """Answer 200 `Okay` while the process serves requests, whatever KFP's state."""
    return Response("Okay", status=200, mimetype="text/plain")


@bp.get("/readiness")
def readiness():
    """Answer 200 when KFP's healthz answers; the error envelope (502/504) when it does not."""
    health = kf().health()
    return json_response({"status": "ready", "kfp": {k: health.get(k) for k in ("tag_name", "multi_user")}})
