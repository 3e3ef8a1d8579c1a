"""Subject transforms (layer 0): core subject mappings (`mappings {}`, per account too), a
stream's `subject_transform`, `republish` and source transforms.

A transform maps subjects matching `src` (wildcards allowed) to `dest`, whose tokens may reference the
source's wildcards: `$1`, `{{wildcard(1)}}`, `{{partition(n,1,2)}}`, `{{split(1,-)}}`. A `>` in both
means "the rest". A mapping has one destination or several with weights (percent, at most 100 in
all; what the weights leave is the subject unmapped), optionally per cluster. Imports layer 0 only.
"""

from __future__ import annotations

import random
import re
from typing import Any

from jsedge.subjects import FWC, PWC, subject_matches, valid_subject

_FUNC_RE = re.compile(rb"^\{\{\s*([A-Za-z]+)\s*\((.*)\)\s*\}\}$")


class TransformError(ValueError):
    pass


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


class SubjectTransform:
    """A compiled `src -> dest` transform; `apply(subject)` returns None when `src` does not match."""

    __slots__ = ("src", "dest", "_src_wildcards", "_ops")

    def __init__(self, src: str, dest: str) -> None:
        source = (src or ">").encode()
        if not valid_subject(source):
            raise TransformError("invalid source")
        self.src = source
        self.dest = dest.encode()
        tokens = source.split(b".")
        self._src_wildcards = [index for index, token in enumerate(tokens) if token == PWC]
        has_fwc = tokens[-1] == FWC
        # (op, argument): "lit" bytes, "wc" token index, "rest" None, "part" (buckets, token indexes),
        # "split" (token index, delimiter)
        self._ops: list[tuple[str, Any]] = []
        if not dest:
            return
        if not valid_subject(self.dest.replace(b" ", b"")):
            raise TransformError("invalid destination")
        for token in self.dest.split(b"."):
            if token == FWC:
                if not has_fwc:
                    raise TransformError("invalid destination")
                self._ops.append(("rest", None))
            elif token.startswith(b"$") and token[1:].isdigit():
                self._ops.append(("wc", self._wildcard(int(token[1:]), token)))
            elif token.startswith(b"{{"):
                match = _FUNC_RE.match(token)
                if match is None:
                    raise TransformError("invalid destination")
                name = match.group(1).lower()
                args = [a.strip() for a in match.group(2).split(b",")]
                if name == b"wildcard" and len(args) == 1 and args[0].isdigit():
                    self._ops.append(("wc", self._wildcard(int(args[0]), token)))
                elif name == b"partition" and len(args) >= 1 and all(a.isdigit() for a in args):
                    self._ops.append(("part", (int(args[0]), [self._wildcard(int(a), token) for a in args[1:]])))
                elif name == b"split" and len(args) == 2 and args[0].isdigit():
                    self._ops.append(("split", (self._wildcard(int(args[0]), token), args[1])))
                else:
                    raise TransformError("invalid destination")
            elif PWC == token:
                raise TransformError("invalid destination")
            else:
                self._ops.append(("lit", token))

    def _wildcard(self, number: int, token: bytes = b"") -> int:
        if number < 1 or number > len(self._src_wildcards):
            raise TransformError(
                f"invalid mapping destination: wildcard index out of range in {token.decode(errors='replace')}: [{number}]"
            )
        return self._src_wildcards[number - 1]

    def apply(self, subject: bytes) -> bytes | None:
        if not subject_matches(self.src, subject):
            return None
        if not self._ops:
            return subject
        tokens = subject.split(b".")
        src_len = self.src.count(b".") + 1
        out: list[bytes] = []
        for op, arg in self._ops:
            if op == "lit":
                out.append(arg)
            elif op == "wc":
                out.append(tokens[arg])
            elif op == "rest":
                out.extend(tokens[src_len - 1 :])
            elif op == "part":
                buckets, positions = arg
                key = b"".join(tokens[p] for p in positions) if positions else subject
                out.append(str(_fnv32a(key) % buckets).encode())
            elif op == "split":
                position, delimiter = arg
                out.extend(part for part in tokens[position].split(delimiter) if part)
        return b".".join(out)


class SubjectMapping:
    """One entry of `mappings {}`: subjects matching `src` go to one destination, or to one of
    several picked by weight (percent; the rest of 100 keeps the subject as it is)."""

    __slots__ = ("src", "destinations")

    def __init__(self, src: bytes, destinations: list[tuple[SubjectTransform, int]]) -> None:
        self.src = src
        self.destinations = destinations

    def map(self, subject: bytes) -> bytes | None:
        """The mapped subject; None when `src` does not match."""
        if not subject_matches(self.src, subject):
            return None
        destinations = self.destinations
        if len(destinations) == 1 and destinations[0][1] == 100:
            return destinations[0][0].apply(subject)
        pick = random.randrange(100)
        total = 0
        for transform, weight in destinations:
            total += weight
            if pick < total:
                return transform.apply(subject)
        return subject


def _weight(value: Any) -> int:
    text = str(value).strip()
    if text.endswith("%"):
        text = text[:-1]
    try:
        weight = int(float(text))
    except ValueError:
        raise TransformError(f"invalid weight {value!r}") from None
    if not 0 < weight <= 100:
        raise TransformError("invalid weight, needs to be between 1 and 100")
    return weight


def compile_mapping(src: str, value: Any, cluster: str = "") -> SubjectMapping:
    """A `mappings` entry as nats-server reads it (TransformError with its wording when invalid):
    a destination string, or a list of `{destination, weight, cluster}`; destinations of this
    server's cluster, when there are any, replace the others."""
    if isinstance(value, str):
        try:
            return SubjectMapping(src.encode(), [(SubjectTransform(src, value), 100)])
        except TransformError as exc:
            raise TransformError(f'Error adding mapping for "{src}" to "{value}" : {exc}') from None
    entries = value if isinstance(value, list) else [value]
    plain: list[tuple[SubjectTransform, int]] = []
    local: list[tuple[SubjectTransform, int]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise TransformError(f'Error adding mapping for "{src}" : expected a map with a destination')
        fields = {str(k).lower(): v for k, v in entry.items()}
        dest = fields.get("destination", fields.get("dest", ""))
        if not isinstance(dest, str) or not dest:
            raise TransformError(f'Error adding mapping for "{src}" : missing destination')
        weight = _weight(fields["weight"]) if "weight" in fields else 100
        try:
            transform = SubjectTransform(src, dest)
        except TransformError as exc:
            raise TransformError(f'Error adding mapping for "{src}" to "{dest}" : {exc}') from None
        target = fields.get("cluster", "")
        if target:
            if target == cluster:
                local.append((transform, weight))
        else:
            plain.append((transform, weight))
    for group in (plain, local):
        if sum(weight for _t, weight in group) > 100:
            raise TransformError(f'Error adding mapping for "{src}" : total weight needs to be <= 100')
    return SubjectMapping(src.encode(), local or plain)
