"""The KFP server's version and everything that differs by it: the one place the adapter reads differences from.

The version comes from healthz's `tag_name`, fetched once on first need (never at start-up) and cached; a failed
healthz is not cached, so the next call asks again. A tag that is not a version (`unknown`, `dev`) counts as
the newest KFP. Differences (kfp-facts.md, last section):

| what | before | from |
|---|---|---|
| pipeline-spec fields its strict parse knows (resourceCpuLimit ... 2.4, literals 2.16) | `_UNKNOWN_IR_FIELDS` | |
| `name` on Pipeline / PipelineVersion (else only `display_name`) | | 2.14 |
| `?cascade=true` on pipeline delete | | 2.14 |
| `:read` status of a run whose workflow is not recorded yet | 400 (<= 2.14) | 500 (2.15) |
| `executor-logs` output artifact per v2 task (the task's log) | | 2.5 |
| `:read` in multi-user mode (always 403: its handler sees no identity) | works | refused (2.15) |
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import yaml

from kfadapter.core.errors import AdapterError
from kfadapter.packages import check as package_check
from kfadapter.packages import parsing as pl

log = logging.getLogger(__name__)

LOG_ARTIFACT = "executor-logs"  # KFP >= 2.5: each v2 task's log, as an output artifact
_TAG = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
_FROM_2_4 = frozenset(
    {
        "resourceCpuLimit",
        "resourceMemoryLimit",
        "resourceCpuRequest",
        "resourceMemoryRequest",
        "resourceType",
        "resourceCount",
        "singlePlatformSpecs",
        "cacheKey",
    }
)
_FROM_2_15 = frozenset({"taskConfigPassthroughs", "downloadToWorkspace", "TASK_CONFIG"})
_FROM_2_16 = frozenset({"literals"})
# Newest server version that does NOT know the fields (2.3.0 pins the pipeline-spec of 2023-10-27).
_UNKNOWN_IR_FIELDS = (
    ((2, 3, 99), _FROM_2_4 | _FROM_2_15 | _FROM_2_16),
    ((2, 14, 99), _FROM_2_15 | _FROM_2_16),
    ((2, 15, 99), _FROM_2_16),
)


@dataclass(frozen=True)
class ServerProfile:
    """One KFP server's version and the behaviour the adapter adapts to."""

    tag: str | None  # healthz tag_name as KFP gave it
    version: tuple[int, int, int] | None  # None: unknown, treated as the newest
    multi_user: bool = False  # healthz multi_user (apiServerMultiUser through the UI proxy)

    @classmethod
    def from_healthz(cls, health: dict) -> ServerProfile:
        """Build the profile from KFP's healthz answer."""
        tag = health.get("tag_name")
        match = _TAG.match(tag) if isinstance(tag, str) else None
        version = tuple(int(g or 0) for g in match.groups()) if match else None
        multi_user = health.get("multi_user") is True or health.get("apiServerMultiUser") is True
        return cls(tag if isinstance(tag, str) else None, version, multi_user)  # type: ignore[arg-type]

    def _before(self, *version: int) -> bool:
        return self.version is not None and self.version < version

    @property
    def label(self) -> str:
        """`KFP 2.3.0` (or `KFP (version unknown)`)."""
        return f"KFP {self.tag}" if self.version is not None else "KFP (version unknown)"

    @property
    def unknown_ir_fields(self) -> frozenset[str]:
        """Pipeline-spec fields (and enum values) this server's strict parse refuses."""
        for newest, fields in _UNKNOWN_IR_FIELDS:
            if self.version is not None and self.version <= newest:
                return fields
        return frozenset()

    @property
    def has_pipeline_name(self) -> bool:
        """Whether Pipeline / PipelineVersion carry `name` (2.14+)."""
        return not self._before(2, 14)

    @property
    def supports_cascade(self) -> bool:
        """Whether DELETE /pipelines/{id}?cascade=true deletes the versions too (2.14+)."""
        return not self._before(2, 14)

    @property
    def read_unrecorded_status(self) -> int:
        """The `:read` status meaning "KFP has not recorded this run's workflow yet"."""
        return 400 if self._before(2, 15) else 500

    @property
    def read_refused(self) -> bool:
        """Whether every `:read` is refused: multi-user 2.15+, whose streaming handler never sees the caller."""
        return self.multi_user and not self._before(2, 15)

    @property
    def has_executor_logs(self) -> bool:
        """Whether each v2 task has the `executor-logs` output artifact (2.5+)."""
        return not self._before(2, 5)

    # ---- applying the differences ------------------------------------------------------------------------

    def fit_upload(self, package: pl.Package, data: bytes) -> tuple[pl.Package, bytes, list[str]]:
        """Make a (checked) package fit this server; returns (package, bytes to send, fields left out)."""
        if package.kind != pl.V2:
            return package, data, []
        wrapped = isinstance(package.spec.get("pipeline_spec"), dict)
        ir = package_check.ir_of(package)
        fitted, dropped = package_check.fit_ir(ir, self.unknown_ir_fields, self.label)
        if not dropped:
            return package, data, []
        docs = [fitted, package.spec["platform_spec"]] if wrapped else [fitted]
        spec = {"pipeline_spec": fitted, "platform_spec": package.spec["platform_spec"]} if wrapped else fitted
        log.info("upload to %s: left out %s (an older field holds the same value)", self.label, ", ".join(dropped))
        text = yaml.safe_dump_all(docs, sort_keys=False).encode("utf-8")
        return dataclasses.replace(package, spec=spec, container="yaml"), text, dropped

    def pipeline_view(self, pipeline: dict) -> dict:
        """A Pipeline / PipelineVersion with `name` filled from `display_name` where the server has no `name`."""
        if not pipeline.get("name"):
            return pipeline | {"name": pipeline.get("display_name")}
        return pipeline

    @staticmethod
    def is_log_artifact(name: str) -> bool:
        """Whether a v2 output artifact is the task's log rather than something the component produced."""
        return name == LOG_ARTIFACT or name.startswith(LOG_ARTIFACT + "-")  # 2.17: executor-logs-<retry>


def encode_filter(filter_json: str) -> str:
    """Encode a list filter for KFP, which URL-decodes the filter once more than HTTP does (every version)."""
    return quote(filter_json, safe="")


class ServerInfo:
    """Learn the server's profile from healthz once, lazily; a failure is retried on the next call."""

    def __init__(self, fetch: Callable[[], dict]) -> None:
        self._fetch = fetch
        self._profile: ServerProfile | None = None

    def get(self) -> ServerProfile:
        """The server's profile; while healthz fails, the newest KFP is assumed (and asked again next time)."""
        if self._profile is None:
            try:
                self.learn(self._fetch())
            except AdapterError as exc:
                log.warning("KFP version unknown (healthz failed: %s); assuming the newest", exc.message)
                return ServerProfile(None, None)
        return self._profile  # type: ignore[return-value]

    def learn(self, health: dict) -> ServerProfile:
        """Remember the profile from a healthz answer (readiness calls pass theirs here too)."""
        self._profile = ServerProfile.from_healthz(health)
        return self._profile
