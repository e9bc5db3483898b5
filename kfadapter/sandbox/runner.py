"""Real execution of sandbox runs (opt-in: `SandboxServer(execute=True)`, `kfadapter sandbox --execute`,
always on in `kfadapter serve --sandbox`).

Runs of v2 (IR) pipelines go to a bounded pool of `workers` threads. Each thread starts one child process
(`python -m kfadapter.sandbox.executor`, see there) in a new session, in the run's own working directory
`<workdir>/<run_id>/`, and waits for it, reporting the run's Argo workflow (sandbox/workflow.py) as KFP's
persistence agent would: at the start, at every task start and end the child notes in `progress.jsonl`, and at
the end. The run goes PENDING → RUNNING → SUCCEEDED or FAILED; why it failed is in the workflow's nodes
(`main: Error (exit code 1)`), never in the run's `error`. Each task is recorded when it starts and ends, as
KFP's drivers and launchers record it (sandbox/recording.py): its ML Metadata execution (RUNNING, then
COMPLETE or FAILED with its output parameters and artifacts, whose files go into the sandbox object store under
`minio://mlpipeline/v2/artifacts/<pipeline>/<run_id>/<task>/[<random segment>/]<name>`, plus its log as
`executor-logs` from KFP 2.5) and its executor pod's log as `main-logs` (served by `:read`), all before its
workflow node says it ended, so a finished step's outputs and log are there while later steps run. A terminated run (CANCELING) has its child's whole process group killed
(SIGTERM, then SIGKILL after a grace period); its workflow then ends Failed, as Argo ends a workflow whose
`activeDeadlineSeconds` KFP set to 0, so the run ends FAILED. Runs of v1 (Argo) packages are not executed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from kfadapter.sandbox import driver, workdirs
from kfadapter.sandbox.recording import TaskRecords
from kfadapter.sandbox.workflow import DEADLINE, EXIT_1, ExecutedWorkflow, TaskRun

log = logging.getLogger(__name__)

KILL_GRACE = 3.0
PROGRESS_POLL = 0.5  # seconds between looks at the child's progress file


class RunExecutor:
    """A bounded pool that executes sandbox runs with kfp.local, one child process per run."""

    def __init__(self, state: Any, workers: int = 2, workdir: str | None = None, keep_workdirs: bool = True):
        self.state = state
        self.workers = max(1, int(workers))
        # One folder per start, removed on shutdown; folders of killed sandboxes go at start-up (workdirs).
        self.root = workdirs.create(workdir)
        self.keep_workdirs = keep_workdirs
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox-run")
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._canceled: set[str] = set()
        self._owned: set[str] = set()
        self._done: dict[str, threading.Event] = {}
        self._finished: set[str] = set()  # worker done: nothing writes into the run's folder any more
        self._forgotten: set[str] = set()  # deleted or reset: the run's folder goes

    # ---- API used by the routes -----------------------------------------------------------------
    def submit(self, run_id: str, package: Any, parameters: dict) -> bool:
        """Queue a run for execution; False (nothing done) for packages it does not execute (v1)."""
        if getattr(package, "kind", None) == "v1" or not isinstance(getattr(package, "ir", None), dict):
            return False
        with self._lock:
            self._owned.add(run_id)
            self._canceled.discard(run_id)  # a retried run executes again
            self._finished.discard(run_id)
            self._done[run_id] = threading.Event()
        platform = package.spec.get("platform_spec") if isinstance(package.spec, dict) else None
        failing = driver.task_errors(package.ir, platform, self.state.kfp_version.strict_k8s_config)
        self._pool.submit(self._execute, run_id, package.ir, dict(parameters), failing)
        return True

    def owns(self, run_id: str) -> bool:
        """Whether this run is (or was) executed here."""
        with self._lock:
            return run_id in self._owned

    def terminate(self, run_id: str) -> bool:
        """Kill an executed run's processes (the state already moved it to CANCELING). False if not ours."""
        with self._lock:
            if run_id not in self._owned:
                return False
            done = self._done.get(run_id)
            if done is not None and done.is_set():
                return True
            self._canceled.add(run_id)
            proc = self._procs.get(run_id)
        if proc is not None:  # still queued: the worker sees the flag and ends the workflow at once
            threading.Thread(target=self._kill, args=(run_id, proc), daemon=True, name=f"kill-{run_id[:8]}").start()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait until the run's worker is done (tests)."""
        with self._lock:
            done = self._done.get(run_id)
        return done.wait(timeout) if done is not None else True

    def forget(self, run_id: str) -> None:
        """The run was deleted: stop it if it is running, and remove its folder (its outputs are gone)."""
        if self.owns(run_id):
            with self._lock:
                self._canceled.add(run_id)
                proc = self._procs.get(run_id)
                finished = self._mark_forgotten(run_id)
            if proc is not None:
                self._kill(run_id, proc)
            if finished:
                workdirs.remove(self.root / run_id)

    def _mark_forgotten(self, run_id: str) -> bool:
        """Under the lock: the folder goes now if the worker is done, else the worker removes it on its way out."""
        self._forgotten.add(run_id)
        return run_id in self._finished

    def cancel_all(self) -> None:
        """The sandbox was reset: stop every queued and running run (their records are gone)."""
        with self._lock:
            procs = list(self._procs.items())
            self._canceled.update(self._owned)
            finished = [run_id for run_id in self._owned if self._mark_forgotten(run_id)]
        for run_id, proc in procs:
            threading.Thread(target=self._kill, args=(run_id, proc), daemon=True).start()
        for run_id in finished:
            workdirs.remove(self.root / run_id)

    def shutdown(self) -> None:
        """Kill every running child and stop the pool."""
        with self._lock:
            procs = list(self._procs.items())
            self._canceled.update(self._owned)
        for run_id, proc in procs:
            self._kill(run_id, proc)
        self._pool.shutdown(wait=True, cancel_futures=True)
        workdirs.remove(self.root)  # every run's folder with it: nothing serves them any more

    # ---- worker side ------------------------------------------------------------------------------
    def _execute(self, run_id: str, ir: dict, parameters: dict, driver_errors: dict | None = None) -> None:
        wf = ExecutedWorkflow(run_id, (ir.get("pipelineInfo") or {}).get("name") or "pipeline", self._now())
        try:
            self._execute_inner(run_id, ir, parameters, wf, driver_errors or {})
        except Exception as exc:
            log.exception("sandbox run %s: execution failed", run_id)
            wf.stop(self._now(), phase="Failed", message=f"sandbox executor: {type(exc).__name__}: {exc}")
            self._report(run_id, wf)
        finally:
            with self._lock:
                self._procs.pop(run_id, None)
                done = self._done.get(run_id)
                self._finished.add(run_id)
                forgotten = run_id in self._forgotten
            if forgotten:
                workdirs.remove(self.root / run_id)
            if done is not None:
                done.set()

    def _is_canceled(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._canceled

    def _execute_inner(
        self, run_id: str, ir: dict, parameters: dict, wf: ExecutedWorkflow, driver_errors: dict[str, str]
    ) -> None:
        if self._is_canceled(run_id):
            self._end_terminated(run_id, wf, None)
            return
        workdir = self.root / run_id
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        package = workdir / "pipeline.yaml"
        package.write_text(yaml.safe_dump(ir, sort_keys=False), encoding="utf-8")
        progress = workdir / "progress.jsonl"
        progress.unlink(missing_ok=True)  # a retried run starts over
        log_path = workdir / "executor.log"
        env = dict(os.environ)
        env["TMPDIR"] = str(workdir / "tmp")  # kfp.local's per-task venvs: inside the run's directory
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        cmd = [
            sys.executable,
            "-m",
            "kfadapter.sandbox.executor",
            "--package",
            str(package),
            "--args",
            json.dumps(parameters),
            "--workdir",
            str(workdir),
            "--log",
            str(log_path),
            "--driver-errors",
            json.dumps(driver_errors),
        ]
        with self._lock:
            if run_id in self._canceled:
                proc = None
            else:
                with open(log_path, "wb") as logf:
                    proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=logf,
                        stderr=subprocess.STDOUT,
                        cwd=str(workdir),
                        env=env,
                        start_new_session=True,
                    )
                self._procs[run_id] = proc
        if proc is None:
            self._end_terminated(run_id, wf, None)
            return
        records = TaskRecords(self.state, run_id, ir, wf, workdir / "outputs", no_driver=driver_errors)
        records.run_started()
        self._report(run_id, wf)  # the workflow runs: RUNNING
        log.info("sandbox run %s: executing %s (pid %s, %s)", run_id, wf.pipeline, proc.pid, workdir)
        seen = 0
        while True:
            try:
                proc.wait(PROGRESS_POLL)
                break
            except subprocess.TimeoutExpired:
                seen = self._follow(run_id, wf, progress, seen, records)
        _killpg(proc.pid, signal.SIGKILL)  # nothing of the run may outlive it
        self._follow(run_id, wf, progress, seen, records)
        if self._is_canceled(run_id):
            self._end_terminated(run_id, wf, workdir)
            return
        try:
            result = json.loads((workdir / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            wf.stop(
                self._now(),
                phase="Failed",
                message=f"sandbox executor exited with {proc.returncode} without a result: {_tail(log_path)}",
            )
            self._report(run_id, wf)
            return
        records.run_ended(result)
        self._finish(run_id, wf, result)
        log.info(
            "sandbox run %s: %s in %.1f s%s",
            run_id,
            result.get("state"),
            result.get("seconds", 0.0),
            f" ({result.get('error')})" if result.get("error") else "",
        )
        if not self.keep_workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir / "tmp", ignore_errors=True)

    def _follow(self, run_id: str, wf: ExecutedWorkflow, progress: Path, seen: int, records: TaskRecords) -> int:
        """Apply the progress lines after the first `seen` to the workflow and the run's records (a task's
        ML Metadata and archived log are written before its node says it ended, as in KFP); report the
        workflow when it changed."""
        try:
            text = progress.read_text(encoding="utf-8")
        except OSError:
            return seen
        complete = text.split("\n")[:-1]  # a line being written (no newline yet) is read next time
        if len(complete) <= seen:
            return seen
        now = self._now()
        for line in complete[seen:]:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = str(event.get("task") or "")
            if event.get("event") == "start":
                records.task_started(name)
                wf.tasks[name] = TaskRun(name, started=now)
            elif event.get("event") == "end" and name in wf.tasks:
                if not self._is_canceled(run_id):  # a killed pod's launcher publishes nothing
                    records.task_ended(name, bool(event.get("ok")))
                task = wf.tasks[name]
                task.finished = now
                task.phase = "Succeeded" if event.get("ok") else "Failed"
                task.message = None if event.get("ok") else DEADLINE if self._is_canceled(run_id) else EXIT_1
        self._report(run_id, wf)
        return len(complete)

    def _finish(self, run_id: str, wf: ExecutedWorkflow, result: dict) -> None:
        now = self._now()
        failed = [t["name"] for t in result.get("tasks") or [] if t.get("state") == "FAILED"]
        for name in failed:  # a task the progress file missed (it failed before kfp.local started it)
            if name in wf.tasks and wf.tasks[name].finished is None:
                wf.tasks[name].phase, wf.tasks[name].message = "Failed", EXIT_1
        if result.get("state") == "SUCCEEDED":
            wf.stop(now, phase="Succeeded")
        elif any(t.phase == "Failed" for t in wf.tasks.values()):
            wf.stop(now, phase="Failed")  # Argo: the pod's node says why, the DAGs carry no message
        else:  # the sandbox could not run the pipeline at all (container components, a broken package)
            wf.stop(now, phase="Failed", message=str(result.get("error") or "pipeline failed"))
        self._report(run_id, wf)

    def _end_terminated(self, run_id: str, wf: ExecutedWorkflow, workdir: Path | None) -> None:
        # Argo fails a workflow whose deadline passed: running and pending steps end "Step exceeded its
        # deadline", the workflow phase is Failed and KFP reports the run FAILED (never CANCELED).
        wf.terminating = True
        self._report(run_id, wf)  # CANCELING while Argo stops it
        wf.stop(self._now(), phase="Failed")
        self._report(run_id, wf)
        log.info("sandbox run %s: terminated, workflow Failed", run_id)
        if workdir is not None:
            shutil.rmtree(workdir / "tmp", ignore_errors=True)

    def _kill(self, run_id: str, proc: subprocess.Popen) -> None:
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass
        _killpg(proc.pid, signal.SIGKILL)
        log.info("sandbox run %s: process group %s killed", run_id, proc.pid)

    def _now(self) -> str:
        return self.state._now()  # the sandbox clock, so tests that advance it see consistent times

    def _report(self, run_id: str, wf: ExecutedWorkflow) -> bool:
        """Report the workflow's current manifest to the state (a no-op when the run was deleted)."""
        return self.state.report_workflow(run_id, wf.manifest())


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
