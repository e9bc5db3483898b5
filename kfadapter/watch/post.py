"""One notification POST to the training manager, bounded in wall time: connect, send and the whole answer.

`requests` (and urllib3 under it) bound each socket read, not the request: a manager that trickles its answer a
byte at a time keeps such a POST open for minutes. Here the standard library's http.client does the HTTP and
every read of the answer (status line, headers, body) waits only for what is left of one deadline, so the POST
is over — its socket closed — `timeout` seconds after it began, whatever the manager does. DNS resolution is the
one step not under the deadline (as with requests). Proxies from the environment are not used: the training
manager is reached directly, as it is inside the cluster.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import time
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from kfadapter.core.version import version

TIMEOUT_ERROR = "timeout"


@dataclass(frozen=True)
class Answer:
    """What one POST got: the status (None when no status line arrived in time), an error, the answer's start."""

    status: int | None
    error: str | None
    body: str | None

    @property
    def timed_out(self) -> bool:
        """Whether the deadline passed before the manager's status line arrived."""
        return self.error == TIMEOUT_ERROR


def post_json(url: str, payload: dict, timeout: float, max_answer: int) -> Answer:
    """POST `payload` as JSON within `timeout` seconds of wall time; keep at most `max_answer` bytes of the answer."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    conn.response_class = partial(_DeadlineResponse, deadline=deadline)  # type: ignore[assignment]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": _AGENT}
    try:
        return _exchange(conn, path, body, headers, deadline, max_answer)
    except TimeoutError:
        return Answer(None, TIMEOUT_ERROR, None)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"connection error: {type(exc).__name__}", None)
    finally:
        conn.close()


def _exchange(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict, deadline: float, max_answer: int
) -> Answer:
    conn.connect()
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the notification's deadline passed while connecting")
    conn.sock.settimeout(left)  # the request is small: one send, bounded by what is left
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    return Answer(resp.status, None, _read_start(resp, max_answer))


def _read_start(resp: http.client.HTTPResponse, max_answer: int) -> str | None:
    """The answer's first bytes, as far as they arrive before the deadline; None when none could be read."""
    parts: list[bytes] = []
    got = 0
    try:
        while got < max_answer:
            chunk = resp.read1(max_answer - got)  # what has arrived, at most one read of the socket
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    except (OSError, http.client.HTTPException):
        # The status line arrived, so the manager took the notification; its answer is kept as far as it came.
        if not parts:
            return None
    return b"".join(parts)[:max_answer].decode("utf-8", "replace")


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each waiting only for what is left until the deadline (then TimeoutError)."""

    def __init__(self, sock: socket.socket, deadline: float, sock_file: io.BufferedIOBase) -> None:
        # `sock_file` (the socket's own file) holds the socket open after http.client closes the connection
        # object of an answer that ends with the connection ("passes the connection to the response").
        self._sock, self._deadline, self._sock_file = sock, deadline, sock_file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the notification's deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock_file.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading through a `_DeadlineReader` instead of the socket's own file."""

    def __init__(self, sock: socket.socket, *args, deadline: float, **kwargs) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_DeadlineReader(sock, deadline, self.fp))


_AGENT = f"kfadapter/{version()}"
