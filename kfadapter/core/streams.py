"""Streaming stages of run-output decoding: KFP's `{"data": base64}` answer, base64, gunzip, a size cap, peeking.

Each stage is a reader (`read(n)` → up to n bytes, b"" at the end) over the previous one, so data of any size
passes through in fixed-size chunks; corrupt or oversized input raises `Undecodable` (422). `archive` chains
them and reads tar on top.
"""

from __future__ import annotations

import binascii
import zlib
from dataclasses import dataclass
from typing import Protocol

from kfadapter.core.errors import Undecodable

CHUNK = 64 * 1024


class Reader(Protocol):
    """Anything with `read(n)` returning up to n bytes (b"" at the end)."""

    def read(self, n: int) -> bytes: ...


@dataclass(frozen=True)
class Limits:
    """Bounds on what one stored object may decode to."""

    max_bytes: int = 1024 * 1024 * 1024  # decoded bytes of one object (the gzip-bomb cap)
    max_members: int = 1000
    max_prelude: int = 4096  # bytes of KFP's JSON answer before the "data" string starts


# ---- stages ---------------------------------------------------------------------------------------------


class _Stage:
    """A reader that produces chunks from `_next()` and hands them out at most n bytes at a time."""

    def __init__(self) -> None:
        self._chunk = b""
        self._pos = 0
        self._eof = False

    def _next(self) -> bytes:
        raise NotImplementedError

    def read(self, n: int = CHUNK) -> bytes:
        """Return up to n bytes; b"" at the end."""
        while self._pos >= len(self._chunk):
            if self._eof:
                return b""
            self._chunk, self._pos = self._next(), 0
            if not self._chunk:
                self._eof = True
                return b""
        out = self._chunk[self._pos : self._pos + n]
        self._pos += len(out)
        return out


class JsonDataField(_Stage):
    """Stream the string value of `"data"` in KFP's artifact answer `{"data": "<base64>"}` without parsing it whole."""

    def __init__(self, src: Reader, limits: Limits) -> None:
        super().__init__()
        self._src, self._limits = src, limits
        self._started = False
        self._done = False
        self._carry = b""

    def _start(self) -> None:
        buf = b""
        while True:
            key = buf.find(b'"data"')
            if key >= 0:
                rest = buf[key + 6 :].lstrip()
                if rest.startswith(b":"):
                    rest = rest[1:].lstrip()
                    if rest.startswith(b'"'):
                        self._carry = rest[1:]
                        self._started = True
                        return
                    if rest:
                        raise Undecodable("KFP's artifact answer has no base64 string in 'data'")
            if len(buf) > self._limits.max_prelude:
                raise Undecodable('KFP\'s artifact answer is not {"data": "<base64>"}')
            more = self._src.read(CHUNK)
            if not more:
                raise Undecodable('KFP\'s artifact answer is not {"data": "<base64>"}')
            buf += more

    def _next(self) -> bytes:
        if not self._started:
            self._start()
        while not self._done:
            data = self._carry or self._src.read(CHUNK)
            self._carry = b""
            if not data:
                raise Undecodable("KFP's artifact answer ends inside the data string")
            end = data.find(b'"')
            if end >= 0:
                self._done = True
                data = data[:end]
            if data.endswith(b"\\") and not self._done:
                data, self._carry = data[:-1], b"\\" + self._src.read(1)
            if b"\\" in data:
                data = data.replace(b"\\/", b"/")  # the only escape a JSON encoder may put into base64
                if b"\\" in data:
                    raise Undecodable("KFP's artifact data is not base64 (unexpected JSON escape)")
            if data:
                return data
        return b""


class Base64Decode(_Stage):
    """Decode standard base64 incrementally and strictly: foreign characters or misplaced padding are errors."""

    def __init__(self, src: Reader) -> None:
        super().__init__()
        self._src = src
        self._pending = b""
        self._padded = False

    def _next(self) -> bytes:
        while True:
            chunk = self._src.read(CHUNK)
            if not chunk:
                if self._pending:
                    raise Undecodable("corrupt base64: the data stops in the middle of a group")
                return b""
            data = self._pending + chunk
            cut = len(data) - len(data) % 4
            self._pending = data[cut:]
            if not cut:
                continue
            if self._padded:
                raise Undecodable("corrupt base64: data after the padding")
            try:
                out = binascii.a2b_base64(data[:cut], strict_mode=True)
            except binascii.Error as exc:
                raise Undecodable(f"corrupt base64: {exc}") from None
            self._padded = data[cut - 1 : cut] == b"="
            if out:
                return out


class Gunzip(_Stage):
    """Decompress gzip (also several concatenated members) in bounded steps; truncation and junk are errors."""

    def __init__(self, src: Reader) -> None:
        super().__init__()
        self._src = src
        self._d = zlib.decompressobj(wbits=31)

    def _next(self) -> bytes:
        while True:
            if self._d.eof:
                rest = self._d.unused_data or self._src.read(CHUNK)
                if not rest:
                    return b""
                if rest[:1] != b"\x1f":
                    raise Undecodable("corrupt gzip: data after the end of the compressed stream")
                self._d = zlib.decompressobj(wbits=31)
                data = rest
            elif self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            else:
                data = self._src.read(CHUNK)
                if not data:
                    raise Undecodable("truncated gzip: the compressed stream ends early")
            try:
                # max_length bounds each step's output, so a bomb never expands in one go.
                out = self._d.decompress(data, CHUNK)
            except zlib.error as exc:
                raise Undecodable(f"corrupt gzip: {exc}") from None
            if out:
                return out


class Capped(_Stage):
    """Pass bytes through, raising Undecodable once more than `max_bytes` came out (the decompression cap)."""

    def __init__(self, src: Reader, max_bytes: int) -> None:
        super().__init__()
        self._src, self._max = src, max_bytes
        self.total = 0

    def _next(self) -> bytes:
        out = self._src.read(CHUNK)
        self.total += len(out)
        if self.total > self._max:
            raise Undecodable(
                f"the artifact decodes to more than {self._max} bytes",
                code="artifact_too_large",
                details={"max_bytes": self._max},
            )
        return out


class Peek(_Stage):
    """A reader that can look at its first n bytes before handing them out."""

    def __init__(self, src: Reader) -> None:
        super().__init__()
        self._src = src
        self._head = b""

    def peek(self, n: int) -> bytes:
        """Return the first n bytes (fewer at the end) without consuming them."""
        while len(self._head) < n:
            more = self._src.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def _next(self) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._src.read(CHUNK)


def read_exact(src: Reader, n: int) -> bytes:
    """Read n bytes, fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
