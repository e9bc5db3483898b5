"""`GET /watches`: what the run watcher tracks, what it still has to deliver, and who holds the lease."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app

from kfadapter.api.common import json_response, store
from kfadapter.watch.store import Notification
from kfadapter.watch.watcher import LEASE_NAME, Watcher

bp = Blueprint("watches", __name__)


@bp.get("/watches")
def watches():
    """Return tracked runs, pending notifications (attempts, last error) and recent deliveries."""
    db = store()
    watcher: Watcher = current_app.extensions["kfadapter.watcher"]
    lease = db.lease(LEASE_NAME)
    return json_response(
        {
            "tracked": [asdict(t) for t in db.tracked()],
            "pending": [_note(n) for n in db.pending()],
            "intents": [asdict(i) for i in db.intents()],  # executions whose run id is not stored yet
            "recent_deliveries": [_note(n) for n in db.recent_deliveries()],
            "lease": {"holder": lease[0], "expires_at": lease[1]} if lease else None,
            "training_manager_url": watcher.settings.tm_url,
            "poll_interval": watcher.settings.poll_interval,
        }
    )


def _note(n: Notification) -> dict:
    return asdict(n) | {"payload": n.payload()}
