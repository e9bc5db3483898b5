"""Run the sandbox KFP over HTTP: in a background thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import threading

from cheroot import wsgi
from flask import Flask

from kfadapter.sandbox import leofs
from kfadapter.sandbox.app import create_sandbox_app
from kfadapter.sandbox.authz import Policy
from kfadapter.sandbox.authz_routes import POLICY
from kfadapter.sandbox.mlmd import MlmdServer
from kfadapter.sandbox.objectstore import DEFAULT_CREDENTIALS
from kfadapter.sandbox.runner import RunExecutor
from kfadapter.sandbox.versions import DEFAULT, PROFILES

# KFP's API server keeps connections alive: Go's net/http behind `http.ListenAndServe` (backend/src/apiserver/
# main.go, 2.3.0 and 2.17.0) speaks HTTP/1.1, keeps a connection until the client sends `Connection: close`, and
# sets no idle timeout. werkzeug's server closes every connection (it cannot drain a request body it did not read),
# so the sandbox serves on cheroot, a threaded HTTP/1.1 server that keeps connections as Go does.
_THREADS = 64  # requests at once (faults that sleep hold one each); further connections wait for a thread
_IDLE_TIMEOUT = 3600  # seconds a kept connection may stay idle (Go: unlimited)


class _Gateway(wsgi.Gateway_10):
    def get_environ(self):
        environ = super().get_environ()
        environ["kfadapter.socket"] = self.req.conn.socket  # for the fault that drops a connection unanswered
        return environ

    def start_response(self, status, headers, exc_info=None):
        # A handler's `Connection: close` ends the connection after its answer, as in Go's net/http (cheroot
        # would keep it): the fault that sends a short body relies on it.
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
            self.req.close_connection = True
        return super().start_response(status, headers, exc_info)


class _LoggedRequests:
    """One line per request on stdout, for the sandbox command (tests keep the sandbox quiet)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        def logged(status, headers, exc_info=None):
            print(f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')} {status.split()[0]}", flush=True)
            return start_response(status, headers, exc_info)

        return self.app(environ, logged)


def _server(host: str, port: int, app, quiet: bool) -> wsgi.Server:
    """Bind a cheroot server for `app` (port 0: an ephemeral port, read back from `bind_addr`)."""
    server = wsgi.Server(
        (host, port),
        app if quiet else _LoggedRequests(app),
        numthreads=_THREADS,
        server_name=host,
        timeout=_IDLE_TIMEOUT,
        shutdown_timeout=1,
    )
    server.gateway = _Gateway
    server.prepare()
    return server


class SandboxServer:
    """A sandbox KFP on a threaded HTTP/1.1 server (cheroot; port 0 = an ephemeral port).

    `kfp_version` picks the KFP API server version it plays (`2.3`, `2.5`, `2.14`, `2.17` = default; `versions`).
    With `execute=True`, v2 runs really execute with kfp.local in a pool of `workers` child processes, each in
    `<workdir>/<run_id>/` (see `runner`); otherwise runs move only through the control API. `multi_user=True`
    emulates multi-user KFP (see `create_sandbox_app`), authorizing calls by `policy` (see `authz`).
    `object_store="leofs"` makes its object store play O-RAN's LeoFS (`leofs`); its endpoint is then named
    `localhost`, one LeoFS registers."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        app: Flask | None = None,
        quiet: bool = True,
        mlmd_port: int = 0,
        execute: bool = False,
        workers: int = 2,
        workdir: str | None = None,
        multi_user: bool = False,
        kfp_version: str | None = None,
        policy: Policy | None = None,
        tag_name: str | None = None,
        object_store: str | None = None,
    ):
        self.app = app or create_sandbox_app(
            multi_user=multi_user, kfp_version=kfp_version, policy=policy, tag_name=tag_name
        )
        if object_store == "leofs":
            leofs.play(self.app)
        self.executor = enable_execution(self.app, workers, workdir) if execute else None
        self._host, self._port, self._quiet = host, port, quiet
        self._mlmd = MlmdServer(self.app.extensions["sandbox"], host, mlmd_port)
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        self._server = server = _server(self._host, self._port, self.app, self._quiet)
        self._thread = threading.Thread(target=server.serve, name="sandbox-kfp", daemon=True)
        self._thread.start()
        self._mlmd.start()  # the ML Metadata gRPC service beside the REST API
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.stop()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None
        if self.executor is not None:
            self.executor.shutdown()
        self._mlmd.stop()

    def reset(self) -> None:
        """Fresh state: only the Default experiment, counters zeroed, faults cleared (executing runs stopped)."""
        if self.executor is not None:
            self.executor.cancel_all()
        self.app.extensions["sandbox"].reset()

    def set_policy(self, policy: Policy | None) -> None:
        """Authorize multi-user calls by `policy` from now on (None: any identity may do anything)."""
        self.app.extensions.pop(POLICY, None)
        if policy is not None:
            self.app.extensions[POLICY] = policy

    @property
    def kfp_version(self) -> str:
        """The KFP version played, e.g. `2.3`."""
        return self.app.extensions["sandbox"].kfp_version.name

    @property
    def mlmd_endpoint(self) -> str:
        """`host:port` of the sandbox's ML Metadata gRPC service (KFADAPTER_MLMD_ENDPOINT)."""
        return self._mlmd.endpoint

    @property
    def object_store_endpoint(self) -> str:
        """The S3 endpoint of the sandbox's object store (KFADAPTER_OBJECT_STORE_ENDPOINT)."""
        if leofs.playing(self.app.config) and self._host in ("127.0.0.1", "localhost"):
            return f"http://localhost:{self.port}/_s3"  # LeoFS takes the bucket from the host: a registered name
        return f"{self.url}/_s3"

    @property
    def object_store_keys(self) -> tuple[str, str]:
        """An (access key, secret key) pair the sandbox's object store accepts."""
        return next(iter(self.app.config.get("S3_CREDENTIALS", DEFAULT_CREDENTIALS).items()))

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None:
            raise RuntimeError("SandboxServer is not started")
        return self._server.bind_addr[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:43123 (pass it as kfp.Client(host=...))."""
        return f"http://{self._host}:{self.port}"

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def enable_execution(app: Flask, workers: int = 2, workdir: str | None = None) -> RunExecutor:
    """Make the sandbox app execute v2 runs (kfp.local, one child process per run, `workers` at a time)."""
    executor = RunExecutor(app.extensions["sandbox"], workers=workers, workdir=workdir)
    app.extensions["sandbox_executor"] = executor
    return executor


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8888,
    mlmd_port: int = 0,
    execute: bool = False,
    workers: int = 2,
    workdir: str | None = None,
    multi_user: bool = False,
    kfp_version: str | None = None,
    policy: Policy | None = None,
    tag_name: str | None = None,
    object_store: str | None = None,
) -> None:
    """Serve a sandbox KFP (and its ML Metadata gRPC service) in the foreground until interrupted."""
    app = create_sandbox_app(multi_user=multi_user, kfp_version=kfp_version, policy=policy, tag_name=tag_name)
    if object_store == "leofs":
        leofs.play(app)
    print(f"sandbox plays KFP {app.extensions['sandbox'].kfp_version.tag}", flush=True)
    executor = enable_execution(app, workers, workdir) if execute else None
    if executor is not None:
        print(f"sandbox executes v2 runs with kfp.local ({executor.workers} at a time, in {executor.root})", flush=True)
    server = _server(host, port, app, quiet=False)
    bound = server.bind_addr[1]
    mlmd = MlmdServer(app.extensions["sandbox"], host, mlmd_port).start()
    mode = " (multi-user)" if multi_user else ""
    print(f"sandbox KFP{mode} listening on http://{host}:{bound} (also under /pipeline)", flush=True)
    print(f"sandbox ML Metadata (gRPC) on {mlmd.endpoint}", flush=True)
    access_key, secret_key = next(iter(app.config.get("S3_CREDENTIALS", DEFAULT_CREDENTIALS).items()))
    store_host = "localhost" if leofs.playing(app.config) and host in ("127.0.0.1", "localhost") else host
    kind = "LeoFS: bucket from the Host header, " if leofs.playing(app.config) else ""
    print(
        f"sandbox object store (S3, {kind}SigV4) on http://{store_host}:{bound}/_s3 "
        f"(access key {access_key!r}, secret key {secret_key!r})",
        flush=True,
    )
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if executor is not None:
            executor.shutdown()
        mlmd.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m kfadapter.sandbox [--host H] [--port P]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="kfadapter sandbox", description="Local Kubeflow Pipelines emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--execute", action="store_true", help="really execute v2 runs with kfp.local")
    parser.add_argument("--multi-user", action="store_true", help="emulate multi-user KFP (namespaces, no Default)")
    parser.add_argument("--kfp-version", choices=sorted(PROFILES), default=DEFAULT, help="KFP version to play")
    parser.add_argument("--tag-name", help="healthz tag_name (default: the official image's, 'unknown' on 2.5/2.14)")
    args = parser.parse_args(argv)
    serve_forever(
        args.host,
        args.port,
        execute=args.execute,
        multi_user=args.multi_user,
        kfp_version=args.kfp_version,
        tag_name=args.tag_name,
    )
