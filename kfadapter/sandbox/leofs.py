"""The sandbox's object store playing LeoFS 1.4 (O-RAN's store, `kfadapter sandbox --object-store leofs`).

Read from LeoFS's source (leo-project/leofs `apps/leo_gateway/src/leo_gateway_s3_api.erl`, `include/leo_http.hrl`;
leo-project/leo_commons `src/leo_http.erl` key/3; leo-project/leo_s3_libs `src/leo_s3_auth.erl`):
- LeoFS finds the bucket from the Host header (without its port). The longest registered endpoint contained in the
  host decides: host starting with it → path style (first path segment); `<bucket>.<endpoint>` → virtual-host
  style; **no registered endpoint in the host → the host itself is the bucket** and the whole path is the key
  (unless the first segment equals the host). So an IP address, a port-forward or another service name addresses
  a bucket named after that host.
- A signed request for a bucket that does not exist answers 404 with code `NoSuchKey` ("The specified key does not
  exist.") whose `Resource` is the key LeoFS made, `<host>/<path>`; the bucket is looked up before the signature
  is checked. An unsigned request to a private bucket is 403 `AccessDenied`. Answers carry `Server: LeoFS`.
- Registered endpoints: LeoFS's defaults `localhost` and `s3.amazonaws.com` (leo_manager), plus `leofs.kubeflow`,
  which aimlfw-dep adds (`tools/leofs/bin/leofs_start.sh`). The user is `leofs` (aimlfw-dep imports it with the
  password of the secret leofs-secret); the sandbox's secret key is fixed. The only bucket is `mlpipeline`.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from flask import Flask, Response

CREDENTIALS = {"leofs": "leofs-sandbox-secret"}
ENDPOINTS = ("localhost", "s3.amazonaws.com", "leofs.kubeflow")
BUCKETS = frozenset({"mlpipeline"})


def play(app: Flask, endpoints: tuple[str, ...] = ENDPOINTS) -> None:
    """Make the sandbox app's object store behave as O-RAN's LeoFS."""
    app.config["S3_FLAVOUR"] = "leofs"
    app.config["S3_CREDENTIALS"] = dict(CREDENTIALS)
    app.config["S3_ENDPOINTS"] = tuple(endpoints)


def playing(config: Any) -> bool:
    """Whether the app plays LeoFS."""
    return config.get("S3_FLAVOUR") == "leofs"


def locate(endpoints: tuple[str, ...], host: str, path: str) -> tuple[str, str]:
    """Return (bucket, key with the bucket in front) for a Host header without port and a path, as LeoFS does."""
    matches = [e for e in endpoints if e and e in host]
    endpoint = max(matches, key=len) if matches else ""
    where = host.find(endpoint) if endpoint else -1
    if where == 0:  # the host is the endpoint (or starts with it): path style
        inner = path[1:]
        return inner.split("/", 1)[0], inner
    if where > 0:  # <bucket>.<endpoint>: virtual-host style
        bucket = host[: where - 1]
        return bucket, bucket + path
    segments = path.split("/")
    if len(segments) > 1 and segments[1] == host:
        return host, path[1:]
    return host, host + path  # no registered endpoint: the host is the bucket


def not_found(resource: str) -> Response:
    """LeoFS's 404 (`reply_not_found`): code NoSuchKey whatever was missing, the key it looked for as Resource."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
        "<Message>The specified key does not exist.</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId></RequestId></Error>"
    )
    return Response(body, status=404, content_type="application/xml", headers={"Server": "LeoFS"})


def denied(code: str, message: str, resource: str) -> Response:
    """LeoFS's 403 (`reply_forbidden`)."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>'
        f"<Resource>{escape(resource)}</Resource><RequestId></RequestId></Error>"
    )
    return Response(body, status=403, content_type="application/xml", headers={"Server": "LeoFS"})
