"""The sandbox's in-memory KFP: pipelines, versions, experiments, runs, request counters and faults.

Every public method takes `self.lock` for its whole (short, CPU-only) body; package parsing and
HTTP I/O happen in the routes, outside the lock.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter

from . import listing, packages, views
from .errors import ApiError, not_found

TERMINAL = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
STATES = frozenset({"RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "SUCCEEDED", "SKIPPED",
                    "FAILED", "CANCELING", "CANCELED", "PAUSED"})
DEFAULT_EXPERIMENT = "Default"

PIPELINES = listing.Resource("pipelines", "pipeline_id", {
    k: (lambda r, k=k: r.get(k)) for k in ("name", "display_name", "created_at", "description", "namespace")})
VERSIONS = listing.Resource("pipeline_versions", "pipeline_version_id", {
    k: (lambda r, k=k: r.get(k)) for k in ("name", "display_name", "created_at", "description", "pipeline_id")})
EXPERIMENTS = listing.Resource("experiments", "experiment_id", {
    k: (lambda r, k=k: r.get(k))
    for k in ("display_name", "created_at", "description", "namespace", "storage_state")})
RUNS = listing.Resource("runs", "run_id", {
    **{k: (lambda r, k=k: r.get(k)) for k in (
        "display_name", "created_at", "scheduled_at", "finished_at", "state", "storage_state",
        "experiment_id", "description", "namespace", "service_account")},
    "pipeline_id": lambda r: (r.get("pipeline_version_reference") or {}).get("pipeline_id"),
    "pipeline_version_id": lambda r: (r.get("pipeline_version_reference") or {}).get("pipeline_version_id"),
}, timestamps=("created_at", "scheduled_at", "finished_at"))

# A tiny IR used by the bulk seeding helpers.
_SEED_IR = {
    "pipelineInfo": {"name": "seed"},
    "root": {"dag": {"tasks": {}}, "inputDefinitions": {"parameters": {
        "epochs": {"parameterType": "NUMBER_INTEGER", "defaultValue": 1.0, "isOptional": True}}}},
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.16.1",
}


def _seed_package(spec: dict | None) -> packages.Package:
    try:
        return packages.from_dict(spec or _SEED_IR)
    except packages.PackageError as exc:
        raise ApiError(3, f"control API: {exc.message}") from exc


def _new_id() -> str:
    return str(uuid.uuid4())


class SandboxState:
    """All sandbox data, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self._clear()

    # ---- housekeeping -------------------------------------------------------------------
    def _clear(self) -> None:
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.artifacts: dict[tuple[str, str, str], bytes] = {}
        self.counts: Counter = Counter()
        self.faults: list[dict] = []
        self.clock_offset = 0.0
        # ML Metadata records, object-store objects and MLMD faults; kept by sandbox/mlmd.py under self.lock.
        self.mlmd: dict = {"runs": {}, "objects": {}, "faults": [], "next_id": 1}
        self._default_experiment_id()

    def reset(self) -> None:
        """Back to a fresh KFP: only the Default experiment, counters and faults cleared."""
        with self.lock:
            self._clear()

    def _now(self) -> str:
        # KFP stores seconds; ties in created_at are broken by id, as in KFP.
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.clock_offset))

    def advance_clock(self, seconds: float) -> str:
        """Move the sandbox clock forward (for deterministic created_at ordering)."""
        with self.lock:
            self.clock_offset += float(seconds)
            return self._now()

    # ---- request counters and faults -----------------------------------------------------
    def count(self, key: str) -> None:
        """Count one API request under `METHOD route-pattern`."""
        with self.lock:
            self.counts[key] += 1

    def request_counts(self) -> dict:
        """Snapshot of the counters."""
        with self.lock:
            return {"total": sum(self.counts.values()), "counts": dict(self.counts)}

    def clear_counts(self) -> None:
        """Zero the counters."""
        with self.lock:
            self.counts.clear()

    def add_fault(self, fault: dict) -> None:
        """Register a fault (status, delay, times, path_prefix, method)."""
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> dict | None:
        """Return (and use up one shot of) the first fault matching this request."""
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault["path_prefix"]) and fault["method"] in (None, method):
                    if fault["times"] is not None:
                        fault["times"] -= 1
                        if fault["times"] <= 0:
                            self.faults.remove(fault)
                    return dict(fault)
            return None

    # ---- pipelines and versions ----------------------------------------------------------
    def _pipeline(self, pipeline_id: str) -> dict:
        rec = self.pipelines.get(pipeline_id)
        if rec is None:
            raise not_found("Pipeline", pipeline_id)
        return rec

    def _add_pipeline(self, name: str, display_name: str, description: str) -> dict:
        if not name:
            raise ApiError(3, "Failed to create a pipeline: Invalid input error: pipeline's name cannot be empty")
        if any(p["name"] == name for p in self.pipelines.values()):
            raise ApiError(6, f"Failed to create a pipeline: AlreadyExistsError: pipeline with name {name!r} already exists in namespace ''")
        rec = {"pipeline_id": _new_id(), "display_name": display_name or name, "name": name,
               "description": description, "created_at": self._now(), "namespace": ""}
        self.pipelines[rec["pipeline_id"]] = rec
        return rec

    def _add_version(self, pipeline_id: str, name: str, display_name: str, description: str,
                     package: packages.Package, code_source_url: str = "") -> dict:
        self._pipeline(pipeline_id)
        if not name:
            raise ApiError(3, "Failed to create a pipeline version: Invalid input error: pipeline version's name cannot be empty")
        if any(v["pipeline_id"] == pipeline_id and v["name"] == name for v in self.versions.values()):
            raise ApiError(6, f"Failed to create a pipeline version: AlreadyExistsError: pipeline version with name {name!r} already exists for pipeline {pipeline_id}")
        rec = {"pipeline_id": pipeline_id, "pipeline_version_id": _new_id(), "display_name": display_name or name,
               "name": name, "description": description, "created_at": self._now(),
               "pipeline_spec": package.spec, "code_source_url": code_source_url, "_package": package}
        self.versions[rec["pipeline_version_id"]] = rec
        return rec

    def create_pipeline(self, name: str, display_name: str = "", description: str = "",
                        package: packages.Package | None = None) -> tuple[dict, dict | None]:
        """Create a pipeline, and with a package also its first version named after it."""
        with self.lock:
            rec = self._add_pipeline(name, display_name, description)
            if package is None:
                return views.pipeline(rec), None
            ver = self._add_version(rec["pipeline_id"], rec["name"], rec["display_name"], description, package)
            return views.pipeline(rec), views.version(ver)

    def create_version(self, pipeline_id: str, name: str, display_name: str, description: str,
                       package: packages.Package, code_source_url: str = "") -> dict:
        """Add a version to an existing pipeline."""
        with self.lock:
            return views.version(self._add_version(pipeline_id, name, display_name, description, package, code_source_url))

    def get_pipeline(self, pipeline_id: str) -> dict:
        """One pipeline by id."""
        with self.lock:
            return views.pipeline(self._pipeline(pipeline_id))

    def get_pipeline_by_name(self, name: str) -> dict:
        """One pipeline by its unique name."""
        with self.lock:
            for rec in self.pipelines.values():
                if rec["name"] == name:
                    return views.pipeline(rec)
        raise ApiError(5, f"Failed to get a pipeline with name {name!r} and namespace '': ResourceNotFoundError: Pipeline {name} not found")

    def list_pipelines(self, args) -> dict:
        """A page of pipelines."""
        with self.lock:
            return listing.list_page(PIPELINES, list(self.pipelines.values()), args, views.pipeline)

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> None:
        """Delete a pipeline; refused while versions exist unless cascade."""
        with self.lock:
            self._pipeline(pipeline_id)
            owned = [vid for vid, v in self.versions.items() if v["pipeline_id"] == pipeline_id]
            if owned and not cascade:
                raise ApiError(9, f"Failed to delete pipeline {pipeline_id}: pipeline has {len(owned)} existing pipeline versions; "
                                  "delete the versions first or set cascade=true", http_status=400)
            for vid in owned:
                del self.versions[vid]
            del self.pipelines[pipeline_id]

    def _version(self, pipeline_id: str | None, version_id: str) -> dict:
        rec = self.versions.get(version_id)
        if rec is None or (pipeline_id and rec["pipeline_id"] != pipeline_id):
            raise not_found("PipelineVersion", version_id)
        return rec

    def get_version(self, pipeline_id: str, version_id: str) -> dict:
        """One version of a pipeline."""
        with self.lock:
            return views.version(self._version(pipeline_id, version_id))

    def list_versions(self, pipeline_id: str, args) -> dict:
        """A page of one pipeline's versions."""
        with self.lock:
            self._pipeline(pipeline_id)
            owned = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
            return listing.list_page(VERSIONS, owned, args, views.version)

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Delete one version."""
        with self.lock:
            self._version(pipeline_id, version_id)
            del self.versions[version_id]

    # ---- experiments ---------------------------------------------------------------------
    def _add_experiment(self, display_name: str, description: str) -> dict:
        if not display_name:
            raise ApiError(3, "Failed to create a new experiment: Invalid input error: Experiment name is empty. Please specify a valid experiment name")
        if any(e["display_name"] == display_name for e in self.experiments.values()):
            raise ApiError(6, f"Failed to create a new experiment: AlreadyExistsError: Experiment with name {display_name!r} already exists in namespace ''")
        rec = {"experiment_id": _new_id(), "display_name": display_name, "description": description,
               "created_at": self._now(), "namespace": "", "storage_state": "AVAILABLE"}
        self.experiments[rec["experiment_id"]] = rec
        return rec

    def _default_experiment_id(self) -> str:
        for rec in self.experiments.values():
            if rec["display_name"] == DEFAULT_EXPERIMENT:
                return rec["experiment_id"]
        return self._add_experiment(
            DEFAULT_EXPERIMENT, "All runs created without specifying an experiment will be grouped here.")["experiment_id"]

    def _experiment(self, experiment_id: str) -> dict:
        rec = self.experiments.get(experiment_id)
        if rec is None:
            raise not_found("Experiment", experiment_id)
        return rec

    def create_experiment(self, display_name: str, description: str = "") -> dict:
        """Create an experiment (display names are unique)."""
        with self.lock:
            return views.experiment(self._add_experiment(display_name, description))

    def get_experiment(self, experiment_id: str) -> dict:
        """One experiment."""
        with self.lock:
            return views.experiment(self._experiment(experiment_id))

    def list_experiments(self, args) -> dict:
        """A page of experiments."""
        with self.lock:
            return listing.list_page(EXPERIMENTS, list(self.experiments.values()), args, views.experiment)

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment (its runs stay)."""
        with self.lock:
            self._experiment(experiment_id)
            del self.experiments[experiment_id]

    def set_experiment_storage(self, experiment_id: str, storage_state: str) -> None:
        """Archive or unarchive an experiment."""
        with self.lock:
            self._experiment(experiment_id)["storage_state"] = storage_state

    # ---- runs ----------------------------------------------------------------------------
    def _run(self, run_id: str) -> dict:
        rec = self.runs.get(run_id)
        if rec is None:
            raise not_found("Run", run_id)
        return rec

    def _resolve_version(self, ref: dict) -> dict:
        vid, pid = ref.get("pipeline_version_id"), ref.get("pipeline_id")
        if vid:
            return self._version(pid, vid)
        if not pid:
            raise ApiError(3, "Failed to create a run: Invalid input error: pipeline version reference needs a pipeline_version_id")
        self._pipeline(pid)
        owned = sorted((v["created_at"], v["pipeline_version_id"], v) for v in self.versions.values()
                       if v["pipeline_id"] == pid)
        if not owned:
            raise not_found("PipelineVersion", f"(latest of pipeline {pid})")
        return owned[-1][2]  # KFP uses the latest version when only the pipeline is given

    def create_run(self, *, display_name: str, description: str = "", experiment_id: str = "",
                   version_ref: dict | None = None, package: packages.Package | None = None,
                   parameters: dict | None = None, pipeline_root: str = "", service_account: str = "",
                   api: str = "v2beta1", check: bool = True) -> dict:
        """Create a PENDING run; `api` picks v2beta1 (typed params) or v1beta1 (string params) rules."""
        with self.lock:
            rec = self._new_run(display_name, description, experiment_id, version_ref, package,
                                dict(parameters or {}), pipeline_root, service_account, api, check)
            return views.run(rec)

    def _new_run(self, display_name, description, experiment_id, version_ref, package, params,
                 pipeline_root, service_account, api, check) -> dict:
        if not display_name:
            raise ApiError(3, "Failed to create a run: Invalid input error: The run name is empty. Please specify a valid name")
        experiment_id = experiment_id or self._default_experiment_id()
        self._experiment(experiment_id)
        ref, pipeline_name = None, ""
        if version_ref is not None:
            ver = self._resolve_version(version_ref)
            package = ver["_package"]
            ref = {"pipeline_id": ver["pipeline_id"], "pipeline_version_id": ver["pipeline_version_id"]}
            pipeline_name = self.pipelines.get(ver["pipeline_id"], {}).get("display_name", "")
        if package is None:
            raise ApiError(3, "Failed to create a run: Invalid input error: the run needs a pipeline_version_reference or a pipeline_spec")
        v1_params = None
        if package.kind == "v1":
            defaults = packages.workflow_parameters(package.workflow)
            if api == "v2beta1":
                params = {}  # kubeflow/pipelines#10346: v2beta1 silently drops v1 parameters
            known = {p["name"] for p in defaults}
            for name in params:
                if check and name not in known:
                    raise ApiError(3, f"Failed to create a run: Invalid input error: Unrecognized input parameter: {name}")
            v1_params = [{"name": p["name"], "value": params.get(p["name"], p["value"])} for p in defaults]
        elif check:
            try:
                packages.check_runtime_parameters(package.ir, params)
            except ValueError as exc:
                raise ApiError(3, f"Failed to create a run: Invalid input error: {exc}") from exc
        now = self._now()
        rec = {
            "run_id": _new_id(), "experiment_id": experiment_id, "display_name": display_name,
            "description": description, "pipeline_version_reference": ref,
            "pipeline_spec": None if ref else package.spec,
            "runtime_config": {"parameters": params, "pipeline_root": pipeline_root},
            "service_account": service_account, "state": "PENDING", "error": None,
            "created_at": now, "scheduled_at": now, "finished_at": views.EPOCH,
            "state_history": [{"update_time": now, "state": "PENDING"}], "storage_state": "AVAILABLE",
            "_package": package, "_v1_params": v1_params, "_attached": None, "_api": api,
            "_pipeline_name": pipeline_name,
        }
        self.runs[rec["run_id"]] = rec
        return rec

    def get_run(self, run_id: str) -> dict:
        """One run (v2beta1 view)."""
        with self.lock:
            return views.run(self._run(run_id))

    def get_run_v1(self, run_id: str) -> dict:
        """One run as v1beta1 RunDetail, with the workflow manifest as a JSON string."""
        with self.lock:
            rec = self._run(run_id)
            exp = self.experiments.get(rec["experiment_id"], {}).get("display_name", "")
            ref = rec.get("pipeline_version_reference") or {}
            ver = self.versions.get(ref.get("pipeline_version_id", ""), {}).get("name", "")
            run = views.run_v1(rec, exp, ver)
            wf = views.workflow_manifest(rec)
        runtime = {"workflow_manifest": json.dumps(wf)} if wf is not None else {}
        return {"run": run, "pipeline_runtime": runtime}

    def list_runs(self, args) -> dict:
        """A page of runs, optionally within `experiment_id`."""
        exp = args.get("experiment_id") or args.get("resource_reference_key.id")
        with self.lock:
            recs = [r for r in self.runs.values() if not exp or r["experiment_id"] == exp]
            return listing.list_page(RUNS, recs, args, views.run)

    def delete_run(self, run_id: str) -> None:
        """Delete a run and its stored artifacts."""
        with self.lock:
            self._run(run_id)
            del self.runs[run_id]
            for key in [k for k in self.artifacts if k[0] == run_id]:
                del self.artifacts[key]

    def _set_state(self, rec: dict, state: str, error: dict | None = None) -> None:
        if state not in STATES:
            raise ApiError(3, f"Invalid run state: {state!r}; one of {sorted(STATES)}")
        now = self._now()
        rec["state"] = state
        rec["state_history"].append({"update_time": now, "state": state})
        rec["finished_at"] = now if state in TERMINAL else views.EPOCH
        if error is not None:
            rec["error"] = {"code": 0, "message": "", "details": [], **error}
        elif state not in TERMINAL:
            rec["error"] = None

    def set_run_states(self, run_ids: list[str], state: str, error: dict | None = None) -> int:
        """Control API: move runs to `state` (all ids must exist)."""
        with self.lock:
            recs = [self._run(rid) for rid in run_ids]
            for rec in recs:
                self._set_state(rec, state, error)
            return len(recs)

    def move_run(self, run_id: str, state: str, error: dict | None = None, *, only_unfinished: bool = False) -> bool:
        """The sandbox executor moves a run; False when the run is gone or (only_unfinished) already terminal."""
        with self.lock:
            rec = self.runs.get(run_id)
            if rec is None or (only_unfinished and rec["state"] in TERMINAL):
                return False
            self._set_state(rec, state, error)
            return True

    def run_package(self, run_id: str) -> tuple[packages.Package, dict]:
        """The run's package and runtime parameters (for the sandbox executor)."""
        with self.lock:
            rec = self._run(run_id)
            return rec["_package"], dict(rec["runtime_config"]["parameters"])

    def terminate_run(self, run_id: str) -> None:
        """CANCELED unless already terminal (then a no-op)."""
        with self.lock:
            rec = self._run(run_id)
            if rec["state"] not in TERMINAL:
                self._set_state(rec, "CANCELED")

    def retry_run(self, run_id: str) -> None:
        """Only FAILED or CANCELED runs can be retried; they go back to RUNNING."""
        with self.lock:
            rec = self._run(run_id)
            if rec["state"] not in ("FAILED", "CANCELED"):
                raise ApiError(9, f"Failed to retry run {run_id}: run is in state {rec['state']}, only failed or canceled runs can be retried", http_status=400)
            self._set_state(rec, "RUNNING")

    def set_run_storage(self, run_id: str, storage_state: str) -> None:
        """Archive or unarchive a run."""
        with self.lock:
            self._run(run_id)["storage_state"] = storage_state

    def attach_workflow(self, run_id: str, doc: dict) -> None:
        """Control API: record the run's Argo workflow (or just its status)."""
        with self.lock:
            self._run(run_id)["_attached"] = doc

    def put_artifact(self, run_id: str, node_id: str, name: str, data: bytes) -> None:
        """Control API: store the object served by :read."""
        with self.lock:
            self._run(run_id)
            self.artifacts[(run_id, node_id, name)] = data

    def read_artifact(self, run_id: str, node_id: str, name: str) -> bytes | None:
        """The stored object, None when missing; ApiError(13) when the run has no workflow."""
        with self.lock:
            rec = self.runs.get(run_id)
            if rec is None:
                return None
            if rec["_package"].kind != "v1" and rec["_attached"] is None:
                raise ApiError(13, f"Failed to read artifact: run {run_id} has no workflow recorded")
            return self.artifacts.get((run_id, node_id, name))

    # ---- bulk seeding (control API) ---------------------------------------------------------
    def bulk_pipelines(self, count: int, prefix: str, spec: dict | None) -> list[dict]:
        """Create `count` pipelines named `<prefix>-NNNN`, each with its first version."""
        package = _seed_package(spec)
        out = []
        with self.lock:
            for i in range(count):
                rec = self._add_pipeline(f"{prefix}-{i:04d}", "", "")
                ver = self._add_version(rec["pipeline_id"], rec["name"], "", "", package)
                out.append({"pipeline_id": rec["pipeline_id"], "name": rec["name"],
                            "pipeline_version_id": ver["pipeline_version_id"]})
        return out

    def bulk_versions(self, pipeline_id: str, count: int, prefix: str, spec: dict | None) -> list[str]:
        """Add `count` versions named `<prefix>-NNNN` to a pipeline."""
        package = _seed_package(spec)
        with self.lock:
            return [self._add_version(pipeline_id, f"{prefix}-{i:04d}", "", "", package)["pipeline_version_id"]
                    for i in range(count)]

    def bulk_runs(self, count: int, version_ref: dict, experiment_id: str, prefix: str) -> list[str]:
        """Create `count` PENDING runs without parameter checks."""
        with self.lock:
            return [self._new_run(f"{prefix}-{i:04d}", "", experiment_id, version_ref, None, {}, "", "",
                                  "v2beta1", False)["run_id"] for i in range(count)]
