"""JSON views of stored records, shaped like KFP's protojson output (empty fields omitted)."""

from __future__ import annotations

import copy
import json

from kfadapter.sandbox import versions

EPOCH = "1970-01-01T00:00:00Z"

# v2 RuntimeState -> v1 run status, as KFP's RuntimeState.ToV1 maps them.
V1_STATUS = {
    "PENDING": "Pending",
    "PAUSED": "Pending",
    "RUNNING": "Running",
    "SUCCEEDED": "Succeeded",
    "SKIPPED": "Skipped",
    "FAILED": "Failed",
    "CANCELED": "Failed",
    "CANCELING": "Terminating",
}
_WORKFLOW_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}


def _prune(doc: dict) -> dict:
    # protojson drops unset scalars, empty lists and empty maps; messages stay.
    return {k: v for k, v in doc.items() if not k.startswith("_") and v not in (None, "", [], {})}


def pipeline(rec: dict) -> dict:
    """A v2beta1 Pipeline."""
    return versions.active().resource_view(_prune(rec))


def version(rec: dict) -> dict:
    """A v2beta1 PipelineVersion (pipeline_spec is the parsed package)."""
    return versions.active().resource_view(_prune(rec))


def experiment(rec: dict) -> dict:
    """A v2beta1 Experiment."""
    return _prune(rec)


def run(rec: dict) -> dict:
    """A v2beta1 Run; the state history is copied because it keeps growing."""
    out = _prune(rec)
    out.pop("runtime_config", None)
    config = _prune(rec["runtime_config"])
    if config:  # toApiRun leaves an empty runtime config nil, so protojson omits it
        out["runtime_config"] = config
    out["finished_at"] = rec["finished_at"]
    out["state_history"] = [dict(h) for h in rec["state_history"]]
    if rec.get("run_details"):
        out["run_details"] = copy.deepcopy(rec["run_details"])
    return out


def _v1_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def v1_parameters(rec: dict) -> list[dict]:
    """The run's parameters as v1 [{name, value(str)}]."""
    params = rec["runtime_config"].get("parameters") or {}
    return [{"name": k, "value": _v1_value(v)} for k, v in params.items()]


def run_v1(rec: dict, experiment_name: str, version_name: str) -> dict:
    """A v1beta1 Run (status is the v1 view of the state)."""
    ref = rec.get("pipeline_version_reference") or {}
    refs = [
        {"key": {"type": "EXPERIMENT", "id": rec["experiment_id"]}, "name": experiment_name, "relationship": "OWNER"}
    ]
    if ref.get("pipeline_version_id"):
        refs.append(
            {
                "key": {"type": "PIPELINE_VERSION", "id": ref["pipeline_version_id"]},
                "name": version_name,
                "relationship": "CREATOR",
            }
        )
    spec = _prune(
        {
            "pipeline_id": ref.get("pipeline_id"),
            "pipeline_name": rec.get("_pipeline_name"),
            "parameters": [_prune(p) for p in v1_parameters(rec)],
        }
    )
    return _prune(
        {
            "id": rec["run_id"],
            "name": rec["display_name"],
            "description": rec.get("description"),
            # STORAGESTATE_AVAILABLE is the enum's zero value: protojson leaves it out.
            "storage_state": "STORAGESTATE_ARCHIVED" if rec["storage_state"] == "ARCHIVED" else None,
            "pipeline_spec": spec,
            "resource_references": refs,
            "service_account": rec.get("service_account"),
            "created_at": rec["created_at"],
            "scheduled_at": rec["scheduled_at"],
            "finished_at": rec["finished_at"],
            "status": V1_STATUS.get(rec["state"], "Unknown"),
        }
    )


def is_workflow(doc: dict) -> bool:
    """Whether an attached document is a whole Workflow (else it is taken as its status)."""
    return bool(_WORKFLOW_KEYS & doc.keys())


def workflow_manifest(rec: dict) -> dict | None:
    """The run's Argo workflow as v1beta1 GET serves it, or None when the run has none recorded."""
    package, attached = rec["_package"], rec.get("_attached")
    if rec.get("_workflow") is not None:  # an executed run: the workflow its worker reported
        return copy.deepcopy(rec["_workflow"])
    if package.kind == "v1":
        wf = copy.deepcopy(package.workflow)
        meta = wf.setdefault("metadata", {})
        meta["name"] = meta.pop("generateName", "run-") + rec["run_id"][:5]
        meta.setdefault("labels", {})["pipeline/runid"] = rec["run_id"]
        wf.setdefault("spec", {}).setdefault("arguments", {})["parameters"] = [dict(p) for p in rec["_v1_params"]]
    elif attached is not None:
        wf = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "run-" + rec["run_id"][:8], "labels": {"pipeline/runid": rec["run_id"]}},
        }
    else:
        return None
    if attached is not None:
        wf.update(copy.deepcopy(attached) if is_workflow(attached) else {"status": copy.deepcopy(attached)})
    if rec.get("_terminating"):
        wf.setdefault("spec", {})["activeDeadlineSeconds"] = 0  # what KFP's TerminateRun patches in
    return wf
