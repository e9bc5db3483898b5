"""gunicorn configuration: buffered gthread workers, every knob overridable from the environment.

Used as `gunicorn -c python:kfadapter.server.gunicorn_conf kfadapter.wsgi:app` (what `kfadapter serve` runs).
Each worker starts the run watcher after it has loaded the app; the store's lease lets only one of them poll.
Every setting is checked here, in the master, before any worker starts: a bad value prints one line and exits 2.
"""

from __future__ import annotations

import os
import shutil
import sys

from kfadapter.core import tempdirs
from kfadapter.server import worker as server_worker
from kfadapter.settings import SettingsError, load
from kfadapter.settings.checks import check_listen, gunicorn_options, listen_address
from kfadapter.watch import opening

try:
    _settings = load()
    _options = gunicorn_options(check_dirs=True)
    bind, _bind_setting = listen_address(_settings, _options)
    if "GUNICORN_PID" not in os.environ:  # a re-executed master inherits its listening sockets
        # gunicorn would retry a bind that fails for 5 s and exit 1 with its own text; one line and 2 here.
        check_listen(bind, _bind_setting)
except SettingsError as exc:
    print(f"kfadapter: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)  # SystemExit passes through gunicorn's config loader (it catches Exception only)

# Every worker writes its metrics here so /metrics, answered by any worker, covers all of them. Set before
# the workers import prometheus_client; a fresh directory per server start drops stale worker files.
if not _options.metrics_dir:
    # Owned (locked) by this master and its workers, so the next start removes it after a kill -9.
    tempdirs.sweep("kfadapter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempdirs.owned_dir("kfadapter-metrics-")

# The modules every worker loads (kfp, Flask, SQLAlchemy, prometheus_client and the adapter's own), imported once
# here in the master after the metrics directory is set: the forked workers share them instead of each importing
# them again (about 1 s of CPU per worker boot, and their memory pages stay shared). Modules only: the app is
# still created in each worker (no preload_app), so no thread, connection or client exists before the fork.
import kfadapter.app  # noqa: F401  isort: skip

# gthread whose event loop reads each whole request before a thread runs it (kfadapter/server/worker.py): slow
# and idle clients cost a socket and a spool, never a thread, and /liveness has threads of its own.
worker_class = server_worker.configured(
    header_timeout=_options.header_timeout,
    body_timeout=_options.body_timeout,
    max_body=_settings.max_upload_bytes + 1024 * 1024,
)
worker_connections = _options.worker_connections
workers = _options.workers
# Threads mostly wait on KFP; enough of them keep requests answered while KFP is slow.
threads = _options.threads
# Longer than the KFP upload timeout, so a slow upload is answered rather than the worker killed.
timeout = _options.timeout or int(_settings.kfp_upload_timeout) + 30
graceful_timeout = _options.graceful_timeout
keepalive = _options.keepalive
max_requests = _options.max_requests
# The app logs one JSON line per request (with its request id); gunicorn's access log is off by default.
accesslog = _options.accesslog
loglevel = _options.loglevel
logger_class = "kfadapter.server.logger.EscapingLogger"  # a client's %0A / %1B never reaches a log raw
# Uploads are spooled to /tmp; keep gunicorn's heartbeat files off a read-only root.
worker_tmp_dir = _options.worker_tmp_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)


def post_worker_init(worker) -> None:
    """Open the store in the background (waiting while it is down), then start this worker's run watcher."""
    extensions = worker.wsgi.extensions
    watcher = extensions["kfadapter.watcher"]
    opening.open_in_background(extensions["kfadapter.store"], watcher.start if _settings.watch_enabled else None)


def worker_exit(server, worker) -> None:
    """Stop the watcher and release the lease so another worker takes over at once."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        app.extensions["kfadapter.watcher"].stop()


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the shared metrics directory."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics directory this server created."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(path).startswith("kfadapter-metrics-"):
        shutil.rmtree(path, ignore_errors=True)
