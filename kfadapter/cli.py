"""Command line: `kfadapter serve [--sandbox]` and `kfadapter sandbox`."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from .observability import configure_logging
from .settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    """Run the `kfadapter` command."""
    parser = argparse.ArgumentParser(prog="kfadapter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the adapter")
    serve.add_argument("--host", help="listen address (default KFADAPTER_HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default KFADAPTER_PORT / KF_ADAPTER_PORT or 5001)")
    serve.add_argument("--sandbox", action="store_true",
                       help="start an in-process sandbox KFP and point the adapter at it (no cluster needed)")
    serve.add_argument("--sandbox-port", type=int, default=8888, help="port of the in-process sandbox KFP")
    sandbox = sub.add_parser("sandbox", help="run only the sandbox KFP")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8888)
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("KFADAPTER_LOG_FORMAT", "text" if args.command != "serve" or args.sandbox
                                     else "json").lower(), os.environ.get("KFADAPTER_LOG_LEVEL", "INFO"))
    try:
        if args.command == "sandbox":
            return _run_sandbox(args.host, args.port)
        return _serve(args)
    except SettingsError as exc:
        print(f"kfadapter: configuration error: {exc}", file=sys.stderr)
        return 2


def _run_sandbox(host: str, port: int) -> int:
    from .sandbox import serve_forever  # the sandbox is only ever imported here and in tests

    print(f"sandbox KFP on http://{host}:{port} (control API under /_sandbox/)", flush=True)
    serve_forever(host, port)
    return 0


def _serve(args: argparse.Namespace) -> int:
    if not args.sandbox:
        return _exec_gunicorn(args)
    from .sandbox import SandboxServer

    kfp = SandboxServer(host="127.0.0.1", port=args.sandbox_port).start()
    print(f"sandbox KFP on {kfp.url} (control API under /_sandbox/)", flush=True)
    settings = dataclasses.replace(Settings.from_env(), host=args.host or "127.0.0.1", kfp_endpoint=kfp.url,
                                   **({"port": args.port} if args.port else {}))
    from werkzeug.serving import make_server

    from .app import create_app

    app = create_app(settings)
    # Sandbox mode is one process (adapter, sandbox and watcher threads), so a threaded WSGI server is enough.
    server = make_server(settings.host, settings.port, app, threaded=True)
    watcher = app.extensions["kfadapter.watcher"].start() if settings.watch_enabled else None
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


def _exec_gunicorn(args: argparse.Namespace) -> int:
    """Validate the settings, then replace this process with gunicorn (signals go straight to it)."""
    if args.host:
        os.environ["KFADAPTER_HOST"] = args.host
    if args.port:
        os.environ["KFADAPTER_PORT"] = str(args.port)
    settings = Settings.from_env()
    if not settings.kfp_endpoint:
        raise SettingsError("set KFADAPTER_KFP_ENDPOINT (or KUBEFLOW_HOST and KUBEFLOW_PORT), or use --sandbox")
    logging.getLogger(__name__).info("starting gunicorn: %r", settings)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:kfadapter.gunicorn_conf", "kfadapter.wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
