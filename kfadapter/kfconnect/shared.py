"""Identical concurrent list calls to KFP made once and shared by everyone who asked meanwhile.

64 clients listing 3,000 pipelines would each page through KFP (15 calls of 200): 960 calls that hold KFP
and the adapter's threads for many seconds. Here callers asking for the same list share one fetch.

A caller never receives a fetch that began before it asked: if one is already running, the caller waits for
the next one, which starts when the running one ends and serves everyone who arrived in between. An answer
therefore always reflects KFP at some moment after the request came in (a client that uploads, then lists, sees
its pipeline), and at most one fetch per list runs at a time, plus one being gathered.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from typing import Any


class _Fetch:
    """One shared fetch: its result (or error) once done."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SharedCalls:
    """Run `fn` once for every group of concurrent callers that asked for the same key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, _Fetch] = {}
        self._gathering: dict[Hashable, _Fetch] = {}  # the next fetch, not started yet

    def call(self, key: Hashable, fn: Callable[[], list]) -> list:
        """Return `fn()`'s list as fetched for this caller or shared with callers that asked meanwhile."""
        with self._lock:
            fetch = self._gathering.get(key)
            if fetch is not None:
                lead, wait_for = False, None
            else:
                fetch = _Fetch()
                wait_for = self._running.get(key)
                if wait_for is None:
                    self._running[key] = fetch
                else:
                    self._gathering[key] = fetch
                lead = True
        if not lead:
            return _outcome(fetch)
        if wait_for is not None:
            wait_for.done.wait()  # the running fetch began before we asked: ours starts when it ends
            with self._lock:
                del self._gathering[key]
                self._running[key] = fetch
        try:
            fetch.result = fn()
        except BaseException as exc:
            fetch.error = exc
            raise
        finally:
            with self._lock:
                del self._running[key]
            fetch.done.set()
        return list(fetch.result)


def _outcome(fetch: _Fetch) -> list:
    """Wait for a fetch led by another caller; its list (a copy) or its error (a copy, so tracebacks stay apart)."""
    fetch.done.wait()
    if fetch.error is not None:
        try:
            error = copy.copy(fetch.error)
        except Exception:
            error = fetch.error
        raise error.with_traceback(None)
    return list(fetch.result)
