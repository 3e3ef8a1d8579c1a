"""JSON the way Go's encoding/json writes and reads it (layer 0).

nats-server's JSON has no spaces, keeps keys in struct order (dict order here) and escapes `<`, `>`,
`&`, U+2028 and U+2029 inside strings. Clients parse JSON, so the escaping is cosmetic, but byte-exact
differential tests against nats-server compare it, and monitoring uses Go's two-space indent.

`loads` accepts what Go's decoder accepts: invalid UTF-8 and lone surrogate escapes become U+FFFD
(Python would refuse the first and keep the second, which then fails at the first `.encode()`), and
`NaN`/`Infinity` are syntax errors (Python accepts them).
"""

from __future__ import annotations

import json
import re
from typing import Any

_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(obj: Any, indent: int | None = None) -> str:
    """Compact (or indented) JSON with Go's HTML-safe escaping."""
    if indent is None:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(obj, indent=indent, ensure_ascii=False)
    # `<>&` never occur outside strings in JSON, so a plain translation is exact.
    return text.translate(_ESCAPES)


def dumpb(obj: Any, indent: int | None = None) -> bytes:
    return dumps(obj, indent).encode()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value) if _LONE_SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    return value


def loads(data: bytes | str) -> Any:
    """Parse JSON as Go does; raises ValueError (json.JSONDecodeError included) on a syntax error."""
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray, memoryview)) else data
    value = json.loads(text, parse_constant=_no_constant)
    if "\\u" in text and "\\ud" in text.lower():
        value = _clean(value)
    return value
