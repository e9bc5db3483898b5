"""KfConnect's pipeline and version workflows (uploads with numbered versions, cascade delete)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from typing import IO, Any

from kfadapter.core import tempdirs
from kfadapter.core.errors import BadRequest, Conflict, KfpForbidden, KfpRejected, KfpUnavailable, NotFound
from kfadapter.kfconnect import forbidden
from kfadapter.kfconnect.experiments import ExperimentCalls
from kfadapter.kfconnect.filters import equals_filter
from kfadapter.kfconnect.transport import PAGE_SIZE, upload_result
from kfadapter.kfconnect.uploads import PackageUploads
from kfadapter.packages import parsing as pl


class PipelineCalls(ExperimentCalls):
    """Pipelines and their versions (kept to KFADAPTER_NAMESPACE and the shared ones: `scope`)."""

    # Set by create_app to the store's per-name lock; without one, KFP's 409 alone arbitrates.
    name_lock: Callable[[str], ContextManager[Any]] = staticmethod(lambda name: nullcontext())

    # ---- pipelines ----------------------------------------------------------------------------------------

    def find_pipeline(self, name: str) -> dict:
        """Return the pipeline with this exact name (not display-name filtering, which is not unique); on
        multi-user KFP the namespace's own, else the shared one of that name."""
        try:
            pipeline = self._pipeline_by_name(name)
        except NotFound:
            if not self.scoped():
                raise
            pipeline = self._shared_pipeline_by_name(name)
        found = pipeline.get("name") or pipeline.get("display_name")
        if found is not None and found != name:
            # KFP's database compares names ignoring case: "QOE" finds "qoe", which is another pipeline to the caller.
            raise NotFound(
                f"pipeline {name!r} not found (KFP has {found!r}, which differs in case)",
                code="pipeline_not_found",
                details={"pipeline_name": name, "kfp_pipeline_name": found},
            )
        return pipeline

    def _pipeline_by_name(self, name: str) -> dict:
        if "/" in name:
            # KFP routes on the decoded path: /pipelines/names/a%2Fb is /pipelines/names/a/b (a redirect or a
            # 404), so such a pipeline could be created but never found by its name again.
            raise BadRequest(
                f"invalid pipeline name {name[:80]!r}: KFP cannot look up a pipeline name containing '/'",
                code="invalid_name",
                details={"field": "pipeline name", "rule": "no '/'"},
            )
        api = self.client._pipelines_api
        try:
            return self._call(
                api.pipeline_service_get_pipeline_by_name, name, namespace=self._namespace, what=f"pipeline {name!r}"
            )
        except NotFound:
            raise NotFound(
                f"pipeline {name!r} not found", code="pipeline_not_found", details={"pipeline_name": name}
            ) from None

    def _shared_pipeline_by_name(self, name: str) -> dict:
        # KFP's by-name lookup with namespace "" searches every namespace; a list of namespace "" holds only the
        # shared pipelines (storage/pipeline_store.go). Names compare ignoring case there, as in the lookup.
        api = self.client._pipelines_api
        page = self._call(
            api.pipeline_service_list_pipelines,
            namespace="",
            page_size=PAGE_SIZE,
            filter=equals_filter("name", name),
            what=f"shared pipeline {name!r}",
        )
        found = page.get("pipelines") or []
        exact = [p for p in found if (p.get("name") or p.get("display_name")) == name]
        if not (exact or found):
            raise NotFound(f"pipeline {name!r} not found", code="pipeline_not_found", details={"pipeline_name": name})
        return (exact or found)[0]

    def get_pipeline(self, pipeline_id: str) -> dict:
        """Return one pipeline by id (on multi-user KFP: the namespace's own or a shared one, else 404)."""
        api = self.client._pipelines_api
        missing = NotFound(
            f"pipeline {pipeline_id!r} not found", code="pipeline_not_found", details={"pipeline_id": pipeline_id}
        )
        try:
            pipeline = self._call(api.pipeline_service_get_pipeline, pipeline_id, what=f"pipeline {pipeline_id!r}")
        except NotFound:
            raise missing from None
        except KfpForbidden as exc:
            raise self.foreign(exc, missing) from None
        return self.readable_pipeline(pipeline, missing)

    def list_pipelines(self) -> list[dict]:
        """Return every pipeline, oldest first; on multi-user KFP the namespace's and the shared ones (`namespace`
        "" marks a shared one), as the KFP UI shows them."""
        api = self.client._pipelines_api
        items = self._list_shared(
            api.pipeline_service_list_pipelines, "pipelines", namespace=self._namespace, what="list pipelines"
        )
        if self.scoped():
            shared = self._list_all(
                api.pipeline_service_list_pipelines, "pipelines", namespace="", what="list shared pipelines"
            )
            items += [p | {"namespace": ""} for p in shared]
        profile = self.server_profile()
        return sorted(
            (profile.pipeline_view(p) for p in items),
            key=lambda p: (p.get("created_at") or "", p.get("display_name") or ""),
        )

    def pipeline_names(self, pipeline_ids: Iterable[str]) -> dict[str, str | None]:
        """Return id -> display name for each pipeline id (None for a deleted one): one call per id."""
        names: dict[str, str | None] = {}
        for pid in pipeline_ids:
            try:
                names[pid] = self.get_pipeline(pid).get("display_name")
            except NotFound:
                names[pid] = None
        return names

    def list_versions(self, pipeline_id: str) -> list[dict]:
        """Return every version of a pipeline in numeric order ("name", "2", "3", ...)."""
        api = self.client._pipelines_api
        missing = NotFound(
            f"pipeline {pipeline_id!r} not found", code="pipeline_not_found", details={"pipeline_id": pipeline_id}
        )
        try:
            items = self._list_all(
                api.pipeline_service_list_pipeline_versions,
                "pipeline_versions",
                pipeline_id,
                what=f"versions of pipeline {pipeline_id!r}",
            )
        except NotFound:
            raise missing from None
        except KfpForbidden as exc:
            raise self.foreign(exc, missing) from None
        return sorted(items, key=pl.version_sort_key)

    def get_version(self, pipeline_id: str, version_id: str) -> dict:
        """Return one version of this pipeline, with its `pipeline_spec`; 404 when another pipeline owns it."""
        api = self.client._pipelines_api
        missing = NotFound(
            f"version {version_id!r} of pipeline {pipeline_id!r} not found",
            code="version_not_found",
            details={"pipeline_id": pipeline_id, "version_id": version_id},
        )
        try:
            version = self._call(
                api.pipeline_service_get_pipeline_version,
                pipeline_id,
                version_id,
                what=f"pipeline version {version_id!r}",
            )
        except NotFound:
            raise missing from None
        except KfpForbidden as exc:
            raise self.foreign(exc, missing) from None
        # KFP ignores the pipeline id of the path and answers any version: the owner is checked here.
        if version.get("pipeline_id") != pipeline_id:
            raise missing
        return version

    def version_by_id(self, version_id: str) -> dict:
        """Return a version by its id alone (a run's reference may lack the pipeline id; KFP ignores it)."""
        api = self.client._pipelines_api
        missing = NotFound(
            f"pipeline version {version_id!r} not found", code="version_not_found", details={"version_id": version_id}
        )
        try:
            return self._call(
                api.pipeline_service_get_pipeline_version, "-", version_id, what=f"pipeline version {version_id!r}"
            )
        except NotFound:
            raise missing from None
        except KfpForbidden as exc:
            raise self.foreign(exc, missing) from None

    def find_version(self, pipeline: dict, version_name: str | None) -> dict:
        """Return the pipeline's version with this name, or the newest when the name is empty or 'latest'."""
        versions = self.list_versions(pipeline["pipeline_id"])
        if not versions:
            raise NotFound(f"pipeline {pipeline.get('display_name')!r} has no versions", code="version_not_found")
        if version_name in (None, "", "latest"):
            return max(versions, key=lambda v: (v.get("created_at") or "", pl.version_sort_key(v)))
        for v in versions:
            if version_name in (v.get("display_name"), v.get("name")):
                return v
        raise NotFound(
            f"version {version_name!r} of pipeline {pipeline.get('display_name')!r} not found",
            code="version_not_found",
            details={"pipeline_name": pipeline.get("display_name"), "pipeline_version": version_name},
        )

    def version_spec(self, version: dict) -> dict | None:
        """Return a version's `pipeline_spec`, fetching the version when a listing left it out."""
        spec = version.get("pipeline_spec")
        if spec is None:
            spec = self.get_version(version["pipeline_id"], version["pipeline_version_id"]).get("pipeline_spec")
        return spec

    def upload(self, name: str, data: bytes | IO[bytes], package: pl.Package, description: str | None) -> dict:
        """Upload a package: create pipeline `name`, or add the next numbered version to it.

        A name that differs from an existing pipeline's only in case is a 409: KFP compares names ignoring case,
        so it would neither create the pipeline nor should the upload land in the other one."""
        # Checked here and fitted to the server's version: KFP < 2.17 answers a bad package with 500.
        profile = self.server_profile()
        package, data, _ = profile.fit_upload(package, data)
        try:
            return self._upload_fitted(name, data, package, description)
        except (KfpRejected, KfpUnavailable) as exc:
            # An unlabelled KFP refused a field only part of its version range knows: now we know it is older.
            refused = profile.refused_field(package, exc.message)
            if refused is None:
                raise
            self._server.narrow(refused[1])
            raise refused[0] from None

    def _upload_fitted(self, name: str, data: bytes | IO[bytes], package: pl.Package, description: str | None) -> dict:
        with tempdirs.package_file(data, package.suffix) as path:  # gone even after kill -9 (tempdirs)
            # One upload per name at a time picks the next number (in-process and store lock, see watch/locks.py).
            with self.name_lock(name):
                try:
                    pipeline = self._exact(name, self._pipeline_by_name(name))
                except NotFound:
                    created = self._upload_new_pipeline(name, path, description)
                    if created is not None:
                        return created
                    pipeline = self._exact(name, self._pipeline_by_name(name))  # another upload created it first
                return self._upload_next_version(pipeline, path, description)

    @staticmethod
    def _exact(name: str, pipeline: dict) -> dict:
        found = pipeline.get("name") or pipeline.get("display_name")
        if found is not None and found != name:
            raise Conflict(
                f"pipeline name {name!r} collides with the existing pipeline {found!r}: KFP compares "
                "pipeline names ignoring case",
                code="name_conflict",
                details={"pipeline_name": name, "kfp_pipeline_name": found},
            )
        return pipeline

    def _upload_new_pipeline(self, name: str, path: str, description: str | None) -> dict | None:
        api = PackageUploads(self._api_client)
        try:
            pipeline = self._call(
                api.upload_pipeline,
                path,
                name=name,
                display_name=name,
                description=description or None,
                namespace=self._namespace,
                what=f"upload of pipeline {name!r}",
                timeout=self._upload_timeout,
            )
        except Conflict:
            return None
        except KfpRejected as exc:
            raise self._upload_refused(exc, f"upload of pipeline {name!r}") from None
        versions = self.list_versions(pipeline["pipeline_id"])
        first = versions[0] if versions else {}
        return upload_result(
            pipeline["pipeline_id"],
            name,
            first.get("pipeline_version_id"),
            first.get("display_name") or name,
            created=True,
        )

    def _upload_next_version(self, pipeline: dict, path: str, description: str | None) -> dict:
        api = PackageUploads(self._api_client)
        pid = pipeline["pipeline_id"]
        names = [v.get("display_name") or v.get("name") for v in self.list_versions(pid)]
        number = pl.next_version_number(names)
        for _ in range(self.settings.upload_attempts):
            try:
                version = self._call(
                    api.upload_pipeline_version,
                    path,
                    name=str(number),
                    display_name=str(number),
                    pipelineid=pid,
                    description=description or None,
                    what=f"upload of version {number} of pipeline {pipeline.get('display_name')!r}",
                    timeout=self._upload_timeout,
                )
            except Conflict:
                number += 1  # a concurrent upload took this number: KFP's 409 is the arbiter
                continue
            except KfpRejected as exc:
                raise self._upload_refused(exc, f"upload of version {number} of pipeline {pid!r}") from None
            return upload_result(
                pid, pipeline.get("display_name"), version.get("pipeline_version_id"), str(number), created=False
            )
        raise Conflict(
            f"no free version number for pipeline {pipeline.get('display_name')!r} after "
            f"{self.settings.upload_attempts} attempts; retry the upload",
            code="version_conflict",
        )

    def _upload_refused(self, exc: KfpRejected, what: str) -> KfpRejected | KfpForbidden:
        """From 2.15 an upload refused for want of a grant is a bare 400 "Failed to create a pipeline (version)";
        the adapter's own upload is well-formed, so on multi-user KFP that answer means the grant is missing."""
        bare = exc.message.rsplit(": ", 1)[-1]
        if not self.scoped() or bare not in forbidden.BARE_UPLOAD_REFUSALS:
            return exc
        return forbidden.forbidden(what, str(self.settings.namespace), "create", "pipelines", None)

    def delete_pipeline(self, pipeline_id: str) -> dict:
        """Delete a pipeline and all its versions (cascade; versions first on backends without cascade)."""
        pipeline = self.get_pipeline(pipeline_id)
        self.writable_pipeline(pipeline, NotFound(f"pipeline {pipeline_id!r} not found", code="pipeline_not_found"))
        api = self.client._pipelines_api
        what = f"delete of pipeline {pipeline_id!r}"
        if not self.server_profile().supports_cascade:
            for version in self.list_versions(pipeline_id):
                self.delete_version(pipeline_id, version["pipeline_version_id"])
            self._call(api.pipeline_service_delete_pipeline, pipeline_id, what=what)
            return {"id": pipeline_id, "name": pipeline.get("display_name"), "status": "Deleted"}
        try:
            self._call(api.pipeline_service_delete_pipeline, pipeline_id, cascade=True, what=what)
        except KfpRejected as exc:
            if "version" not in exc.message.lower():
                raise
            # A server whose version is unknown may still be one without `cascade` (before 2.14).
            for version in self.list_versions(pipeline_id):
                self._delete_version(pipeline_id, version["pipeline_version_id"])
            self._call(api.pipeline_service_delete_pipeline, pipeline_id, what=what)
        return {"id": pipeline_id, "name": pipeline.get("display_name"), "status": "Deleted"}

    def delete_version(self, pipeline_id: str, version_id: str) -> dict:
        """Delete one version of this pipeline; 404 (and nothing deleted) when another pipeline owns it."""
        self.get_version(pipeline_id, version_id)  # KFP would delete it whatever pipeline the path names
        if self.scoped():  # the version's namespace is its pipeline's
            missing = NotFound(f"pipeline {pipeline_id!r} not found", code="pipeline_not_found")
            self.writable_pipeline(self.get_pipeline(pipeline_id), missing)
        return self._delete_version(pipeline_id, version_id)

    def _delete_version(self, pipeline_id: str, version_id: str) -> dict:
        api = self.client._pipelines_api
        try:
            self._call(
                api.pipeline_service_delete_pipeline_version,
                pipeline_id,
                version_id,
                what=f"delete of version {version_id!r}",
            )
        except NotFound:
            raise NotFound(
                f"version {version_id!r} of pipeline {pipeline_id!r} not found", code="version_not_found"
            ) from None
        return {"id": version_id, "pipeline_id": pipeline_id, "status": "Deleted"}
