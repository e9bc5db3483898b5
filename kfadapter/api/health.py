"""Liveness (never touches KFP), readiness (KFP must answer) and the API's own OpenAPI document."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from flask import Blueprint, Response

from kfadapter.api.common import json_response, kf, store

bp = Blueprint("health", __name__)


@bp.get("/liveness")
def liveness():
    """Answer 200 `Okay` while the process serves requests, whatever KFP's state."""
    return Response("Okay", status=200, mimetype="text/plain")


@bp.get("/readiness")
def readiness():
    """Answer 200 when the store takes a write and KFP's healthz answers; the error envelope (503/502/504) when not."""
    # 503 store_unavailable while the store is not open yet, is down or restarting, or cannot write (disk full).
    store().check_writable()
    return json_response({"status": "ready", "kfp": kf().health_summary()})


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI 3.1 document of this API (kfadapter/api/openapi.yaml)."""
    return json_response(_openapi_document())


@functools.cache
def _openapi_document() -> dict:
    return yaml.safe_load((Path(__file__).parent / "openapi.yaml").read_text(encoding="utf-8"))
