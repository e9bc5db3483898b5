"""Pure pipeline logic: package sniffing, declared parameters, argument mapping and version numbers.

No Flask, no kfp, no I/O: everything here is a function of its inputs and is tested directly.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, TypeGuard

import yaml

from kfadapter.core.errors import BadRequest, PayloadTooLarge
from kfadapter.core.limits import LimitExceeded, Limits, check_yaml
from kfadapter.packages import containers

V2 = "v2"  # KFP 2.x compiler: pipeline IR
V1 = "v1"  # KFP 1.x compiler: Argo Workflow

# kfp 1.x type names -> KFP v2 parameterType (kfp-facts.md, "Pipeline packages and parameters").
V1_TYPES = {
    "integer": "NUMBER_INTEGER",
    "int": "NUMBER_INTEGER",
    "float": "NUMBER_DOUBLE",
    "double": "NUMBER_DOUBLE",
    "boolean": "BOOLEAN",
    "bool": "BOOLEAN",
    "string": "STRING",
    "str": "STRING",
    "jsonobject": "STRUCT",
    "dict": "STRUCT",
    "jsonarray": "LIST",
    "list": "LIST",
}
_SUFFIX = {"yaml": ".yaml", "zip": ".zip", "tar.gz": ".tar.gz"}


@dataclass(frozen=True)
class Package:
    """A validated pipeline package: its kind, parsed spec and the file suffix KFP needs to see."""

    kind: str
    spec: dict
    container: str  # "yaml" (YAML or JSON text), "zip" or "tar.gz"
    name: str | None

    @property
    def suffix(self) -> str:
        """Return the file-name suffix that makes KFP parse the package in the right format."""
        return _SUFFIX[self.container]


@dataclass(frozen=True)
class Parameter:
    """One declared pipeline input parameter."""

    name: str
    type: str
    default: Any = None
    optional: bool = False
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Render as the JSON object the API returns."""
        out = {"name": self.name, "type": self.type, "default": self.default, "optional": self.optional}
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class RunArguments:
    """The parameters for a run, converted to what KFP expects, and what was left out."""

    values: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)


_DEFAULT_LIMITS = Limits()


def load_package(data: bytes | IO[bytes], limits: Limits = _DEFAULT_LIMITS) -> Package:
    """Sniff and parse an uploaded package within `limits`; raise BadRequest unless it is a v2 IR or v1 Argo.

    `data` is the package's bytes or a seekable binary file: a YAML or JSON file is parsed as it is read, so
    the upload itself is never held in memory (a zip or tar.gz is read whole: it is small, and its one file
    is inflated into memory within the caps either way).
    """
    head, size = containers.sniff(data)
    if not size:
        raise BadRequest("the uploaded file is empty", code="invalid_package")
    if size > limits.package_bytes:
        raise PayloadTooLarge("the uploaded file is larger than 32 MiB, the most KFP accepts")
    text: bytes | IO[bytes]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip, or an empty one
        container, text = "zip", containers.single_zip_member(containers.whole(data), limits)
    elif head[:2] == b"\x1f\x8b":
        container, text = "tar.gz", containers.single_tar_member(containers.whole(data), limits)
    else:
        container, text = "yaml", data
    docs = _parse_documents(text, limits)
    spec = docs[0]
    if _is_ir(spec):
        if len(docs) > 1 and isinstance(docs[1], dict) and "platforms" in docs[1]:
            spec = {"pipeline_spec": docs[0], "platform_spec": docs[1]}
        name = (docs[0].get("pipelineInfo") or {}).get("name")
        return Package(V2, spec, container, name)
    if _is_argo(spec):
        meta = spec.get("metadata") or {}
        return Package(V1, spec, container, meta.get("name") or meta.get("generateName"))
    raise BadRequest(
        "the uploaded file is neither a KFP v2 pipeline (pipelineInfo, root) nor a "
        "KFP v1 Argo Workflow (kind: Workflow)",
        code="invalid_package",
    )


def _parse_documents(text: bytes | IO[bytes], limits: Limits) -> list[Any]:
    try:
        check_yaml(text, limits)  # aliases, expanded size and depth, before anything is built
        if not isinstance(text, bytes):
            text.seek(0)
        docs = [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d is not None]
    except LimitExceeded as exc:
        raise BadRequest(
            f"the uploaded file is refused: {exc.message}", code="invalid_package", details=exc.details
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadRequest(f"the uploaded file is not valid YAML or JSON: {reason}", code="invalid_package") from None
    if not docs or not isinstance(docs[0], dict):
        raise BadRequest("the uploaded file does not hold a YAML or JSON object", code="invalid_package")
    return docs


def _is_ir(doc: Mapping) -> bool:
    return isinstance(doc.get("pipelineInfo"), dict) and isinstance(doc.get("root"), dict)


def _is_argo(doc: Mapping) -> bool:
    return doc.get("kind") == "Workflow" and isinstance(doc.get("spec"), dict)


def spec_kind(spec: Mapping | None) -> str | None:
    """Tell whether a version's `pipeline_spec` (as KFP returns it) is v2 IR, v1 Argo or unknown."""
    if not isinstance(spec, Mapping):
        return None
    if isinstance(spec.get("pipeline_spec"), Mapping):
        spec = spec["pipeline_spec"]
    if _is_ir(spec):
        return V2
    if _is_argo(spec):
        return V1
    return None


def parameters_of(spec: Mapping | None) -> list[Parameter]:
    """List the declared input parameters of a version's `pipeline_spec` (IR, wrapped IR or Argo)."""
    kind = spec_kind(spec)
    if spec is None:
        return []
    if kind == V2:
        ir = spec["pipeline_spec"] if isinstance(spec.get("pipeline_spec"), Mapping) else spec
        return _ir_parameters(ir)
    if kind == V1:
        return _argo_parameters(spec)
    return []


def _ir_parameters(ir: Mapping) -> list[Parameter]:
    declared = ((ir.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    out = []
    for name, d in declared.items():
        ptype = d.get("parameterType") or "STRING"
        default = d.get("defaultValue")
        if ptype == "NUMBER_INTEGER" and isinstance(default, float) and default.is_integer():
            default = int(default)  # the compiler writes integer defaults as floats (3.0)
        out.append(
            Parameter(name, ptype, default, bool(d.get("isOptional")) or "defaultValue" in d, d.get("description"))
        )
    return out


def _argo_parameters(wf: Mapping) -> list[Parameter]:
    annotations = (wf.get("metadata") or {}).get("annotations") or {}
    raw_spec = annotations.get("pipelines.kubeflow.org/pipeline_spec")
    inputs = None
    if raw_spec:
        try:
            inputs = json.loads(raw_spec).get("inputs")
        except (ValueError, AttributeError):
            inputs = None
    if inputs is None:
        # Without the kfp annotation the workflow's own arguments are all we know: strings.
        args = ((wf.get("spec") or {}).get("arguments") or {}).get("parameters") or []
        return [Parameter(a["name"], "STRING", a.get("value"), "value" in a) for a in args if "name" in a]
    out = []
    for item in inputs:
        ptype = V1_TYPES.get(str(item.get("type", "String")).lower(), "STRING")
        default = item.get("default")
        if default is not None:
            try:
                default = convert_value(ptype, default)
            except ValueError:
                pass  # keep the text as the compiler wrote it
        out.append(
            Parameter(
                item["name"], ptype, default, bool(item.get("optional")) or "default" in item, item.get("description")
            )
        )
    return out


def convert_value(ptype: str, raw: Any) -> Any:
    """Convert a caller's value (usually a string) to the JSON type KFP v2 checks for `ptype`."""
    if ptype == "STRING":
        if isinstance(raw, str):
            return raw
        return json.dumps(raw) if isinstance(raw, (dict, list)) else str(raw)
    if ptype == "NUMBER_INTEGER":
        if isinstance(raw, bool):
            raise ValueError("expected an integer")
        if isinstance(raw, int):
            return raw
        try:
            number = float(str(raw).strip()) if not isinstance(raw, float) else raw
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not math.isfinite(number) or not number.is_integer():
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(number)
    if ptype == "NUMBER_DOUBLE":
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        try:
            number = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return number
    if ptype == "BOOLEAN":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if ptype in ("LIST", "STRUCT"):
        want = list if ptype == "LIST" else dict
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except ValueError:
                raise ValueError(f"expected a JSON {'array' if want is list else 'object'}, got {raw!r}") from None
        if not isinstance(value, want):
            raise ValueError(f"expected a JSON {'array' if want is list else 'object'}, got {raw!r}")
        return value
    # TASK_FINAL_STATUS / TASK_CONFIG and future kinds: pass through untouched.
    return raw


def build_arguments(
    params: Iterable[Parameter], given: Mapping[str, Any], *, trainingjob_id: str, mapping: Mapping[str, str], kind: str
) -> RunArguments:
    """Map a caller's arguments onto the declared parameters; raise BadRequest naming every problem.

    Declared parameters the caller gave are converted by type. Declared parameters the caller did not
    give are derived from `mapping` when every field its template names is known. Undeclared arguments
    are reported as ignored (KFP v2 rejects unknown names). v1 values go to KFP as text.
    """
    params = list(params)
    declared = {p.name for p in params}
    context = {k: v if isinstance(v, str) else json.dumps(v) for k, v in given.items()}
    context.setdefault("trainingjob_id", trainingjob_id)
    result = RunArguments(ignored=sorted(k for k in given if k not in declared))
    missing: list[str] = []
    invalid: dict[str, str] = {}
    for p in params:
        if p.name in given:
            raw = given[p.name]
        elif p.name in mapping and _template_ready(mapping[p.name], context):
            raw = mapping[p.name].format_map(context)
            result.derived.append(p.name)
        else:
            if not p.optional:
                missing.append(p.name)
            continue
        try:
            value = convert_value(p.type, raw)
        except ValueError as exc:
            invalid[p.name] = f"{p.type}: {exc}"
            continue
        result.values[p.name] = _as_text(value) if kind == V1 else value
    if missing or invalid:
        parts = []
        if missing:
            parts.append("missing required parameter(s): " + ", ".join(missing))
        if invalid:
            parts.append("cannot convert: " + "; ".join(f"{k} ({v})" for k, v in invalid.items()))
        raise BadRequest("; ".join(parts), code="invalid_arguments", details={"missing": missing, "invalid": invalid})
    return result


def _template_ready(template: str, context: Mapping[str, str]) -> bool:
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    return all(n in context for n in names)


def _as_text(value: Any) -> str:
    """Render a converted value the way kfp 1.x components read their arguments."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def is_version_number(name: str | None) -> TypeGuard[str]:
    """Tell whether a version name is one of our numbered versions ("2", "3", ...)."""
    return bool(name and name.isascii() and name.isdigit() and not name.startswith("0"))


def next_version_number(names: Iterable[str | None], floor: int = 1) -> int:
    """Return the next version number: one more than every numbered name and `floor`, at least 2."""
    numbers = [int(n) for n in names if is_version_number(n)]
    return max([1, floor, *numbers]) + 1


def version_sort_key(version: Mapping[str, Any]) -> tuple:
    """Order versions numerically; named versions (the first one carries the pipeline's name) count as 1."""
    name = version.get("display_name") or version.get("name") or ""
    number = int(name) if is_version_number(name) else 1
    return (number, version.get("created_at") or "", name)
