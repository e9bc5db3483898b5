"""Pure: local IR validation, fitting a package to an older server, and the server profile from healthz."""
from __future__ import annotations

import pytest
import yaml

from kfadapter.packages import check as pc
from kfadapter.packages import parsing as pl
from kfadapter.core.errors import AdapterError, BadRequest
from kfadapter.kfconnect.server_profile import ServerInfo, ServerProfile

from tests.conftest import package


@pytest.mark.parametrize("health, version, cascade, read_status, logs", [
    ({"tag_name": "2.3.0"}, (2, 3, 0), False, {400}, False),
    ({"tag_name": "2.5.0"}, (2, 5, 0), False, {400}, True),
    ({"tag_name": "2.14.0"}, (2, 14, 0), True, {400}, True),
    ({"tag_name": "2.15.1"}, (2, 15, 1), True, {500}, True),
    ({"tag_name": "v2.17.0"}, (2, 17, 0), True, {500}, True),
    ({"tag_name": "2.5.0-sandbox"}, (2, 5, 0), False, {400}, True),
    ({"tag_name": "dev"}, None, True, {500}, True),  # a build of its own counts as the newest
    ({}, None, True, {500}, True),
    # the UI proxy's own healthz: apiServerTagName, no tag_name
    ({"apiServerReady": True, "apiServerTagName": "2.3.0"}, (2, 3, 0), False, {400}, False),
    # unlabelled official images (2.5.0-2.15.x): the range their healthz allows
    ({"tag_name": "unknown"}, None, False, {400}, True),
    ({"tag_name": "unknown", "pipeline_store": "database"}, None, True, {400, 500}, True),
    ({"apiServerReady": True, "apiServerTagName": "unknown", "pipelineStore": "database"}, None, True, {400, 500},
     True),
])
def test_profile_from_healthz(health, version, cascade, read_status, logs):
    profile = ServerProfile.from_healthz(health)
    assert profile.version == version
    assert (profile.supports_cascade, profile.has_pipeline_name) == (cascade, cascade)
    assert profile.read_unrecorded_statuses == read_status and profile.has_executor_logs == logs
    assert profile.door == ("ui_proxy" if "apiServerReady" in health else "api_server")


def test_a_pinned_version_wins_and_needs_no_healthz():
    profile = ServerProfile.from_healthz({"tag_name": "unknown"}, pinned="2.3")
    assert profile.version == (2, 3, 0) and profile.source == "KFADAPTER_KFP_VERSION"
    assert profile.ignores_new_resource_fields and profile.strict_executor_config
    info = ServerInfo(lambda: pytest.fail("healthz asked"), pinned="2.14")
    assert info.get().version == (2, 14, 0) and info.get().label == "KFP 2.14"


def test_unlabelled_ranges_and_what_differs_inside_them():
    old = ServerProfile.from_healthz({"tag_name": "unknown"})
    assert old.version_text == "2.5-2.13" and old.label == "KFP 2.5-2.13 (unlabelled)"
    assert old.unknown_ir_fields == {"taskConfigPassthroughs", "TASK_CONFIG", "literals"}
    assert old.maybe_unknown_ir_fields == frozenset()  # nothing the adapter models differs across 2.5-2.13
    new = ServerProfile.from_healthz({"tag_name": "unknown", "pipeline_store": "database"})
    assert new.unknown_ir_fields == {"literals"}  # refused by 2.14 and 2.15 alike
    assert new.maybe_unknown_ir_fields == {"taskConfigPassthroughs", "TASK_CONFIG"}  # 2.14 refuses, 2.15 takes
    narrowed = new.narrowed((2, 14, 99))
    assert narrowed.unknown_ir_fields == {"literals", "taskConfigPassthroughs", "TASK_CONFIG"}
    assert narrowed.read_unrecorded_statuses == {400} and narrowed.source == "answers"
    assert not old.ignores_new_resource_fields and not old.strict_executor_config


def test_a_ui_answer_without_the_api_server_teaches_nothing():
    answers = [{"apiServerReady": False, "buildDate": ""}, {"apiServerReady": True, "apiServerTagName": "2.3.0"}]
    info = ServerInfo(lambda: answers.pop(0))
    assert info.get().version is None and info.get().version == (2, 3, 0) and not answers


@pytest.mark.parametrize("tag, field, unknown", [
    ("2.3.0", "cacheKey", True), ("2.5.0", "cacheKey", False),
    ("2.3.0", "resourceCpuLimit", False),  # inside deploymentSpec, a Struct: accepted (and ignored) by 2.3
    ("2.14.0", "taskConfigPassthroughs", True), ("2.15.0", "taskConfigPassthroughs", False),
    ("2.15.0", "literals", True), ("2.16.0", "literals", False), ("2.17.0", "TASK_CONFIG", False),
])
def test_unknown_fields_by_version(tag, field, unknown):
    assert (field in ServerProfile.from_healthz({"tag_name": tag}).unknown_ir_fields) is unknown


def test_server_info_asks_once_and_again_after_a_failure():
    calls = []

    def fetch():
        calls.append(1)
        if len(calls) == 1:
            raise AdapterError("down")
        return {"tag_name": "2.3.0"}

    info = ServerInfo(fetch)
    assert info.get().version is None  # failed: the newest is assumed, nothing cached
    assert info.get().version == (2, 3, 0) and info.get().version == (2, 3, 0)
    assert len(calls) == 2


def _resources(ir: dict, executor: str = "exec-train") -> dict:
    return ir["deploymentSpec"]["executors"][executor]["container"]["resources"]


def test_fit_leaves_a_package_with_both_resource_fields_alone():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))  # kfp SDK >= 2.13: old and new fields
    assert pc.fit_ir(ir, frozenset(), "KFP 2.3.0", old_resources=True) == (ir, [])


def test_fit_copies_constant_limits_into_the_old_fields_for_2_3():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    res = _resources(ir)
    for old in ("cpuLimit", "cpuRequest", "memoryLimit", "memoryRequest"):
        del res[old]  # as kfp SDK 2.10-2.12 wrote it
    res["accelerator"] = {"resourceType": "nvidia.com/gpu", "resourceCount": "2"}
    fitted, changed = pc.fit_ir(ir, frozenset(), "KFP 2.3.0", old_resources=True)
    assert "cpuLimit" not in _resources(ir)  # a copy was fitted
    out = _resources(fitted)
    assert (out["cpuLimit"], out["cpuRequest"], out["memoryLimit"], out["memoryRequest"]) == (
        0.5, 0.25, 1.073741824, 0.536870912)  # as kfp's compiler_utils converts 500m, 250m, 1Gi, 512Mi
    assert out["accelerator"] == {"resourceType": "nvidia.com/gpu", "resourceCount": "2", "type": "nvidia.com/gpu",
                                  "count": 2}
    assert len(changed) == 6 and all(c.startswith("deploymentSpec.executors.exec-train") for c in changed)
    assert pc.fit_ir(ir, frozenset(), "KFP 2.17.0") == (ir, [])  # newer servers apply the new fields


def test_a_limit_from_a_parameter_is_refused_for_2_3_naming_it():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    res = _resources(ir)
    del res["cpuLimit"]
    res["resourceCpuLimit"] = "{{$.inputs.parameters['pipelinechannel--cpu']}}"
    with pytest.raises(BadRequest) as err:
        pc.fit_ir(ir, frozenset(), "KFP 2.3.0", old_resources=True)
    assert err.value.code == "kfp_would_ignore" and "would accept it but not apply it" in err.value.message
    assert err.value.details == {"field": "deploymentSpec.executors.exec-train.container.resources.resourceCpuLimit",
                                 "kfp_version": "KFP 2.3.0"}


def test_fit_refuses_a_parameter_type_the_server_does_not_know():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    ir["root"]["inputDefinitions"]["parameters"]["cfg"] = {"parameterType": "TASK_CONFIG"}
    with pytest.raises(BadRequest) as err:
        pc.fit_ir(ir, ServerProfile.from_healthz({"tag_name": "2.14.0"}).unknown_ir_fields, "KFP 2.14.0")
    assert err.value.code == "package_too_new" and "TASK_CONFIG" in err.value.details["field"]


def test_a_typed_field_2_3_does_not_know_is_refused_naming_field_and_version():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    ir["root"]["dag"]["tasks"]["train"]["cachingOptions"] = {"enableCache": True, "cacheKey": "k"}
    with pytest.raises(BadRequest) as err:
        ServerProfile.from_healthz({"tag_name": "2.3.0"}).fit_upload(pl.load_package(yaml.safe_dump(ir).encode()), b"")
    assert err.value.code == "package_too_new"
    assert err.value.details == {"field": "root.dag.tasks.train.cachingOptions.cacheKey", "kfp_version": "KFP 2.3.0"}


def test_validate_accepts_the_fixtures():
    for name in ("qoe_train_v2.yaml", "add_v2.yaml", "resource_setters_v2.yaml", "slow_sleep_v2.yaml"):
        pc.validate_ir(yaml.safe_load(package(name)))
