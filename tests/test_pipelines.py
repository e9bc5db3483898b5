"""Pure pipeline logic: sniffing, parameters, argument mapping and conversion, version numbers."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
import yaml

from kfadapter.packages import parsing as pl
from kfadapter.core.errors import BadRequest, PayloadTooLarge
from kfadapter.settings import DEFAULT_ARGUMENT_MAPPING

from tests.conftest import package


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


V2_YAML = package("qoe_train_v2.yaml")
V1_YAML = package("qoe_train_v1_argo.yaml")


@pytest.mark.parametrize("data, container, kind", [
    (V2_YAML, "yaml", pl.V2),
    (V1_YAML, "yaml", pl.V1),
    (json.dumps(yaml.safe_load(V2_YAML)).encode(), "yaml", pl.V2),
    (_zip({"pipeline.yaml": V2_YAML}), "zip", pl.V2),
    (_targz({"pipeline.yaml": V1_YAML}), "tar.gz", pl.V1),
])
def test_load_package_sniffs_every_format(data, container, kind):
    pkg = pl.load_package(data)
    assert (pkg.container, pkg.kind) == (container, kind)
    assert pkg.suffix == {"yaml": ".yaml", "zip": ".zip", "tar.gz": ".tar.gz"}[container]


def test_load_package_names_the_pipeline():
    assert pl.load_package(V2_YAML).name == "qoe-train-v2"
    assert pl.load_package(V1_YAML).name == "qoe-train-v1-"


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty"),
    (b"just: [unclosed", "not valid YAML"),
    (b"- a\n- b\n", "object"),
    (b"apiVersion: v1\nkind: ConfigMap\n", "neither"),
    (b"\xff\xfe\x00garbage", "YAML"),
    (_zip({"a.yaml": V2_YAML, "b.yaml": V2_YAML}), "exactly one"),
    (_zip({}), "exactly one"),
    (b"PK\x03\x04 truncated", "zip"),
    (b"\x1f\x8b\x08 truncated", "tar.gz"),
    (_targz({"a.yaml": V2_YAML, "b.yaml": V2_YAML}), "exactly one"),
])
def test_load_package_rejects_what_kfp_cannot_run(data, fragment):
    with pytest.raises(BadRequest) as info:
        pl.load_package(data)
    assert fragment in info.value.message
    assert info.value.code == "invalid_package"


def test_load_package_caps_size():
    with pytest.raises(PayloadTooLarge):
        pl.load_package(b"#" * (32 * 1024 * 1024 + 1))


def test_platform_spec_document_is_kept_beside_the_ir():
    two_docs = V2_YAML + b"\n---\nplatforms:\n  kubernetes: {}\n"
    pkg = pl.load_package(two_docs)
    assert set(pkg.spec) == {"pipeline_spec", "platform_spec"}
    assert pl.spec_kind(pkg.spec) == pl.V2
    assert [p.name for p in pl.parameters_of(pkg.spec)][:2] == ["epochs", "featurepath"]


def test_v2_parameters_have_types_and_defaults():
    params = {p.name: p for p in pl.parameters_of(yaml.safe_load(V2_YAML))}
    assert set(params) == {"epochs", "featurepath", "learning_rate", "modelname", "modelversion", "note",
                           "options", "shuffle", "tags"}
    assert params["epochs"] == pl.Parameter("epochs", "NUMBER_INTEGER", 2, True)
    assert isinstance(params["epochs"].default, int)  # the compiler wrote 2.0
    assert params["featurepath"] == pl.Parameter("featurepath", "STRING", None, False)
    assert params["learning_rate"].default == 0.001
    assert params["note"] == pl.Parameter("note", "STRING", None, True)
    assert params["options"].default == {"k": 1.0} and params["options"].type == "STRUCT"
    assert params["shuffle"].default is True and params["tags"].default == ["a"]


def test_v1_parameters_come_from_the_kfp_annotation():
    params = {p.name: p for p in pl.parameters_of(yaml.safe_load(V1_YAML))}
    assert params == {
        "n": pl.Parameter("n", "NUMBER_INTEGER", 75, True),
        "epochs": pl.Parameter("epochs", "NUMBER_INTEGER", 3, True),
        "lr": pl.Parameter("lr", "NUMBER_DOUBLE", 0.01, True),
        "trainingjob_id": pl.Parameter("trainingjob_id", "STRING", "tj-1", True),
    }


def test_v1_parameters_without_annotation_fall_back_to_workflow_arguments():
    wf = yaml.safe_load(V1_YAML)
    del wf["metadata"]["annotations"]["pipelines.kubeflow.org/pipeline_spec"]
    params = pl.parameters_of(wf)
    assert [(p.name, p.type, p.default) for p in params] == [
        ("n", "STRING", "75"), ("epochs", "STRING", "3"), ("lr", "STRING", "0.01"),
        ("trainingjob_id", "STRING", "tj-1")]


def test_spec_kind_of_unknown_spec():
    assert pl.spec_kind({"foo": 1}) is None and pl.spec_kind(None) is None
    assert pl.parameters_of({"foo": 1}) == []


@pytest.mark.parametrize("ptype, raw, expected", [
    ("NUMBER_INTEGER", "5", 5), ("NUMBER_INTEGER", " 7 ", 7), ("NUMBER_INTEGER", "3.0", 3), ("NUMBER_INTEGER", 4, 4),
    ("NUMBER_DOUBLE", "0.5", 0.5), ("NUMBER_DOUBLE", "1e-3", 0.001), ("NUMBER_DOUBLE", 2, 2.0),
    ("BOOLEAN", "true", True), ("BOOLEAN", "False", False), ("BOOLEAN", "1", True), ("BOOLEAN", False, False),
    ("LIST", '["a", 1]', ["a", 1]), ("LIST", [1], [1]),
    ("STRUCT", '{"k": 2}', {"k": 2}), ("STRUCT", {"k": 1}, {"k": 1}),
    ("STRING", "x", "x"), ("STRING", 5, "5"), ("STRING", {"a": 1}, '{"a": 1}'),
])
def test_convert_value(ptype, raw, expected):
    value = pl.convert_value(ptype, raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("ptype, raw", [
    ("NUMBER_INTEGER", "abc"), ("NUMBER_INTEGER", "2.5"), ("NUMBER_INTEGER", True), ("NUMBER_INTEGER", "nan"),
    ("NUMBER_DOUBLE", "x"), ("NUMBER_DOUBLE", "inf"), ("NUMBER_DOUBLE", True),
    ("BOOLEAN", "maybe"), ("LIST", '{"a": 1}'), ("LIST", "[1,"), ("STRUCT", "[1]"), ("STRUCT", "x"),
])
def test_convert_value_refuses(ptype, raw):
    with pytest.raises(ValueError):
        pl.convert_value(ptype, raw)


TM_ARGS = {"epochs": "5", "trainingjob_id": "tj42", "featuregroup_name": "fg", "modelName": "qoe",
           "modelVersion": "3", "modellocation": "s3://x"}


def test_build_arguments_reproduces_the_oran_mapping_for_v2():
    params = pl.parameters_of(yaml.safe_load(V2_YAML))
    plan = pl.build_arguments(params, TM_ARGS, trainingjob_id="tj42", mapping=DEFAULT_ARGUMENT_MAPPING,
                              kind=pl.V2)
    assert plan.values == {"epochs": 5, "featurepath": "fg_tj42", "modelname": "qoe", "modelversion": "3"}
    assert sorted(plan.derived) == ["featurepath", "modelname", "modelversion"]
    assert plan.ignored == ["featuregroup_name", "modelName", "modelVersion", "modellocation", "trainingjob_id"]


def test_build_arguments_caller_value_wins_over_mapping():
    params = pl.parameters_of(yaml.safe_load(V2_YAML))
    plan = pl.build_arguments(params, TM_ARGS | {"featurepath": "mine", "shuffle": "false", "tags": '["x"]'},
                              trainingjob_id="tj42", mapping=DEFAULT_ARGUMENT_MAPPING, kind=pl.V2)
    assert plan.values["featurepath"] == "mine" and plan.values["shuffle"] is False
    assert plan.values["tags"] == ["x"] and "featurepath" not in plan.derived


def test_build_arguments_v1_values_are_text():
    params = pl.parameters_of(yaml.safe_load(V1_YAML))
    plan = pl.build_arguments(params, {"epochs": "4", "lr": "0.5", "trainingjob_id": "tj9"},
                              trainingjob_id="tj9", mapping=DEFAULT_ARGUMENT_MAPPING, kind=pl.V1)
    assert plan.values == {"epochs": "4", "lr": "0.5", "trainingjob_id": "tj9"}


def test_build_arguments_names_every_problem():
    params = pl.parameters_of(yaml.safe_load(V2_YAML))
    with pytest.raises(BadRequest) as info:
        pl.build_arguments(params, {"epochs": "many", "options": "[1]"}, trainingjob_id="t",
                           mapping={}, kind=pl.V2)
    err = info.value
    assert err.details["missing"] == ["featurepath"]
    assert set(err.details["invalid"]) == {"epochs", "options"}
    assert "featurepath" in err.message and "epochs" in err.message and "options" in err.message


def test_mapping_needs_every_template_field():
    params = [pl.Parameter("featurepath", "STRING")]
    with pytest.raises(BadRequest) as info:  # featuregroup_name missing: no half-built featurepath
        pl.build_arguments(params, {}, trainingjob_id="t", mapping=DEFAULT_ARGUMENT_MAPPING, kind=pl.V2)
    assert info.value.details["missing"] == ["featurepath"]


@pytest.mark.parametrize("names, floor, expected", [
    ([], 1, 2), (["pipe"], 1, 2), (["pipe", "2", "3"], 1, 4), (["pipe", "3"], 1, 4),
    (["pipe", "10", "9"], 1, 11), (["pipe", "007", "v3", None], 1, 2), (["pipe", "2"], 7, 8),
])
def test_next_version_number(names, floor, expected):
    assert pl.next_version_number(names, floor) == expected


def test_version_sort_is_numeric():
    versions = [{"display_name": n, "created_at": c} for n, c in
                [("10", "2026-01-03"), ("pipe", "2026-01-01"), ("2", "2026-01-02"), ("9", "2026-01-04")]]
    assert [v["display_name"] for v in sorted(versions, key=pl.version_sort_key)] == ["pipe", "2", "9", "10"]
