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

Three modules, one direction of imports (`volume_passing` -> `volume_rewrite` -> `volume_checks`):

- `volume_passing` (this one): the public entry points every caller imports from here: the `data_passing`
  and `volume` arguments, volume validation, `rewrite_workflow`/`rewrite_package` and the YAML output;
- `volume_rewrite`: the Argo rewrite itself (mounts, `-subpath` parameters, the marker annotation);
- `volume_checks`: the refusals, everything that stops a faithful rewrite, found before anything changes.

Pure: no Flask, no kfp, no I/O. Every refusal is a `BadRequest` with a machine code.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import IO, Any

import yaml

from kfadapter.core.errors import BadRequest
from kfadapter.packages.parsing import V1, Package
from kfadapter.packages.volume_checks import UNSUPPORTED
from kfadapter.packages.volume_rewrite import ANNOTATION, SUBPATH_SUFFIX, _rewrite

# ANNOTATION, SUBPATH_SUFFIX and UNSUPPORTED live in the lower modules and are re-exported here.
__all__ = [
    "ANNOTATION",
    "ARTIFACT",
    "DEFAULT_PATH_PREFIX",
    "DEFAULT_VOLUME_NAME",
    "METHODS",
    "SUBPATH_SUFFIX",
    "UNSUPPORTED",
    "V2_MESSAGE",
    "VOLUME",
    "apply_data_passing",
    "check_method",
    "check_volume",
    "claim_volume",
    "dump_workflow",
    "parse_volume",
    "rewrite_package",
    "rewrite_workflow",
]

ARTIFACT = "artifact"  # Argo artifacts through the artifact repository: the package is uploaded as it is
VOLUME = "volume"
METHODS = (ARTIFACT, VOLUME)
DEFAULT_VOLUME_NAME = "data-storage"
DEFAULT_PATH_PREFIX = "artifact_data"

V2_MESSAGE = "v2 pipelines pass data through the pipeline root; volume passing applies to v1 workflows"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Volume sources several pods can share. Per-pod (emptyDir, ephemeral) and read-only (configMap, secret,
# ...) sources cannot carry a file from one step to the next, so they are refused by name.
_SHARED_SOURCES = frozenset(
    {
        "persistentVolumeClaim",
        "nfs",
        "hostPath",
        "cephfs",
        "glusterfs",
        "csi",
        "azureFile",
        "azureDisk",
        "awsElasticBlockStore",
        "gcePersistentDisk",
        "cinder",
        "iscsi",
        "rbd",
        "fc",
        "flexVolume",
        "flocker",
        "portworxVolume",
        "quobyte",
        "scaleIO",
        "storageos",
        "vsphereVolume",
        "photonPersistentDisk",
    }
)
_UNSHARED_SOURCES = {
    "emptyDir": "lives only as long as one pod",
    "ephemeral": "lives only as long as one pod",
    "configMap": "is read-only",
    "secret": "is read-only",
    "downwardAPI": "is read-only",
    "projected": "is read-only",
    "gitRepo": "is a per-pod clone",
    "image": "is read-only",
}


def check_method(method: str | None) -> str:
    """Return the data-passing method (default `artifact`); raise BadRequest naming the accepted ones."""
    if method is None:
        return ARTIFACT
    if method not in METHODS:
        raise BadRequest(
            f"data_passing must be one of: {', '.join(METHODS)} (got {method!r})",
            code="invalid_data_passing",
            details={"field": "data_passing", "accepted": list(METHODS)},
        )
    return method


def parse_volume(text: str | None) -> dict:
    """Turn the `volume` argument, a PVC claim name or a JSON Kubernetes volume object, into a volume."""
    if text is None or not text.strip():
        raise _bad_volume(
            "data_passing=volume needs 'volume': a PersistentVolumeClaim name or a JSON Kubernetes volume object"
        )
    text = text.strip()
    if not text.startswith("{"):
        return claim_volume(text)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _bad_volume(f"'volume' is not valid JSON: {exc}") from None
    return check_volume(obj)


def claim_volume(claim: object) -> dict:
    """Build the volume for an existing PersistentVolumeClaim, named `DEFAULT_VOLUME_NAME`."""
    if not isinstance(claim, str) or not _DNS_SUBDOMAIN.fullmatch(claim):
        raise _bad_volume(
            f"{claim!r} is not a valid PersistentVolumeClaim name (lowercase letters, digits, '-' and '.', at most 253)"
        )
    return {"name": DEFAULT_VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim}}


def check_volume(obj: Any) -> dict:
    """Validate a Kubernetes volume object for data passing; return a copy with `name` first."""
    if not isinstance(obj, Mapping):
        raise _bad_volume(
            "'volume' must be a claim name or a JSON object such as "
            '{"name": "data", "persistentVolumeClaim": {"claimName": "my-pvc"}}'
        )
    name = obj.get("name", DEFAULT_VOLUME_NAME)
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        raise _bad_volume(
            f"volume name {name!r} is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63)"
        )
    sources = sorted(k for k in obj if k != "name")
    if len(sources) != 1:
        raise _bad_volume(
            f"a volume needs exactly one source (such as persistentVolumeClaim or nfs), got {sources or 'none'}"
        )
    source = sources[0]
    if source in _UNSHARED_SOURCES:
        raise _bad_volume(
            f"a volume of type {source} {_UNSHARED_SOURCES[source]}, so steps could not pass files "
            "through it; use a shared volume such as a ReadWriteMany persistentVolumeClaim"
        )
    if source not in _SHARED_SOURCES:
        raise _bad_volume(
            f"unknown volume source {source!r}; use one Kubernetes volume source such as "
            "persistentVolumeClaim, nfs or hostPath"
        )
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


def apply_data_passing(
    package: Package, data: bytes | IO[bytes], method: str | None, volume: str | None
) -> tuple[Package, bytes | IO[bytes]]:
    """Apply the upload's `data_passing`/`volume` arguments: the package and the bytes (or file) to upload."""
    method = check_method(method)
    if method == ARTIFACT:
        if volume is not None:
            # Ignoring it would upload a workflow that does not use the volume the caller named.
            raise _bad_volume("'volume' applies only with data_passing=volume")
        return package, data
    if package.kind != V1:
        raise BadRequest(V2_MESSAGE, code=UNSUPPORTED, details={"pipeline_kind": package.kind})
    return rewrite_package(package, parse_volume(volume))


def rewrite_package(
    package: Package, volume: Mapping, *, path_prefix: str = DEFAULT_PATH_PREFIX
) -> tuple[Package, bytes]:
    """Rewrite a v1 package to pass data through `volume`; return the new package and its YAML bytes."""
    if package.kind != V1:
        raise BadRequest(V2_MESSAGE, code=UNSUPPORTED, details={"pipeline_kind": package.kind})
    workflow = rewrite_workflow(package.spec, volume, path_prefix=path_prefix)
    # Whatever the upload's container (zip, tar.gz), the rewritten workflow goes to KFP as one YAML file.
    return Package(V1, workflow, "yaml", package.name), dump_workflow(workflow)


def dump_workflow(workflow: Mapping) -> bytes:
    """Serialize a workflow as YAML, keeping key order, so equal inputs give equal bytes."""
    return yaml.dump(
        workflow, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    ).encode()


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
        raise BadRequest(
            f"the workflow is malformed ({type(exc).__name__}: {exc}); volume passing needs a "
            "well-formed Argo workflow",
            code="invalid_package",
        ) from None


def _check_prefix(prefix: str) -> str:
    parts = prefix.strip("/").split("/") if isinstance(prefix, str) else []
    if (
        not isinstance(prefix, str)
        or prefix.startswith("/")
        or not prefix.strip("/")
        or any(p in ("", ".", "..") or "{" in p for p in parts)
    ):
        raise BadRequest(
            f"the path prefix must be a relative path inside the volume, got {prefix!r}",
            code="invalid_volume",
            details={"field": "path_prefix"},
        )
    return "/".join(parts)
