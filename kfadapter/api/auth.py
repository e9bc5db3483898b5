"""Optional bearer-token authentication for the adapter's own API.

Off unless `KFADAPTER_API_TOKEN` (or `_FILE`) is set, because the O-RAN training manager sends no credentials.
The probes stay open so the kubelet needs no token, and so does the API's description (/docs, /openapi.json,
/openapi.yaml: what the repository publishes anyway) so a browser can show it; `/readiness?deep=true` names internal endpoints and failures,
so it needs the token when one is set.
"""

from __future__ import annotations

import hmac
from http import HTTPStatus

from flask import Flask, request

from kfadapter.core.errors import AdapterError

OPEN_PATHS = frozenset({"/liveness", "/readiness", "/docs", "/openapi.json", "/openapi.yaml"})
OPEN_PREFIXES = ("/docs/",)  # Swagger UI's own files: a browser opening /docs sends no token


class Unauthorized(AdapterError):
    """The request lacks the adapter's API token (401)."""

    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


def register(app: Flask, token: str | None) -> None:
    """Require `Authorization: Bearer <token>` on every route but the probes, when a token is configured."""
    if not token:
        return
    expected = token.encode()

    @app.before_request
    def _check() -> None:
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return
        require_token(expected)


def require_token(expected: bytes) -> None:
    """Raise Unauthorized unless the request carries `Authorization: Bearer <expected>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized("this route needs the header 'Authorization: Bearer <KFADAPTER_API_TOKEN>'")
