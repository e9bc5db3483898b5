"""A training manager on a raw socket that can trickle its answer, for the delivery tests and benches.

Runs listed in `trickle` get their whole answer (status line included) one byte every `interval` seconds, the
way a stuck proxy or an overloaded manager sends it; every other notification is answered at once. Each POST is
recorded with when it was opened and when the adapter closed it (seen at once: between two bytes the socket is
watched for the adapter's FIN), so tests can check the wall bound and that no two POSTs for one run overlapped.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from tests.support import serve_in_background

ANSWER = b'{"Message": "Training successful"}'


@dataclass
class Post:
    """One POST the manager got."""

    run_id: str
    opened: float  # time.monotonic() when the request had arrived
    closed: float | None = None  # when the adapter closed the connection (or the answer was complete)
    trickled: bool = False
    answered: bool = False  # the whole answer was sent


class SlowManager:
    """A real local HTTP receiver whose answers for some runs trickle."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.trickle: set[str] = set()  # these runs' whole answer trickles, status line included
        self.trickle_body: set[str] = set()  # these get status and headers at once, then the body trickles
        self.posts: list[Post] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/trainingjob/pipelineNotification"
        self._thread = serve_in_background(self._server)

    def stop(self) -> None:
        """Stop accepting; trickles under way end at their next byte."""
        self._server.shutdown()
        self._server.server_close()

    # ---- what happened ------------------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Run ids of every POST received, in order (a run twice means two POSTs)."""
        with self._lock:
            return [p.run_id for p in self.posts]

    def answered(self) -> list[str]:
        """Run ids whose whole answer was sent."""
        with self._lock:
            return [p.run_id for p in self.posts if p.answered]

    def of(self, run_id: str) -> list[Post]:
        """The POSTs of one run."""
        with self._lock:
            return [p for p in self.posts if p.run_id == run_id]

    def max_overlap(self) -> int:
        """The most POSTs of one run that were open at the same time (1 is the promise)."""
        with self._lock:
            posts = list(self.posts)
        worst = 0
        for run_id in {p.run_id for p in posts}:
            events = []
            for p in posts:
                if p.run_id == run_id:
                    events += [(p.opened, 1), (p.closed if p.closed is not None else float("inf"), -1)]
            open_now = 0
            for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # a close before an open at the same time
                open_now += step
                worst = max(worst, open_now)
        return worst

    # ---- the server ---------------------------------------------------------------------------------------

    def _handle(self, sock: socket.socket) -> None:
        run_id = _read_run_id(sock)
        if run_id is None:
            return
        post = Post(run_id, time.monotonic(), trickled=run_id in self.trickle or run_id in self.trickle_body)
        with self._lock:
            self.posts.append(post)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
        )
        answer = head + ANSWER
        try:
            at_once = len(answer) if not post.trickled else len(head) if run_id in self.trickle_body else 0
            sock.sendall(answer[:at_once])
            for i in range(at_once, len(answer)):
                sock.sendall(answer[i : i + 1])
                if _closed_within(sock, self.interval):
                    return
            post.answered = True
        except OSError:
            return
        finally:
            post.closed = time.monotonic()


def _read_run_id(sock: socket.socket) -> str | None:
    data = b""
    sock.settimeout(30)
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return json.loads(body)["run_id"]
    except (OSError, ValueError, StopIteration, KeyError):
        return None


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Wait `seconds`; tell (at once) whether the other side closed the connection meanwhile."""
    readable, _, _ = select.select([sock], [], [], seconds)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True
