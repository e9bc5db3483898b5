"""Refusals for volume data passing: everything in a v1 Argo workflow that stops a faithful rewrite.

Internal to `kfadapter.packages.volume_passing` (import the public names from there). `_problems` lists every reason,
found before `volume_rewrite` changes anything; the template accessors (`_kind`, `_artifacts`, `_tasks`) and
the artifact reference pattern `_FROM` are shared with `volume_rewrite`. Pure: no Flask, no kfp, no I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

UNSUPPORTED = "volume_passing_unsupported"
# Where an artifact can get its content from other than a producing step: a constant (raw) or a location.
_ARTIFACT_SOURCES = ("raw", "s3", "http", "git", "gcs", "oss", "hdfs", "artifactory", "azure")
# One reference to a producer's or the template's own input artifact, the only `from` kfp 1.x writes.
_FROM = re.compile(r"\{\{\s*((?:tasks|steps)\.([^.{}\s]+)\.outputs|inputs)\.artifacts\.([^.{}\s]+)\s*\}\}")
_POD_KINDS = ("container", "script")
_GRAPH_KINDS = ("dag", "steps")


def _kind(template: Mapping) -> str | None:
    return next((k for k in (*_POD_KINDS, *_GRAPH_KINDS) if isinstance(template.get(k), (dict, list))), None)


def _artifacts(template: Mapping, side: str) -> list:
    return ((template.get(side) or {}).get("artifacts")) or []


def _tasks(template: Mapping) -> Iterator[dict]:
    """Yield a DAG template's tasks, or a steps template's steps (a list of parallel groups)."""
    if isinstance(template.get("dag"), Mapping):
        yield from (t for t in template["dag"].get("tasks") or [] if isinstance(t, dict))
    for group in template.get("steps") or []:
        yield from (s for s in (group if isinstance(group, list) else [group]) if isinstance(s, dict))


def _problems(spec: Mapping, templates: list[dict]) -> list[str]:
    """List everything that stops a faithful rewrite (empty: the rewrite is safe)."""
    problems: list[str] = []
    for art in (spec.get("arguments") or {}).get("artifacts") or []:
        problems.append(
            f"workflow argument artifact {_name(art)!r} is a constant artifact argument; only "
            "outputs of earlier steps can be passed through the volume"
        )
    by_name = {t.get("name"): t for t in templates}
    for template in templates:
        tname, kind = template.get("name"), _kind(template)
        if kind is None:
            if _artifacts(template, "inputs") or _artifacts(template, "outputs"):
                problems.append(
                    f"template {tname!r} has artifacts but is not a container, script, DAG or steps template"
                )
            continue
        for side in ("inputs", "outputs"):
            for art in _artifacts(template, side):
                problems += _artifact_problems(template, side, art)
        if kind in _POD_KINDS:
            problems += _mount_problems(template)
            continue
        for art in _artifacts(template, "outputs"):
            if isinstance(art, Mapping) and isinstance(art.get("name"), str):
                problems += _ref_problems(
                    template, art.get("from"), f"output artifact {art['name']!r} of template {tname!r}"
                )
        for task in _tasks(template):
            if "templateRef" in task:
                problems.append(
                    f"task {task.get('name')!r} of {tname!r} uses templateRef; templates outside "
                    "this workflow cannot be rewritten"
                )
            elif task.get("template") not in by_name and task.get("inline") is None:
                problems.append(
                    f"task {task.get('name')!r} of {tname!r} calls unknown template {task.get('template')!r}"
                )
            for art in (task.get("arguments") or {}).get("artifacts") or []:
                problems += _argument_problems(template, task, art)
            if task.get("inline") is not None:
                problems.append(f"task {task.get('name')!r} of {tname!r} uses an inline template")
    if not problems:
        problems += _file_name_problems(templates, by_name)
    return problems


def _name(art: Any) -> Any:
    return art.get("name") if isinstance(art, Mapping) else art


def _artifact_problems(template: Mapping, side: str, art: Any) -> list[str]:
    tname, kind = template.get("name"), _kind(template)
    where = f"{side[:-1]} artifact {_name(art)!r} of template {tname!r}"
    if not isinstance(art, Mapping) or not isinstance(art.get("name"), str) or not art["name"]:
        return [f"template {tname!r} has an {side[:-1]} artifact without a name"]
    out = []
    sources = [s for s in _ARTIFACT_SOURCES if s in art]
    if sources:
        out.append(
            f"{where} takes a constant or external value ({sources[0]}); only outputs of earlier "
            "steps can be passed through the volume"
        )
    if art.get("globalName"):
        out.append(f"{where} is exported as global artifact {art['globalName']!r}")
    if "fromExpression" in art:
        out.append(f"{where} uses fromExpression")
    if kind in _POD_KINDS:
        path = art.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            out.append(f"{where} has no absolute path")
        elif posixpath.dirname(posixpath.normpath(path)) == "/":
            out.append(f"{where} sits directly in / ({path}); its directory cannot be a mount point")
    return out


def _mount_problems(template: Mapping) -> list[str]:
    body = template[_kind(template)]
    seen = {
        m.get("mountPath"): f"volume mount {m.get('name')!r}"
        for m in body.get("volumeMounts") or []
        if isinstance(m, Mapping)
    }
    out = []
    for side in ("inputs", "outputs"):
        for art in _artifacts(template, side):
            path = art.get("path") if isinstance(art, Mapping) else None
            if not isinstance(path, str) or not path.startswith("/"):
                continue
            directory = posixpath.dirname(posixpath.normpath(path))
            if directory in seen:
                # One directory can hold one mount, so two artifacts there cannot get separate subPaths.
                out.append(
                    f"{side[:-1]} artifact {art['name']!r} of template {template.get('name')!r} shares "
                    f"directory {directory} with {seen[directory]}"
                )
            seen[directory] = f"{side[:-1]} artifact {art['name']!r}"
    return out


def _argument_problems(template: Mapping, task: Mapping, art: Any) -> list[str]:
    where = f"argument {_name(art)!r} of task {task.get('name')!r} in {template.get('name')!r}"
    if not isinstance(art, Mapping) or not isinstance(art.get("name"), str):
        return [f"task {task.get('name')!r} in {template.get('name')!r} has an artifact argument without a name"]
    if "from" not in art:
        return [
            f"{where} is a constant artifact argument (raw or external data); only outputs of earlier "
            "steps can be passed through the volume"
        ]
    return _ref_problems(template, art["from"], where)


def _ref_problems(template: Mapping, ref: Any, where: str) -> list[str]:
    match = _FROM.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        return [
            f"{where} comes from {ref!r}; only one task's or step's output artifact, or an input artifact "
            "of the template, can be passed"
        ]
    producer, artifact = match.group(2), match.group(3)
    if producer is None:
        if artifact not in {_name(a) for a in _artifacts(template, "inputs")}:
            return [f"{where} refers to undeclared input artifact {artifact!r}"]
    elif producer not in {t.get("name") for t in _tasks(template)}:
        return [f"{where} refers to unknown task or step {producer!r}"]
    return []


def _file_name_problems(templates: list[dict], by_name: Mapping[Any, dict]) -> list[str]:
    """Follow every artifact edge and list consumers that would open another file name than was written."""
    # flow[(side, template, artifact)] = {(file name, "producer-template/artifact"), ...}, grown to a
    # fixpoint so nested DAGs and recursion carry names through any number of hops.
    flow: dict[tuple, set] = {}
    edges: list[tuple[tuple, tuple]] = []
    for template in templates:
        tname = template.get("name")
        if _kind(template) in _POD_KINDS:
            for art in _artifacts(template, "outputs"):
                flow[("outputs", tname, art["name"])] = {(posixpath.basename(art["path"]), f"{tname}/{art['name']}")}
            continue
        if _kind(template) not in _GRAPH_KINDS:
            continue
        callee = {t.get("name"): t.get("template") for t in _tasks(template)}
        for art in _artifacts(template, "outputs"):
            edges.append((_source(_FROM.fullmatch(str(art["from"])), tname, callee), ("outputs", tname, art["name"])))
        for task in _tasks(template):
            for art in (task.get("arguments") or {}).get("artifacts") or []:
                edges.append(
                    (
                        _source(_FROM.fullmatch(str(art["from"])), tname, callee),
                        ("inputs", task.get("template"), art["name"]),
                    )
                )
    changed = True
    while changed:
        changed = False
        for source, target in edges:
            new = flow.get(source, set()) - flow.get(target, set())
            if new:
                flow.setdefault(target, set()).update(new)
                changed = True
    out = []
    for template in templates:
        if _kind(template) not in _POD_KINDS:
            continue
        for art in _artifacts(template, "inputs"):
            wanted = posixpath.basename(art["path"])
            for written, producer in sorted(flow.get(("inputs", template.get("name"), art["name"]), ())):
                if written != wanted:
                    out.append(
                        f"template {template.get('name')!r} reads input artifact {art['name']!r} as file "
                        f"{wanted!r} but {producer} writes {written!r}; a consumer mounts its producer's "
                        "directory, so both must use one file name"
                    )
    return out


def _source(match: re.Match | None, tname: Any, callee: Mapping) -> tuple:
    assert match is not None, "every `from` was checked against _FROM before the graph is built"
    _scope, producer, artifact = match.groups()
    if producer is None:
        return ("inputs", tname, artifact)
    return ("outputs", callee.get(producer), artifact)
