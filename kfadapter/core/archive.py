"""Pure, streaming decoding of stored run outputs: KFP's `{"data": base64}` answer → gzip → tar, with limits.

Everything works on readers (`read(n)` → up to n bytes, b"" at the end) chained in stages (`streams`), so an
artifact of any size passes through in fixed-size chunks and nothing is written to disk. Hostile input (corrupt base64,
truncated or trailing gzip data, decompression bombs, tar members with absolute or `..` paths, links, devices,
oversized extension headers, thousands of members) raises `Undecodable` (422) and never more than one chunk
of it is held in memory.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kfadapter.core.errors import NotFound, Undecodable

# The stages live in `streams`; they are part of this module's interface too.
from kfadapter.core.streams import (
    CHUNK,
    Base64Decode,
    Capped,
    Gunzip,
    JsonDataField,
    Limits,
    Peek,
    Reader,
    read_exact,
)

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_MAX_EXTENSION_HEADER = 1024 * 1024  # PAX / GNU long-name headers are kilobytes; more is an attack
_FILE_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE}
_EXTENSION_TYPES = {
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
}
_LINK_OR_DEVICE = {
    tarfile.LNKTYPE: "hard link",
    tarfile.SYMTYPE: "symbolic link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
}


# ---- opening a stored object ----------------------------------------------------------------------------


@dataclass
class Decoded:
    """A decoded object: `format` is tar+gzip, tar, gzip or raw; `reader` yields the (decompressed) bytes."""

    format: str
    reader: Peek
    limits: Limits

    @property
    def is_tar(self) -> bool:
        """Whether the bytes are a tar archive."""
        return self.format.startswith("tar")


def open_read_answer(body: Reader, limits: Limits) -> Decoded:
    """Decode KFP's `:read` answer: base64 → gunzip when gzip'd → tar detection (Argo stores a gzip'd tar)."""
    return open_object(Base64Decode(JsonDataField(body, limits)), limits)


def open_object(data: Reader, limits: Limits, *, decompress: bool = True) -> Decoded:
    """Decode a stored object's bytes: gunzip when it starts with the gzip magic, then detect a tar."""
    src = Peek(data)
    compressed = decompress and src.peek(2) == b"\x1f\x8b"
    out = Peek(Capped(Gunzip(src) if compressed else src, limits.max_bytes))
    if decompress and _is_tar_header(out.peek(_BLOCK)):
        return Decoded("tar+gzip" if compressed else "tar", out, limits)
    return Decoded("gzip" if compressed else "raw", out, limits)


def _is_tar_header(block: bytes) -> bool:
    return len(block) == _BLOCK and block[257:262] == b"ustar"


# ---- tar ------------------------------------------------------------------------------------------------


@dataclass
class Member:
    """One tar entry (files and directories; nothing else is accepted)."""

    name: str
    size: int
    kind: str  # "file" | "dir"

    def to_dict(self) -> dict:
        """Render for JSON."""
        return {"name": self.name, "size": self.size, "type": self.kind}


class _MemberReader:
    """Reads exactly one member's bytes from the tar stream."""

    def __init__(self, src: Reader, size: int) -> None:
        self._src, self.remaining = src, size

    def read(self, n: int = CHUNK) -> bytes:
        if self.remaining <= 0:
            return b""
        out = self._src.read(min(n, self.remaining))
        if not out:
            raise Undecodable("truncated tar: a member's data stops early")
        self.remaining -= len(out)
        return out

    def skip(self) -> None:
        while self.remaining > 0:
            self.read(CHUNK)


def safe_name(name: str) -> str:
    """Return a member name normalized ("./x" → "x"); raise Undecodable for absolute or `..` paths."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise Undecodable(f"unsafe tar member {name[:200]!r}: absolute path", code="unsafe_archive")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise Undecodable(f"unsafe tar member {name[:200]!r}: '..' in the path", code="unsafe_archive")
    return "/".join(p for p in parts if p != ".") or "."


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise Undecodable("corrupt tar: malformed PAX header") from None
        if space < 0 or length <= 0 or pos + length > len(data):
            raise Undecodable("corrupt tar: malformed PAX header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _padding(size: int) -> int:
    return -size % _BLOCK


def iter_members(src: Reader, limits: Limits) -> Iterator[tuple[Member, Reader]]:
    """Yield each tar member with a reader of its data; unread data is skipped when the next one is asked for."""
    count = 0
    pending: dict[str, str] = {}
    pending_bytes = 0  # extension headers of one member together stay under the cap, not each alone
    while True:
        block = read_exact(src, _BLOCK)
        if not block:
            return  # the stream ended on a block boundary: accept a tar without end-of-archive blocks
        if len(block) < _BLOCK:
            raise Undecodable("truncated tar: a header block stops early")
        if block == _ZERO_BLOCK:
            while src.read(CHUNK):  # drain the record padding so the gzip layer still checks its CRC
                pass
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise Undecodable(f"corrupt tar header: {exc}") from None
        count += 1
        if count > limits.max_members:
            raise Undecodable(
                f"the archive has more than {limits.max_members} entries",
                code="too_many_members",
                details={"max_members": limits.max_members},
            )
        size = info.size
        if size < 0:
            raise Undecodable("corrupt tar header: negative size")
        if info.type in _EXTENSION_TYPES:
            # Checked from the 512-byte header, before a byte of the extension is read.
            pending_bytes += size
            if pending_bytes > _MAX_EXTENSION_HEADER:
                raise Undecodable(
                    f"unsafe tar: extension headers (PAX or GNU long name) of {pending_bytes} bytes, "
                    f"more than {_MAX_EXTENSION_HEADER}",
                    code="unsafe_archive",
                    details={"max_extension_bytes": _MAX_EXTENSION_HEADER},
                )
            data = read_exact(src, size + _padding(size))
            if len(data) < size + _padding(size):
                raise Undecodable("truncated tar: an extension header stops early")
            if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                pending.update(_pax_records(data[:size]))
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                pending["path"] = data[:size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        name = pending.get("path", info.name)
        if "size" in pending:
            try:
                size = int(pending["size"])
            except ValueError:
                raise Undecodable("corrupt tar: malformed PAX size") from None
        pending, pending_bytes = {}, 0
        name = safe_name(name)
        if info.type in _LINK_OR_DEVICE:
            raise Undecodable(
                f"unsafe tar member {name[:200]!r}: a {_LINK_OR_DEVICE[info.type]}", code="unsafe_archive"
            )
        if info.type == tarfile.DIRTYPE:
            kind = "dir"
        elif info.type in _FILE_TYPES:
            kind = "file"
        else:
            raise Undecodable(f"unsupported tar member {name[:200]!r} (type {info.type!r})", code="unsafe_archive")
        if size > limits.max_bytes:
            raise Undecodable(
                f"tar member {name[:200]!r} is larger than {limits.max_bytes} bytes",
                code="artifact_too_large",
                details={"max_bytes": limits.max_bytes},
            )
        reader = _MemberReader(src, size)
        yield Member(name, size, kind), reader
        reader.skip()
        if len(read_exact(src, _padding(size))) < _padding(size):
            raise Undecodable("truncated tar: member padding stops early")


# ---- scanning and streaming ---------------------------------------------------------------------------------


@dataclass
class Scan:
    """What one pass over a decoded object found: the members (tar), the chosen data's size and first bytes."""

    format: str
    members: list[Member] | None = None
    chosen: Member | None = None
    size: int | None = None
    head: bytes = b""
    complete: bool = False  # head holds all of the chosen data
    files: list[Member] = field(default_factory=list)


def _matches(member: Member, wanted: str) -> bool:
    return member.name == wanted.strip("/").removeprefix("./")


def _capture(reader: Reader, head_bytes: int) -> tuple[bytes, int]:
    """Keep the first head_bytes bytes, count (and drop) the rest."""
    parts: list[bytes] = []
    kept = total = 0
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            return b"".join(parts), total
        total += len(chunk)
        if kept < head_bytes:
            take = chunk[: head_bytes - kept]
            parts.append(take)
            kept += len(take)


def scan(decoded: Decoded, *, head_bytes: int, member: str | None = None, known_size: int | None = None) -> Scan:
    """Read the object once: list tar members, pick `member` (or the only file) and keep its first bytes.

    Reads to the end (bounded by the limits) so that every corruption is found here, before anything is sent.
    For a plain object of `known_size`, stops after the head instead.
    """
    if not decoded.is_tar:
        if known_size is not None:
            head = read_exact(decoded.reader, head_bytes)
            return Scan(decoded.format, size=known_size, head=head, complete=len(head) >= known_size)
        head, size = _capture(decoded.reader, head_bytes)
        return Scan(decoded.format, size=size, head=head, complete=size <= head_bytes)
    members: list[Member] = []
    result = Scan(decoded.format, members=members)
    for entry, reader in iter_members(decoded.reader, decoded.limits):
        members.append(entry)
        if entry.kind != "file":
            continue
        result.files.append(entry)
        if result.chosen is None and (member is None or _matches(entry, member)):
            result.chosen = entry
            result.head, _ = _capture(reader, head_bytes)
            result.size, result.complete = entry.size, entry.size <= head_bytes
    if member is None and len(result.files) != 1:
        result.chosen, result.head, result.size, result.complete = None, b"", None, False
    return result


def iter_chosen(decoded: Decoded, member: str | None) -> Iterator[bytes]:
    """Yield the chosen data in chunks: the tar member named `member` (or the first file), or all the bytes."""
    if not decoded.is_tar:
        while chunk := decoded.reader.read(CHUNK):
            yield chunk
        return
    for entry, reader in iter_members(decoded.reader, decoded.limits):
        if entry.kind == "file" and (member is None or _matches(entry, member)):
            while chunk := reader.read(CHUNK):
                yield chunk
            return
    raise NotFound(f"the archive has no member {member!r}", code="member_not_found")
