"""Serve the app under gunicorn (gthread workers) without a separate config file."""
from __future__ import annotations

import os

from flask import Flask
from gunicorn.app.base import BaseApplication

from .settings import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def run_gunicorn(app: Flask, settings: Settings) -> int:
    """Run gunicorn in the foreground with gthread workers; knobs from KFADAPTER_GUNICORN_* variables."""
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "worker_class": "gthread",
        "workers": int(os.environ.get("KFADAPTER_GUNICORN_WORKERS", "2")),
        "threads": int(os.environ.get("KFADAPTER_GUNICORN_THREADS", "8")),
        # Longer than the KFP upload timeout, so a slow upload is answered, not killed.
        "timeout": int(os.environ.get("KFADAPTER_GUNICORN_TIMEOUT", str(int(settings.kfp_upload_timeout) + 30))),
        "graceful_timeout": int(os.environ.get("KFADAPTER_GUNICORN_GRACEFUL_TIMEOUT", "30")),
        "accesslog": "-",
    }
    _Gunicorn(app, options).run()
    return 0
