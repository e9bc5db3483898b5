"""Application factory: wiring only, no network I/O (the kfp.Client is built on first use)."""
from __future__ import annotations

from flask import Flask

from . import api
from .kfconnect import KfConnect
from .settings import Settings
from .watch.store import Store

_MULTIPART_SLACK = 1024 * 1024  # form fields and boundaries around a package of the maximum size


def create_app(settings: Settings | None = None, *, kf: KfConnect | None = None,
               store: Store | None = None) -> Flask:
    """Build the Flask app from settings (default: the environment)."""
    settings = settings or Settings.from_env()
    app = Flask("kfadapter")
    app.config["KFADAPTER_SETTINGS"] = settings
    # Bodies above this are refused with 413 before they are read.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + _MULTIPART_SLACK
    app.extensions["kfadapter.kf"] = kf or KfConnect(settings)
    app.extensions["kfadapter.store"] = store or Store(settings.store_path)
    api.register(app)
    return app
