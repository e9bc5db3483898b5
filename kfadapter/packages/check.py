"""Pure: check a v2 (IR) package the way every KFP version does, and fit it to a server older than its fields.

KFP answers an invalid package with 500 before 2.17 (the adapter would report 502), so the adapter checks what
KFP's upload checks (template/v2_template.go NewV2SpecTemplate, common/utils.go ValidatePipelineName) first
and answers 400 naming the problem on every version. A package compiled by a newer kfp SDK may hold fields the
server's pipeline-spec copy does not know (its strict parse refuses them): where an older field holds the same
value the newer one is left out, else a 400 names the field and the KFP version.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from kfadapter.core.errors import BadRequest
from kfadapter.packages import parsing as pl
from kfadapter.packages.names import check_ir_name

SCHEMA_VERSION = "2.1.0"  # the only IR schema KFP accepts
_SPEC_FIELDS = frozenset(
    {
        "pipelineInfo",
        "pipeline_info",
        "deploymentSpec",
        "deployment_spec",
        "sdkVersion",
        "sdk_version",
        "schemaVersion",
        "schema_version",
        "components",
        "root",
        "defaultPipelineRoot",
        "default_pipeline_root",
    }
)
# A newer field -> the older field the SDK writes beside it with the same value (ResourceSpec, AcceleratorConfig).
OLDER_TWIN = {
    "resourceCpuLimit": "cpuLimit",
    "resourceMemoryLimit": "memoryLimit",
    "resourceCpuRequest": "cpuRequest",
    "resourceMemoryRequest": "memoryRequest",
    "resourceType": "type",
    "resourceCount": "count",
}
# Values that are free-form data (protobuf Struct / Value): their keys are not spec fields.
_DATA_KEYS = frozenset({"defaultValue", "constant", "metadata", "runtimeValue", "config", "platforms"})


def _invalid(message: str, field: str) -> BadRequest:
    return BadRequest(f"invalid KFP v2 package: {message}", code="invalid_package", details={"field": field})


def ir_of(package: pl.Package) -> dict:
    """Return a v2 package's pipeline spec (unwrapped from `{pipeline_spec, platform_spec}`)."""
    wrapped = isinstance(package.spec.get("pipeline_spec"), dict)
    return package.spec["pipeline_spec"] if wrapped else package.spec


def validate_ir(ir: dict) -> None:
    """Raise BadRequest naming the first thing KFP's upload would refuse in this pipeline spec."""
    info = ir.get("pipelineInfo", ir.get("pipeline_info"))
    name = info.get("name") if isinstance(info, dict) else None
    check_ir_name(name if isinstance(name, str) else None)  # common/utils.go ValidatePipelineName (names.py)
    for key in ir:
        if key not in _SPEC_FIELDS:
            raise _invalid(f"unknown top-level field {key!r}", key)
    version = ir.get("schemaVersion", ir.get("schema_version"))
    if version != SCHEMA_VERSION:
        raise _invalid(f"schemaVersion is {version!r}; KFP accepts only {SCHEMA_VERSION!r}", "schemaVersion")
    root = ir.get("root")
    if not isinstance(root, dict) or not ({"dag", "executorLabel", "executor_label"} & root.keys()):
        raise _invalid("root must be a component with a dag or an executorLabel", "root")
    for section in ("components", "deploymentSpec"):
        if section in ir and not isinstance(ir[section], dict):
            raise _invalid(f"{section} must be an object", section)


def _walk(doc: Any, path: str = "") -> Iterator[tuple[str, dict, str]]:
    """Yield (path, the dict holding it, key) for every key in the spec tree, leaving free-form data alone."""
    if isinstance(doc, dict):
        for key, value in list(doc.items()):
            here = f"{path}.{key}" if path else str(key)
            yield here, doc, str(key)
            if key not in _DATA_KEYS:
                yield from _walk(value, here)
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from _walk(item, f"{path}[{i}]")


def fit_ir(ir: dict, unknown: frozenset[str], server: str) -> tuple[dict, list[str]]:
    """Return (a copy of `ir` without the newer fields whose older twin holds the value, the paths left out).

    Raise BadRequest (code `package_too_new`) naming the first field `server` does not know and that would be lost.
    """
    if not unknown:
        return ir, []
    fitted = copy.deepcopy(ir)
    dropped: list[str] = []
    for path, holder, key in list(_walk(fitted)):
        value = holder.get(key)
        if key == "parameterType" and value in unknown:
            raise _too_new(f"{path} = {value}", server)
        if key not in unknown:
            continue
        if OLDER_TWIN.get(key) in holder:
            del holder[key]
            dropped.append(path)
        else:
            raise _too_new(path, server)
    return fitted, dropped


def _too_new(field: str, server: str) -> BadRequest:
    return BadRequest(
        f"the package uses {field}, which {server} does not know and no older field of the package "
        "holds; compile it with an older kfp SDK (or without that feature) or upgrade KFP",
        code="package_too_new",
        details={"field": field, "kfp_version": server},
    )
