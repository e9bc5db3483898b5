"""Liveness (never touches KFP), readiness (store and KFP must answer; `?deep=true`: every dependency) and the API's
own OpenAPI document."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from flask import Blueprint, Response, current_app, request

from kfadapter.api import probes
from kfadapter.api.auth import require_token
from kfadapter.api.common import json_response, kf, store
from kfadapter.core.errors import BadRequest, NotReady

bp = Blueprint("health", __name__)


@bp.get("/liveness")
def liveness():
    """Answer 200 `Okay` while the process serves requests, whatever KFP's state."""
    return Response("Okay", status=200, mimetype="text/plain")


@bp.get("/readiness")
def readiness():
    """Answer 200 when the store takes a write and KFP's healthz answers; the error envelope (503/502/504) when not.

    This is what the kubelet asks, so it stays cheap and about serving at all. `?deep=true` probes every
    dependency as the service uses it (kfadapter/api/probes.py): 200 with the checks, or 503 `not_ready` with them."""
    if _deep():
        return _deep_readiness()
    # 503 store_unavailable while the store is not open yet, is down or restarting, or cannot write (disk full).
    store().check_writable()
    return json_response({"status": "ready", "kfp": kf().health_summary()})


def _deep() -> bool:
    raw = request.args.get("deep")
    if raw is None or raw.lower() in ("false", "0", "no"):
        return False
    if raw.lower() in ("true", "1", "yes", ""):
        return True
    raise BadRequest(f"deep must be true or false, got {raw!r}", code="invalid_parameter", details={"field": "deep"})


def _deep_readiness() -> Response:
    settings = current_app.config["KFADAPTER_SETTINGS"]
    if settings.api_token:
        require_token(settings.api_token.encode())  # the answer names internal endpoints and failures
    outputs = current_app.extensions["kfadapter.outputs"]
    own_store = store()  # the probes run in threads, outside the request's app context
    deps = probes.Dependencies(
        settings=settings,
        kf=kf(),
        store=lambda: own_store,
        mlmd=outputs.mlmd,
        objects=outputs.objects,
        timeout=settings.notify_timeout,
    )
    results = probes.run_all(deps)
    checks = [r.to_dict() for r in results]
    bad = probes.failed(results)
    if bad:
        names = ", ".join(r.name for r in bad)
        raise NotReady(f"{len(bad)} of {len(results)} dependency checks failed: {names}", details={"checks": checks})
    return json_response({"status": "ready", "checks": checks})


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI 3.1 document of this API (kfadapter/api/openapi.yaml)."""
    return json_response(_openapi_document())


@functools.cache
def _openapi_document() -> dict:
    return yaml.safe_load((Path(__file__).parent / "openapi.yaml").read_text(encoding="utf-8"))
