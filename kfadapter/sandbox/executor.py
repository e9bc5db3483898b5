"""Execute one compiled v2 (IR) pipeline with kfp.local, in a process of its own.

    python -m kfadapter.sandbox.executor --package IR.yaml --args JSON --workdir DIR [--result FILE]

The sandbox starts one such child per run (in a new session, so terminating the run can kill the whole
process group: this process, kfp.local's task subprocesses and their pip installs). kfp.local's configuration
is process-wide, hence one process per run. Every task runs in a throw-away virtual environment
(`SubprocessRunner(use_venv=True)`, each a fresh copy of one prepared as kfp.local prepares it: task_venv.py): a
lightweight component's command pip-installs the kfp version that compiled it, which must never replace the
service's own kfp.

The child writes `DIR/result.json` (or `--result`):
``{"state": "SUCCEEDED"|"FAILED", "error": str|null, "tasks": [{"name", "state": "COMPLETE"|"FAILED"|"NEW",
"outputs": {name: value}, "artifacts": [{"name", "type", "path", "uri", "metadata"}], "log": path|null}],
"seconds": float}``.
Output values come from each task's `executor_output.json`; artifact `path`s are the files the components wrote.
Task logs (and the pip output) go to this process's stdout, which the sandbox sends to `DIR/executor.log`; each
task's own output also goes to `task.log` in its task directory (what KFP archives as the step's log).
While it runs, the child appends one JSON line per task start and end to `DIR/progress.jsonl`
(``{"task", "event": "start"|"end", "ok"?: bool}``), which the sandbox turns into the run's workflow nodes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from kfadapter.sandbox import task_venv

LIGHTWEIGHT_MARKER = "kfp.dsl.executor_main"
TASK_LOG = "task.log"
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)(?::\s?(.*))?$")
_FAILED_TASK = re.compile(r"Inner task failed: '?([^'\s]+?)'?\.?(?: inside |$)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def load_ir(path: str) -> dict:
    """The pipeline spec document of a compiled package (the first YAML document)."""
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    if not docs or "pipelineInfo" not in docs[0]:
        raise ValueError("not a KFP v2 pipeline spec (no pipelineInfo)")
    return docs[0]


def unsupported_components(ir: dict) -> list[str]:
    """Problems that keep kfp.local's SubprocessRunner from running this pipeline (container components)."""
    problems = []
    executors = (ir.get("deploymentSpec") or {}).get("executors") or {}
    for name, spec in sorted(executors.items()):
        container = spec.get("container")
        if container is None:
            continue  # importers and the like are handled by kfp.local itself
        command = " ".join(str(x) for x in (container.get("command") or []) + (container.get("args") or []))
        if LIGHTWEIGHT_MARKER not in command:
            problems.append(
                f"{name} is a container component (image {container.get('image', '?')}); the sandbox's "
                "subprocess runner runs only lightweight Python components"
            )
    return problems


_EMPTY = {"STRING": "", "NUMBER_INTEGER": 0, "NUMBER_DOUBLE": 0.0, "BOOLEAN": False, "LIST": [], "STRUCT": {}}


def fill_optional_parameters(ir: dict, arguments: dict) -> dict:
    """kfp.local cannot run a pipeline with an optional parameter that has no default (`x: str = None`) and
    no argument (and refuses None as an argument): drop such parameters from a copy of the IR, or, when a
    task reads one, give it the type's empty value. Returns `ir` itself when nothing needs changing."""
    params = ((ir.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    missing = [n for n, spec in params.items() if n not in arguments and "defaultValue" not in spec]
    if not missing:
        return ir
    patched = json.loads(json.dumps(ir))
    text = json.dumps((patched.get("root") or {}).get("dag") or {})
    target = patched["root"]["inputDefinitions"]["parameters"]
    for name in missing:
        if f'"componentInputParameter": "{name}"' in text:
            target[name]["defaultValue"] = _EMPTY.get(target[name].get("parameterType"), "")
        else:
            del target[name]
    return patched


def task_names(ir: dict) -> list[str]:
    """The root DAG's tasks in declaration order."""
    return list((((ir.get("root") or {}).get("dag") or {}).get("tasks") or {}).keys())


def artifact_types(ir: dict) -> dict[str, dict[str, str]]:
    """task -> output artifact name -> schemaTitle (system.Model, ...)."""
    out: dict[str, dict[str, str]] = {}
    components = ir.get("components") or {}
    for task, spec in (((ir.get("root") or {}).get("dag") or {}).get("tasks") or {}).items():
        comp = components.get((spec.get("componentRef") or {}).get("name", ""), {})
        arts = (comp.get("outputDefinitions") or {}).get("artifacts") or {}
        out[task] = {n: (a.get("artifactType") or {}).get("schemaTitle", "system.Artifact") for n, a in arts.items()}
    return out


def collect_tasks(ir: dict, pipeline_root: Path, failed_task: str | None) -> list[dict]:
    """Each root task's state, output parameters and artifact files, read from kfp.local's task directories."""
    dirs: dict[str, Path] = {}
    for run_dir in sorted(p for p in pipeline_root.iterdir() if p.is_dir()) if pipeline_root.is_dir() else []:
        for task_dir in run_dir.iterdir():
            if task_dir.is_dir():
                dirs[task_dir.name] = task_dir
    types = artifact_types(ir)
    tasks = []
    for name in task_names(ir):
        task: dict[str, Any] = {"name": name, "state": "NEW", "outputs": {}, "artifacts": [], "log": None}
        log_file = dirs.get(name, Path("/nonexistent")) / TASK_LOG
        if log_file.is_file():
            task["log"] = str(log_file)
        out_file = dirs.get(name, Path("/nonexistent")) / "executor_output.json"
        if out_file.is_file():
            doc = json.loads(out_file.read_text(encoding="utf-8"))
            task["state"] = "COMPLETE"
            task["outputs"] = doc.get("parameterValues") or {}
            for art_name, group in (doc.get("artifacts") or {}).items():
                for art in group.get("artifacts") or []:
                    uri = art.get("uri") or ""
                    path = uri if os.path.isabs(uri) else str(dirs[name] / art_name)
                    task["artifacts"].append(
                        {
                            "name": art_name,
                            "type": types.get(name, {}).get(art_name, "system.Artifact"),
                            "path": path,
                            "uri": uri,
                            "metadata": art.get("metadata") or {},
                        }
                    )
        elif name == failed_task:
            task["state"] = "FAILED"
        elif name in dirs:
            task["state"] = "FAILED" if failed_task is None else "CANCELED"
        tasks.append(task)
    return tasks


def _task_dir(command: list[str]) -> Path | None:
    """The task's directory: where its executor input says executor_output.json goes."""
    for flag, value in itertools.pairwise(command):
        if flag == "--executor_input":
            try:
                output_file = json.loads(value)["outputs"]["outputFile"]
            except (ValueError, KeyError, TypeError):
                return None
            return Path(output_file).parent
    return None


# Tasks whose driver fails before their pod starts (sandbox/driver.py) -> the driver's error.
DRIVER_ERRORS: dict[str, str] = {}


def run_task_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """Run one task like kfp.local does (output streamed to stdout), also writing it to the task's `task.log`."""
    env = {**os.environ, **env_vars} if env_vars else None
    task_dir = _task_dir(full_command)
    log = None
    if task_dir is not None:
        task_dir.mkdir(parents=True, exist_ok=True)
        log = open(task_dir / TASK_LOG, "w", encoding="utf-8")
    try:
        with subprocess.Popen(
            full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        ) as process:
            assert process.stdout is not None  # stdout=PIPE
            for line in iter(process.stdout.readline, ""):
                print(line, end="")
                if log is not None:
                    log.write(line)
                    log.flush()  # a step's log is readable while it runs
            return process.wait()
    finally:
        if log is not None:
            log.close()


def fail_in_driver(handler_run: Any) -> Any:
    """Wrap kfp.local's SubprocessTaskHandler.run: a task in DRIVER_ERRORS fails before its environment is made,
    as its driver pod exits (glog.Exitf) before the executor pod exists; the reason goes to its log."""

    def run(handler: Any) -> Any:
        task_dir = _task_dir(handler.full_command)
        failure = DRIVER_ERRORS.get(task_dir.name) if task_dir is not None else None
        if failure is None:
            return handler_run(handler)
        from kfp.local import status

        task_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        line = f"KFP driver failed: {failure}\n"
        print(line, end="")
        (task_dir / TASK_LOG).write_text(line, encoding="utf-8")  # type: ignore[operator]
        return status.Status.FAILURE

    return run


def error_from_log(log_path: Path | None, failed_task: str | None, fallback: str) -> str:
    """The last `SomeError: message` line the components printed, else `fallback`."""
    if log_path is None or not log_path.is_file():
        return fallback
    last = None
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = _ANSI.sub("", line).strip()
        if _EXCEPTION_LINE.match(line):
            last = line
    return f"task {failed_task!r} failed: {last}" if last and failed_task else fallback


def record_progress(path: Path) -> None:
    """Append a line to `path` whenever kfp.local starts or ends a task (wraps its per-task entry point)."""

    def note(event: dict) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")

    def wrap(module: Any, attr: str, name_of) -> bool:
        inner = getattr(module, attr, None)
        if inner is None:
            return False

        def wrapped(*args, **kwargs):
            name = name_of(args, kwargs)
            note({"task": name, "event": "start"})
            ok = False
            try:
                result = inner(*args, **kwargs)
                ok = str(result[1]).endswith("SUCCESS")
                return result
            finally:
                note({"task": name, "event": "end", "ok": ok})

        setattr(module, attr, wrapped)
        return True

    try:  # kfp >= 2.17: one call per task, with the DAG's task name
        from kfp.local.orchestrator import task_executor

        if wrap(task_executor, "execute_single_task", lambda a, k: k.get("task_name") or a[0]):
            return
    except ImportError:
        pass
    from kfp.local import task_dispatcher  # older kfp: named after the component (comp-<name>)

    def component_task(args, kwargs):
        return str(kwargs.get("component_name") or args[1]).removeprefix("comp-")

    wrap(task_dispatcher, "run_single_task_implementation", component_task)


def execute(package: str, arguments: dict, workdir: Path, log_path: Path | None) -> dict:
    """Run the pipeline; never raises (failures are described in the result)."""
    started = time.monotonic()
    try:
        ir = load_ir(package)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return {"state": "FAILED", "error": f"cannot load the pipeline package: {exc}", "tasks": [], "seconds": 0.0}
    problems = unsupported_components(ir)
    if problems:
        return {
            "state": "FAILED",
            "error": "; ".join(problems),
            "tasks": [{"name": n, "state": "FAILED", "outputs": {}, "artifacts": []} for n in task_names(ir)],
            "seconds": 0.0,
        }
    import kfp.components
    import kfp.local
    from kfp.local import subprocess_task_handler

    # kfp.local mixes every task's output into one stream; keep each task's own copy, as KFP archives it.
    subprocess_task_handler.run_local_subprocess = run_task_subprocess
    task_venv.install()  # a copy of one prepared environment per task (task_venv.py), not a new venv
    if DRIVER_ERRORS:
        handler = subprocess_task_handler.SubprocessTaskHandler
        handler.run = fail_in_driver(handler.run)

    pipeline_root = workdir / "outputs"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=True), pipeline_root=str(pipeline_root))
    record_progress(workdir / "progress.jsonl")
    state, error, failed_task = "SUCCEEDED", None, None
    patched = fill_optional_parameters(ir, arguments)
    if patched is not ir:
        package = str(workdir / "pipeline.patched.yaml")
        with open(package, "w", encoding="utf-8") as fh:
            yaml.safe_dump(patched, fh, sort_keys=False)
    try:
        pipeline = kfp.components.load_component_from_file(package)
        pipeline(**arguments)
    except Exception as exc:
        state = "FAILED"
        message = _ANSI.sub("", str(exc))
        match = _FAILED_TASK.search(message)
        failed_task = match.group(1) if match else None
        sys.stdout.flush()
        error = error_from_log(log_path, failed_task, message) if match else f"{type(exc).__name__}: {message}"
    return {
        "state": state,
        "error": error,
        "tasks": collect_tasks(ir, pipeline_root, failed_task),
        "seconds": round(time.monotonic() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line of the per-run child process."""
    parser = argparse.ArgumentParser(prog="python -m kfadapter.sandbox.executor", description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="compiled v2 pipeline (IR YAML)")
    parser.add_argument("--args", default="{}", help="pipeline arguments as a JSON object")
    parser.add_argument("--workdir", required=True, help="this run's working directory")
    parser.add_argument("--result", help="where to write the result JSON (default WORKDIR/result.json)")
    parser.add_argument("--log", help="the file this process's stdout goes to (to find the components' errors)")
    parser.add_argument("--driver-errors", default="{}", help="JSON {task: error} of tasks whose driver fails")
    args = parser.parse_args(argv)
    DRIVER_ERRORS.update(json.loads(args.driver_errors))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result = execute(args.package, json.loads(args.args), workdir, Path(args.log) if args.log else None)
    target = Path(args.result) if args.result else workdir / "result.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, target)
    return 0 if result["state"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
