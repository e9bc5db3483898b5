"""KFP list semantics: page_size/page_token/sort_by/filter over in-memory records.

Pages are keyset-based like KFP's: the token carries the sort, the filter and the last
(sort value, id) seen, so the next page is stable while records are added or change state.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import unquote_plus

from .errors import ApiError

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

OPERATIONS = {
    "EQUALS": 1, "NOT_EQUALS": 2, "GREATER_THAN": 3, "GREATER_THAN_EQUALS": 5,
    "LESS_THAN": 6, "LESS_THAN_EQUALS": 7, "IN": 8, "IS_SUBSTRING": 9,
}
_OP_NAMES = {v: k for k, v in OPERATIONS.items()}
_COMPARE: dict[str, Callable[[str, object], bool]] = {
    "EQUALS": lambda a, b: a == b,
    "NOT_EQUALS": lambda a, b: a != b,
    "GREATER_THAN": lambda a, b: a > b,
    "GREATER_THAN_EQUALS": lambda a, b: a >= b,
    "LESS_THAN": lambda a, b: a < b,
    "LESS_THAN_EQUALS": lambda a, b: a <= b,
    "IN": lambda a, b: a in b,
    "IS_SUBSTRING": lambda a, b: b in a,
}
_SINGLE = ("string_value", "int_value", "long_value", "timestamp_value", "bool_value")
_MULTI = ("string_values", "int_values", "long_values")


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


class Resource:
    """How to list one resource: its id field, filterable/sortable fields and timestamp fields."""

    def __init__(self, list_key: str, id_field: str, fields: dict[str, Callable[[dict], str]],
                 timestamps: tuple[str, ...] = ("created_at",)):
        self.list_key = list_key
        self.id_field = id_field
        self.fields = dict(fields)
        self.fields.setdefault(id_field, lambda r: r[id_field])
        self.fields.setdefault("id", self.fields[id_field])  # v1-style alias
        self.timestamps = timestamps


def _as_ts(value) -> str:
    """Normalise a timestamp predicate (RFC3339 string or epoch seconds) to the stored format."""
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            dt = datetime.fromtimestamp(int(value), tz=timezone.utc)
        else:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError) as exc:
        raise ApiError(3, f"Invalid timestamp in filter: {value!r}") from exc
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _predicate(resource: Resource, raw: dict) -> dict:
    if not isinstance(raw, dict):
        raise ApiError(3, "Invalid filter: predicate must be an object")
    raw = {_snake(k): v for k, v in raw.items()}
    op = raw.get("operation")
    if isinstance(op, str) and op.isdigit():
        op = int(op)
    op = _OP_NAMES.get(op, op) if isinstance(op, int) else op
    if op not in _COMPARE:
        raise ApiError(3, f"Invalid filter operation: {raw.get('operation')!r}")
    key = raw.get("key")
    if key not in resource.fields:
        raise ApiError(3, f"Invalid filter key: {key!r} is not a filterable field")
    if op == "IN":
        multi = [raw[k] for k in _MULTI if k in raw]
        if not multi or not isinstance(multi[0], dict):
            raise ApiError(3, f"Invalid filter: IN on {key!r} needs string_values/int_values/long_values")
        value = [_norm(resource, key, v) for v in multi[0].get("values") or []]
    else:
        singles = [raw[k] for k in _SINGLE if k in raw]
        if not singles:
            raise ApiError(3, f"Invalid filter: predicate on {key!r} has no value")
        value = _norm(resource, key, singles[0])
    return {"key": key, "op": op, "value": value}


def _norm(resource: Resource, key: str, value):
    if key in resource.timestamps:
        return _as_ts(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _query_unescape(text: str) -> str:
    """Go's url.QueryUnescape: `+` is a space, `%XX` a byte, a bad escape an error."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise ApiError(3, f"Invalid input error: failed to parse valid filter from {text!r}: invalid URL escape")
    return unquote_plus(text, errors="surrogateescape")


def _parse_filter(resource: Resource, text: str) -> list[dict]:
    if not text:
        return []
    # KFP (list_request_util.go parseAPIFilter, every version) URL-decodes the already decoded query value once
    # more, so a `+` or `%` in a filter value changes unless the client encoded the filter twice.
    text = _query_unescape(text)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ApiError(3, f"Invalid filter: not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ApiError(3, "Invalid filter: expected an object with predicates")
    return [_predicate(resource, p) for p in doc.get("predicates") or []]


def _parse_sort(resource: Resource, text: str) -> tuple[str, bool]:
    parts = (text or "").split()
    if not parts:
        return resource.id_field, False
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise ApiError(3, f"Invalid sorting field: {text!r}")
    if parts[0] not in resource.fields:
        raise ApiError(3, f"Invalid sorting field: {parts[0]!r} on listable type")
    return parts[0], len(parts) == 2 and parts[1].lower() == "desc"


def _page_size(text: str | None) -> int:
    if not text:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(text)
    except ValueError as exc:
        raise ApiError(3, f"Invalid page_size: {text!r}") from exc
    if size < 0:
        raise ApiError(3, "The page size should be greater than 0")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)  # KFP caps silently


def _decode_token(token: str) -> dict:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error) as exc:
        raise ApiError(3, "Invalid input error: Invalid page token") from exc
    if not isinstance(doc, dict) or not {"sort", "desc", "filter", "after"} <= doc.keys():
        raise ApiError(3, "Invalid input error: Invalid page token")
    return doc


def _value(resource: Resource, record: dict, field: str) -> str:
    got = resource.fields[field](record)
    return "" if got is None else str(got)


def list_page(resource: Resource, records: list[dict], args, serialize: Callable[[dict], dict]) -> dict:
    """Answer one KFP list call over `records` (a snapshot) with `args` (request query args)."""
    size = _page_size(args.get("page_size"))
    token = args.get("page_token")
    if token:
        # Like KFP, the token's sort and filter win over the request's.
        state = _decode_token(token)
        field, desc, predicates, after = state["sort"], state["desc"], state["filter"], tuple(state["after"])
        if field not in resource.fields:
            raise ApiError(3, "Invalid input error: Invalid page token")
    else:
        field, desc = _parse_sort(resource, args.get("sort_by", ""))
        predicates = _parse_filter(resource, args.get("filter", ""))
        after = None

    def matches(rec: dict) -> bool:
        return all(_COMPARE[p["op"]](_value(resource, rec, p["key"]), p["value"]) for p in predicates)

    chosen = [r for r in records if matches(r)]
    keyed = sorted(((_value(resource, r, field), r[resource.id_field]), r) for r in chosen)
    if desc:
        keyed.reverse()
    if after is not None:
        keyed = [(k, r) for k, r in keyed if (k < after if desc else k > after)]
    page = keyed[:size]
    out: dict = {}
    if page:
        out[resource.list_key] = [serialize(r) for _, r in page]
    if chosen:
        out["total_size"] = len(chosen)
    if len(keyed) > size:
        state = {"sort": field, "desc": desc, "filter": predicates, "after": list(page[-1][0])}
        out["next_page_token"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    return out
