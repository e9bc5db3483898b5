"""Typed settings, read once from the environment.

Precedence for each setting: the `KFADAPTER_*` name, then the O-RAN name (so an unchanged aimlfw-dep
ConfigMap keeps working), then the default. Invalid values raise `SettingsError` naming the variable, the value
and what is allowed (ranges and shapes: kfadapter/settings/checks.py).
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kfadapter.settings import checks
from kfadapter.settings.checks import SettingsError

# O-RAN's derivation (tm-contract.md, "Pipeline arguments"): applied only to parameters the pipeline
# declares and the caller did not give; `{name}` refers to the caller's arguments (plus trainingjob_id).
DEFAULT_ARGUMENT_MAPPING: dict[str, str] = {
    "featurepath": "{featuregroup_name}_{trainingjob_id}",
    "modelname": "{modelName}",
    "modelversion": "{modelVersion}",
}


TM_NOTIFICATION_PATH = "/trainingjob/pipelineNotification"


@dataclass(frozen=True)
class Settings:
    """Everything the adapter is configured with."""

    kfp_endpoint: str | None = None
    namespace: str = "kubeflow"
    host: str = "0.0.0.0"
    port: int = 5001
    kfp_token: str | None = field(default=None, repr=False)
    kfp_token_file: str | None = None
    kfp_ca_cert: str | None = None
    kfp_connect_timeout: float = 5.0
    kfp_read_timeout: float = 30.0
    kfp_upload_timeout: float = 120.0
    kfp_version: str | None = None  # KFADAPTER_KFP_VERSION: the KFP version, when healthz cannot tell it
    store_path: str = "var/kfadapter.sqlite"
    store_url: str | None = field(default=None, repr=False)  # postgresql://… or sqlite:///…; wins over store_path
    history_days: float = 30.0
    intent_grace: float = 300.0
    argument_mapping: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ARGUMENT_MAPPING))
    upload_attempts: int = 40
    max_upload_bytes: int = 32 * 1024 * 1024
    tm_url: str | None = None
    poll_interval: float = 10.0
    notify_timeout: float = 10.0
    notify_max_backoff: float = 300.0
    notify_concurrency: int = 8
    watch_enabled: bool = True
    lease_ttl: float = 30.0
    api_token: str | None = field(default=None, repr=False)
    log_format: str = "json"
    log_level: str = "INFO"
    mlmd_endpoint: str = "metadata-grpc-service.kubeflow:8080"
    mlmd_timeout: float = 10.0
    object_store_endpoint: str | None = None
    object_store_access_key: str | None = field(default=None, repr=False)
    object_store_secret_key: str | None = field(default=None, repr=False)
    object_store_region: str = "us-east-1"
    object_store_timeout: float = 30.0
    artifact_max_bytes: int = 1024 * 1024 * 1024
    artifact_max_members: int = 1000
    output_inline_bytes: int = 64 * 1024
    sandbox_workers: int = 2
    sandbox_workdir: str | None = None
    # Caps on parsing untrusted bytes (kfadapter/core/limits.py), each checked before the parser runs.
    max_json_bytes: int = 1024 * 1024
    max_json_depth: int = 100
    yaml_max_aliases: int = 1000
    yaml_max_nodes: int = 100_000
    package_max_members: int = 100
    kfp_max_response_bytes: int = 64 * 1024 * 1024
    mlmd_max_message_bytes: int = 64 * 1024 * 1024

    def __repr__(self) -> str:
        # Secrets never reach a log line through repr().
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                f.name in ("kfp_token", "api_token", "object_store_access_key", "object_store_secret_key", "store_url")
                and value
            ):
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `env` (default: os.environ)."""
        env = os.environ if env is None else env
        r = _Reader(env)
        endpoint = r.str("KFADAPTER_KFP_ENDPOINT")
        if endpoint is None and r.str("KUBEFLOW_HOST"):
            # The O-RAN adapter reaches KFP through the UI proxy under /pipeline.
            endpoint = f"http://{r.str('KUBEFLOW_HOST')}:{r.int('KUBEFLOW_PORT', 80)}/pipeline"
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise SettingsError(f"KFADAPTER_KFP_ENDPOINT must start with http:// or https://, got {endpoint!r}")
        return cls(
            kfp_endpoint=endpoint.rstrip("/") if endpoint else None,
            namespace=r.str("KFADAPTER_NAMESPACE") or r.str("KF_NAMESPACE") or "kubeflow",
            host=r.str("KFADAPTER_HOST") or "0.0.0.0",
            port=r.int("KFADAPTER_PORT", r.int("KF_ADAPTER_PORT", 5001)),
            kfp_token=r.str("KFADAPTER_KFP_TOKEN"),
            kfp_token_file=r.str("KFADAPTER_KFP_TOKEN_FILE") or r.str("KF_PIPELINES_SA_TOKEN_PATH"),
            kfp_ca_cert=r.str("KFADAPTER_KFP_CA_CERT"),
            kfp_connect_timeout=r.float("KFADAPTER_KFP_CONNECT_TIMEOUT", 5.0),
            kfp_read_timeout=r.float("KFADAPTER_KFP_TIMEOUT", 30.0),
            kfp_upload_timeout=r.float("KFADAPTER_KFP_UPLOAD_TIMEOUT", 120.0),
            kfp_version=r.str("KFADAPTER_KFP_VERSION"),
            store_path=r.str("KFADAPTER_STORE_PATH") or "var/kfadapter.sqlite",
            store_url=_store_url(r),
            history_days=r.float("KFADAPTER_HISTORY_DAYS", 30.0),
            intent_grace=r.float("KFADAPTER_INTENT_GRACE", 300.0),
            argument_mapping=r.mapping("KFADAPTER_ARGUMENT_MAPPING", DEFAULT_ARGUMENT_MAPPING),
            upload_attempts=r.int("KFADAPTER_UPLOAD_ATTEMPTS", 40),
            tm_url=_tm_url(r),
            poll_interval=r.float("KFADAPTER_POLL_INTERVAL", 10.0),
            notify_timeout=r.float("KFADAPTER_NOTIFY_TIMEOUT", 10.0),
            notify_max_backoff=r.float("KFADAPTER_NOTIFY_MAX_BACKOFF", 300.0),
            notify_concurrency=r.int("KFADAPTER_NOTIFY_CONCURRENCY", 8),
            watch_enabled=r.bool("KFADAPTER_WATCH", True),
            lease_ttl=r.float("KFADAPTER_LEASE_TTL", 30.0),
            api_token=_api_token(r),
            log_format=r.choice("KFADAPTER_LOG_FORMAT", ("json", "text"), "json"),
            log_level=r.choice("KFADAPTER_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            mlmd_endpoint=r.str("KFADAPTER_MLMD_ENDPOINT") or "metadata-grpc-service.kubeflow:8080",
            mlmd_timeout=r.float("KFADAPTER_MLMD_TIMEOUT", 10.0),
            object_store_endpoint=r.str("KFADAPTER_OBJECT_STORE_ENDPOINT"),
            object_store_access_key=r.str("KFADAPTER_OBJECT_STORE_ACCESS_KEY"),
            object_store_secret_key=r.str("KFADAPTER_OBJECT_STORE_SECRET_KEY"),
            object_store_region=r.str("KFADAPTER_OBJECT_STORE_REGION") or "us-east-1",
            object_store_timeout=r.float("KFADAPTER_OBJECT_STORE_TIMEOUT", 30.0),
            artifact_max_bytes=r.int("KFADAPTER_ARTIFACT_MAX_BYTES", 1024 * 1024 * 1024),
            artifact_max_members=r.int("KFADAPTER_ARTIFACT_MAX_MEMBERS", 1000),
            output_inline_bytes=r.int("KFADAPTER_OUTPUT_INLINE_BYTES", 64 * 1024),
            sandbox_workers=r.int("KFADAPTER_SANDBOX_WORKERS", 2),
            sandbox_workdir=r.str("KFADAPTER_SANDBOX_WORKDIR"),
            max_json_bytes=r.int("KFADAPTER_MAX_JSON_BYTES", 1024 * 1024),
            max_json_depth=r.int("KFADAPTER_MAX_JSON_DEPTH", 100),
            yaml_max_aliases=r.int("KFADAPTER_YAML_MAX_ALIASES", 1000),
            yaml_max_nodes=r.int("KFADAPTER_YAML_MAX_NODES", 100_000),
            package_max_members=r.int("KFADAPTER_PACKAGE_MAX_MEMBERS", 100),
            kfp_max_response_bytes=r.int("KFADAPTER_KFP_MAX_RESPONSE_BYTES", 64 * 1024 * 1024),
            mlmd_max_message_bytes=r.int("KFADAPTER_MLMD_MAX_MESSAGE_BYTES", 64 * 1024 * 1024),
        )


def _api_token(r: _Reader) -> str | None:
    token = r.str("KFADAPTER_API_TOKEN")
    path = r.str("KFADAPTER_API_TOKEN_FILE")
    if token is None and path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise checks.settings_error("KFADAPTER_API_TOKEN_FILE", path, f"a readable file ({exc.strerror})") from None
    if token is not None and len(token) < 16:
        raise checks.settings_error("KFADAPTER_API_TOKEN", token, "at least 16 characters")
    return token


def _store_url(r: _Reader) -> str | None:
    url = r.str("KFADAPTER_STORE_URL")
    if url is not None and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        # The URL may hold a password: it is a secret, shown as (hidden).
        raise checks.settings_error("KFADAPTER_STORE_URL", url, "a URL starting with postgresql:// or sqlite:///")
    return url


def _tm_url(r: _Reader) -> str | None:
    url = r.str("KFADAPTER_TM_URL")
    if url is None and r.str("TRAININGMGR_HOST"):
        url = f"http://{r.str('TRAININGMGR_HOST')}:{r.int('TRAININGMGR_PORT', 32002)}{TM_NOTIFICATION_PATH}"
    if url is not None and not url.startswith(("http://", "https://")):
        raise SettingsError(f"KFADAPTER_TM_URL must start with http:// or https://, got {url!r}")
    return url


class _Reader:
    """Typed access to environment variables; every failure names the variable."""

    # The methods are named after the types they read, so annotations name the types through `builtins`.

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def str(self, name: builtins.str) -> builtins.str | None:
        value = self.env.get(name, "").strip()
        return checks.text(name, value) if value else None

    def int(self, name: builtins.str, default: builtins.int) -> builtins.int:
        raw = self.str(name)
        return default if raw is None else int(checks.number(name, raw, int))

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        raw = self.str(name)
        return default if raw is None else checks.number(name, raw, float)

    def choice(self, name: builtins.str, allowed: tuple[builtins.str, ...], default: builtins.str) -> builtins.str:
        raw = self.str(name)
        if raw is None:
            return default
        for option in allowed:
            if raw.lower() == option.lower():
                return option
        raise checks.settings_error(name, raw, f"one of {', '.join(allowed)}")

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.str(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise checks.settings_error(name, raw, "true or false")

    def mapping(
        self, name: builtins.str, default: Mapping[builtins.str, builtins.str]
    ) -> dict[builtins.str, builtins.str]:
        raw = self.str(name)
        if raw is None:
            return dict(default)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise checks.settings_error(name, raw, "a JSON object of parameter -> template strings")
        checks.check_templates(name, raw, value)
        return value
