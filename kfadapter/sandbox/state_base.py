"""The sandbox state's foundation: KFP's constants and list resources, the lock, clock, counters and faults.

Every public method of the state takes `self.lock` for its whole (short, CPU-only) body; package parsing and
HTTP I/O happen in the routes, outside the lock.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter

from kfadapter.sandbox import listing, packages, versions
from kfadapter.sandbox.errors import ApiError
from kfadapter.sandbox.views import V1_STATUS

TERMINAL = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
STATES = frozenset(
    {
        "RUNTIME_STATE_UNSPECIFIED",
        "PENDING",
        "RUNNING",
        "SUCCEEDED",
        "SKIPPED",
        "FAILED",
        "CANCELING",
        "CANCELED",
        "PAUSED",
    }
)
DEFAULT_EXPERIMENT = "Default"


def _get(key: str):
    return lambda r: r.get(key)


def _v1_status(rec: dict) -> str:
    return V1_STATUS.get(rec.get("state", ""), "")


# KFP 2.17's APIToModelFieldMap per resource (model/*.go): only these keys filter and sort.
PIPELINES = listing.Resource(
    "pipelines",
    "pipeline_id",
    {
        "id": "UUID",
        "pipeline_id": "UUID",
        "name": "Name",
        "display_name": "DisplayName",
        "created_at": "CreatedAtInSec",
        "description": "Description",
        "namespace": "Namespace",
    },
    {
        "UUID": _get("pipeline_id"),
        "Name": _get("name"),
        "DisplayName": _get("display_name"),
        "CreatedAtInSec": _get("created_at"),
        "Description": _get("description"),
        "Namespace": _get("namespace"),
    },
)
VERSIONS = listing.Resource(
    "pipeline_versions",
    "pipeline_version_id",
    {
        "id": "UUID",
        "pipeline_version_id": "UUID",
        "name": "Name",
        "display_name": "DisplayName",
        "created_at": "CreatedAtInSec",
        "status": "Status",
        "description": "Description",
        "pipeline_spec": "PipelineSpec",
    },
    {
        "UUID": _get("pipeline_version_id"),
        "Name": _get("name"),
        "DisplayName": _get("display_name"),
        "CreatedAtInSec": _get("created_at"),
        "Status": lambda r: "READY",
        "Description": _get("description"),
        "PipelineSpec": lambda r: json.dumps(r.get("pipeline_spec"), sort_keys=True),
    },
)
EXPERIMENTS = listing.Resource(
    "experiments",
    "experiment_id",
    {
        "id": "UUID",
        "experiment_id": "UUID",
        "name": "Name",
        "display_name": "Name",
        "created_at": "CreatedAtInSec",
        "last_run_created_at": "LastRunCreatedAtInSec",
        "description": "Description",
        "namespace": "Namespace",
        "storage_state": "StorageState",
    },
    {
        "UUID": _get("experiment_id"),
        "Name": _get("display_name"),
        "CreatedAtInSec": _get("created_at"),
        "LastRunCreatedAtInSec": _get("last_run_created_at"),
        "Description": _get("description"),
        "Namespace": _get("namespace"),
        "StorageState": _get("storage_state"),
    },
    timestamps=("CreatedAtInSec", "LastRunCreatedAtInSec"),
)
RUNS = listing.Resource(
    "runs",
    "run_id",
    {
        "run_id": "UUID",
        "id": "UUID",
        "display_name": "DisplayName",
        "name": "DisplayName",
        "created_at": "CreatedAtInSec",
        "finished_at": "FinishedAtInSec",
        "description": "Description",
        "scheduled_at": "ScheduledAtInSec",
        "storage_state": "StorageState",
        "status": "Conditions",
        "namespace": "Namespace",
        "experiment_id": "ExperimentUUID",
        "state": "State",
        "state_history": "StateHistory",
        "runtime_details": "PipelineRuntimeManifest",
        "recurring_run_id": "JobUUID",
    },
    {
        "UUID": _get("run_id"),
        "DisplayName": _get("display_name"),
        "CreatedAtInSec": _get("created_at"),
        "FinishedAtInSec": _get("finished_at"),
        "Description": _get("description"),
        "ScheduledAtInSec": _get("scheduled_at"),
        "StorageState": _get("storage_state"),
        "Conditions": _v1_status,
        "Namespace": _get("_namespace"),
        "ExperimentUUID": _get("experiment_id"),
        "State": _get("state"),
        "StateHistory": lambda r: json.dumps(r.get("state_history")),
        "PipelineRuntimeManifest": lambda r: "",
        "JobUUID": _get("recurring_run_id"),
    },
    timestamps=("CreatedAtInSec", "FinishedAtInSec", "ScheduledAtInSec"),
)

# A tiny IR used by the bulk seeding helpers.
_SEED_IR = {
    "pipelineInfo": {"name": "seed"},
    "root": {
        "dag": {"tasks": {}},
        "inputDefinitions": {
            "parameters": {"epochs": {"parameterType": "NUMBER_INTEGER", "defaultValue": 1.0, "isOptional": True}}
        },
    },
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


class StateBase:
    """The data dictionaries, one lock, the clock, request counters and faults."""

    def __init__(self, multi_user: bool = False, kfp_version: str | None = None):
        self.lock = threading.Lock()
        self.kfp_version = versions.profile(kfp_version)  # the KFP release played (sandbox/versions.py)
        # Multi-user KFP: every experiment and run lives in a namespace, and there is no Default experiment.
        self.multi_user = multi_user
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
        if not self.multi_user:
            self._default_experiment_id()  # KFP's main.go creates it in single-user mode only

    def _default_experiment_id(self) -> str:
        """Return the Default experiment's id, creating it (CatalogState)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Back to a fresh KFP: only the Default experiment (single-user), counters and faults cleared."""
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
