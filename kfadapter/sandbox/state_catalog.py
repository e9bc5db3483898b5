"""The sandbox state's pipelines, pipeline versions and experiments."""

from __future__ import annotations

from typing import Any

from kfadapter.sandbox import listing, packages, versions, views
from kfadapter.sandbox.errors import ApiError, not_found
from kfadapter.sandbox.state_base import (
    DEFAULT_EXPERIMENT,
    EXPERIMENTS,
    PIPELINES,
    VERSIONS,
    StateBase,
    _new_id,
    _seed_package,
)

# KFP 2.17's limits (validation/length.go, common/utils.go). Go's len() counts bytes.
PIPELINE_NAME_MAX = 128
VERSION_NAME_MAX = 127
EXPERIMENT_NAME_MAX = 128
NAMESPACE_MAX = 63


def _same(a: str, b: str) -> bool:
    # MySQL's default collation (utf8mb4_0900_ai_ci) compares names case-insensitively.
    return a.casefold() == b.casefold()


def too_long(model: str, field: str, value: str, limit: int) -> str | None:
    """KFP's ValidateFieldLength message when `value` is over `limit` bytes, else None."""
    if len(value.encode()) > limit:
        return f"Invalid input error: {model}.{field} length cannot exceed {limit}"
    return None


def check_ir_name(package: packages.Package) -> None:
    """KFP refuses a v2 package whose pipelineInfo.name MLMD could not hold (ValidatePipelineName)."""
    if package.kind != "v2":
        return
    name = package.pipeline_name
    if not name:
        raise ApiError(3, "Invalid input error: pipeline's name cannot be empty")
    if len(name.encode()) > 128:
        raise ApiError(3, "Invalid input error: pipeline's name must contain no more than 128 characters")
    if not versions.IR_NAME_PATTERN.match(name):
        raise ApiError(
            3,
            "Invalid input error: pipeline's name must contain only lowercase alphanumeric "
            "characters or '-' and must start with alphanumeric characters",
        )


class CatalogState(StateBase):
    """Pipelines, versions and experiments."""

    def namespace(self, namespace: str | None) -> str:
        """KFP's ReplaceNamespace: the given namespace in multi-user mode, '' in single-user mode."""
        return (namespace or "") if self.multi_user else ""

    # ---- pipelines and versions ----------------------------------------------------------
    def _pipeline(self, pipeline_id: str) -> dict:
        rec = self.pipelines.get(pipeline_id)
        if rec is None:
            raise not_found("Pipeline", pipeline_id)
        return rec

    def _add_pipeline(self, name: str, display_name: str, description: str, namespace: str = "") -> dict:
        if not name:
            raise ApiError(3, "Failed to create a pipeline: Invalid input error: pipeline's name cannot be empty")
        message = too_long("Pipeline", "Name", name, PIPELINE_NAME_MAX)
        if message and self.kfp_version.name_length_limits:  # validation/length.go, from 2.15
            raise ApiError(3, message)
        if any(_same(p["name"], name) and p["namespace"] == namespace for p in self.pipelines.values()):
            raise ApiError(
                6,
                f"Failed to create a pipeline: AlreadyExistsError: pipeline with name {name!r} already exists in namespace {namespace!r}",
            )
        rec: dict[str, Any] = {
            "pipeline_id": _new_id(),
            "display_name": display_name or name,
            "name": name,
            "description": description,
            "created_at": self._now(),
            "namespace": namespace,
        }
        self.pipelines[rec["pipeline_id"]] = rec
        return rec

    def _add_version(
        self,
        pipeline_id: str,
        name: str,
        display_name: str,
        description: str,
        package: packages.Package,
        code_source_url: str = "",
    ) -> dict:
        self._pipeline(pipeline_id)
        check_ir_name(package)
        if not name:
            raise ApiError(
                3, "Failed to create a pipeline version: Invalid input error: pipeline version's name cannot be empty"
            )
        # From 2.15 the column is varchar(127); before, gorm's default varchar(255). MySQL in strict mode refuses a
        # longer insert, which KFP reports as internal.
        column = VERSION_NAME_MAX if self.kfp_version.name_length_limits else 255
        if len(name) > column:
            raise ApiError(
                13,
                "Failed to create a pipeline version: InternalServerError: Error 1406: Data too long for column 'Name'",
            )
        if any(v["pipeline_id"] == pipeline_id and _same(v["name"], name) for v in self.versions.values()):
            raise ApiError(
                6,
                f"Failed to create a pipeline version: AlreadyExistsError: pipeline version with name {name!r} already exists for pipeline {pipeline_id}",
            )
        rec: dict[str, Any] = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": _new_id(),
            "display_name": display_name or name,
            "name": name,
            "description": description,
            "created_at": self._now(),
            "pipeline_spec": package.spec,
            "code_source_url": code_source_url,
            "_package": package,
        }
        self.versions[rec["pipeline_version_id"]] = rec
        return rec

    def create_pipeline(
        self,
        name: str,
        display_name: str = "",
        description: str = "",
        package: packages.Package | None = None,
        namespace: str = "",
    ) -> tuple[dict, dict | None]:
        """Create a pipeline, and with a package also its first version named after it (both or neither)."""
        if package is not None:
            check_ir_name(package)
        with self.lock:
            rec = self._add_pipeline(name, display_name, description, self.namespace(namespace))
            if package is None:
                return views.pipeline(rec), None
            try:
                ver = self._add_version(rec["pipeline_id"], rec["name"], rec["display_name"], description, package)
            except ApiError:
                del self.pipelines[rec["pipeline_id"]]  # one transaction in KFP
                raise
            return views.pipeline(rec), views.version(ver)

    def create_version(
        self,
        pipeline_id: str,
        name: str,
        display_name: str,
        description: str,
        package: packages.Package,
        code_source_url: str = "",
    ) -> dict:
        """Add a version to an existing pipeline."""
        with self.lock:
            return views.version(
                self._add_version(pipeline_id, name, display_name, description, package, code_source_url)
            )

    def get_pipeline(self, pipeline_id: str) -> dict:
        """One pipeline by id."""
        with self.lock:
            return views.pipeline(self._pipeline(pipeline_id))

    def get_pipeline_by_name(self, name: str, namespace: str = "") -> dict:
        """The newest pipeline with this name (any namespace when none is given), compared case-insensitively."""
        namespace = self.namespace(namespace)
        with self.lock:
            found = [
                p
                for p in self.pipelines.values()
                if _same(p["name"], name) and (not namespace or p["namespace"] == namespace)
            ]
            if found:
                return views.pipeline(max(found, key=lambda p: (p["created_at"], p["pipeline_id"])))
        raise ApiError(
            5,
            f"Failed to get a pipeline with name {name} and namespace {namespace}: ResourceNotFoundError: Namespace/Pipeline {namespace}/{name} not found",
        )

    def list_pipelines(self, args) -> dict:
        """A page of the pipelines of ?namespace= (shared ones: '' in multi-user mode)."""
        namespace = self.namespace(args.get("namespace"))
        with self.lock:
            recs = [p for p in self.pipelines.values() if p["namespace"] == namespace]
            return listing.list_page(PIPELINES, recs, args, views.pipeline)

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> None:
        """Delete a pipeline; refused while versions exist unless cascade."""
        with self.lock:
            self._pipeline(pipeline_id)
            owned = [vid for vid, v in self.versions.items() if v["pipeline_id"] == pipeline_id]
            if owned and not cascade:
                raise ApiError(
                    9,
                    f"Failed to delete pipeline {pipeline_id}: pipeline has {len(owned)} existing pipeline versions; "
                    "delete the versions first or set cascade=true",
                    http_status=400,
                )
            for vid in owned:
                del self.versions[vid]
            del self.pipelines[pipeline_id]

    def _version(self, version_id: str) -> dict:
        rec = self.versions.get(version_id)
        if rec is None:
            raise not_found("PipelineVersion", version_id)
        return rec

    def get_version(self, pipeline_id: str, version_id: str) -> dict:
        """One version; like KFP, the pipeline id of the path is not checked against the version's owner."""
        with self.lock:
            return views.version(self._version(version_id))

    def list_versions(self, pipeline_id: str, args) -> dict:
        """A page of one pipeline's versions."""
        with self.lock:
            self._pipeline(pipeline_id)
            owned = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
            return listing.list_page(VERSIONS, owned, args, views.version)

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Delete one version, whichever pipeline owns it (KFP only needs a non-empty pipeline id)."""
        if not pipeline_id:
            raise ApiError(
                3, f"Invalid input error: Failed to delete a pipeline version {version_id} due missing pipeline id"
            )
        with self.lock:
            self._version(version_id)
            del self.versions[version_id]

    # ---- experiments ---------------------------------------------------------------------
    def _need_namespace(self, namespace: str) -> None:
        if self.multi_user and not namespace:
            raise ApiError(
                3,
                "Failed to authorize the request: Invalid input error: An experiment cannot have an empty namespace in multi-user mode",
            )

    def _add_experiment(self, display_name: str, description: str, namespace: str = "") -> dict:
        self._need_namespace(namespace)
        if not display_name:
            raise ApiError(
                3,
                "Failed to create a new experiment: Invalid input error: Experiment name is empty. Please specify a valid experiment name",
            )
        message = too_long("Experiment", "Name", display_name, EXPERIMENT_NAME_MAX)
        if message and self.kfp_version.name_length_limits:
            raise ApiError(3, message)
        if any(
            _same(e["display_name"], display_name) and e["namespace"] == namespace for e in self.experiments.values()
        ):
            raise ApiError(
                6,
                f"Failed to create a new experiment: AlreadyExistsError: Experiment with name {display_name!r} already exists in namespace {namespace!r}",
            )
        rec: dict[str, Any] = {
            "experiment_id": _new_id(),
            "display_name": display_name,
            "description": description,
            "created_at": self._now(),
            "namespace": namespace,
            "storage_state": "AVAILABLE",
        }
        self.experiments[rec["experiment_id"]] = rec
        return rec

    def _default_experiment_id(self) -> str:
        if self.multi_user:
            raise ApiError(
                3,
                "Failed to create a run due to invalid experimentId and namespace combination: "
                "Invalid input error: Experiment id can not be empty in multi-user mode",
            )
        if self.experiments.get(getattr(self, "_default_id", "")) is None:
            self._default_id = self._add_experiment(
                DEFAULT_EXPERIMENT, "All runs created without specifying an experiment will be grouped here."
            )["experiment_id"]
        return self._default_id

    def _experiment(self, experiment_id: str) -> dict:
        rec = self.experiments.get(experiment_id)
        if rec is None:
            raise not_found("Experiment", experiment_id)
        return rec

    def create_experiment(self, display_name: str, description: str = "", namespace: str = "") -> dict:
        """Create an experiment (names are unique per namespace, ignoring case)."""
        with self.lock:
            return views.experiment(self._add_experiment(display_name, description, self.namespace(namespace)))

    def get_experiment(self, experiment_id: str) -> dict:
        """One experiment."""
        with self.lock:
            return views.experiment(self._experiment(experiment_id))

    def list_experiments(self, args) -> dict:
        """A page of the experiments of ?namespace= (required in multi-user mode)."""
        namespace = self.namespace(args.get("namespace"))
        self._need_namespace(namespace)
        with self.lock:
            recs = [e for e in self.experiments.values() if e["namespace"] == namespace]
            return listing.list_page(EXPERIMENTS, recs, args, views.experiment)

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment (its runs stay); the Default experiment cannot be deleted (409)."""
        with self.lock:
            if not self.multi_user and experiment_id == getattr(self, "_default_id", None):
                raise ApiError(
                    10, f"Failed to delete experiment {experiment_id}. The default experiment cannot be deleted"
                )
            self._experiment(experiment_id)
            del self.experiments[experiment_id]

    def set_experiment_storage(self, experiment_id: str, storage_state: str) -> None:
        """Archive or unarchive an experiment."""
        with self.lock:
            self._experiment(experiment_id)["storage_state"] = storage_state

    # ---- bulk seeding (control API) ---------------------------------------------------------
    def bulk_pipelines(self, count: int, prefix: str, spec: dict | None) -> list[dict]:
        """Create `count` pipelines named `<prefix>-NNNN`, each with its first version."""
        package = _seed_package(spec)
        out = []
        with self.lock:
            for i in range(count):
                rec = self._add_pipeline(f"{prefix}-{i:04d}", "", "")
                ver = self._add_version(rec["pipeline_id"], rec["name"], "", "", package)
                out.append(
                    {
                        "pipeline_id": rec["pipeline_id"],
                        "name": rec["name"],
                        "pipeline_version_id": ver["pipeline_version_id"],
                    }
                )
        return out

    def bulk_versions(self, pipeline_id: str, count: int, prefix: str, spec: dict | None) -> list[str]:
        """Add `count` versions named `<prefix>-NNNN` to a pipeline."""
        package = _seed_package(spec)
        with self.lock:
            return [
                self._add_version(pipeline_id, f"{prefix}-{i:04d}", "", "", package)["pipeline_version_id"]
                for i in range(count)
            ]
