"""The KFP server's version and everything that differs by it: the one place the adapter reads differences from.

The adapter reaches KFP through one of two doors: the API server itself (`ml-pipeline:8888`, healthz answers
`tag_name`) or the UI proxy (`ml-pipeline-ui/pipeline`, O-RAN's default: healthz is answered by the UI itself
with `apiServerTagName` and `apiServerReady`, no `tag_name`, 200 even while the API server is down;
frontend/server/handlers/healthz.ts). The version comes from `tag_name` or `apiServerTagName`, fetched once on
first need (never at start-up) and cached; a failed healthz, or a UI answer that never saw the API server, is not
cached, so the next call asks again. `KFADAPTER_KFP_VERSION` pins it (no healthz is needed for it then).

The official images 2.5.0-2.15.x say `tag_name: "unknown"` (no TAG_NAME build argument). For them the adapter
keeps a range, narrowed by the server's own answers: "unknown" means 2.5-2.15; a `pipeline_store` (API server) or
`pipelineStore` (UI, >= 2.14) key in healthz means >= 2.14, its absence < 2.14; an upload refused with "unknown
template format" for a field the upper end knows means the server is older than that field. Every difference
below is the same across 2.5-2.13; across 2.14-2.15 the adapter sends what 2.15 takes and reads either `:read`
status. A tag that is not a version and no range (`dev`) counts as the newest KFP.

| what | before | from |
|---|---|---|
| typed pipeline-spec fields its strict parse knows (singlePlatformSpecs 2.4, literals 2.16) | `_UNKNOWN_IR_FIELDS` | |
| resource limits applied only from the old numeric deploymentSpec fields | 2.4 | |
| kfp-kubernetes executor config parsed strictly by the driver (2.3's kubernetes_platform) | 2.4.1 | |
| platform spec with more than `deploymentSpec` skipped at upload | 2.4 | |
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

from kfadapter.core.errors import AdapterError, BadRequest
from kfadapter.packages import check as package_check
from kfadapter.packages import parsing as pl
from kfadapter.packages import platform_fit

log = logging.getLogger(__name__)

Version = tuple[int, int, int]
LOG_ARTIFACT = "executor-logs"  # KFP >= 2.5: each v2 task's log, as an output artifact
API_SERVER, UI_PROXY = "api_server", "ui_proxy"
_TAG = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
# Typed parts only: inside deploymentSpec (a Struct) every version accepts newer fields (packages/check.py).
_FROM_2_4 = frozenset({"singlePlatformSpecs", "cacheKey"})
_FROM_2_15 = frozenset({"taskConfigPassthroughs", "TASK_CONFIG"})
_FROM_2_16 = frozenset({"literals"})
# Newest server version that does NOT know the fields (2.3.0 pins the pipeline-spec of 2023-10-27).
_UNKNOWN_IR_FIELDS = (
    ((2, 3, 99), _FROM_2_4 | _FROM_2_15 | _FROM_2_16),
    ((2, 14, 99), _FROM_2_15 | _FROM_2_16),
    ((2, 15, 99), _FROM_2_16),
)
# What the official unlabelled images can be (kfp-facts.md, healthz), split by healthz's pipeline_store key.
_UNLABELLED = ((2, 5, 0), (2, 13, 99))
_UNLABELLED_WITH_STORE = ((2, 14, 0), (2, 15, 99))


def _unknown_fields(version: Version | None) -> frozenset[str]:
    for newest, fields in _UNKNOWN_IR_FIELDS:
        if version is not None and version <= newest:
            return fields
    return frozenset()


def parse_version(text: object) -> Version | None:
    """(2, 3, 0) from `2.3.0`, `v2.3`, `2.5.0-rc.1`; None for anything else (`unknown`, `dev`, None)."""
    match = _TAG.match(text) if isinstance(text, str) else None
    return tuple(int(g or 0) for g in match.groups()) if match else None  # type: ignore[return-value]


@dataclass(frozen=True)
class ServerProfile:
    """One KFP server's version (exact, or the range its answers allow) and the behaviour the adapter adapts to."""

    tag: str | None  # tag_name / apiServerTagName as KFP gave it
    version: Version | None  # exact version; None: a range (low, high) or unknown (treated as the newest)
    low: Version | None = None  # the oldest version the server's answers allow
    high: Version | None = None  # the newest (None: no upper bound)
    door: str = API_SERVER  # API_SERVER or UI_PROXY
    source: str = "tag_name"  # where the version came from: tag_name, apiServerTagName, answers, a setting, none
    multi_user: bool = False  # healthz multi_user (apiServerMultiUser through the UI proxy)

    @classmethod
    def from_healthz(cls, health: dict, pinned: str | None = None) -> ServerProfile:
        """Build the profile from KFP's healthz answer (either door); `pinned` (KFADAPTER_KFP_VERSION) wins."""
        door = UI_PROXY if "apiServerReady" in health else API_SERVER
        mu = health.get("multi_user") is True or health.get("apiServerMultiUser") is True
        key = "apiServerTagName" if door == UI_PROXY else "tag_name"
        tag = health.get(key) if isinstance(health.get(key), str) else None
        if pinned is not None:
            exact = parse_version(pinned)
            return cls(tag, exact, exact, exact, door, "KFADAPTER_KFP_VERSION", mu)
        exact = parse_version(tag)
        if exact is not None:
            return cls(tag, exact, exact, exact, door, key, mu)
        if tag is None:  # the UI has not reached the API server yet: nothing learnt (an API server without
            # tag_name is a build of its own, counted as the newest)
            return cls(None, None, door=door, source="none" if door == UI_PROXY else key, multi_user=mu)
        if tag.strip().lower() not in ("unknown", ""):
            return cls(
                tag, None, door=door, source=key, multi_user=mu
            )  # a build of its own (`dev`): counted as the newest
        # An unlabelled image: healthz's pipeline_store (API server) / pipelineStore (UI) exists from 2.14.
        low, high = _UNLABELLED_WITH_STORE if {"pipeline_store", "pipelineStore"} & health.keys() else _UNLABELLED
        return cls(tag, None, low, high, door, "answers", mu)

    @property
    def known(self) -> bool:
        """Whether healthz (or the setting) told anything about the version."""
        return self.source != "none"

    def _before(self, *version: int) -> bool:
        """Certainly older than `version` (an unknown server counts as the newest)."""
        return self.high is not None and self.high < version

    def _from(self, *version: int) -> bool:
        """Certainly at least `version`."""
        return self.low is None or self.low >= version

    @property
    def label(self) -> str:
        """`KFP 2.3.0`, `KFP 2.5-2.13 (unlabelled)` or `KFP (version unknown)`."""
        if self.version is not None:
            return (
                f"KFP {self.tag}" if self.source in ("tag_name", "apiServerTagName") else f"KFP {_text(self.version)}"
            )
        if self.low is not None and self.high is not None:
            return f"KFP {_range(self.low, self.high)} (unlabelled)"
        return "KFP (version unknown)"

    @property
    def version_text(self) -> str | None:
        """`2.3.0`, `2.5-2.13` or None."""
        if self.version is not None:
            return ".".join(map(str, self.version))
        if self.low is not None and self.high is not None:
            return _range(self.low, self.high)
        return None

    def narrowed(self, high: Version) -> ServerProfile:
        """The same server, now known to be no newer than `high` (learnt from an answer)."""
        if self.version is not None or (self.high is not None and self.high <= high):
            return self
        low = self.low if self.low is not None and self.low <= high else high
        return dataclasses.replace(self, low=low, high=high, source="answers")

    @property
    def unknown_ir_fields(self) -> frozenset[str]:
        """Pipeline-spec fields (and enum values) this server's strict parse refuses, whatever its version."""
        return _unknown_fields(self.high)

    @property
    def maybe_unknown_ir_fields(self) -> frozenset[str]:
        """Fields the oldest version of the range refuses and the newest takes: sent, and KFP's answer tells."""
        return _unknown_fields(self.low) - _unknown_fields(self.high) if self.low is not None else frozenset()

    @property
    def ignores_new_resource_fields(self) -> bool:
        """Whether only the old numeric resource fields are applied (< 2.4: v2/driver/driver.go)."""
        return self._before(2, 4)

    @property
    def strict_executor_config(self) -> bool:
        """Whether the driver refuses kfp-kubernetes fields of newer than 2.3's kubernetes_platform (< 2.4.1)."""
        return self._before(2, 4, 1)

    @property
    def old_platform_spec(self) -> bool:
        """Whether a platform spec with more than deploymentSpec is skipped at upload (< 2.4)."""
        return self._before(2, 4)

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
        """The `:read` status meaning "KFP has not recorded this run's workflow yet" (the newest's, in a range)."""
        return 400 if self._before(2, 15) else 500

    @property
    def read_refused(self) -> bool:
        """Whether every `:read` is refused: multi-user 2.15+, whose streaming handler never sees the caller."""
        return self.multi_user and not self._before(2, 15)

    @property
    def read_unrecorded_statuses(self) -> frozenset[int]:
        """Every `:read` status that may mean so on this server (both across 2.14-2.15)."""
        statuses = set()
        if not self._from(2, 15):
            statuses.add(400)
        if not self._before(2, 15):
            statuses.add(500)
        return frozenset(statuses)

    @property
    def has_executor_logs(self) -> bool:
        """Whether each v2 task has the `executor-logs` output artifact (2.5+)."""
        return not self._before(2, 5)

    # ---- applying the differences ------------------------------------------------------------------------

    def fit_upload(self, package: pl.Package, data: bytes) -> tuple[pl.Package, bytes, list[str]]:
        """Make a (checked) package fit this server; returns (package, bytes to send, what was changed)."""
        if package.kind != pl.V2:
            return package, data, []
        wrapped = isinstance(package.spec.get("pipeline_spec"), dict)
        ir = package_check.ir_of(package)
        fitted, changed = package_check.fit_ir(ir, self.unknown_ir_fields, self.label, self.ignores_new_resource_fields)
        platform = package.spec.get("platform_spec") if wrapped else None
        if isinstance(platform, dict):
            platform, dropped = platform_fit.fit_platform(
                platform, self.label, self.strict_executor_config, self.old_platform_spec
            )
            changed += dropped
        if not changed:
            return package, data, []
        docs = [fitted, platform] if wrapped else [fitted]
        spec = {"pipeline_spec": fitted, "platform_spec": platform} if wrapped else fitted
        log.info("upload to %s: fitted %s", self.label, ", ".join(changed))
        text = yaml.safe_dump_all(docs, sort_keys=False).encode("utf-8")
        return dataclasses.replace(package, spec=spec, container="yaml"), text, changed

    def refused_field(self, package: pl.Package, kfp_message: str) -> tuple[BadRequest, Version] | None:
        """For an upload KFP refused as "unknown template format": the 400 naming the field of the package this
        range's older versions do not know, and the newest version the server can then be; else None."""
        if "unknown template format" not in kfp_message or package.kind != pl.V2:
            return None
        for field, first in _first_versions(self.maybe_unknown_ir_fields):
            server = f"{self.label}, older than {_text(first)} by its answer"
            try:
                package_check.fit_ir(package_check.ir_of(package), frozenset({field}), server)
            except BadRequest as exc:
                return exc, (first[0], first[1] - 1, 99)
        return None

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


def _text(version: Version) -> str:
    return ".".join(map(str, version[:2] if version[2] in (0, 99) else version))


def _range(low: Version, high: Version) -> str:
    return _text(low) if _text(low) == _text(high) else f"{_text(low)}-{_text(high)}"


def _first_versions(fields: frozenset[str]) -> list[tuple[str, Version]]:
    """(field, the first version that knows it) for each of `fields`."""
    out = []
    for field in sorted(fields):
        newest = max(v for v, known in _UNKNOWN_IR_FIELDS if field in known)
        out.append((field, (newest[0], newest[1] + 1, 0)))
    return out


class ServerInfo:
    """Learn the server's profile from healthz once, lazily; a failure is retried on the next call."""

    def __init__(self, fetch: Callable[[], dict], pinned: str | None = None) -> None:
        self._fetch = fetch
        self._pinned = pinned
        self._profile: ServerProfile | None = None
        self._high: Version | None = None  # learnt from answers: the server is no newer than this

    def get(self) -> ServerProfile:
        """The server's profile; while healthz fails, the newest KFP is assumed (and asked again next time)."""
        if self._profile is None and self._pinned is not None:
            return ServerProfile.from_healthz({}, self._pinned)  # no healthz needed for the version
        if self._profile is None:
            try:
                self.learn(self._fetch())
            except AdapterError as exc:
                log.warning("KFP version unknown (healthz failed: %s); assuming the newest", exc.message)
                return ServerProfile(None, None, source="none")
            if self._profile is None:
                log.warning("KFP version unknown (the UI proxy has not reached the API server); assuming the newest")
                return ServerProfile(None, None, source="none")
        return self._profile

    def learn(self, health: dict) -> ServerProfile:
        """Remember the profile from a healthz answer (readiness calls pass theirs here too); an answer that says
        nothing of the version (a UI that never reached the API server) is not remembered."""
        profile = ServerProfile.from_healthz(health, self._pinned)
        if self._high is not None:
            profile = profile.narrowed(self._high)
        if profile.known:
            self._profile = profile
        return profile

    def narrow(self, high: Version) -> None:
        """Remember that the server is no newer than `high` (an answer showed it)."""
        self._high = high if self._high is None else min(self._high, high)
        if self._profile is not None:
            self._profile = self._profile.narrowed(high)
