"""HTTP API: one blueprint per resource, plus the single error-to-JSON mapping."""

from __future__ import annotations

from flask import Flask

from kfadapter.api import (
    auth,
    docs,
    errors,
    experiments,
    health,
    index,
    logs,
    outputs,
    pipelines,
    runs,
    telemetry,
    trainingjobs,
    watches,
)


def register(app: Flask, api_token: str | None = None) -> None:
    """Attach every blueprint, the error handlers and (when a token is set) authentication to `app`."""
    telemetry.register_hooks(app)  # first, so even a refused request gets its id and is counted
    auth.register(app, api_token)
    for module in (index, pipelines, experiments, runs, trainingjobs, outputs, logs, health, watches, telemetry):
        app.register_blueprint(module.bp)
    docs.register(app)
    errors.register(app)
