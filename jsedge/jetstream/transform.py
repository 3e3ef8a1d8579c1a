"""Subject transforms (layer 4): `subject_transform`, `republish` and source transforms.

A transform maps subjects matching `src` (wildcards allowed) to `dest`, whose tokens may reference the
source's wildcards: `$1`, `{{wildcard(1)}}`, `{{partition(n,1,2)}}`, `{{split(1,-)}}`. A `>` in both
means "the rest". nats-server shares this engine with core subject mapping; jsedge's core has no
mapping yet, so it lives here until it is needed lower down. Imports layer 0 only.
"""

from __future__ import annotations

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
                self._ops.append(("wc", self._wildcard(int(token[1:]))))
            elif token.startswith(b"{{"):
                match = _FUNC_RE.match(token)
                if match is None:
                    raise TransformError("invalid destination")
                name = match.group(1).lower()
                args = [a.strip() for a in match.group(2).split(b",")]
                if name == b"wildcard" and len(args) == 1 and args[0].isdigit():
                    self._ops.append(("wc", self._wildcard(int(args[0]))))
                elif name == b"partition" and len(args) >= 1 and all(a.isdigit() for a in args):
                    self._ops.append(("part", (int(args[0]), [self._wildcard(int(a)) for a in args[1:]])))
                elif name == b"split" and len(args) == 2 and args[0].isdigit():
                    self._ops.append(("split", (self._wildcard(int(args[0])), args[1])))
                else:
                    raise TransformError("invalid destination")
            elif PWC == token:
                raise TransformError("invalid destination")
            else:
                self._ops.append(("lit", token))

    def _wildcard(self, number: int) -> int:
        if number < 1 or number > len(self._src_wildcards):
            raise TransformError("invalid destination")
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
