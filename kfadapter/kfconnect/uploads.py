"""KFP's two upload endpoints, with the package streamed from its file rather than built in memory.

kfp-server-api reads the whole file into memory and urllib3 then builds the multipart body around it twice
(the form, then its bytes): a 31 MiB upload cost three copies of the package at once. Here the body is the
multipart head, the file read in blocks, and the closing boundary, with its Content-Length known in advance.
The request is otherwise the one kfp-server-api makes: the same route, query parameters, field name, file
name and type, headers and credentials, through the same connection pool, timeouts and answer caps.
"""

from __future__ import annotations

import mimetypes
import os
import uuid
from typing import IO, Any
from urllib.parse import urlencode

import kfp_server_api
import urllib3
from kfp_server_api.exceptions import ApiException
from kfp_server_api.rest import RESTResponse

_BLOCK = 64 * 1024


class _MultipartBody:
    """One `uploadfile` form field around an open file, read in blocks (rewindable for urllib3's retry)."""

    def __init__(self, head: bytes, fh: IO[bytes], tail: bytes) -> None:
        self._parts, self._fh = (head, tail), fh
        self._pos = 0
        self._size = len(head) + os.fstat(fh.fileno()).st_size + len(tail)

    def __len__(self) -> int:
        return self._size

    def tell(self) -> int:
        """Where the next read starts."""
        return self._pos

    def seek(self, pos: int) -> None:
        """Start again at `pos` (urllib3 rewinds to where it began after a refused connect)."""
        self._pos = pos
        head = len(self._parts[0])
        self._fh.seek(max(0, pos - head))

    def read(self, size: int = _BLOCK) -> bytes:
        """Return the next bytes of the body, at most `size` (b"" at its end)."""
        size = _BLOCK if size is None or size < 0 else size
        head, tail = self._parts
        file_end = self._size - len(tail)
        if self._pos < len(head):
            out = head[self._pos : self._pos + size]
        elif self._pos < file_end:
            out = self._fh.read(min(size, file_end - self._pos))
            if not out:
                raise OSError("the package file ended before its size")
        else:
            out = tail[self._pos - file_end : self._pos - file_end + size]
        self._pos += len(out)
        return out


class PackageUploads:
    """`upload_pipeline` and `upload_pipeline_version` as kfp-server-api names them, streaming the package."""

    def __init__(self, api_client: kfp_server_api.ApiClient) -> None:
        self._client = api_client

    def upload_pipeline(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """POST /apis/v2beta1/pipelines/upload (query: name, display_name, description, namespace)."""
        return self._post(
            "/apis/v2beta1/pipelines/upload", path, ("name", "display_name", "description", "namespace"), kwargs
        )

    def upload_pipeline_version(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """POST /apis/v2beta1/pipelines/upload_version (query: name, display_name, pipelineid, description)."""
        return self._post(
            "/apis/v2beta1/pipelines/upload_version",
            path,
            ("name", "display_name", "pipelineid", "description"),
            kwargs,
        )

    def _post(self, route: str, path: str, keys: tuple[str, ...], kwargs: dict) -> urllib3.BaseHTTPResponse:
        client = self._client
        connect, read = kwargs.pop("_request_timeout")
        kwargs.pop("_preload_content", None)  # the answer is always left unread: the caller reads it capped
        query = [(k, str(kwargs.pop(k))) for k in keys if kwargs.get(k) is not None]
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        filename = os.path.basename(path)
        boundary = uuid.uuid4().hex
        mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="uploadfile"; filename="{filename}"\r\n'
            f"Content-Type: {mimetype}\r\n\r\n"
        ).encode()
        headers = dict(client.default_headers)
        if client.cookie:
            headers["Cookie"] = client.cookie
        headers.update({"Accept": "application/json", "Content-Type": f"multipart/form-data; boundary={boundary}"})
        client.update_params_for_auth(headers, query, ["Bearer"])
        url = client.configuration.host + route + ("?" + urlencode(query) if query else "")
        with open(path, "rb") as fh:
            body = _MultipartBody(head, fh, f"\r\n--{boundary}--\r\n".encode())
            headers["Content-Length"] = str(len(body))
            try:
                resp = client.rest_client.pool_manager.request(
                    "POST",
                    url,
                    body=body,
                    headers=headers,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=connect, read=read),
                )
            except urllib3.exceptions.SSLError as exc:
                raise ApiException(status=0, reason=f"{type(exc).__name__}\n{exc}") from None
        if not 200 <= resp.status <= 299:
            error = ApiException(http_resp=RESTResponse(resp))
            error.body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else error.body
            error.kfadapter_url = url  # for KfpMisconfigured, as transport's _Rest does
            raise error
        resp.kfadapter_url = url
        return resp
