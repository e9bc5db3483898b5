"""The Argo rewrite for volume data passing: artifacts become `-subpath` parameters and volume mounts.

Internal to `kfadapter.packages.volume_passing` (import the public names from there, `rewrite_workflow` first of all):
`_rewrite` takes an already validated volume and prefix and a private copy of the workflow, refuses through
`volume_checks` whatever it cannot rewrite faithfully, then rewrites container, script, DAG and steps
templates in place. Pure: no Flask, no kfp, no I/O.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from kfadapter.core.errors import BadRequest
from kfadapter.packages.volume_checks import (
    _FROM,
    _GRAPH_KINDS,
    _POD_KINDS,
    UNSUPPORTED,
    _artifacts,
    _kind,
    _problems,
    _tasks,
)

SUBPATH_SUFFIX = "-subpath"
ANNOTATION = "kfadapter/volume-data-passing"

_LEFTOVER = re.compile(r"\{\{[^{}]*\b(?:inputs|outputs)\.artifacts\b[^{}]*\}\}")


def _rewrite(wf: dict, volume: dict, prefix: str) -> dict:
    spec = wf["spec"]
    marker = {"path_prefix": prefix, "volume": volume["name"]}
    done = _marker_of(wf)
    if done is not None:
        used = next(
            (v for v in spec.get("volumes") or [] if isinstance(v, Mapping) and v.get("name") == done.get("volume")),
            None,
        )
        if done == marker and used == volume:
            return wf  # already rewritten exactly so: a no-op keeps the rewrite idempotent
        raise BadRequest(
            "the workflow already passes data through volume "
            f"{done.get('volume')!r} (prefix {done.get('path_prefix')!r}); rewrite the original "
            "workflow instead",
            code="already_rewritten",
            details={"rewritten_with": done},
        )
    templates = spec.get("templates")
    if not isinstance(templates, list) or not all(isinstance(t, dict) for t in templates):
        raise BadRequest("the workflow has no list of templates", code=UNSUPPORTED)
    _check_volume_name_free(spec, templates, volume["name"])

    problems = _problems(spec, templates)
    if problems:
        raise BadRequest(
            "cannot pass data through a volume: " + "; ".join(problems),
            code=UNSUPPORTED,
            details={"problems": problems},
        )
    for template in templates:
        if _kind(template) in _POD_KINDS:
            _rewrite_pod(template, volume["name"], prefix)
        elif _kind(template) in _GRAPH_KINDS:
            _rewrite_graph(template)
    leftovers = sorted(
        {m.group(0) for t in templates for m in _LEFTOVER.finditer(json.dumps(_without_meta(t), default=str))}
    )
    if leftovers:
        # Argo would reject (or fail on) a reference to an artifact that no longer exists.
        raise BadRequest(
            "cannot pass data through a volume: the workflow still refers to artifacts: " + ", ".join(leftovers),
            code=UNSUPPORTED,
            details={"problems": leftovers},
        )
    spec.setdefault("volumes", []).append(volume)
    annotations = wf.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[ANNOTATION] = json.dumps(marker, sort_keys=True)
    return wf


def _marker_of(wf: Mapping) -> dict | None:
    raw = ((wf.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if raw is None:
        return None
    try:
        marker = json.loads(raw)
    except (TypeError, ValueError):
        marker = None
    return marker if isinstance(marker, dict) else {"volume": None, "path_prefix": None}


def _check_volume_name_free(spec: Mapping, templates: list[dict], name: str) -> None:
    taken = [v.get("name") for v in spec.get("volumes") or [] if isinstance(v, Mapping)]
    taken += [v.get("name") for t in templates for v in t.get("volumes") or [] if isinstance(v, Mapping)]
    taken += [
        (c.get("metadata") or {}).get("name") for c in spec.get("volumeClaimTemplates") or [] if isinstance(c, Mapping)
    ]
    if name in taken:
        raise BadRequest(
            f"the workflow already has a volume named {name!r}; give the data volume another name",
            code="invalid_volume",
            details={"field": "volume", "name": name},
        )


def _without_meta(template: Mapping) -> dict:
    # Template metadata holds kfp's component_spec annotation: JSON text, not Argo expressions.
    return {k: v for k, v in template.items() if k != "metadata"}


def _param_ref(match: re.Match | None) -> str:
    assert match is not None, "volume_checks matched every `from` against _FROM before a rewrite"
    return "{{" + match.group(1) + ".parameters." + match.group(3) + SUBPATH_SUFFIX + "}}"


def _add_parameters(holder: dict, items: list[dict], where: str) -> None:
    params = holder.setdefault("parameters", [])
    names = {p.get("name") for p in params if isinstance(p, Mapping)}
    for item in items:
        if item["name"] in names:
            raise BadRequest(
                f"cannot pass data through a volume: {where} already has a parameter named {item['name']!r}",
                code=UNSUPPORTED,
            )
        params.append(item)
        names.add(item["name"])


def _rewrite_pod(template: dict, volume_name: str, prefix: str) -> None:
    inputs, outputs = _artifacts(template, "inputs"), _artifacts(template, "outputs")
    if not inputs and not outputs:
        return
    tname = template.get("name")
    body = template[_kind(template)]
    mounts = body.setdefault("volumeMounts", [])
    in_params, out_params = [], []
    paths = {}
    for art in inputs:
        param = art["name"] + SUBPATH_SUFFIX
        in_params.append({"name": param})
        mounts.append(
            {
                "name": volume_name,
                "mountPath": posixpath.dirname(posixpath.normpath(art["path"])),
                "subPath": "{{inputs.parameters." + param + "}}",
                "readOnly": True,
            }
        )
        paths["{{inputs.artifacts." + art["name"] + ".path}}"] = art["path"]
    for art in outputs:
        # {{pod.name}} differs per execution (loop iteration, retry), {{workflow.uid}} per run: no two
        # executions share a directory, and one run's data can be removed as one tree.
        sub_path = f"{prefix}/{{{{workflow.uid}}}}/{{{{pod.name}}}}/{art['name']}"
        out_params.append({"name": art["name"] + SUBPATH_SUFFIX, "value": sub_path})
        mounts.append(
            {"name": volume_name, "mountPath": posixpath.dirname(posixpath.normpath(art["path"])), "subPath": sub_path}
        )
        paths["{{outputs.artifacts." + art["name"] + ".path}}"] = art["path"]
    if inputs:
        del template["inputs"]["artifacts"]
        _add_parameters(template["inputs"], in_params, f"template {tname!r} inputs")
    if outputs:
        del template["outputs"]["artifacts"]
        _add_parameters(template["outputs"], out_params, f"template {tname!r} outputs")
    # Argo fills {{inputs.artifacts.X.path}} only while X is an artifact; the path itself stays valid.
    template[_kind(template)] = _replace_in_strings(body, paths)


def _rewrite_graph(template: dict) -> None:
    tname = template.get("name")
    inputs, outputs = _artifacts(template, "inputs"), _artifacts(template, "outputs")
    if inputs:
        del template["inputs"]["artifacts"]
        _add_parameters(
            template["inputs"], [{"name": a["name"] + SUBPATH_SUFFIX} for a in inputs], f"template {tname!r} inputs"
        )
    if outputs:
        del template["outputs"]["artifacts"]
        _add_parameters(
            template["outputs"],
            [
                {
                    "name": a["name"] + SUBPATH_SUFFIX,
                    "valueFrom": {"parameter": _param_ref(_FROM.fullmatch(str(a["from"])))},
                }
                for a in outputs
            ],
            f"template {tname!r} outputs",
        )
    for task in _tasks(template):
        args = (task.get("arguments") or {}).get("artifacts")
        if not args:
            continue
        del task["arguments"]["artifacts"]
        _add_parameters(
            task["arguments"],
            [{"name": a["name"] + SUBPATH_SUFFIX, "value": _param_ref(_FROM.fullmatch(str(a["from"])))} for a in args],
            f"task {task.get('name')!r} of {tname!r} arguments",
        )


def _replace_in_strings(value: Any, replacements: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_replace_in_strings(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: _replace_in_strings(v, replacements) for k, v in value.items()}
    return value
