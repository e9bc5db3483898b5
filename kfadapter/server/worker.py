"""gunicorn worker: gthread whose event loop reads each whole request before a thread takes it.

gunicorn's gthread worker hands a connection to a thread as soon as it is accepted (an idle one holds the thread
for 5 s) and the thread then reads the request head and body with blocking reads: 64 clients sending a byte at a
time hold 64 threads, and `/liveness` queues behind them. Here the worker's selector loop reads every request
(head, then body by Content-Length or chunk framing) from non-blocking sockets into a spool (memory, then an
anonymous temporary file) within deadlines, and submits the connection to the thread pool only when the request
is complete. Threads therefore only ever run the application. `GET /liveness` has its own small pool, so the
probe is never queued behind application work either (`/readiness` stays with the application threads: it says
whether KFP-backed requests can be served, and busy threads are part of that answer). A head over 64 KiB gets
431 from the event loop. Requests this framer cannot delimit (malformed framing, a body over the limit) are
handed over as they are, gunicorn's parser or the application answers them, and the connection is closed.
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

_RECV = 256 * 1024
_SPOOL_IN_MEMORY = 64 * 1024  # per connection; larger requests go to an anonymous temporary file
_MAX_HEAD = 64 * 1024  # no client of this API sends more; bounds the memory of 1000 half-sent heads
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PROBES = (b"/liveness",)


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    """An error envelope answered from the event loop, closing the connection."""
    body = json.dumps({"status": status, "code": code, "message": message, "details": {}}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_TIMEOUT = _answer(408, "Request Timeout", "request_timeout", "the request was not received in time")
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


class RequestFramer:
    """Find where one HTTP/1.x request ends in the bytes a client sends."""

    def __init__(self, max_head: int, max_body: int) -> None:
        self.max_head = max_head  # past it, `too_large` is set and the request is handed over as it is
        self.max_body = max_body
        self.head = bytearray()
        self.state = "head"  # head -> length | size | data | trailer -> done
        self.remaining = 0
        self.line = bytearray()
        self.body_bytes = 0
        self.expect_continue = False
        self.probe = False
        self.too_large = False
        self.whole = False  # the request ended where its framing says (else: handed over as it is)

    @property
    def done(self) -> bool:
        """Whether the request is complete (or handed over as it is)."""
        return self.state == "done"

    def feed(self, data: bytes) -> int:
        """Consume the bytes of this request from `data`; return how many belong to it."""
        used = 0
        while used < len(data) and self.state != "done":
            used += getattr(self, "_" + self.state)(memoryview(data)[used:])
        return used

    def _pass_through(self, rest: memoryview) -> int:
        # gunicorn's own parser decides about this request; everything received so far goes with it.
        self.state = "done"
        return len(rest)

    def _head(self, data: memoryview) -> int:
        start = max(0, len(self.head) - 3)
        self.head += data
        end = self.head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self.head) > self.max_head:
                self.state, self.too_large = "done", True
            return len(data)
        used = len(data) - (len(self.head) - end - 4)
        del self.head[end + 4 :]
        self._framing(bytes(self.head[:end]))
        return used

    def _framing(self, head: bytes) -> None:
        request_line, *lines = head.split(b"\r\n")
        parts = request_line.split(b" ")
        method, target, version = (parts + [b"", b"", b""])[:3]
        self.probe = method == b"GET" and target.split(b"?")[0] in _PROBES
        lengths, codings, expect = [], [], b""
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif name == b"expect":
                expect = value.strip().lower()
        self.state = "done"  # no body, or framing gunicorn will refuse
        self.whole = not codings and not lengths
        if codings:
            if codings[-1] == b"chunked" and not lengths:
                self.state = "size"
        elif len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) < 19:
            self.remaining = int(lengths[0])
            if self.remaining > self.max_body:
                return  # the application refuses it (413) without reading it
            self.whole = not self.remaining
            if self.remaining:
                self.state = "length"
        elif lengths:
            return
        self.expect_continue = self.state != "done" and expect == b"100-continue" and version == b"HTTP/1.1"

    def _length(self, data: memoryview) -> int:
        used = min(len(data), self.remaining)
        self.remaining -= used
        if not self.remaining:
            self.state, self.whole = "done", True
        return used

    def _size(self, data: memoryview) -> int:
        used = self._line(data)
        if self.state == "size" and self.line.endswith(b"\r\n"):
            size = bytes(self.line[:-2]).split(b";")[0].strip()
            self.line.clear()
            try:
                self.remaining = int(size, 16) + 2 if size else -1
            except ValueError:
                self.remaining = -1
            if self.remaining < 0 or self.body_bytes + self.remaining > self.max_body:
                return used + self._pass_through(data[used:])
            self.body_bytes += self.remaining
            self.state = "data" if self.remaining > 2 else "trailer"
        return used

    def _data(self, data: memoryview) -> int:
        used = min(len(data), self.remaining)
        self.remaining -= used
        if not self.remaining:
            self.state = "size"
        return used

    def _trailer(self, data: memoryview) -> int:
        used = self._line(data)
        if self.state == "trailer" and self.line.endswith(b"\r\n"):
            self.state = "done" if self.line == b"\r\n" else "trailer"
            self.whole = self.state == "done"
            self.line.clear()
        return used

    def _line(self, data: memoryview) -> int:
        """Add bytes up to the next line end to `self.line`; hand over a line longer than 8 KiB."""
        end = bytes(data[:8192]).find(b"\n")
        used = len(data) if end < 0 else end + 1
        self.line += data[:used]
        if len(self.line) > 8192:
            self.state = "done"
        return used


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


class BufferedThreadWorker(ThreadWorker):
    """gthread worker that reads requests in its event loop and gives threads only complete ones."""

    header_timeout = 10.0  # from accept (or a kept-alive connection's next byte) to the end of the head
    body_timeout = 120.0  # from the end of the head to the end of the body
    max_body = 64 * 1024 * 1024  # larger bodies are handed over unread (the application answers 413)
    probe_threads = 2

    def init_process(self):
        self.inboxes: dict[TConn, _Inbox] = {}
        self.probe_pool = futures.ThreadPoolExecutor(self.probe_threads, thread_name_prefix="probe")
        super().init_process()

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
        self.nr_conns += 1
        self._receive(TConn(self.cfg, client_sock, client_addr, listener.getsockname()), b"")

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
        if framer.too_large:
            self._send_quietly(conn, _HEAD_TOO_LARGE)
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
        return super().handle_request(req, conn)

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
