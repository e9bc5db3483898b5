"""The sandbox's second door: what `ml-pipeline-ui` answers itself under `/pipeline` instead of proxying.

In a cluster `/pipeline/apis/...` reaches the API server through the UI's proxy, except healthz: the UI registers
its own handler for `/apis/v1beta1/healthz` and `/apis/v2beta1/healthz`, with and without the `/pipeline` base
path (frontend/server/app.ts). That handler (frontend/server/handlers/healthz.ts) fetches the API server's healthz
with a 1 s timeout and answers 200 with its own keys (`buildDate`, `frontendCommitHash`, `frontendTagName`,
`apiServerReady`, `apiServerCommitHash`, `apiServerTagName`, `apiServerMultiUser`, `multi_user`, and
`pipelineStore` from 2.14), never `tag_name`, and 200 even when the API server does not answer: then
`apiServerReady` is false and the keys of the last good answer stay (the handler keeps one object). node-fetch does
not look at the HTTP status, so an API server answering any JSON counts as ready; its missing keys are left out.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from flask import Blueprint, current_app, jsonify, request

from kfadapter.sandbox import versions

bp = Blueprint("sandbox_ui", __name__)
PREFIX = "/pipeline"
# The UiProxyPrefix middleware sends the UI's own healthz here: under /_sandbox/ nothing is counted or faulted,
# since the request never reaches the API server (the UI's own fetch below does).
ROUTE = "/_sandbox/ui/apis/<api>/healthz"
HEALTHZ_PATHS = {f"{PREFIX}/apis/{api}/healthz": f"/_sandbox/ui/apis/{api}/healthz" for api in ("v1beta1", "v2beta1")}
_FETCH_TIMEOUT = 1.0  # healthz.ts: fetch(healthzEndpoint, {timeout: 1000})


def _build_metadata() -> dict:
    """getBuildMetadata(): the frontend image's BUILD_DATE, COMMIT_HASH and TAG_NAME files."""
    version = versions.active()
    tag = current_app.config.get("SANDBOX_TAG_NAME") or (version.tag if version.labelled else "")
    return {"buildDate": "", "frontendCommitHash": "", "frontendTagName": tag}


@bp.get(ROUTE)
def ui_healthz(api: str):
    """ml-pipeline-ui's healthz: its stats object, refreshed from the API server's healthz when it answers."""
    stats = current_app.extensions.setdefault("sandbox_ui_healthz", {})
    state = stats.setdefault(api, _build_metadata())
    try:
        # The API server door of this same sandbox, as the UI reaches ml-pipeline:8888 (counted, faults apply).
        with urllib.request.urlopen(f"http://{request.host}/apis/{api}/healthz", timeout=_FETCH_TIMEOUT) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # any status: node-fetch resolves, then response.json() may throw
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = None
    except (OSError, ValueError):  # refused, reset, timed out, not JSON
        answer = None
    if answer is not None and not isinstance(answer, dict):
        answer = {}
    return jsonify(versions.active().ui_healthz(answer, state))
