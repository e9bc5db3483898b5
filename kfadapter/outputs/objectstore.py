"""The object store (S3 / MinIO) that v2 artifact URIs point at, read with boto3 under timeouts."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kfadapter.core.errors import NotFound, ObjectStoreDenied, ObjectStoreMisaddressed, ObjectStoreUnavailable

_SCHEMES = {"minio", "s3"}
# S3 error codes that mean "these credentials may not read this": wrong key, wrong secret, no permission, or a
# clock too far off for the signature to be accepted.
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "RequestTimeTooSkewed",
    "InvalidToken",
    "ExpiredToken",
}
_CREDENTIALS_HINT = (
    "check KFADAPTER_OBJECT_STORE_ACCESS_KEY / KFADAPTER_OBJECT_STORE_SECRET_KEY (in KFP they are "
    "the accesskey / secretkey of the secret mlpipeline-minio-artifact; on O-RAN's LeoFS the access key is leofs "
    "and the secret key the password in the secret leofs-secret)"
)
DEFAULT_REGION = "us-east-1"  # what SigV4 signs for when no region is set (S3's own default)
# kfp-facts.md, last section; LeoFS 1.4 (leo_commons src/leo_http.erl key/3): the bucket comes from the Host header.
LEOFS_RULE = (
    "LeoFS takes the bucket from the Host header: path-style requests work only when the host is an endpoint "
    "registered in LeoFS (O-RAN registers leofs.kubeflow, so use http://leofs.kubeflow:8080), never an IP address, "
    "a port-forward or another service name"
)


def parse_uri(uri: str) -> tuple[str, str] | None:
    """Return (bucket, key) of a `minio://` or `s3://` URI; None for any other scheme (gs://, file://, …)."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme not in _SCHEMES or not parts.netloc or not key:
        return None
    return parts.netloc, key


@dataclass
class StoredObject:
    """An open object: `read(n)` streams its body; `size` is its length."""

    body: Any
    size: int | None

    def read(self, n: int) -> bytes:
        """Return up to n bytes of the body; b"" at the end."""
        try:
            return self.body.read(n)
        except Exception as exc:  # botocore/urllib3 read errors: the adapter imports neither here
            raise ObjectStoreUnavailable(f"reading from the object store failed ({type(exc).__name__})") from None

    def close(self) -> None:
        """Release the connection."""
        self.body.close()


class ObjectStore:
    """Open objects by URI; every request has a connect and read timeout."""

    def __init__(
        self,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        *,
        region: str = "",
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self.endpoint = endpoint
        self._credentials = (access_key, secret_key)
        self.region = region  # "" = not set: signed for DEFAULT_REGION
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ObjectStore(endpoint={self.endpoint!r})"  # credentials stay out of logs

    @property
    def client(self) -> Any:
        """Return the boto3 S3 client, built on first use (construction does no I/O)."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=self._timeout[0],
                    read_timeout=self._timeout[1],
                    retries={"max_attempts": 2, "mode": "standard"},
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                )  # MinIO serves buckets as path segments
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint,
                    aws_access_key_id=self._credentials[0],
                    aws_secret_access_key=self._credentials[1],
                    region_name=self.region or DEFAULT_REGION,
                    config=config,
                )
            return self._client

    @property
    def region_label(self) -> str:
        """The region requests are signed for, saying when it is only S3's default."""
        return self.region or f"{DEFAULT_REGION} (KFADAPTER_OBJECT_STORE_REGION not set)"

    def open(self, uri: str) -> StoredObject:
        """Open the object a URI names; NotFound when it is missing, ObjectStoreDenied on refused credentials,
        ObjectStoreMisaddressed when the store has no such bucket, ObjectStoreUnavailable on any other failure."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        location = parse_uri(uri)
        if location is None:
            raise NotFound(f"artifact URI {uri!r} is not in an S3/MinIO object store", code="artifact_unavailable")
        bucket, key = location
        try:
            answer = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise self._refused(exc.response, bucket, uri) from None
        except NoCredentialsError:
            raise ObjectStoreDenied(
                f"no object store credentials configured: {_CREDENTIALS_HINT}",
                details={"endpoint": self.endpoint, "uri": uri},
            ) from None
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(
                f"object store at {self.endpoint} unreachable ({type(exc).__name__})",
                details={"endpoint": self.endpoint},
            ) from None
        return StoredObject(answer["Body"], answer.get("ContentLength"))

    def probe(self, bucket: str) -> str:
        """Read a key that cannot exist in `bucket` the way artifacts are read; return what the answer proved.

        The store checks the keys (and finds the bucket) before it looks for the key, so NoSuchKey proves both;
        failures raise as `open` does."""
        try:
            self.open(f"minio://{bucket}/kfadapter-check/{uuid.uuid4().hex}").close()
        except NotFound:
            pass
        return f"keys accepted and bucket {bucket!r} found (signed for region {self.region_label})"

    def _refused(self, response: dict, bucket: str, uri: str) -> Exception:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        error = response.get("Error", {})
        code = error.get("Code")
        details = {"endpoint": self.endpoint, "s3_code": code, "uri": uri}
        if self._misaddressed(error):
            return ObjectStoreMisaddressed(
                f"the object store at {self.endpoint} has no bucket {bucket!r}, where KFP keeps its artifacts "
                f"({code}): KFADAPTER_OBJECT_STORE_ENDPOINT is not the store KFP writes to, or the store is LeoFS "
                f"and the host is not registered: {LEOFS_RULE}",
                details=details | {"bucket": bucket, "s3_resource": error.get("Resource")},
            )
        if status == 404 or code == "NoSuchKey":
            return NotFound(f"object {uri!r} not found in the object store", code="artifact_not_found")
        if status == 403 or code in _DENIED:
            return ObjectStoreDenied(
                f"the object store at {self.endpoint} refused the adapter's credentials ({code or status}; signed "
                f"for region {self.region_label}): {_CREDENTIALS_HINT}",
                details=details | {"region": self.region or None},
            )
        return ObjectStoreUnavailable(f"object store refused {uri!r} ({code or status})", details=details)

    def _misaddressed(self, error: dict) -> bool:
        """NoSuchBucket, or LeoFS's NoSuchKey whose resource starts with the host it took for the bucket."""
        if error.get("Code") == "NoSuchBucket":
            return True
        host = urlsplit(self.endpoint).hostname or ""
        resource = str(error.get("Resource") or "")
        return error.get("Code") == "NoSuchKey" and bool(host) and resource.startswith(f"{host}/")
