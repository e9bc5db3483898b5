"""The minimal MLMD messages decode bytes serialized by the real ml-metadata library (tests/fixtures/mlmd)."""
from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from kfadapter.outputs import mlmd

from .conftest import FIXTURES

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
