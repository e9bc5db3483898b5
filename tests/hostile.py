"""The attacks of issue #13 ("Why"), built as bytes: used by tests/test_hostile.py and bench/bench_hostile.py."""
from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

V1_PACKAGE = (Path(__file__).parent / "fixtures" / "pipelines" / "qoe_train_v1_argo.yaml").read_bytes()
GIB = 1024 * 1024 * 1024


def billion_laughs(levels: int = 9) -> bytes:
    """A KFP v1 (Argo Workflow) package of nested aliases: about 580 bytes that expand to 9**levels strings."""
    rows = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        rows.append(f"  {cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return ("kind: Workflow\nmetadata: {generateName: lol-}\nspec:\n  templates: []\n" + "\n".join(rows)
            + "\n").encode()


def _gzip(data: bytes, level: int = 9) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


_ZEROS_MEMBER = 16 * 1024 * 1024
_GZIP_ZEROS = _gzip(bytes(_ZEROS_MEMBER))  # about 16 KiB


def _gzip_zeros(n: int) -> bytes:
    """n zero bytes as concatenated gzip members (valid gzip; built in milliseconds, about 1 MiB per GiB)."""
    whole, rest = divmod(n, _ZEROS_MEMBER)
    return _GZIP_ZEROS * whole + (_gzip(bytes(rest)) if rest else b"")


def tar_gz_extension(kind: str, declared: int = GIB, present: int | None = None) -> bytes:
    """A tar.gz whose first header is a GNU long name ("longname") or PAX ("pax") header declaring `declared` bytes.

    `present` bytes of it really follow (default all of it, zeros: a 1 GiB header gzips to about 1 MiB).
    """
    info = tarfile.TarInfo("././@LongLink" if kind == "longname" else "././@PaxHeader")
    info.type = tarfile.GNUTYPE_LONGNAME if kind == "longname" else tarfile.XHDTYPE
    info.size = declared
    return _gzip(info.tobuf(format=tarfile.GNU_FORMAT)) + _gzip_zeros(declared if present is None else present)


def tar_gz_directories(count: int = 300_000) -> bytes:
    """A tar.gz of `count` directory entries, then the real v1 package as its one file."""
    info = tarfile.TarInfo("d0000000")
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    template = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    base = sum(template[:148]) + 8 * 32 + sum(template[156:]) - sum(b"0000000")  # checksum field as spaces
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = []
    for i in range(count):
        digits = b"%07d" % i
        template[1:8] = digits
        template[148:156] = b"%06o\0 " % (base + sum(digits))
        parts.append(comp.compress(bytes(template)))
    last = tarfile.TarInfo("pipeline.yaml")
    last.size = len(V1_PACKAGE)
    parts.append(comp.compress(last.tobuf(format=tarfile.USTAR_FORMAT) + V1_PACKAGE
                               + bytes(-len(V1_PACKAGE) % 512 + 1024)))
    return b"".join(parts) + comp.flush()


def tar_gz_bomb(size: int = GIB) -> bytes:
    """A tar.gz holding one file of `size` zero bytes (about 1 MiB per GiB compressed)."""
    info = tarfile.TarInfo("pipeline.yaml")
    info.size = size
    return _gzip(info.tobuf(format=tarfile.USTAR_FORMAT)) + _gzip_zeros(size + -size % 512 + 1024)


def zip_directories(count: int = 70_000) -> bytes:
    """A zip of `count` empty directory entries, then the v1 package (its central directory is what costs)."""
    out = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(out, "w") as zf:
        for i in range(count):
            zf.writestr(f"d{i}/", b"")
        zf.writestr("pipeline.yaml", V1_PACKAGE)
    return out.getvalue()


def json_flood(size: int = 32 * 1024 * 1024) -> bytes:
    """A JSON body of `size` bytes: an execution body whose arguments hold a list of empty objects."""
    head, tail = b'{"pipeline_name": "p", "arguments": {"x": [', b"{}]}}"
    return head + b"{}," * ((size - len(head) - len(tail)) // 3) + tail


def nested_json(depth: int = 100_000) -> bytes:
    """An execution body nested `depth` brackets deep."""
    return b'{"pipeline_name": "p", "arguments": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


def large_package(size: int = 31 * 1024 * 1024) -> bytes:
    """The v2 package add_v2.yaml grown to about `size` bytes by a long embedded source in one executor's
    command (as lightweight components embed their code): a legitimate upload near KFP's 32 MiB."""
    import yaml

    spec = yaml.safe_load((Path(__file__).parent / "fixtures" / "pipelines" / "add_v2.yaml").read_bytes())
    command = next(iter(spec["deploymentSpec"]["executors"].values()))["container"]["command"]
    line = "total = sum(range(1000))  # padding of a large embedded component source\n"

    def dump(lines: int) -> bytes:
        command[-1] = line * lines
        return yaml.safe_dump(spec, width=1 << 30).encode()

    command.append("")
    small, large = len(dump(1000)), len(dump(2000))  # YAML escapes each line end: measure what a line costs
    return dump(1000 + int((size - small) * 1000 / (large - small)))
