"""KFP list semantics: page_size/page_token/sort_by/filter over in-memory records.

As KFP 2.17 (`list/list.go`, `server/list_request_util.go`, `filter/filter.go`): page_size 0 → 20, over 200
capped, negative → 400; sort_by is lower-cased, default order created_at then id; the filter is URL-decoded once
more by the server, then read as a v2beta1 `Filter` (unknown fields such as `bool_value` → 400) whose keys must
be the resource's API fields; a page token carries the sort and the filter, and a request that also sends a
sort_by or filter differing from the token's → 400. Pages are keyset-based like KFP's: the token holds the last
(sort value, id) seen, so the next page is stable while records are added. MySQL's default collation is
case-insensitive, so string comparisons and ordering ignore case.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from kfadapter.sandbox.errors import ApiError

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

OPERATIONS = {
    "EQUALS": 1,
    "NOT_EQUALS": 2,
    "GREATER_THAN": 3,
    "GREATER_THAN_EQUALS": 5,
    "LESS_THAN": 6,
    "LESS_THAN_EQUALS": 7,
    "IN": 8,
    "IS_SUBSTRING": 9,
}
_OP_NAMES = {v: k for k, v in OPERATIONS.items()}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQUALS": lambda a, b: a == b,
    "NOT_EQUALS": lambda a, b: a != b,
    "GREATER_THAN": lambda a, b: a > b,
    "GREATER_THAN_EQUALS": lambda a, b: a >= b,
    "LESS_THAN": lambda a, b: a < b,
    "LESS_THAN_EQUALS": lambda a, b: a <= b,
    "IN": lambda a, b: a in b,
    "IS_SUBSTRING": lambda a, b: b in a,
}
# The v2beta1 Predicate's fields (proto and JSON names); there is no bool_value.
_SINGLE = ("int_value", "long_value", "string_value", "timestamp_value")
_MULTI = ("int_values", "long_values", "string_values")
_PREDICATE_FIELDS = {"operation", "key", *_SINGLE, *_MULTI}
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


class Resource:
    """How to list one resource: its id field, KFP's API field → model column map, getters per column."""

    def __init__(
        self,
        list_key: str,
        id_field: str,
        columns: dict[str, str],
        getters: dict[str, Callable[[dict], object]],
        timestamps: tuple[str, ...] = ("CreatedAtInSec",),
    ):
        self.list_key = list_key
        self.id_field = id_field
        self.columns = dict(columns)  # API field name -> model column, exactly KFP's APIToModelFieldMap
        self.getters = dict(getters)  # model column -> value of a stored record
        self.timestamps = timestamps


def _as_ts(value) -> str:
    """Normalise a timestamp predicate (RFC3339 string or epoch seconds) to the stored format."""
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            dt = datetime.fromtimestamp(int(value), tz=UTC)
        else:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise ApiError(3, f"Invalid timestamp in filter: {value!r}") from exc
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_filter(text: str, why: str) -> ApiError:
    return ApiError(3, f"Invalid input error: failed to parse valid filter from {text!r}: {why}")


def _predicate(resource: Resource, raw, text: str) -> dict:
    if not isinstance(raw, dict):
        raise _bad_filter(text, "predicate must be an object")
    raw = {_snake(k): v for k, v in raw.items()}
    unknown = sorted(set(raw) - _PREDICATE_FIELDS)
    if unknown:
        raise _bad_filter(text, f'unknown field "{unknown[0]}"')
    op = raw.get("operation")
    op = _OP_NAMES.get(op, op) if isinstance(op, int) and not isinstance(op, bool) else op
    if op not in _COMPARE:
        raise _bad_filter(text, f"invalid value for enum type: {json.dumps(raw.get('operation'))}")
    key = raw.get("key")
    if not key:
        raise ApiError(3, f"Invalid input error: Predicate key cannot be empty for operation {op}")
    column = resource.columns.get(key)
    if column is None:
        raise ApiError(3, f'Invalid input error: no support for filtering on unrecognized field "{key}"')
    if op == "IN":
        multi = [raw[k] for k in _MULTI if k in raw]
        if not multi or not isinstance(multi[0], dict):
            raise ApiError(3, f"Invalid input error: IN on {key!r} needs string_values/int_values/long_values")
        value = sorted(_norm(resource, column, v) for v in multi[0].get("values") or [])
    else:
        singles = [raw[k] for k in _SINGLE if k in raw]
        if not singles:
            raise ApiError(3, f"Invalid input error: predicate on {key!r} has no value")
        value = _norm(resource, column, singles[0])
    return {"column": column, "op": op, "value": value}


def _norm(resource: Resource, column: str, value):
    if column in resource.timestamps:
        return _as_ts(value)
    return str(value).lower()  # case-insensitive collation


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
    decoded = _query_unescape(text)
    try:
        doc = json.loads(decoded)
    except ValueError as exc:
        raise _bad_filter(text, f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) - {"predicates"}:
        raise _bad_filter(text, "expected an object with predicates only")
    predicates = [_predicate(resource, p, text) for p in doc.get("predicates") or []]
    return sorted(predicates, key=lambda p: json.dumps(p, sort_keys=True))


def _parse_sort(resource: Resource, text: str) -> tuple[str, bool]:
    parts = (text or "").lower().split()
    if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
        raise ApiError(
            3,
            f"Invalid input error: Received invalid sort by format {text!r}. Supported format: "
            '"field_name", "field_name desc", or "field_name asc"',
        )
    if not parts:
        return "CreatedAtInSec", False  # KFP's DefaultSortField, ties broken by id
    column = resource.columns.get(parts[0])
    if column is None:
        raise ApiError(3, f"Invalid input error: Invalid sorting field: {parts[0]!r} on listable type")
    return column, len(parts) == 2 and parts[1] == "desc"


def _page_size(text: str | None) -> int:
    if not text:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(text)
    except ValueError as exc:
        raise ApiError(3, f"Invalid page_size: {text!r}") from exc
    if size < 0:
        raise ApiError(3, f"Invalid input error: The page size should be greater than 0. Got {size}")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)  # KFP caps silently


def _decode_token(token: str) -> dict:
    try:
        doc = json.loads(base64.b64decode(token.encode(), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ApiError(3, "Invalid input error: Invalid page token") from exc
    if not isinstance(doc, dict) or not {"sort", "desc", "filter", "after"} <= doc.keys():
        raise ApiError(3, "Invalid input error: Invalid page token")
    return doc


def _value(resource: Resource, record: dict, column: str) -> Any:  # a timestamp stays a number
    got = resource.getters[column](record)
    if got is None:
        return ""
    return got if column in resource.timestamps else str(got).lower()


def candidates(resource: Resource, by_id: dict[str, dict], args) -> list[dict]:
    """The records a list call can match: those an id predicate (EQUALS / IN) names, found as KFP's primary key
    finds them, else all. Only the cost changes: `list_page` still checks every predicate on what is left.
    """
    if args.get("page_token"):
        return list(by_id.values())
    id_column = resource.columns.get(resource.id_field)
    for p in _parse_filter(resource, args.get("filter", "")):
        if p["column"] == id_column and p["op"] in ("EQUALS", "IN"):
            wanted = p["value"] if p["op"] == "IN" else [p["value"]]
            return [by_id[i] for i in dict.fromkeys(wanted) if i in by_id]  # ids are lower-case uuids
    return list(by_id.values())


def list_page(resource: Resource, records: list[dict], args, serialize: Callable[[dict], dict]) -> dict:
    """Answer one KFP list call over `records` (a snapshot) with `args` (request query args)."""
    size = _page_size(args.get("page_size"))
    token = args.get("page_token")
    sort_text, filter_text = args.get("sort_by", ""), args.get("filter", "")
    after = None
    if token:
        state = _decode_token(token)
        column, desc, predicates, after = state["sort"], state["desc"], state["filter"], tuple(state["after"])
        if column not in resource.getters:
            raise ApiError(3, "Invalid input error: Invalid page token")
        if sort_text or filter_text:
            asked = (*_parse_sort(resource, sort_text), _parse_filter(resource, filter_text))
            if asked != (column, desc, predicates):
                raise ApiError(
                    3,
                    "Invalid input error: page token does not match the supplied sort by and/or "
                    "filtering criteria. Either specify the same criteria or leave the latter empty "
                    "if page token is specified",
                )
    else:
        column, desc = _parse_sort(resource, sort_text)
        predicates = _parse_filter(resource, filter_text)

    def matches(rec: dict) -> bool:
        return all(_COMPARE[p["op"]](_value(resource, rec, p["column"]), p["value"]) for p in predicates)

    chosen = [r for r in records if matches(r)]
    keyed = sorted(((_value(resource, r, column), r[resource.id_field]), r) for r in chosen)
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
        state = {"sort": column, "desc": desc, "filter": predicates, "after": list(page[-1][0])}
        out["next_page_token"] = base64.b64encode(json.dumps(state).encode()).decode()
    return out
