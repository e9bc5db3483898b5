"""KFP's failures as the adapter's errors: each kfp-server-api or urllib3 failure is translated here, once.

404 → NotFound (or KfpMisconfigured when the body is not KFP's), 409 → Conflict, 413 → PayloadTooLarge, a
multi-user refusal → KfpForbidden, other 4xx → KfpRejected with KFP's message only, 401/403 → kfp_unauthorized,
5xx and connection failures → KfpUnavailable, timeouts → KfpTimeout. KFP's `error_details` (stack traces) never
leave this module.
"""

from __future__ import annotations

import json
import logging

import urllib3
from kfp_server_api.exceptions import ApiException

from kfadapter.core.errors import (
    AdapterError,
    Conflict,
    KfpMisconfigured,
    KfpRejected,
    KfpTimeout,
    KfpUnavailable,
    NotFound,
    PayloadTooLarge,
)
from kfadapter.kfconnect import forbidden

log = logging.getLogger("kfadapter.kfconnect.transport")  # the name operators' log filters already use

ERROR_BODY_MAX = 64 * 1024  # only the one-line message of an error answer is used


def _kfp_message(exc: ApiException, limit: int = 500) -> str:
    """Pull KFP's human message out of an error body; never its `error_details` (it holds stack traces)."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    message = ""
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or parsed.get("error_message") or parsed.get("error") or "")
    except (ValueError, RecursionError):  # a hostile body nested past the interpreter's recursion limit
        message = body if body and len(body) < 300 and "\n" not in body.strip() else ""
    message = message.strip().splitlines()[0] if message.strip() else ""
    return message[:limit] or (exc.reason or f"HTTP {exc.status}")


def _is_kfp_error(exc: ApiException) -> bool:
    """Whether an error body is one KFP writes: grpc-gateway's {code, message} or the upload/read {error_message}."""
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else (exc.body or "")
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and ({"code", "message"} <= parsed.keys() or "error_message" in parsed)


def misconfigured(url: str | None, answer: str) -> KfpMisconfigured:
    """The error for an endpoint that answers, but not as the KFP API does."""
    tried = url or "(unknown URL)"
    return KfpMisconfigured(
        f"KFADAPTER_KFP_ENDPOINT does not point at the KFP API: {tried} answered with {answer}. Point it at the "
        "API server (http://ml-pipeline.kubeflow:8888) or the UI proxy's prefix "
        "(http://ml-pipeline-ui.kubeflow/pipeline)",
        details={"setting": "KFADAPTER_KFP_ENDPOINT", "url": tried},
    )


def translate_api_exception(exc: ApiException, what: str) -> AdapterError:
    """Map a kfp-server-api ApiException onto the adapter's error types."""
    status = exc.status or 0
    url = getattr(exc, "kfadapter_url", None)
    if status == 404 and not _is_kfp_error(exc):
        return misconfigured(url, "a 404 that is not KFP's error JSON")
    message = _kfp_message(exc)
    text = f"{what}: {message}"
    if status == 404:
        return NotFound(text, details={"kfp_status": status})
    if status == 409 or (status == 500 and "already exist" in message.lower()):
        # KFP 2.0.x answered 500 for duplicate names; 2.1+ answers 409.
        return Conflict(text, details={"kfp_status": status})
    if status == 413:
        return PayloadTooLarge(text)
    if status in (400, 403):
        # Multi-user KFP's refusal names the namespace and verb (400 for an upload up to 2.14).
        refused = forbidden.from_message(what, _kfp_message(exc, ERROR_BODY_MAX))
        if refused is not None:
            return refused
    if status in (401, 403):
        return KfpUnavailable(
            f"{what}: KFP refused the adapter's credentials ({message})",
            code="kfp_unauthorized",
            details={"kfp_status": status},
        )
    if 400 <= status < 500:
        return KfpRejected(text, details={"kfp_status": status})
    if status in (504,):
        return KfpTimeout(text, details={"kfp_status": status})
    return KfpUnavailable(f"{what}: KFP failed ({message})", details={"kfp_status": status})


def translate_transport_error(exc: urllib3.exceptions.HTTPError, what: str) -> AdapterError:
    """Map a urllib3 connection or timeout failure onto 502/504."""
    reason = getattr(exc, "reason", None) or exc
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a subclass of ConnectTimeoutError
    if not refused and isinstance(reason, urllib3.exceptions.TimeoutError):
        return KfpTimeout(f"{what}: KFP did not answer in time")
    log.warning("%s: KFP unreachable: %s", what, type(reason).__name__)
    return KfpUnavailable(f"{what}: KFP is unreachable")
