"""The minimal MLMD messages decode bytes serialized by the real ml-metadata library (tests/fixtures/mlmd)."""
from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from kfadapter.outputs import mlmd_messages as mlmd

from tests.conftest import FIXTURES

MLMD = FIXTURES / "mlmd"
CASES = sorted(p.stem for p in MLMD.glob("*.bin"))


def _message_class(stem: str):
    method, kind = stem.split(".")
    request, response = mlmd.METHODS[method]
    return request if kind == "request" else response


def test_every_fixture_has_a_json_twin():
    assert len(CASES) == 8
    assert all((MLMD / f"{stem}.json").exists() for stem in CASES)


@pytest.mark.parametrize("stem", CASES)
def test_fixture_decodes_to_its_json_twin(stem):
    cls = _message_class(stem)
    message = cls.FromString((MLMD / f"{stem}.bin").read_bytes())
    expected = json.loads((MLMD / f"{stem}.json").read_text())
    assert json_format.MessageToDict(message, preserving_proto_field_name=True) == expected
    # Every byte the real library wrote maps onto a declared field: dropping unknown fields changes nothing.
    known = cls()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    assert known.ByteSize() == message.ByteSize() == len((MLMD / f"{stem}.bin").read_bytes())


@pytest.mark.parametrize("stem", CASES)
def test_fixture_round_trips_through_json(stem):
    """Our definitions also encode: JSON twin -> message -> bytes -> message gives the same content."""
    cls = _message_class(stem)
    original = cls.FromString((MLMD / f"{stem}.bin").read_bytes())
    rebuilt = json_format.ParseDict(json.loads((MLMD / f"{stem}.json").read_text()), cls())
    assert cls.FromString(rebuilt.SerializeToString()) == original


def test_values_convert_both_ways():
    for obj in (3, 0.5, "x", True, {"a": [1.0, "b"], "n": None}):
        assert mlmd.value_of(mlmd.to_value(obj)) == obj
    assert mlmd.value_of(mlmd.Value()) is None
    with pytest.raises(TypeError):
        mlmd.to_value(object())


def test_decoded_fixture_values_are_typed():
    cls = _message_class("GetExecutionsByContext.response")
    resp = cls.FromString((MLMD / "GetExecutionsByContext.response.bin").read_bytes())
    train = next(e for e in resp.executions if e.id == 102)
    outputs = mlmd.value_of(train.custom_properties["outputs"])
    assert outputs == {"accuracy": 0.91, "summary": {"rows": 100.0, "epochs": 2.0}, "ok": True}
    assert mlmd.Execution.State.Name(train.last_known_state) == "COMPLETE"


# ---- Context field numbers, proved on bytes written by hand (not by the definitions under test) --------------------
# ml_metadata/proto/metadata_store.proto: Context{id=1, type_id=2, name=3, properties=4, custom_properties=5,
# type=6, create_time_since_epoch=7, last_update_time_since_epoch=8, external_id=9}.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _int_field(number: int, value: int) -> bytes:
    return _tag(number, 0) + _varint(value)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _fields(data: bytes) -> dict[int, list]:
    """Parse one message's top-level fields: number -> [int or bytes, ...] (varint and length-delimited only)."""
    out: dict[int, list] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.setdefault(number, []).append(varint())
        elif wire == 2:
            size = varint()
            out.setdefault(number, []).append(data[pos:pos + size])
            pos += size
        else:
            raise AssertionError(f"unexpected wire type {wire} for field {number}")
    return out


def _string_value(text: str) -> bytes:
    return _len_field(3, text.encode())  # ml_metadata.Value.string_value = 3


def _map_entry(key: str, value: bytes) -> bytes:
    return _len_field(1, key.encode()) + _len_field(2, value)


CONTEXT_BYTES = b"".join([
    _int_field(1, 41), _int_field(2, 12), _len_field(3, b"run-5b2d"),
    _len_field(4, _map_entry("kind", _string_value("pipeline"))),
    _len_field(5, _map_entry("namespace", _string_value("kubeflow"))),
    _len_field(6, b"system.PipelineRun"), _int_field(7, 1_767_225_600_000), _int_field(8, 1_767_225_660_000),
    _len_field(9, b"ext-7"),
])


def test_context_decodes_hand_encoded_bytes_with_mlmd_field_numbers():
    _, response_cls = mlmd.METHODS["GetContextByTypeAndName"]
    resp = response_cls.FromString(_len_field(1, CONTEXT_BYTES))  # GetContextByTypeAndNameResponse.context = 1
    ctx = resp.context
    assert (ctx.id, ctx.type_id, ctx.name, ctx.type) == (41, 12, "run-5b2d", "system.PipelineRun")
    assert ctx.create_time_since_epoch == 1_767_225_600_000
    assert ctx.last_update_time_since_epoch == 1_767_225_660_000
    assert ctx.external_id == "ext-7"
    assert mlmd.value_of(ctx.properties["kind"]) == "pipeline"
    assert mlmd.value_of(ctx.custom_properties["namespace"]) == "kubeflow"
    known = mlmd.Context()
    known.CopyFrom(ctx)
    known.DiscardUnknownFields()
    assert known.ByteSize() == len(CONTEXT_BYTES)  # every hand-written field landed on a declared one


def test_context_encodes_times_and_external_id_under_mlmd_numbers():
    encoded = mlmd.Context(create_time_since_epoch=7, last_update_time_since_epoch=8, external_id="x")
    assert _fields(encoded.SerializeToString()) == {7: [7], 8: [8], 9: [b"x"]}


def test_sandbox_mlmd_answers_context_bytes_with_mlmd_numbers(sandbox):
    """The sandbox's gRPC MLMD, asked and read as raw bytes, puts the context's times at fields 7 and 8."""
    import grpc
    import requests

    run = requests.post(f"{sandbox.url}/_sandbox/bulk/pipelines", json={"count": 1, "prefix": "ctx"}, timeout=5).json()
    run_id = requests.post(f"{sandbox.url}/_sandbox/bulk/runs", timeout=5, json={
        "count": 1, "pipeline_version_id": run["pipelines"][0]["pipeline_version_id"]}).json()["run_ids"][0]
    assert requests.put(f"{sandbox.url}/_sandbox/runs/{run_id}/mlmd", json={"tasks": []}, timeout=5).ok
    request = _len_field(1, b"system.PipelineRun") + _len_field(2, run_id.encode())
    with grpc.insecure_channel(sandbox.mlmd_endpoint) as channel:
        call = channel.unary_unary(f"/{mlmd.SERVICE}/GetContextByTypeAndName")  # bytes in, bytes out
        answer = call(request, timeout=5)
    ctx = _fields(_fields(answer)[1][0])
    assert ctx[3] == [run_id.encode()] and ctx[6] == [b"system.PipelineRun"]
    assert ctx[7][0] > 1_600_000_000_000 and ctx[8] == ctx[7]  # milliseconds since the epoch
    assert 9 not in ctx  # KFP sets no external_id on a run context
