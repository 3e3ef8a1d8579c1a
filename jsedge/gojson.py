"""JSON the way Go's encoding/json writes it (layer 0).

nats-server's JSON has no spaces, keeps keys in struct order (dict order here) and escapes `<`, `>`,
`&`, U+2028 and U+2029 inside strings. Clients parse JSON, so the escaping is cosmetic, but byte-exact
differential tests against nats-server compare it, and monitoring uses Go's two-space indent.
"""

from __future__ import annotations

import json
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
