"""KFP's rules for names, checked before a request reaches KFP so the caller gets a 400 naming the rule.

From the KFP 2.17 API server (kfp-facts.md): pipeline and experiment names are at most 128 bytes (Go's len()),
version names at most 127 characters (a varchar(127) column; an upload names the first version after the
pipeline, so a 128-character pipeline name fails there), and a v2 package's `pipelineInfo.name` must match
`^[a-z0-9][a-z0-9-]{0,127}$`. On top of KFP: `.` and `..` are refused because HTTP clients (urllib3) collapse
them as path segments, so a request for `/pipelines/names/..` would reach another KFP route.
Leaf module: no Flask, no kfp.
"""

from __future__ import annotations

import re

from kfadapter.core.errors import BadRequest

NAME_MAX_BYTES = 128
PIPELINE_NAME_MAX_CHARS = 127
IR_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,127}$"
_IR_NAME = re.compile(IR_NAME_PATTERN)
DOT_SEGMENTS = (".", "..")


def name_problem(value: str, max_bytes: int = NAME_MAX_BYTES) -> str | None:
    """Return why KFP (or the HTTP path to it) cannot take `value` as a name, or None when it can."""
    if not value.strip():
        return "it is empty"
    if value in DOT_SEGMENTS:
        return "'.' and '..' are path segments that HTTP clients rewrite, so KFP would receive another request"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "it contains control characters"
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        return f"it is {size} bytes long (UTF-8); KFP refuses names over {max_bytes} bytes"
    return None


def check_name(value: str, what: str, max_bytes: int = NAME_MAX_BYTES) -> str:
    """Return `value`, or raise a 400 `invalid_name` naming the rule it breaks."""
    problem = name_problem(value, max_bytes)
    if problem:
        raise BadRequest(
            f"invalid {what} {value[:80]!r}: {problem}", code="invalid_name", details={"field": what, "rule": problem}
        )
    return value


def check_pipeline_name(value: str) -> str:
    """A name for a new pipeline: the name rules, and at most 127 characters (its first version's name too)."""
    check_name(value, "pipeline name")
    if len(value) > PIPELINE_NAME_MAX_CHARS:
        problem = (
            f"it is {len(value)} characters long; KFP names the first version after the pipeline and "
            f"version names are at most {PIPELINE_NAME_MAX_CHARS} characters"
        )
        raise BadRequest(
            f"invalid pipeline name {value[:80]!r}: {problem}",
            code="invalid_name",
            details={"field": "pipeline name", "rule": problem},
        )
    return value


def check_ir_name(name: str | None) -> None:
    """Refuse a v2 package whose `pipelineInfo.name` KFP would refuse, naming it and the pattern."""
    if name is None or not _IR_NAME.match(name):
        raise BadRequest(
            f"the package's pipelineInfo.name {name!r} does not match {IR_NAME_PATTERN}, which KFP "
            "requires (lowercase letters, digits and '-', at most 128); rename the pipeline in "
            "@dsl.pipeline(name=...) and compile it again",
            code="invalid_pipeline_info_name",
            details={"pipeline_info_name": name, "pattern": IR_NAME_PATTERN},
        )


def path_segment_problem(path: str) -> str | None:
    """Return the dot segment in a URL path that an HTTP client would collapse, or None."""
    for segment in path.split("?", 1)[0].split("/"):
        if segment in DOT_SEGMENTS:
            return segment
    return None
