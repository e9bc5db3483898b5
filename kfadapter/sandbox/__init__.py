"""Sandbox KFP: an in-memory emulator of the Kubeflow Pipelines v2beta1 REST API (plus the v1beta1
calls the adapter needs) that the real kfp.Client talks to over HTTP. Test controls: see `control`.
With `SandboxServer(execute=True)` it also executes v2 runs with kfp.local: see `runner` and `executor`."""

from kfadapter.sandbox.app import create_sandbox_app
from kfadapter.sandbox.server import SandboxServer, main, serve_forever

__all__ = ["SandboxServer", "create_sandbox_app", "main", "serve_forever"]
