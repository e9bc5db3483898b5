"""Command line: `kfadapter serve [--sandbox]` and `kfadapter sandbox`."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    settings = Settings.from_env()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.sandbox:
        from .sandbox import SandboxServer

        kfp = SandboxServer(host="127.0.0.1", port=args.sandbox_port).start()
        overrides.setdefault("host", "127.0.0.1")
        overrides["kfp_endpoint"] = kfp.url
        print(f"sandbox KFP on {kfp.url} (control API under /_sandbox/)", flush=True)
    settings = dataclasses.replace(settings, **overrides)
    if not settings.kfp_endpoint:
        raise SettingsError("set KFADAPTER_KFP_ENDPOINT (or KUBEFLOW_HOST and KUBEFLOW_PORT), or use --sandbox")
    from .app import create_app

    app = create_app(settings)
    if args.sandbox:
        # Sandbox mode is one process (adapter + sandbox threads), so a threaded WSGI server is enough.
        from werkzeug.serving import make_server

        server = make_server(settings.host, settings.port, app, threaded=True)
        print(f"kfadapter on http://{settings.host}:{settings.port} -> KFP {settings.kfp_endpoint}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    from .gunicorn_app import run_gunicorn

    return run_gunicorn(app, settings)


if __name__ == "__main__":
    sys.exit(main())
