"""KfConnect's namespace scope on multi-user KFP: the adapter keeps to KFADAPTER_NAMESPACE, and reads shared pipelines.

Multi-user KFP authorizes each call by its caller's grants, and an adapter's ServiceAccount may hold more than its
own namespace (kubeflow-pipelines-edit bound in several profiles, or cluster-wide). So the by-id calls check the
object's namespace here: another namespace's run, experiment, pipeline or version is a 404, as if it did not exist
(also where KFP itself refused it with a 403 about that other namespace). Shared pipelines (namespace "") are
readable, never deleted. A v2beta1 run names no namespace: its experiment's is used (looked up once per experiment,
since an experiment never moves). In single-user mode (or without KFADAPTER_NAMESPACE) nothing is checked.
"""

from __future__ import annotations

import threading

from kfadapter.core.errors import AdapterError, KfpForbidden, NotFound
from kfadapter.kfconnect.transport import Transport
from kfadapter.settings import Settings

_CACHE_MAX = 10_000  # experiment namespaces / own run ids remembered; cleared whole when full


class SharedPipelineReadOnly(AdapterError):
    """A shared pipeline (namespace "") is every namespace's: an adapter scoped to one does not delete it (403)."""

    status = 403
    code = "shared_pipeline_read_only"


class ScopedCalls(Transport):
    """Namespace checks for the by-id calls (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._experiment_ns: dict[str, str] = {}
        self._own_runs: set[str] = set()
        self._scope_lock = threading.Lock()

    def scoped(self) -> bool:
        """Whether calls keep to KFADAPTER_NAMESPACE (multi-user KFP with a namespace configured)."""
        return bool(self.settings.namespace) and self.server_profile().multi_user

    def experiment_namespace(self, experiment_id: str) -> str | None:
        """The experiment's namespace; None when KFP has no such experiment or refuses to show it."""
        known = self._experiment_ns.get(experiment_id)
        if known is not None or not experiment_id:
            return known
        api = self.client._experiment_api
        try:
            exp = self._call(api.experiment_service_get_experiment, experiment_id, what=f"experiment {experiment_id!r}")
        except (NotFound, KfpForbidden):
            return None
        namespace = str(exp.get("namespace") or "")
        with self._scope_lock:
            if len(self._experiment_ns) >= _CACHE_MAX:
                self._experiment_ns.clear()
            self._experiment_ns[experiment_id] = namespace
        return namespace

    def own_run(self, run: dict, missing: NotFound) -> dict:
        """The run when it lives in the adapter's namespace (its experiment's), else `missing`."""
        if not self.scoped() or run.get("run_id") in self._own_runs:
            return run
        if self.experiment_namespace(str(run.get("experiment_id") or "")) != self.settings.namespace:
            raise missing
        with self._scope_lock:
            if len(self._own_runs) >= _CACHE_MAX:
                self._own_runs.clear()
            self._own_runs.add(str(run.get("run_id")))
        return run

    def knows_own_run(self, run_id: str) -> bool:
        """Whether the run was already found in the adapter's namespace (or nothing is scoped)."""
        return not self.scoped() or run_id in self._own_runs

    def readable_pipeline(self, pipeline: dict, missing: NotFound) -> dict:
        """The pipeline when it is the adapter's namespace's or shared, else `missing`."""
        if self.scoped() and str(pipeline.get("namespace") or "") not in ("", self.settings.namespace):
            raise missing
        return pipeline

    def writable_pipeline(self, pipeline: dict, missing: NotFound) -> dict:
        """The pipeline when the adapter may delete it or its versions: its own namespace's, not a shared one."""
        self.readable_pipeline(pipeline, missing)
        if self.scoped() and not pipeline.get("namespace"):
            raise SharedPipelineReadOnly(
                f'pipeline {pipeline.get("display_name")!r} is shared (namespace ""): an adapter for namespace '
                f"{self.settings.namespace!r} reads it but does not delete it or its versions",
                details={"pipeline_id": pipeline.get("pipeline_id"), "namespace": ""},
            )
        return pipeline

    def foreign(self, exc: KfpForbidden, missing: NotFound) -> AdapterError:
        """KFP's 403 on a by-id call: about another namespace, the object is not the adapter's (404)."""
        if self.scoped() and exc.details.get("namespace") != self.settings.namespace:
            return missing
        return exc
