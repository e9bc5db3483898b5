"""Start-up checks of every setting: ranges of numbers, shapes of text, files, directories and templates.

`kfadapter.settings` reads the environment through these rules; `load()` adds the checks that look at the
file system, and `gunicorn_options()` reads gunicorn's knobs. Every failure is a `SettingsError` whose text is
one line: the variable, its value (hidden for secrets) and what is allowed. `kfadapter serve`, `kfadapter
sandbox` and kfadapter/server/gunicorn_conf.py print it and exit with status 2 before any worker starts.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
import string
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PORT = (1, 65535)
NO_MAX = 2**63 - 1
# Inclusive (low, high) of numeric settings; names not listed must be positive (and finite, for numbers).
RANGES: dict[str, tuple[float, float]] = {
    "KFADAPTER_PORT": PORT,
    "KF_ADAPTER_PORT": PORT,
    "KUBEFLOW_PORT": PORT,
    "TRAININGMGR_PORT": PORT,
    "KFADAPTER_KFP_CONNECT_TIMEOUT": (0.01, 600),
    "KFADAPTER_KFP_TIMEOUT": (0.01, 3600),
    "KFADAPTER_KFP_UPLOAD_TIMEOUT": (0.01, 3600),
    "KFADAPTER_MLMD_TIMEOUT": (0.01, 3600),
    "KFADAPTER_OBJECT_STORE_TIMEOUT": (0.01, 3600),
    "KFADAPTER_NOTIFY_TIMEOUT": (0.01, 600),
    "KFADAPTER_POLL_INTERVAL": (0.1, 86400),
    "KFADAPTER_NOTIFY_MAX_BACKOFF": (0.1, 86400),
    "KFADAPTER_NOTIFY_CONCURRENCY": (1, 64),
    "KFADAPTER_LEASE_TTL": (1, 86400),
    "KFADAPTER_UPLOAD_ATTEMPTS": (1, 1000),
    "KFADAPTER_SANDBOX_WORKERS": (1, 256),
    "KFADAPTER_ARTIFACT_MAX_MEMBERS": (1, 10**7),
    "KFADAPTER_GUNICORN_WORKERS": (1, 256),
    "KFADAPTER_GUNICORN_THREADS": (1, 4096),
    "KFADAPTER_GUNICORN_WORKER_CONNECTIONS": (1, 10**6),
    "KFADAPTER_GUNICORN_TIMEOUT": (1, 86400),
    "KFADAPTER_GUNICORN_GRACEFUL_TIMEOUT": (1, 86400),
    "KFADAPTER_GUNICORN_KEEPALIVE": (0, 3600),
    "KFADAPTER_GUNICORN_MAX_REQUESTS": (0, NO_MAX),
    "KFADAPTER_GUNICORN_HEADER_TIMEOUT": (0.1, 3600),
    "KFADAPTER_GUNICORN_BODY_TIMEOUT": (1, 86400),
}
SECRETS = (
    "KFADAPTER_KFP_TOKEN",
    "KFADAPTER_API_TOKEN",
    "KFADAPTER_OBJECT_STORE_ACCESS_KEY",
    "KFADAPTER_OBJECT_STORE_SECRET_KEY",
    "KFADAPTER_STORE_URL",
)  # the store URL may hold a password
_HOST = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})"  # a DNS name or an IPv4 address
_HOST_PORT = rf"(?:{_HOST}|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{{1,5}})"
_URL = rf"https?://(?:{_HOST}|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{{1,5}}))?(?:/[^\s]*)?"
_URL_ALLOWED = "an http:// or https:// URL (port 1-65535)"
# Shapes of text settings: (pattern the whole value must match, or a predicate; what is allowed).
TEXT: dict[str, tuple[str | Callable[[str], bool], str]] = {
    "KFADAPTER_KFP_ENDPOINT": (_URL, _URL_ALLOWED),
    "KFADAPTER_TM_URL": (_URL, _URL_ALLOWED),
    "KFADAPTER_OBJECT_STORE_ENDPOINT": (_URL, _URL_ALLOWED),
    "KUBEFLOW_HOST": (_HOST, "a host name or IPv4 address"),
    "TRAININGMGR_HOST": (_HOST, "a host name or IPv4 address"),
    "KFADAPTER_HOST": (lambda v: bool(re.fullmatch(_HOST, v)) or _is_ip(v), "a host name or IP address to listen on"),
    "KFADAPTER_MLMD_ENDPOINT": (_HOST_PORT, "host:port (port 1-65535)"),
    "KFADAPTER_KFP_VERSION": (r"v?2\.\d{1,3}(\.\d{1,4})?", "a KFP 2.x version such as 2.3 or 2.5.0"),
    "KFADAPTER_NAMESPACE": (r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a Kubernetes namespace name"),
    "KF_NAMESPACE": (r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a Kubernetes namespace name"),
    "KFADAPTER_OBJECT_STORE_REGION": (r"[a-z0-9][a-z0-9-]{0,62}", "a region name such as us-east-1"),
    "KFADAPTER_KFP_TOKEN": (r"[\x21-\x7e]+", "printable ASCII without spaces"),
    "KFADAPTER_API_TOKEN": (r"[\x21-\x7e]{16,}", "at least 16 printable ASCII characters without spaces"),
    "KFADAPTER_OBJECT_STORE_ACCESS_KEY": (r"[\x21-\x7e]+", "printable ASCII without spaces"),
    "KFADAPTER_OBJECT_STORE_SECRET_KEY": (r"[\x21-\x7e]+", "printable ASCII without spaces"),
    "KFADAPTER_KFP_TOKEN_FILE": (r"[^\x00-\x1f]+", "a file path"),
    "KF_PIPELINES_SA_TOKEN_PATH": (r"[^\x00-\x1f]+", "a file path"),
    "KFADAPTER_API_TOKEN_FILE": (r"[^\x00-\x1f]+", "a file path"),
    "KFADAPTER_KFP_CA_CERT": (r"[^\x00-\x1f]+", "a file path"),
    "KFADAPTER_STORE_PATH": (r"[^\x00-\x1f]+", "a file path"),
    "KFADAPTER_GUNICORN_BIND": (rf"{_HOST_PORT}|unix:/[^\x00-\x1f]+", "host:port (port 1-65535) or unix:/path"),
    "KFADAPTER_GUNICORN_ACCESSLOG": (r"-|/[^\x00-\x1f]+", "- (standard output) or an absolute file path"),
    "KFADAPTER_GUNICORN_WORKER_TMP_DIR": (r"/[^\x00-\x1f]*", "an absolute directory path"),
    "PROMETHEUS_MULTIPROC_DIR": (r"/[^\x00-\x1f]*", "an absolute directory path"),
}
GUNICORN_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class SettingsError(ValueError):
    """A configuration variable is missing or invalid."""


def settings_error(name: str, raw: object, allowed: str):
    """Return the SettingsError for `name`=`raw` (value hidden for secrets), saying what is allowed."""
    shown = "(hidden)" if name in SECRETS else repr(raw)
    return SettingsError(f"{name}={shown}: must be {allowed}")


def number(name: str, raw: str, kind: Callable[[str], float]) -> float:
    """Parse `raw` as an int or float for `name`; finite and within its range."""
    is_int = kind is int
    low, high = RANGES.get(name, (1 if is_int else 0, NO_MAX))
    what = "an integer" if is_int else "a number"
    if high != NO_MAX:
        allowed = f"{what} from {_fmt(low)} to {_fmt(high)}"
    else:
        allowed = f"an integer of at least {_fmt(low)}" if is_int else "a finite number above 0"
    try:
        value = kind(raw)
    except ValueError:
        raise settings_error(name, raw, allowed) from None
    if not math.isfinite(value) or not low <= value <= high or (value == 0 and not is_int):
        raise settings_error(name, raw, allowed)
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def text(name: str, raw: str) -> str:
    """Check the shape of a text setting; valid text is returned unchanged."""
    if name not in TEXT:
        return raw
    rule, allowed = TEXT[name]
    if callable(rule):
        if not rule(raw):
            raise settings_error(name, raw, allowed)
        return raw
    match = re.fullmatch(rule, raw)
    port = match.groupdict().get("port") if match else None
    if match is None or (port is not None and not PORT[0] <= int(port) <= PORT[1]):
        raise settings_error(name, raw, allowed)
    return raw


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def check_templates(name: str, raw: str, mapping: Mapping[str, str]) -> None:
    """Refuse a template that would fail when a run is started: each must format with plain field names."""
    for param, template in mapping.items():
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
            if not param or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f) for f in fields):
                raise ValueError
            template.format_map({f: "x" for f in fields})
        except (ValueError, KeyError, IndexError, AttributeError, TypeError):
            example = '"{featuregroup_name}_{trainingjob_id}"'
            raise settings_error(
                name, raw, f"templates of {{name}} fields like {example} (parameter {param!r} has {template!r})"
            ) from None


def readable_file(name: str, path: str) -> None:
    """Refuse a path that is not a readable regular file."""
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise settings_error(name, path, f"a readable file ({exc.strerror})") from None
    if not os.path.isfile(path):
        raise settings_error(name, path, "a readable file (not a directory or device)")


def writable_dir(name: str, path: str, create: bool, value: str | None = None) -> None:
    """Refuse a directory this process cannot write in (created first when `create`); `value` is the setting's."""
    try:
        if create:
            os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        what = "a writable directory" if value is None else "in a writable directory"
        raise settings_error(name, path if value is None else value, f"{what} ({exc.strerror})") from None


def check_files(settings, env: Mapping[str, str]) -> None:
    """Check what the settings name on the file system: CA bundle, token file, the store's directory."""
    if settings.kfp_ca_cert:
        readable_file("KFADAPTER_KFP_CA_CERT", settings.kfp_ca_cert)
        try:
            ssl.create_default_context(cafile=settings.kfp_ca_cert)
        except (ssl.SSLError, ValueError):
            raise settings_error("KFADAPTER_KFP_CA_CERT", settings.kfp_ca_cert, "a PEM CA bundle") from None
    if settings.kfp_token_file and not settings.kfp_token:
        # Kubernetes mounts a projected token before the container starts: a missing file is a missing mount.
        source = (
            "KFADAPTER_KFP_TOKEN_FILE"
            if env.get("KFADAPTER_KFP_TOKEN_FILE", "").strip()
            else "KF_PIPELINES_SA_TOKEN_PATH"
        )
        readable_file(source, settings.kfp_token_file)
    if settings.sandbox_workdir:
        writable_dir("KFADAPTER_SANDBOX_WORKDIR", settings.sandbox_workdir, create=True)
    store_path = getattr(settings, "store_path", None)
    if store_path:
        writable_dir("KFADAPTER_STORE_PATH", os.path.dirname(os.path.abspath(store_path)), True, store_path)
        if os.path.exists(store_path) and not (os.path.isfile(store_path) and os.access(store_path, os.W_OK)):
            raise settings_error("KFADAPTER_STORE_PATH", store_path, "a writable file")


@dataclass(frozen=True)
class GunicornOptions:
    """gunicorn's knobs (KFADAPTER_GUNICORN_*), checked."""

    bind: str | None
    workers: int
    threads: int
    worker_connections: int
    timeout: int | None
    graceful_timeout: int
    keepalive: int
    max_requests: int
    header_timeout: float
    body_timeout: float
    accesslog: str | None
    loglevel: str
    worker_tmp_dir: str | None
    metrics_dir: str | None


def gunicorn_options(env: Mapping[str, str] | None = None, check_dirs: bool = False) -> GunicornOptions:
    """Read KFADAPTER_GUNICORN_* (and PROMETHEUS_MULTIPROC_DIR); `check_dirs` also checks the directories."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return text(name, value) if value and name in TEXT else (value or None)

    def num(name: str, kind, default):
        raw = env.get(name, "").strip()
        return default if not raw else number(name, raw, kind)

    loglevel = (get("KFADAPTER_GUNICORN_LOGLEVEL") or "info").lower()
    if loglevel not in GUNICORN_LOG_LEVELS:
        raise settings_error(
            "KFADAPTER_GUNICORN_LOGLEVEL",
            env["KFADAPTER_GUNICORN_LOGLEVEL"],
            "one of " + ", ".join(GUNICORN_LOG_LEVELS),
        )
    options = GunicornOptions(
        bind=get("KFADAPTER_GUNICORN_BIND"),
        workers=num("KFADAPTER_GUNICORN_WORKERS", int, 2),
        threads=num("KFADAPTER_GUNICORN_THREADS", int, 32),
        worker_connections=num("KFADAPTER_GUNICORN_WORKER_CONNECTIONS", int, 1000),
        timeout=num("KFADAPTER_GUNICORN_TIMEOUT", int, None),
        graceful_timeout=num("KFADAPTER_GUNICORN_GRACEFUL_TIMEOUT", int, 30),
        keepalive=num("KFADAPTER_GUNICORN_KEEPALIVE", int, 5),
        max_requests=num("KFADAPTER_GUNICORN_MAX_REQUESTS", int, 0),
        header_timeout=num("KFADAPTER_GUNICORN_HEADER_TIMEOUT", float, 10.0),
        body_timeout=num("KFADAPTER_GUNICORN_BODY_TIMEOUT", float, 120.0),
        accesslog=get("KFADAPTER_GUNICORN_ACCESSLOG"),
        loglevel=loglevel,
        worker_tmp_dir=get("KFADAPTER_GUNICORN_WORKER_TMP_DIR"),
        metrics_dir=get("PROMETHEUS_MULTIPROC_DIR"),
    )
    if check_dirs:
        for name, path in (
            ("KFADAPTER_GUNICORN_WORKER_TMP_DIR", options.worker_tmp_dir),
            ("PROMETHEUS_MULTIPROC_DIR", options.metrics_dir),
        ):
            if path:
                writable_dir(name, path, create=False)
        if options.accesslog and options.accesslog != "-":
            writable_dir("KFADAPTER_GUNICORN_ACCESSLOG", os.path.dirname(options.accesslog), False, options.accesslog)
    return options
