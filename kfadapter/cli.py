"""Command line: `kfadapter serve [--sandbox]`, `kfadapter sandbox`, `kfadapter check`, `kfadapter outputs RUN_ID`,
`kfadapter rewrite-volume IN OUT --claim NAME` and `kfadapter runs list|get|wait|logs|outputs`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from kfadapter import runs_cli
from kfadapter.cli_parser import build_parser
from kfadapter.core.observability import configure_logging
from kfadapter.settings import Settings, SettingsError, load
from kfadapter.settings.checks import check_listen, gunicorn_options, listen_address, writable_dir

SANDBOX_TOKEN = "kfadapter-sandbox"  # the adapter's bearer token for `serve --sandbox --multi-user`
DEFAULT_SANDBOX_PORT = 8888  # KFP's API server's port


def main(argv: list[str] | None = None) -> int:
    """Run the `kfadapter` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "runs":
            return runs_cli.main(args)  # a client: it logs nothing, it prints
        _configure_logging(args)
        if args.command == "sandbox":
            return _run_sandbox(
                args.host,
                args.port,
                args.mlmd_port,
                args.execute,
                args.multi_user,
                args.kfp_version,
                args.authz,
                args.tag_name,
                args.object_store,
            )
        if args.command == "outputs":
            return _outputs(args)
        if args.command == "rewrite-volume":
            return _rewrite_volume(args)
        if args.command == "check":
            return _check(args)
        return _serve(args)
    except SettingsError as exc:
        print(f"kfadapter: configuration error: {exc}", file=sys.stderr)
        return 2


def _configure_logging(args: argparse.Namespace) -> None:
    # Sandbox and tool output is read in a terminal; the production server's goes to a log collector.
    # Only these two are read here (checked the same way); the command checks the rest.
    default = "json" if args.command == "serve" and not args.sandbox else "text"
    given = {k: os.environ[k] for k in ("KFADAPTER_LOG_FORMAT", "KFADAPTER_LOG_LEVEL") if os.environ.get(k, "").strip()}
    # `check` prints its own table: only warnings from the libraries it drives (no migration chatter).
    level = {"KFADAPTER_LOG_LEVEL": "WARNING"} if args.command == "check" else {}
    logs = Settings.from_env({"KFADAPTER_LOG_FORMAT": default} | level | given)
    configure_logging(logs.log_format, logs.log_level)


def _run_sandbox(
    host: str,
    port: int | None,
    mlmd_port: int = 0,
    execute: bool = False,
    multi_user: bool = False,
    kfp_version: str = "2.17",
    authz: str | None = None,
    tag_name: str | None = None,
    object_store: str = "kfp",
) -> int:
    from kfadapter.sandbox import serve_forever  # the sandbox is only ever imported here and in tests
    from kfadapter.sandbox.authz import Policy, PolicyError

    if authz and not multi_user:
        print("kfadapter: --authz describes multi-user authorization; use it with --multi-user", file=sys.stderr)
        return 2
    try:
        policy = Policy.load(authz) if authz else None
    except PolicyError as exc:
        print(f"kfadapter: --authz: {exc}", file=sys.stderr)
        return 2

    settings = _sandbox_settings(load(files=False))
    port = sandbox_port(host, port, "--port")
    if port:  # else the server says which port it took
        print(f"sandbox KFP on http://{host}:{port} (control API under /_sandbox/)", flush=True)
    _sigterm_stops()
    serve_forever(
        host,
        port,
        mlmd_port,
        execute=execute,
        workers=settings.sandbox_workers,
        workdir=settings.sandbox_workdir,
        multi_user=multi_user,
        kfp_version=kfp_version,
        policy=policy,
        tag_name=tag_name,
        object_store=object_store,
    )
    return 0


def _sandbox_settings(settings: Settings) -> Settings:
    """Check the sandbox's working directory (created if missing)."""
    if settings.sandbox_workdir:
        writable_dir("KFADAPTER_SANDBOX_WORKDIR", settings.sandbox_workdir, create=True)
    return settings


def _sigterm_stops() -> None:
    """SIGTERM ends the sandbox like Ctrl-C does, so executing runs' process groups are killed on the way out."""
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)


def _outputs(args: argparse.Namespace) -> int:
    """Print a run's outputs as the JSON of GET /runs/<id>/outputs; an error envelope on stderr and exit 1."""
    from kfadapter.core.errors import AdapterError
    from kfadapter.kfconnect import KfConnect
    from kfadapter.outputs.service import OutputsService

    # Credentials stay in the environment (never on a command line, where `ps` shows them).
    overrides = {
        k: v
        for k, v in (
            ("kfp_endpoint", args.kfp_endpoint),
            ("mlmd_endpoint", args.mlmd_endpoint),
            ("object_store_endpoint", args.object_store_endpoint),
        )
        if v
    }
    settings = dataclasses.replace(Settings.from_env(), **overrides)
    if not settings.kfp_endpoint:
        raise SettingsError("set KFADAPTER_KFP_ENDPOINT or pass --kfp-endpoint")
    service = OutputsService(settings, KfConnect(settings))
    try:
        body = service.run_outputs(args.run_id, task=args.task, logs=args.logs)
    except AdapterError as exc:
        print(json.dumps(exc.to_dict()), file=sys.stderr)
        return 1
    finally:
        service.mlmd.close()
    print(json.dumps(body, indent=2, default=str))
    return 0


def _check(args: argparse.Namespace) -> int:
    """Run the dependency checks here (or ask a running adapter); exit 1 when any fails."""
    if not 0 < args.timeout <= 300:
        raise SettingsError(f"--timeout must be between 0 and 300 seconds, got {args.timeout}")
    from kfadapter.api import check_report

    return check_report.command(None if args.url else load(), args.url, args.json, args.timeout)


def _rewrite_volume(args: argparse.Namespace) -> int:
    """Write the volume-passing rewrite of a v1 package; an error envelope on stderr and exit 1."""
    from kfadapter.core.errors import AdapterError
    from kfadapter.packages import parsing as pipelines
    from kfadapter.packages import volume_passing

    try:
        with open(args.input, "rb") as fh:
            data = fh.read()
        # --claim is always a claim name; --volume always JSON (a claim name there would be ambiguous).
        volume = (
            volume_passing.claim_volume(args.claim)
            if args.claim is not None
            else volume_passing.check_volume(_json_arg(args.volume))
        )
        _, out = volume_passing.rewrite_package(pipelines.load_package(data), volume, path_prefix=args.path_prefix)
    except AdapterError as exc:
        print(json.dumps(exc.to_dict()), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kfadapter: {exc}", file=sys.stderr)
        return 1
    if args.output == "-":
        sys.stdout.buffer.write(out)
        return 0
    try:
        with open(args.output, "wb") as fh:
            fh.write(out)
    except OSError as exc:
        print(f"kfadapter: {exc}", file=sys.stderr)
        return 1
    return 0


def _json_arg(text: str) -> object:
    from kfadapter.core.errors import BadRequest

    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest(
            f"--volume is not valid JSON: {exc}", code="invalid_volume", details={"field": "volume"}
        ) from None


def _serve(args: argparse.Namespace) -> int:
    if args.multi_user and not args.sandbox:
        print("kfadapter: --multi-user describes the sandbox KFP; use it with --sandbox", file=sys.stderr)
        return 2
    if args.object_store != "kfp" and not args.sandbox:
        print("kfadapter: --object-store describes the sandbox's object store; use it with --sandbox", file=sys.stderr)
        return 2
    if not args.sandbox:
        return _exec_gunicorn(args)
    from kfadapter.sandbox import SandboxServer

    base = load()
    check_listen(f"{args.host or '127.0.0.1'}:{args.port or base.port}", "--host / --port")  # one line, exit 2
    _sigterm_stops()
    # The sandbox executes v2 runs for real (kfp.local, one child process per run, a bounded pool).
    kfp = SandboxServer(
        host="127.0.0.1",
        port=sandbox_port("127.0.0.1", args.sandbox_port, "--sandbox-port"),
        execute=True,
        workers=base.sandbox_workers,
        workdir=base.sandbox_workdir,
        multi_user=args.multi_user,
        kfp_version=args.kfp_version,
        tag_name=args.tag_name,
        object_store=args.object_store,
    ).start()
    executor = kfp.executor
    assert executor is not None  # execute=True
    print(
        f"sandbox KFP {args.kfp_version} on {kfp.url} (control API under /_sandbox/), executing v2 runs with "
        "kfp.local "
        f"({executor.workers} at a time, working directories in {executor.root})",
        flush=True,
    )
    print(f"sandbox ML Metadata (gRPC) on {kfp.mlmd_endpoint}", flush=True)
    access_key, secret_key = kfp.object_store_keys
    print(
        f"sandbox object store on {kfp.object_store_endpoint} (S3 with SigV4; access key {access_key}, secret key "
        f"{secret_key})",
        flush=True,
    )
    print(
        f"  e.g. KFADAPTER_OBJECT_STORE_ACCESS_KEY={access_key} KFADAPTER_OBJECT_STORE_SECRET_KEY="
        f"{secret_key} kfadapter outputs RUN_ID --kfp-endpoint {kfp.url} --mlmd-endpoint "
        f"{kfp.mlmd_endpoint} --object-store-endpoint {kfp.object_store_endpoint}",
        flush=True,
    )
    settings = dataclasses.replace(
        base, host=args.host or "127.0.0.1", kfp_endpoint=kfp.url, **({"port": args.port} if args.port else {})
    )
    if not any(os.environ.get(k, "").strip() for k in ("KFADAPTER_STORE_PATH", "KFADAPTER_STORE_URL")):
        # The sandbox starts empty: a store kept from an earlier start would only hold runs it no longer
        # knows (each one a "Manual reconcile" notification), so the store lives and dies with this start.
        settings = dataclasses.replace(settings, store_path=str(executor.root / "store.sqlite"))
    print(f"store of tracked runs: {settings.store_path}", flush=True)
    if args.multi_user and not (settings.kfp_token or settings.kfp_token_file):
        # Multi-user KFP answers 401 to a call without an identity; the sandbox takes any bearer token as one.
        settings = dataclasses.replace(settings, kfp_token=SANDBOX_TOKEN)
    if not os.environ.get("KFADAPTER_POLL_INTERVAL", "").strip():
        settings = dataclasses.replace(settings, poll_interval=2.0)  # watch runs finish without waiting long
    if not settings.tm_url:
        # No training manager: the sandbox's own receiver takes the notifications (GET /_sandbox/notifications).
        settings = dataclasses.replace(settings, tm_url=f"{kfp.url}/_sandbox/notifications")
        print(f"no training manager configured: notifications go to {settings.tm_url} (GET it to see them)", flush=True)
    # The sandbox also plays ML Metadata (gRPC) and the object store (S3, SigV4-checked against its own keys).
    settings = dataclasses.replace(
        settings,
        mlmd_endpoint=kfp.mlmd_endpoint,
        object_store_endpoint=kfp.object_store_endpoint,
        object_store_access_key=access_key,
        object_store_secret_key=secret_key,
    )
    from werkzeug.serving import make_server

    from kfadapter.app import create_app
    from kfadapter.watch import opening

    app = create_app(settings)
    # Sandbox mode is one process (adapter, sandbox and watcher threads), so a threaded WSGI server is enough;
    # the app's own access log (kfadapter.access) is the one line per request.
    server = make_server(settings.host, settings.port, app, threaded=True, request_handler=_no_request_log())
    watcher = app.extensions["kfadapter.watcher"] if settings.watch_enabled else None
    # As under gunicorn: a store that is down at start is waited for, the watcher starts once it is open.
    opening.open_in_background(app.extensions["kfadapter.store"], watcher.start if watcher is not None else None)
    print(f"kfadapter on http://{settings.host}:{settings.port} -> KFP {settings.kfp_endpoint}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if watcher is not None:
            watcher.stop()
        kfp.stop()
    return 0


def _no_request_log():
    from werkzeug.serving import WSGIRequestHandler

    class NoRequestLog(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # errors still reach werkzeug's logger

    return NoRequestLog


def sandbox_port(host: str, asked: int | None, option: str) -> int:
    """The sandbox's port: the one asked for (taken: a configuration error naming `option`), else 8888, else,
    when 8888 is taken, a free one (0: the server binds any), which the banner then shows."""
    if asked is not None:
        if asked and not _can_bind(host, asked):
            raise SettingsError(
                f"port {asked} on {host} is taken ({option} {asked}); choose another, or leave "
                f"{option} out to take {DEFAULT_SANDBOX_PORT} or, when that is taken, a free one"
            )
        return asked
    if _can_bind(host, DEFAULT_SANDBOX_PORT):
        return DEFAULT_SANDBOX_PORT
    print(
        f"port {DEFAULT_SANDBOX_PORT} is taken: the sandbox KFP takes a free port instead (shown below; "
        f"{option} N chooses one)",
        flush=True,
    )
    return 0


def _can_bind(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug's server binds
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _exec_gunicorn(args: argparse.Namespace) -> int:
    """Validate the settings, then replace this process with gunicorn (signals go straight to it)."""
    if args.host:
        os.environ["KFADAPTER_HOST"] = args.host
    if args.port:
        os.environ["KFADAPTER_PORT"] = str(args.port)
    settings = load()
    options = gunicorn_options(check_dirs=True)
    if not settings.kfp_endpoint:
        raise SettingsError("set KFADAPTER_KFP_ENDPOINT (or KUBEFLOW_HOST and KUBEFLOW_PORT), or use --sandbox")
    check_listen(*listen_address(settings, options))
    # glibc raises its mmap threshold after the first large free, so later package-sized buffers come from
    # arenas that rarely shrink: a worker kept 0.7-1 GiB after 16 large uploads. A fixed threshold keeps
    # buffers over 256 KiB in their own mappings, returned when freed (an operator's own value wins).
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 * 1024))
    logging.getLogger(__name__).info("starting gunicorn: %r", settings)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:kfadapter.server.gunicorn_conf", "kfadapter.wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
