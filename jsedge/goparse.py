"""Go's number and duration parsing, exactly (layer 0).

nats-server reads header values and config durations with Go's `time.ParseDuration` and its own
`parseInt64`; inputs a user or a fuzzer sends must get the same answer, overflow included, so these
are transcriptions of the algorithms (integer arithmetic, Go's error texts), not approximations.
Imports nothing from jsedge.
"""

from __future__ import annotations

__all__ = ["parse_duration_ns", "parse_int64", "INT64_MAX"]

INT64_MAX = (1 << 63) - 1
_U64 = 1 << 64

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_duration_ns(text: str) -> int:
    """Go's `time.ParseDuration` in nanoseconds; ValueError with Go's message when invalid or out
    of int64 range."""
    original = text
    invalid = ValueError(f"time: invalid duration {_quote(original)}")
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise invalid
    total = 0
    pos, end = 0, len(text)
    while pos < end:
        char = text[pos]
        if not (char == "." or "0" <= char <= "9"):
            raise invalid
        # leadingInt
        start = pos
        value = 0
        while pos < end and "0" <= text[pos] <= "9":
            if value > (1 << 63) // 10:
                raise invalid
            value = value * 10 + ord(text[pos]) - 48
            if value > 1 << 63:
                raise invalid
            pos += 1
        pre = pos != start
        fraction, scale, post = 0, 1.0, False
        if pos < end and text[pos] == ".":
            pos += 1
            start = pos
            overflow = False
            while pos < end and "0" <= text[pos] <= "9":
                if not overflow:
                    if fraction > INT64_MAX // 10:
                        overflow = True
                    else:
                        candidate = fraction * 10 + ord(text[pos]) - 48
                        if candidate > 1 << 63:
                            overflow = True
                        else:
                            fraction = candidate
                            scale *= 10
                pos += 1
            post = pos != start
        if not pre and not post:
            raise invalid
        start = pos
        while pos < end and not (text[pos] == "." or "0" <= text[pos] <= "9"):
            pos += 1
        if pos == start:
            raise ValueError(f"time: missing unit in duration {_quote(original)}")
        unit_name = text[start:pos]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ValueError(f"time: unknown unit {_quote(unit_name)} in duration {_quote(original)}")
        if value > (1 << 63) // unit:
            raise invalid
        value *= unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))
            if value > 1 << 63:
                raise invalid
        total += value
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > INT64_MAX:
        raise invalid
    return total


def parse_int64(data: bytes) -> int:
    """nats-server's `parseInt64`: ASCII digits only (else -1, also for empty input), and, as in
    Go, the int64 arithmetic wraps around on overflow instead of failing."""
    if not data:
        return -1
    value = 0
    for byte in data:
        if not 48 <= byte <= 57:
            return -1
        value = (value * 10 + byte - 48) % _U64
    return value - _U64 if value > INT64_MAX else value
