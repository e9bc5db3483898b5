"""The object store (S3 / MinIO) that v2 artifact URIs point at, read with boto3 under timeouts."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kfadapter.core.errors import NotFound, ObjectStoreDenied, ObjectStoreUnavailable

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
    "the accesskey / secretkey of the secret mlpipeline-minio-artifact)"
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
        region: str = "us-east-1",
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self.endpoint = endpoint
        self._credentials = (access_key, secret_key)
        self._region = region
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
                    region_name=self._region,
                    config=config,
                )
            return self._client

    def open(self, uri: str) -> StoredObject:
        """Open the object a URI names; NotFound when it is missing, ObjectStoreDenied on refused credentials,
        ObjectStoreUnavailable on any other failure."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        location = parse_uri(uri)
        if location is None:
            raise NotFound(f"artifact URI {uri!r} is not in an S3/MinIO object store", code="artifact_unavailable")
        bucket, key = location
        try:
            answer = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 404 or code in ("NoSuchKey", "NoSuchBucket"):
                raise NotFound(f"object {uri!r} not found in the object store", code="artifact_not_found") from None
            if status == 403 or code in _DENIED:
                raise ObjectStoreDenied(
                    f"the object store at {self.endpoint} refused the adapter's credentials "
                    f"({code or status}): {_CREDENTIALS_HINT}",
                    details={"endpoint": self.endpoint, "s3_code": code, "uri": uri},
                ) from None
            raise ObjectStoreUnavailable(f"object store refused {uri!r} ({code or status})") from None
        except NoCredentialsError:
            raise ObjectStoreDenied(
                f"no object store credentials configured: {_CREDENTIALS_HINT}",
                details={"endpoint": self.endpoint, "uri": uri},
            ) from None
        except BotoCoreError as exc:
            raise ObjectStoreUnavailable(f"object store unreachable ({type(exc).__name__})") from None
        return StoredObject(answer["Body"], answer.get("ContentLength"))
