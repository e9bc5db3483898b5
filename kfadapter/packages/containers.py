"""The containers of a pipeline package: the one file of a zip or tar.gz, read within the package caps.

Every size is checked before it is read (the zip's end records, the tar's raw headers), so a container that
declares or inflates to more than the caps is refused from a few bytes.
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import IO, Any

from kfadapter.core import archive
from kfadapter.core.errors import BadRequest, PayloadTooLarge, Undecodable
from kfadapter.core.limits import Limits

_TAR_SLACK = 1024 * 1024  # headers and padding around the one file of a tar.gz package
_MAX_ZIP_DIRECTORY = 1024 * 1024  # the central directory of a one-file zip is a few hundred bytes
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: entries at [4], directory size at [5]
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # the zip64 end record's offset at [2]
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # entries at [7], directory size at [8]


def _too_many_members(kind: str, limits: Limits) -> BadRequest:
    return BadRequest(
        f"a {kind} package may hold at most KFADAPTER_PACKAGE_MAX_MEMBERS ({limits.package_members}) entries",
        code="invalid_package",
        details={"limit": "KFADAPTER_PACKAGE_MAX_MEMBERS", "max": limits.package_members},
    )


def _check_zip_directory(data: bytes, limits: Limits) -> None:
    """Read the zip's end records ourselves: zipfile would build every central-directory entry first."""
    pos = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF), len(data) - _EOCD.size + 4)
    if pos < 0:
        raise BadRequest("the zip package cannot be read: no end of central directory", code="invalid_package")
    entries, directory_size = _EOCD.unpack_from(data, pos)[4:6]
    if pos >= _ZIP64_LOCATOR.size and data[pos - _ZIP64_LOCATOR.size : pos - 16] == b"PK\x06\x07":
        record = _ZIP64_LOCATOR.unpack_from(data, pos - _ZIP64_LOCATOR.size)[2]
        if record + _ZIP64_EOCD.size > len(data) or data[record : record + 4] != b"PK\x06\x06":
            raise BadRequest("the zip package cannot be read: a broken zip64 end record", code="invalid_package")
        entries, directory_size = _ZIP64_EOCD.unpack_from(data, record)[7:9]
    if entries > limits.package_members:
        raise _too_many_members("zip", limits)
    if directory_size > _MAX_ZIP_DIRECTORY:
        raise BadRequest(
            f"the zip package's central directory is larger than {_MAX_ZIP_DIRECTORY} bytes",
            code="invalid_package",
            details={"max": _MAX_ZIP_DIRECTORY},
        )


def single_zip_member(data: bytes, limits: Limits) -> bytes:
    _check_zip_directory(data, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if len(zf.infolist()) > limits.package_members:
                raise _too_many_members("zip", limits)
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise BadRequest(
                    f"a zip package must hold exactly one file, it holds {len(members)}", code="invalid_package"
                )
            if members[0].file_size > limits.package_bytes:
                raise PayloadTooLarge("the file inside the zip is larger than 32 MiB")
            # Read at most the cap, so a lying header cannot make us inflate without bound.
            with zf.open(members[0]) as fh:
                return _read_capped(fh, limits)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise BadRequest(f"the zip package cannot be read: {exc}", code="invalid_package") from None


def single_tar_member(data: bytes, limits: Limits) -> bytes:
    """Read the one file of a tar.gz with the streaming reader of run outputs: raw headers, every size capped.

    tarfile would read a GNU long name or PAX header of any declared size into memory and keep every entry.
    """
    caps = archive.Limits(max_bytes=limits.package_bytes + _TAR_SLACK, max_members=limits.package_members)
    stream = archive.Capped(archive.Gunzip(io.BytesIO(data)), caps.max_bytes)
    found = None
    try:
        for member, reader in archive.iter_members(stream, caps):
            if member.kind != "file":
                continue
            if found is not None:
                raise BadRequest("a tar.gz package must hold exactly one file", code="invalid_package")
            found = _read_capped(reader, limits)
    except Undecodable as exc:
        if exc.code == "too_many_members":
            raise _too_many_members("tar.gz", limits) from None
        if exc.code == "artifact_too_large":
            raise PayloadTooLarge(f"the tar.gz package unpacks to more than {caps.max_bytes} bytes") from None
        raise BadRequest(
            f"the tar.gz package cannot be read: {exc.message}", code="invalid_package", details=exc.details
        ) from None
    if found is None:
        raise BadRequest("a tar.gz package must hold exactly one file", code="invalid_package")
    return found


def _read_capped(fh: Any, limits: Limits) -> bytes:
    out = fh.read(limits.package_bytes + 1)
    if len(out) > limits.package_bytes:
        raise PayloadTooLarge("the unpacked pipeline file is larger than 32 MiB")
    return out


def sniff(data: bytes | IO[bytes]) -> tuple[bytes, int]:
    """Return the first bytes of a package (bytes or a seekable file, rewound) and its size."""
    if isinstance(data, bytes):
        return data[:4], len(data)
    data.seek(0)
    head = data.read(4)
    size = data.seek(0, io.SEEK_END)
    data.seek(0)
    return head, size


def whole(data: bytes | IO[bytes]) -> bytes:
    """Return a package's bytes (a file is read from its start)."""
    if isinstance(data, bytes):
        return data
    data.seek(0)
    return data.read()
