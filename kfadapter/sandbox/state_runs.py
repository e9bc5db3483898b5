"""The sandbox state's runs: creation with KFP's parameter checks, states, terminate, workflows, artifacts."""

from __future__ import annotations

import json

from kfadapter.sandbox import listing, packages, views, workflow
from kfadapter.sandbox.errors import ApiError, not_found
from kfadapter.sandbox.state_base import RUNS, STATES, TERMINAL, _new_id
from kfadapter.sandbox.state_catalog import CatalogState

# TerminateRun's SQL update only matches these states (storage/run_store.go); anything else is a 400.
TERMINABLE = frozenset({"PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED"})


def _manifest_error(cause: str) -> ApiError:
    return ApiError(
        13,
        "Failed to create a new run: InternalServerError: Failed to create a run due to error fetching manifest: "
        f"Failed to fetch a template due to error retrieving pipeline version: {cause}",
    )


class RunState(CatalogState):
    """Runs and their artifacts."""

    # ---- runs ----------------------------------------------------------------------------
    def _run(self, run_id: str) -> dict:
        rec = self.runs.get(run_id)
        if rec is None:
            raise not_found("Run", run_id)
        return rec

    def _resolve_version(self, ref: dict) -> dict:
        vid, pid = ref.get("pipeline_version_id"), ref.get("pipeline_id")
        if not vid and not pid:
            raise ApiError(
                3, "Failed to create a run: Invalid input error: pipeline version reference needs a pipeline_version_id"
            )
        # resource_manager.go CreateRun wraps every failure of fetchTemplateFromPipelineSpec (an unknown version
        # or pipeline, a version of another pipeline) in NewInternalServerError: 500 at every version, not 404.
        if vid:
            ver = self.versions.get(vid)
            if ver is None:
                raise _manifest_error(
                    f"Failed to fetch a pipeline version and its manifest from pipeline version {vid}: Failed to get a "
                    f"pipeline version with id {vid}: ResourceNotFoundError: PipelineVersion {vid} not found"
                )
            if pid and ver["pipeline_id"] != pid:
                raise _manifest_error(
                    f"Invalid input error: Pipeline version {vid} belongs to pipeline {ver['pipeline_id']} (not {pid})"
                )
            return ver
        owned = sorted(
            (v["created_at"], v["pipeline_version_id"], v) for v in self.versions.values() if v["pipeline_id"] == pid
        )
        if pid not in self.pipelines or not owned:
            raise _manifest_error(
                f"Failed to fetch a pipeline version and its manifest from pipeline {pid}: Failed to get the latest "
                f"pipeline version for pipeline {pid}: ResourceNotFoundError: Pipeline {pid} not found"
            )
        return owned[-1][2]  # KFP uses the latest version when only the pipeline is given

    def create_run(
        self,
        *,
        display_name: str,
        description: str = "",
        experiment_id: str = "",
        version_ref: dict | None = None,
        package: packages.Package | None = None,
        parameters: dict | None = None,
        pipeline_root: str = "",
        service_account: str = "",
        api: str = "v2beta1",
        check: bool = True,
    ) -> dict:
        """Create a PENDING run; `api` picks v2beta1 (typed params) or v1beta1 (string params) rules."""
        with self.lock:
            rec = self._new_run(
                display_name,
                description,
                experiment_id,
                version_ref,
                package,
                dict(parameters or {}),
                pipeline_root,
                service_account,
                api,
                check,
            )
            return views.run(rec)

    def _new_run(
        self,
        display_name,
        description,
        experiment_id,
        version_ref,
        package,
        params,
        pipeline_root,
        service_account,
        api,
        check,
    ) -> dict:
        if not display_name:
            raise ApiError(
                3, "Failed to create a run: Invalid input error: The run name is empty. Please specify a valid name"
            )
        experiment_id = experiment_id or self._default_experiment_id()
        namespace = self._experiment(experiment_id)["namespace"]  # a run lives in its experiment's namespace
        ref, pipeline_name = None, ""
        if version_ref is not None:
            ver = self._resolve_version(version_ref)
            package = ver["_package"]
            ref = {"pipeline_id": ver["pipeline_id"], "pipeline_version_id": ver["pipeline_version_id"]}
            pipeline_name = self.pipelines.get(ver["pipeline_id"], {}).get("display_name", "")
        if package is None:
            raise ApiError(
                3,
                "Failed to create a run: Invalid input error: the run needs a pipeline_version_reference or a pipeline_spec",
            )
        v1_params = None
        if package.kind == "v1":
            defaults = packages.workflow_parameters(package.workflow)
            if api == "v2beta1":
                params = {}  # kubeflow/pipelines#10346: v2beta1 silently drops v1 parameters
            known = {p["name"] for p in defaults}
            for name in params:
                if check and name not in known:
                    raise ApiError(
                        3, f"Failed to create a run: Invalid input error: Unrecognized input parameter: {name}"
                    )
            v1_params = [{"name": p["name"], "value": params.get(p["name"], p["value"])} for p in defaults]
        elif check:
            try:
                packages.check_runtime_parameters(package.ir, params)
            except ValueError as exc:
                raise ApiError(3, f"Failed to create a run: Invalid input error: {exc}") from exc
        now = self._now()
        rec = {
            "run_id": _new_id(),
            "experiment_id": experiment_id,
            "display_name": display_name,
            "description": description,
            "pipeline_version_reference": ref,
            "pipeline_spec": None if ref else package.spec,
            "runtime_config": {"parameters": params, "pipeline_root": pipeline_root},
            "service_account": service_account,
            "state": "PENDING",
            "created_at": now,
            "scheduled_at": now,
            "finished_at": views.EPOCH,
            "state_history": [{"update_time": now, "state": "PENDING"}],
            "storage_state": "AVAILABLE",
            "_package": package,
            "_v1_params": v1_params,
            "_attached": None,
            "_api": api,
            "_pipeline_name": pipeline_name,
            "_namespace": namespace,
            "_workflow": None,
            "_terminating": False,
            "_tasks": {},
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
        """A page of runs within `experiment_id`, else within ?namespace= (one of them in multi-user mode)."""
        exp = args.get("experiment_id") or args.get("resource_reference_key.id")
        namespace = self.namespace(args.get("namespace"))
        with self.lock:
            if exp:
                namespace = self._experiment(exp)["namespace"]
            if self.multi_user and not namespace:
                raise ApiError(
                    3,
                    "Failed to list runs due to authorization error: Invalid input error: "
                    "A run cannot have an empty namespace in multi-user mode",
                )
            recs = [
                r
                for r in listing.candidates(RUNS, self.runs, args)
                if (r["experiment_id"] == exp if exp else r["_namespace"] == namespace)
            ]
            return listing.list_page(RUNS, recs, args, views.run)

    def delete_run(self, run_id: str) -> None:
        """Delete a run and its stored artifacts."""
        with self.lock:
            self._run(run_id)
            del self.runs[run_id]
            for key in [k for k in self.artifacts if k[0] == run_id]:
                del self.artifacts[key]

    def _set_state(self, rec: dict, state: str, finished_at: str | None = None) -> None:
        # As RunStore.UpdateRun: the history grows only when the state changes.
        if state not in STATES:
            raise ApiError(3, f"Invalid run state: {state!r}; one of {sorted(STATES)}")
        now = self._now()
        rec["state"] = state
        if rec["state_history"][-1]["state"] != state:
            rec["state_history"].append({"update_time": now, "state": state})
        rec["finished_at"] = (finished_at or now) if state in TERMINAL else views.EPOCH

    def _failure_message(self, rec: dict, error: dict | None) -> None:
        # KFP never fills a run's `error`; a control API `error` becomes the workflow's status.message.
        if not error or not error.get("message"):
            return
        attached = rec["_attached"] or {}
        status = attached.setdefault("status", {}) if views.is_workflow(attached) else attached
        status["message"] = str(error["message"])
        if rec["state"] == "FAILED":
            status.setdefault("phase", "Failed")
        rec["_attached"] = attached
        self._derive_tasks(rec)

    def set_run_states(self, run_ids: list[str], state: str, error: dict | None = None) -> int:
        """Control API: move runs to `state` (all ids must exist); `error.message` goes to the workflow."""
        if error is not None and not isinstance(error.get("message", ""), str):
            raise ApiError(3, "control API: error.message must be a string")
        with self.lock:
            recs = [self._run(rid) for rid in run_ids]
            for rec in recs:
                self._set_state(rec, state)
                self._failure_message(rec, error)
            return len(recs)

    def report_workflow(self, run_id: str, manifest: dict) -> bool:
        """The sandbox executor reports its run's workflow, as KFP's persistence agent does; False if gone."""
        with self.lock:
            rec = self.runs.get(run_id)
            if rec is None:
                return False
            if rec["_terminating"]:
                manifest.setdefault("spec", {})["activeDeadlineSeconds"] = 0
            rec["_workflow"] = manifest
            self._set_state(rec, workflow.run_state(manifest), manifest["status"].get("finishedAt"))
            self._derive_tasks(rec, manifest)
            return True

    def _derive_tasks(self, rec: dict, manifest: dict | None = None) -> None:
        manifest = manifest if manifest is not None else views.workflow_manifest(rec)
        tasks = workflow.task_details(rec["run_id"], manifest or {}, rec["created_at"], rec["_tasks"], self._now())
        rec["run_details"] = {"task_details": tasks} if tasks else None

    def run_package(self, run_id: str) -> tuple[packages.Package, dict]:
        """The run's package and runtime parameters (for the sandbox executor)."""
        with self.lock:
            rec = self._run(run_id)
            return rec["_package"], dict(rec["runtime_config"]["parameters"])

    def terminate_run(self, run_id: str) -> None:
        """KFP's TerminateRun: PENDING/RUNNING/PAUSED/UNSPECIFIED → CANCELING (no history entry), else 400.

        The workflow gets `activeDeadlineSeconds: 0`; the final state comes from it (an executed run's
        worker reports it; other runs stay CANCELING until the control API moves them)."""
        with self.lock:
            rec = self._run(run_id)
            if rec["state"] not in TERMINABLE:
                raise ApiError(
                    3,
                    f"Failed to terminate a run: Failed to terminate run {run_id}: Invalid input "
                    f"error: Failed to terminate a run {run_id}. Row not found",
                )
            rec["state"] = "CANCELING"
            rec["_terminating"] = True

    def retry_run(self, run_id: str) -> None:
        """Only FAILED or CANCELED runs can be retried; they go back to RUNNING."""
        with self.lock:
            rec = self._run(run_id)
            if rec["state"] not in ("FAILED", "CANCELED"):
                raise ApiError(
                    9,
                    f"Failed to retry run {run_id}: run is in state {rec['state']}, only failed or canceled runs can be retried",
                    http_status=400,
                )
            rec["_terminating"], rec["_workflow"] = False, None
            if rec["_package"].kind != "v1" and rec["_attached"] is None:
                rec["_tasks"], rec["run_details"] = {}, None  # an executed run gets a new workflow
            self._set_state(rec, "RUNNING")

    def set_run_storage(self, run_id: str, storage_state: str) -> None:
        """Archive or unarchive a run."""
        with self.lock:
            self._run(run_id)["storage_state"] = storage_state

    def attach_workflow(self, run_id: str, doc: dict) -> None:
        """Control API: record the run's Argo workflow (or just its status)."""
        with self.lock:
            rec = self._run(run_id)
            rec["_attached"] = doc
            self._derive_tasks(rec)

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
            if rec["_package"].kind != "v1" and rec["_attached"] is None and rec["_workflow"] is None:
                raise ApiError(13, f"Failed to read artifact: run {run_id} has no workflow recorded")
            return self.artifacts.get((run_id, node_id, name))

    def bulk_runs(self, count: int, version_ref: dict, experiment_id: str, prefix: str) -> list[str]:
        """Create `count` PENDING runs without parameter checks."""
        with self.lock:
            return [
                self._new_run(f"{prefix}-{i:04d}", "", experiment_id, version_ref, None, {}, "", "", "v2beta1", False)[
                    "run_id"
                ]
                for i in range(count)
            ]
