"""The sandbox's object store: S3-style `GET|HEAD /_s3/{bucket}/{key}` (path addressing) with SigV4 checks.

Like SeaweedFS/MinIO behind KFP, every request must carry an AWS Signature Version 4 `Authorization` header made
with a known access key and its secret: an unknown key answers 403 `InvalidAccessKeyId`, a wrong secret or a
tampered request 403 `SignatureDoesNotMatch`, an unsigned request 403 `AccessDenied`, a clock more than 15 minutes
off 403 `RequestTimeTooSkewed`. The expected signature is computed with botocore's own signer (`S3SigV4Auth`) over
the headers the client says it signed. The credentials default to KFP's (`mlpipeline-minio-artifact`:
minio / minio123); `app.config["S3_CREDENTIALS"]` maps access key → secret key. A bucket other than KFP's
`mlpipeline` (or one holding objects) answers 404 `NoSuchBucket`, as MinIO does. `--object-store leofs` plays
O-RAN's LeoFS instead, which finds the bucket from the Host header (kfadapter/sandbox/leofs.py).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from xml.sax.saxutils import escape

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from flask import Blueprint, Response, current_app, request

from kfadapter.sandbox import leofs, mlmd, versions

bp = Blueprint("sandbox_s3", __name__)
DEFAULT_CREDENTIALS = {"minio": "minio123"}  # KFP's secret mlpipeline-minio-artifact (accesskey / secretkey)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$"
)
_MAX_SKEW = datetime.timedelta(minutes=15)
_UNHASHED = ("UNSIGNED-PAYLOAD", "STREAMING-")


class S3Denied(Exception):
    """A refused request: S3's error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(body, status=status, content_type="application/xml")


def _raw_target() -> tuple[str, str]:
    """The path and query exactly as the client sent them (the signature covers the encoded form)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    path, _, query = raw.partition("?")
    return path, query


def check_signature(credentials: dict[str, str]) -> None:
    """Raise S3Denied unless the current request is SigV4-signed with a known key pair."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise S3Denied("AccessDenied", "Access Denied.")
    match = _AUTH.match(header)
    if match is None:
        raise S3Denied("AccessDenied", "Unsupported or malformed Authorization header (AWS4-HMAC-SHA256 expected).")
    access_key, scope_date, region, service, signed, signature = match.groups()
    secret = credentials.get(access_key)
    if secret is None:
        raise S3Denied("InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")
    stamp = request.headers.get("X-Amz-Date", "")
    try:
        when = datetime.datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise S3Denied("AccessDenied", "X-Amz-Date is missing or malformed.") from None
    if abs(datetime.datetime.now(datetime.UTC) - when) > _MAX_SKEW:
        raise S3Denied(
            "RequestTimeTooSkewed", "The difference between the request time and the server's time is too large."
        )
    content_sha = request.headers.get("X-Amz-Content-SHA256", "")
    body = request.get_data()
    if content_sha and not content_sha.startswith(_UNHASHED) and content_sha != hashlib.sha256(body).hexdigest():
        raise S3Denied("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match.")
    names = signed.split(";")
    if "host" not in names or scope_date != stamp[:8] or service != "s3":
        raise S3Denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature "
            "you provided. Check your key and signing method.",
        )
    path, query = _raw_target()
    # Rebuild the request from what the client signed: only the headers named in SignedHeaders.
    url = f"http://{request.host}{path}" + (f"?{query}" if query else "")
    signed_request = AWSRequest(
        method=request.method, url=url, data=body, headers={n: request.headers.get(n, "") for n in names}
    )
    signed_request.context["timestamp"] = stamp
    signer = S3SigV4Auth(Credentials(access_key, secret), service, region)
    canonical = signer.canonical_request(signed_request)
    expected = signer.signature(signer.string_to_sign(signed_request, canonical), signed_request)
    if not hmac.compare_digest(expected, signature):
        raise S3Denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature "
            "you provided. Check your key and signing method.",
        )


@bp.route("/_s3/<bucket>/<path:key>", methods=["GET", "HEAD"])
def get_object(bucket, key):
    """The object as S3 serves it to a signed request, or S3's XML error (403 denied, 404 NoSuchKey/NoSuchBucket)."""
    if leofs.playing(current_app.config):
        return _leofs_object(f"/{bucket}/{key}")
    try:
        check_signature(current_app.config.get("S3_CREDENTIALS", DEFAULT_CREDENTIALS))
    except S3Denied as denied:
        return _error(403, denied.code, denied.message)
    if bucket not in _buckets():
        return _error(404, "NoSuchBucket", "The specified bucket does not exist")
    data = mlmd.get_object(current_app.extensions["sandbox"], bucket, key)
    if data is None:
        return _error(404, "NoSuchKey", "The specified key does not exist.")
    return Response(
        data,
        content_type="application/octet-stream",
        headers={"ETag": f'"{len(data):x}"', "Server": versions.active().object_store.server_header},
    )


def _buckets() -> set[str]:
    """KFP's bucket, and any other that holds an object."""
    state = current_app.extensions["sandbox"]
    with state.lock:
        return set(leofs.BUCKETS) | {bucket for bucket, _ in state.mlmd["objects"]}


def _leofs_object(path: str) -> Response:
    """GET/HEAD as LeoFS answers it: bucket from the Host header, looked up before the signature is checked."""
    host = request.host.rsplit(":", 1)[0] if request.host.count(":") == 1 else request.host
    bucket, resource = leofs.locate(current_app.config["S3_ENDPOINTS"], host.lower(), path)
    if not request.headers.get("Authorization"):
        return leofs.denied("AccessDenied", "Access Denied", resource)
    if bucket not in _buckets():
        return leofs.not_found(resource)
    try:
        check_signature(current_app.config["S3_CREDENTIALS"])
    except S3Denied as denied:
        return leofs.denied(denied.code, denied.message, resource)
    data = mlmd.get_object(current_app.extensions["sandbox"], bucket, resource[len(bucket) + 1 :])
    if data is None:
        return leofs.not_found(resource)
    return Response(
        data, content_type="application/octet-stream", headers={"ETag": f'"{len(data):x}"', "Server": "LeoFS"}
    )
