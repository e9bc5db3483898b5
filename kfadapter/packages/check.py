"""Pure: check a v2 (IR) package the way every KFP version does, and fit it to a server older than its fields.

KFP answers an invalid package with 500 before 2.17 (the adapter would report 502), so the adapter checks what
KFP's upload checks (template/v2_template.go NewV2SpecTemplate, common/utils.go ValidatePipelineName) first
and answers 400 naming the problem on every version. A package compiled by a newer kfp SDK may hold fields the
server's pipeline-spec copy does not know:
- in the typed parts (components, root, tasks) its strict parse refuses them ("unknown template format"): a 400
  `package_too_new` names the field and the KFP version;
- inside `deploymentSpec`, a google.protobuf.Struct, every version accepts them, and a version older than the
  fields drops them at run time (compiler/visitor.go decodes it with AllowUnknownFields). For resource limits
  that matters: KFP 2.3 reads only `cpuLimit`, `memoryLimit`, `cpuRequest`, `memoryRequest` and
  `accelerator.type/count` (v2/driver/driver.go), while kfp SDK 2.10-2.12 write only `resourceCpuLimit` ...
  So for such a server a constant is copied into the old numeric field (as SDK >= 2.13 does itself), and a
  limit set from a pipeline parameter, which it would silently not apply, is a 400 `kfp_would_ignore`.
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
# A newer field -> the older field the SDK writes beside it for constants (ResourceSpec, AcceleratorConfig).
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
_STRUCT_SECTIONS = frozenset({"deploymentSpec", "deployment_spec"})  # google.protobuf.Struct at every version
_PLACEHOLDER = "{{$"  # a value the driver resolves at run time (a pipeline parameter or a task output)
# Quantity suffixes as kfp's compiler_utils._memory_to_float reads them; the old fields hold gigabytes (1e9).
_MEMORY_UNITS = {
    "Ei": 2**60, "Pi": 2**50, "Ti": 2**40, "Gi": 2**30, "Mi": 2**20, "Ki": 2**10,
    "E": 10**18, "P": 10**15, "T": 10**12, "G": 10**9, "M": 10**6, "K": 10**3,
}  # fmt: skip


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


def fit_ir(ir: dict, unknown: frozenset[str], server: str, old_resources: bool = False) -> tuple[dict, list[str]]:
    """Return (`ir` fitted to `server`, what was changed): a copy when something changed, else `ir` itself.

    `unknown`: typed-part fields and enum values the server refuses (a 400 `package_too_new` naming the first);
    `old_resources`: the server applies only the old numeric resource fields (see the module docstring).
    """
    for path, holder, key in _walk(_typed_parts(ir)):
        value = holder.get(key)
        if key == "parameterType" and value in unknown:
            raise _too_new(f"{path} = {value}", server)
        if key in unknown:
            raise _too_new(path, server)
    if not old_resources:
        return ir, []
    fitted = copy.deepcopy(ir)
    changed: list[str] = []
    executors = (fitted.get("deploymentSpec") or {}).get("executors") or {}
    for label, executor in executors.items() if isinstance(executors, dict) else []:
        resources = ((executor or {}).get("container") or {}).get("resources") if isinstance(executor, dict) else None
        if not isinstance(resources, dict):
            continue
        where = f"deploymentSpec.executors.{label}.container.resources"
        changed += _old_fields(resources, where, server)
        if isinstance(resources.get("accelerator"), dict):
            changed += _old_fields(resources["accelerator"], f"{where}.accelerator", server)
    return (fitted, changed) if changed else (ir, [])


def _typed_parts(ir: dict) -> dict:
    return {k: v for k, v in ir.items() if k not in _STRUCT_SECTIONS}


def _old_fields(holder: dict, where: str, server: str) -> list[str]:
    """Fill the old field of each newer resource field that has none; the paths written."""
    written = []
    for new, old in OLDER_TWIN.items():
        if new not in holder or old in holder:
            continue
        value = holder[new]
        if isinstance(value, str) and _PLACEHOLDER in value:
            raise BadRequest(
                f"the package sets {where}.{new} from a pipeline parameter ({value}); {server} would accept it but "
                f"not apply it (it reads only {old}): set a constant value, or upgrade KFP",
                code="kfp_would_ignore",
                details={"field": f"{where}.{new}", "kfp_version": server},
            )
        holder[old] = _old_value(new, value, f"{where}.{new}")
        written.append(f"{where}.{old}")
    return written


def _old_value(field: str, value: Any, path: str) -> Any:
    """The old field's value for a constant, converted as kfp's compiler does (cores, gigabytes, a count)."""
    text = str(value).strip()
    try:
        if field in ("resourceCpuLimit", "resourceCpuRequest"):
            return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        if field in ("resourceMemoryLimit", "resourceMemoryRequest"):
            for suffix, factor in _MEMORY_UNITS.items():
                if text.endswith(suffix):
                    return float(text[: -len(suffix)]) * factor / 10**9
            return float(text) / 10**9
        if field == "resourceCount":
            return int(text)
    except ValueError:
        raise _invalid(f"{path} is not a Kubernetes quantity: {text!r}", path) from None
    return text  # resourceType: the accelerator's resource name


def _too_new(field: str, server: str) -> BadRequest:
    return BadRequest(
        f"the package uses {field}, which {server} does not know (its upload would refuse the package); compile "
        "it with an older kfp SDK (or without that feature) or upgrade KFP",
        code="package_too_new",
        details={"field": field, "kfp_version": server},
    )
