"""Volume-based data passing for v1 (Argo) workflows: files move through one shared volume, not artifacts.

A kfp 1.x workflow passes every file between steps as an Argo artifact, which needs an artifact repository
and copies each file through it. `rewrite_workflow` turns such a workflow into one where each artifact is a
directory on a single shared volume:

- a container (or script) template mounts the volume at each output artifact's directory, under a subPath
  unique to the execution (`<prefix>/{{workflow.uid}}/{{pod.name}}/<artifact>`), and publishes that subPath
  as the output parameter `<artifact>-subpath`;
- it mounts each input artifact's directory read-only from the subPath it receives in the input parameter
  `<artifact>-subpath`;
- DAG and steps templates pass those `-subpath` parameters where they passed artifacts;
- the volume is added to `spec.volumes` and the workflow is marked with the annotation `ANNOTATION`.

Choices (the README's "Volume data passing" says the same):

- Refused, never warned: a workflow the rewrite could only turn into one that fails at run time (constant
  artifact arguments, a consumer reading another file name than its producer writes, artifacts outside a
  container, script, DAG or steps template, ...). Warnings would reach nobody: the caller is an HTTP client.
- File names are checked per data-flow edge, not globally: a consumer mounts its producer's directory, so
  the file it opens must have the name the producer wrote. Two unrelated artifacts may use different names.
- A second rewrite with the same volume and prefix is a no-op (same bytes out); with another volume or
  prefix it is refused, because silently keeping the first volume would ignore the request.

Pure: no Flask, no kfp, no I/O. Every refusal is a `BadRequest` with a machine code.
"""
from __future__ import annotations

import copy
import json
import posixpath
import re
from typing import Any, Iterator, Mapping

import yaml

from .errors import BadRequest
from .pipelines import V1, Package

ARTIFACT = "artifact"  # Argo artifacts through the artifact repository: the package is uploaded as it is
VOLUME = "volume"
METHODS = (ARTIFACT, VOLUME)
DEFAULT_VOLUME_NAME = "data-storage"
DEFAULT_PATH_PREFIX = "artifact_data"
SUBPATH_SUFFIX = "-subpath"
ANNOTATION = "kfadapter/volume-data-passing"

UNSUPPORTED = "volume_passing_unsupported"
V2_MESSAGE = "v2 pipelines pass data through the pipeline root; volume passing applies to v1 workflows"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Volume sources several pods can share. Per-pod (emptyDir, ephemeral) and read-only (configMap, secret,
# ...) sources cannot carry a file from one step to the next, so they are refused by name.
_SHARED_SOURCES = frozenset({
    "persistentVolumeClaim", "nfs", "hostPath", "cephfs", "glusterfs", "csi", "azureFile", "azureDisk",
    "awsElasticBlockStore", "gcePersistentDisk", "cinder", "iscsi", "rbd", "fc", "flexVolume", "flocker",
    "portworxVolume", "quobyte", "scaleIO", "storageos", "vsphereVolume", "photonPersistentDisk",
})
_UNSHARED_SOURCES = {
    "emptyDir": "lives only as long as one pod", "ephemeral": "lives only as long as one pod",
    "configMap": "is read-only", "secret": "is read-only", "downwardAPI": "is read-only",
    "projected": "is read-only", "gitRepo": "is a per-pod clone", "image": "is read-only",
}
# Where an artifact can get its content from other than a producing step: a constant (raw) or a location.
_ARTIFACT_SOURCES = ("raw", "s3", "http", "git", "gcs", "oss", "hdfs", "artifactory", "azure")
# One reference to a producer's or the template's own input artifact, the only `from` kfp 1.x writes.
_FROM = re.compile(r"\{\{\s*((?:tasks|steps)\.([^.{}\s]+)\.outputs|inputs)\.artifacts\.([^.{}\s]+)\s*\}\}")
_LEFTOVER = re.compile(r"\{\{[^{}]*\b(?:inputs|outputs)\.artifacts\b[^{}]*\}\}")
_POD_KINDS = ("container", "script")
_GRAPH_KINDS = ("dag", "steps")


def check_method(method: str | None) -> str:
    """Return the data-passing method (default `artifact`); raise BadRequest naming the accepted ones."""
    if method is None:
        return ARTIFACT
    if method not in METHODS:
        raise BadRequest(f"data_passing must be one of: {', '.join(METHODS)} (got {method!r})",
                         code="invalid_data_passing", details={"field": "data_passing", "accepted": list(METHODS)})
    return method


def parse_volume(text: str | None) -> dict:
    """Turn the `volume` argument, a PVC claim name or a JSON Kubernetes volume object, into a volume."""
    if text is None or not text.strip():
        raise _bad_volume("data_passing=volume needs 'volume': a PersistentVolumeClaim name or a JSON "
                          "Kubernetes volume object")
    text = text.strip()
    if not text.startswith("{"):
        return claim_volume(text)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _bad_volume(f"'volume' is not valid JSON: {exc}") from None
    return check_volume(obj)


def claim_volume(claim: str) -> dict:
    """Build the volume for an existing PersistentVolumeClaim, named `DEFAULT_VOLUME_NAME`."""
    if not isinstance(claim, str) or not _DNS_SUBDOMAIN.fullmatch(claim):
        raise _bad_volume(f"{claim!r} is not a valid PersistentVolumeClaim name (lowercase letters, digits, "
                          "'-' and '.', at most 253)")
    return {"name": DEFAULT_VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim}}


def check_volume(obj: Any) -> dict:
    """Validate a Kubernetes volume object for data passing; return a copy with `name` first."""
    if not isinstance(obj, Mapping):
        raise _bad_volume("'volume' must be a claim name or a JSON object such as "
                          '{"name": "data", "persistentVolumeClaim": {"claimName": "my-pvc"}}')
    name = obj.get("name", DEFAULT_VOLUME_NAME)
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        raise _bad_volume(f"volume name {name!r} is not a valid Kubernetes name (lowercase letters, digits and "
                          "'-', at most 63)")
    sources = sorted(k for k in obj if k != "name")
    if len(sources) != 1:
        raise _bad_volume(f"a volume needs exactly one source (such as persistentVolumeClaim or nfs), "
                          f"got {sources or 'none'}")
    source = sources[0]
    if source in _UNSHARED_SOURCES:
        raise _bad_volume(f"a volume of type {source} {_UNSHARED_SOURCES[source]}, so steps could not pass files "
                          "through it; use a shared volume such as a ReadWriteMany persistentVolumeClaim")
    if source not in _SHARED_SOURCES:
        raise _bad_volume(f"unknown volume source {source!r}; use one Kubernetes volume source such as "
                          "persistentVolumeClaim, nfs or hostPath")
    body = obj[source]
    if not isinstance(body, Mapping):
        raise _bad_volume(f"the {source} of the volume must be an object")
    if body.get("readOnly") is True:
        raise _bad_volume("the volume is read-only, but producing steps must write to it")
    if source == "persistentVolumeClaim":
        claim_volume(body.get("claimName"))  # the same check as a bare claim name
    return {"name": name, source: copy.deepcopy(dict(body))}


def _bad_volume(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_volume", details={"field": "volume"})


def apply_data_passing(package: Package, data: bytes, method: str | None,
                       volume: str | None) -> tuple[Package, bytes]:
    """Apply the upload's `data_passing`/`volume` arguments: the package and bytes to upload."""
    method = check_method(method)
    if method == ARTIFACT:
        if volume is not None:
            # Ignoring it would upload a workflow that does not use the volume the caller named.
            raise _bad_volume("'volume' applies only with data_passing=volume")
        return package, data
    if package.kind != V1:
        raise BadRequest(V2_MESSAGE, code=UNSUPPORTED, details={"pipeline_kind": package.kind})
    return rewrite_package(package, parse_volume(volume))


def rewrite_package(package: Package, volume: Mapping, *,
                    path_prefix: str = DEFAULT_PATH_PREFIX) -> tuple[Package, bytes]:
    """Rewrite a v1 package to pass data through `volume`; return the new package and its YAML bytes."""
    if package.kind != V1:
        raise BadRequest(V2_MESSAGE, code=UNSUPPORTED, details={"pipeline_kind": package.kind})
    workflow = rewrite_workflow(package.spec, volume, path_prefix=path_prefix)
    # Whatever the upload's container (zip, tar.gz), the rewritten workflow goes to KFP as one YAML file.
    return Package(V1, workflow, "yaml", package.name), dump_workflow(workflow)


def dump_workflow(workflow: Mapping) -> bytes:
    """Serialize a workflow as YAML, keeping key order, so equal inputs give equal bytes."""
    return yaml.dump(workflow, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=4096).encode()


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe YAML dumper that writes multi-line strings (component sources) as readable literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted scalar by itself when a block cannot represent the text exactly.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


def rewrite_workflow(workflow: Mapping, volume: Mapping, *, path_prefix: str = DEFAULT_PATH_PREFIX) -> dict:
    """Return a copy of a v1 Argo workflow that passes files through `volume` instead of artifacts."""
    volume = check_volume(volume)
    prefix = _check_prefix(path_prefix)
    if workflow.get("kind") != "Workflow" or not isinstance(workflow.get("spec"), Mapping):
        raise BadRequest("volume passing applies to v1 Argo workflows (kind: Workflow)", code=UNSUPPORTED)
    wf = copy.deepcopy(dict(workflow))  # the caller's dict is never touched
    try:
        return _rewrite(wf, volume, prefix)
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        # The checks above cover what kfp 1.x writes; a hand-made workflow of the wrong shape (a string where
        # Argo wants a list, ...) must still be a 400 about the package, never a 500.
        raise BadRequest(f"the workflow is malformed ({type(exc).__name__}: {exc}); volume passing needs a "
                         "well-formed Argo workflow", code="invalid_package") from None


def _rewrite(wf: dict, volume: dict, prefix: str) -> dict:
    spec = wf["spec"]
    marker = {"path_prefix": prefix, "volume": volume["name"]}
    done = _marker_of(wf)
    if done is not None:
        used = next((v for v in spec.get("volumes") or [] if isinstance(v, Mapping)
                     and v.get("name") == done.get("volume")), None)
        if done == marker and used == volume:
            return wf  # already rewritten exactly so: a no-op keeps the rewrite idempotent
        raise BadRequest("the workflow already passes data through volume "
                         f"{done.get('volume')!r} (prefix {done.get('path_prefix')!r}); rewrite the original "
                         "workflow instead", code="already_rewritten", details={"rewritten_with": done})
    templates = spec.get("templates")
    if not isinstance(templates, list) or not all(isinstance(t, dict) for t in templates):
        raise BadRequest("the workflow has no list of templates", code=UNSUPPORTED)
    _check_volume_name_free(spec, templates, volume["name"])

    problems = _problems(spec, templates)
    if problems:
        raise BadRequest("cannot pass data through a volume: " + "; ".join(problems), code=UNSUPPORTED,
                         details={"problems": problems})
    for template in templates:
        if _kind(template) in _POD_KINDS:
            _rewrite_pod(template, volume["name"], prefix)
        elif _kind(template) in _GRAPH_KINDS:
            _rewrite_graph(template)
    leftovers = sorted({m.group(0) for t in templates
                        for m in _LEFTOVER.finditer(json.dumps(_without_meta(t), default=str))})
    if leftovers:
        # Argo would reject (or fail on) a reference to an artifact that no longer exists.
        raise BadRequest("cannot pass data through a volume: the workflow still refers to artifacts: "
                         + ", ".join(leftovers), code=UNSUPPORTED, details={"problems": leftovers})
    spec.setdefault("volumes", []).append(volume)
    annotations = wf.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[ANNOTATION] = json.dumps(marker, sort_keys=True)
    return wf


def _check_prefix(prefix: str) -> str:
    parts = prefix.strip("/").split("/") if isinstance(prefix, str) else []
    if (not isinstance(prefix, str) or prefix.startswith("/") or not prefix.strip("/")
            or any(p in ("", ".", "..") or "{" in p for p in parts)):
        raise BadRequest(f"the path prefix must be a relative path inside the volume, got {prefix!r}",
                         code="invalid_volume", details={"field": "path_prefix"})
    return "/".join(parts)


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
    taken += [(c.get("metadata") or {}).get("name") for c in spec.get("volumeClaimTemplates") or []
              if isinstance(c, Mapping)]
    if name in taken:
        raise BadRequest(f"the workflow already has a volume named {name!r}; give the data volume another "
                         "name", code="invalid_volume", details={"field": "volume", "name": name})


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


def _without_meta(template: Mapping) -> dict:
    # Template metadata holds kfp's component_spec annotation: JSON text, not Argo expressions.
    return {k: v for k, v in template.items() if k != "metadata"}


def _problems(spec: Mapping, templates: list[dict]) -> list[str]:
    """List everything that stops a faithful rewrite (empty: the rewrite is safe)."""
    problems: list[str] = []
    for art in (spec.get("arguments") or {}).get("artifacts") or []:
        problems.append(f"workflow argument artifact {_name(art)!r} is a constant artifact argument; only "
                        "outputs of earlier steps can be passed through the volume")
    by_name = {t.get("name"): t for t in templates}
    for template in templates:
        tname, kind = template.get("name"), _kind(template)
        if kind is None:
            if _artifacts(template, "inputs") or _artifacts(template, "outputs"):
                problems.append(f"template {tname!r} has artifacts but is not a container, script, DAG or "
                                "steps template")
            continue
        for side in ("inputs", "outputs"):
            for art in _artifacts(template, side):
                problems += _artifact_problems(template, side, art)
        if kind in _POD_KINDS:
            problems += _mount_problems(template)
            continue
        for art in _artifacts(template, "outputs"):
            if isinstance(art, Mapping) and isinstance(art.get("name"), str):
                problems += _ref_problems(template, art.get("from"),
                                          f"output artifact {art['name']!r} of template {tname!r}")
        for task in _tasks(template):
            if "templateRef" in task:
                problems.append(f"task {task.get('name')!r} of {tname!r} uses templateRef; templates outside "
                                "this workflow cannot be rewritten")
            elif task.get("template") not in by_name and task.get("inline") is None:
                problems.append(f"task {task.get('name')!r} of {tname!r} calls unknown template "
                                f"{task.get('template')!r}")
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
        out.append(f"{where} takes a constant or external value ({sources[0]}); only outputs of earlier "
                   "steps can be passed through the volume")
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
    seen = {m.get("mountPath"): f"volume mount {m.get('name')!r}" for m in body.get("volumeMounts") or []
            if isinstance(m, Mapping)}
    out = []
    for side in ("inputs", "outputs"):
        for art in _artifacts(template, side):
            path = art.get("path") if isinstance(art, Mapping) else None
            if not isinstance(path, str) or not path.startswith("/"):
                continue
            directory = posixpath.dirname(posixpath.normpath(path))
            if directory in seen:
                # One directory can hold one mount, so two artifacts there cannot get separate subPaths.
                out.append(f"{side[:-1]} artifact {art['name']!r} of template {template.get('name')!r} shares "
                           f"directory {directory} with {seen[directory]}")
            seen[directory] = f"{side[:-1]} artifact {art['name']!r}"
    return out


def _argument_problems(template: Mapping, task: Mapping, art: Any) -> list[str]:
    where = f"argument {_name(art)!r} of task {task.get('name')!r} in {template.get('name')!r}"
    if not isinstance(art, Mapping) or not isinstance(art.get("name"), str):
        return [f"task {task.get('name')!r} in {template.get('name')!r} has an artifact argument without a name"]
    if "from" not in art:
        return [f"{where} is a constant artifact argument (raw or external data); only outputs of earlier "
                "steps can be passed through the volume"]
    return _ref_problems(template, art["from"], where)


def _ref_problems(template: Mapping, ref: Any, where: str) -> list[str]:
    match = _FROM.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        return [f"{where} comes from {ref!r}; only one task's or step's output artifact, or an input artifact "
                "of the template, can be passed"]
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
                flow[("outputs", tname, art["name"])] = {(posixpath.basename(art["path"]),
                                                          f"{tname}/{art['name']}")}
            continue
        if _kind(template) not in _GRAPH_KINDS:
            continue
        callee = {t.get("name"): t.get("template") for t in _tasks(template)}
        for art in _artifacts(template, "outputs"):
            edges.append((_source(_FROM.fullmatch(str(art["from"])), tname, callee), ("outputs", tname, art["name"])))
        for task in _tasks(template):
            for art in (task.get("arguments") or {}).get("artifacts") or []:
                edges.append((_source(_FROM.fullmatch(str(art["from"])), tname, callee),
                              ("inputs", task.get("template"), art["name"])))
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
                    out.append(f"template {template.get('name')!r} reads input artifact {art['name']!r} as file "
                               f"{wanted!r} but {producer} writes {written!r}; a consumer mounts its producer's "
                               "directory, so both must use one file name")
    return out


def _source(match: re.Match, tname: Any, callee: Mapping) -> tuple:
    scope, producer, artifact = match.groups()
    if producer is None:
        return ("inputs", tname, artifact)
    return ("outputs", callee.get(producer), artifact)


def _param_ref(match: re.Match) -> str:
    return "{{" + match.group(1) + ".parameters." + match.group(3) + SUBPATH_SUFFIX + "}}"


def _add_parameters(holder: dict, items: list[dict], where: str) -> None:
    params = holder.setdefault("parameters", [])
    names = {p.get("name") for p in params if isinstance(p, Mapping)}
    for item in items:
        if item["name"] in names:
            raise BadRequest(f"cannot pass data through a volume: {where} already has a parameter named "
                             f"{item['name']!r}", code=UNSUPPORTED)
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
        mounts.append({"name": volume_name, "mountPath": posixpath.dirname(posixpath.normpath(art["path"])),
                       "subPath": "{{inputs.parameters." + param + "}}", "readOnly": True})
        paths["{{inputs.artifacts." + art["name"] + ".path}}"] = art["path"]
    for art in outputs:
        # {{pod.name}} differs per execution (loop iteration, retry), {{workflow.uid}} per run: no two
        # executions share a directory, and one run's data can be removed as one tree.
        sub_path = f"{prefix}/{{{{workflow.uid}}}}/{{{{pod.name}}}}/{art['name']}"
        out_params.append({"name": art["name"] + SUBPATH_SUFFIX, "value": sub_path})
        mounts.append({"name": volume_name, "mountPath": posixpath.dirname(posixpath.normpath(art["path"])),
                       "subPath": sub_path})
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
        _add_parameters(template["inputs"], [{"name": a["name"] + SUBPATH_SUFFIX} for a in inputs],
                        f"template {tname!r} inputs")
    if outputs:
        del template["outputs"]["artifacts"]
        _add_parameters(template["outputs"],
                        [{"name": a["name"] + SUBPATH_SUFFIX,
                          "valueFrom": {"parameter": _param_ref(_FROM.fullmatch(str(a["from"])))}}
                         for a in outputs], f"template {tname!r} outputs")
    for task in _tasks(template):
        args = (task.get("arguments") or {}).get("artifacts")
        if not args:
            continue
        del task["arguments"]["artifacts"]
        _add_parameters(task["arguments"],
                        [{"name": a["name"] + SUBPATH_SUFFIX, "value": _param_ref(_FROM.fullmatch(str(a["from"])))}
                         for a in args], f"task {task.get('name')!r} of {tname!r} arguments")


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
