"""Shared fixtures: a sandbox KFP over HTTP on 127.0.0.1, the adapter app wired to it, a hermetic env."""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import kfp
import pytest
import requests
from werkzeug.serving import make_server

from kfadapter.app import create_app
from kfadapter.settings import Settings
from tests.support import serve_in_background

FIXTURES = Path(__file__).parent / "fixtures"
PIPELINES = FIXTURES / "pipelines"
_ENV_PREFIXES = ("KFADAPTER_", "KF_", "KUBEFLOW_", "TRAININGMGR_")


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path):
    """Clear the adapter's env and keep kfp away from ~/.config/kfp."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    # A class attribute computed at import: patching HOME would not move it.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


# What starts processes (a server, gunicorn, PostgreSQL, a CLI run): such a test is marked `process`, and left out
# of `make test-fast`. Read from the source of the test and of its fixtures, so a new test is sorted without a mark.
_PROCESS_SIGNS = ("Service(", "subprocess.", "Popen(", "postgres_server", "PostgresServer")
# Longest first under pytest-xdist: pipelines executed for real, then tests with processes, then the rest, so the
# short tests fill the workers' gaps at the end instead of waiting behind a long one.
_RANKS = (("execute", 0), ("slow", 1), ("process", 2))


def _starts_processes(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("store_url") == "postgresql":
        return True
    functions = [getattr(item, "function", None)]
    for name in getattr(item, "fixturenames", ()):
        functions += [d.func for d in item._fixtureinfo.name2fixturedefs.get(name, ())]  # type: ignore[attr-defined]
    for fn in functions:
        try:
            source = inspect.getsource(fn)  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue
        if any(sign in source for sign in _PROCESS_SIGNS):
            return True
    return False


# Fixtures that serve something over the network (in this process or not): a test using none of them, and marked
# none of _RANKS, is `unit`, what `make test-fast` runs.
_SERVER_FIXTURES = {"sandbox", "sandbox_server", "sandbox_servers", "multi_user_sandbox", "multi_user_sandbox_server",
                    "multi_user_sandbox_servers", "postgres_server"}


def pytest_collection_modifyitems(config, items):
    """Mark tests that start processes `process` and those that need no server `unit`; order longest-first."""
    for item in items:
        if _starts_processes(item):
            item.add_marker(pytest.mark.process)
        if not any(item.get_closest_marker(mark) for mark, _ in _RANKS) and not (
                _SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.unit)

    def rank(item: pytest.Item) -> int:
        return next((r for mark, r in _RANKS if item.get_closest_marker(mark)), len(_RANKS))

    items.sort(key=rank)  # stable: within a rank the collected order stays


KFP_VERSIONS = ("2.3", "2.17")  # O-RAN's KFP and the newest
# The adapter's cross-version runs, (version, door): O-RAN's 2.3 and the newest 2.17 through the UI proxy (what
# O-RAN's KUBEFLOW_HOST/PORT point at: healthz without tag_name), and an official 2.5 image, whose healthz says
# tag_name "unknown", through the API server. Every other test runs at 2.17 through the API server.
ACROSS = (("2.3", "ui_proxy"), ("2.17", "ui_proxy"), ("2.5", "api_server"))
# Runs a test against the sandbox playing each of KFP_VERSIONS (tests that use the adapter: each of ACROSS); on a
# module, only its tests that use the sandbox are repeated.
across_versions = pytest.mark.across_versions


def pytest_generate_tests(metafunc):
    """Parametrize `kfp_version` (and `kfp_door` for the adapter) for tests marked `across_versions`."""
    if not (metafunc.definition.get_closest_marker("across_versions") and "kfp_version" in metafunc.fixturenames):
        return
    if "kfp_door" in metafunc.fixturenames:
        metafunc.parametrize(("kfp_version", "kfp_door"), ACROSS, ids=[f"{v}-{d}" for v, d in ACROSS])
    else:
        metafunc.parametrize("kfp_version", KFP_VERSIONS)


@pytest.fixture(scope="session")
def sandbox_servers():
    """Sandbox KFPs for the session, one per KFP version asked for, each on an ephemeral loopback port."""
    yield from _sandboxes_by_version()


@pytest.fixture(scope="session")
def sandbox_server(sandbox_servers):
    """The session's sandbox KFP playing 2.17."""
    return sandbox_servers("2.17")


@pytest.fixture(scope="session")
def multi_user_sandbox_servers():
    """Multi-user sandbox KFPs for the session, one per KFP version asked for (tests set their own policy)."""
    yield from _sandboxes_by_version(multi_user=True)


def _sandboxes_by_version(**options):
    """Yield `get(version)`, which starts a sandbox with `options` playing that version on first use; stop them all
    at the end of the session."""
    from kfadapter.sandbox import SandboxServer

    servers: dict[str, SandboxServer] = {}

    def get(version: str) -> SandboxServer:
        if version not in servers:
            servers[version] = SandboxServer(host="127.0.0.1", port=0, kfp_version=version, **options).start()
        return servers[version]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def multi_user_sandbox_server():
    """One multi-user sandbox KFP for the session (namespaces, no Default experiment)."""
    from kfadapter.sandbox import SandboxServer

    server = SandboxServer(host="127.0.0.1", port=0, multi_user=True).start()
    yield server
    server.stop()


@pytest.fixture
def kfp_version() -> str:
    """The KFP version the sandbox plays: 2.17 unless a test is marked `across_versions`."""
    return "2.17"


@pytest.fixture
def kfp_door() -> str:
    """How the adapter reaches KFP: `api_server` (no prefix) or `ui_proxy` (`/pipeline`, ml-pipeline-ui)."""
    return "api_server"


def door_url(sandbox, door: str) -> str:
    """The sandbox's URL for `door`: the API server itself, or the UI proxy's `/pipeline`."""
    return sandbox.url + ("/pipeline" if door == "ui_proxy" else "")


@pytest.fixture
def sandbox(sandbox_servers, kfp_version):
    """The sandbox playing `kfp_version`, reset to a fresh KFP (Default experiment only, zeroed counters)."""
    server = sandbox_servers(kfp_version)
    server.reset()
    return server


@pytest.fixture
def settings(sandbox, kfp_door, tmp_path) -> Settings:
    """Adapter settings pointing at the sandbox through `kfp_door`, with short timeouts and a per-test store."""
    return Settings(kfp_endpoint=door_url(sandbox, kfp_door), store_path=str(tmp_path / "store.sqlite"),
                    kfp_connect_timeout=2.0, kfp_read_timeout=3.0, kfp_upload_timeout=5.0)


@pytest.fixture
def app(settings):
    """The adapter app wired to the sandbox."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """Flask test client of the adapter (the adapter itself still reaches KFP over real HTTP)."""
    return app.test_client()


@pytest.fixture
def adapter_url(app):
    """Serve the adapter over real HTTP on 127.0.0.1 (for byte-exact header checks and concurrency)."""
    yield from _serve_http(app)


def _serve_http(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = serve_in_background(server)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()  # the listening socket goes now, not when the server object is collected
    thread.join(5)


@pytest.fixture
def multi_user_sandbox(multi_user_sandbox_server):
    """The multi-user sandbox, reset (no experiment at all)."""
    multi_user_sandbox_server.reset()
    return multi_user_sandbox_server


@pytest.fixture
def multi_user_app(multi_user_sandbox, tmp_path):
    """The adapter on the multi-user sandbox, in namespace `team-a` (KFADAPTER_NAMESPACE), with a bearer token (multi-user
    KFP answers 401 to a call without an identity)."""
    settings = Settings(kfp_endpoint=multi_user_sandbox.url, namespace="team-a", kfp_token="kfadapter-team-a",
                        store_path=str(tmp_path / "store-mu.sqlite"), kfp_connect_timeout=2.0,
                        kfp_read_timeout=3.0, kfp_upload_timeout=5.0)
    return create_app(settings)


@pytest.fixture
def multi_user_adapter_url(multi_user_app):
    """The multi-user adapter over real HTTP on 127.0.0.1."""
    yield from _serve_http(multi_user_app)


@pytest.fixture
def kfp_counts(sandbox):
    """Read and reset the sandbox's per-route request counters."""

    class Counts:
        def reset(self) -> None:
            requests.delete(f"{sandbox.url}/_sandbox/requests", timeout=5).raise_for_status()

        def read(self) -> dict:
            return requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()

    return Counts()


def package(name: str) -> bytes:
    """Return a fixture pipeline package's bytes."""
    return (PIPELINES / name).read_bytes()


def upload(client, name: str, data: bytes, description: str = "", filename: str = "file"):
    """POST a package the way the training manager does (file field `file`, filename `file`)."""
    import io

    return client.post(f"/pipelineIds/{name}", data={"file": (io.BytesIO(data), filename),
                                                     "description": description},
                       content_type="multipart/form-data")


class TmReceiver:
    """A real local HTTP server standing in for the training manager's notification endpoint.

    `answer` picks the reply: an int status (200 answers like TM's success, 500 like its "Training Failed");
    `stop()` closes the port so deliveries see connection refused; `start()` reopens the same port.
    """

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.answer = 200
        self.delay = 0.0  # seconds before each answer: a slow manager
        self.on_receive = None  # called with each accepted body, before answering
        self.port = 0
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/trainingjob/pipelineNotification"

    def start(self) -> "TmReceiver":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answer
                if status == 200 or status == 500:
                    receiver.received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                              "body": json.loads(body), "answered": status})
                    if receiver.on_receive is not None:
                        receiver.on_receive(json.loads(body))
                if receiver.delay:
                    import time

                    time.sleep(receiver.delay)
                reply = {"Message": "Training successful"} if status == 200 else {"Error": "Training Failed"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_port
        self._thread = serve_in_background(self._server)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def run_ids(self) -> list[str]:
        return [r["body"]["run_id"] for r in self.received]


@pytest.fixture
def tm_receiver():
    """The training manager's side: records every notification it accepts."""
    receiver = TmReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (the machine's server binaries; see tests/postgres.py)."""
    from tests.postgres import PostgresServer, server_binaries

    bindir = server_binaries()
    if bindir is None:
        message = "PostgreSQL server binaries missing: `make test` installs Debian's postgresql package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bindir)
    yield server
    server.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store on each backend: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("postgres_server").create_database()
