"""A local stand-in for the training manager's notification endpoint, so the whole loop can be watched.

``POST /_sandbox/notifications`` (also ``/_sandbox/notifications/trainingjob/pipelineNotification``) takes what
the adapter's watcher sends (``{"run_id", "run_status", "trainingjob_id"}``), logs one line and answers like
the training manager (200 ``{"Message": "Training successful"}`` for SUCCEEDED, 500 ``{"Error": "Training
Failed"}`` otherwise, which the watcher counts as delivered). ``GET /_sandbox/notifications`` lists every
delivery, oldest first: ``{"notifications": [{"received_at", "run_id", "run_status", "trainingjob_id",
"body"}]}``; ``DELETE`` clears them. `kfadapter serve --sandbox` points the watcher here when no training manager
is configured (KFADAPTER_TM_URL / TRAININGMGR_HOST).
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, current_app, jsonify, request

bp = Blueprint("sandbox_notifications", __name__, url_prefix="/_sandbox/notifications")
log = logging.getLogger("kfadapter.sandbox.notifications")
MAX_KEPT = 1000


class Inbox:
    """Deliveries received, newest last (at most MAX_KEPT)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[dict] = []

    def add(self, body: object) -> dict:
        doc = body if isinstance(body, dict) else {}
        item = {
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run_id": doc.get("run_id"),
            "run_status": doc.get("run_status"),
            "trainingjob_id": doc.get("trainingjob_id"),
            "body": body,
        }
        with self.lock:
            self.items.append(item)
            del self.items[:-MAX_KEPT]
        return item

    def list(self) -> list[dict]:
        with self.lock:
            return list(self.items)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


def _inbox() -> Inbox:
    return current_app.extensions["sandbox_notifications"]


@bp.post("")
@bp.post("/trainingjob/pipelineNotification")
def receive():
    """Record one notification and answer as the training manager does."""
    item = _inbox().add(request.get_json(force=True, silent=True))
    log.info(
        "notification received: run %s of training job %s is %s",
        item["run_id"],
        item["trainingjob_id"],
        item["run_status"],
    )
    if item["run_status"] == "SUCCEEDED":
        return jsonify({"Message": "Training successful"})
    return jsonify({"Error": "Training Failed"}), 500


@bp.get("")
def list_notifications():
    """Every notification received."""
    return jsonify({"notifications": _inbox().list()})


@bp.delete("")
def clear_notifications():
    """Forget them."""
    _inbox().clear()
    return jsonify({})
