"""Pure: the declared output types of each task of a KFP v2 pipeline IR (nested DAGs included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 20  # a malformed IR whose components refer to each other must not recurse forever


def unwrap(spec: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return the IR from a version's `pipeline_spec` (the IR itself or `{pipeline_spec, platform_spec}`)."""
    if not isinstance(spec, Mapping):
        return {}
    inner = spec.get("pipeline_spec")
    return inner if isinstance(inner, Mapping) else spec


def output_types(spec: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Return {task name: {output name: parameterType or artifact schemaTitle}}."""
    ir = unwrap(spec)
    components = ir.get("components") or {}
    found: dict[str, dict[str, str]] = {}

    def walk(dag: Mapping[str, Any], depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        for task_name, task in (dag.get("tasks") or {}).items():
            comp = components.get(((task or {}).get("componentRef") or {}).get("name")) or {}
            defs = comp.get("outputDefinitions") or {}
            types = {n: str(d.get("parameterType")) for n, d in (defs.get("parameters") or {}).items()}
            types.update(
                {
                    n: str((d.get("artifactType") or {}).get("schemaTitle"))
                    for n, d in (defs.get("artifacts") or {}).items()
                }
            )
            found.setdefault(task_name, {}).update(types)
            if isinstance(comp.get("dag"), Mapping):
                walk(comp["dag"], depth + 1)

    walk((ir.get("root") or {}).get("dag") or {}, 0)
    return found
