"""Open the store in the background at start-up, retrying while the database is down or busy.

A worker serves from the moment it boots: liveness answers, readiness and the routes that need the store
answer 503 `store_unavailable` until the store is open. Each failed attempt is one warning line naming the
cause (no traceback), then the next comes after a growing pause of at most `MAX_PAUSE` seconds. Requests
may open the store themselves in between (`Database.open`), so it is ready as soon as the
database is back and a request, readiness probe included, arrives.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from kfadapter.core.errors import StoreUnavailable
from kfadapter.watch.store import Store

log = logging.getLogger(__name__)

FIRST_PAUSE = 0.5  # seconds after the first failed attempt
MAX_PAUSE = 5.0  # the pause doubles up to this


def open_in_background(
    store: Store, then: Callable[[], object] | None = None, *, stop: threading.Event | None = None
) -> threading.Thread:
    """Open `store` in a daemon thread, retrying with one log line per failed attempt; then call `then`."""
    thread = threading.Thread(
        target=_open, args=(store, then, stop or threading.Event()), name="kfadapter-store-open", daemon=True
    )
    thread.start()
    return thread


def _open(store: Store, then: Callable[[], object] | None, stop: threading.Event) -> None:
    pause, attempt = FIRST_PAUSE, 0
    while not stop.is_set():
        attempt += 1
        try:
            store.open()
            break
        except StoreUnavailable as exc:
            log.warning("store not available yet (attempt %d): %s; next attempt in %.1f s", attempt, exc.message, pause)
        except Exception as exc:  # a worker must outlive a failed start-up; the trace is a bug's
            log.error(
                "store not available yet (attempt %d): %s; next attempt in %.1f s",
                attempt,
                exc,
                pause,
                exc_info=attempt == 1,
            )
        if stop.wait(pause * (1 + random.random() / 4)):  # jittered: replicas do not retry in step
            return
        pause = min(pause * 2, MAX_PAUSE)
    else:
        return
    if attempt > 1:
        log.info("store open after %d attempts", attempt)
    if then is not None:
        then()
