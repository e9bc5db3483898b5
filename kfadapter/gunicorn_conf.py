"""gunicorn configuration: gthread workers, every knob overridable from the environment.

Used as `gunicorn -c python:kfadapter.gunicorn_conf kfadapter.wsgi:app` (what `kfadapter serve` runs).
Each worker starts the run watcher after it has loaded the app; the store's lease lets only one of them poll.
"""
from __future__ import annotations

import os
import shutil

from kfadapter import tempdirs
from kfadapter.settings import Settings

_settings = Settings.from_env()

# Every worker writes its metrics here so /metrics, answered by any worker, covers all of them. Set before
# the workers import prometheus_client; a fresh directory per server start drops stale worker files.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Owned (locked) by this master and its workers, so the next start removes it after a kill -9.
    tempdirs.sweep("kfadapter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempdirs.owned_dir("kfadapter-metrics-")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("KFADAPTER_GUNICORN_BIND", f"{_settings.host}:{_settings.port}")
worker_class = "gthread"
workers = _env_int("KFADAPTER_GUNICORN_WORKERS", 2)
# Threads mostly wait on KFP; enough of them keep probes answered while KFP is slow.
threads = _env_int("KFADAPTER_GUNICORN_THREADS", 32)
# Longer than the KFP upload timeout, so a slow upload is answered rather than the worker killed.
timeout = _env_int("KFADAPTER_GUNICORN_TIMEOUT", int(_settings.kfp_upload_timeout) + 30)
graceful_timeout = _env_int("KFADAPTER_GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("KFADAPTER_GUNICORN_KEEPALIVE", 5)
max_requests = _env_int("KFADAPTER_GUNICORN_MAX_REQUESTS", 0)
# The app logs one JSON line per request (with its request id); gunicorn's access log is off by default.
accesslog = os.environ.get("KFADAPTER_GUNICORN_ACCESSLOG") or None
loglevel = os.environ.get("KFADAPTER_GUNICORN_LOGLEVEL", "info")
logger_class = "kfadapter.gunicorn_logger.EscapingLogger"  # a client's %0A / %1B never reaches a log raw
# Uploads are spooled to /tmp; keep gunicorn's heartbeat files off a read-only root.
worker_tmp_dir = os.environ.get("KFADAPTER_GUNICORN_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else None)


def post_worker_init(worker) -> None:
    """Start this worker's run watcher (it polls only while holding the store's lease)."""
    if _settings.watch_enabled:
        worker.wsgi.extensions["kfadapter.watcher"].start()


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
