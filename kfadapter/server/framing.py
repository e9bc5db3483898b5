"""Where one HTTP/1.x request ends in the bytes a client sends, read by the worker's event loop.

The framer follows the head, then the body by Content-Length or by chunked framing. Chunked framing is checked
here as strictly as RFC 9112 section 7.1 (and gunicorn's own chunk reader) asks: a chunk size is hexadecimal
digits only (Python's `int(x, 16)` would also take `0x0`, `+0` and `2_9`), every line ends with CRLF, and chunk
data is followed by CRLF. A violation sets `error` (a sentence naming it), which the worker answers with 400
from its event loop: such bytes never reach gunicorn's reader inside the application, where they became 500s.
Framing this module does not judge (conflicting lengths, other transfer codings) is handed over as it is, and
gunicorn's parser answers it.
"""

from __future__ import annotations

import re

_PROBES = (b"/liveness",)
_MAX_LINE = 8190  # gunicorn's limit for a chunk-size line
_MAX_TRAILERS = 64 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]+")
# RFC 9112 section 7.1.1 chunk extensions, with token and quoted-string of RFC 9110 section 5.6.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_EXTENSIONS = re.compile(rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*")


def _shown(raw: bytes) -> str:
    """Bytes of the request quoted for a message: printable ASCII kept, the rest escaped, at most 40 shown."""
    text = raw[:40].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(raw) > 40 else ""))


class RequestFramer:
    """Find where one HTTP/1.x request ends in the bytes a client sends."""

    def __init__(self, max_head: int, max_body: int) -> None:
        self.max_head = max_head  # past it, `too_large` is set and the request is handed over as it is
        self.max_body = max_body
        self.head = bytearray()
        self.state = "head"  # head -> length | size | data | crlf | trailer -> done
        self.remaining = 0
        self.line = bytearray()
        self.body_bytes = 0
        self.trailer_bytes = 0
        self.expect_continue = False
        self.probe = False
        self.too_large = False
        self.body_too_large = False  # a chunked body past max_body: answered 413 by the event loop
        self.error: str | None = None  # malformed chunked framing: answered 400 by the event loop
        self.whole = False  # the request ended where its framing says (else: handed over as it is)

    @property
    def done(self) -> bool:
        """Whether the request is complete (or handed over as it is, or refused)."""
        return self.state == "done"

    def feed(self, data: bytes) -> int:
        """Consume the bytes of this request from `data`; return how many belong to it."""
        used = 0
        while used < len(data) and self.state != "done":
            used += getattr(self, "_" + self.state)(memoryview(data)[used:])
        return used

    def _refuse(self, problem: str) -> None:
        self.state, self.error = "done", f"the chunked request body is malformed: {problem}"

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
        used, line = self._line(data, _MAX_LINE, "a chunk-size line")
        if line is None:
            return used
        size, semicolon, extensions = line.partition(b";")
        if semicolon:
            size = size.rstrip(b" \t")  # RFC 9112: whitespace only before an extension
            if not _EXTENSIONS.fullmatch(b";" + extensions):
                self._refuse(f"the chunk extension {_shown(b';' + extensions)} is not token[=value] pairs")
                return used
        if not _HEX.fullmatch(size):
            self._refuse(f"the chunk size {_shown(size)} is not hexadecimal digits")
            return used
        self.remaining = int(size, 16)
        if self.body_bytes + self.remaining > self.max_body:
            self.state, self.body_too_large = "done", True
            return used
        self.body_bytes += self.remaining
        self.state = "data" if self.remaining else "trailer"
        return used

    def _data(self, data: memoryview) -> int:
        used = min(len(data), self.remaining)
        self.remaining -= used
        if not self.remaining:
            self.state = "crlf"
        return used

    def _crlf(self, data: memoryview) -> int:
        """The two bytes after chunk data must be CRLF."""
        expected = b"\r\n"[len(self.line) :]
        piece = bytes(data[: len(expected)])
        if piece != expected[: len(piece)]:
            self._refuse(f"the chunk data is not followed by CRLF (but by {_shown(bytes(self.line) + piece)})")
            return len(piece)
        self.line += piece
        if len(self.line) == 2:
            self.line.clear()
            self.state = "size"
        return len(piece)

    def _trailer(self, data: memoryview) -> int:
        used, line = self._line(data, _MAX_TRAILERS - self.trailer_bytes, "the trailer section")
        if line is None:
            return used
        self.trailer_bytes += len(line) + 2
        if not line:
            self.state, self.whole = "done", True
        elif b":" not in line[1:]:
            self._refuse(f"the trailer line {_shown(line)} is not name: value")
        return used

    def _line(self, data: memoryview, limit: int, what: str) -> tuple[int, bytes | None]:
        """Take bytes up to the next LF; return (bytes used, the line without CRLF once complete)."""
        end = bytes(data[: limit + 1]).find(b"\n")
        used = len(data) if end < 0 else end + 1
        self.line += data[:used]
        if end < 0:
            if len(self.line) > limit:
                self._refuse(f"{what} is longer than {limit} bytes")
            return used, None
        line = bytes(self.line)
        self.line.clear()
        if not line.endswith(b"\r\n"):
            self._refuse(f"{what} ends with a bare LF")
            return used, None
        if b"\r" in line[:-2]:
            self._refuse(f"{what} holds a bare CR")
            return used, None
        return used, line[:-2]
