"""Request ids, one log line and metrics per request, and `GET /metrics`."""

from __future__ import annotations

import functools
import logging
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from kfadapter.api.common import store
from kfadapter.core.observability import count_request, new_request_id, render_metrics, request_id_var

bp = Blueprint("telemetry", __name__)
log = logging.getLogger("kfadapter.access")


def _access_line(method: str, path: str, route: str, status: int, elapsed: float, request_id: str) -> None:
    log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "request_id": request_id,
        },
    )


@bp.get("/metrics")
def metrics():
    """Return Prometheus metrics: requests, KFP calls and errors, watcher backlog and lag."""
    return Response(render_metrics(store()), mimetype=CONTENT_TYPE_LATEST)


def register_hooks(app: Flask) -> None:
    """Give every request an id (kept from `X-Request-ID` when sane) and measure it."""

    @app.before_request
    def _start() -> None:
        g.request_id = new_request_id(request.headers.get("X-Request-ID"))
        g.request_id_token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()

    @app.after_request
    def _finish(resp: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        count_request(request.method, route, resp.status_code, elapsed)
        request_id = g.get("request_id", "")
        resp.headers["X-Request-ID"] = request_id
        if route not in ("/liveness", "/readiness", "/metrics"):
            # Written once the answer is sent (the server closes the response then): the caller never waits
            # for its log line. The values are taken now; the request is gone by then.
            resp.call_on_close(
                functools.partial(
                    _access_line, request.method, request.path, route, resp.status_code, elapsed, request_id
                )
            )
        return resp

    @app.teardown_request
    def _clear(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
