"""Pure: fit a package's kfp-kubernetes platform spec to a KFP whose driver parses executor configs strictly.

KFP 2.3.0 and 2.4.0 pin kubernetes_platform v0.0.0-20240725205754-d911c8b73b49 and their driver parses each
task's executor config with `jsonpb.UnmarshalString` (backend/src/v2/cmd/driver/main.go): a field that module
lacks fails the task at run time ("failed to unmarshal Kubernetes config, error: unknown field ..."). From 2.4.1
util.UnmarshalString ignores unknown fields. Current kfp-kubernetes always writes `secretNameParameter`,
`configMapNameParameter` and `pvcNameParameter` beside the old field: such a twin is left out when the old field
holds the same name (a constant, or the same parameter for a PVC); `optional: false` on SecretAsEnv /
ConfigMapAsEnv (kfp-kubernetes >= 2.17) is what the old driver does anyway and is left out too. Anything else the
driver does not know is a 400 naming the field.

Before 2.4 the pipeline-spec copy's SinglePlatformSpec knows only `deploymentSpec`: a `platforms.kubernetes`
document with more is skipped at upload without a word (template/v2_template.go IsPlatformSpecWithKubernetesConfig),
so every executor config in it would be lost; empty extras are left out, others are a 400.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from kfadapter.core.errors import BadRequest

# kubernetes_executor_config.proto at d911c8b73b49: message -> {JSON name: message of the value, or None}.
# (The sandbox keeps its own copy in kfadapter/sandbox/driver.py: the sandbox imports nothing of the adapter.)
MESSAGES_2_3: dict[str, dict[str, str | None]] = {
    "KubernetesExecutorConfig": {
        "secretAsVolume": "SecretAsVolume",
        "secretAsEnv": "SecretAsEnv",
        "pvcMount": "PvcMount",
        "nodeSelector": "NodeSelector",
        "podMetadata": "PodMetadata",
        "imagePullSecret": "ImagePullSecret",
        "imagePullPolicy": None,
        "configMapAsVolume": "ConfigMapAsVolume",
        "configMapAsEnv": "ConfigMapAsEnv",
        "activeDeadlineSeconds": None,
        "fieldPathAsEnv": "FieldPathAsEnv",
        "tolerations": "Toleration",
        "genericEphemeralVolume": "GenericEphemeralVolume",
        "nodeAffinity": "NodeAffinityTerm",
        "podAffinity": "PodAffinityTerm",
        "enabledSharedMemory": "EnabledSharedMemory",
        "emptyDirMounts": "EmptyDirMount",
    },
    "EnabledSharedMemory": {"volumeName": None, "size": None},
    "SecretAsVolume": {"secretName": None, "mountPath": None, "optional": None},
    "SecretAsEnv": {"secretName": None, "keyToEnv": "SecretKeyToEnvMap"},
    "SecretKeyToEnvMap": {"secretKey": None, "envVar": None},
    "TaskOutputParameterSpec": {"producerTask": None, "outputParameterKey": None},
    "PvcMount": {
        "taskOutputParameter": "TaskOutputParameterSpec",
        "constant": None,
        "componentInputParameter": None,
        "mountPath": None,
    },
    "NodeSelector": {"labels": None},
    "PodMetadata": {"labels": None, "annotations": None},
    "ConfigMapAsVolume": {"configMapName": None, "mountPath": None, "optional": None},
    "ConfigMapAsEnv": {"configMapName": None, "keyToEnv": "ConfigMapKeyToEnvMap"},
    "ConfigMapKeyToEnvMap": {"configMapKey": None, "envVar": None},
    "GenericEphemeralVolume": {
        "volumeName": None,
        "mountPath": None,
        "accessModes": None,
        "size": None,
        "defaultStorageClass": None,
        "storageClassName": None,
        "metadata": "PodMetadata",
    },
    "ImagePullSecret": {"secretName": None},
    "FieldPathAsEnv": {"name": None, "fieldPath": None},
    "Toleration": {"key": None, "operator": None, "value": None, "effect": None, "tolerationSeconds": None},
    "SelectorRequirement": {"key": None, "operator": None, "values": None},
    "NodeAffinityTerm": {
        "matchExpressions": "SelectorRequirement",
        "matchFields": "SelectorRequirement",
        "weight": None,
    },
    "PodAffinityTerm": {
        "matchPodExpressions": "SelectorRequirement",
        "matchPodLabels": None,
        "topologyKey": None,
        "namespaces": None,
        "matchNamespaceExpressions": "SelectorRequirement",
        "matchNamespaceLabels": None,
        "weight": None,
        "anti": None,
    },
    "EmptyDirMount": {"volumeName": None, "mountPath": None, "medium": None, "sizeLimit": None},
}
# message -> newer `...Parameter` field -> the old field holding the same name (kfp-kubernetes writes both).
TWINS = {
    "SecretAsVolume": {"secretNameParameter": "secretName"},
    "SecretAsEnv": {"secretNameParameter": "secretName"},
    "ConfigMapAsVolume": {"configMapNameParameter": "configMapName"},
    "ConfigMapAsEnv": {"configMapNameParameter": "configMapName"},
    "ImagePullSecret": {"secretNameParameter": "secretName"},
    "PvcMount": {"pvcNameParameter": "constant"},
}
# Newer fields whose value is what the old driver does without them.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "SecretAsEnv": {"optional": False},
    "ConfigMapAsEnv": {"optional": False},
    "PvcMount": {"subPath": ""},
}
_PLATFORM_FIELDS = frozenset({"deploymentSpec"})


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def fit_platform(platform: dict, server: str, strict_driver: bool, old_spec: bool) -> tuple[dict, list[str]]:
    """Return (`platform` fitted to `server`, the paths left out); a copy when something was left out."""
    kubernetes = (platform.get("platforms") or {}).get("kubernetes") if isinstance(platform, dict) else None
    if not isinstance(kubernetes, dict):
        return platform, []
    fitted = copy.deepcopy(platform)
    kube = fitted["platforms"]["kubernetes"]
    dropped: list[str] = []
    if old_spec:
        for key in [k for k in kube if _camel(str(k)) not in _PLATFORM_FIELDS]:
            path = f"platforms.kubernetes.{key}"
            if kube[key] in (None, {}, [], ""):
                del kube[key]
                dropped.append(path)
                continue
            raise BadRequest(
                f"the package's platform spec has {path}, which {server} does not know: it would drop the whole "
                "kfp-kubernetes platform spec (secrets, volumes, node selectors ...) without a word; compile it "
                "without that feature or upgrade KFP",
                code="kfp_would_ignore",
                details={"field": path, "kfp_version": server},
            )
    if strict_driver:
        executors = (kube.get("deploymentSpec") or {}).get("executors") or {}
        for label, config in executors.items() if isinstance(executors, dict) else []:
            where = f"platforms.kubernetes.deploymentSpec.executors.{label}"
            dropped += _fit_message(config, "KubernetesExecutorConfig", where, server)
    return (fitted, dropped) if dropped else (platform, [])


def _fit_message(doc: Any, message: str, where: str, server: str) -> list[str]:
    if not isinstance(doc, dict):
        return []
    fields, dropped = MESSAGES_2_3[message], []
    for key in list(doc):
        name, path = _camel(str(key)), f"{where}.{key}"
        if name in fields:
            child = fields[name]
            if child is not None:
                items = doc[key] if isinstance(doc[key], list) else [doc[key]]
                for i, item in enumerate(items):
                    dropped += _fit_message(item, child, f"{path}[{i}]" if isinstance(doc[key], list) else path, server)
            continue
        if _redundant(doc, message, name):
            del doc[key]
            dropped.append(path)
            continue
        raise BadRequest(
            f"the package's kfp-kubernetes config has {path}, which the driver of {server} does not know: the task "
            "would fail when it starts; write the value in the older field (e.g. a constant name rather than a "
            "pipeline parameter), compile with an older kfp-kubernetes, or upgrade KFP",
            code="package_too_new",
            details={"field": path, "kfp_version": server},
        )
    return dropped


def _redundant(doc: dict, message: str, name: str) -> bool:
    """Whether the newer field `name` says nothing the old driver would not do from the rest of `doc`."""
    if name in _DEFAULTS.get(message, {}):
        return doc.get(name, doc.get(_snake(name))) == _DEFAULTS[message][name]
    old = TWINS.get(message, {}).get(name)
    if old is None:
        return False
    param = doc.get(name, doc.get(_snake(name)))
    if not isinstance(param, dict):
        return False
    if message == "PvcMount":  # the old oneof: constant, componentInputParameter or taskOutputParameter
        return any(
            param.get(k) == _get(doc, k) and param.get(k) is not None
            for k in ("componentInputParameter", "taskOutputParameter")
        ) or (_constant(param) is not None and _constant(param) == _get(doc, "constant"))
    return _constant(param) is not None and _constant(param) == _get(doc, old)


def _constant(param: dict) -> Any:
    runtime = param.get("runtimeValue") or param.get("runtime_value")
    return runtime.get("constant") if isinstance(runtime, dict) else None


def _get(doc: dict, name: str) -> Any:
    return doc.get(name, doc.get(_snake(name)))


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)
