"""`GET /`: what this service is, its version, and where to go next."""

from __future__ import annotations

from flask import Blueprint

from kfadapter.api.common import json_response
from kfadapter.core.version import version

bp = Blueprint("index", __name__)

LINKS = {
    "openapi": "/openapi.json",
    "docs": "/docs",
    "liveness": "/liveness",
    "readiness": "/readiness",
    "metrics": "/metrics",
    "pipelines": "/pipelines",
    "experiments": "/experiments",
    "runs": "/runs",
    "watches": "/watches",
}


@bp.get("/")
def index():
    """Return the service name, its version and links to the API document, probes, metrics and lists."""
    return json_response(
        {
            "service": "kfadapter",
            "version": version(),
            "description": "REST adapter between the O-RAN AI/ML Training Manager and Kubeflow Pipelines 2.x",
            "links": LINKS,
        }
    )
