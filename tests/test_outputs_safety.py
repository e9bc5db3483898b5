"""Hostile and broken artifact data never hurts the service: each case is a JSON error with the stated status,
nothing is written to disk, and the next request works."""
from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import os
import tarfile
import tempfile
import zlib

import pytest

from kfadapter.app import create_app

from tests.test_outputs import BLOB, argo_tgz, by_name, control, store_v1_run

CAP = 8 * 1024 * 1024
MAX_MEMBERS = 100


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buf) -> int:
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def _tar(*infos: tuple[tarfile.TarInfo, bytes | None], fmt=tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _tar_bomb() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=9) as tar:
        tar.addfile(_info("data", size=64 * 1024 * 1024), _Zeros(64 * 1024 * 1024))
    return out.getvalue()


def _gzip_bomb() -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1024 * 1024)
    return b"".join([*(z.compress(chunk) for _ in range(64)), z.flush()])


def _many_members(n: int) -> bytes:
    return gzip.compress(_tar(*((_info(f"f{i}", size=1), b"x") for i in range(n))))


GOOD = argo_tgz(data=b"fine")
_PAX_HUGE = _tar((_info("data", size=2, pax_headers={"comment": "x" * (2 * 1024 * 1024)}), b"ok"))

# (case id, stored object or verbatim :read answer, verbatim?, status, code)
CASES = [
    ("corrupt-base64", b'{"data": "@@@ not base64 @@@"}', True, 422, "undecodable"),
    ("padding-in-the-middle", b'{"data": "QQ==QUFB"}', True, 422, "undecodable"),
    ("base64-cut-mid-group", b'{"data": "QUJDRA"}', True, 422, "undecodable"),
    ("not-a-data-answer", b"<html>proxy error</html>", True, 422, "undecodable"),
    ("data-not-a-string", b'{"data": 12345}', True, 422, "undecodable"),
    ("truncated-gzip", GOOD[: len(GOOD) // 2], False, 422, "undecodable"),
    ("gzip-bad-crc", GOOD[:-8] + b"\0\0\0\0" + GOOD[-4:], False, 422, "undecodable"),
    ("junk-after-gzip", GOOD + b"JUNKJUNK", False, 422, "undecodable"),
    ("tar-bomb", _tar_bomb(), False, 422, "artifact_too_large"),
    ("gzip-bomb", _gzip_bomb(), False, 422, "artifact_too_large"),
    ("absolute-path", gzip.compress(_tar((_info("/etc/passwd", size=4), b"root"))), False, 422, "unsafe_archive"),
    ("dotdot-path", gzip.compress(_tar((_info("../../evil", size=4), b"evil"))), False, 422, "unsafe_archive"),
    ("symlink", gzip.compress(_tar((_info("data", tarfile.SYMTYPE, linkname="/etc/shadow"), None))), False, 422,
     "unsafe_archive"),
    ("hardlink", gzip.compress(_tar((_info("data", tarfile.LNKTYPE, linkname="x"), None))), False, 422,
     "unsafe_archive"),
    ("char-device", gzip.compress(_tar((_info("data", tarfile.CHRTYPE, devmajor=1, devminor=3), None))), False, 422,
     "unsafe_archive"),
    ("block-device", gzip.compress(_tar((_info("data", tarfile.BLKTYPE), None))), False, 422, "unsafe_archive"),
    ("fifo", gzip.compress(_tar((_info("data", tarfile.FIFOTYPE), None))), False, 422, "unsafe_archive"),
    ("thousands-of-members", _many_members(2000), False, 422, "too_many_members"),
    ("huge-pax-header", gzip.compress(_PAX_HUGE), False, 422, "unsafe_archive"),
    ("truncated-tar", gzip.compress(_tar((_info("data", size=4096), bytes(4096)))[:1024]), False, 422, "undecodable"),
    ("corrupt-tar-header", gzip.compress(b"\x01" * 257 + b"ustar\x0000" + b"\x02" * 250), False, 422, "undecodable"),
]


@pytest.fixture
def settings(settings):
    """Small caps so the bombs and the member flood hit them."""
    return dataclasses.replace(settings, artifact_max_bytes=CAP, artifact_max_members=MAX_MEMBERS)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temp dir of this test alone for everything in the process that uses `tempfile` (the adapter included)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.mark.parametrize(("data", "verbatim", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_artifact(adapter_url, client, sandbox, private_tmp, data, verbatim, status, code):
    import requests

    run_id, ids = store_v1_run(sandbox, client)
    node = ids["make-blob"]
    path = f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob"
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob"
                            + ("?verbatim=true" if verbatim else ""), data=data)
    for query in ("", "?member=data", "?list=true"):
        resp = requests.get(adapter_url + path + query, timeout=30)
        assert resp.status_code == status, (query, resp.text)
        assert resp.headers["Content-Type"] == "application/json"
        body = resp.json()
        assert body["status"] == status and body["code"] == code and body["message"]
    # The listing still answers; the bad output carries the error, the good ones their values.
    out = by_name(client.get(f"/runs/{run_id}/outputs").json)
    blob = out["make-blob"]["blob"]
    assert blob["available"] is False and blob["error"]["code"] == code and blob["error"]["status"] == status
    assert out["train"]["steps"]["value"] == 50
    # Nothing extracted to disk; the upload's per-process directory (tempdirs) holds only its lock file.
    assert [p.name for p in private_tmp.rglob("*") if not p.name.startswith("kfadapter-upload-")] in ([], [".owner"])
    # The next request works.
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob", data=argo_tgz(data=BLOB))
    assert requests.get(adapter_url + path, timeout=10).content == BLOB


def test_hostile_compressed_nodes_are_422(client, sandbox):
    run_id, _ = store_v1_run(sandbox, client)
    for packed in ("%%%", base64.b64encode(b"\x1f\x8b\x08\x00broken").decode(),
                   base64.b64encode(gzip.compress(b"[1, 2]")).decode()):
        control(sandbox, "PUT", f"/runs/{run_id}/workflow", json={"phase": "Running", "compressedNodes": packed})
        resp = client.get(f"/runs/{run_id}/outputs")
        assert resp.status_code == 422 and resp.json["code"] == "undecodable", resp.json
    control(sandbox, "PUT", f"/runs/{run_id}/workflow", json={"phase": "Running", "nodes": {}})
    assert client.get(f"/runs/{run_id}/outputs").json["tasks"] == []


def test_the_default_cap_lets_large_artifacts_through(settings, sandbox):
    app = create_app(dataclasses.replace(settings, artifact_max_bytes=CAP * 4))
    client = app.test_client()
    run_id, ids = store_v1_run(sandbox, client)
    data = os.urandom(CAP * 2)
    node = ids["make-blob"]
    control(sandbox, "PUT", f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob", data=argo_tgz(data=data))
    resp = client.get(f"/runs/{run_id}/nodes/{node}/artifacts/make-blob-blob")
    assert resp.status_code == 200 and resp.data == data
    blob = by_name(client.get(f"/runs/{run_id}/outputs?task=make-blob").json)["make-blob"]["blob"]
    assert blob["truncated"] is True and blob["encoding"] == "base64" and blob["size"] == len(data)
    assert len(base64.b64decode(blob["preview"])) == 1024 and len(json.dumps(blob)) < 4000
