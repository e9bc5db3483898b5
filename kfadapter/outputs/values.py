"""Pure: turn output bytes or MLMD values into typed JSON, and large data into a bounded preview.

Every rendered output carries `encoding`: "json" (a typed value), "text" (UTF-8 text as it is) or "base64"
(binary or non-UTF-8 bytes). Data larger than the inline limit is never inlined: the first lines (text) or bytes
(binary) go into `preview`, with `size` and `truncated: true`.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

PREVIEW_LINES = 20
PREVIEW_TEXT_CHARS = 8192
PREVIEW_BINARY_BYTES = 1024

# Declared types (v1 component types and v2 parameterType) -> how to read the value.
_KINDS = {
    "integer": "int",
    "int": "int",
    "number_integer": "int",
    "float": "float",
    "double": "float",
    "number_double": "float",
    "boolean": "bool",
    "bool": "bool",
    "string": "str",
    "str": "str",
    "text": "str",
    "jsonobject": "json",
    "jsonarray": "json",
    "dict": "json",
    "list": "json",
    "struct": "json",
    "json": "json",
}


def kind_of(declared: str | None) -> str | None:
    """Return how values of a declared type are read: int, float, bool, str, json or None (untyped data)."""
    return _KINDS.get(str(declared).strip().lower()) if declared else None


def _finite(value: float) -> float | str:
    # NaN and infinities have no JSON form; keep the text a caller can still read.
    return value if math.isfinite(value) else str(value)


def _parse(text: str, kind: str) -> Any:
    stripped = text.strip()
    if kind == "int":
        try:
            return int(stripped)
        except ValueError:
            number = float(stripped)
            if not number.is_integer():
                raise
            return int(number)
    if kind == "float":
        return _finite(float(stripped))
    if kind == "bool":
        lowered = stripped.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"not a boolean: {stripped[:40]!r}")
    if kind == "json":
        return json.loads(stripped)
    return text


def from_bytes(data: bytes, declared: str | None) -> dict[str, Any]:
    """Render complete output data: a typed value when the declared type reads it, else text or base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out = {"value": base64.b64encode(data).decode("ascii"), "encoding": "base64"}
        if kind_of(declared):
            out["warning"] = f"the data is not UTF-8 text, so not a {declared} value"
        return out
    kind = kind_of(declared)
    if kind is None or kind == "str":
        return {"value": text, "encoding": "text" if kind is None else "json"}
    try:
        return {"value": _parse(text, kind), "encoding": "json"}
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the interpreter's limit
        return {"value": text, "encoding": "text", "warning": f"the data is not a valid {declared} value"}


def from_json_value(value: Any, declared: str | None) -> dict[str, Any]:
    """Render an already-typed value (MLMD keeps every number as a double): integers come back as int."""
    kind = kind_of(declared)
    if kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, float):
        value = _finite(value)
    return {"value": value, "encoding": "json"}


def _text_prefix(head: bytes) -> str | None:
    """Decode a head cut at an arbitrary byte; a multi-byte character split by the cut is dropped."""
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":
            return None
        return head[: exc.start].decode("utf-8")  # the rest decoded fine up to the split character


def preview(head: bytes, size: int | None) -> dict[str, Any]:
    """Render the start of data too large to inline: the first lines of text, or the first bytes as base64."""
    text = _text_prefix(head)
    out: dict[str, Any] = {"value": None, "truncated": True, "size": size}
    if text is None:
        out.update(preview=base64.b64encode(head[:PREVIEW_BINARY_BYTES]).decode("ascii"), encoding="base64")
    else:
        lines = text.split("\n")[:PREVIEW_LINES]
        out.update(preview="\n".join(lines)[:PREVIEW_TEXT_CHARS], encoding="text", preview_lines=len(lines))
    return out


def render(head: bytes, size: int | None, complete: bool, declared: str | None) -> dict[str, Any]:
    """Render output data from a scan: the whole value when complete, else a preview."""
    if complete:
        return from_bytes(head, declared) | {"size": len(head), "truncated": False}
    return preview(head, size)
