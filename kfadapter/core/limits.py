"""Pure caps on parsing untrusted bytes: JSON size and nesting depth, YAML alias expansion, checked before parsing.

Each check runs in bounded memory over the raw bytes (or YAML's event stream, which never builds the document)
and raises `LimitExceeded` naming the setting, so a caller turns it into its own 4xx or 502 before the real
parser could allocate without bound.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import IO, Any

import yaml

_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.S)  # `\\` is consumed whole, so it never starts one


class LimitExceeded(ValueError):
    """Input is larger or deeper than a configured limit; `setting` names the environment variable."""

    def __init__(self, message: str, setting: str, limit: int) -> None:
        super().__init__(message)
        self.message, self.setting, self.limit = message, setting, limit

    @property
    def details(self) -> dict[str, Any]:
        """The limit as error details."""
        return {"limit": self.setting, "max": self.limit}


@dataclass(frozen=True)
class Limits:
    """The caps on what the adapter parses; defaults match the settings' defaults."""

    json_bytes: int = 1024 * 1024
    json_depth: int = 100
    yaml_aliases: int = 1000
    yaml_nodes: int = 100_000
    package_bytes: int = 32 * 1024 * 1024
    package_members: int = 100

    @classmethod
    def of(cls, settings: Any) -> Limits:
        """Take the limits from a `Settings`."""
        return cls(
            json_bytes=settings.max_json_bytes,
            json_depth=settings.max_json_depth,
            yaml_aliases=settings.yaml_max_aliases,
            yaml_nodes=settings.yaml_max_nodes,
            package_bytes=settings.max_upload_bytes,
            package_members=settings.package_max_members,
        )


def json_depth(data: bytes) -> int:
    """Return the deepest bracket nesting of JSON text, ignoring brackets inside strings, without parsing it."""
    # In JSON a backslash occurs only inside a string, where it starts a two-character escape, and every run of
    # backslashes starts at such an escape: dropping escaped backslashes, then escaped quotes, leaves only the
    # quotes that open and close strings. Each step is a pass in C: this runs on every answer from KFP.
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two adjacent quotes enclose nothing and keep every other quote's side: drop them, so usually no quote is left.
    marks = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])  # even pieces lie outside strings
    return max(accumulate(array("b", marks.translate(_BRACKETS))), default=0)


def check_json_depth(data: bytes, max_depth: int, label: str | None = None) -> None:
    """Raise LimitExceeded when JSON text nests deeper than `max_depth` (`label` says where the limit comes from)."""
    depth = json_depth(data)
    if depth > max_depth:
        raise LimitExceeded(
            f"the JSON nests {depth} levels deep, more than {label or f'KFADAPTER_MAX_JSON_DEPTH ({max_depth})'}",
            "KFADAPTER_MAX_JSON_DEPTH",
            max_depth,
        )


def loads_json(data: bytes, *, max_bytes: int, max_depth: int, size_setting: str) -> Any:
    """Parse JSON after checking its size and depth; raise LimitExceeded or ValueError (not JSON)."""
    if len(data) > max_bytes:
        raise LimitExceeded(f"the JSON is larger than {size_setting} ({max_bytes} bytes)", size_setting, max_bytes)
    check_json_depth(data, max_depth)
    check_surrogates(data)
    return json.loads(data)


def check_surrogates(data: bytes) -> None:
    """Raise ValueError when JSON text escapes a lone UTF-16 surrogate (`\\ud800`): no character, no UTF-8 form.

    Python's json module turns one into a str that fails later, wherever the text is encoded (KFP, the store,
    a log line); refused here, it is a 400 that names it.
    """
    if not _SURROGATE_HINT.search(data):
        return
    high = None  # the escape of a high surrogate still waiting for its low half, and where it ended
    for match in _ESCAPE.finditer(data):
        code = int(match.group(1), 16) if match.group(1) else None
        if high is not None:
            if match.start() == high[1] and code is not None and 0xDC00 <= code <= 0xDFFF:
                high = None
                continue
            break
        if code is not None and 0xD800 <= code <= 0xDBFF:
            high = (match.group(0), match.end())
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            high = (match.group(0), -1)
            break
    if high is not None:
        escape = high[0].decode("ascii")
        raise ValueError(f"a string holds the lone UTF-16 surrogate {escape}, which is not a Unicode character")


def check_yaml(text: bytes | str | IO[bytes], limits: Limits) -> None:
    """Walk YAML's events (no document is built) and raise LimitExceeded past the alias, node or depth caps.

    Aliases are counted as what they expand to (nodes and characters of the anchored node, itself expanded),
    so an alias bomb is refused from a few integers however large it would grow. Syntax errors raise
    yaml.YAMLError as the loader would.
    """
    loader = _YAML_LOADER(text)
    try:
        _walk_events(loader, limits)
    finally:
        loader.dispose()


def _walk_events(loader: Any, limits: Limits) -> None:
    nodes = chars = aliases = 0
    open_nodes: list[tuple[str | None, int, int]] = []  # anchor, nodes and chars before the collection began
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> expanded (nodes, chars) of its finished node
    max_chars = limits.package_bytes
    while True:
        event = loader.get_event()
        if event is None or isinstance(event, yaml.StreamEndEvent):
            return
        if isinstance(event, yaml.ScalarEvent):
            nodes, chars = nodes + 1, chars + len(event.value)
            if event.anchor is not None:
                sizes[event.anchor] = (1, len(event.value))
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append((event.anchor, nodes, chars))
            nodes += 1
            if len(open_nodes) > limits.json_depth:
                raise LimitExceeded(
                    f"the YAML nests more than KFADAPTER_MAX_JSON_DEPTH ({limits.json_depth}) levels deep",
                    "KFADAPTER_MAX_JSON_DEPTH",
                    limits.json_depth,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes_before, chars_before = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = (nodes - nodes_before, chars - chars_before)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.yaml_aliases:
                raise LimitExceeded(
                    f"the YAML has more than KFADAPTER_YAML_MAX_ALIASES ({limits.yaml_aliases}) aliases",
                    "KFADAPTER_YAML_MAX_ALIASES",
                    limits.yaml_aliases,
                )
            if any(anchor == event.anchor for anchor, _, _ in open_nodes):
                raise LimitExceeded(
                    f"the YAML alias *{event.anchor} refers to a node that contains it (an endless document)",
                    "KFADAPTER_YAML_MAX_NODES",
                    limits.yaml_nodes,
                )
            added_nodes, added_chars = sizes.get(event.anchor or "", (1, 0))  # undefined: the loader reports it
            nodes, chars = nodes + added_nodes, chars + added_chars
        if nodes > limits.yaml_nodes:
            raise LimitExceeded(
                f"the YAML expands to more than KFADAPTER_YAML_MAX_NODES ({limits.yaml_nodes}) "
                "nodes (aliases counted as what they repeat)",
                "KFADAPTER_YAML_MAX_NODES",
                limits.yaml_nodes,
            )
        if chars > max_chars:
            raise LimitExceeded(
                f"the YAML's aliases expand its text to more than {max_chars} characters, the "
                "largest package KFP takes",
                "package_bytes",
                max_chars,
            )
