"""The two doors of a real KFP: the API server (healthz `tag_name`) and the ml-pipeline-ui proxy under `/pipeline`
(its own healthz: `apiServerTagName`, `apiServerReady`, no `tag_name`, 200 while the API server is down), and
the unlabelled official images (2.5.0-2.15.x say `tag_name: "unknown"`). The sandbox plays both doors; the adapter
learns the version through either, from its range when unlabelled, or from KFADAPTER_KFP_VERSION."""
from __future__ import annotations

import dataclasses

import pytest
import requests
import yaml

from kfadapter.app import create_app
from kfadapter.sandbox import SandboxServer
from kfadapter.settings import Settings, SettingsError

from .conftest import door_url, package, upload

API = "/apis/v2beta1"
UI_KEYS = {"buildDate", "frontendCommitHash", "frontendTagName", "apiServerReady", "apiServerCommitHash",
           "apiServerTagName", "apiServerMultiUser", "multi_user"}


def fault(sandbox, **spec) -> None:
    requests.post(f"{sandbox.url}/_sandbox/faults", json=spec, timeout=5).raise_for_status()


def clear_faults(sandbox) -> None:
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()


@pytest.fixture(params=["2.3", "2.14", "2.17"])
def kfp(request, sandbox_servers):
    server = sandbox_servers(request.param)
    server.reset()
    yield server
    clear_faults(server)


# ---- the sandbox's doors ----------------------------------------------------------------------------------------

def test_the_ui_proxy_answers_healthz_itself(kfp):
    ui = requests.get(f"{kfp.url}/pipeline{API}/healthz", timeout=5)
    api = requests.get(f"{kfp.url}{API}/healthz", timeout=5).json()
    assert ui.status_code == 200 and "tag_name" not in ui.json() and "tag_name" in api
    body = ui.json()
    newer = kfp.kfp_version != "2.3"  # HealthzStats.pipelineStore exists from 2.14
    assert set(body) == UI_KEYS | ({"pipelineStore"} if newer else set())
    assert body["apiServerReady"] is True and body["apiServerTagName"] == api["tag_name"]
    assert body["apiServerCommitHash"] == api["commit_sha"] and body["multi_user"] is False
    # the v1beta1 healthz is the UI's too; every other /pipeline path reaches the API server
    assert "apiServerReady" in requests.get(f"{kfp.url}/pipeline/apis/v1beta1/healthz", timeout=5).json()
    assert requests.get(f"{kfp.url}/pipeline{API}/pipelines/nope", timeout=5).status_code == 404


def test_the_ui_says_200_and_not_ready_while_the_api_server_is_down(kfp):
    requests.get(f"{kfp.url}/pipeline{API}/healthz", timeout=5).raise_for_status()  # one good answer first
    fault(kfp, kind="reset", path_prefix="/apis/")  # the API server drops every connection
    down = requests.get(f"{kfp.url}/pipeline{API}/healthz", timeout=5)
    assert down.status_code == 200 and down.json()["apiServerReady"] is False
    assert down.json()["apiServerTagName"] == requests.get(  # healthz.ts keeps the last good answer's keys
        f"{kfp.url}/pipeline{API}/healthz", timeout=5).json()["apiServerTagName"]
    clear_faults(kfp)
    fault(kfp, delay=1.5, times=1, path_prefix=f"{API}/healthz")  # slower than the UI's 1 s fetch timeout
    assert requests.get(f"{kfp.url}/pipeline{API}/healthz", timeout=5).json()["apiServerReady"] is False
    clear_faults(kfp)
    # an API server answering JSON with any status counts as ready (node-fetch does not look at the status),
    # but its healthz keys are gone
    fault(kfp, status=503, times=1, path_prefix=f"{API}/healthz")
    body = requests.get(f"{kfp.url}/pipeline{API}/healthz", timeout=5).json()
    assert body["apiServerReady"] is True and "apiServerTagName" not in body and "apiServerCommitHash" not in body
    assert requests.get(f"{kfp.url}/pipeline{API}/healthz", timeout=5).json()["apiServerReady"] is True


def test_tag_name_is_the_official_images_unless_set(tmp_path):
    with SandboxServer(kfp_version="2.5", tag_name="2.5.0") as labelled:
        assert requests.get(f"{labelled.url}{API}/healthz", timeout=5).json()["tag_name"] == "2.5.0"
        ui = requests.get(f"{labelled.url}/pipeline{API}/healthz", timeout=5).json()
        assert ui["apiServerTagName"] == "2.5.0" and "pipelineStore" not in ui
    from kfadapter.cli import build_parser

    args = build_parser().parse_args(["sandbox", "--kfp-version", "2.14", "--tag-name", "2.14.1"])
    assert (args.kfp_version, args.tag_name) == ("2.14", "2.14.1")


# ---- the adapter through either door ------------------------------------------------------------------------------

def adapter(sandbox, tmp_path, door: str = "ui_proxy", **changes):
    settings = Settings(kfp_endpoint=door_url(sandbox, door), store_path=str(tmp_path / "store.sqlite"),
                        kfp_connect_timeout=2.0, kfp_read_timeout=3.0, kfp_upload_timeout=5.0)
    return create_app(dataclasses.replace(settings, **changes)).test_client()


def test_readiness_through_the_ui_proxy_follows_api_server_ready(sandbox_servers, tmp_path):
    kfp = sandbox_servers("2.3")
    kfp.reset()
    client = adapter(kfp, tmp_path)
    ready = client.get("/readiness")
    assert ready.status_code == 200, ready.json
    assert ready.json["kfp"] == {"tag_name": "2.3.0", "multi_user": False, "door": "ui_proxy", "version": "2.3.0",
                                 "version_from": "apiServerTagName"}
    fault(kfp, kind="reset", path_prefix="/apis/")
    try:
        down = client.get("/readiness")
        assert down.status_code == 503 and down.json["code"] == "not_ready", down.json
        assert down.json["details"]["cause"] == "kfp_api_server_not_ready" and "apiServerReady" in down.json["message"]
        assert down.headers["Content-Type"] == "application/json"
    finally:
        clear_faults(kfp)
    assert client.get("/readiness").status_code == 200


def test_through_the_ui_proxy_2_3_is_known_and_packages_fitted(sandbox_servers, tmp_path):
    kfp = sandbox_servers("2.3")
    kfp.reset()
    client = adapter(kfp, tmp_path)
    doc = yaml.safe_load(package("resource_setters_v2.yaml"))
    doc["root"]["dag"]["tasks"]["train"]["cachingOptions"] = {"enableCache": True, "cacheKey": "k"}
    resp = upload(client, "ck", yaml.safe_dump(doc).encode())
    # without the UI's apiServerTagName the adapter took 2.3 for the newest and KFP answered 500
    assert resp.status_code == 400 and resp.json["details"]["kfp_version"] == "KFP 2.3.0", resp.json


def test_unlabelled_2_14_is_learnt_from_its_answers(sandbox_servers, tmp_path):
    kfp = sandbox_servers("2.14")
    kfp.reset()
    client = adapter(kfp, tmp_path, door="api_server")
    assert client.get("/readiness").json["kfp"]["version"] == "2.14-2.15"  # pipeline_store: 2.14 or 2.15
    doc = yaml.safe_load(package("resource_setters_v2.yaml"))
    doc["components"]["comp-train"]["taskConfigPassthroughs"] = [{"field": "RESOURCES", "applyToTask": True}]
    data = yaml.safe_dump(doc).encode()
    first = upload(client, "tcp", data)  # 2.15 would take it: sent, and KFP's "unknown template format" tells
    assert first.status_code == 400 and first.json["code"] == "package_too_new", first.json
    assert first.json["details"] == {"field": "components.comp-train.taskConfigPassthroughs",
                                     "kfp_version": "KFP 2.14-2.15 (unlabelled), older than 2.15 by its answer"}
    requests.delete(f"{kfp.url}/_sandbox/requests", timeout=5).raise_for_status()
    second = upload(client, "tcp", data)  # now known to be 2.14: refused here, KFP never sees it
    assert second.status_code == 400 and second.json["code"] == "package_too_new"
    counts = requests.get(f"{kfp.url}/_sandbox/requests", timeout=5).json()["counts"]
    assert not [k for k in counts if "upload" in k]
    assert client.get("/readiness").json["kfp"]["version"] == "2.14"


def test_a_pinned_version_is_used_without_asking(sandbox_servers, tmp_path):
    kfp = sandbox_servers("2.5")  # unlabelled: 2.5-2.13 from healthz
    kfp.reset()
    client = adapter(kfp, tmp_path, kfp_version="2.3")  # an operator who knows better (a build of 2.3)
    doc = yaml.safe_load(package("resource_setters_v2.yaml"))
    del doc["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]["cpuLimit"]
    assert upload(client, "res", yaml.safe_dump(doc).encode()).status_code == 200  # fitted as for 2.3
    [version] = [v for v in kfp.app.extensions["sandbox"].versions.values()]
    assert version["_package"].ir["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"][
        "cpuLimit"] == 0.5
    assert client.get("/readiness").json["kfp"]["version_from"] == "KFADAPTER_KFP_VERSION"
    assert Settings.from_env({"KFADAPTER_KFP_VERSION": "2.5.0"}).kfp_version == "2.5.0"
    with pytest.raises(SettingsError, match="KFADAPTER_KFP_VERSION"):
        Settings.from_env({"KFADAPTER_KFP_VERSION": "unknown"})


@pytest.mark.parametrize("v1", [False, True])
def test_create_run_for_a_version_deleted_meanwhile_is_a_404(sandbox, settings, v1):
    from kfadapter.core.errors import NotFound
    from kfadapter.kfconnect import KfConnect

    kf = KfConnect(settings)
    experiment = kf.default_experiment()["experiment_id"]
    with pytest.raises(NotFound) as err:  # KFP: 500 "error fetching manifest ... not found" on every version
        if v1:
            kf._create_v1_run("r", "", experiment, "gone", {})
        else:
            kf._create_v2_run("r", "", experiment, "p", "gone", {})
    assert err.value.code == "version_not_found" and err.value.details == {"pipeline_version_id": "gone"}
