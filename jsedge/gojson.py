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


# -- Go's encoding/json scanner, for its error texts ---------------------------------------------
#
# nats-server decodes API requests with a json.Decoder in a loop: every JSON value in the body is
# decoded in turn into the same struct, and a syntax error reads `invalid character 'x' <context>
# at offset N` (N counts bytes from the start of the body, 1-based), or `unexpected EOF` for a
# truncated body. Python's json module finds the same errors at other places with other words, so
# the scanner below is a transcription of Go's state machine (scanner.go); it only runs on bodies
# Python already refused, or to split a body into values.


class GoSyntaxError(ValueError):
    """A JSON syntax error worded as Go's json.Decoder words it."""


_SPACE = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_MAX_DEPTH = 10000


def _quote_char(c: int) -> str:
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    char = chr(c)
    if char.isprintable() and c != 0x5C:
        return f"'{char}'"
    if c == 0x5C:
        return "'\\\\'"
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
    if c in named:
        return f"'{named[c]}'"
    return f"'\\x{c:02x}'" if c < 0x80 else f"'\\u{c:04x}'"


class _Scanner:
    """Go's json scanner over bytes; `step(c)` returns None, "end" (a value ended one byte ago, as
    Go's scanEnd) or raises GoSyntaxError with the context text (no offset)."""

    __slots__ = ("state", "stack", "end_top")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.state = "begin_value"
        self.stack: list[str] = []
        self.end_top = False

    @staticmethod
    def _error(c: int, context: str) -> GoSyntaxError:
        return GoSyntaxError(f"invalid character {_quote_char(c)} {context}")

    def _push(self, c: int, kind: str) -> None:
        self.stack.append(kind)
        if len(self.stack) > _MAX_DEPTH:
            raise self._error(c, "exceeded max depth")

    def _pop(self) -> None:
        self.stack.pop()
        if not self.stack:
            self.state = "end_top"
            self.end_top = True
        else:
            self.state = "end_value"

    def step(self, c: int) -> str | None:
        state = self.state
        if state == "begin_value_or_empty":
            if c in _SPACE:
                return None
            if c == 0x5D:  # ]
                return self._end_value(c)
            return self._begin_value(c)
        if state == "begin_value":
            return self._begin_value(c)
        if state == "begin_string_or_empty":
            if c in _SPACE:
                return None
            if c == 0x7D:  # }
                self.stack[-1] = "object_value"
                return self._end_value(c)
            return self._begin_string(c)
        if state == "begin_string":
            return self._begin_string(c)
        if state == "end_value":
            return self._end_value(c)
        if state == "end_top":
            if c not in _SPACE:
                raise self._error(c, "after top-level value")
            return "end"
        if state == "in_string":
            if c == 0x22:
                self.state = "end_value"
            elif c == 0x5C:
                self.state = "in_string_esc"
            elif c < 0x20:
                raise self._error(c, "in string literal")
            return None
        if state == "in_string_esc":
            if c in b'bfnrt\\/"':
                self.state = "in_string"
                return None
            if c == 0x75:  # u
                self.state = "esc_u0"
                return None
            raise self._error(c, "in string escape code")
        if state.startswith("esc_u"):
            if c not in _HEX:
                raise self._error(c, "in \\u hexadecimal character escape")
            index = int(state[5])
            self.state = "in_string" if index == 3 else f"esc_u{index + 1}"
            return None
        if state == "neg":
            if c == 0x30:
                self.state = "zero"
                return None
            if 0x31 <= c <= 0x39:
                self.state = "digits"
                return None
            raise self._error(c, "in numeric literal")
        if state == "digits":
            if 0x30 <= c <= 0x39:
                return None
            return self._zero(c)
        if state == "zero":
            return self._zero(c)
        if state == "dot":
            if 0x30 <= c <= 0x39:
                self.state = "dot0"
                return None
            raise self._error(c, "after decimal point in numeric literal")
        if state == "dot0":
            if 0x30 <= c <= 0x39:
                return None
            if c in b"eE":
                self.state = "exp"
                return None
            return self._end_value(c)
        if state == "exp":
            if c in b"+-":
                self.state = "exp_sign"
                return None
            return self._exp_sign(c)
        if state == "exp_sign":
            return self._exp_sign(c)
        if state == "exp0":
            if 0x30 <= c <= 0x39:
                return None
            return self._end_value(c)
        # literals: state is "lit:<word>:<index>"
        _, word, index_text = state.split(":")
        index = int(index_text)
        if c != ord(word[index]):
            raise self._error(c, f"in literal {word} (expecting '{word[index]}')")
        if index + 1 == len(word):
            self.state = "end_value"
        else:
            self.state = f"lit:{word}:{index + 1}"
        return None

    def _begin_value(self, c: int) -> str | None:
        if c in _SPACE:
            return None
        if c == 0x7B:  # {
            self.state = "begin_string_or_empty"
            self._push(c, "object_key")
        elif c == 0x5B:  # [
            self.state = "begin_value_or_empty"
            self._push(c, "array_value")
        elif c == 0x22:
            self.state = "in_string"
        elif c == 0x2D:
            self.state = "neg"
        elif c == 0x30:
            self.state = "zero"
        elif 0x31 <= c <= 0x39:
            self.state = "digits"
        elif c == 0x74:
            self.state = "lit:true:1"
        elif c == 0x66:
            self.state = "lit:false:1"
        elif c == 0x6E:
            self.state = "lit:null:1"
        else:
            raise self._error(c, "looking for beginning of value")
        return None

    def _begin_string(self, c: int) -> str | None:
        if c in _SPACE:
            return None
        if c == 0x22:
            self.state = "in_string"
            return None
        raise self._error(c, "looking for beginning of object key string")

    def _zero(self, c: int) -> str | None:
        if c == 0x2E:
            self.state = "dot"
            return None
        if c in b"eE":
            self.state = "exp"
            return None
        return self._end_value(c)

    def _exp_sign(self, c: int) -> str | None:
        if 0x30 <= c <= 0x39:
            self.state = "exp0"
            return None
        raise self._error(c, "in exponent of numeric literal")

    def _end_value(self, c: int) -> str | None:
        if not self.stack:
            self.state = "end_top"
            self.end_top = True
            return self.step(c)
        if c in _SPACE:
            self.state = "end_value"
            return None
        top = self.stack[-1]
        if top == "object_key":
            if c == 0x3A:  # :
                self.stack[-1] = "object_value"
                self.state = "begin_value"
                return None
            raise self._error(c, "after object key")
        if top == "object_value":
            if c == 0x2C:
                self.stack[-1] = "object_key"
                self.state = "begin_string"
                return None
            if c == 0x7D:
                self._pop()
                return "end_container"
            raise self._error(c, "after object key:value pair")
        if c == 0x2C:
            self.state = "begin_value"
            return None
        if c == 0x5D:
            self._pop()
            return "end_container"
        raise self._error(c, "after array element")


def decoder_values(data: bytes) -> list[bytes]:
    """The JSON values a Go json.Decoder reads from `data`, in order (possibly none); raises
    GoSyntaxError worded as nats-server reports it (`... at offset N`, or `unexpected EOF`)."""
    scanner = _Scanner()
    values: list[bytes] = []
    pos, end = 0, len(data)
    while True:
        while pos < end and data[pos] in _SPACE:
            pos += 1
        if pos >= end:
            return values
        scanner.reset()
        start = pos
        while True:
            if pos >= end:
                # EOF: a value that can end here (a number) ends; anything else is truncated
                try:
                    ended = scanner.step(0x20) == "end" or scanner.end_top
                except GoSyntaxError:
                    ended = False
                if not ended:
                    raise GoSyntaxError("unexpected EOF")
                values.append(data[start:pos])
                return values
            c = data[pos]
            pos += 1
            try:
                result = scanner.step(c)
            except GoSyntaxError as exc:
                raise GoSyntaxError(f"{exc} at offset {pos}") from None
            if result == "end":
                pos -= 1  # the byte that ended the value belongs to what follows
                values.append(data[start:pos])
                break
            if result == "end_container" and scanner.end_top:
                values.append(data[start:pos])
                break


def decode_stream(data: bytes) -> Any:
    """A request body as nats-server's Decoder loop sees it: every value in turn, objects merged
    into the previous ones (later keys win, nested objects merge as Go decodes into an existing
    struct), null leaving the result alone; the first value that is not an object is returned as it
    is (decoding it into a struct fails). None for an empty body. Raises GoSyntaxError."""
    result: Any = None
    for raw in decoder_values(data):
        try:
            value = loads(raw)
        except RecursionError:
            raise GoSyntaxError("exceeded max depth") from None
        if value is None:
            continue
        if not isinstance(value, dict):
            return value  # Go fails on it right away (not a struct), the values after it unread
        result = value if result is None else _merge(result, value)
    return result


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is not None or key not in merged:
            merged[key] = value
    return merged


def unmarshal_syntax_error(data: bytes) -> str:
    """The syntax error Go's json.Unmarshal reports for `data` (its checkValid pass: no offset, and
    `unexpected end of JSON input` for a truncated or empty body); "" when Go finds none."""
    scanner = _Scanner()
    for c in data:
        try:
            scanner.step(c)
        except GoSyntaxError as exc:
            return str(exc)
    if scanner.end_top:
        return ""
    try:
        if scanner.step(0x20) == "end" or scanner.end_top:
            return ""
    except GoSyntaxError:
        pass
    return "unexpected end of JSON input"
