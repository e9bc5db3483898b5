"""JSON on the request path: orjson, with the standard library for the few values orjson takes differently.

`dumps` writes our answers and `loads_answer` reads KFP's. Either falls back to `json` where orjson refuses what
the standard library takes (lone surrogates, integers past 64 bits when writing, NaN, a BOM, nesting past
orjson's limits), so what is accepted and answered stays what it was; only the spacing and the escaping of
non-ASCII text (UTF-8 instead of `\\u` escapes) differ. Request bodies stay with `json` (see `loads_answer`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Datetimes and dataclasses go to `default=str` as they did with json.dumps(default=str); dict keys that are
# not strings are converted as json.dumps converts them.
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> bytes:
    """Serialize `value` as compact UTF-8 JSON (non-JSON values as `str(value)`)."""
    try:
        return orjson.dumps(value, default=str, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str).encode()


def loads_answer(data: bytes) -> Any:
    """Parse JSON text from a trusted-shape source (KFP's answers, whose numbers are protojson's); raise ValueError.

    orjson reads an integer past 64 bits as a float, which protojson never writes (64-bit integers are strings);
    the caller checks size and depth first.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
