"""Pure pipeline logic: package sniffing, declared parameters, argument mapping and version numbers.

No Flask, no kfp, no I/O: everything here is a function of its inputs and is tested directly.
"""

from __future__ import annotations

import io
import json
import math
import string
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import yaml

from kfadapter.core import archive
from kfadapter.core.errors import BadRequest, PayloadTooLarge, Undecodable
from kfadapter.core.limits import LimitExceeded, Limits, check_yaml

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
_TAR_SLACK = 1024 * 1024  # headers and padding around the one file of a tar.gz package
_MAX_ZIP_DIRECTORY = 1024 * 1024  # the central directory of a one-file zip is a few hundred bytes
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: entries at [4], directory size at [5]
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # the zip64 end record's offset at [2]
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # entries at [7], directory size at [8]
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


def load_package(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Package:
    """Sniff and parse an uploaded package within `limits`; raise BadRequest unless it is a v2 IR or v1 Argo."""
    if not data:
        raise BadRequest("the uploaded file is empty", code="invalid_package")
    if len(data) > limits.package_bytes:
        raise PayloadTooLarge("the uploaded file is larger than 32 MiB, the most KFP accepts")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip, or an empty one
        container, text = "zip", _single_zip_member(data, limits)
    elif data[:2] == b"\x1f\x8b":
        container, text = "tar.gz", _single_tar_member(data, limits)
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


def _too_many_members(kind: str, limits: Limits) -> BadRequest:
    return BadRequest(
        f"a {kind} package may hold at most KFADAPTER_PACKAGE_MAX_MEMBERS ({limits.package_members}) entries",
        code="invalid_package",
        details={"limit": "KFADAPTER_PACKAGE_MAX_MEMBERS", "max": limits.package_members},
    )


def _check_zip_directory(data: bytes, limits: Limits) -> None:
    """Read the zip's end records ourselves: zipfile would build every central-directory entry first."""
    pos = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF), len(data) - _EOCD.size + 4)
    if pos < 0:
        raise BadRequest("the zip package cannot be read: no end of central directory", code="invalid_package")
    entries, directory_size = _EOCD.unpack_from(data, pos)[4:6]
    if pos >= _ZIP64_LOCATOR.size and data[pos - _ZIP64_LOCATOR.size : pos - 16] == b"PK\x06\x07":
        record = _ZIP64_LOCATOR.unpack_from(data, pos - _ZIP64_LOCATOR.size)[2]
        if record + _ZIP64_EOCD.size > len(data) or data[record : record + 4] != b"PK\x06\x06":
            raise BadRequest("the zip package cannot be read: a broken zip64 end record", code="invalid_package")
        entries, directory_size = _ZIP64_EOCD.unpack_from(data, record)[7:9]
    if entries > limits.package_members:
        raise _too_many_members("zip", limits)
    if directory_size > _MAX_ZIP_DIRECTORY:
        raise BadRequest(
            f"the zip package's central directory is larger than {_MAX_ZIP_DIRECTORY} bytes",
            code="invalid_package",
            details={"max": _MAX_ZIP_DIRECTORY},
        )


def _single_zip_member(data: bytes, limits: Limits) -> bytes:
    _check_zip_directory(data, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if len(zf.infolist()) > limits.package_members:
                raise _too_many_members("zip", limits)
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise BadRequest(
                    f"a zip package must hold exactly one file, it holds {len(members)}", code="invalid_package"
                )
            if members[0].file_size > limits.package_bytes:
                raise PayloadTooLarge("the file inside the zip is larger than 32 MiB")
            # Read at most the cap, so a lying header cannot make us inflate without bound.
            with zf.open(members[0]) as fh:
                return _read_capped(fh, limits)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise BadRequest(f"the zip package cannot be read: {exc}", code="invalid_package") from None


def _single_tar_member(data: bytes, limits: Limits) -> bytes:
    """Read the one file of a tar.gz with the streaming reader of run outputs: raw headers, every size capped.

    tarfile would read a GNU long name or PAX header of any declared size into memory and keep every entry.
    """
    caps = archive.Limits(max_bytes=limits.package_bytes + _TAR_SLACK, max_members=limits.package_members)
    stream = archive.Capped(archive.Gunzip(io.BytesIO(data)), caps.max_bytes)
    found = None
    try:
        for member, reader in archive.iter_members(stream, caps):
            if member.kind != "file":
                continue
            if found is not None:
                raise BadRequest("a tar.gz package must hold exactly one file", code="invalid_package")
            found = _read_capped(reader, limits)
    except Undecodable as exc:
        if exc.code == "too_many_members":
            raise _too_many_members("tar.gz", limits) from None
        if exc.code == "artifact_too_large":
            raise PayloadTooLarge(f"the tar.gz package unpacks to more than {caps.max_bytes} bytes") from None
        raise BadRequest(
            f"the tar.gz package cannot be read: {exc.message}", code="invalid_package", details=exc.details
        ) from None
    if found is None:
        raise BadRequest("a tar.gz package must hold exactly one file", code="invalid_package")
    return found


def _read_capped(fh: Any, limits: Limits) -> bytes:
    out = fh.read(limits.package_bytes + 1)
    if len(out) > limits.package_bytes:
        raise PayloadTooLarge("the unpacked pipeline file is larger than 32 MiB")
    return out


def _parse_documents(text: bytes, limits: Limits) -> list[Any]:
    try:
        check_yaml(text, limits)  # aliases, expanded size and depth, before anything is built
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
