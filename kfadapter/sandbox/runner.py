"""Real execution of sandbox runs (opt-in: `SandboxServer(execute=True)`, `kfadapter sandbox --execute`,
always on in `kfadapter serve --sandbox`).

Runs of v2 (IR) pipelines go to a bounded pool of `workers` threads. Each thread starts one child process
(`python -m kfadapter.sandbox.executor`, see there) in a new session, in the run's own working directory
`<workdir>/<run_id>/`, and waits for it: the run goes PENDING → RUNNING → SUCCEEDED or FAILED (with
`error {code, message}` as KFP sets it). The child's result becomes the run's ML Metadata records (one execution
per task with its output parameters, output artifacts whose files go into the sandbox object store under
`minio://mlpipeline/v2/artifacts/<pipeline>/<run_id>/<task>/[<random segment>/]<name>`, plus each task's log as
`executor-logs` from KFP 2.5), which `GET /runs/<id>/outputs` reads, and an Argo workflow whose executor pods
archived their logs as `main-logs` (served by `:read`).
Terminating a run moves it to CANCELING, kills the child's whole process group (SIGTERM, then SIGKILL after
a grace period) and ends CANCELED. Runs of v1 (Argo) packages are not executed: the control API moves them.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from . import mlmd
from .errors import ApiError

log = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # larger files are recorded by uri only
_PHASES = {"SUCCEEDED": "Succeeded", "FAILED": "Failed"}
_TASK_PHASES = {"COMPLETE": "Succeeded", "FAILED": "Failed", "CANCELED": "Failed"}
KILL_GRACE = 3.0


class RunExecutor:
    """A bounded pool that executes sandbox runs with kfp.local, one child process per run."""

    def __init__(self, state: Any, workers: int = 2, workdir: str | None = None, keep_workdirs: bool = True):
        self.state = state
        self.workers = max(1, int(workers))
        self.root = Path(workdir or tempfile.mkdtemp(prefix="kfadapter-sandbox-runs-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_workdirs = keep_workdirs
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox-run")
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._canceled: set[str] = set()
        self._owned: set[str] = set()
        self._done: dict[str, threading.Event] = {}

    # ---- API used by the routes -----------------------------------------------------------------
    def submit(self, run_id: str, package: Any, parameters: dict) -> bool:
        """Queue a run for execution; False (nothing done) for packages it does not execute (v1)."""
        if getattr(package, "kind", None) == "v1" or not isinstance(getattr(package, "ir", None), dict):
            return False
        with self._lock:
            self._owned.add(run_id)
            self._canceled.discard(run_id)  # a retried run executes again
            self._done[run_id] = threading.Event()
        self._pool.submit(self._execute, run_id, package.ir, dict(parameters))
        return True

    def owns(self, run_id: str) -> bool:
        """Whether this run is (or was) executed here."""
        with self._lock:
            return run_id in self._owned

    def terminate(self, run_id: str) -> bool:
        """Cancel an executed run: CANCELING, kill its process group, CANCELED. False if not ours."""
        with self._lock:
            if run_id not in self._owned:
                return False
            done = self._done.get(run_id)
            if done is not None and done.is_set():
                return True  # already finished: terminating is a no-op, as in KFP
            self._canceled.add(run_id)
            proc = self._procs.get(run_id)
        if not self._move(run_id, "CANCELING", only_unfinished=True):
            return True
        if proc is None:
            # Still queued (or between start and spawn): the worker sees the flag and ends it CANCELED.
            self._move(run_id, "CANCELED", only_unfinished=True)
            return True
        threading.Thread(target=self._kill, args=(run_id, proc), daemon=True, name=f"kill-{run_id[:8]}").start()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait until the run's worker is done (tests)."""
        with self._lock:
            done = self._done.get(run_id)
        return done.wait(timeout) if done is not None else True

    def forget(self, run_id: str) -> None:
        """The run was deleted: stop it if it is running."""
        if self.owns(run_id):
            with self._lock:
                self._canceled.add(run_id)
                proc = self._procs.get(run_id)
            if proc is not None:
                self._kill(run_id, proc)

    def cancel_all(self) -> None:
        """The sandbox was reset: stop every queued and running run (their records are gone)."""
        with self._lock:
            procs = list(self._procs.items())
            self._canceled.update(self._owned)
        for run_id, proc in procs:
            threading.Thread(target=self._kill, args=(run_id, proc), daemon=True).start()

    def shutdown(self) -> None:
        """Kill every running child and stop the pool."""
        with self._lock:
            procs = list(self._procs.items())
            self._canceled.update(self._owned)
        for run_id, proc in procs:
            self._kill(run_id, proc)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- worker side ------------------------------------------------------------------------------
    def _execute(self, run_id: str, ir: dict, parameters: dict) -> None:
        try:
            self._execute_inner(run_id, ir, parameters)
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            log.exception("sandbox run %s: execution failed", run_id)
            self._move(run_id, "FAILED", {"code": 13, "message": f"sandbox executor: {type(exc).__name__}: {exc}"},
                       only_unfinished=True)
        finally:
            with self._lock:
                self._procs.pop(run_id, None)
                done = self._done.get(run_id)
            if done is not None:
                done.set()

    def _is_canceled(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._canceled

    def _execute_inner(self, run_id: str, ir: dict, parameters: dict) -> None:
        if self._is_canceled(run_id):
            self._move(run_id, "CANCELED", only_unfinished=True)
            return
        workdir = self.root / run_id
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        package = workdir / "pipeline.yaml"
        package.write_text(yaml.safe_dump(ir, sort_keys=False), encoding="utf-8")
        log_path = workdir / "executor.log"
        env = dict(os.environ)
        env["TMPDIR"] = str(workdir / "tmp")  # kfp.local's per-task venvs: inside the run's directory
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        cmd = [sys.executable, "-m", "kfadapter.sandbox.executor", "--package", str(package),
               "--args", json.dumps(parameters), "--workdir", str(workdir), "--log", str(log_path)]
        with self._lock:
            if run_id in self._canceled:
                spawn = False
            else:
                spawn = True
                with open(log_path, "wb") as logf:
                    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                            cwd=str(workdir), env=env, start_new_session=True)
                self._procs[run_id] = proc
                # Under the lock: a terminate that comes now finds the process and sees RUNNING first.
                self._move(run_id, "RUNNING", only_unfinished=True)
        if not spawn:
            self._move(run_id, "CANCELED", only_unfinished=True)
            return
        log.info("sandbox run %s: executing %s (pid %s, %s)", run_id, ir.get("pipelineInfo", {}).get("name"),
                 proc.pid, workdir)
        proc.wait()
        _killpg(proc.pid, signal.SIGKILL)  # nothing of the run may outlive it
        if self._is_canceled(run_id):
            self._move(run_id, "CANCELED", only_unfinished=True)
            log.info("sandbox run %s: canceled", run_id)
            return
        result_path = workdir / "result.json"
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = _tail(log_path)
            self._move(run_id, "FAILED", {"code": 13, "message": f"sandbox executor exited with {proc.returncode} "
                                                                f"without a result: {tail}"}, only_unfinished=True)
            return
        self._record_mlmd(run_id, ir, result)
        self._record_workflow(run_id, result)
        if result.get("state") == "SUCCEEDED":
            self._move(run_id, "SUCCEEDED", only_unfinished=True)
        else:
            self._move(run_id, "FAILED", {"code": 2, "message": str(result.get("error") or "pipeline failed")},
                       only_unfinished=True)
        log.info("sandbox run %s: %s in %.1f s%s", run_id, result.get("state"), result.get("seconds", 0.0),
                 f" ({result.get('error')})" if result.get("error") else "")
        if not self.keep_workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir / "tmp", ignore_errors=True)

    def _record_mlmd(self, run_id: str, ir: dict, result: dict) -> None:
        pipeline = (ir.get("pipelineInfo") or {}).get("name") or "pipeline"
        version = self.state.kfp_version
        tasks = []
        for task in result.get("tasks") or []:
            arts = []
            salt = uuid.uuid4().hex[:12]  # KFP's per-execution random URI segment (from 2.5)
            outputs = list(task.get("artifacts") or [])
            if version.executor_logs and task.get("log"):
                # From 2.5 the launcher uploads each task's log as its output artifact `executor-logs`.
                outputs.append({"name": "executor-logs", "type": "system.Artifact", "path": task["log"]})
            for art in outputs:
                uri = version.artifact_uri(pipeline, run_id, task["name"], art["name"], salt)
                entry = {"name": art["name"], "type": art.get("type") or "system.Artifact", "uri": uri,
                         "metadata": art.get("metadata") or {}}
                path = Path(art.get("path") or "")
                if path.is_file() and path.stat().st_size <= MAX_ARTIFACT_BYTES:
                    entry["content_base64"] = base64.b64encode(path.read_bytes()).decode()
                arts.append(entry)
            tasks.append({"name": task["name"], "state": task.get("state") or "COMPLETE",
                          "outputs": task.get("outputs") or {}, "artifacts": arts})
        try:
            mlmd.attach(self.state, run_id, {"tasks": tasks})
        except ApiError as exc:
            log.warning("sandbox run %s: cannot record ML Metadata: %s", run_id, exc.message)

    def _record_workflow(self, run_id: str, result: dict) -> None:
        """Record the run's Argo workflow as KFP's persistence agent would: one executor Pod node per task whose
        log Argo archived (`archiveLogs: true`) as the artifact `main-logs`, readable through `:read`."""
        wf = "run-" + run_id[:8]
        phase = _PHASES.get(result.get("state"), "Failed")
        nodes: dict[str, dict] = {wf: {"id": wf, "name": wf, "displayName": wf, "type": "DAG",
                                       "templateName": "entrypoint", "phase": phase}}
        logs: dict[str, bytes] = {}
        for i, task in enumerate(result.get("tasks") or []):
            node_id = f"{wf}-{zlib.crc32(task['name'].encode()):010d}{i}"
            node = {"id": node_id, "name": f"{wf}.root.{task['name']}.executor", "displayName": "executor",
                    "type": "Pod", "templateName": "system-container-impl", "boundaryID": wf,
                    "phase": _TASK_PHASES.get(task.get("state"), "Omitted")}
            log = Path(task.get("log") or "")
            if log.is_file() and log.stat().st_size <= MAX_ARTIFACT_BYTES:
                logs[node_id] = log.read_bytes()
                key = f"artifacts/{wf}/{node_id}/main.log"
                node["outputs"] = {"artifacts": [{"name": "main-logs", "s3": {"key": key}}]}
            nodes[node_id] = node
        try:
            self.state.attach_workflow(run_id, {"status": {"phase": nodes[wf]["phase"], "nodes": nodes}})
            for node_id, data in logs.items():
                self.state.put_artifact(run_id, node_id, "main-logs", data)
        except ApiError:
            pass  # the run was deleted meanwhile

    def _kill(self, run_id: str, proc: subprocess.Popen) -> None:
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass
        _killpg(proc.pid, signal.SIGKILL)
        log.info("sandbox run %s: process group %s killed", run_id, proc.pid)

    def _move(self, run_id: str, state: str, error: dict | None = None, *, only_unfinished: bool = False) -> bool:
        """Set the run's state unless it is gone (deleted) or, with only_unfinished, already terminal."""
        return self.state.move_run(run_id, state, error, only_unfinished=only_unfinished)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])
