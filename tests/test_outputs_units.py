"""Pure parts of run outputs: streaming decoding, value typing and previews, Argo and IR parsing."""
from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile

import pytest
import yaml

from kfadapter.core.errors import NotFound, Undecodable
from kfadapter.core import archive
from kfadapter.outputs import argo, ir, values

from tests.conftest import PIPELINES
from tests.test_outputs import argo_tgz, compress_nodes, v1_status

LIMITS = archive.Limits(max_bytes=1 << 20, max_members=10)


class Trickle(io.BytesIO):
    """A reader that hands out at most 3 bytes per read, to cross every chunk boundary."""

    def read(self, n: int = -1) -> bytes:
        return super().read(min(n, 3) if n and n > 0 else 3)


def answer(obj: bytes, escape_slash: bool = False) -> bytes:
    text = base64.b64encode(obj).decode()
    if escape_slash:
        text = text.replace("/", "\\/")
    return json.dumps({"data": "X"}).replace('"X"', f'"{text}"').encode()


def decode(body: bytes, *, member: str | None = None, reader=io.BytesIO) -> bytes:
    return b"".join(archive.iter_chosen(archive.open_read_answer(reader(body), LIMITS), member))


@pytest.mark.parametrize("reader", [io.BytesIO, Trickle], ids=["chunks", "3-byte-reads"])
def test_read_answer_formats(reader):
    payload = bytes(range(256)) * 3
    assert decode(answer(argo_tgz(data=payload)), reader=reader) == payload
    assert decode(answer(gzip.compress(payload)), reader=reader) == payload
    assert decode(answer(payload), reader=reader) == payload
    assert decode(answer(payload, escape_slash=True), reader=reader) == payload
    assert decode(answer(gzip.compress(b"a") + gzip.compress(b"b")), reader=reader) == b"ab"  # multi-member gzip
    assert decode(b'{"data": ""}', reader=reader) == b""
    assert decode(b' {\n  "kind": "x",  "data" :  "' + base64.b64encode(b"hi") + b'"\n}', reader=reader) == b"hi"


def test_long_member_names_and_member_choice():
    name = "dir/" + "n" * 150 + ".txt"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz", format=fmt) as tar:
            for member, data in ((name, b"long"), ("./other", b"short")):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        body = answer(out.getvalue())
        found = archive.scan(archive.open_read_answer(io.BytesIO(body), LIMITS), head_bytes=100)
        assert [m.name for m in found.members] == [name, "other"] and found.chosen is None
        assert decode(body, member=name) == b"long" and decode(body, member="./other") == b"short"
        with pytest.raises(NotFound):
            decode(body, member="missing")


def test_scan_keeps_only_the_head():
    data = b"x" * 10_000
    found = archive.scan(archive.open_read_answer(io.BytesIO(answer(argo_tgz(data=data))), LIMITS), head_bytes=100)
    assert found.head == b"x" * 100 and found.size == 10_000 and not found.complete
    raw = archive.scan(archive.open_object(io.BytesIO(data), LIMITS, decompress=False), head_bytes=10,
                       known_size=len(data))
    assert raw.format == "raw" and raw.head == b"x" * 10 and raw.size == 10_000


def test_safe_names():
    assert archive.safe_name("./a/./b") == "a/b"
    for bad in ("/abs", "a/../../b", "..", "\\win", "C:\\x", "a\\..\\b", ""):
        with pytest.raises(Undecodable):
            archive.safe_name(bad)


def test_values_typing():
    assert values.from_bytes(b"42\n", "Integer")["value"] == 42
    assert values.from_bytes(b"3.0", "Integer")["value"] == 3
    assert values.from_bytes(b"0.5", "Float")["value"] == 0.5
    assert values.from_bytes(b"nan", "Float")["value"] == "nan"  # no JSON form
    assert values.from_bytes(b"False", "Boolean")["value"] is False
    assert values.from_bytes(b"true", "BOOLEAN")["value"] is True
    assert values.from_bytes(b'{"a": 1}', "JsonObject")["value"] == {"a": 1}
    assert values.from_bytes(b"[1]", "LIST")["value"] == [1]
    assert values.from_bytes(b"hi", "String") == {"value": "hi", "encoding": "json"}
    assert values.from_bytes(b"hi", None) == {"value": "hi", "encoding": "text"}
    bad = values.from_bytes(b"abc", "Integer")
    assert bad["value"] == "abc" and bad["encoding"] == "text" and "warning" in bad
    binary = values.from_bytes(b"\xff\x00", "Integer")
    assert binary["encoding"] == "base64" and base64.b64decode(binary["value"]) == b"\xff\x00"
    assert values.from_json_value(100.0, "NUMBER_INTEGER")["value"] == 100
    assert values.from_json_value(100.0, "NUMBER_DOUBLE")["value"] == 100.0


def test_previews():
    text = "".join(f"row {i} é\n" for i in range(100)).encode()
    cut = text[:text.index("é".encode()) + 1]  # ends inside a two-byte character
    assert values.preview(cut, len(text))["preview"] == "row 0 "
    lines = values.preview(text[:4000], len(text))
    assert lines["preview"].split("\n") == [f"row {i} é" for i in range(20)] and lines["size"] == len(text)
    binary = values.preview(b"\xff" * 5000, 9999)
    assert binary["encoding"] == "base64" and len(base64.b64decode(binary["preview"])) == 1024


def test_argo_tasks_from_the_fixture_workflow():
    workflow = yaml.safe_load((PIPELINES / "qoe_train_v1_argo.yaml").read_text())
    assert argo.is_v1(workflow)
    status, ids = v1_status("wf-1")
    for st in (status, compress_nodes(status)):
        tasks = argo.tasks_of(workflow | {"status": st}, logs=True)
        assert [t.name for t in tasks] == ["make-blob", "produce-list", "train"]
        train = tasks[2]
        assert train.id == ids["train"] and train.state == "SUCCEEDED"
        assert [(o.name, o.type, o.artifact) for o in train.outputs] == [
            ("accuracy", "Float", "train-accuracy"), ("steps", "Integer", "train-steps"),
            ("converged", "Boolean", "train-converged"), ("model_name", "String", "train-model_name"),
            ("metrics", "JsonObject", "train-metrics"), ("main-logs", None, "main-logs")]
    status["nodes"][ids["train"]]["outputs"]["artifacts"].append({"name": "mlpipeline-metrics"})
    extra = argo.tasks_of(workflow | {"status": status})[2].outputs[-1]
    assert (extra.name, extra.type, extra.produced) == ("mlpipeline-metrics", "JsonObject", True)


def test_ir_output_types():
    spec = yaml.safe_load((PIPELINES / "qoe_train_v2.yaml").read_text())
    types = ir.output_types({"pipeline_spec": spec, "platform_spec": {}})
    assert types["prepare"] == {"columns": "LIST", "row_count": "NUMBER_INTEGER"}
    assert types["train"]["accuracy"] == "NUMBER_DOUBLE" and types["train"]["model"] == "system.Model"
    assert ir.output_types(None) == {}
