"""What the played KFP's driver does with a task's kfp-kubernetes executor config before the task's pod starts.

The API server stores the platform spec's executor configs as Structs (any field is accepted at upload) and
hands each to the driver as `--kubernetes_config` (compiler/argocompiler/container.go). KFP 2.3's driver parses
it strictly (backend/src/v2/cmd/driver/main.go: `jsonpb.UnmarshalString`, golang/protobuf 1.5.3) against the
kubernetes_platform module its go.mod pins (v0.0.0-20240725205754-d911c8b73b49), so a field that module lacks
fails the task: "failed to unmarshal Kubernetes config, error: unknown field ...". From 2.5 the driver uses
util.UnmarshalString, which ignores unknown fields (common/util/json.go).
"""

from __future__ import annotations

import re
from typing import Any

# kubernetes_executor_config.proto at d911c8b73b49: message -> {JSON name: message of the value, or None}.
_MESSAGES_2_3: dict[str, dict[str, str | None]] = {
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
    "SecretAsEnv": {"secretName": None, "keyToEnv": "SecretAsEnv.SecretKeyToEnvMap"},
    "SecretAsEnv.SecretKeyToEnvMap": {"secretKey": None, "envVar": None},
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
    "ConfigMapAsEnv": {"configMapName": None, "keyToEnv": "ConfigMapAsEnv.ConfigMapKeyToEnvMap"},
    "ConfigMapAsEnv.ConfigMapKeyToEnvMap": {"configMapKey": None, "envVar": None},
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


def _camel(name: str) -> str:
    # protojson accepts a field's JSON name or its proto (snake_case) name.
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def unknown_field(config: Any, message: str = "KubernetesExecutorConfig") -> tuple[str, str] | None:
    """(field, message) of the first field 2.3's driver does not know in an executor config, else None."""
    if not isinstance(config, dict):
        return None
    fields = _MESSAGES_2_3[message]
    for key, value in config.items():
        name = _camel(str(key))
        if name not in fields:
            return str(key), message
        child = fields[name]
        if child is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            found = unknown_field(item, child)
            if found is not None:
                return found
    return None


def task_errors(ir: dict, platform_spec: dict | None, strict: bool) -> dict[str, str]:
    """Root tasks whose driver fails on their executor config -> the driver's error (empty unless `strict`)."""
    if not strict or not isinstance(platform_spec, dict):
        return {}
    kubernetes = (platform_spec.get("platforms") or {}).get("kubernetes") or {}
    executors = (kubernetes.get("deploymentSpec") or {}).get("executors") or {}
    components = ir.get("components") or {}
    errors = {}
    for task, spec in (((ir.get("root") or {}).get("dag") or {}).get("tasks") or {}).items():
        component = components.get((spec.get("componentRef") or {}).get("name", ""), {})
        found = unknown_field(executors.get(component.get("executorLabel", "")))
        if found is not None:
            field, message = found
            errors[task] = (
                f'failed to unmarshal Kubernetes config, error: unknown field "{field}" in kfp_kubernetes.{message}'
            )
    return errors
