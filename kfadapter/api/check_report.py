"""`kfadapter check`'s front: run the probes here or ask a running adapter, then print a table or JSON."""

from __future__ import annotations

import json
import os
import sys

import requests

from kfadapter.api.probes import FAIL, OK, SKIP, Result, failed, for_settings, run_all
from kfadapter.settings import Settings


def command(settings: Settings | None, url: str | None, as_json: bool, timeout: float) -> int:
    """Run the dependency checks with `settings` (or ask the adapter at `url`), print them; 1 when any failed."""
    if url:
        try:
            results = ask(url, os.environ.get("KFADAPTER_API_TOKEN", "").strip() or None, timeout)
        except AskFailed as exc:
            print(f"kfadapter check: {exc}", file=sys.stderr)
            return 1
    else:
        assert settings is not None
        results = run_all(for_settings(settings, timeout))
    if as_json:
        print(json.dumps({"checks": [r.to_dict() for r in results], "ok": not failed(results)}, indent=2))
    else:
        print(table(results))
    return 1 if failed(results) else 0


class AskFailed(Exception):
    """A running adapter gave no check results."""


def ask(url: str, token: str | None, timeout: float) -> list[Result]:
    """Return a running adapter's deep-readiness results (its probes run in its pod, with its settings)."""
    target = f"{url.rstrip('/')}/readiness?deep=true"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # Its probes run at once, each bounded by its own timeouts: allow the slowest of them and some slack.
        resp = requests.get(target, headers=headers, timeout=(min(5.0, timeout), 4 * timeout + 30))
        body = resp.json()
    except (requests.RequestException, ValueError) as exc:
        raise AskFailed(f"no check results from {target} ({type(exc).__name__})") from None
    checks = body.get("checks") if resp.status_code == 200 else (body.get("details") or {}).get("checks")
    if not isinstance(checks, list):
        raise AskFailed(f"{target} answered HTTP {resp.status_code}: {body.get('message', body)}")
    fields = set(Result.__dataclass_fields__)
    return [Result(**{k: v for k, v in c.items() if k in fields}) for c in checks if isinstance(c, dict)]


# ---- rendering --------------------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    """Render results as a text table, each failure followed by its fix."""
    marks = {OK: "ok", FAIL: "FAIL", SKIP: "skip"}
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        lines.append(f"{r.name:<{width}}  {marks[r.status]:<4}  {r.detail}")
        if r.target:
            lines.append(f"{'':<{width}}        tried: {r.target}")
        if r.fix:
            lines.append(f"{'':<{width}}        fix:   {r.fix}")
    counts = {status: sum(r.status == status for r in results) for status in (OK, FAIL, SKIP)}
    lines.append(f"{counts[OK]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)
