"""`kfadapter check` and `GET /readiness?deep=true`: every dependency tried as the service uses it, a fix for each
failure, exit 1 on any; plain readiness keeps its meaning."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from kfadapter.app import create_app
from kfadapter.cli import main
from kfadapter.settings import Settings

TOKEN = "a-token-of-sixteen-chars"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy_env(sandbox, tmp_path) -> dict[str, str]:
    access, secret = sandbox.object_store_keys
    return {
        "KFADAPTER_KFP_ENDPOINT": sandbox.url,
        "KFADAPTER_MLMD_ENDPOINT": sandbox.mlmd_endpoint,
        "KFADAPTER_OBJECT_STORE_ENDPOINT": sandbox.object_store_endpoint,
        "KFADAPTER_OBJECT_STORE_ACCESS_KEY": access,
        "KFADAPTER_OBJECT_STORE_SECRET_KEY": secret,
        "KFADAPTER_TM_URL": f"{sandbox.url}/_sandbox/notifications",
        "KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite"),
    }


def broken_env(sandbox, tmp_path) -> dict[str, str]:
    return healthy_env(sandbox, tmp_path) | {
        "KFADAPTER_KFP_ENDPOINT": f"{sandbox.url}/not-kfp",  # answers, but not as KFP's API
        "KFADAPTER_MLMD_ENDPOINT": f"127.0.0.1:{closed_port()}",
        "KFADAPTER_OBJECT_STORE_SECRET_KEY": "wrong-secret",
        "KFADAPTER_TM_URL": f"{sandbox.url}/trainingjob/pipelineNotification",  # nothing serves it there
        "KFADAPTER_STORE_URL": f"postgresql://kfadapter:pw@127.0.0.1:{closed_port()}/kfadapter",
    }


@pytest.fixture
def run_check():
    """`kfadapter check --timeout 3 ARGS` in a process of its own with exactly `env` (a `process` test)."""

    def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        prefixes = ("KFADAPTER_", "KF_", "KUBEFLOW_", "TRAININGMGR_")
        base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        return subprocess.run([sys.executable, "-m", "kfadapter.cli", "check", "--timeout", "3", *args],
                              env=base | env, capture_output=True, text=True, timeout=120)

    return run


class Ran:
    """What `kfadapter check` printed and returned, run in this process."""

    def __init__(self, capsys, monkeypatch, env: dict[str, str], *args: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.returncode = main(["check", "--timeout", "3", *args])
        out = capsys.readouterr()
        self.stdout, self.stderr = out.out, out.err


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in checks}


def test_healthy_configuration_passes_every_check(sandbox, tmp_path, capsys, monkeypatch, run_check):
    proc = run_check(healthy_env(sandbox, tmp_path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = by_name(report["checks"])
    assert report["ok"] is True
    assert list(checks) == ["kfp", "kfp-access", "mlmd", "object-store", "training-manager", "store"]
    assert {c["status"] for c in checks.values()} == {"ok"}, checks
    assert "KFP 2.17.0 (from tag_name) through the API server, single-user mode" in checks["kfp"]["detail"]
    assert "namespace 'kubeflow'" in checks["kfp-access"]["detail"]
    assert "bucket 'mlpipeline' found" in checks["object-store"]["detail"]
    assert "us-east-1 (KFADAPTER_OBJECT_STORE_REGION not set)" in checks["object-store"]["detail"]
    assert "POST" in checks["training-manager"]["detail"]
    assert "alembic" not in proc.stderr  # only warnings reach the terminal
    table = Ran(capsys, monkeypatch, healthy_env(sandbox, tmp_path))
    assert table.returncode == 0 and table.stdout.strip().endswith("6 passed, 0 failed, 0 skipped"), table.stdout


def test_broken_configuration_fails_each_check_with_its_fix(sandbox, tmp_path, capsys, monkeypatch, run_check):
    start = time.monotonic()
    proc = run_check(broken_env(sandbox, tmp_path), "--json")
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = by_name(json.loads(proc.stdout)["checks"])
    statuses = {name: c["status"] for name, c in checks.items()}
    assert statuses == {
        "kfp": "fail",
        "kfp-access": "skip",
        "mlmd": "fail",
        "object-store": "fail",
        "training-manager": "fail",
        "store": "fail",
    }, checks
    assert "does not point at the KFP API" in checks["kfp"]["detail"]
    assert "ml-pipeline.kubeflow:8888" in checks["kfp"]["fix"]
    assert "KFADAPTER_MLMD_ENDPOINT" in checks["mlmd"]["fix"]
    assert "SignatureDoesNotMatch" in checks["object-store"]["detail"]
    assert "KFADAPTER_OBJECT_STORE_ACCESS_KEY" in checks["object-store"]["fix"]
    assert "HTTP 404" in checks["training-manager"]["detail"]
    assert "KFADAPTER_STORE_URL" in checks["store"]["fix"]
    assert all(c["fix"] for c in checks.values() if c["status"] == "fail")
    # The probes run at once, each under its own timeout (3 s here): the check does not add them up.
    assert elapsed < 60, elapsed
    table = Ran(capsys, monkeypatch, broken_env(sandbox, tmp_path))
    assert table.returncode == 1 and "fix:" in table.stdout and "0 passed, 5 failed, 1 skipped" in table.stdout


def test_unconfigured_dependencies_are_named(tmp_path, capsys, monkeypatch):
    proc = Ran(
        capsys,
        monkeypatch,
        {"KFADAPTER_STORE_PATH": str(tmp_path / "s.sqlite"), "KFADAPTER_MLMD_ENDPOINT": f"127.0.0.1:{closed_port()}"},
        "--json",
    )
    checks = by_name(json.loads(proc.stdout)["checks"])
    assert proc.returncode == 1
    assert checks["kfp"]["status"] == "fail" and "KUBEFLOW_HOST" in checks["kfp"]["fix"]
    assert checks["object-store"]["status"] == "skip"  # an empty endpoint is a documented choice
    assert checks["training-manager"]["status"] == "fail" and "TRAININGMGR_HOST" in checks["training-manager"]["fix"]


def test_bad_timeout_is_a_configuration_error(capsys, monkeypatch):
    proc = Ran(capsys, monkeypatch, {}, "--timeout", "0")
    assert proc.returncode == 2 and "--timeout" in proc.stderr


def deep_app(sandbox, tmp_path, **changes) -> object:
    access, secret = sandbox.object_store_keys
    settings = Settings(
        kfp_endpoint=sandbox.url,
        store_path=str(tmp_path / "store.sqlite"),
        kfp_connect_timeout=2.0,
        kfp_read_timeout=3.0,
        mlmd_endpoint=sandbox.mlmd_endpoint,
        mlmd_timeout=3.0,
        object_store_endpoint=sandbox.object_store_endpoint,
        object_store_access_key=access,
        object_store_secret_key=secret,
        object_store_timeout=3.0,
        notify_timeout=3.0,
        tm_url=f"{sandbox.url}/_sandbox/notifications",
    )
    return create_app(dataclasses.replace(settings, **changes))


def test_deep_readiness_checks_every_dependency(sandbox, tmp_path):
    client = deep_app(sandbox, tmp_path).test_client()
    resp = client.get("/readiness?deep=true")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json", resp.json
    assert [c["status"] for c in resp.json["checks"]] == ["ok"] * 6


def test_deep_readiness_fails_where_plain_readiness_stays_ready(sandbox, tmp_path):
    client = deep_app(
        sandbox, tmp_path, object_store_secret_key="wrong", mlmd_endpoint=f"127.0.0.1:{closed_port()}", mlmd_timeout=1.0
    ).test_client()
    plain = client.get("/readiness")
    assert plain.status_code == 200 and plain.json["status"] == "ready"  # its meaning is unchanged: store and KFP
    deep = client.get("/readiness?deep=1")
    assert deep.status_code == 503 and deep.headers["Content-Type"] == "application/json"
    body = deep.json
    assert body["code"] == "not_ready" and "mlmd, object-store" in body["message"], body
    failed = {c["name"]: c for c in body["details"]["checks"] if c["status"] == "fail"}
    assert set(failed) == {"mlmd", "object-store"} and all(c["fix"] for c in failed.values())
    assert client.get("/readiness?deep=maybe").status_code == 400


def test_deep_readiness_needs_the_api_token_when_one_is_set(sandbox, tmp_path):
    client = deep_app(sandbox, tmp_path, api_token=TOKEN).test_client()
    assert client.get("/readiness").status_code == 200  # the kubelet's probe stays open
    assert client.get("/readiness?deep=true").status_code == 401
    ok = client.get("/readiness?deep=true", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.json


@pytest.fixture
def served(sandbox, tmp_path):
    from tests.conftest import _serve_http

    app = deep_app(sandbox, tmp_path, api_token=TOKEN, object_store_secret_key="wrong")
    yield from _serve_http(app)


def test_check_url_asks_a_running_adapter(served, capsys, monkeypatch, run_check):
    proc = run_check({"KFADAPTER_API_TOKEN": TOKEN}, "--url", served)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "object-store      FAIL" in proc.stdout and "5 passed, 1 failed, 0 skipped" in proc.stdout
    refused = Ran(capsys, monkeypatch, {}, "--url", served)
    assert refused.returncode == 1 and "401" in refused.stderr
    nothing = Ran(capsys, monkeypatch, {}, "--url", f"http://127.0.0.1:{closed_port()}")
    assert nothing.returncode == 1 and "no check results" in nothing.stderr


def test_training_manager_probe_sends_no_notification(sandbox, tmp_path, tm_receiver):
    # TM's own server (Flask) answers OPTIONS with Allow: POST; this bare receiver answers 501: reachable either way.
    client = deep_app(sandbox, tmp_path, tm_url=tm_receiver.url).test_client()
    resp = client.get("/readiness?deep=true")
    checks = {c["name"]: c for c in resp.json["checks"]}
    assert resp.status_code == 200 and checks["training-manager"]["status"] == "ok", checks["training-manager"]
    assert tm_receiver.received == []  # the probe never POSTs


def test_access_failures_name_the_token_or_the_role_binding():
    from kfadapter.api.probes import _access_fix
    from kfadapter.core.errors import KfpUnavailable

    settings = Settings(kfp_endpoint="http://ml-pipeline.kubeflow:8888", namespace="team-a")
    unauthenticated = KfpUnavailable("list runs: KFP refused", details={"kfp_status": 401})
    forbidden = KfpUnavailable("list runs: KFP refused", details={"kfp_status": 403})
    assert "pipelines.kubeflow.org" in _access_fix(unauthenticated, settings, True)
    fix = _access_fix(forbidden, settings, True)
    assert "kubeflow-pipelines-edit in 'team-a'" in fix and "RoleBinding" in fix


@pytest.fixture(scope="module")
def authz_sandbox():
    from kfadapter.sandbox import SandboxServer
    from kfadapter.sandbox.authz import Policy

    sa = "system:serviceaccount:kfadapter:kfadapter"
    policy = Policy.from_doc({"tokens": {"bound-token": sa, "other-token": "system:serviceaccount:kfadapter:other"},
                              "bindings": [{"identity": sa, "namespace": "team-a", "verbs": ["*"]}]})
    server = SandboxServer(host="127.0.0.1", port=0, multi_user=True, policy=policy).start()
    yield server
    server.stop()


@pytest.mark.parametrize(("token", "status", "fix_says"), [
    (None, "fail", "pipelines.kubeflow.org"),                          # no identity: KFP's 401
    ("other-token", "fail", "kubectl create rolebinding"),             # an identity without a RoleBinding: 403
    ("bound-token", "ok", ""),
], ids=["no-token", "no-rolebinding", "bound"])
def test_multi_user_access_checks_the_token_and_the_role_binding(authz_sandbox, tmp_path, token, status, fix_says):
    from kfadapter.api import probes

    settings = Settings(kfp_endpoint=authz_sandbox.url, namespace="team-a", kfp_token=token,
                        store_path=str(tmp_path / "s.sqlite"), mlmd_endpoint=authz_sandbox.mlmd_endpoint,
                        tm_url=f"{authz_sandbox.url}/_sandbox/notifications")
    checks = {r.name: r for r in probes.run_all(probes.for_settings(settings, 3.0))}
    assert checks["kfp"].status == "ok" and "multi-user mode" in checks["kfp"].detail, checks["kfp"]
    access = checks["kfp-access"]
    assert access.status == status, access
    assert fix_says in access.fix
