"""Open a v1 (Argo) run's artifact: through KFP's `:read`, or from the object store where KFP refuses every `:read`.

Multi-user KFP 2.15+ answers each `:read` with 403 (its streaming handler never sees the caller's identity:
server/run_artifact_server.go). There the adapter does what the handler would: it finds the artifact's S3 key in
the run's workflow (node status `outputs.artifacts[].s3.key`, `argo.artifact_location`) and reads that object
from KFADAPTER_OBJECT_STORE_ENDPOINT, in the artifact's own bucket or KFP's default bucket `mlpipeline`
(config.json ObjectStoreConfig.BucketName, also the bucket of KFP's Argo artifact repository).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfadapter.core import archive
from kfadapter.core.errors import NotFound
from kfadapter.outputs import argo
from kfadapter.outputs.objectstore import ObjectStore

DEFAULT_BUCKET = "mlpipeline"


class V1Artifacts:
    """Open v1 artifacts as decoded objects (`archive.Decoded`) with the function that frees their source."""

    def __init__(self, kf: Any, objects: ObjectStore | None, limits: archive.Limits) -> None:
        self.kf, self.objects, self.limits = kf, objects, limits

    def open(
        self, run_id: str, node_id: str, name: str, workflow: dict | None = None
    ) -> tuple[archive.Decoded, Callable[[], None]]:
        """The artifact's bytes, decoded (gunzip, tar detection); NotFound when it does not exist."""
        if not self.kf.server_profile().read_refused:
            stream = self.kf.read_artifact(run_id, node_id, name)
            return archive.open_read_answer(stream, self.limits), stream.close
        what = f"artifact {name!r} of node {node_id!r} in run {run_id!r}"
        ids = {"run_id": run_id, "node_id": node_id, "artifact": name}
        workflow = workflow if workflow is not None else self.kf.workflow(run_id)
        location = argo.artifact_location(workflow, node_id, name) if workflow else None
        if location is None:
            raise NotFound(f"{what} not found", code="artifact_not_found", details=ids)
        if self.objects is None:
            raise NotFound(
                f"{what}: content unavailable: multi-user KFP 2.15+ refuses every :read, so v1 artifacts are read from "
                "the object store, and none is configured (KFADAPTER_OBJECT_STORE_ENDPOINT)",
                code="artifact_unavailable",
                details=ids,
            )
        bucket, key = location
        obj = self.objects.open(f"s3://{bucket or DEFAULT_BUCKET}/{key}")
        return archive.open_object(obj, self.limits), obj.close
