"""Differential property tests of the parser twins (hypothesis).

Both twins are fed the same bytes, whole, one byte at a time and split at random points; every
run must produce the same handler calls and the same error. Streams are valid protocol (random
ops, case, separators, line ends, payloads), random garbage over the protocol's alphabet, and
valid streams mutated byte-wise, with random small limits so the error paths are reached often.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsedge.protocol import _parser_py
from jsedge.routing import _sublist_py

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(params=["py", "c"])
def impl(request: pytest.FixtureRequest) -> tuple[Any, ModuleType]:
    """(Parser class, sublist twin) — the differential tests compare each twin with the py one."""
    if request.param == "py":
        return _parser_py.Parser, _sublist_py
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("JSEDGE_NO_EXTENSIONS is set")
    try:
        parser = importlib.import_module("jsedge._speedups.parser")
        sublist = importlib.import_module("jsedge._speedups.sublist")
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled parser twin not importable: {exc}")
    return parser.Parser, sublist


class Rec:
    """Records every handler call as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("proto_"):
            kind = name[6:]
            return lambda *args: self.events.append((kind, *args))
        raise AttributeError(name)


def run(impl: tuple[Any, ModuleType], data: bytes, cuts: list[int], cfg: dict[str, Any]) -> list[tuple[Any, ...]]:
    parser_cls, sublist = impl
    core = sublist.ClientCore()
    core.headers = cfg["headers"]
    core.max_payload = cfg["max_payload"]
    rec = Rec()
    p = parser_cls(core, rec, cfg["mcl"])
    pos = 0
    for cut in sorted(cuts):
        p.feed(data[pos:cut])
        pos = cut
    p.feed(data[pos:])
    if p.closed:
        assert rec.events and rec.events[-1][0] == "error"
    return rec.events


def check(impl: tuple[Any, ModuleType], data: bytes, cuts: list[int], cfg: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The reference (py, whole) against this twin whole, split at `cuts`, and byte at a time."""
    reference = run((_parser_py.Parser, _sublist_py), data, [], cfg)
    assert run(impl, data, [], cfg) == reference
    assert run(impl, data, cuts, cfg) == reference
    assert run(impl, data, list(range(1, len(data))), cfg) == reference
    return reference


# -- strategies -----------------------------------------------------------------------------------

token = st.binary(min_size=1, max_size=8).map(lambda b: bytes(c for c in b if c not in b" \t\r\n") or b"t")
sep = st.lists(st.sampled_from([b" ", b"\t"]), min_size=1, max_size=3).map(b"".join)
eol = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def cased(draw: st.DrawFn, name: bytes) -> bytes:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes(c + 32 if f and 65 <= c <= 90 else c for c, f in zip(name, flips, strict=True))


@st.composite
def op(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["PUB", "HPUB", "SUB", "UNSUB", "PING", "PONG", "+OK", "CONNECT", "INFO", "-ERR"]))
    name = draw(cased(kind.encode()))
    if kind in ("PUB", "HPUB"):
        payload = draw(st.binary(max_size=40))
        reply = [draw(token)] if draw(st.booleans()) else []
        sizes = [str(len(payload)).encode()]
        if kind == "HPUB":
            sizes.insert(0, str(draw(st.integers(0, len(payload)))).encode())
        args = [draw(token), *reply, *sizes]
        line = name + draw(sep) + b"".join(a + draw(sep) for a in args[:-1]) + args[-1]
        return line + draw(eol) + payload + b"\r\n"
    if kind in ("SUB", "UNSUB"):
        n = draw(st.integers(2, 3)) if kind == "SUB" else draw(st.integers(1, 2))
        args = [draw(token) for _ in range(n)]
        if kind == "UNSUB" and n == 2 and draw(st.booleans()):
            args[1] = str(draw(st.integers(0, 10**9))).encode()
        return name + draw(sep) + draw(sep).join(args) + draw(eol)
    if kind in ("PING", "PONG", "+OK"):
        junk = draw(st.binary(max_size=5)).replace(b"\n", b"")
        return name + junk + draw(eol)
    # CONNECT / INFO / -ERR: free text
    # At least one byte that is not a space/TAB: after the op's separators the argument starts at the
    # next byte whatever it is, so `INFO\t\n` would take the *next* line as its argument (as in
    # nats-server) and is not a valid stream.
    text = draw(
        st.binary(min_size=1, max_size=30).map(lambda t: t.replace(b"\n", b"")).filter(lambda t: t.strip(b" \t"))
    )
    spacer = draw(sep) if kind == "-ERR" else draw(st.sampled_from([b"", b" ", b"\t "]))
    return name + spacer + text + draw(eol)


valid_stream = st.lists(op(), max_size=12).map(b"".join)
garbage = st.lists(
    st.sampled_from(
        [
            b"P",
            b"U",
            b"B",
            b"S",
            b"H",
            b"M",
            b"G",
            b"I",
            b"N",
            b"O",
            b"K",
            b"+",
            b"-",
            b"E",
            b"R",
            b"C",
            b"T",
            b"F",
            b" ",
            b"\t",
            b"\r",
            b"\n",
            b"\r\n",
            b"0",
            b"1",
            b"2",
            b"5",
            b"x",
            b"PUB ",
            b"SUB ",
            b"PING",
            b"HPUB ",
            b"UNSUB ",
            b"\x00",
            b"\xff",
            b"p",
            b"u",
            b"b",
        ]
    ),
    max_size=80,
).map(b"".join)

config = st.fixed_dictionaries(
    {
        "headers": st.booleans(),
        "max_payload": st.sampled_from([1048576, 30, 5, 0, -1]),
        "mcl": st.sampled_from([4096, 24, 8, 1]),
    }
)


@st.composite
def with_cuts(draw: st.DrawFn, data_strategy: st.SearchStrategy[bytes]) -> tuple[bytes, list[int]]:
    data = draw(data_strategy)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=8))
    return data, cuts


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_stream))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from(b" \t\r\n0129PUBSx+-\xff"))
        if action == "insert":
            data.insert(pos, byte)
        elif pos < len(data):
            if action == "delete":
                del data[pos]
            else:
                data[pos] = byte
    return bytes(data)


# -- properties -----------------------------------------------------------------------------------


@SETTINGS
@given(case=with_cuts(valid_stream))
def test_valid_streams_same_events(impl: tuple[Any, ModuleType], case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    cfg = {"headers": True, "max_payload": 1048576, "mcl": 4096}
    events = check(impl, data, cuts, cfg)
    assert not any(e[0] == "error" for e in events), events


@SETTINGS
@given(case=with_cuts(valid_stream), cfg=config)
def test_valid_streams_with_limits(
    impl: tuple[Any, ModuleType], case: tuple[bytes, list[int]], cfg: dict[str, Any]
) -> None:
    check(impl, case[0], case[1], cfg)


@SETTINGS
@given(case=with_cuts(garbage), cfg=config)
def test_garbage_same_events(impl: tuple[Any, ModuleType], case: tuple[bytes, list[int]], cfg: dict[str, Any]) -> None:
    check(impl, case[0], case[1], cfg)


@SETTINGS
@given(case=with_cuts(mutated()), cfg=config)
def test_mutated_streams_same_events(
    impl: tuple[Any, ModuleType], case: tuple[bytes, list[int]], cfg: dict[str, Any]
) -> None:
    check(impl, case[0], case[1], cfg)


@SETTINGS
@given(data=st.binary(max_size=60), cuts=st.lists(st.integers(0, 60), max_size=6), cfg=config)
def test_random_bytes_same_events(
    impl: tuple[Any, ModuleType], data: bytes, cuts: list[int], cfg: dict[str, Any]
) -> None:
    check(impl, data, [c for c in cuts if c <= len(data)], cfg)
