"""Sandbox KFP: an in-memory emulator of the Kubeflow Pipelines v2beta1 REST API (plus the v1beta1
calls the adapter needs) that the real kfp.Client talks to over HTTP. Test controls: see `control`.
With `SandboxServer(execute=True)` it also executes v2 runs with kfp.local: see `runner` and `executor`."""

from .app import create_sandbox_app
from .server import SandboxServer, main, serve_forever

__all__ = ["create_sandbox_app", "SandboxServer", "serve_forever", "main"]
