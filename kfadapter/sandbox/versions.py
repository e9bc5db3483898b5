"""What differs between the KFP API server versions the sandbox plays (2.3, 2.5, 2.14, 2.17): one profile each.

Read from the tags 2.3.0, 2.5.0, 2.14.0 and 2.17.0 of kubeflow/pipelines (kfp-facts.md, last section). Every
version difference the sandbox reproduces is a field of `KfpVersion`; the rest of the sandbox asks `active()`
(the profile of the app serving the request) and never compares version numbers itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, has_app_context

DEFAULT = "2.17"
SCHEMA_VERSION = "2.1.0"  # the only IR schema every version accepts (template/v2_template.go)
# template/v2_template.go's check is unanchored (any lowercase letter or digit passes); common/utils.go's
# ValidatePipelineName, applied to every v2 upload, is the strict one.
_NAME_SOME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
IR_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")  # common/utils.go ValidatePipelineName
_SPEC_FIELDS = {
    "pipelineInfo",
    "pipeline_info",
    "deploymentSpec",
    "deployment_spec",
    "sdkVersion",
    "sdk_version",
    "schemaVersion",
    "schema_version",
    "components",
    "root",
    "defaultPipelineRoot",
    "default_pipeline_root",
}

# Fields of the pipeline spec's typed parts (camelCase, as compilers write them) that a server's pipeline-spec copy
# does not know: its strict protojson parse fails, so template.go's inferTemplateFormat finds no v2 spec and the
# upload answers "unknown template format". 2.3.0 pins the pipeline-spec module of 2023-10-27 (api
# v0.0.0-20231027040853-58ce09e07d03); 2.5.0 and 2.14.0 build their own api/ tree. `deploymentSpec` is a
# google.protobuf.Struct at every version, so newer fields inside it (resourceCpuLimit, resourceType,
# downloadToWorkspace, ...) are accepted, stored and dropped at run time (compiler/visitor.go decodes it with
# AllowUnknownFields).
_NEWER_THAN_2_3 = frozenset(
    {
        "singlePlatformSpecs",  # ComponentSpec
        "cacheKey",  # PipelineTaskSpec.CachingOptions
    }
)
_NEWER_THAN_2_14 = frozenset(
    {
        "taskConfigPassthroughs",  # ComponentSpec (2.15)
        "literals",  # ComponentInputsSpec.ParameterSpec (2.16)
        "TASK_CONFIG",  # a ParameterType enum value (2.15)
    }
)
# Values that are Structs or free-form data: their keys are not spec fields.
_STRUCT_KEYS = frozenset({"deploymentSpec", "deployment_spec", "defaultValue", "constant", "metadata", "runtimeValue"})
UNKNOWN_FORMAT = "unknown template format"  # template/template.go New(): no v1 workflow and no parsable v2 spec
# The platform spec's SinglePlatformSpec of the pipeline-spec copy 2.3 pins knows only deploymentSpec; a
# `platforms.kubernetes` document with more fails IsPlatformSpecWithKubernetesConfig and is skipped silently.
_PLATFORM_FIELDS_2_3 = frozenset({"deploymentSpec", "deployment_spec"})


@dataclass(frozen=True)
class ObjectStore:
    """The object store a KFP version ships for v2 artifacts (the sandbox serves it under /_s3/)."""

    kind: str  # "minio" or "seaweedfs"
    service: str  # where it runs in a cluster
    server_header: str  # what its S3 answers carry in `Server`


MINIO = ObjectStore("minio", "minio-service.kubeflow:9000", "MinIO")
SEAWEEDFS = ObjectStore("seaweedfs", "seaweedfs.kubeflow:9000", "SeaweedFS")


@dataclass(frozen=True)
class KfpVersion:
    """One KFP API server version's behaviour where versions differ."""

    tag: str  # healthz `tag_name`
    error_has_error_field: bool  # grpc-gateway v1 bodies {error, code, message, details} (<= 2.5)
    pipeline_name_field: bool  # Pipeline / PipelineVersion carry `name` beside display_name (>= 2.14)
    upload_display_name: bool  # the upload endpoints read ?display_name= (>= 2.14)
    cascade: bool  # DELETE /pipelines/{id}?cascade=true (>= 2.14)
    invalid_ir_status: int  # the upload endpoints' status for a package that fails the IR checks (400 on 2.17)
    unknown_ir_fields: frozenset[str]  # spec fields newer than the server's pipeline-spec copy: refused
    name_length_limits: bool  # pipeline <= 128, version <= 127 characters (>= 2.15)
    read_unrecorded_status: int  # :read on a run without a recorded workflow: 400 (<= 2.14), 500 after
    read_streaming: bool  # :read is the streaming handler with text/plain errors (>= 2.15)
    executor_logs: bool  # every v2 task has an `executor-logs` output artifact (>= 2.5)
    uri_salt: bool  # v2 artifact URIs carry a random segment before the output name (>= 2.5)
    healthz_pipeline_store: bool  # v2beta1 healthz has `pipeline_store` (>= 2.14)
    object_store: ObjectStore = field(default=MINIO)
    # Multi-user authorization (authz_routes): ResourceAttributes print FieldSelector / LabelSelector from
    # k8s.io/api 0.31 (2.14); writes on shared pipelines are reviewed in KFP's own namespace (2.17); an
    # unauthorized upload's 400 says why up to 2.14 and only "Failed to create a pipeline (version)" from 2.15.
    sar_selectors: bool = False
    shared_writes_checked: bool = False
    upload_authz_reason: bool = True
    # The official image's healthz `tag_name`: its Dockerfile's TAG_NAME build argument defaults to "unknown"
    # and the release builds of 2.5.0-2.15.x did not pass it (kfp-facts.md, healthz).
    labelled: bool = True
    # grpc-gateway v1 (go.mod v1.16.0, runtime/marshal_jsonpb.go allowUnknownFields = true) drops unknown
    # request-body fields (<= 2.5); from 2.14 common.CustomMarshaler sets DiscardUnknown: false (400).
    lenient_bodies: bool = False
    # The driver parses a task's kfp-kubernetes executor config strictly (2.3: cmd/driver/main.go
    # jsonpb.UnmarshalString); from 2.5 util.UnmarshalString ignores unknown fields (sandbox/driver.py).
    strict_k8s_config: bool = False

    @property
    def name(self) -> str:
        """`2.3`, `2.17`, ... (what --kfp-version takes)."""
        return ".".join(self.tag.split(".")[:2])

    @property
    def tag_name(self) -> str:
        """What the official image's healthz says in `tag_name` ("unknown" on 2.5.0-2.15.x)."""
        return self.tag if self.labelled else "unknown"

    def healthz(self, api: str = "v2beta1", tag_name: str | None = None) -> dict:
        """The API server's healthz answer (main.go), shaped as this version writes it."""
        body: dict[str, Any] = {"commit_sha": "unknown", "tag_name": tag_name or self.tag_name, "multi_user": False}
        if self.healthz_pipeline_store and api == "v2beta1":
            body["pipeline_store"] = "database"
        return body

    def ui_healthz(self, api_answer: dict | None, stats: dict) -> dict:
        """ml-pipeline-ui's own healthz (frontend/server/handlers/healthz.ts): `stats` is the handler's object,
        which it keeps between calls; `api_answer` is the API server's healthz, None when it did not answer."""
        if api_answer is None:
            stats["apiServerReady"] = False  # the keys of the last good answer stay, as in healthz.ts
            return dict(stats)
        stats["apiServerReady"] = True
        stats["apiServerCommitHash"] = api_answer.get("commit_sha")
        stats["apiServerTagName"] = api_answer.get("tag_name")
        stats["apiServerMultiUser"] = api_answer.get("multi_user")
        stats["multi_user"] = api_answer.get("multi_user")
        if self.healthz_pipeline_store:  # HealthzStats.pipelineStore exists from 2.14
            stats["pipelineStore"] = api_answer.get("pipeline_store")
        return {k: v for k, v in stats.items() if v is not None}  # JSON.stringify leaves undefined out

    def error_body(self, code: int, message: str) -> dict:
        """A grpc-gateway error body."""
        # KFP's errors carry their status once more as a google.rpc.Status detail (util/error.go).
        details = [{"@type": "type.googleapis.com/google.rpc.Status", "code": code, "message": message}]
        if self.error_has_error_field:
            return {"error": message, "code": code, "message": message, "details": details}
        return {"code": code, "message": message, "details": details}

    def resource_view(self, doc: dict) -> dict:
        """A Pipeline / PipelineVersion as served: without `name` before 2.14 (only display_name existed)."""
        if not self.pipeline_name_field:
            doc.pop("name", None)
        return doc

    def body_fields(self, allowed: set[str]) -> set[str]:
        """Request-body fields of Pipeline / PipelineVersion this version's proto knows (unknown ones are 400)."""
        return allowed if self.pipeline_name_field else allowed - {"name"}

    def upload_display_name_arg(self, args: Any) -> str:
        """The upload's ?display_name= as this version reads it ("" where it is ignored)."""
        return (args.get("display_name") or "") if self.upload_display_name else ""

    def cascade_arg(self, args: Any) -> bool:
        """Whether a pipeline delete cascades to its versions (?cascade= does not exist before 2.14)."""
        return self.cascade and args.get("cascade", "").lower() in ("true", "1")

    def unknown_field_in(self, ir: dict) -> str | None:
        """The first typed spec field (or enum value) this version's pipeline-spec copy does not know, else None."""
        if not self.unknown_ir_fields:
            return None
        for key, value in _walk(ir):
            if key in self.unknown_ir_fields:
                return key
            if key == "parameterType" and value in self.unknown_ir_fields:
                return str(value)
        return None

    def ir_problem(self, ir: dict) -> str | None:
        """Why this version's upload refuses a v2 pipeline spec (template.go, NewV2SpecTemplate, ValidatePipelineName)."""
        # inferTemplateFormat: a document is a v2 spec only if the strict protojson parse succeeds and it has a
        # pipeline name and a root; anything else is "unknown template format".
        name = str((ir.get("pipelineInfo") or ir.get("pipeline_info") or {}).get("name") or "")
        parsed = all(key in _SPEC_FIELDS for key in ir) and self.unknown_field_in(ir) is None
        if not parsed or not name or not isinstance(ir.get("root"), dict):
            return UNKNOWN_FORMAT
        version = ir.get("schemaVersion", ir.get("schema_version"))
        if version != SCHEMA_VERSION:
            return (
                f"KFP only supports schema version {SCHEMA_VERSION}, but the pipeline spec has version {version or ''}"
            )
        if not _NAME_SOME.search(name):
            return (
                "invalid v2 pipeline spec: name should consist of lower case alphanumeric characters, '-' or "
                "'.', and must start and end with an alphanumeric character"
            )
        if len(name) > 128:
            return "pipeline's name must contain no more than 128 characters"
        if not IR_NAME_PATTERN.match(name):
            return (
                "pipeline's name must contain only lowercase alphanumeric characters or '-' and must start "
                "with alphanumeric characters"
            )
        return None

    def kept_platform_spec(self, platform: dict | None) -> dict | None:
        """The platform spec as this version stores it: 2.3 skips a document its SinglePlatformSpec cannot parse."""
        if platform is None or not self.strict_k8s_config:
            return platform
        kubernetes = (platform.get("platforms") or {}).get("kubernetes")
        if isinstance(kubernetes, dict) and not set(kubernetes) <= _PLATFORM_FIELDS_2_3:
            return None
        return platform

    def artifact_uri(self, pipeline: str, run_id: str, task: str, output: str, salt: str) -> str:
        """A v2 output artifact's URI (driver.go): a random segment before the output name from 2.5."""
        parts = [pipeline, run_id, task] + ([salt] if self.uri_salt else []) + [output]
        return "minio://mlpipeline/v2/artifacts/" + "/".join(parts)


def _walk(doc: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield str(key), value
            if key not in _STRUCT_KEYS:
                yield from _walk(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _walk(item)


PROFILES = {
    "2.3": KfpVersion(
        "2.3.0",
        True,
        False,
        False,
        False,
        500,
        _NEWER_THAN_2_3 | _NEWER_THAN_2_14,
        False,
        400,
        False,
        False,
        False,
        False,
        MINIO,
        lenient_bodies=True,
        strict_k8s_config=True,
    ),
    "2.5": KfpVersion(
        "2.5.0",
        True,
        False,
        False,
        False,
        500,
        _NEWER_THAN_2_14,
        False,
        400,
        False,
        True,
        True,
        False,
        MINIO,
        labelled=False,
        lenient_bodies=True,
    ),
    "2.14": KfpVersion(
        "2.14.0",
        False,
        True,
        True,
        True,
        500,
        _NEWER_THAN_2_14,
        False,
        400,
        False,
        True,
        True,
        True,
        MINIO,
        sar_selectors=True,
        labelled=False,
    ),
    "2.17": KfpVersion(
        "2.17.0",
        False,
        True,
        True,
        True,
        400,
        frozenset(),
        True,
        500,
        True,
        True,
        True,
        True,
        SEAWEEDFS,
        sar_selectors=True,
        shared_writes_checked=True,
        upload_authz_reason=False,
    ),
}


def profile(name: str | None) -> KfpVersion:
    """The profile for `2.3`, `2.5`, `2.14` or `2.17` (also `2.3.0` ...; None: the default, 2.17)."""
    key = ".".join((name or DEFAULT).strip().split(".")[:2])
    if key not in PROFILES:
        raise ValueError(f"unsupported KFP version {name!r}: one of {', '.join(PROFILES)}")
    return PROFILES[key]


def active() -> KfpVersion:
    """The profile of the sandbox app handling this request (the default outside a request)."""
    if has_app_context():
        state = current_app.extensions.get("sandbox")
        return getattr(state, "kfp_version", PROFILES[DEFAULT])
    return PROFILES[DEFAULT]
