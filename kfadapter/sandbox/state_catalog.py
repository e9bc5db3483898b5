"""The sandbox state's pipelines, pipeline versions and experiments."""

from __future__ import annotations

from . import listing, packages, views
from .errors import ApiError, not_found
from .state_base import (DEFAULT_EXPERIMENT, EXPERIMENTS, PIPELINES, VERSIONS, StateBase, _new_id,
                         _seed_package)


class CatalogState(StateBase):
    """Pipelines, versions and experiments."""

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

