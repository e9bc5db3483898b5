"""Pure: the tasks and declared outputs of a KFP v1 (Argo) run, read from its workflow manifest.

Node statuses come from `status.nodes`, or from `status.compressedNodes` (base64 of gzip'd JSON) that Argo
writes for large workflows. Output types come from each template's `pipelines.kubeflow.org/component_spec`
annotation; a value is inline when the node reports it as an output parameter, otherwise it is the artifact
`<templateName>-<outputName>` read through KFP's `:read` endpoint.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kfadapter.core import archive
from kfadapter.core.errors import Undecodable

COMPONENT_SPEC = "pipelines.kubeflow.org/component_spec"
LOGS = "main-logs"
# Artifacts KFP v1 adds to a step besides the component's own outputs; both hold JSON.
_SYSTEM_ARTIFACTS = {"mlpipeline-ui-metadata": "JsonObject", "mlpipeline-metrics": "JsonObject"}
_PHASES = {
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Succeeded": "SUCCEEDED",
    "Skipped": "SKIPPED",
    "Failed": "FAILED",
    "Error": "FAILED",
    "Omitted": "SKIPPED",
}
_MAX_NODES_JSON = 64 * 1024 * 1024


@dataclass
class Output:
    """One declared or produced output of a step."""

    name: str
    type: str | None
    parameter: str | None = None  # the inline output parameter's value, when the node reports one
    artifact: str | None = None  # the Argo artifact name to read, when there is no inline value
    produced: bool = False  # the node's status lists it (a step still running has produced nothing yet)


@dataclass
class Task:
    """One Pod node of the workflow."""

    id: str
    name: str
    template: str
    phase: str | None
    state: str
    started_at: str | None = None
    finished_at: str | None = None
    outputs: list[Output] = field(default_factory=list)


def nodes_of(workflow: Mapping[str, Any], limits: archive.Limits | None = None) -> dict[str, dict]:
    """Return `status.nodes`, decoding `status.compressedNodes` when Argo compressed them."""
    status = workflow.get("status") or {}
    nodes = status.get("nodes")
    if isinstance(nodes, dict) and nodes:
        return nodes
    packed = status.get("compressedNodes")
    if not packed:
        return {}
    limits = limits or archive.Limits(max_bytes=_MAX_NODES_JSON)
    text = packed.encode("ascii", "replace") if isinstance(packed, str) else b""
    data = archive.open_object(archive.Base64Decode(io.BytesIO(text)), limits, decompress=True)
    raw = b"".join(iter(lambda: data.reader.read(archive.CHUNK), b""))
    try:
        nodes = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past the interpreter's limit
        raise Undecodable("the workflow's compressedNodes are not JSON") from None
    if not isinstance(nodes, dict):
        raise Undecodable("the workflow's compressedNodes are not a JSON object")
    return nodes


def is_v1(workflow: Mapping[str, Any]) -> bool:
    """Tell a KFP v1 workflow (templates carry component specs) from a v2 one."""
    return any(
        COMPONENT_SPEC in ((t.get("metadata") or {}).get("annotations") or {})
        for t in (workflow.get("spec") or {}).get("templates") or []
    )


def _component_outputs(template: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    raw = ((template.get("metadata") or {}).get("annotations") or {}).get(COMPONENT_SPEC)
    try:
        spec = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        spec = {}
    outputs = spec.get("outputs") if isinstance(spec, dict) else None
    return [
        (o["name"], o.get("type") if isinstance(o.get("type"), str) else None)
        for o in outputs or []
        if isinstance(o, dict) and isinstance(o.get("name"), str)
    ]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _find(prefix: str, output: str, names: list[str]) -> str | None:
    """Find the Argo parameter/artifact holding a component output: `<template>-<output>`, sanitized or not."""
    exact = f"{prefix}-{output}"
    if exact in names:
        return exact
    wanted = _norm(exact)
    return next((n for n in names if _norm(n) == wanted), None)


def _names(items: Any) -> list[str]:
    return [i["name"] for i in items or [] if isinstance(i, dict) and isinstance(i.get("name"), str)]


def _task_outputs(node: Mapping[str, Any], template: Mapping[str, Any], logs: bool) -> list[Output]:
    name = node.get("templateName") or template.get("name") or ""
    status_out = node.get("outputs") or {}
    values = {
        p["name"]: p.get("value")
        for p in status_out.get("parameters") or []
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    }
    produced = _names(status_out.get("artifacts"))
    declared_out = template.get("outputs") or {}
    params = list(dict.fromkeys(_names(declared_out.get("parameters")) + list(values)))
    artifacts = list(dict.fromkeys(_names(declared_out.get("artifacts")) + produced))
    out: list[Output] = []
    used: set[str] = set()
    for oname, otype in _component_outputs(template):
        param = _find(name, oname, params)
        art = _find(name, oname, artifacts)
        used.update(x for x in (param, art) if x)
        if param is not None and values.get(param) is not None:
            out.append(Output(oname, otype, parameter=str(values[param]), produced=True))
        else:
            out.append(Output(oname, otype, artifact=art or f"{name}-{oname}", produced=art in produced))
    for art in artifacts:
        if art in used or art == LOGS:
            continue
        otype = _SYSTEM_ARTIFACTS.get(art)
        label = art if otype else (art[len(name) + 1 :] if art.startswith(f"{name}-") else art)
        out.append(Output(label, otype, artifact=art, produced=art in produced))
    if logs:
        out.append(Output(LOGS, None, artifact=LOGS, produced=LOGS in produced))
    return out


def tasks_of(workflow: Mapping[str, Any], *, logs: bool = False) -> list[Task]:
    """List the workflow's Pod nodes with their outputs, in start order."""
    templates = {t.get("name"): t for t in (workflow.get("spec") or {}).get("templates") or [] if isinstance(t, dict)}
    tasks = []
    for node_id, node in nodes_of(workflow).items():
        if not isinstance(node, dict) or node.get("type") != "Pod":
            continue
        template = templates.get(node.get("templateName")) or {}
        phase = node.get("phase")
        tasks.append(
            Task(
                id=str(node.get("id") or node_id),
                name=str(node.get("displayName") or node.get("name") or node_id),
                template=str(node.get("templateName") or ""),
                phase=phase,
                state=_PHASES.get(phase or "", "PENDING"),
                started_at=node.get("startedAt"),
                finished_at=node.get("finishedAt"),
                outputs=_task_outputs(node, template, logs),
            )
        )
    return sorted(tasks, key=lambda t: (t.started_at or "~", t.name))


def artifact_location(workflow: Mapping[str, Any], node_id: str, name: str) -> tuple[str | None, str] | None:
    """(bucket or None, key) where Argo stored a node's artifact, as KFP's `:read` finds it; None when not stored.

    Like FindObjectStoreArtifactKeyOrEmpty (common/util/workflow.go, 2.17): the node's S3 artifact of that name,
    else its children's down to 3 levels (a retried step's pod sits under a retry node). Nodes are found by id
    (the adapter's outputs name them so); KFP also accepts a pod name."""
    nodes = nodes_of(workflow)
    node = nodes.get(node_id)
    return _artifact_in(nodes, node, name, 3) if isinstance(node, dict) else None


def _artifact_in(
    nodes: Mapping[str, Any], node: Mapping[str, Any], name: str, depth: int
) -> tuple[str | None, str] | None:
    for art in (node.get("outputs") or {}).get("artifacts") or []:
        s3 = art.get("s3") if isinstance(art, dict) and art.get("name") == name else None
        if isinstance(s3, dict) and isinstance(s3.get("key"), str) and s3["key"]:
            bucket = s3.get("bucket")
            return (bucket if isinstance(bucket, str) and bucket else None), s3["key"]
    if depth <= 0:
        return None
    for child in node.get("children") or []:
        found = _artifact_in(nodes, nodes.get(child) or {}, name, depth - 1) if isinstance(child, str) else None
        if found is not None:
            return found
    return None
