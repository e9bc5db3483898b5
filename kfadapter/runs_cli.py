"""`kfadapter runs list|get|wait|logs|outputs`: read runs from a running adapter over its HTTP API.

The adapter is `--url` (default `KFADAPTER_URL`, else `http://127.0.0.1:5001`); when it requires a token, the
client sends `KFADAPTER_API_TOKEN` (or the content of `KFADAPTER_API_TOKEN_FILE`). Every answer is printed as a
table, or as the adapter's JSON with `--json`. Exit codes: 0 done (for `wait`: the run SUCCEEDED), 1 the
adapter answered an error or could not be reached (its message on stderr), 2 a bad command line, and for `wait`
1 when the run ended in another state and 3 when it had not ended within `--timeout`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from urllib.parse import quote

import requests
from tabulate import tabulate

DEFAULT_URL = "http://127.0.0.1:5001"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 60.0
VALUE_WIDTH = 60  # characters of a value shown in the outputs table
EXIT_FAILED, EXIT_TIMEOUT = 1, 3


class ClientError(Exception):
    """The adapter answered an error, or could not be reached."""


def add_parser(sub: Any) -> None:
    """Add `runs` and its commands to the `kfadapter` command line."""
    runs = sub.add_parser(
        "runs",
        help="list, show, wait for and read runs of a running adapter",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the adapter's base URL (default KFADAPTER_URL or {DEFAULT_URL})")
    common.add_argument("--json", action="store_true", help="print the adapter's JSON instead of a table")
    cmds = runs.add_subparsers(dest="runs_command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return cmds.add_parser(name, help=help, description=help, parents=[common])

    ls = command("list", "every run, newest first (GET /runs), or one training job's")
    ls.add_argument("--trainingjob", help="only this training job's runs (GET /trainingjobs/<id>/runs)")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the run ids, one a line")
    get = command("get", "one run: state, times, tasks, and why it failed (GET /runs/<id>)")
    get.add_argument("run_id", help="the run id")
    wait = command(
        "wait",
        "wait until the run ends, printing its and its tasks' states as they change; exit 0 "
        "only when it SUCCEEDED (1: it ended otherwise, 3: --timeout passed)",
    )
    wait.add_argument("run_id", help="the run id")
    wait.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (exit 3)")
    wait.add_argument("--interval", type=float, default=2.0, help="seconds between two looks (default 2)")
    logs = command("logs", "the steps' logs as text (GET /runs/<id>/logs; --json does not apply)")
    logs.add_argument("run_id", help="the run id")
    logs.add_argument("--task", help="only this task's log (its id or name)")
    logs.add_argument("--tail", type=int, help="only the last N lines of each log")
    outputs = command("outputs", "the tasks' outputs as typed values (GET /runs/<id>/outputs)")
    outputs.add_argument("run_id", help="the run id")
    outputs.add_argument("--task", help="only this task's outputs (its id or name)")
    outputs.add_argument("--output", help="only this output (by name)")
    outputs.add_argument(
        "--download", metavar="FILE", help="with --task and --output: write the output's bytes to FILE ('-': stdout)"
    )


def main(args: argparse.Namespace) -> int:
    """Run one `kfadapter runs` command."""
    client = Client(args.url or os.environ.get("KFADAPTER_URL", "").strip() or DEFAULT_URL, _token())
    try:
        if args.runs_command == "list":
            return _list(client, args)
        if args.runs_command == "get":
            return _print(args, client.json(f"/runs/{_seg(args.run_id)}"), run_table)
        if args.runs_command == "wait":
            return _wait(client, args)
        if args.runs_command == "logs":
            return _logs(client, args)
        return _outputs(client, args)
    except ClientError as exc:
        print(f"kfadapter runs: {exc}", file=sys.stderr)
        return 1


class Client:
    """GET calls to the adapter, every one with a timeout; error envelopes become ClientError."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, params: dict | None = None, stream: bool = False) -> requests.Response:
        """GET a path; raise ClientError for an error answer (its message) or no answer."""
        try:
            resp = self.session.get(
                self.url + path, params=params, stream=stream, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            )
        except requests.RequestException as exc:
            raise ClientError(
                f"no answer from the adapter at {self.url} ({type(exc).__name__}); is it running? "
                "(--url or KFADAPTER_URL)"
            ) from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
                message = f"{body.get('code')}: {body.get('message')}"
            except ValueError:
                message = resp.text[:200]
            raise ClientError(f"{resp.status_code} from GET {path}: {message}")
        return resp

    def json(self, path: str, params: dict | None = None) -> Any:
        """GET a path and decode its JSON."""
        resp = self.get(path, params)
        try:
            return resp.json()
        except ValueError:
            raise ClientError(f"GET {path} did not answer JSON: is {self.url} a kfadapter?") from None


# ---- commands --------------------------------------------------------------------------------------------


def _list(client: Client, args: argparse.Namespace) -> int:
    if args.trainingjob:
        body = client.json(f"/trainingjobs/{_seg(args.trainingjob)}/runs")
        rows = [
            {
                "run_id": r["run_id"],
                "status": r.get("state"),
                "pipeline": r.get("pipeline_name"),
                "tracked": r.get("tracked"),
                "notification": (r.get("notification") or {}).get("status"),
            }
            for r in body.get("runs") or []
        ]
    else:
        body = client.json("/runs")
        rows = [
            {"run_id": r["run_id"], "name": name, "status": r.get("run_status"), "pipeline": r.get("pipeline_name")}
            for name, r in body.items()
        ]
    if args.quiet:
        for row in rows:
            print(row["run_id"])
        return 0
    return _print(args, body, lambda _: _table(rows) if rows else "no runs")


def _wait(client: Client, args: argparse.Namespace) -> int:
    """Poll GET /runs/<id>; print a line for the run's and every task's state when it changes."""
    deadline = time.monotonic() + args.timeout
    seen: dict[str, str] = {}
    progress = sys.stderr if args.json else sys.stdout
    while True:
        run = client.json(f"/runs/{_seg(args.run_id)}")
        for key, label, state in [("", "run", run.get("run_status"))] + [
            (t.get("id") or t["name"], f"task {t['name']}", t.get("state")) for t in run.get("tasks") or []
        ]:
            if seen.get(key) != state:
                seen[key] = state
                print(f"{time.strftime('%H:%M:%S')}  {label:<24} {state}", file=progress, flush=True)
        if run.get("run_status") in TERMINAL:
            _print(args, run, run_table)
            return 0 if run["run_status"] == "SUCCEEDED" else EXIT_FAILED
        if time.monotonic() >= deadline:
            print(
                f"kfadapter runs wait: run {args.run_id} is still {run.get('run_status')} after "
                f"{args.timeout:g} s, giving up",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        time.sleep(max(0.1, min(args.interval, deadline - time.monotonic())))


def _logs(client: Client, args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("task", args.task), ("tail", args.tail)) if v is not None}
    resp = client.get(f"/runs/{_seg(args.run_id)}/logs", params, stream=True)
    out = sys.stdout.buffer
    try:
        for chunk in resp.iter_content(64 * 1024):
            out.write(chunk)
    except requests.RequestException as exc:
        raise ClientError(f"the log stopped midway ({type(exc).__name__})") from None
    finally:
        resp.close()
    out.flush()
    return 0


def _outputs(client: Client, args: argparse.Namespace) -> int:
    params = {"task": args.task} if args.task else None
    body = client.json(f"/runs/{_seg(args.run_id)}/outputs", params)
    if args.output:
        for task in body.get("tasks") or []:
            task["outputs"] = [o for o in task.get("outputs") or [] if o.get("name") == args.output]
        body["tasks"] = [t for t in body.get("tasks") or [] if t["outputs"]]
        if not body["tasks"]:
            raise ClientError(
                f"run {args.run_id} has no output {args.output!r}" + (f" in task {args.task!r}" if args.task else "")
            )
    if args.download is not None:
        return _download(client, body, args)
    return _print(args, body, outputs_table)


def _download(client: Client, body: dict, args: argparse.Namespace) -> int:
    found = [o for t in body["tasks"] for o in t["outputs"]]
    if not args.output or len(found) != 1:
        raise ClientError("--download needs --output naming one output (and --task when several tasks have it)")
    if not found[0].get("download"):
        raise ClientError(
            f"output {args.output!r} has no bytes to download (a parameter: its value is "
            f"{json.dumps(found[0].get('value'))})"
        )
    resp = client.get(found[0]["download"], stream=True)
    target = sys.stdout.buffer if args.download == "-" else open(args.download, "wb")
    try:
        for chunk in resp.iter_content(64 * 1024):
            target.write(chunk)
    finally:
        resp.close()
        if target is not sys.stdout.buffer:
            target.close()
    if target is sys.stdout.buffer:
        target.flush()
    return 0


# ---- rendering -------------------------------------------------------------------------------------------


def _print(args: argparse.Namespace, body: Any, render) -> int:
    print(json.dumps(body, indent=2) if args.json else render(body))
    return 0


def _table(rows: list[dict]) -> str:
    return tabulate(
        [{k.upper().replace("_", " "): ("" if v is None else v) for k, v in r.items()} for r in rows], headers="keys"
    )


def run_table(run: dict) -> str:
    """A run as a few lines and a table of its tasks."""
    lines = [
        f"run {run.get('run_id')}  {run.get('run_name') or ''}".rstrip(),
        f"status      {run.get('run_status')}",
        f"created     {run.get('created_at')}",
        f"finished    {run.get('finished_at') or '-'}",
    ]
    if run.get("trainingjob_id"):
        note = (run.get("notification") or {}).get("status")
        lines.append(f"trainingjob {run['trainingjob_id']} (notification: {note or '-'})")
    if (run.get("error") or {}).get("message"):
        lines.append(f"error       {run['error']['message']}")
    tasks = [
        {
            "task": t.get("name"),
            "state": t.get("state"),
            "started": t.get("start_time"),
            "ended": t.get("end_time"),
            "id": t.get("id"),
        }
        for t in run.get("tasks") or []
    ]
    return "\n".join(lines) + ("\n\n" + _table(tasks) if tasks else "\n(no task has started yet)")


def outputs_table(body: dict) -> str:
    """Every task's outputs: name, type and value (cut), or why there is none, and where to download it."""
    rows = []
    for task in body.get("tasks") or []:
        for o in task.get("outputs") or [{}]:
            rows.append(
                {
                    "task": task.get("name"),
                    "state": task.get("state"),
                    "output": o.get("name"),
                    "type": o.get("type"),
                    "value": _value(o),
                    "download": o.get("download"),
                }
            )
    head = f"run {body.get('run_id')}  {body.get('run_status')}"
    return head + ("\n\n" + _table(rows) if rows else "\n(no task has recorded anything yet)")


def _value(output: dict) -> str:
    if not output:
        return ""
    if output.get("available") is False:
        return f"({output.get('reason') or (output.get('error') or {}).get('message') or 'not available'})"
    if output.get("truncated"):
        return f"({output.get('size')} bytes, see download)"
    value = output.get("value")
    text = (value if isinstance(value, str) else json.dumps(value)).replace("\n", "\\n")
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _token() -> str | None:
    token = os.environ.get("KFADAPTER_API_TOKEN", "").strip()
    path = os.environ.get("KFADAPTER_API_TOKEN_FILE", "").strip()
    if not token and path:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise SystemExit(f"kfadapter runs: cannot read KFADAPTER_API_TOKEN_FILE: {exc}") from None
    return token or None
