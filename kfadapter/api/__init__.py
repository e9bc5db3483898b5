"""HTTP API: one blueprint per resource, plus the single error-to-JSON mapping."""
from __future__ import annotations

from flask import Flask

from . import errors, experiments, health, pipelines, runs, telemetry, watches


def register(app: Flask) -> None:
    """Attach every blueprint and the error handlers to `app`."""
    for module in (pipelines, experiments, runs, health, watches, telemetry):
        app.register_blueprint(module.bp)
    errors.register(app)
    telemetry.register_hooks(app)
