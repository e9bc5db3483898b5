"""The transport under KfConnect: the lazily built `kfp.Client`, timeouts, paging and error translation.

Every call carries a `(connect, read)` timeout and every kfp / urllib3 failure is translated once into a
domain error (404 → NotFound, 409 → Conflict, other 4xx → KfpRejected with KFP's message only,
5xx / connection → KfpUnavailable, timeout → KfpTimeout). Results are plain dicts with KFP's own JSON field
names: responses are read raw (`_preload_content=False`) so no `V2beta1*` model ever leaves this package.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import kfp
import kfp_server_api
import urllib3
from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials
from kfp_server_api.exceptions import ApiException

from kfadapter.core import jsoncodec
from kfadapter.core.errors import (
    AdapterError,
    BadRequest,
    KfpMisconfigured,
    KfpUnavailable,
    NotReady,
)
from kfadapter.core.limits import LimitExceeded, check_json_depth
from kfadapter.core.observability import kfp_call
from kfadapter.kfconnect.kfp_errors import (
    ERROR_BODY_MAX,
    misconfigured,
    translate_api_exception,
    translate_transport_error,
)
from kfadapter.kfconnect.server_profile import ServerInfo, ServerProfile
from kfadapter.kfconnect.shared import SharedCalls
from kfadapter.packages import names
from kfadapter.settings import Settings, SettingsError
from kfadapter.settings.checks import gunicorn_options

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # KFP silently caps page_size at 200
_READ_CHUNK = 64 * 1024
_KFP_WRAPPING = 16  # an accepted package nests up to the depth limit; KFP's answer puts it a few levels deeper
_MAX_PAGES = 10_000  # a server that never stops handing out tokens must not loop us forever
_PLACEHOLDER_NAMESPACE = "kfadapter-placeholder"


class Transport:
    """Hold the `kfp.Client` and make every KFP call with a timeout, paging and one error translation."""

    def __init__(self, settings: Settings) -> None:
        if not settings.kfp_endpoint:
            raise ValueError("KfConnect needs settings.kfp_endpoint")
        self.settings = settings
        self._client: kfp.Client | None = None
        self._client_lock = threading.Lock()
        self._timeout = (settings.kfp_connect_timeout, settings.kfp_read_timeout)
        self._upload_timeout = (settings.kfp_connect_timeout, settings.kfp_upload_timeout)
        self._server = ServerInfo(self.health, settings.kfp_version)  # the server's version, learnt on first need
        self._shared = SharedCalls()  # whole-collection listings of the GET routes, one fetch at a time

    # ---- client and transport -------------------------------------------------------------------------

    @property
    def client(self) -> kfp.Client:
        """Return the lazily built `kfp.Client` (built on first use, never at import or app creation)."""
        if self._client is None:
            with self._client_lock:  # construction does no I/O (see _build_client), so this is brief
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> kfp.Client:
        s = self.settings
        kwargs: dict[str, Any] = {"host": s.kfp_endpoint, "ssl_ca_cert": s.kfp_ca_cert}
        if s.kfp_token:
            kwargs["existing_token"] = s.kfp_token
        elif s.kfp_token_file:
            # Re-reads the projected token on every request, so rotation needs no restart.
            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=s.kfp_token_file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # With namespace '' or 'kubeflow' and no local context file the constructor polls healthz
            # up to 5 times, 5 s apart. A placeholder namespace skips that; the real one is set right after.
            client = kfp.Client(namespace=_PLACEHOLDER_NAMESPACE, **kwargs)
        client._context_setting["namespace"] = s.namespace
        config = client._existing_config
        # urllib3 retries 3 times by default, multiplying every timeout; retry only a refused connect once.
        config.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0)
        # One kept-alive connection per thread that can call KFP at once (kfp-server-api keeps cpu_count * 5:
        # 10 here, for 32 request threads, so every call past the tenth would open and drop a connection).
        config.connection_pool_maxsize = pool_size()
        rest = _Rest(config)
        rest.pool_manager = _AnswerCap(rest.pool_manager, s.kfp_max_response_bytes)
        client._run_api.api_client.rest_client = rest
        return client

    @property
    def _api_client(self) -> kfp_server_api.ApiClient:
        return self.client._run_api.api_client

    @contextmanager
    def _kfp(self, operation: str, what: str) -> Iterator[None]:
        """Count and time one KFP call and translate its failure once."""
        with kfp_call(operation):
            try:
                yield
            except ApiException as exc:
                raise translate_api_exception(exc, what) from None
            except urllib3.exceptions.HTTPError as exc:
                raise translate_transport_error(exc, what) from None

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, timeout: tuple | None = None, **kwargs: Any) -> dict:
        """Run one generated API method with a timeout and translate its failure; return the JSON body."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        with self._kfp(fn.__name__, what):
            resp = fn(*args, _preload_content=False, _request_timeout=timeout or self._timeout, **kwargs)
            return _read_json(resp, self.settings)

    def _call_path(
        self,
        path: str,
        method: str,
        *,
        what: str,
        body: Any = None,
        timeout: tuple | None = None,
        operation: str = "call_api",
    ) -> dict:
        """Call a REST path that kfp-server-api has no method for, keeping host, auth and TLS settings."""
        with self._kfp(operation, what):
            resp = self._api_client.call_api(
                path,
                method,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["Bearer"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=timeout or self._timeout,
            )
            return _read_json(resp, self.settings)

    def _list_all(self, fn: Callable[..., Any], key: str, *args: Any, what: str, **kwargs: Any) -> list[dict]:
        """Follow `next_page_token` to the end; KFP omits the key for an empty list."""
        items: list[dict] = []
        token = None
        for _ in range(_MAX_PAGES):
            page = self._call(fn, *args, what=what, page_size=PAGE_SIZE, page_token=token, **kwargs)
            items.extend(page.get(key) or [])
            token = page.get("next_page_token")
            if not token:
                return items
        raise KfpUnavailable(f"{what}: KFP kept returning page tokens after {_MAX_PAGES} pages")

    def _list_shared(self, fn: Callable[..., Any], key: str, *, what: str, **kwargs: Any) -> list[dict]:
        """`_list_all` made once for concurrent identical callers (kfadapter/kfconnect/shared.py)."""
        flight = (fn.__name__, key, tuple(sorted(kwargs.items())))
        return self._shared.call(flight, lambda: self._list_all(fn, key, what=what, **kwargs))

    # ---- health -----------------------------------------------------------------------------------------

    def health(self) -> dict:
        """Return KFP's healthz answer; raise NotReady (503) when KFP does not give one, or when the UI proxy
        answers for an API server it cannot reach (`apiServerReady: false`, or no API server keys)."""
        api = self.client._healthz_api
        try:
            answer = self._call(api.healthz_service_get_healthz, what="KFP health check")
        except KfpMisconfigured as exc:
            # Not a KFP that is down: the endpoint is wrong. Readiness says so in the same words.
            raise NotReady(exc.message, code=exc.code, details={"cause": exc.code, **exc.details}) from None
        except AdapterError as exc:
            raise NotReady(exc.message, details={"cause": exc.code}) from None
        self._server.learn(answer)
        if "apiServerReady" in answer and not (answer["apiServerReady"] is True and answer.get("apiServerCommitHash")):
            # ml-pipeline-ui answers 200 itself; without apiServerCommitHash the API server answered no healthz.
            raise NotReady(
                "KFP's UI proxy answers, but the KFP API server behind it does not (healthz apiServerReady is "
                f"{answer['apiServerReady']!r})",
                details={"cause": "kfp_api_server_not_ready", "door": "ui_proxy"},
            )
        return answer

    def health_summary(self) -> dict:
        """What readiness shows of KFP: its healthz, the door, the version and where the version came from."""
        health = self.health()
        profile = self._server.learn(health)  # no second healthz call
        return {
            "tag_name": profile.tag,
            "multi_user": health.get("multi_user"),
            "door": profile.door,
            "version": profile.version_text,
            "version_from": profile.source,
        }

    def server_profile(self) -> ServerProfile:
        """Return what differs on this KFP server (its version from healthz, asked once)."""
        return self._server.get()

    @property
    def _namespace(self) -> str | None:
        return self.settings.namespace or None


def pool_size(env: Mapping[str, str] | None = None) -> int:
    """Return how many connections to KFP to keep: gunicorn's request threads plus the watcher's thread."""
    try:
        threads = gunicorn_options(env).threads
    except SettingsError:  # the server refuses to start on it before any worker exists; tools use the default
        threads = gunicorn_options({}).threads
    return threads + 1


class _Rest(kfp_server_api.rest.RESTClientObject):
    """kfp-server-api's REST client that never sends a collapsible path and remembers the URL an error came from."""

    def request(self, method, url, *args, **kwargs):
        # urllib3 removes '.' and '..' segments (its parse_url too), so such a path would reach another KFP route.
        segment = names.path_segment_problem(urlsplit(url).path)
        if segment is None:
            try:
                resp = super().request(method, url, *args, **kwargs)
            except ApiException as exc:
                exc.kfadapter_url = url  # for kfp_misconfigured: which URL answered like something else
                raise
            resp.kfadapter_url = url
            return resp
        raise BadRequest(
            f"a path parameter is {segment!r}, which HTTP clients collapse as a path segment: the "
            "request would reach another KFP route",
            code="invalid_path_parameter",
            details={"segment": segment},
        )


class KfpStream:
    """A KFP response body read chunk by chunk; transport failures become KfpUnavailable / KfpTimeout."""

    def __init__(self, resp: urllib3.BaseHTTPResponse, what: str) -> None:
        self._resp, self._what = resp, what

    def read(self, n: int) -> bytes:
        """Return up to n bytes of the body; b"" at the end."""
        try:
            return self._resp.read(n)
        except urllib3.exceptions.HTTPError as exc:
            raise translate_transport_error(exc, self._what) from None

    def close(self) -> None:
        """Drop the connection (a half-read body must not go back to the pool) and free its pool slot."""
        self._resp.close()
        self._resp.release_conn()


def segment(value: str) -> str:
    return quote(value, safe="")


def upload_result(
    pipeline_id: str, pipeline_name: str | None, version_id: str | None, version_name: str, *, created: bool
) -> dict:
    return {
        "pipeline_id": pipeline_id,
        "pipeline_name": pipeline_name,
        "version_id": version_id,
        "version_name": version_name,
        "created_pipeline": created,
    }


def _read_json(resp: urllib3.BaseHTTPResponse, settings: Settings) -> dict:
    """Read a raw response's JSON body within the size and depth caps; hand its connection back to the pool."""
    try:
        value = json_answer(
            read_capped(resp, settings.kfp_max_response_bytes),
            settings.max_json_depth,
            url=getattr(resp, "kfadapter_url", None),
        )
        return value if isinstance(value, dict) else {"value": value}
    finally:
        # Unpreloaded responses are not released by urllib3 itself; without this every call opens a new
        # TCP connection to KFP.
        resp.release_conn()


def read_capped(resp: urllib3.BaseHTTPResponse, max_bytes: int) -> bytes:
    """Read a body of at most `max_bytes` (checked on Content-Length first, then while reading); 502 past it."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        resp.close()  # never read it: the connection cannot go back to the pool
        raise _too_large(max_bytes)
    parts: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = resp.read(_READ_CHUNK)
        except urllib3.exceptions.HTTPError as exc:
            raise translate_transport_error(exc, "reading KFP's answer") from None
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > max_bytes:
            resp.close()
            raise _too_large(max_bytes)
        parts.append(chunk)


def _too_large(max_bytes: int) -> KfpUnavailable:
    return KfpUnavailable(
        f"KFP's answer is larger than KFADAPTER_KFP_MAX_RESPONSE_BYTES ({max_bytes} bytes)",
        code="kfp_answer_too_large",
        details={"limit": "KFADAPTER_KFP_MAX_RESPONSE_BYTES", "max": max_bytes},
    )


@functools.cache
def _depth_label(max_depth: int) -> str:
    limit = max_depth + _KFP_WRAPPING
    return f"{limit} (KFADAPTER_MAX_JSON_DEPTH {max_depth} + {_KFP_WRAPPING} for KFP's own levels around a package)"


def json_answer(data: bytes | str | None, max_depth: int, what: str = "KFP's answer", url: str | None = None) -> Any:
    """Parse JSON from KFP after checking its depth; 502 when it is not JSON or nests too deep."""
    if not data:
        return {}
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        check_json_depth(raw, max_depth + _KFP_WRAPPING, _depth_label(max_depth))
        return jsoncodec.loads_answer(raw)
    except LimitExceeded as exc:
        raise KfpUnavailable(
            f"{what} is refused: {exc.message}", code="kfp_answer_too_large", details=exc.details
        ) from None
    except ValueError:
        if raw.lstrip()[:1] == b"<":  # an HTML page (a UI, a login page, a proxy): not the KFP API at all
            raise misconfigured(url, "an HTML page") from None
        raise KfpUnavailable(f"{what} is not JSON") from None


class _AnswerCap:
    """Wrap urllib3's pool manager so no answer kfp-server-api preloads is read past a cap.

    kfp-server-api builds its ApiException from `resp.data`, which would read any size: an error answer keeps
    its first ERROR_BODY_MAX bytes (only its message is used); a preloaded 2xx answer is read with the
    response cap. Unpreloaded 2xx answers are left to `read_capped` and the artifact decoder.
    """

    def __init__(self, pool: urllib3.PoolManager, max_bytes: int) -> None:
        self._pool, self._max = pool, max_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """Make the request; preload what kfp-server-api would preload, within the caps."""
        resp = self._pool.request(method, url, **{**kwargs, "preload_content": False})
        ok = 200 <= resp.status <= 299
        if ok and not kwargs.get("preload_content", True):
            return resp
        if ok:
            try:
                body = read_capped(resp, self._max)
            finally:
                resp.release_conn()
        else:
            body = resp.read(ERROR_BODY_MAX + 1)
            if len(body) > ERROR_BODY_MAX:
                body = body[:ERROR_BODY_MAX]
                resp.close()  # the rest is never read: drop the connection
            else:
                resp.release_conn()  # read whole (the usual small 404 / 409): keep the connection
        return urllib3.HTTPResponse(
            body=body,
            headers=resp.headers,
            status=resp.status,
            reason=resp.reason,
            preload_content=True,
            request_method=method,
        )
