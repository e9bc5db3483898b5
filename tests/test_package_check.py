"""Pure: local IR validation, fitting a package to an older server, and the server profile from healthz."""
from __future__ import annotations

import pytest
import yaml

from kfadapter.packages import check as pc
from kfadapter.packages import parsing as pl
from kfadapter.core.errors import AdapterError, BadRequest
from kfadapter.kfconnect.server_profile import ServerInfo, ServerProfile

from tests.conftest import package


@pytest.mark.parametrize("tag, version, cascade, read_status, logs", [
    ("2.3.0", (2, 3, 0), False, 400, False),
    ("2.5.0", (2, 5, 0), False, 400, True),
    ("2.14.0", (2, 14, 0), True, 400, True),
    ("2.15.1", (2, 15, 1), True, 500, True),
    ("v2.17.0", (2, 17, 0), True, 500, True),
    ("2.5.0-sandbox", (2, 5, 0), False, 400, True),
    ("unknown", None, True, 500, True),  # an unknown tag counts as the newest
    (None, None, True, 500, True),
])
def test_profile_from_healthz(tag, version, cascade, read_status, logs):
    profile = ServerProfile.from_healthz({"tag_name": tag} if tag is not None else {})
    assert profile.version == version
    assert (profile.supports_cascade, profile.has_pipeline_name) == (cascade, cascade)
    assert profile.read_unrecorded_status == read_status and profile.has_executor_logs == logs


@pytest.mark.parametrize("tag, field, unknown", [
    ("2.3.0", "resourceCpuLimit", True), ("2.5.0", "resourceCpuLimit", False),
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


def test_fit_drops_only_what_an_older_field_holds():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    accel = ir["deploymentSpec"]["executors"]["exec-report"]["container"]["resources"]
    accel["accelerator"] = {"type": "nvidia.com/gpu", "count": "1", "resourceType": "nvidia.com/gpu",
                            "resourceCount": "1"}
    fitted, dropped = pc.fit_ir(ir, ServerProfile.from_healthz({"tag_name": "2.3.0"}).unknown_ir_fields, "KFP 2.3.0")
    assert sorted(p.rsplit(".", 1)[1] for p in dropped) == sorted(
        ["resourceCpuLimit", "resourceCpuLimit", "resourceCpuRequest", "resourceMemoryLimit",
         "resourceMemoryRequest", "resourceType", "resourceCount"])
    assert "resourceCpuLimit" in ir["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]  # a copy
    res = fitted["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert res == {"cpuLimit": 0.5, "cpuRequest": 0.25, "memoryLimit": 1.073741824, "memoryRequest": 0.536870912}
    assert pc.fit_ir(ir, frozenset(), "KFP 2.17.0") == (ir, [])


def test_fit_refuses_a_parameter_type_the_server_does_not_know():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    ir["root"]["inputDefinitions"]["parameters"]["cfg"] = {"parameterType": "TASK_CONFIG"}
    with pytest.raises(BadRequest) as err:
        pc.fit_ir(ir, ServerProfile.from_healthz({"tag_name": "2.14.0"}).unknown_ir_fields, "KFP 2.14.0")
    assert err.value.code == "package_too_new" and "TASK_CONFIG" in err.value.details["field"]


def test_fit_upload_keeps_a_platform_spec_document():
    ir = yaml.safe_load(package("resource_setters_v2.yaml"))
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    data = yaml.safe_dump_all([ir, platform]).encode()
    loaded = pl.load_package(data)
    fitted, sent, dropped = ServerProfile.from_healthz({"tag_name": "2.3.0"}).fit_upload(loaded, data)
    docs = list(yaml.safe_load_all(sent))
    assert len(docs) == 2 and docs[1] == platform and dropped
    assert fitted.spec["platform_spec"] == platform and fitted.container == "yaml"
    assert "resourceCpuLimit" not in sent.decode()


def test_validate_accepts_the_fixtures():
    for name in ("qoe_train_v2.yaml", "add_v2.yaml", "resource_setters_v2.yaml", "slow_sleep_v2.yaml"):
        pc.validate_ir(yaml.safe_load(package(name)))
