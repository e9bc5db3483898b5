"""`GET /watches`: what the run watcher tracks, what it still has to deliver, and who holds the lease."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app

from kfadapter.api.common import iso_time, iso_times, json_response, store
from kfadapter.watch.records import Notification
from kfadapter.watch.watcher import LEASE_NAME, Watcher

bp = Blueprint("watches", __name__)
# Epoch seconds in the store, ISO 8601 in the answer (like every other time the adapter gives).
NOTE_TIMES = ("created_at", "next_attempt_at", "last_attempt_at", "delivered_at", "tracked_at")


@bp.get("/watches")
def watches():
    """Return tracked runs, pending notifications (attempts, last error) and recent deliveries."""
    db = store()
    watcher: Watcher = current_app.extensions["kfadapter.watcher"]
    lease = db.lease(LEASE_NAME)
    return json_response(
        {
            "tracked": [iso_times(asdict(t), "created_at") for t in db.tracked()],
            "pending": [_note(n) for n in db.pending()],
            # executions whose run id is not stored yet
            "intents": [iso_times(asdict(i), "created_at") for i in db.intents()],
            "recent_deliveries": [_note(n) for n in db.recent_deliveries()],
            "lease": {"holder": lease[0], "expires_at": iso_time(lease[1])} if lease else None,
            "training_manager_url": watcher.settings.tm_url,
            "poll_interval": watcher.settings.poll_interval,
        }
    )


def _note(n: Notification) -> dict:
    return iso_times(asdict(n), *NOTE_TIMES) | {"payload": n.payload()}
