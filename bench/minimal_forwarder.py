"""The least an adapter can be on this stack: a Flask app under gunicorn that forwards each GET with urllib3.

No kfp-server-api, no JSON decoding or encoding, no logging, metrics, store or checks. `bench/run.py` times it
like the adapter, against the same floor: what it adds is what Flask, gunicorn and urllib3 alone cost on this
machine, the bound under which the adapter's own figures cannot go.
    KFADAPTER_BENCH_UPSTREAM=http://127.0.0.1:PORT gunicorn -k gthread bench.minimal_forwarder:app
"""

from __future__ import annotations

import os

import urllib3
from flask import Flask, Response, request

UPSTREAM = os.environ["KFADAPTER_BENCH_UPSTREAM"]
pool = urllib3.PoolManager(maxsize=32)
app = Flask(__name__)


@app.get("/<path:path>")
def forward(path: str) -> Response:
    """Make the same GET upstream and answer its body."""
    query = request.query_string.decode()
    answer = pool.request("GET", f"{UPSTREAM}/{path}" + (f"?{query}" if query else ""), timeout=10.0)
    return Response(answer.data, status=answer.status, content_type="application/json")
