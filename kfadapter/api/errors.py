"""The one mapping from exceptions to the JSON error envelope `{"status", "code", "message", "details"}`."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from kfadapter.api.common import json_response
from kfadapter.core.errors import AdapterError, Busy

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    """Render domain errors, Flask's own 4xx/5xx and unexpected exceptions as JSON."""

    @app.errorhandler(AdapterError)
    def _domain(exc: AdapterError) -> Response:
        resp = json_response(exc.to_dict(), exc.status)
        if exc.status == HTTPStatus.UNAUTHORIZED:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="kfadapter"'
        if isinstance(exc, Busy):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (
            HTTPStatus(status).phrase.lower().replace(" ", "_")
            if status in HTTPStatus._value2member_map_
            else "http_error"
        )
        message = exc.description or HTTPStatus(status).phrase
        details: dict = {}
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            code, message = "payload_too_large", "the request is larger than 32 MiB, the most KFP accepts"
        if status == HTTPStatus.NOT_FOUND and request.url_rule is None:
            # No route matched (not a resource that is missing): say where the routes are listed.
            message = f"no route {request.method} {request.path}: GET / lists the links, /docs describes every route"
            details = {"path": request.path, "index": "/", "docs": "/docs", "openapi": "/openapi.json"}
        resp = json_response({"status": status, "code": code, "message": message, "details": details}, status)
        if status == HTTPStatus.METHOD_NOT_ALLOWED and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The trace goes to the log, never to the caller.
        log.exception("unhandled error")
        body = {
            "status": 500,
            "code": "internal_error",
            "message": "internal error; see the adapter's log",
            "details": {},
        }
        return json_response(body, HTTPStatus.INTERNAL_SERVER_ERROR)
