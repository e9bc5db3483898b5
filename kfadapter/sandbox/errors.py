"""Error answers in the two shapes KFP uses: grpc-gateway status and the upload endpoints' body."""

from __future__ import annotations

import json

from flask import Response

from kfadapter.sandbox.versions import active

# grpc code -> HTTP status, as grpc-gateway maps them.
GRPC_TO_HTTP = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}
HTTP_TO_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 499: 1, 501: 12, 503: 14, 504: 4}

# Real KFP puts Go's "%+v" of the error here; the adapter must never echo it.
_FAKE_STACK = (
    "{msg}\n"
    "github.com/kubeflow/pipelines/backend/src/common/util.NewUserErrorWithSingleMessage\n"
    "\t/go/src/github.com/kubeflow/pipelines/backend/src/common/util/error.go:251\n"
    "github.com/kubeflow/pipelines/backend/src/apiserver/server.(*PipelineUploadServer).UploadPipeline\n"
    "\t/go/src/github.com/kubeflow/pipelines/backend/src/apiserver/server/pipeline_upload_server.go:118\n"
    "net/http.HandlerFunc.ServeHTTP\n\t/usr/local/go/src/net/http/server.go:2136\n"
    "runtime.goexit\n\t/usr/local/go/src/runtime/asm_amd64.s:1598"
)


class ApiError(Exception):
    """A grpc-gateway error: `code` is the grpc code, `http_status` derives from it unless given."""

    def __init__(self, code: int, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or GRPC_TO_HTTP.get(code, 500)


class UploadError(Exception):
    """An error of the multipart upload endpoints (`{"error_message", "error_details"}`)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class PlainError(Exception):
    """An error KFP writes with Go's http.Error: the message as text/plain (upload name and namespace checks)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def plain_response(status: int, message: str) -> Response:
    """Render an http.Error answer."""
    return Response(
        message + "\n",
        status=status,
        content_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def grpc_response(code: int, message: str, http_status: int | None = None) -> Response:
    """Render a grpc-gateway error body (its shape depends on the KFP version played)."""
    body = active().error_body(code, message)
    return Response(json.dumps(body), status=http_status or GRPC_TO_HTTP.get(code, 500), mimetype="application/json")


def upload_response(status: int, message: str) -> Response:
    """Render an upload-endpoint error body with a Go-like stack trace in error_details."""
    body = {"error_message": message, "error_details": _FAKE_STACK.format(msg=message)}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def not_found(kind: str, ident: str) -> ApiError:
    """The NotFound error KFP gives for a missing resource."""
    return ApiError(5, f"Failed to get {kind.lower()}: ResourceNotFoundError: {kind} {ident} not found")
