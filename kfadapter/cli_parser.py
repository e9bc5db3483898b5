"""The `kfadapter` command line: every command and option with its help (what `cli.main` runs is in `cli`)."""

from __future__ import annotations

import argparse

from kfadapter import runs_cli
from kfadapter.core.version import version

KFP_VERSIONS = ("2.3", "2.5", "2.14", "2.17")  # the sandbox's profiles (kfadapter/sandbox/versions.py)
_TAG_NAME_HELP = "healthz tag_name the sandbox reports (default: the official image's; 'unknown' on 2.5 and 2.14)"
DESCRIPTION = """Command line: `kfadapter serve [--sandbox]`, `kfadapter sandbox`, `kfadapter check`, `kfadapter outputs RUN_ID`,
`kfadapter rewrite-volume IN OUT --claim NAME` and `kfadapter runs list|get|wait|logs|outputs`."""


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser (every option has a help text; tests/test_cli.py checks it)."""
    parser = argparse.ArgumentParser(prog="kfadapter", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"kfadapter {version()}", help="print the installed version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the adapter")
    serve.add_argument("--host", help="listen address (default KFADAPTER_HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default KFADAPTER_PORT / KF_ADAPTER_PORT or 5001)")
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="start an in-process sandbox KFP and point the adapter at it (no cluster needed)",
    )
    serve.add_argument(
        "--sandbox-port",
        type=int,
        help="port of the in-process sandbox KFP (default 8888, or a free one when 8888 is taken; 0: any)",
    )
    serve.add_argument(
        "--multi-user",
        action="store_true",
        help="with --sandbox: the sandbox KFP runs in multi-user mode (namespaces, no Default experiment)",
    )
    serve.add_argument(
        "--kfp-version",
        choices=KFP_VERSIONS,
        default="2.17",
        help="KFP API server version the sandbox plays (with --sandbox)",
    )
    serve.add_argument(
        "--object-store",
        choices=("kfp", "leofs"),
        default="kfp",
        help="with --sandbox: its object store is the played KFP's own (kfp) or O-RAN's LeoFS (bucket from the Host header)",
    )
    serve.add_argument("--tag-name", help=_TAG_NAME_HELP + " (with --sandbox)")
    sandbox = sub.add_parser("sandbox", help="run only the sandbox KFP")
    sandbox.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sandbox.add_argument(
        "--port", type=int, help="port of its KFP REST API (default 8888, or a free one when 8888 is taken; 0: any)"
    )
    sandbox.add_argument("--mlmd-port", type=int, default=0, help="port of its ML Metadata gRPC service (0: any)")
    sandbox.add_argument(
        "--execute",
        action="store_true",
        help="really execute v2 runs with kfp.local (KFADAPTER_SANDBOX_WORKERS at a time)",
    )
    sandbox.add_argument(
        "--multi-user",
        action="store_true",
        help="emulate multi-user KFP: namespaced pipelines, experiments and runs, no Default experiment, every "
        "call authorized (an identity is needed: header kubeflow-userid or a bearer token)",
    )
    sandbox.add_argument(
        "--authz",
        metavar="FILE",
        help='with --multi-user: JSON {"tokens": {"<bearer token>": "<identity>"}, "bindings": [{"identity", '
        '"namespace", "verbs": ["*"] or ["get", "list", "create", ...]}]}; without it any token or '
        "kubeflow-userid is an identity allowed everything",
    )
    sandbox.add_argument(
        "--kfp-version",
        choices=KFP_VERSIONS,
        default="2.17",
        help="KFP API server version to play (error bodies, fields, status codes, object store)",
    )
    sandbox.add_argument(
        "--object-store",
        choices=("kfp", "leofs"),
        default="kfp",
        help="the played KFP's own object store (kfp) or O-RAN's LeoFS (bucket from the Host header)",
    )
    sandbox.add_argument("--tag-name", help=_TAG_NAME_HELP)
    outputs = sub.add_parser("outputs", help="print a run's outputs as JSON (no server needed)")
    outputs.add_argument("run_id", help="the KFP run id")
    outputs.add_argument("--kfp-endpoint", help="KFP API base URL (default KFADAPTER_KFP_ENDPOINT)")
    outputs.add_argument("--mlmd-endpoint", help="ML Metadata gRPC host:port (default KFADAPTER_MLMD_ENDPOINT)")
    outputs.add_argument(
        "--object-store-endpoint",
        help="S3-style object store URL for v2 artifact contents (default "
        "KFADAPTER_OBJECT_STORE_ENDPOINT); its credentials come from the environment: "
        "KFADAPTER_OBJECT_STORE_ACCESS_KEY / KFADAPTER_OBJECT_STORE_SECRET_KEY",
    )
    outputs.add_argument("--task", help="only this task (id or name)")
    outputs.add_argument("--logs", action="store_true", help="include each step's main-logs")
    check = sub.add_parser(
        "check", help="try every dependency as the service uses it; print a table with a fix per failure, exit 1 on any"
    )
    check.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds each probe may take (default 10)")
    check.add_argument(
        "--url",
        help="ask a running adapter instead (its GET /readiness?deep=true, sending KFADAPTER_API_TOKEN if set): "
        "what its pods see, e.g. http://kfadapter.traininghost:5001",
    )
    rewrite = sub.add_parser("rewrite-volume", help="rewrite a v1 (Argo) package to pass data through one volume")
    rewrite.add_argument("input", help="v1 package (YAML, JSON, zip or tar.gz)")
    rewrite.add_argument("output", help="where to write the rewritten workflow as YAML ('-': stdout)")
    source = rewrite.add_mutually_exclusive_group(required=True)
    source.add_argument("--claim", help="name of an existing PersistentVolumeClaim (volume 'data-storage')")
    source.add_argument("--volume", help='JSON Kubernetes volume, e.g. \'{"name": "data", "nfs": {...}}\'')
    rewrite.add_argument("--path-prefix", default="artifact_data", help="directory for the data inside the volume")
    runs_cli.add_parser(sub)
    return parser
