"""KfConnect's run workflows: execution with mapped arguments (v2 and v1 APIs), run reads, terminate, artifacts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from kfadapter.core.errors import KfpForbidden, KfpRejected, KfpUnavailable, NotFound
from kfadapter.kfconnect.experiments import DEFAULT_EXPERIMENT
from kfadapter.kfconnect.filters import all_of, in_filter, in_predicate
from kfadapter.kfconnect.pipelines import PipelineCalls
from kfadapter.kfconnect.transport import PAGE_SIZE, KfpStream, json_answer, segment
from kfadapter.outputs import runinfo
from kfadapter.packages import parsing as pl

TERMINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
# KFP's TerminateRun only moves these (CANCELING included, any other state answers 400); an omitted state is
# protojson's RUNTIME_STATE_UNSPECIFIED.
TERMINABLE_STATES = frozenset({"PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED", None})
UNFINISHED_TIME = "1970-01-01T00:00:00Z"


class RunCalls(PipelineCalls):
    """Runs: start, read, list, terminate, and a v1 run's workflow and artifacts."""

    # ---- runs ---------------------------------------------------------------------------------------------

    def execute(
        self,
        trainingjob_id: str,
        pipeline_name: str,
        version_name: str | None,
        experiment_name: str,
        arguments: dict[str, Any],
        run_name: str | None = None,
    ) -> dict:
        """Start a training run of a pipeline version with arguments mapped onto its parameters."""
        pipeline = self.find_pipeline(pipeline_name)
        version = self.find_version(pipeline, version_name)
        spec = self.version_spec(version)
        kind = pl.spec_kind(spec) or pl.V2
        plan = pl.build_arguments(
            pl.parameters_of(spec),
            arguments,
            trainingjob_id=trainingjob_id,
            mapping=self.settings.argument_mapping,
            kind=kind,
        )
        # Multi-user KFP has no Default experiment until someone creates it in the namespace.
        experiment = (
            self.default_experiment()
            if experiment_name == DEFAULT_EXPERIMENT
            else self.find_experiment(experiment_name)
        )
        run_name = run_name or f"{trainingjob_id}-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        description = f"training job {trainingjob_id}"
        if kind == pl.V1:
            run_id = self._create_v1_run(
                run_name, description, experiment["experiment_id"], version["pipeline_version_id"], plan.values
            )
        else:
            run_id = self._create_v2_run(
                run_name,
                description,
                experiment["experiment_id"],
                pipeline["pipeline_id"],
                version["pipeline_version_id"],
                plan.values,
            )
        return {
            "trainingjob_id": trainingjob_id,
            "run_id": run_id,
            "run_name": run_name,
            "experiment_name": experiment_name,
            "experiment_id": experiment["experiment_id"],
            "pipeline_name": pipeline_name,
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_version": version.get("display_name") or version.get("name"),
            "pipeline_version_id": version["pipeline_version_id"],
            "pipeline_kind": kind,
            "parameters": plan.values,
            "derived_arguments": plan.derived,
            "ignored_arguments": plan.ignored,
            "run_status": "scheduled",
        }

    def _create_v2_run(
        self,
        name: str,
        description: str,
        experiment_id: str,
        pipeline_id: str,
        version_id: str,
        parameters: dict[str, Any],
    ) -> str:
        body = {
            "display_name": name,
            "description": description,
            "experiment_id": experiment_id,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": {"parameters": parameters},
        }
        api = self.client._run_api
        with _version_gone(version_id):
            run = self._call(api.run_service_create_run, body, what=f"create run {name!r}")
        return run["run_id"]

    def _create_v1_run(
        self, name: str, description: str, experiment_id: str, version_id: str, parameters: dict[str, str]
    ) -> str:
        # The v2beta1 create-run silently drops parameters of v1 (Argo) versions (kubeflow/pipelines#10346).
        body = {
            "name": name,
            "description": description,
            "pipeline_spec": {"parameters": [{"name": k, "value": v} for k, v in parameters.items()]},
            "resource_references": [
                {"key": {"type": "EXPERIMENT", "id": experiment_id}, "relationship": "OWNER"},
                {"key": {"type": "PIPELINE_VERSION", "id": version_id}, "relationship": "CREATOR"},
            ],
        }
        with _version_gone(version_id):
            answer = self._call_path(
                "/apis/v1beta1/runs", "POST", body=body, what=f"create v1 run {name!r}", operation="v1beta1_create_run"
            )
        return (answer.get("run") or {})["id"]

    def get_run(self, run_id: str) -> dict:
        """Return one run (on multi-user KFP only one of the adapter's namespace; another's is a 404)."""
        api = self.client._run_api
        missing = _run_missing(run_id)
        try:
            run = self._call(api.run_service_get_run, run_id, what=f"run {run_id!r}")
        except NotFound:
            raise missing from None
        except KfpForbidden as exc:
            raise self.foreign(exc, missing) from None
        return self.own_run(run, missing)

    def list_runs(self) -> list[dict]:
        """Return every run, newest first."""
        api = self.client._run_api
        return self._list_shared(
            api.run_service_list_runs, "runs", namespace=self._namespace, sort_by="created_at desc", what="list runs"
        )

    def probe_access(self) -> int:
        """List one run in the configured namespace, as the run routes do (token and RoleBinding included);
        return the number of runs KFP reports there."""
        api = self.client._run_api
        page = self._call(
            api.run_service_list_runs,
            namespace=self._namespace,
            page_size=1,
            what=f"list runs in namespace {self.settings.namespace!r}",
        )
        return int(page.get("total_size") or len(page.get("runs") or []))

    def runs_by_ids(self, run_ids: Iterable[str]) -> list[dict]:
        """Return the runs among `run_ids` that KFP knows, one list call per 200 ids."""
        return self._runs_where("run_id", run_ids, "list runs by id")

    def finished_runs(self, run_ids: Iterable[str]) -> list[dict]:
        """Return the runs among `run_ids` that KFP reports in a terminal state, one list call per 200 ids.

        KFP filters on its `State` column, where run_store.go writes the v2 state name (`RuntimeState.ToString`),
        with `run_id IN` and `state IN` ANDed (filter.go): runs still going are never sent back.
        """
        return self._runs_where("run_id", run_ids, "list finished runs", states=TERMINAL_STATES)

    def runs_by_names(self, names: Iterable[str]) -> list[dict]:
        """Return the runs whose display name is among `names`, one list call per 200 names."""
        return self._runs_where("display_name", names, "list runs by name")

    def _runs_where(
        self, key: str, values: Iterable[str], what: str, states: frozenset[str] | None = None
    ) -> list[dict]:
        api = self.client._run_api
        wanted = list(dict.fromkeys(values))
        found: list[dict] = []
        for start in range(0, len(wanted), PAGE_SIZE):  # an IN filter of at most one page's worth
            chunk = wanted[start : start + PAGE_SIZE]
            if states is None:
                where = in_filter(key, chunk)
            else:
                where = all_of([in_predicate(key, chunk), in_predicate("state", sorted(states))])
            found.extend(
                self._list_all(api.run_service_list_runs, "runs", namespace=self._namespace, filter=where, what=what)
            )
        return found

    def describe_run(self, run_id: str) -> dict:
        """Return one run with `tasks` (from its task details) and, when FAILED, `failure` (from its workflow)."""
        run = self.get_run(run_id)
        failure = runinfo.failure(self.workflow(run_id)) if run.get("state") == "FAILED" else None
        return run | {"tasks": runinfo.tasks(run), "failure": failure}

    def terminate_run(self, run_id: str) -> dict:
        """Terminate a run that KFP can still terminate; return the run as it is afterwards.

        A CANCELING or finished run is answered as it is, with no further call (KFP would answer 400). A
        terminate that races the run's end gets KFP's 400: the run is read again and answered as it is then.
        KFP moves a terminated run to CANCELING; its final state comes later from the workflow (usually FAILED).
        """
        run = self.get_run(run_id)
        if run.get("state") not in TERMINABLE_STATES:
            return run | {"terminated": False}
        api = self.client._run_api
        try:
            self._call(api.run_service_terminate_run, run_id, what=f"terminate run {run_id!r}")
        except NotFound:
            raise NotFound(f"run {run_id!r} not found", code="run_not_found", details={"run_id": run_id}) from None
        except KfpRejected:
            run = self.get_run(run_id)
            if run.get("state") in TERMINABLE_STATES:
                raise  # not the race: KFP refused for another reason
            return run | {"terminated": False}
        return self.get_run(run_id) | {"terminated": True}

    # ---- run outputs (v1 runs: the Argo workflow and its artifacts) -------------------------------------

    def workflow(self, run_id: str) -> dict | None:
        """Return the run's Argo workflow (v1beta1 `pipeline_runtime.workflow_manifest`); None while it has none."""
        missing = _run_missing(run_id)
        try:
            detail = self._call_path(
                f"/apis/v1beta1/runs/{segment(run_id)}", "GET", what=f"run {run_id!r}", operation="v1beta1_get_run"
            )
        except NotFound:
            raise missing from None
        except KfpForbidden as exc:
            raise self.foreign(exc, missing) from None
        refs = (detail.get("run") or {}).get("resource_references") or []
        keys = [r.get("key") or {} for r in refs if isinstance(r, dict)]
        experiment = next((k.get("id") for k in keys if k.get("type") in ("EXPERIMENT", 1)), None)
        self.own_run({"run_id": run_id, "experiment_id": experiment}, missing)
        manifest = (detail.get("pipeline_runtime") or {}).get("workflow_manifest")
        if not manifest:
            return None
        # Inside an answer already read within the size cap; its depth is checked before parsing.
        workflow = json_answer(manifest, self.settings.max_json_depth, f"run {run_id!r}: KFP's workflow manifest")
        return workflow if isinstance(workflow, dict) else None

    def read_artifact(self, run_id: str, node_id: str, name: str) -> KfpStream:
        """Open KFP's `:read` answer `{"data": "<base64>"}` for one node's artifact as a stream, not loaded whole."""
        # Not in kfp-server-api >= 2.15 (a streaming handler there), hence call_api on the path.
        path = f"/apis/v1beta1/runs/{segment(run_id)}/nodes/{segment(node_id)}/artifacts/{segment(name)}:read"
        what = f"artifact {name!r} of node {node_id!r} in run {run_id!r}"
        try:
            with self._kfp("read_artifact", what):
                resp = self._api_client.call_api(
                    path,
                    "GET",
                    header_params={"Accept": "application/json"},
                    auth_settings=["Bearer"],
                    _return_http_data_only=True,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
        except NotFound:
            # KFP >= 2.15 answers 404 {"error_message": "artifact not found: <nil>"} as text/plain for a missing
            # run, node or artifact alike.
            raise NotFound(
                f"{what} not found",
                code="artifact_not_found",
                details={"run_id": run_id, "node_id": node_id, "artifact": name},
            ) from None
        except (KfpRejected, KfpUnavailable) as exc:
            # KFP has not recorded the run's workflow yet: 400 before 2.15, 500 after.
            if exc.details.get("kfp_status") not in self.server_profile().read_unrecorded_statuses:
                raise
            raise NotFound(
                f"{what} is not available yet: KFP has not recorded the run's workflow",
                code="not_available_yet",
                details={"run_id": run_id, "node_id": node_id, "artifact": name},
            ) from None
        except KfpForbidden as exc:
            raise self.foreign(exc, _run_missing(run_id)) from None
        stream = KfpStream(resp, what)
        if not self.knows_own_run(run_id):  # checked after the call, so a path KfConnect refuses costs no KFP call
            try:
                self.get_run(run_id)
            except BaseException:
                stream.close()
                raise
        return stream


def _run_missing(run_id: str) -> NotFound:
    return NotFound(f"run {run_id!r} not found", code="run_not_found", details={"run_id": run_id})


@contextmanager
def _version_gone(version_id: str) -> Iterator[None]:
    """KFP answers create-run for a version that no longer exists with 500 "error fetching manifest ... not found"
    (resource_manager.go CreateRun, every version): a version deleted since it was looked up is a 404."""
    try:
        yield
    except KfpUnavailable as exc:
        text = exc.message.lower()
        if exc.details.get("kfp_status") != 500 or "error fetching manifest" not in text or "not found" not in text:
            raise
        raise NotFound(
            f"pipeline version {version_id!r} no longer exists in KFP (deleted while the run was being created)",
            code="version_not_found",
            details={"pipeline_version_id": version_id},
        ) from None
