"""The multi-user sandbox authorizes every call as KFP 2.3 and 2.17 do (auth/*, resource/resource_manager.go
IsAuthorized, server/*_server.go), driven by the real kfp.Client over HTTP and by raw requests where the client
hides the answer."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import kfp
import pytest
import requests
from kfp_server_api.exceptions import ApiException

from kfadapter.sandbox import SandboxServer
from kfadapter.sandbox.authz import Policy, PolicyError

from tests.support import clean_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
V2_PATH = ROOT / "tests" / "fixtures" / "pipelines" / "qoe_train_v2.yaml"
API = "/apis/v2beta1"
ALICE, BOB = "alice@example.com", "bob@example.com"
TOKENS = {"alice-token": ALICE, "bob-token": BOB, "admin-token": "admin"}
NO_REASON = "is not authorized with reason:  (request: &ResourceAttributes{"


def policy(*bindings: dict) -> Policy:
    """Alice may do everything in team-a; `admin` everywhere (to set things up); plus `bindings`."""
    everything = [{"identity": "admin", "namespace": ns, "verbs": ["*"]} for ns in ("team-a", "team-b", "kubeflow")]
    return Policy.from_doc({"tokens": TOKENS, "bindings": [
        {"identity": ALICE, "namespace": "team-a", "verbs": ["*"]}, *everything, *bindings]})


@pytest.fixture(params=["2.3", "2.17"])
def msbx(request, multi_user_sandbox_servers):
    server = multi_user_sandbox_servers(request.param)
    server.reset()
    server.set_policy(policy())
    return server


@pytest.fixture
def msbx17(multi_user_sandbox_servers):
    server = multi_user_sandbox_servers("2.17")
    server.reset()
    server.set_policy(policy())
    return server


def client(url: str, token: str | None) -> kfp.Client:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=url, namespace="team-a", existing_token=token)


@pytest.fixture
def local_context(monkeypatch, tmp_path):
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))


def refused(call) -> tuple[int, dict]:
    with pytest.raises(ApiException) as err:
        call()
    body = err.value.body.decode() if isinstance(err.value.body, bytes) else err.value.body
    return err.value.status, json.loads(body)


def seed(server) -> dict:
    """As admin: an experiment, a pipeline and a run in team-b, and a shared pipeline."""
    admin = client(server.url, "admin-token")
    exp = admin.create_experiment("e", namespace="team-b").experiment_id
    pid = admin.upload_pipeline(str(V2_PATH), pipeline_name="b-pipe", namespace="team-b").pipeline_id
    vid = admin.list_pipeline_versions(pid).pipeline_versions[0].pipeline_version_id
    run = admin.run_pipeline(experiment_id=exp, job_name="r", pipeline_id=pid, version_id=vid,
                             params={"featurepath": "/f"}).run_id
    shared = admin.upload_pipeline(str(V2_PATH), pipeline_name="shared-pipe").pipeline_id  # namespace ""
    return {"experiment": exp, "pipeline": pid, "version": vid, "run": run, "shared": shared}


# ---- identity --------------------------------------------------------------------------------------------------
def test_no_identity_is_401_after_the_lookup(msbx, local_context):
    anonymous = client(msbx.url, None)
    status, body = refused(lambda: anonymous.list_experiments(namespace="team-a"))
    assert status == 401 and body["code"] == 16
    assert body["message"] == (
        "List experiments failed: Failed to authorize with API: Failed to authorize with API: Unauthenticated: "
        "Failed to check authorization. User identity is empty in the request header: Unauthenticated: Request "
        "header error: there is no user identity header.: Request header error: there is no user identity header.")
    # The check follows the object's look-up: a missing run is KFP's 404, identity or not.
    assert requests.get(f"{msbx.url}{API}/runs/no-such-run", timeout=5).status_code == 404


def test_unknown_token_fails_the_token_review(msbx, local_context):
    status, body = refused(lambda: client(msbx.url, "stolen").list_experiments(namespace="team-a"))
    assert status == 401 and "Review.Status.Authenticated is false" in body["message"]
    assert "[Unauthenticated: Request header error" in body["message"]  # both authenticators' errors, aggregated


def test_kubeflow_userid_header_or_a_listed_token_is_an_identity(msbx):
    for headers in ({"kubeflow-userid": ALICE}, {"Authorization": "Bearer alice-token"}):
        resp = requests.get(f"{msbx.url}{API}/experiments", params={"namespace": "team-a"}, headers=headers,
                            timeout=5)
        assert resp.status_code == 200, resp.text


# ---- authorization -------------------------------------------------------------------------------------------
def test_a_verb_without_a_binding_is_403_with_kfps_text(msbx, local_context):
    msbx.set_policy(policy({"identity": BOB, "namespace": "team-b", "verbs": ["get", "list"]}))
    bob = client(msbx.url, "bob-token")
    assert bob.list_experiments(namespace="team-b").experiments is None  # list is granted
    status, body = refused(lambda: bob.create_experiment("x", namespace="team-b"))
    assert status == 403 and body["code"] == 7
    selectors = "FieldSelector:nil,LabelSelector:nil," if msbx.kfp_version == "2.17" else ""  # k8s.io/api >= 0.31
    assert body["message"] == (
        "Failed to create a experiment: Failed to authorize the request: Failed to authorize with API: "
        f"PermissionDenied: User '{BOB}' {NO_REASON}Namespace:team-b,Verb:create,Group:pipelines.kubeflow.org,"
        f"Version:v1beta1,Resource:experiments,Subresource:,Name:x,{selectors}}}): Unauthorized access")


def test_another_namespaces_objects_by_id_are_403(msbx, local_context):
    ids = seed(msbx)
    alice = client(msbx.url, "alice-token")
    for call, verb in ((lambda: alice.get_run(ids["run"]), "get"),
                       (lambda: alice._run_api.run_service_terminate_run(ids["run"]), "terminate"),
                       (lambda: alice._run_api.run_service_delete_run(ids["run"]), "delete"),
                       (lambda: alice.get_experiment(ids["experiment"]), "get"),
                       (lambda: alice.get_pipeline(ids["pipeline"]), "get"),
                       (lambda: alice._pipelines_api.pipeline_service_get_pipeline_version(ids["pipeline"],
                                                                                           ids["version"]), "get"),
                       (lambda: alice.delete_pipeline(ids["pipeline"]), "delete")):
        status, body = refused(call)
        assert status == 403 and f"Namespace:team-b,Verb:{verb}," in body["message"], body
    assert client(msbx.url, "admin-token").get_run(ids["run"]).state == "PENDING"  # nothing happened


def test_shared_pipelines_are_readable_by_everyone(msbx, local_context):
    ids = seed(msbx)
    anonymous = client(msbx.url, None)
    # Reads of the shared namespace skip the check altogether, identity or not.
    assert anonymous.get_pipeline(ids["shared"]).display_name == "shared-pipe"
    assert [p.pipeline_id for p in anonymous.list_pipelines(namespace="").pipelines] == [ids["shared"]]
    assert anonymous.list_pipeline_versions(ids["shared"]).total_size == 1
    alice = client(msbx.url, "alice-token")
    if msbx.kfp_version == "2.17":
        # 2.17 reviews writes on shared pipelines in KFP's own namespace.
        status, body = refused(lambda: alice._pipelines_api.pipeline_service_delete_pipeline(ids["shared"],
                                                                                            cascade=True))
        assert status == 403 and "Failed to access shared pipeline" in body["message"]
        assert "Namespace:kubeflow,Verb:delete," in body["message"]
    else:  # 2.3 checks nothing for the shared namespace
        alice.delete_pipeline_version(ids["shared"], alice.list_pipeline_versions(ids["shared"])
                                      .pipeline_versions[0].pipeline_version_id)
        alice.delete_pipeline(ids["shared"])


def test_an_unauthorized_upload_is_400(msbx, local_context):
    status, body = refused(lambda: client(msbx.url, "bob-token").upload_pipeline(
        str(V2_PATH), pipeline_name="p", namespace="team-a"))
    assert status == 400
    if msbx.kfp_version == "2.17":  # from 2.15 the upload hides why
        assert body["error_message"] == "Failed to create a pipeline"
    else:
        assert body["error_message"].startswith(
            f"Failed to create a pipeline due to authorization error: Authorization Failure: PermissionDenied: "
            f"User '{BOB}' {NO_REASON}Namespace:team-a,Verb:create,")
    # No identity at all: the same 400, and uploads to the shared namespace are not checked.
    assert requests.post(f"{msbx.url}{API}/pipelines/upload", params={"namespace": "team-a"},
                         files={"uploadfile": ("p.yaml", V2_PATH.read_bytes())}, timeout=10).status_code == 400
    assert client(msbx.url, None).upload_pipeline(str(V2_PATH), pipeline_name="anyone").pipeline_id


def test_every_multi_user_read_is_403_from_2_15(msbx, local_context):
    ids = seed(msbx)
    headers = {"Authorization": "Bearer admin-token"}  # allowed everything
    read = f"{msbx.url}/apis/v1beta1/runs/{{}}/nodes/n/artifacts/a:read"
    mine, missing = (requests.get(read.format(r), headers=headers, timeout=5) for r in (ids["run"], "no-run"))
    if msbx.kfp_version == "2.17":
        # The streaming handler's context carries no request headers: authentication fails, even for admin.
        assert mine.status_code == 403 and "User identity is empty" in mine.json()["error_message"]
        assert missing.status_code == 403 and "Failed to authorize with the run ID no-run" in missing.text
        assert mine.headers["Content-Type"] == "text/plain; charset=utf-8"
    else:  # a grpc method: the caller's identity is seen and authorized
        assert mine.status_code == 400 and missing.status_code == 404  # no workflow recorded yet / no run
        assert requests.get(read.format(ids["run"]), headers={"Authorization": "Bearer alice-token"},
                            timeout=5).status_code == 403


def test_without_a_policy_any_identity_may_do_everything(msbx, local_context):
    msbx.set_policy(None)
    anyone = client(msbx.url, "any-token-at-all")
    exp = anyone.create_experiment("e", namespace="team-z").experiment_id
    assert anyone.get_experiment(exp).namespace == "team-z"
    status, _ = refused(lambda: client(msbx.url, None).get_experiment(exp))
    assert status == 401  # still no identity, no answer


def test_single_user_mode_checks_nothing(local_context):
    with SandboxServer(policy=policy()) as single:
        assert client(single.url, None).list_experiments().total_size == 1  # Default


# ---- the policy file and the command line -----------------------------------------------------------------------
@pytest.mark.parametrize("doc, says", [
    ([], '"tokens" and "bindings"'),
    ({"tokens": {"t": 1}}, '"tokens" maps'),
    ({"bindings": [{"identity": "a", "namespace": "n", "verbs": ["fly"]}]}, "unknown fly"),
    ({"bindings": [{"identity": "a", "namespace": "n"}]}, "verbs is a non-empty list"),
    ({"bindings": [{"identity": "a", "namespace": "n", "verbs": ["get"], "role": "x"}]}, "bindings[0]"),
])
def test_a_bad_policy_is_refused_with_the_reason(doc, says):
    with pytest.raises(PolicyError) as err:
        Policy.from_doc(doc)
    assert says in str(err.value)


def test_sandbox_command_with_authz(tmp_path):
    path = tmp_path / "authz.json"
    path.write_text(json.dumps({"tokens": {"t-a": ALICE}, "bindings": [
        {"identity": ALICE, "namespace": "team-a", "verbs": ["get", "list"]}]}))
    port = free_port()
    log = open(tmp_path / "sandbox.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "kfadapter.cli", "sandbox", "--port", str(port), "--multi-user",
                             "--authz", str(path)], cwd=ROOT, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{API}/experiments"

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}{API}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert proc.poll() is None, (tmp_path / "sandbox.log").read_text()
            return False

    try:
        wait_for(up, "kfadapter sandbox --multi-user --authz")
        alice = {"Authorization": "Bearer t-a"}
        assert requests.get(url, params={"namespace": "team-a"}, timeout=5).status_code == 401
        assert requests.get(url, params={"namespace": "team-a"}, headers=alice, timeout=5).status_code == 200
        assert requests.get(url, params={"namespace": "team-b"}, headers=alice, timeout=5).status_code == 403
        created = requests.post(url, json={"display_name": "e", "namespace": "team-a"}, headers=alice, timeout=5)
        assert created.status_code == 403 and "Verb:create" in created.json()["message"]
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.mark.parametrize("args, says", [
    (["--authz", "{missing}"], "cannot read"),
    (["--multi-user", "--authz", "{bad}"], "not JSON"),
    (["--authz", "{good}"], "use it with --multi-user"),
])
def test_sandbox_command_refuses_a_bad_authz_file(tmp_path, args, says):
    files = {"missing": tmp_path / "none.json", "bad": tmp_path / "bad.json", "good": tmp_path / "good.json"}
    files["bad"].write_text("{")
    files["good"].write_text("{}")
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    if "--multi-user" not in argv and says != "use it with --multi-user":
        argv.insert(0, "--multi-user")
    done = subprocess.run([sys.executable, "-m", "kfadapter.cli", "sandbox", "--port", "0", *argv], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and says in done.stderr, done.stderr
