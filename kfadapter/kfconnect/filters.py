"""KFP list filters: the JSON predicates of its list calls, quoted the way its API server reads them."""

from __future__ import annotations

import json

from kfadapter.kfconnect.server_profile import encode_filter


def _filter(predicate: dict) -> str:
    # KFP URL-decodes the filter once more after the query string itself (parseAPIFilter): without this extra
    # quoting a '+' in a name would turn into a space and '%' would be refused.
    return encode_filter(json.dumps({"predicates": [predicate]}))


def equals_filter(key: str, value: str) -> str:
    return _filter({"operation": "EQUALS", "key": key, "string_value": value})


def in_filter(key: str, values: list[str]) -> str:
    return _filter(in_predicate(key, values))


def in_predicate(key: str, values: list[str]) -> dict:
    return {"operation": "IN", "key": key, "string_values": {"values": values}}


def all_of(predicates: list[dict]) -> str:
    """A filter matching what every predicate matches (KFP ANDs a filter's predicates), as short as KFP allows.

    KFP URL-decodes the filter once more (parseAPIFilter): JSON without '%' or '+' reads the same after that, so
    it is encoded once only. That keeps 200 run ids in about 9 KB of URL, which urllib3 re-checks byte by byte.
    """
    text = json.dumps({"predicates": predicates}, separators=(",", ":"))
    return encode_filter(text) if "%" in text or "+" in text else text
