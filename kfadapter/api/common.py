"""Helpers shared by the blueprints: JSON responses with the exact content type, and request parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, overload

from flask import Response, current_app, request

from kfadapter.core import jsoncodec
from kfadapter.core.errors import BadRequest, PayloadTooLarge
from kfadapter.core.limits import LimitExceeded, loads_json
from kfadapter.kfconnect import KfConnect
from kfadapter.packages import names
from kfadapter.watch.store import Store

JSON = "application/json"  # the training manager compares the header with this exact string


def json_response(body: Any, status: int = HTTPStatus.OK) -> Response:
    """Serialize `body` with Content-Type exactly `application/json` (no charset)."""
    return Response(jsoncodec.dumps(body) + b"\n", status=int(status), content_type=JSON)


def iso_time(seconds: float | None) -> str | None:
    """An epoch time (the store's) as ISO 8601 in UTC, like KFP's times (`2026-01-01T00:00:05.123Z`)."""
    if seconds is None or isinstance(seconds, str):
        return seconds
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_times(view: dict, *keys: str) -> dict:
    """A copy of `view` with the named epoch times (and a `notification`'s `notified_at`) as ISO 8601."""
    out = {k: iso_time(v) if k in keys else v for k, v in view.items()}
    note = out.get("notification")
    if isinstance(note, dict):
        out["notification"] = iso_times(note, "notified_at")
    return out


def kf() -> KfConnect:
    """Return the app's KfConnect."""
    return current_app.extensions["kfadapter.kf"]


def store() -> Store:
    """Return the app's store."""
    return current_app.extensions["kfadapter.store"]


def json_body() -> dict[str, Any]:
    """Return the request's JSON object, or raise BadRequest saying what is wrong with it.

    The size (`KFADAPTER_MAX_JSON_BYTES`, 413) is checked before the body is read whole and the nesting depth
    (`KFADAPTER_MAX_JSON_DEPTH`, 400) before it is parsed.
    """
    settings = current_app.config["KFADAPTER_SETTINGS"]
    limit = settings.max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    raw = _read_at_most(limit + 1)
    if len(raw) > limit:  # a chunked body has no Content-Length to check first
        raise _too_large(limit)
    if not raw:
        raise BadRequest("the request needs a JSON object body", code="invalid_body")
    try:
        body = loads_json(
            raw, max_bytes=limit, max_depth=settings.max_json_depth, size_setting="KFADAPTER_MAX_JSON_BYTES"
        )
    except LimitExceeded as exc:
        raise BadRequest(
            f"the request body is refused: {exc.message}", code="invalid_body", details=exc.details
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_body") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_body")
    return body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the JSON body is larger than KFADAPTER_MAX_JSON_BYTES ({limit} bytes)",
        details={"limit": "KFADAPTER_MAX_JSON_BYTES", "max": limit},
    )


def _read_at_most(n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = request.stream.read(min(n - got, 64 * 1024))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


@overload
def optional_str(body: dict[str, Any], key: str) -> str | None: ...
@overload
def optional_str(body: dict[str, Any], key: str, default: str) -> str: ...
def optional_str(body: dict[str, Any], key: str, default: str | None = None) -> str | None:
    """Return body[key] as a string, `default` when absent or null; raise BadRequest for another type."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string", code="invalid_field", details={"field": key})
    return value


def required_str(body: dict[str, Any], key: str) -> str:
    """Return body[key] as a non-empty string; raise BadRequest naming the field otherwise."""
    value = optional_str(body, key)
    if not value or not value.strip():
        raise BadRequest(f"'{key}' is required", code="missing_field", details={"field": key})
    return value


def check_name(value: str, what: str) -> str:
    """Reject names KFP cannot hold or that would reach it as another path (rules in kfadapter/packages/names.py)."""
    return names.check_name(value, what)
