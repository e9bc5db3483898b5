"""gunicorn worker: gthread whose event loop reads each whole request before a thread takes it.

gunicorn's gthread worker hands a connection to a thread as soon as it is accepted (an idle one holds the thread
for 5 s) and the thread then reads the request head and body with blocking reads: 64 clients sending a byte at a
time hold 64 threads, and `/liveness` queues behind them. Here the worker's selector loop reads every request
(head, then body by Content-Length or chunk framing) from non-blocking sockets into a spool (memory, then an
anonymous temporary file) within deadlines, and submits the connection to the thread pool only when the request
is complete. Threads therefore only ever run the application. `GET /liveness` has its own small pool, so the
probe is never queued behind application work either (`/readiness` stays with the application threads: it says
whether KFP-backed requests can be served, and busy threads are part of that answer). A head over 64 KiB gets
431 from the event loop, malformed chunked framing 400 and a chunked body over the limit 413 (`framing.py`).
Other requests the framer cannot delimit (conflicting lengths, a Content-Length over the limit) are
handed over as they are, gunicorn's parser or the application answers them, and the connection is closed; a body
gunicorn's reader still refuses inside the application is a 400 too, never a 500.

Idle connections (accepted, or kept alive, without a byte of a request yet) cost a socket each. When a worker
holds `worker_connections` of them, gthread stops accepting, and `/liveness` waits in the kernel's backlog
behind them until they time out: Kubernetes then restarts a healthy pod. Here the worker keeps accepting and
closes its oldest idle connection to make room; it stops accepting only when none of its connections is idle.
"""

from __future__ import annotations

import errno
import json
import selectors
import tempfile
import time
from concurrent import futures
from functools import partial

from gunicorn.http import errors as http_errors
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import BadRequest

from kfadapter.server.framing import RequestFramer

__all__ = ["BufferedThreadWorker", "RequestFramer", "configured"]

_RECV = 256 * 1024
_SPOOL_IN_MEMORY = 64 * 1024  # per connection; larger requests go to an anonymous temporary file
_MAX_HEAD = 64 * 1024  # no client of this API sends more; bounds the memory of 1000 half-sent heads
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    """An error envelope answered from the event loop, closing the connection."""
    body = json.dumps({"status": status, "code": code, "message": message, "details": {}}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_TIMEOUT = _answer(408, "Request Timeout", "request_timeout", "the request was not received in time")
_BODY_TOO_LARGE = "the chunked request body is larger than {} bytes"
_HEAD_TOO_LARGE = _answer(
    431,
    "Request Header Fields Too Large",
    "headers_too_large",
    f"the request line and headers exceed {_MAX_HEAD} bytes",
)


# gunicorn's status for its own parse errors (others: 400); answered as JSON by BufferedThreadWorker.handle_error.
_PARSE_STATUS = {
    http_errors.LimitRequestLine: (414, "URI Too Long"),
    http_errors.LimitRequestHeaders: (431, "Request Header Fields Too Large"),
    http_errors.ExpectationFailed: (417, "Expectation Failed"),
    http_errors.UnsupportedTransferCoding: (501, "Not Implemented"),
    http_errors.ForbiddenProxyRequest: (403, "Forbidden"),
    http_errors.ConfigurationProblem: (500, "Internal Server Error"),
}


class _SpoolUnreader(SocketUnreader):
    """gunicorn's socket reader, serving the spooled request first (then the socket, with a read timeout)."""

    def __init__(self, sock, read_timeout: float) -> None:
        super().__init__(sock)
        self.read_timeout = read_timeout
        self.spool = None

    def attach(self, spool) -> None:
        """Serve `spool` (one whole request) before reading the socket again."""
        self.release()
        self.spool = spool

    def chunk(self, size_hint=None):
        if self.spool is not None:
            data = self.spool.read(max(self.mxchunk, min(size_hint or 0, self.max_body_chunk)))
            if data:
                return data
            self.release()
        # Only a request handed over as it is reads on from the socket; never wait on it forever.
        self.sock.settimeout(self.read_timeout)
        return super().chunk(size_hint)

    def release(self) -> None:
        """Close the spool (its temporary file, if any, is anonymous)."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class _Inbox:
    """One request being received: its framer, its spool and its deadline."""

    def __init__(self, framer: RequestFramer, deadline: float) -> None:
        self.framer = framer
        self.deadline = deadline
        self.spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        self.received = 0
        self.continued = False


class _GuardedBody:
    """A request body whose malformed framing (found by gunicorn's reader) is a 400 for the application."""

    def __init__(self, body) -> None:
        self._body = body

    def __getattr__(self, name: str):
        return getattr(self._body, name)  # `failed`, read by gunicorn's drain, among others

    def _guarded(self, method: str, *args):
        try:
            return getattr(self._body, method)(*args)
        except http_errors.ParseException as exc:
            raise BadRequest(f"the request body is malformed: {exc}") from None

    def read(self, size=None):
        """Read like gunicorn's Body; malformed framing raises werkzeug's BadRequest."""
        return self._guarded("read", size)

    def readline(self, size=None):
        """Read a line like gunicorn's Body; malformed framing raises werkzeug's BadRequest."""
        return self._guarded("readline", size)

    def readlines(self, size=None):
        """Read lines like gunicorn's Body; malformed framing raises werkzeug's BadRequest."""
        return self._guarded("readlines", size)

    def __iter__(self):
        return self

    def __next__(self):
        return self._guarded("__next__")


class BufferedThreadWorker(ThreadWorker):
    """gthread worker that reads requests in its event loop and gives threads only complete ones."""

    header_timeout = 10.0  # from accept (or a kept-alive connection's next byte) to the end of the head
    body_timeout = 120.0  # from the end of the head to the end of the body
    max_body = 64 * 1024 * 1024  # larger bodies are handed over unread (the application answers 413)
    probe_threads = 2

    def init_process(self):
        self.inboxes: dict[TConn, _Inbox] = {}
        self.idle: dict[TConn, float] = {}  # connections without a byte of their request yet, oldest first
        self.probe_pool = futures.ThreadPoolExecutor(self.probe_threads, thread_name_prefix="probe")
        super().init_process()

    def set_accept_enabled(self, enabled):
        """Keep accepting while full as long as an idle connection can make room (gthread stops at once)."""
        if not self.cfg.is_ssl and self.alive and not enabled:
            enabled = bool(self.idle or self.keepalived_conns)
        super().set_accept_enabled(enabled)

    def accept(self, listener):
        """Accept a connection and start reading its first request in the event loop."""
        if self.cfg.is_ssl:  # the event loop reads plain HTTP/1.x only; TLS keeps gthread's own path
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.nr_conns >= self.worker_connections and not self._close_oldest_idle():
            super().set_accept_enabled(False)  # every connection is busy: the backlog waits for one to end
        self.nr_conns += 1
        self._receive(TConn(self.cfg, client_sock, client_addr, listener.getsockname()), b"")

    def _close_oldest_idle(self) -> bool:
        """Close the connection that has been idle longest (waiting or kept alive); False when none is idle."""
        waiting = next(iter(self.idle.items()), None)
        kept = self.keepalived_conns[0] if self.keepalived_conns else None
        if kept is None or (waiting is not None and waiting[1] <= kept.timeout - self.cfg.keepalive):
            if waiting is None:
                return False
            self._drop(waiting[0])
            return True
        self.keepalived_conns.popleft()
        try:
            self.poller.unregister(kept.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        kept.close()
        return True

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection sends its next request: read it in the event loop too."""
        if self.cfg.is_ssl:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.sock.setblocking(False)
        self._receive(conn, b"")

    def _receive(self, conn: TConn, carry: bytes) -> None:
        inbox = _Inbox(RequestFramer(_MAX_HEAD, self.max_body), time.monotonic() + self.header_timeout)
        self.inboxes[conn] = inbox
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if not carry:
            self.idle[conn] = time.monotonic()
        if carry:
            self._feed(conn, inbox, carry)
        else:
            self._on_readable(conn, conn.sock)  # often already there: saves a round through the selector

    def _on_readable(self, conn: TConn, client) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self._feed(conn, self.inboxes[conn], data)
        else:
            self._drop(conn)

    def _feed(self, conn: TConn, inbox: _Inbox, data: bytes) -> None:
        """Spool this request's part of `data`; submit the connection once the request is complete."""
        framer = inbox.framer
        in_head = framer.state == "head"
        self.idle.pop(conn, None)
        used = framer.feed(data)
        inbox.spool.write(data[:used])
        inbox.received += used
        conn.carry = data[used:]  # a pipelined next request
        if in_head and framer.state != "head":
            inbox.deadline = time.monotonic() + self.body_timeout
        if framer.expect_continue and not inbox.continued:
            inbox.continued = True
            self._send_quietly(conn, _CONTINUE)  # the client waits for it before sending the body
        if not framer.done:
            return
        refusal = None
        if framer.too_large:
            refusal = _HEAD_TOO_LARGE
        elif framer.body_too_large:
            message = _BODY_TOO_LARGE.format(self.max_body)
            refusal = _answer(413, "Payload Too Large", "payload_too_large", message)
        elif framer.error:
            refusal = _answer(400, "Bad Request", "malformed_request", framer.error)
        if refusal is not None:
            self.log.warning("Invalid request from ip=%s: %s", (conn.client or ("",))[0], refusal.split(b"\r\n")[0])
            self._send_quietly(conn, refusal)
            self._drop(conn)
            return
        self.poller.unregister(conn.sock)
        del self.inboxes[conn]
        inbox.spool.seek(0)
        conn.init()
        if not isinstance(conn.parser.unreader, _SpoolUnreader):
            conn.parser.unreader = _SpoolUnreader(conn.sock, self.header_timeout)
        conn.parser.unreader.attach(inbox.spool)
        conn.continued, conn.whole = inbox.continued, framer.whole
        pool = self.probe_pool if framer.probe else self.tpool
        fs = pool.submit(self.handle, conn)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def handle_request(self, req, conn):
        """Run the application; no second 100 Continue; close after a request handed over unread."""
        if getattr(conn, "continued", False):
            req._expected_100_continue = False
        if not getattr(conn, "whole", True):
            # Its body is still on the socket (too large, or framing gunicorn refuses): closing beats a drain
            # that would hold this thread for seconds.
            req.must_close = True
        body = req.body
        if body is not None:
            req.body = _GuardedBody(body)  # for the application only: gunicorn's own drain reads the original
        try:
            return super().handle_request(req, conn)
        finally:
            req.body = body

    def finish_request(self, conn, fs):
        """Finish as gthread does, free the spool, and read a pipelined next request at once."""
        super().finish_request(conn, fs)
        if conn not in self.keepalived_conns:
            return  # closed (its spool goes with it), or back in a thread that reads on from the spool
        if isinstance(conn.parser.unreader, _SpoolUnreader):
            conn.parser.unreader.release()
        carry, conn.carry = getattr(conn, "carry", b""), b""
        if carry:
            self.poller.unregister(conn.sock)
            self.keepalived_conns.remove(conn)
            self._receive(conn, carry)

    def murder_pending(self):
        """Close connections whose request did not arrive in time (408 if they had started one)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, inbox in list(self.inboxes.items()):
            if inbox.deadline <= now or (not self.alive and not inbox.received):
                if inbox.received:
                    self._send_quietly(conn, _TIMEOUT)
                self._drop(conn)

    def _drop(self, conn: TConn) -> None:
        self.idle.pop(conn, None)
        inbox = self.inboxes.pop(conn, None)
        if inbox is not None:
            inbox.spool.close()
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def _send_quietly(conn: TConn, data: bytes) -> None:
        try:
            conn.sock.send(data)
        except OSError:
            pass  # the client is gone or not reading; the connection ends anyway

    def handle_error(self, req, client, addr, exc):
        """Answer a request gunicorn cannot parse with the JSON envelope, never gunicorn's HTML page."""
        response_fault = (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)
        if not isinstance(exc, http_errors.ParseException) or isinstance(exc, response_fault):
            return super().handle_error(req, client, addr, exc)  # the application's fault: logged, plain 500
        status, reason = _PARSE_STATUS.get(type(exc), (400, "Bad Request"))
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            client.sendall(_answer(status, reason, "malformed_request", f"the HTTP request is malformed: {exc}"))
        except OSError:
            pass  # the client is gone

    def handle_quit(self, sig, frame):
        """Stop the probe pool with the thread pool."""
        self.probe_pool.shutdown(wait=False)
        super().handle_quit(sig, frame)


def configured(header_timeout: float, body_timeout: float, max_body: int) -> type[BufferedThreadWorker]:
    """Return the worker class with these deadlines and body limit (for gunicorn's `worker_class`)."""
    return type(
        "BufferedThreadWorker",
        (BufferedThreadWorker,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_body": max_body, "__module__": __name__},
    )
