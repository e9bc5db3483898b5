"""Flask app factory of the sandbox KFP: routes, request counting, fault injection, error rendering."""

from __future__ import annotations

import logging
import re
import socket
import time

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from kfadapter.sandbox import (
    authz,
    authz_routes,
    control,
    mlmd_routes,
    notifications,
    objectstore,
    routes_pipelines,
    routes_runs,
    ui_proxy,
)
from kfadapter.sandbox.errors import (
    HTTP_TO_GRPC,
    ApiError,
    PlainError,
    UploadError,
    grpc_response,
    plain_response,
    upload_response,
)
from kfadapter.sandbox.state import SandboxState

_RULE_VAR = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
log = logging.getLogger(__name__)


class IdConverter(BaseConverter):
    """A path segment without ':' so `/runs/<id>` and `/runs/<id>:terminate` stay apart."""

    regex = r"[^/:]+"


def _route_pattern() -> str:
    rule = request.url_rule
    return _RULE_VAR.sub(r"{\1}", rule.rule) if rule is not None else request.path


def _before_api_request():
    # Control requests are neither counted nor faulted, so tests can always steer the sandbox.
    if request.path.startswith("/_sandbox/"):
        return None
    sandbox: SandboxState = current_app.extensions["sandbox"]
    sandbox.count(f"{request.method} {_route_pattern()}")
    fault = sandbox.take_fault(request.method, request.path)
    if fault is None:
        return None
    if fault["delay"]:
        time.sleep(fault["delay"])  # no lock held here
    if fault.get("kind") == "reset":
        _reset_connection()
        return Response(b"", status=500)  # never reaches the client: the socket is gone
    if fault.get("kind") == "truncate":
        # Promise more than is sent and close: the client sees the body end early.
        body = b'{"pipelines": [{"pipeline_id": "trunc'
        # A generator body: werkzeug would otherwise correct the Content-Length to the real size.
        return Response(
            iter([body]),
            status=200,
            headers={"Content-Length": str(len(body) + 100), "Content-Type": "application/json", "Connection": "close"},
        )
    if fault["status"]:
        status = fault["status"]
        code = HTTP_TO_GRPC.get(status, 13 if status >= 500 else 3)
        message = f"sandbox: injected fault (HTTP {status})"
        if request.path.endswith(("/pipelines/upload", "/pipelines/upload_version")):
            return upload_response(status, message)  # the upload endpoints' own error shape
        return grpc_response(code, message, http_status=status)
    return None


def _reset_connection() -> None:
    """Drop the connection before any answer, as a crashing proxy or pod would."""
    sock = request.environ.get("kfadapter.socket")  # set by the sandbox's server (server.py)
    if sock is not None:
        # close() would only drop this reference (the server's file objects keep the fd open): shut it down.
        sock.shutdown(socket.SHUT_RDWR)


def _http_error(exc: HTTPException):
    if request.path.startswith("/apis/"):
        code = HTTP_TO_GRPC.get(exc.code or 500, 13)
        return grpc_response(code, exc.name, http_status=exc.code)  # grpc-gateway says just "Not Found"
    return jsonify({"error": exc.name, "message": exc.description}), exc.code


def _unexpected(exc: Exception):
    log.exception("sandbox: unexpected error")
    return grpc_response(13, f"Internal error: {type(exc).__name__}: {exc}")


class UiProxyPrefix:
    """Serve every KFP API route under `/pipeline` too, as the ml-pipeline-ui proxy does in a cluster.

    O-RAN's KUBEFLOW_HOST/PORT point at that proxy (`http://ml-pipeline-ui.kubeflow/pipeline/apis/v2beta1/...`);
    the API server itself has no prefix. Only `/pipeline/apis/...` is forwarded, like the proxy."""

    PREFIX = "/pipeline"

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.rstrip("/") in ui_proxy.HEALTHZ_PATHS:  # answered by the UI itself (sandbox/ui_proxy.py)
            environ["PATH_INFO"] = ui_proxy.HEALTHZ_PATHS[path.rstrip("/")]
        elif path.startswith(self.PREFIX + "/apis/"):
            environ["PATH_INFO"] = path[len(self.PREFIX) :]
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.PREFIX
        return self.wsgi_app(environ, start_response)


def create_sandbox_app(
    multi_user: bool = False,
    kfp_version: str | None = None,
    policy: authz.Policy | None = None,
    tag_name: str | None = None,
) -> Flask:
    """Build a sandbox KFP app with fresh in-memory state in `app.extensions["sandbox"]`, playing `kfp_version`
    (`2.3`, `2.5`, `2.14` or `2.17`, the default; see `versions`); `tag_name` replaces the healthz label the
    official image of that version has ("unknown" on 2.5 and 2.14).

    `multi_user=True` behaves like KFP deployed with Kubeflow's profiles: namespaced experiments and runs, no
    Default experiment, healthz `multi_user: true`, and every call authorized (`authz_routes`): the caller needs
    an identity (`kubeflow-userid` or a bearer token), and `policy` says which tokens and grants exist (None:
    any token, everything granted)."""
    app = Flask("kfadapter.sandbox")
    app.wsgi_app = UiProxyPrefix(app.wsgi_app)  # type: ignore[method-assign]  # Flask's documented middleware idiom
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's setting
    app.url_map.strict_slashes = False
    app.url_map.converters["id"] = IdConverter
    app.extensions["sandbox"] = SandboxState(multi_user=multi_user, kfp_version=kfp_version)
    app.config["SANDBOX_TAG_NAME"] = tag_name
    app.register_blueprint(routes_pipelines.bp)
    app.register_blueprint(routes_runs.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(mlmd_routes.bp)
    app.register_blueprint(objectstore.bp)
    app.register_blueprint(ui_proxy.bp)
    app.extensions["sandbox_notifications"] = notifications.Inbox()
    app.register_blueprint(notifications.bp)
    app.before_request(_before_api_request)
    app.before_request(authz_routes.authorize)
    if policy is not None:
        app.extensions[authz_routes.POLICY] = policy
    app.register_error_handler(ApiError, lambda e: grpc_response(e.code, e.message, e.http_status))
    app.register_error_handler(UploadError, lambda e: upload_response(e.status, e.message))
    app.register_error_handler(PlainError, lambda e: plain_response(e.status, e.message))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app
