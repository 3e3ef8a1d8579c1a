"""The NATS configuration file format: lexer and parser (layer 0, stdlib only).

This reads the syntax nats-server reads (its `conf` package) and nothing more: it knows no option
names. `jsedge.config` turns the result into the typed config tree.

Syntax, in short (spec/server-config.md §1):

* entries `key: value`, `key = value` or `key value`, ended by a newline, `;` or `,`;
  an optional `{ ... }` around the whole file;
* maps `{ ... }` (a map may follow its key with no separator), arrays `[ ... ]` whose elements are
  separated by `,` or newlines, comments `#` and `//`;
* strings: `"..."` with the escapes `\\t \\n \\r \\" \\\\ \\xHH`, `'...'` raw, bare words (which also
  take those escapes), and block strings `key (` ... a line holding only `)`;
* integers (int64), integers with a size suffix (`k` = 1000 but `kb`/`ki`/`kib` = 1024, and so on up to
  `e`), floats, booleans (`true false yes no on off`, any case), Zulu datetimes;
* `$NAME` variables, looked up in the enclosing maps from the innermost outwards, then in the
  environment (whose value is parsed as a config value); a bare `$2a$...` is a bcrypt hash, not a
  variable; no expansion inside quotes;
* `include <path>`: the path is relative to the including file; the included file is parsed on its
  own and its top-level keys are merged where the include stands.

The result of `parse`/`parse_file` is a plain `dict[str, ConfValue]`. Every `ConfValue` carries the
Python value and its `Position` (file, line, column). The value is one of `str`, `int`, `float`,
`bool`, `datetime.datetime` (UTC), `list[ConfValue]` or `dict[str, ConfValue]`. Keys keep the case they
were written in. As in nats-server, a value stored in a map carries the position of its *key* (more
useful in messages); array elements carry their own position. Columns follow nats-server exactly:
0-based on the first line of a file, 1-based on every later line (its lexer counts from the previous
newline). `ConfValue.used_as_variable` is set on a map entry that a `$reference` resolved to; the
option loader does not call such an entry an unknown field. `plain()` strips the wrappers.

The lexer is a hand-written recursive-descent reading of nats-server's state machine, with its error
texts, so `Parse error on line N: '...'` messages match the real server word for word.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConfParseError",
    "ConfValue",
    "Position",
    "config_digest",
    "parse",
    "parse_file",
    "plain",
]


class ConfParseError(ValueError):
    """A config text that nats-server would refuse to parse; `str()` is nats-server's message."""

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Position:
    """Where a value was written: file (as given, may be ""), line (1-based) and column."""

    file: str
    line: int
    column: int

    def prefix(self) -> str:
        """`file:line:col: `, the prefix nats-server puts in front of option errors."""
        return f"{self.file}:{self.line}:{self.column}: "


@dataclass(slots=True, eq=False)
class ConfValue:
    """One parsed value and where it came from."""

    value: Any
    position: Position
    #: Set when a `$reference` resolved to this map entry (a used variable definition).
    used_as_variable: bool = field(default=False)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConfValue):
            return self.value == other.value
        return NotImplemented

    def __repr__(self) -> str:
        return f"ConfValue({self.value!r}, {self.position.line}:{self.position.column})"


def plain(value: Any) -> Any:
    """The parsed tree (or one value) with the `ConfValue` wrappers removed, recursively."""
    if isinstance(value, ConfValue):
        value = value.value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


# Size suffixes, matched case-insensitively (spec §1.3): decimal for one letter, binary otherwise.
_SIZE_MULTIPLIERS: dict[str, int] = {"": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _SIZE_MULTIPLIERS[_letter] = 1000**_power
    for _binary_suffix in ("b", "i", "ib"):
        _SIZE_MULTIPLIERS[_letter + _binary_suffix] = 1024**_power

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_EOF = ""
_BCRYPT_PREFIX = "2a$"
#: The key under which an environment value is parsed (`pk=<value>`), as nats-server does.
_ENVIRONMENT_PARSE_KEY = "pk"


def _is_newline(char: str) -> bool:
    return char in ("\n", "\r")


def _is_blank(char: str) -> bool:
    """Space or tab: nats-server's `isWhitespace` (newlines are not whitespace to it)."""
    return char in (" ", "\t")


def _is_space(char: str) -> bool:
    """Go's `unicode.IsSpace`."""
    return char != _EOF and char.isspace()


def _show(char: str) -> str:
    """A character as nats-server's error messages print it (`%v` of a rune, newline escaped)."""
    if char == "\n":
        return "\\n"
    if char == _EOF:
        return "\x00"
    return char


def _go_errno_text(error: OSError) -> str:
    """The text Go's `os.Open`/`os.ReadFile` error has after `open <path>: `."""
    texts = {2: "no such file or directory", 13: "permission denied", 21: "is a directory"}
    return texts.get(error.errno or 0, (error.strerror or str(error)).lower())


class _Map(dict):  # type: ignore[type-arg]
    """A map under construction; only these are searched for variables (arrays are skipped)."""


class _Parser:
    """One pass over one file's text, producing the top-level map."""

    def __init__(
        self,
        text: str,
        file_name: str,
        environ: Mapping[str, str],
        environment_chain: tuple[str, ...],
    ) -> None:
        self.text = text
        self.file_name = file_name
        self.environ = environ
        self.environment_chain = environment_chain
        self.offset = 0
        self.line = 1
        #: Offset nats-server measures columns from: 0 on line 1, the previous `\n` after that.
        self.line_start = 0
        self.contexts: list[Any] = []

    # -- characters ---------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> str:
        index = self.offset + ahead
        return self.text[index] if index < len(self.text) else _EOF

    def advance(self) -> str:
        char = self.peek()
        if char == _EOF:
            return char
        if char == "\n":
            self.line += 1
            self.line_start = self.offset
        self.offset += 1
        return char

    def position_at(self, offset: int, line: int, line_start: int) -> Position:
        return Position(self.file_name, line, offset - line_start)

    def here(self) -> tuple[int, int, int]:
        return self.offset, self.line, self.line_start

    def error(self, message: str) -> ConfParseError:
        """A lexer error, worded as nats-server's `processItem` wraps it."""
        position = Position(self.file_name, self.line, self.offset - self.line_start)
        return ConfParseError(f"Parse error on line {self.line}: '{message}'", position)

    def skip_comment(self) -> None:
        while not _is_newline(self.peek()) and self.peek() != _EOF:
            self.advance()

    def at_comment(self) -> bool:
        return self.peek() == "#" or (self.peek() == "/" and self.peek(1) == "/")

    # -- document -----------------------------------------------------------------------------

    def parse_document(self) -> dict[str, ConfValue]:
        top = _Map()
        self.contexts.append(top)
        while True:
            char = self.peek()
            if _is_space(char) or char in ("{", "}"):
                # An optional `{ ... }` around the whole file: nats-server skips both braces here.
                self.advance()
                continue
            if self.at_comment():
                self.skip_comment()
                continue
            if char == _EOF:
                break
            if char == "/":
                raise self.error("Unexpected EOF.")
            self.parse_entry(top, end_of_value=self.top_value_end)
        return dict(top)

    def top_value_end(self) -> None:
        while True:
            char = self.peek()
            if self.at_comment():
                self.skip_comment()
                return
            if char == "/":
                self.advance()  # a lone `/` is skipped like whitespace by nats-server
                continue
            if _is_blank(char):
                self.advance()
                continue
            if _is_newline(char) or char in (";", ",", "}"):
                self.advance()
                return
            if char == _EOF:
                return
            self.advance()
            raise self.error(
                f"Expected a top-level value to end with a new line, comment or EOF, but got '{_show(char)}' instead."
            )

    def map_value_end(self) -> bool:
        """Consume what follows a map entry; True when the map's `}` was consumed."""
        while True:
            char = self.peek()
            if _is_blank(char):
                self.advance()
                continue
            if self.at_comment():
                self.skip_comment()
                continue
            if char == "/" or char in (";", ",") or _is_newline(char):
                self.advance()
                return False
            if char == "}":
                self.advance()
                return True
            self.advance()
            raise self.error(
                f'Expected a map value terminator "," or a map terminator "}}", but got \'{_show(char)}\' instead.'
            )

    # -- entries ------------------------------------------------------------------------------

    def parse_key(self, in_map: bool) -> tuple[str, Position, bool]:
        """Read a key; returns (key, position, is_bare). Leading whitespace is already skipped."""
        start = self.here()
        char = self.peek()
        if char in (":", "="):
            self.advance()
            suffix = "." if in_map else ""
            raise self.error(f"Unexpected key separator '{char}'{suffix}")
        if char in ('"', "'"):
            self.advance()
            start = self.here()
            chars: list[str] = []
            while self.peek() != char:
                if self.peek() == _EOF:
                    if in_map:
                        kind = "double quoted map key" if char == '"' else "quoted map key"
                        raise self.error(f"Unexpected EOF processing {kind}.")
                    raise self.error("Unexpected EOF.")
                chars.append(self.advance())
            self.advance()
            return "".join(chars), self.position_at(*start), False
        chars = [self.advance()]
        while True:
            char = self.peek()
            if char == _EOF:
                if in_map:
                    raise self.error("Unexpected EOF processing map key.")
                break
            if _is_space(char) or char in (":", "="):
                break
            chars.append(self.advance())
        return "".join(chars), self.position_at(*start), True

    def parse_entry(self, target: _Map, end_of_value: Any) -> bool:
        """Parse `key <sep> value` into `target`, then the value's terminator.

        Returns what `end_of_value` returns (for maps: whether the closing brace was seen).
        """
        in_map = end_of_value != self.top_value_end
        key, key_position, is_bare = self.parse_key(in_map)
        if is_bare and key.lower() == "include" and _is_space(self.peek()):
            self.parse_include(target)
            return end_of_value()
        while _is_space(self.peek()):
            self.advance()
        if self.peek() in (":", "="):
            self.advance()
            if in_map:
                while _is_space(self.peek()):
                    self.advance()
        elif self.peek() == _EOF and not in_map:
            raise ConfParseError(
                f"config is invalid ({self.file_name}:{self.line}:{self.offset - self.line_start})",
                key_position,
            )
        if in_map:
            if self.peek() == ",":
                self.advance()
                raise self.error('Unexpected map value terminator ",".')
        value = self.parse_value()
        # nats-server gives a map entry the position of its key: more useful in messages.
        value.position = key_position
        target[key] = value
        return end_of_value()

    def parse_include(self, target: _Map) -> None:
        while _is_blank(self.peek()):
            self.advance()
        char = self.peek()
        if char in ('"', "'"):
            self.advance()
            chars: list[str] = []
            while self.peek() != char:
                if self.peek() == _EOF:
                    raise self.error("Unexpected EOF.")
                chars.append(self.advance())
            self.advance()
            name = "".join(chars)
        else:
            problems = {
                "[": "start of an array",
                "{": "start of a map",
                "(": "start of a block",
                "-": "start of a number",
                "\\": "escape sequence",
            }
            if char in problems or char.isdigit() or _is_newline(char):
                self.advance()
                found = problems.get(char) or ("new line" if _is_newline(char) else "start of a number")
                raise self.error(f"Expected include value but found {found}")
            chars = []
            while True:
                char = self.peek()
                if _is_newline(char) or char in (_EOF, ";", "}") or _is_blank(char):
                    break
                if char == "'":
                    self.advance()
                    break
                chars.append(self.advance())
            name = "".join(chars)
        directory = os.path.dirname(self.file_name) or "."
        path = os.path.normpath(os.path.join(directory, name))
        try:
            included = _parse_path(path, self.environ, self.environment_chain)
        except ConfParseError as error:
            raise ConfParseError(f"error parsing include file '{name}', {error.message}", error.position) from error
        for key, value in included.items():
            target[key] = value

    # -- values -------------------------------------------------------------------------------

    def parse_value(self) -> ConfValue:
        while _is_blank(self.peek()):
            self.advance()
        start = self.here()
        char = self.peek()
        if char == "[":
            self.advance()
            return ConfValue(self.parse_array(), self.position_at(*start))
        if char == "{":
            self.advance()
            entries = self.parse_map()
            # nats-server's map token is made at the map's end: an array element that is a map is
            # placed just past its `}` (a map stored under a key gets the key's position anyway)
            return ConfValue(entries, self.position_at(*self.here()))
        if char == "'":
            self.advance()
            return ConfValue(self.parse_raw_string(), self.position_at(*start))
        if char == '"':
            self.advance()
            return ConfValue(self.parse_quoted_string(), self.position_at(*start))
        if char == "-":
            self.advance()
            return self.parse_negative_number(start)
        if char == "(":
            self.advance()
            return ConfValue(self.parse_block(), self.position_at(*start))
        if char.isdigit() and char.isascii():
            return self.parse_number_or_string(start)
        if char == ".":
            self.advance()
            raise self.error("Floats must start with a digit")
        if _is_newline(char):
            self.advance()
            raise self.error("Expected value but found new line")
        return self.parse_bare(start, [])

    def parse_array(self) -> list[ConfValue]:
        self.contexts.append([])
        items: list[ConfValue] = []
        while True:
            char = self.peek()
            if _is_space(char):
                self.advance()
                continue
            if self.at_comment():
                self.skip_comment()
                continue
            if char in (",", "/"):
                self.advance()
                raise self.error("Unexpected array value terminator ','.")
            if char == "]":
                self.advance()
                break
            items.append(self.parse_value())
            if self.array_value_end():
                break
        self.contexts.pop()
        return items

    def array_value_end(self) -> bool:
        while True:
            char = self.peek()
            if _is_blank(char):
                self.advance()
                continue
            if self.at_comment():
                self.skip_comment()
                continue
            if char == "/" or char == "," or _is_newline(char):
                self.advance()
                return False
            if char == "]":
                self.advance()
                return True
            self.advance()
            raise self.error(
                f'Expected an array value terminator "," or an array terminator "]", but got \'{_show(char)}\' instead.'
            )

    def parse_map(self) -> dict[str, ConfValue]:
        current = _Map()
        self.contexts.append(current)
        while True:
            char = self.peek()
            if _is_space(char):
                self.advance()
                continue
            if char == "]":
                self.advance()
                raise self.error("Unexpected array end ']' processing map.")
            if char == "}":
                self.advance()
                break
            if self.at_comment():
                self.skip_comment()
                continue
            if char == _EOF:
                raise self.error("Unexpected EOF processing map.")
            if self.parse_entry(current, end_of_value=self.map_value_end):
                break
        self.contexts.pop()
        return dict(current)

    def parse_raw_string(self) -> str:
        chars: list[str] = []
        while self.peek() != "'":
            if self.peek() == _EOF:
                raise self.error("Unexpected EOF.")
            chars.append(self.advance())
        self.advance()
        return "".join(chars)

    def parse_escape(self, into: bytearray) -> None:
        """After a backslash: append the escaped character's bytes."""
        char = self.advance()
        simple = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
        if char in simple:
            into += simple[char].encode()
            return
        if char == "x":
            digits = ""
            for _ in range(2):
                digit = self.advance()
                if _is_newline(digit):
                    raise self.error("Expected two hexadecimal digits after '\\x', but hit end of line")
                digits += digit
            try:
                into += bytes.fromhex(digits)
            except ValueError:
                raise self.error(f"Expected two hexadecimal digits after '\\x', but got '{digits}'") from None
            return
        raise self.error(
            f"Invalid escape character '{_show(char)}'. Only the following escape characters "
            'are allowed: \\xXX, \\t, \\n, \\r, \\", \\\\.'
        )

    def parse_quoted_string(self) -> str:
        buffer = bytearray()
        while True:
            char = self.advance()
            if char == _EOF:
                raise self.error("Unexpected EOF.")
            if char == '"':
                return buffer.decode("utf-8", errors="replace")
            if char == "\\":
                self.parse_escape(buffer)
            else:
                buffer += char.encode()

    def parse_block(self) -> str:
        """A block string: raw text up to a line that holds only `)`."""
        begin = self.offset
        while True:
            char = self.advance()
            if char == _EOF:
                raise self.error("Unexpected EOF processing block.")
            if char == ")" and self.offset >= 2 and self.text[self.offset - 2] == "\n" and self.peek() in ("\n", _EOF):
                return self.text[begin : self.offset - 1]

    def parse_bare(self, start: tuple[int, int, int], prefix: list[str]) -> ConfValue:
        """A bare word from `start`: a string, boolean or variable reference."""
        buffer = bytearray("".join(prefix).encode())
        escaped = False
        while True:
            char = self.peek()
            if char == "\\":
                self.advance()
                self.parse_escape(buffer)
                escaped = True
                continue
            if _is_newline(char) or char in (_EOF, ";", ",", "]", "}") or _is_blank(char):
                break
            if char == "'":
                self.advance()
                escaped = True  # ends like a string; nats-server emits it as a plain string
                break
            buffer += self.advance().encode()
        text = buffer.decode("utf-8", errors="replace")
        position = self.position_at(*start)
        if not escaped:
            lowered = text.lower()
            if lowered in ("true", "yes", "on"):
                return ConfValue(True, position)
            if lowered in ("false", "no", "off"):
                return ConfValue(False, position)
            if text.startswith("$"):
                return self.resolve_variable(text[1:], position)
        return ConfValue(text, position)

    def parse_number_or_string(self, start: tuple[int, int, int]) -> ConfValue:
        """Digits first: an integer (maybe with a size suffix), float, datetime, IP or bare string."""
        begin = self.offset
        self.advance()
        while True:
            char = self.peek()
            if char.isdigit() and char.isascii():
                self.advance()
                continue
            if char == "-":
                self.advance()
                if self.offset - begin != 5:
                    raise self.error("All ISO8601 dates must be in full Zulu form.")
                return self.parse_datetime(begin, start)
            if char == ".":
                self.advance()
                return self.parse_float(begin, start)
            if char.lower() in "kmgtpe" and char != _EOF:
                self.advance()
                return self.parse_sized_integer(begin, start)
            if _is_newline(char) or char in (_EOF, "}", ";", ",") or _is_blank(char):
                return self.make_integer(self.text[begin : self.offset], start)
            # A digit-led word that is not a number (`12ab`) is a bare string, as in nats-server,
            # which keeps the character that decided it even when it is a `]` (`[1]` is "1]").
            self.advance()
            return self.parse_bare(start, [self.text[begin : self.offset]])

    def parse_sized_integer(self, begin: int, start: tuple[int, int, int]) -> ConfValue:
        while self.peek() in ("b", "B", "i", "I"):
            self.advance()
        char = self.peek()
        if _is_newline(char) or char in (_EOF, "}", ";", ",") or _is_blank(char):
            return self.make_integer(self.text[begin : self.offset], start)
        return self.parse_bare(start, [self.text[begin : self.offset]])

    def make_integer(self, token: str, start: tuple[int, int, int]) -> ConfValue:
        digits_end = 0
        while digits_end < len(token) and (token[digits_end].isdigit() or token[digits_end] == "-"):
            digits_end += 1
        number = int(token[:digits_end])
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise self.error(f"Value '{token}' is outside of the integer range")
        suffix = token[digits_end:].lower()
        multiplier = _SIZE_MULTIPLIERS.get(suffix)
        if multiplier is None:
            # nats-server silently drops such a value (`1kbb`) and then fails oddly; say why.
            raise ConfParseError(f"expected integer, but got '{token}'", self.position_at(*start))
        value = number * multiplier
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ConfParseError(f"integer '{token}' is out of the range", self.position_at(*start))
        return ConfValue(value, self.position_at(*start))

    def parse_float(self, begin: int, start: tuple[int, int, int]) -> ConfValue:
        char = self.advance()
        if not (char.isdigit() and char.isascii()):
            raise self.error(f"Floats must have a digit after the '.', but got '{_show(char)}' instead.")
        while self.peek().isdigit() and self.peek().isascii():
            self.advance()
        if self.peek() == ".":
            # A second dot: an IP address (`127.0.0.1:4222`), kept as a string.
            while (self.peek().isdigit() and self.peek().isascii()) or self.peek() in (".", ":", "-"):
                self.advance()
            return ConfValue(self.text[begin : self.offset], self.position_at(*start))
        token = self.text[begin : self.offset]
        number = float(token)
        if math.isinf(number):
            raise ConfParseError(f"float '{token}' is out of the range", self.position_at(*start))
        return ConfValue(number, self.position_at(*start))

    def parse_negative_number(self, start: tuple[int, int, int]) -> ConfValue:
        begin = self.offset - 1
        char = self.advance()
        if not (char.isdigit() and char.isascii()):
            if char == ".":
                raise self.error("Floats must start with a digit, not '.'.")
            raise self.error(f"Expected a digit but got '{_show(char)}'.")
        while True:
            char = self.peek()
            if char.isdigit() and char.isascii():
                self.advance()
                continue
            if char == ".":
                self.advance()
                return self.parse_float(begin, start)
            if char != _EOF and char.lower() in "kmgtpe":
                self.advance()
                while self.peek() in ("b", "B", "i", "I"):
                    self.advance()
                return self.make_integer(self.text[begin : self.offset], start)
            return self.make_integer(self.text[begin : self.offset], start)

    def parse_datetime(self, begin: int, start: tuple[int, int, int]) -> ConfValue:
        for expected in "00-00T00:00:00Z":
            char = self.advance()
            if expected == "0":
                if not (char.isdigit() and char.isascii()):
                    raise self.error(f"Expected digit in ISO8601 datetime, but found '{_show(char)}' instead.")
            elif char != expected:
                raise self.error(f"Expected '{expected}' in ISO8601 datetime, but found '{_show(char)}' instead.")
        token = self.text[begin : self.offset]
        try:
            moment = datetime.datetime.strptime(token, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ConfParseError(
                f"expected Zulu formatted DateTime, but got '{token}'", self.position_at(*start)
            ) from None
        return ConfValue(moment.replace(tzinfo=datetime.UTC), self.position_at(*start))

    # -- variables ----------------------------------------------------------------------------

    def resolve_variable(self, name: str, position: Position) -> ConfValue:
        line = position.line
        if name.startswith(_BCRYPT_PREFIX):
            return ConfValue("$" + name, position)
        for context in reversed(self.contexts):
            if isinstance(context, _Map) and name in context:
                found: ConfValue = context[name]
                found.used_as_variable = True
                return ConfValue(found.value, position)
        if name in self.environ:
            if name in self.environment_chain:
                cause = f"variable reference cycle for '{name}'"
            else:
                try:
                    parsed = _Parser(
                        f"{_ENVIRONMENT_PARSE_KEY}={self.environ[name]}",
                        "",
                        self.environ,
                        (*self.environment_chain, name),
                    ).parse_document()
                except ConfParseError as error:
                    cause = error.message
                else:
                    if _ENVIRONMENT_PARSE_KEY in parsed:
                        return ConfValue(parsed[_ENVIRONMENT_PARSE_KEY].value, position)
                    cause = ""
            if cause:
                raise ConfParseError(
                    f"variable reference for '{name}' on line {line} could not be parsed: {cause}",
                    position,
                )
        raise ConfParseError(f"variable reference for '{name}' on line {line} can not be found", position)


def parse(
    text: str,
    file_name: str = "",
    environ: Mapping[str, str] | None = None,
) -> dict[str, ConfValue]:
    """Parse config text. `file_name` is used for positions and to resolve includes."""
    return _Parser(text, file_name, os.environ if environ is None else environ, ()).parse_document()


def _parse_path(path: str, environ: Mapping[str, str], environment_chain: tuple[str, ...]) -> dict[str, ConfValue]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ConfParseError(f"open {path}: {_go_errno_text(error)}") from None
    return _Parser(data.decode("utf-8", errors="replace"), path, environ, environment_chain).parse_document()


def parse_file(path: str, environ: Mapping[str, str] | None = None) -> dict[str, ConfValue]:
    """Read and parse a config file; includes are resolved relative to its directory.

    A missing file raises `ConfParseError("open <path>: no such file or directory")`, nats-server's text.
    """
    return _parse_path(path, os.environ if environ is None else environ, ())


# -- digest -----------------------------------------------------------------------------------


def _go_json(value: Any) -> str:
    """JSON as Go's `encoding/json` writes it (sorted keys, HTML-safe escapes, Go float format)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            sign = exponent[0] if exponent[0] in "+-" else "+"
            digits = exponent.lstrip("+-").rjust(2, "0")
            text = f"{mantissa}e{sign}{digits}"
        return text
    if isinstance(value, datetime.datetime):
        return json.dumps(value.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(raw, escaped)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if isinstance(value, list):
        return "[" + ",".join(_go_json(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_go_json(key)}:{_go_json(item)}" for key, item in items) + "}"
    raise TypeError(f"cannot digest {type(value).__name__}")


def config_digest(tree: dict[str, ConfValue]) -> str:
    """`sha256:<hex>` exactly as nats-server prints it for `-t` and `Using configuration file`.

    nats-server digests the parsed tree (JSON-encoded as Go does, then a newline), not the file
    bytes, so comments and formatting do not change it (verified against nats-server 2.15.1).
    """
    encoded = _go_json(plain(tree)) + "\n"
    return "sha256:" + hashlib.sha256(encoded.encode("utf-8", errors="surrogatepass")).hexdigest()
