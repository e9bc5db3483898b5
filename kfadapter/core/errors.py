"""Domain errors: each carries the HTTP status and a machine-readable code for the JSON envelope.

Leaf module: imports nothing from Flask or kfp, so pure modules can raise these too.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class AdapterError(Exception):
    """Base error rendered as `{"status", "code", "message", "details"}`."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    code: str = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = int(status)
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """Render the error envelope body."""
        return {"status": int(self.status), "code": self.code, "message": self.message, "details": self.details}


class BadRequest(AdapterError):
    """The caller sent something unusable (400)."""

    status = HTTPStatus.BAD_REQUEST
    code = "bad_request"


class NotFound(AdapterError):
    """A named pipeline, version, experiment or run does not exist (404)."""

    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class Conflict(AdapterError):
    """A name is already taken (409)."""

    status = HTTPStatus.CONFLICT
    code = "conflict"


class PayloadTooLarge(AdapterError):
    """The upload is larger than KFP accepts (413)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class KfpRejected(AdapterError):
    """KFP refused the request with a 4xx; its message is kept, its internals are not."""

    status = HTTPStatus.BAD_REQUEST
    code = "kfp_rejected"


class KfpUnavailable(AdapterError):
    """KFP answered 5xx or could not be reached (502)."""

    status = HTTPStatus.BAD_GATEWAY
    code = "kfp_unavailable"


class KfpMisconfigured(KfpUnavailable):
    """The KFP endpoint answers, but not as the KFP API does (a wrong base path, a UI, a proxy) (502)."""

    code = "kfp_misconfigured"


class KfpTimeout(AdapterError):
    """KFP did not answer within the configured timeout (504)."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    code = "kfp_timeout"


class NotReady(AdapterError):
    """KFP cannot be reached, so the adapter should not receive traffic (503)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "not_ready"


class StoreUnavailable(AdapterError):
    """The adapter's own store cannot be read or written (disk full, read-only, database down): 503."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "store_unavailable"


class Undecodable(AdapterError):
    """Run output data that cannot be decoded safely: corrupt, truncated, too large or hostile (422)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "undecodable"


class MlmdUnavailable(AdapterError):
    """ML Metadata failed or could not be reached (502; 504 on a deadline)."""

    status = HTTPStatus.BAD_GATEWAY
    code = "mlmd_unavailable"


class ObjectStoreUnavailable(AdapterError):
    """The object store (S3/MinIO) failed or could not be reached (502)."""

    status = HTTPStatus.BAD_GATEWAY
    code = "object_store_unavailable"


class ObjectStoreDenied(AdapterError):
    """The object store refused the adapter's credentials or signature (502: a deployment error, not the caller's)."""

    status = HTTPStatus.BAD_GATEWAY
    code = "object_store_denied"


class KfpForbidden(AdapterError):
    """Multi-user KFP refused the adapter's identity a verb in a namespace: a missing RoleBinding (403)."""

    status = HTTPStatus.FORBIDDEN
    code = "kfp_forbidden"
