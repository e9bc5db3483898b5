"""kfp-kubernetes executor configs against KFP 2.3's strict driver: the sandbox fails the task as the driver does,
and the adapter fits the platform spec first (a `...Parameter` twin left out) or refuses it naming the field."""
from __future__ import annotations

import copy

import pytest
import requests
import yaml

from kfadapter.core.errors import BadRequest
from kfadapter.packages import platform_fit as pf
from kfadapter.sandbox import driver

from .conftest import across_versions, package, upload

API = "/apis/v2beta1"
ADD = yaml.safe_load(package("add_v2.yaml"))
# What kfp-kubernetes 2.17 writes for use_secret_as_env(task, "creds", {...}), use_secret_as_volume(task, "tls",
# ...), mount_pvc(task, "data", "/data") and use_config_map_as_env(task, "cfg", {...}) on the task `add`.
K8S = {
    "secretAsEnv": [{"secretName": "creds", "keyToEnv": [{"secretKey": "user", "envVar": "USER"}], "optional": False,
                     "secretNameParameter": {"runtimeValue": {"constant": "creds"}}}],
    "secretAsVolume": [{"secretName": "tls", "mountPath": "/tls", "optional": False,
                        "secretNameParameter": {"runtimeValue": {"constant": "tls"}}}],
    "pvcMount": [{"constant": "data", "mountPath": "/data", "pvcNameParameter": {"runtimeValue": {"constant": "data"}}}],
    "configMapAsEnv": [{"configMapName": "cfg", "keyToEnv": [{"configMapKey": "k", "envVar": "K"}],
                        "configMapNameParameter": {"runtimeValue": {"constant": "cfg"}}}],
}


def platform(config: dict) -> dict:
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-add": config}}}}}


def with_platform(config: dict) -> bytes:
    return yaml.safe_dump_all([ADD, platform(config)], sort_keys=False).encode()


# ---- the driver of each version (sandbox/driver.py) -----------------------------------------------------------

def test_2_3_driver_refuses_what_current_kfp_kubernetes_writes():
    [(task, error)] = driver.task_errors(ADD, platform(K8S), strict=True).items()
    assert task == "add" and error.startswith('failed to unmarshal Kubernetes config, error: unknown field "')
    # golang/protobuf's jsonpb names one of the unknown fields (Go map order): optional or secretNameParameter
    assert error.endswith(' in kfp_kubernetes.SecretAsEnv') and ("optional" in error or "NameParameter" in error)
    assert driver.task_errors(ADD, platform(K8S), strict=False) == {}  # 2.5+: util.UnmarshalString ignores them
    old = {"secretAsEnv": [{"secretName": "creds", "keyToEnv": [{"secretKey": "u", "envVar": "U"}]}],
           "pvc_mount": [{"constant": "data", "mount_path": "/data"}]}  # proto names are accepted too
    assert driver.task_errors(ADD, platform(old), strict=True) == {}


@pytest.mark.execute
def test_an_executed_task_fails_on_2_3_as_the_driver_does(sandbox_servers, tmp_path):
    from kfadapter.sandbox import SandboxServer

    with SandboxServer(execute=True, workers=1, workdir=str(tmp_path), kfp_version="2.3") as kfp:
        resp = requests.post(f"{kfp.url}{API}/pipelines/upload", params={"name": "k8s"},
                             files={"uploadfile": ("p.yaml", with_platform(K8S))}, timeout=10)
        assert resp.status_code == 200, resp.text
        [version] = requests.get(f"{kfp.url}{API}/pipelines/{resp.json()['pipeline_id']}/versions",
                                 timeout=5).json()["pipeline_versions"]
        run = requests.post(f"{kfp.url}{API}/runs", json={
            "display_name": "r", "runtime_config": {"parameters": {"a": 1.5, "b": 2.5}},
            "pipeline_version_reference": {"pipeline_id": version["pipeline_id"],
                                           "pipeline_version_id": version["pipeline_version_id"]}}, timeout=10).json()
        assert kfp.executor.wait(run["run_id"], timeout=120)
        done = requests.get(f"{kfp.url}{API}/runs/{run['run_id']}", timeout=5).json()
        assert done["state"] == "FAILED"
        tasks = {t["display_name"]: t["state"] for t in done["run_details"]["task_details"]}
        assert tasks.get("add") == "FAILED" and tasks.get("stats") != "SUCCEEDED"
        # the driver's reason is the failed step's log; the user's code never ran
        [log] = [p.read_text() for p in tmp_path.rglob("task.log") if p.parent.name == "add"]
        assert log.startswith("KFP driver failed: failed to unmarshal Kubernetes config, error: unknown field")


# ---- the adapter fits the platform spec -----------------------------------------------------------------------

def test_fit_leaves_out_the_twins_that_hold_the_old_fields_value():
    fitted, dropped = pf.fit_platform(platform(K8S), "KFP 2.3.0", strict_driver=True, old_spec=True)
    config = fitted["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-add"]
    assert driver.task_errors(ADD, fitted, strict=True) == {}
    assert config["secretAsEnv"] == [{"secretName": "creds", "keyToEnv": [{"secretKey": "user", "envVar": "USER"}]}]
    assert config["pvcMount"] == [{"constant": "data", "mountPath": "/data"}]
    assert sorted(p.rsplit(".", 1)[1] for p in dropped) == [
        "configMapNameParameter", "optional", "pvcNameParameter", "secretNameParameter", "secretNameParameter"]
    assert "secretNameParameter" in K8S["secretAsEnv"][0]  # a copy was fitted
    assert pf.fit_platform(platform(K8S), "KFP 2.5.0", strict_driver=False, old_spec=False) == (platform(K8S), [])


@pytest.mark.parametrize("change, field", [
    # a secret name from a pipeline parameter: 2.3's SecretAsEnv has no place for it
    (lambda c: c["secretAsEnv"][0].update(secretName="", secretNameParameter={"componentInputParameter": "a"}),
     "secretAsEnv[0].secretNameParameter"),
    (lambda c: c["secretAsVolume"][0].update(optional=True, secretNameParameter={"runtimeValue": {"constant": "x"}}),
     "secretAsVolume[0].secretNameParameter"),  # holds another name than secretName
    (lambda c: c.update(securityContext={"runAsUser": 1000}), "securityContext"),  # kfp-kubernetes 2.17
    (lambda c: c["pvcMount"][0].update(subPath="sub"), "pvcMount[0].subPath"),
])
def test_what_2_3_cannot_take_is_a_400_naming_the_field(change, field):
    config = copy.deepcopy(K8S)
    change(config)
    with pytest.raises(BadRequest) as err:
        pf.fit_platform(platform(config), "KFP 2.3.0", strict_driver=True, old_spec=True)
    assert err.value.code == "package_too_new"
    assert err.value.details == {"field": f"platforms.kubernetes.deploymentSpec.executors.exec-add.{field}",
                                 "kfp_version": "KFP 2.3.0"}


def test_a_platform_spec_2_3_would_skip_whole_is_refused_unless_the_extra_is_empty():
    doc = platform({})
    doc["platforms"]["kubernetes"]["pipelineConfig"] = {"workspace": {"size": "1Gi"}}
    with pytest.raises(BadRequest) as err:
        pf.fit_platform(doc, "KFP 2.3.0", strict_driver=True, old_spec=True)
    assert err.value.code == "kfp_would_ignore" and err.value.details["field"] == "platforms.kubernetes.pipelineConfig"
    doc["platforms"]["kubernetes"]["pipelineConfig"] = {}
    fitted, dropped = pf.fit_platform(doc, "KFP 2.3.0", strict_driver=True, old_spec=True)
    assert dropped == ["platforms.kubernetes.pipelineConfig"] and fitted == platform({})


@across_versions
def test_upload_through_the_adapter_fits_the_platform_spec(client, sandbox, kfp_version):
    resp = upload(client, "k8s", with_platform(K8S))
    assert resp.status_code == 200, resp.json
    state = sandbox.app.extensions["sandbox"]
    [stored] = [v["_package"] for v in state.versions.values()]
    config = stored.spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-add"]
    strict = kfp_version == "2.3"
    assert ("secretNameParameter" in config["secretAsEnv"][0]) is not strict  # sent as is where the driver takes it
    assert driver.task_errors(stored.ir, stored.spec["platform_spec"], strict=strict) == {}
    bad = copy.deepcopy(K8S)
    bad["secretAsEnv"][0].update(secretName="", secretNameParameter={"componentInputParameter": "a"})
    resp = upload(client, "k8s-param", with_platform(bad))
    if strict:
        assert resp.status_code == 400 and resp.json["code"] == "package_too_new", resp.json
        assert resp.json["details"]["field"].endswith("exec-add.secretAsEnv[0].secretNameParameter")
    else:
        assert resp.status_code == 200, resp.json


@pytest.mark.parametrize("version", ["2.3", "2.17"])
def test_2_3_skips_a_platform_spec_it_cannot_parse_at_upload(sandbox_servers, version):
    kfp = sandbox_servers(version)
    kfp.reset()
    doc = platform(K8S)
    doc["platforms"]["kubernetes"]["pipelineConfig"] = {"workspace": {"size": "1Gi"}}  # unknown to 2.3's copy
    data = yaml.safe_dump_all([ADD, doc], sort_keys=False).encode()
    resp = requests.post(f"{kfp.url}{API}/pipelines/upload", params={"name": "ws"},
                         files={"uploadfile": ("p.yaml", data)}, timeout=10)
    assert resp.status_code == 200, resp.text  # no error: IsPlatformSpecWithKubernetesConfig just says no
    [version_doc] = requests.get(f"{kfp.url}{API}/pipelines/{resp.json()['pipeline_id']}/versions",
                                 timeout=5).json()["pipeline_versions"]
    kept = "platform_spec" in version_doc["pipeline_spec"]
    assert kept is (version != "2.3")
