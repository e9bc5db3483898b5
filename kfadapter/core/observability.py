"""Logs, request ids and Prometheus metrics.

Metrics live in prometheus-client's default registry; under gunicorn, `PROMETHEUS_MULTIPROC_DIR` (set by
`gunicorn_conf`) makes every worker write to shared files so any worker's `/metrics` shows the whole service.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from pythonjsonlogger.orjson import OrjsonFormatter

from kfadapter.core.errors import StoreUnavailable

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

HTTP_REQUESTS = Counter("kfadapter_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_LATENCY = Histogram("kfadapter_http_request_duration_seconds", "HTTP request latency", ["method", "route"])
KFP_CALLS = Counter("kfadapter_kfp_calls_total", "Calls made to KFP", ["operation"])
KFP_ERRORS = Counter("kfadapter_kfp_errors_total", "Failed calls to KFP", ["operation", "error"])
KFP_LATENCY = Histogram("kfadapter_kfp_call_duration_seconds", "KFP call latency", ["operation"])
NOTIFY_ATTEMPTS = Counter(
    "kfadapter_notification_attempts_total", "Notification POSTs to the training manager", ["outcome"]
)


# C0, DEL, C1 and the Unicode line separators: a client's `%0A` or `%1B[` must not start a line or a colour.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TRACES = ("exc_info", "stack_info")  # multi-line by nature; JSON escapes their line breaks


def escape_control(text: str) -> str:
    """Write control characters as visible escapes (`\\x0a`, `\\x00`, `\\x1b`, `\\u2028`)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


class EscapeFilter(logging.Filter):
    """Escape control characters in a record's message (its arguments are often a client's text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the message by its escaped rendering; keep the record."""
        message = record.getMessage()
        escaped = escape_control(message)
        if escaped != message or record.args:
            record.msg, record.args = escaped, None
        return True


class _RequestIdFilter(EscapeFilter):
    def filter(self, record: logging.LogRecord) -> bool:
        # A line written after its request ended (the access line) brings its request id along.
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return super().filter(record)


class _EscapingJsonFormatter(OrjsonFormatter):
    def process_log_record(self, log_data):
        # Extra fields (path, route, ...) carry client text too.
        return {k: escape_control(v) if isinstance(v, str) and k not in _TRACES else v for k, v in log_data.items()}

    def jsonify_log_record(self, log_data) -> str:
        """orjson (about half the cost of json per line); json for what orjson refuses (a lone surrogate)."""
        try:
            return super().jsonify_log_record(log_data)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return json.dumps(log_data, default=str)


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever `sys.stderr` is when a record is emitted, not when it was made: an
    access line written after its answer (api/telemetry.py) may outlive a stream swapped meanwhile (a test's
    captured stderr) and must not write to a closed file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ sets it; the current sys.stderr is always used


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Send logs to stderr as JSON lines (or text), each carrying the current request id, control characters escaped."""
    handler = _StderrHandler()
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            _EscapingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every start-up (plugins, each migration step): only at DEBUG. Its warnings stay.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


def new_request_id(incoming: str | None) -> str:
    """Keep a caller's sane `X-Request-ID`, else make one."""
    if incoming and _REQUEST_ID_OK.match(incoming):
        return incoming
    return uuid.uuid4().hex


class kfp_call:
    """Count and time one KFP call; record its failure kind."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> kfp_call:
        self.start = time.perf_counter()
        _kfp_metrics(self.operation)[0].inc()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _kfp_metrics(self.operation)[1].observe(time.perf_counter() - self.start)
        if exc_type is not None:
            KFP_ERRORS.labels(self.operation, getattr(exc, "code", exc_type.__name__)).inc()


@functools.cache
def _kfp_metrics(operation: str) -> tuple:
    # labels() takes a lock and builds a key on every call; an operation is one of the client's method names.
    return KFP_CALLS.labels(operation), KFP_LATENCY.labels(operation)


_HTTP_CHILDREN: dict[tuple[str, str, int], tuple] = {}
_HTTP_CHILDREN_MAX = 10_000  # methods come from clients: past this, children are looked up each time


def count_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and observe its latency (labelled children are looked up once)."""
    key = (method, route, status)
    children = _HTTP_CHILDREN.get(key)
    if children is None:
        children = (HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route))
        if len(_HTTP_CHILDREN) < _HTTP_CHILDREN_MAX:
            _HTTP_CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


class StoreCollector:
    """Expose the watcher's backlog and lag, read from the shared store at scrape time.

    While the store cannot be read, `kfadapter_store_up` is 0 and the store's figures are NaN: the scrape
    still answers, so the rest of the metrics stay visible exactly when they matter.
    """

    def __init__(self, store, clock=time.time) -> None:
        self.store, self.clock = store, clock

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering asks for the names; without this it would read the store once more per scrape.
        return iter(self._families(None))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self.store.stats()
        except StoreUnavailable:
            stats = None
        return iter(self._families(stats))

    def _families(self, stats: dict | None) -> list[GaugeMetricFamily]:
        nan = float("nan")
        last = stats["last_cycle_at"] if stats else None
        return [
            GaugeMetricFamily(
                "kfadapter_store_up", "1 while the store answers, 0 while it cannot be read", value=1 if stats else 0
            ),
            GaugeMetricFamily(
                "kfadapter_watch_tracked_runs",
                "Runs tracked for notification (NaN: store down)",
                value=stats["tracked"] if stats else nan,
            ),
            GaugeMetricFamily(
                "kfadapter_watch_pending_notifications",
                "Notifications not yet delivered (NaN: store down)",
                value=stats["pending"] if stats else nan,
            ),
            GaugeMetricFamily(
                "kfadapter_watch_lag_seconds",
                "Seconds since the watcher last completed a cycle (NaN: never, or store down)",
                value=(self.clock() - last) if last else nan,
            ),
        ]


def render_metrics(store) -> bytes:
    """Render every metric of this process (or of all gunicorn workers) plus the store's gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    store_registry = CollectorRegistry()
    store_registry.register(StoreCollector(store))
    return body + generate_latest(store_registry)
