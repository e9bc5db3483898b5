"""Application factory: wiring only, no network I/O (the kfp.Client is built on first use)."""

from __future__ import annotations

from typing import IO, Any

from flask import Flask, Request

from kfadapter import api
from kfadapter.core import tempdirs
from kfadapter.kfconnect import KfConnect
from kfadapter.outputs.service import OutputsService
from kfadapter.settings import Settings
from kfadapter.watch.locks import NameLocks
from kfadapter.watch.store import Store
from kfadapter.watch.watcher import Watcher

_MULTIPART_SLACK = 1024 * 1024  # form fields and boundaries around a package of the maximum size


class AdapterRequest(Request):
    """A request that closes every spooled upload file, also those of a multipart body cut off by a 413."""

    def _get_file_stream(self, *args: Any, **kwargs: Any) -> IO[bytes]:
        stream = super()._get_file_stream(*args, **kwargs)
        # Werkzeug forgets a half-written spool when parsing stops at MAX_CONTENT_LENGTH: keep our own list.
        self.__dict__.setdefault("_kfadapter_spools", []).append(stream)
        return stream

    def close(self) -> None:
        """Close the request's files, including spools werkzeug lost track of."""
        super().close()
        for stream in self.__dict__.pop("_kfadapter_spools", []):
            stream.close()


def create_app(settings: Settings | None = None, *, kf: KfConnect | None = None, store: Store | None = None) -> Flask:
    """Build the Flask app from settings (default: the environment)."""
    settings = settings or Settings.from_env()
    tempdirs.sweep(tempdirs.UPLOAD_PREFIX)  # upload files of processes killed with -9
    app = Flask("kfadapter", static_folder=None)  # no static files: every path is an API route
    app.request_class = AdapterRequest
    app.config["KFADAPTER_SETTINGS"] = settings
    # Bodies above this are refused with 413 before they are read.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + _MULTIPART_SLACK
    kf = kf or KfConnect(settings)
    # Not opened here: whoever serves the app opens it in the background (kfadapter/watch/opening.py), so a
    # database that is down at start is waited for; until then the store's routes answer 503.
    store = store or Store(settings.store_url or settings.store_path, open_now=False)
    # Uploads to one name wait for each other (store lease across workers and replicas); a lock outlives a
    # stalled upload by one upload timeout, then expires.
    kf.name_lock = NameLocks(
        store, ttl=2 * settings.kfp_upload_timeout + 60, wait=2 * settings.kfp_upload_timeout + 60
    ).hold
    app.extensions["kfadapter.kf"] = kf
    app.extensions["kfadapter.store"] = store
    # Built here, started by whoever serves the app (cli, gunicorn hook), never by the factory.
    app.extensions["kfadapter.watcher"] = Watcher(kf, store, settings)
    app.extensions["kfadapter.outputs"] = OutputsService(settings, kf)  # MLMD/S3 clients connect on first use
    api.register(app, settings.api_token)
    return app
