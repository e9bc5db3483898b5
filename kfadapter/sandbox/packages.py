"""Pipeline packages: unpacking uploads, telling KFP v2 IR from v1 Argo, checking run parameters."""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass

import yaml

MAX_PACKAGE_BYTES = 32 << 20  # KFP's upload limit (32 MiB)

# Old (schemaVersion 2.0.0) IR spelled parameter types differently.
_LEGACY_TYPES = {"INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE", "STRING": "STRING"}
_PLAIN_SUFFIXES = (".yaml", ".yml", ".json")


class PackageError(Exception):
    """A package KFP would refuse; `status` is the HTTP status of the upload answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Package:
    """A parsed pipeline package: `kind` is "v2" (IR) or "v1" (Argo Workflow)."""

    kind: str
    spec: dict  # what the API returns as the version's pipeline_spec
    ir: dict | None = None
    workflow: dict | None = None

    @property
    def pipeline_name(self) -> str:
        """The name the compiler wrote into the package."""
        if self.ir is not None:
            return str(self.ir.get("pipelineInfo", {}).get("name", ""))
        meta = self.workflow.get("metadata", {}) if self.workflow else {}
        return str(meta.get("name") or meta.get("generateName", "")).rstrip("-")


def unpack(filename: str, data: bytes) -> bytes:
    """Return the pipeline file inside an upload (plain by extension, else a sniffed zip or tar.gz)."""
    if len(data) > MAX_PACKAGE_BYTES:
        # KFP's ReadPipelineFile refuses it as a user error: 400, not 413.
        raise PackageError(f"File size too large. Maximum supported size: {MAX_PACKAGE_BYTES}")
    if filename.lower().endswith(_PLAIN_SUFFIXES):
        return data
    if data[:4] == b"PK\x03\x04":
        return _from_zip(data)
    if data[:2] == b"\x1f\x8b":
        return _from_targz(data)
    raise PackageError("Unexpected pipeline file format. Support .zip, .tar.gz, .json or YAML.")


def _pick(names: list[str]) -> str | None:
    # KFP prefers a member called pipeline.yaml, else takes the first member.
    for name in names:
        if name.rsplit("/", 1)[-1] == "pipeline.yaml":
            return name
    return names[0] if names else None


def _from_zip(data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = _pick([i.filename for i in archive.infolist() if not i.is_dir()])
            if name is None:
                raise PackageError("Error extracting pipeline from the zip file. Empty zip file.")
            if not name.lower().endswith(_PLAIN_SUFFIXES):
                raise PackageError(
                    f"Error extracting pipeline from the zip file. Expecting a pipeline.yaml file inside the zip. Got: {name}"
                )
            return archive.read(name)
    except zipfile.BadZipFile as exc:
        raise PackageError("Error extracting pipeline from the zip file. Not a valid zip file.") from exc


def _from_targz(data: bytes) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            name = _pick([m.name for m in members])
            if name is None:
                raise PackageError("Error extracting pipeline from the tarball file. Empty tarball.")
            if not name.lower().endswith(_PLAIN_SUFFIXES):
                raise PackageError(
                    f"Error extracting pipeline from the tarball file. Expecting a pipeline.yaml file inside the tarball. Got: {name}"
                )
            member = archive.extractfile(name)
            if member is None:  # a directory or link named like a package
                raise PackageError(f"Error extracting pipeline from the tarball file. Not a file: {name}")
            return member.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError("Error extracting pipeline from the tarball file. Not a valid tarball file.") from exc


def parse(raw: bytes) -> Package:
    """Parse package bytes (JSON or possibly multi-document YAML) into a Package."""
    try:
        # libyaml when present: the same documents as SafeLoader, parsed about as fast as KFP's Go parser does
        # (a 31 MiB package took the pure-Python loader minutes).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        docs = [d for d in yaml.load_all(raw.decode("utf-8"), Loader=loader) if d is not None]
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PackageError(f"Failed to parse the pipeline spec: {type(exc).__name__}") from exc
    if not docs or not isinstance(docs[0], dict):
        raise PackageError("Failed to parse the pipeline spec: not a YAML or JSON object")
    platform = docs[1] if len(docs) > 1 and isinstance(docs[1], dict) and "platforms" in docs[1] else None
    return from_dict(docs[0], platform)


def from_dict(doc: dict, platform: dict | None = None) -> Package:
    """Classify one spec dict: IR, {pipeline_spec, platform_spec} wrapper, or Argo Workflow."""
    if not isinstance(doc, dict):
        raise PackageError("Invalid pipeline spec: expected an object")
    if isinstance(doc.get("pipeline_spec"), dict) and _is_ir(doc["pipeline_spec"]):
        return from_dict(doc["pipeline_spec"], doc.get("platform_spec"))
    if _is_ir(doc):
        spec = {"pipeline_spec": doc, "platform_spec": platform} if platform else doc
        return Package("v2", spec, ir=doc)
    if doc.get("kind") == "Workflow":
        return Package("v1", doc, workflow=doc)
    raise PackageError("Invalid pipeline spec: neither a KFP v2 pipeline (pipelineInfo, root) nor an Argo Workflow")


def _is_ir(doc: dict) -> bool:
    return "pipelineInfo" in doc and "root" in doc


def ir_parameters(ir: dict) -> dict[str, dict]:
    """Return {name: definition} of the pipeline's root input parameters with a normalised parameterType."""
    params = ((ir.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    out = {}
    for name, spec in params.items():
        spec = dict(spec or {})
        spec["parameterType"] = spec.get("parameterType") or _LEGACY_TYPES.get(spec.get("type", ""), "STRING")
        out[name] = spec
    return out


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "struct"}
    return names.get(type(value), type(value).__name__)


def _type_ok(ptype: str, value) -> bool:
    kind = _type_name(value)
    if ptype in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
        return kind == "number"  # KFP's v2_template accepts any JSON number for NUMBER_INTEGER, 3.5 included
    expected = {"STRING": "string", "BOOLEAN": "bool", "LIST": "list", "STRUCT": "struct"}.get(ptype)
    return expected is None or kind == expected  # TASK_FINAL_STATUS etc. are not user-checked


def check_runtime_parameters(ir: dict, params: dict) -> None:
    """Raise ValueError naming the parameter when `params` do not fit the IR's root inputs (KFP ≥ 2.0)."""
    defined = ir_parameters(ir)
    for name in sorted(params):
        if name not in defined:
            raise ValueError(f'input parameter "{name}" is not defined in the pipeline spec')
        ptype = defined[name]["parameterType"]
        if not _type_ok(ptype, params[name]):
            raise ValueError(
                f'input parameter "{name}" requires type {ptype}, '
                f"but the parameter value is of type {_type_name(params[name])}"
            )
    for name, spec in sorted(defined.items()):
        required = "defaultValue" not in spec and not spec.get("isOptional", False)
        if required and name not in params:
            raise ValueError(f'input parameter "{name}" is required but no value was given')


def workflow_parameters(workflow: dict) -> list[dict]:
    """Return the Argo workflow's default arguments as [{name, value}] (values as strings)."""
    params = ((workflow.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    return [{"name": p["name"], "value": "" if p.get("value") is None else str(p["value"])} for p in params]
