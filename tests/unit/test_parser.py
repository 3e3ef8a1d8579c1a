"""Unit tests of jsedge.protocol.parser, run on both twins (the `impl` fixture).

Expected behaviour is nats-server 2.15.1's (spec/protocol.md §1, §3, §13; quirks the spec does not
state were checked on the binary and are listed in the docstring of jsedge/protocol/_parser_py.py).
Events are recorded by a handler with `core.fast_pub = False`; the fused path (`fast_pub = True`)
is checked through a real Sublist of the matching twin and the subscriber's outbuf.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from jsedge.protocol import _parser_py
from jsedge.protocol import parser as selector
from jsedge.routing import _sublist_py

MAX_PAYLOAD = 1048576


@dataclass(frozen=True)
class Twin:
    name: str
    parser: Any  # the Parser class
    sublist: ModuleType  # the sublist twin it pairs with (ClientCore, Sublist, deliver)


@pytest.fixture(params=["py", "c"])
def impl(request: pytest.FixtureRequest) -> Twin:
    if request.param == "py":
        return Twin("py", _parser_py.Parser, _sublist_py)
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("JSEDGE_NO_EXTENSIONS is set")
    try:
        parser = importlib.import_module("jsedge._speedups.parser")
        sublist = importlib.import_module("jsedge._speedups.sublist")
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled parser twin not importable: {exc}")
    return Twin("c", parser.Parser, sublist)


# -- helpers --------------------------------------------------------------------------------------


class Rec:
    """Handler recording every call as a tuple; `close_on` names calls after which the core closes."""

    def __init__(self, core: Any = None, close_on: str | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.core = core
        self.close_on = close_on
        self.pub_args: list[bytes] = []  # proto_pub_arg calls (control line accepted)

    def _rec(self, *event: Any) -> None:
        self.events.append(event)
        if self.close_on == event[0]:
            self.core.closed = True

    def proto_pub_arg(self, subject: bytes) -> None:
        assert type(subject) is bytes
        self.pub_args.append(subject)

    def proto_pub(self, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        assert type(subject) is bytes and type(reply) is bytes and type(msg) is bytes
        self._rec("pub", subject, reply, hdr_len, msg)

    def proto_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        self._rec("sub", subject, queue, sid)

    def proto_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        self._rec("unsub", sid, max_msgs)

    def proto_connect(self, arg: bytes) -> None:
        self._rec("connect", arg)

    def proto_info(self, arg: bytes) -> None:
        self._rec("info", arg)

    def proto_ping(self) -> None:
        self._rec("ping")

    def proto_pong(self) -> None:
        self._rec("pong")

    def proto_client_err(self, arg: bytes) -> None:
        self._rec("client_err", arg)

    def proto_error(self, key: str) -> None:
        self._rec("error", key)


def make_core(impl: Twin, **fields: Any) -> Any:
    core = impl.sublist.ClientCore()
    core.headers = True
    for name, value in fields.items():
        setattr(core, name, value)
    return core


def run(
    impl: Twin,
    data: bytes,
    chunks: list[int] | None = None,
    mcl: int = 4096,
    close_on: str | None = None,
    **fields: Any,
) -> tuple[list[tuple[Any, ...]], Any]:
    """Feed `data` (whole, or in pieces of the given sizes, the rest last); return (events, parser)."""
    core = make_core(impl, **fields)
    rec = Rec(core, close_on)
    p = impl.parser(core, rec, mcl)
    if chunks is None:
        p.feed(data)
    else:
        pos = 0
        for size in chunks:
            p.feed(data[pos : pos + size])
            pos += size
        p.feed(data[pos:])
    return rec.events, p


def events(impl: Twin, data: bytes, **kw: Any) -> list[tuple[Any, ...]]:
    """Events of `data`, asserted identical whole, byte at a time and split at every offset."""
    whole, _ = run(impl, data, **kw)
    bytewise, _ = run(impl, data, chunks=[1] * len(data), **kw)
    assert bytewise == whole, "byte-at-a-time differs"
    for k in range(1, len(data)):
        split, _ = run(impl, data, chunks=[k], **kw)
        assert split == whole, f"split at {k} differs"
    return whole


ERR_UNKNOWN = ("error", "unknown_op")
ERR_MCL = ("error", "max_control_line")
ERR_MAX_PAYLOAD = ("error", "max_payload")
ERR_SILENT = ("error", "silent")


# -- selector -------------------------------------------------------------------------------------


def test_selector_exports() -> None:
    assert selector.py_impl is _parser_py
    assert selector.ParserPy is _parser_py.Parser
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        assert selector.c_impl is None and selector.Parser is _parser_py.Parser
        assert selector.IMPLEMENTATION == "py"
    else:
        assert selector.c_impl is not None, "compiled parser twin not loaded"
        assert selector.Parser is selector.c_impl.Parser and selector.IMPLEMENTATION == "c"


# -- every op -------------------------------------------------------------------------------------


def test_all_ops(impl: Twin) -> None:
    stream = (
        b'CONNECT {"verbose":false}\r\n'
        b"INFO {}\r\n"
        b"PUB foo 5\r\nhello\r\n"
        b"PUB foo bar.baz 1\r\na\r\n"
        b"HPUB bar 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        b"HPUB bar r 12 12\r\nNATS/1.0\r\n\r\n\r\n"
        b"SUB foo 1\r\n"
        b"SUB foo q 2\r\n"
        b"UNSUB 1\r\n"
        b"UNSUB 2 10\r\n"
        b"PING\r\n"
        b"PONG\r\n"
        b"+OK\r\n"
        b"-ERR 'boom'\r\n"
    )
    assert events(impl, stream) == [
        ("connect", b'{"verbose":false}'),
        ("info", b"{}"),
        ("pub", b"foo", b"", -1, b"hello"),
        ("pub", b"foo", b"bar.baz", -1, b"a"),
        ("pub", b"bar", b"", 12, b"NATS/1.0\r\n\r\nhi"),
        ("pub", b"bar", b"r", 12, b"NATS/1.0\r\n\r\n"),
        ("sub", b"foo", None, b"1"),
        ("sub", b"foo", b"q", b"2"),
        ("unsub", b"1", None),
        ("unsub", b"2", 10),
        ("ping",),
        ("pong",),
        ("client_err", b"'boom'"),
    ]


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"pub foo 1\r\nx\r\n", ("pub", b"foo", b"", -1, b"x")),
        (b"PuB foo 1\r\nx\r\n", ("pub", b"foo", b"", -1, b"x")),
        (b"hPuB foo 0 1\r\nx\r\n", ("pub", b"foo", b"", -1, b"x")),
        (b"sUb foo 1\r\n", ("sub", b"foo", None, b"1")),
        (b"unsub 1\r\n", ("unsub", b"1", None)),
        (b"UnSuB 1\r\n", ("unsub", b"1", None)),
        (b"ping\r\n", ("ping",)),
        (b"PiNg\r\n", ("ping",)),
        (b"pong\r\n", ("pong",)),
        (b"connect {}\r\n", ("connect", b"{}")),
        (b"CoNnEcT {}\r\n", ("connect", b"{}")),
        (b"info {}\r\n", ("info", b"{}")),
        (b"-err x\r\n", ("client_err", b"x")),
    ],
)
def test_op_names_case_insensitive(impl: Twin, line: bytes, event: tuple[Any, ...]) -> None:
    assert events(impl, line) == [event]


def test_client_ok_ignored_in_any_case(impl: Twin) -> None:
    assert events(impl, b"+OK\r\n+ok\r\n+oK junk\n+OKAY\r\nPING\r\n") == [("ping",)]


# -- separators, line ends ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"SUB  foo   1\r\n", ("sub", b"foo", None, b"1")),
        (b"SUB\tfoo\t\t1\r\n", ("sub", b"foo", None, b"1")),
        (b"SUB \t foo \t q \t 1 \t\r\n", ("sub", b"foo", b"q", b"1")),
        (b"PUB foo  1\r\nx\r\n", ("pub", b"foo", b"", -1, b"x")),  # nats.py's empty reply
        (b"PUB\t\tfoo\t \tbar \t 1\t \r\nx\r\n", ("pub", b"foo", b"bar", -1, b"x")),
        (b"HPUB\tfoo \t r\t0  1 \r\nx\r\n", ("pub", b"foo", b"r", -1, b"x")),
        (b"UNSUB\t 1 \t 2\r\n", ("unsub", b"1", 2)),
        (b"CONNECT \t {} \r\n", ("connect", b"{} ")),
        (b"CONNECT{}\r\n", ("connect", b"{}")),
        (b"INFO{}\r\n", ("info", b"{}")),
        (b"-ERR\t\t'x'\r\n", ("client_err", b"'x'")),
    ],
)
def test_space_and_tab_runs(impl: Twin, line: bytes, event: tuple[Any, ...]) -> None:
    assert events(impl, line) == [event]


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"PING\n", ("ping",)),
        (b"PONG\n", ("pong",)),
        (b"CONNECT {}\n", ("connect", b"{}")),
        (b"SUB foo 1\n", ("sub", b"foo", None, b"1")),
        (b"UNSUB 1\n", ("unsub", b"1", None)),
        (b"PUB foo 1\nx\r\n", ("pub", b"foo", b"", -1, b"x")),
        (b"HPUB foo 0 1\nx\r\n", ("pub", b"foo", b"", -1, b"x")),
        (b"-ERR x\n", ("client_err", b"x")),
        (b"INFO {}\n", ("info", b"{}")),
    ],
)
def test_bare_lf_ends_control_line(impl: Twin, line: bytes, event: tuple[Any, ...]) -> None:
    assert events(impl, line) == [event]


@pytest.mark.parametrize("line", [b"PINGxyz\n", b"PING junk\r\n", b"PING\r\r\n", b"PINGPONG\n"])
def test_ping_ignores_trailing_junk(impl: Twin, line: bytes) -> None:
    assert events(impl, line) == [("ping",)]


def test_pong_ignores_trailing_junk(impl: Twin) -> None:
    assert events(impl, b"PONGjunk\r\nPONG \t x\n") == [("pong",), ("pong",)]


def test_ping_junk_is_unlimited_and_not_buffered(impl: Twin) -> None:
    core = make_core(impl)
    rec = Rec(core)
    p = impl.parser(core, rec, 16)
    p.feed(b"PING")
    for _ in range(64):
        p.feed(b"x" * 16384)  # 1 MiB of junk: no max control line, nothing kept
    assert rec.events == [] and not p.closed
    p.feed(b"\r\nPING\r\n")
    assert rec.events == [("ping",), ("ping",)]


def test_spaces_after_op_are_not_limited(impl: Twin) -> None:
    data = b"PUB" + b" " * 10000 + b"foo 1\r\nx\r\n"
    ev, p = run(impl, data, chunks=[1000] * 10, mcl=16)
    assert ev == [("pub", b"foo", b"", -1, b"x")] and not p.closed


# -- nats-server quirks (checked on the 2.15.1 binary) ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # the first argument byte is taken whatever it is, even CR or LF
        (b"CONNECT\r\n", [("connect", b"\r")]),
        (b"INFO\r\n", [("info", b"\r")]),
        (b"INFO \r\n", [("info", b"\r")]),
        (b"CONNECT \n{}\n", [("connect", b"\n{}")]),
        (b"PUB \nfoo 0\r\n\r\n", [("pub", b"\nfoo", b"", -1, b"")]),
        # PUB splits on space/TAB only: a CR stays in the subject
        (b"PUB foo\r1 0\r\n\r\n", [("pub", b"foo\r1", b"", -1, b"")]),
        # SUB splits on CR/LF too
        (b"SUB foo\r1\r\n", [("sub", b"foo", None, b"1")]),
        # sticky drop: a CR anywhere after the first byte drops the byte before LF
        (b"PUB foo 0\rX\n\r\n", [ERR_SILENT]),
        (b"SUB foo\r1\n", [ERR_SILENT]),
        (b"CONNECT {}\rX\n", [("connect", b"{}\r")]),
        (b"CONNECT \r\r\n", [("connect", b"\r")]),
        # sizes echo nothing of their form: 9 digits with leading zeros are fine
        (b"PUB foo 000000001\r\nx\r\n", [("pub", b"foo", b"", -1, b"x")]),
        (b"PUB foo 1 \r\nx\r\n", [("pub", b"foo", b"", -1, b"x")]),
    ],
)
def test_binary_quirks(impl: Twin, line: bytes, expected: list[tuple[Any, ...]]) -> None:
    assert events(impl, line) == expected


# -- payloads -------------------------------------------------------------------------------------


def test_zero_length_payloads(impl: Twin) -> None:
    stream = b"PUB foo 0\r\n\r\nPUB foo r 0\r\n\r\nHPUB foo 0 0\r\n\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    assert events(impl, stream) == [
        ("pub", b"foo", b"", -1, b""),
        ("pub", b"foo", b"r", -1, b""),
        ("pub", b"foo", b"", -1, b""),  # an empty header block is no header block
        ("pub", b"foo", b"", 12, b"NATS/1.0\r\n\r\n"),
    ]


def test_payload_may_contain_anything(impl: Twin) -> None:
    payload = b"PUB x 1\r\n\r\n\n\r\x00\xff"
    stream = b"PUB foo %d\r\n%s\r\nPING\r\n" % (len(payload), payload)
    assert events(impl, stream) == [("pub", b"foo", b"", -1, payload), ("ping",)]


def test_header_block_not_validated(impl: Twin) -> None:
    assert events(impl, b"HPUB foo 5 5\r\nhello\r\n") == [("pub", b"foo", b"", 5, b"hello")]


@pytest.mark.parametrize(
    "data",
    [
        b"PUB foo 2\r\nhi\nPING\r\n",  # LF without CR
        b"PUB foo 1\r\nxy\r\n",  # longer than declared
        b"PUB foo 1\r\nx\n\r",
        b"PUB foo 1\r\nx\r\r",
        b"PUB foo 1\r\nx\rX",
        b"PUB foo 0\r\nPING\r\n",
        b"HPUB foo 1 2\r\nxyz\r\n",
    ],
)
def test_payload_must_end_with_crlf(impl: Twin, data: bytes) -> None:
    ev = events(impl, data)
    assert ev == [ERR_UNKNOWN]


def test_payload_end_error_is_immediate(impl: Twin) -> None:
    # The wrong byte is reported as soon as it arrives, without waiting for more input.
    ev, p = run(impl, b"PUB foo 1\r\nxy")
    assert ev == [ERR_UNKNOWN] and p.closed
    ev, p = run(impl, b"PUB foo 1\r\nx\rz")
    assert ev == [ERR_UNKNOWN] and p.closed
    ev, p = run(impl, b"PUB foo 1\r\nx\r")
    assert ev == [] and not p.closed


def test_large_payload_streamed(impl: Twin) -> None:
    payload = bytes(range(256)) * 256  # 64 KiB
    data = b"PUB big 65536\r\n" + payload + b"\r\nPING\r\n"
    for chunks in ([1000] * 70, [7, 65536], [15, 65536], [16, 65535, 1], [3] * 10):
        ev, _ = run(impl, data, chunks=chunks)
        assert ev == [("pub", b"big", b"", -1, payload), ("ping",)]


def test_no_view_into_caller_buffer(impl: Twin) -> None:
    core = make_core(impl)
    rec = Rec(core)
    p = impl.parser(core, rec)
    head = bytearray(b"PUB foo.bar rep 6\r\nabc")
    p.feed(head)
    head[:] = b"X" * len(head)  # the caller reuses its buffer
    line = bytearray(b"def\r\nSUB long.subject.name")
    p.feed(memoryview(line))
    line[:] = b"Y" * len(line)
    p.feed(b" 1\r\n")
    assert rec.events == [("pub", b"foo.bar", b"rep", -1, b"abcdef"), ("sub", b"long.subject.name", None, b"1")]


# -- max_payload ----------------------------------------------------------------------------------


def test_max_payload_exact_boundary(impl: Twin) -> None:
    payload = b"x" * MAX_PAYLOAD
    ev, p = run(impl, b"PUB foo %d\r\n%s\r\n" % (MAX_PAYLOAD, payload))
    assert ev == [("pub", b"foo", b"", -1, payload)] and not p.closed


def test_max_payload_decided_from_control_line(impl: Twin) -> None:
    assert events(impl, b"PUB foo 1048577\r\n") == [ERR_MAX_PAYLOAD]
    assert events(impl, b"PING\r\nPUB foo r 1048577\r\nPING\r\n") == [("ping",), ERR_MAX_PAYLOAD]
    assert events(impl, b"PUB foo 999999999\r\n") == [ERR_MAX_PAYLOAD]


def test_max_payload_custom_limit(impl: Twin) -> None:
    assert events(impl, b"PUB foo 10\r\n0123456789\r\n", max_payload=10)[0][0] == "pub"
    assert events(impl, b"PUB foo 11\r\n", max_payload=10) == [ERR_MAX_PAYLOAD]
    assert events(impl, b"PUB foo 1\r\n", max_payload=0) == [ERR_MAX_PAYLOAD]
    assert events(impl, b"PUB foo 0\r\n\r\n", max_payload=0) == [("pub", b"foo", b"", -1, b"")]
    # a negative limit means none (nats-server's jwt.NoLimit)
    assert events(impl, b"PUB foo 20\r\n%s\r\n" % (b"y" * 20), max_payload=-1)[0][0] == "pub"


def test_max_payload_counts_hpub_total(impl: Twin) -> None:
    assert events(impl, b"HPUB foo 10 1048577\r\n") == [ERR_MAX_PAYLOAD]
    assert events(impl, b"HPUB foo 5 11\r\n", max_payload=10) == [ERR_MAX_PAYLOAD]
    assert events(impl, b"HPUB foo 5 10\r\n0123456789\r\n", max_payload=10)[0][0] == "pub"
    # argument errors come first: silent, not max_payload
    assert events(impl, b"HPUB foo 1048578 1048577\r\n") == [ERR_SILENT]
    assert events(impl, b"HPUB foo x 1048577\r\n") == [ERR_SILENT]
    assert events(impl, b"PUB foo a b 1048577\r\n") == [ERR_SILENT]


# -- max control line -----------------------------------------------------------------------------


def _pub_line(arg_len: int) -> bytes:
    """A PUB whose argument part is exactly `arg_len` bytes (subject padded), payload empty."""
    return b"PUB " + b"s" * (arg_len - 2) + b" 0"


@pytest.mark.parametrize("mcl", [16, 4096])
def test_control_line_exact_limit(impl: Twin, mcl: int) -> None:
    ev, p = run(impl, _pub_line(mcl) + b"\r\n\r\n", mcl=mcl)
    assert ev == [("pub", b"s" * (mcl - 2), b"", -1, b"")] and not p.closed
    # LF-only and CRLF count the same: neither terminator byte is part of the argument
    ev, _ = run(impl, _pub_line(mcl) + b"\n\r\n", mcl=mcl)
    assert ev[0][0] == "pub"


@pytest.mark.parametrize("mcl", [16, 4096])
def test_control_line_one_over(impl: Twin, mcl: int) -> None:
    assert events(impl, _pub_line(mcl + 1) + b"\r\n\r\n", mcl=mcl) == [ERR_MCL]
    assert events(impl, _pub_line(mcl + 1) + b"\n", mcl=mcl) == [ERR_MCL]


@pytest.mark.parametrize("mcl", [16, 4096])
def test_control_line_partial(impl: Twin, mcl: int) -> None:
    # An incomplete line is checked at the end of each feed: mcl bytes wait, mcl + 1 fail.
    ev, p = run(impl, b"PUB " + b"x" * mcl, chunks=[], mcl=mcl)
    assert ev == [] and not p.closed
    ev, p = run(impl, b"PUB " + b"x" * (mcl + 1), chunks=[], mcl=mcl)
    assert ev == [ERR_MCL] and p.closed
    # a trailing CR is the terminator's: not counted
    ev, p = run(impl, b"PUB " + b"x" * mcl + b"\r", chunks=[], mcl=mcl)
    assert ev == [] and not p.closed
    # only the argument counts, not the op or the spaces after it
    ev, p = run(impl, b"PUB      " + b"x" * mcl, chunks=[], mcl=mcl)
    assert ev == [] and not p.closed
    # accumulated over several feeds
    ev, p = run(impl, b"PUB " + b"x" * (mcl + 1), chunks=[4 + mcl // 2], mcl=mcl)
    assert ev == [ERR_MCL]
    ev, p = run(impl, b"PUB " + b"x" * mcl, chunks=[4 + mcl // 2], mcl=mcl)
    assert ev == [] and not p.closed


@pytest.mark.parametrize(
    "head",
    [b"SUB ", b"UNSUB ", b"CONNECT ", b"CONNECT", b"INFO ", b"-ERR ", b"HPUB ", b"HMSG ", b"SUB \t "],
)
def test_control_line_limit_applies_to_every_arg_op(impl: Twin, head: bytes) -> None:
    assert events(impl, head + b"x" * 17 + b"\r\n", mcl=16) == [ERR_MCL]
    ev, p = run(impl, head + b"x" * 17, chunks=[], mcl=16)
    assert ev == [ERR_MCL]


def test_control_line_limit_before_argument_errors(impl: Twin) -> None:
    # nats-server checks the length before it looks at the arguments
    assert events(impl, b"PUB " + b"x " * 20 + b"\r\n", mcl=16) == [ERR_MCL]
    assert events(impl, b"HPUB " + b"x" * 20 + b"\r\n", mcl=16, headers=False) == [ERR_MCL]


# -- silent closes (spec §13.2) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"PUB foo\r\n",
        b"PUB foo bar baz 1\r\n",
        b"PUB foo abc\r\n",
        b"PUB foo -1\r\n",
        b"PUB foo +1\r\n",
        b"PUB foo 1.0\r\n",
        b"PUB foo 0x1\r\n",
        b"PUB foo 0000000001\r\n",  # 10 digits: parseSize gives up
        b"PUB foo 99999999999999999999\r\n",
        b"PUB \r\n",
        b"PUB  \t \r\n",
        b"HPUB foo 1\r\n",
        b"HPUB foo a b c d\r\n",
        b"HPUB foo x 10\r\n",
        b"HPUB foo 1 x\r\n",
        b"HPUB foo -1 10\r\n",
        b"HPUB foo 12 10\r\n",  # header size > total
        b"HPUB \r\n",
        b"SUB foo\r\n",
        b"SUB foo q 1 2\r\n",
        b"SUB \r\n",
        b"UNSUB 1 2 3\r\n",
        b"UNSUB \r\n",
        b"UNSUB \t\r\n",
    ],
)
def test_argument_errors_are_silent(impl: Twin, line: bytes) -> None:
    ev, p = run(impl, line + b"PING\r\n")
    assert ev == [ERR_SILENT] and p.closed
    assert events(impl, line) == [ERR_SILENT]


def test_hpub_without_headers_is_silent(impl: Twin) -> None:
    assert events(impl, b"HPUB foo 5 5\r\nhello\r\n", headers=False) == [ERR_SILENT]
    assert events(impl, b"HPUB foo 10 1048577\r\n", headers=False) == [ERR_SILENT]


# -- unknown ops ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"FOO\r\n",
        b"X",
        b" PING\r\n",
        b"\r\n",
        b"\n",
        b"PUB\r\n",
        b"PUB\n",
        b"PUBX",
        b"PUBS foo 1\r\n",
        b"SUB\r\n",
        b"SUBfoo 1\r\n",
        b"UNSUB\r\n",  # no argument: fails at the op/space stage
        b"UNSUB\n",
        b"UNSUB1\r\n",
        b"HPUB\r\n",
        b"PIN\n",
        b"PIN G\r\n",
        b"PONX\r\n",
        b"+O\n",
        b"+X",
        b"-ERR\r\n",
        b"-ERROR\r\n",
        b"-X",
        b"CONNEC T {}\r\n",
        b"INF {}\r\n",
        b"MSG foo 1 2\r\nhi\r\n",
        b"M",
        b"HMSG foo 1 2 2\r\nhi\r\n",
        b"HMSG foo 1 2 2\r\n",
        b"HMSG foo 1 0 0\r\n\r\n",
        b"HMSGX",
        b"RS+ $G foo\r\n",
        b"RS- $G foo\r\n",
        b"RMSG $G foo 1\r\nx\r\n",
        b"LS+ foo\r\n",
        b"LS- foo\r\n",
        b"LMSG foo 1\r\nx\r\n",
        b"A+ foo\r\n",
        b"A- foo\r\n",
        b"R",
        b"L",
        b"a",
        b"\x00",
        b"\xff",
    ],
)
def test_unknown_ops(impl: Twin, data: bytes) -> None:
    assert events(impl, data) == [ERR_UNKNOWN]


def test_unknown_op_reported_at_first_bad_byte(impl: Twin) -> None:
    for partial in (b"X", b"PUBX", b"M", b"RS", b"HMS", b"UNSUB\r", b"PX"):
        ev, p = run(impl, partial)
        if partial == b"HMS":
            assert ev == [] and not p.closed  # HMSG is read, then rejected at its line end
        else:
            assert ev == [ERR_UNKNOWN] and p.closed, partial
    for partial in (b"P", b"PU", b"PUB", b"PUB ", b"UNSUB", b"UNSUB ", b"CONNECT", b"-ERR", b"+OK", b"HMSG a"):
        ev, p = run(impl, partial)
        assert ev == [] and not p.closed, partial


# -- UNSUB max ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [(b"10", 10), (b"0", 0), (b"abc", 0), (b"-1", 0), (b"0000000001", 0), (b"999999999", 999999999), (b"1x", 0)],
)
def test_unsub_max(impl: Twin, arg: bytes, expected: int) -> None:
    assert events(impl, b"UNSUB 1 " + arg + b"\r\n") == [("unsub", b"1", expected)]


def test_sid_and_queue_are_verbatim(impl: Twin) -> None:
    assert events(impl, b"SUB f\xc3\xb6\xc3\xb6.* gr\xff abc\r\nUNSUB abc\r\n") == [
        ("sub", b"f\xc3\xb6\xc3\xb6.*", b"gr\xff", b"abc"),
        ("unsub", b"abc", None),
    ]


# -- closing --------------------------------------------------------------------------------------


def test_error_ignores_rest_of_buffer_and_later_input(impl: Twin) -> None:
    core = make_core(impl)
    rec = Rec(core)
    p = impl.parser(core, rec)
    p.feed(b"PING\r\nFOO\r\nPING\r\n")
    assert rec.events == [("ping",), ERR_UNKNOWN] and p.closed
    p.feed(b"PING\r\n")
    p.feed(b"PUB foo 1\r\nx\r\n")
    assert rec.events == [("ping",), ERR_UNKNOWN]


@pytest.mark.parametrize("op", ["ping", "pong", "sub", "unsub", "connect", "info", "client_err", "pub"])
def test_core_closed_by_handler_stops_parsing(impl: Twin, op: str) -> None:
    stream = {
        "ping": b"PING\r\n",
        "pong": b"PONG\r\n",
        "sub": b"SUB a 1\r\n",
        "unsub": b"UNSUB 1\r\n",
        "connect": b"CONNECT {}\r\n",
        "info": b"INFO {}\r\n",
        "client_err": b"-ERR 'x'\r\n",
        "pub": b"PUB a 1\r\nx\r\n",
    }[op]
    ev, p = run(impl, stream + b"PING\r\nPUB b 1\r\ny\r\n", close_on=op)
    assert len(ev) == 1 and ev[0][0] == op
    assert not p.closed  # not a protocol error
    ev, p = run(impl, stream + b"PING\r\nPUB b 1\r\ny\r\n", chunks=[len(stream) + 2], close_on=op)
    assert len(ev) == 1


def test_feed_on_closed_core_is_noop(impl: Twin) -> None:
    ev, _ = run(impl, b"PING\r\n", closed=True)
    assert ev == []


# -- streaming: every split of a mixed stream -----------------------------------------------------


MIXED = (
    b'CONNECT {"verbose":false,"headers":true}\r\n'
    b"sub foo.* q1 1\r\n"
    b"SUB\tbar 2\n"
    b"PUB foo.a 5\r\nhello\r\n"
    b"pub foo.b  _INBOX.x  3\r\nabc\r\n"
    b"HPUB bar 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    b"PUB empty 0\r\n\r\n"
    b"PINGjunk\r\n"
    b"+OK\r\n"
    b"PONG\n"
    b"INFO {}\r\n"
    b"UNSUB 2 5\r\n"
    b"UNSUB\t1\r\n"
    b"HPUB bar r 0 4\r\n\r\n\r\n\r\n"
    b"-ERR 'x'\r\n"
)
MIXED_EVENTS = [
    ("connect", b'{"verbose":false,"headers":true}'),
    ("sub", b"foo.*", b"q1", b"1"),
    ("sub", b"bar", None, b"2"),
    ("pub", b"foo.a", b"", -1, b"hello"),
    ("pub", b"foo.b", b"_INBOX.x", -1, b"abc"),
    ("pub", b"bar", b"", 12, b"NATS/1.0\r\n\r\nhi"),
    ("pub", b"empty", b"", -1, b""),
    ("ping",),
    ("pong",),
    ("info", b"{}"),
    ("unsub", b"2", 5),
    ("unsub", b"1", None),
    ("pub", b"bar", b"r", -1, b"\r\n\r\n"),
    ("client_err", b"'x'"),
]


def test_mixed_stream_every_split(impl: Twin) -> None:
    assert events(impl, MIXED) == MIXED_EVENTS


def test_mixed_stream_every_double_split(impl: Twin) -> None:
    n = len(MIXED)
    for a in range(1, n, 7):
        for b in range(1, n - a, 5):
            ev, _ = run(impl, MIXED, chunks=[a, b])
            assert ev == MIXED_EVENTS, (a, b)


def test_mixed_stream_then_error_every_split(impl: Twin) -> None:
    assert events(impl, MIXED + b"PUB foo 1\r\nxx\r\nPING\r\n") == [*MIXED_EVENTS, ERR_UNKNOWN]
    assert events(impl, MIXED + b"PUB foo 5000\r\n", max_payload=4096) == [*MIXED_EVENTS, ERR_MAX_PAYLOAD]


# -- fused fast path: fast_pub=True goes straight to the sublist's deliver() -----------------------


def _fast_setup(impl: Twin, sub_headers: bool = True) -> tuple[Any, Any, Any, Rec]:
    sl = impl.sublist.Sublist()
    receiver = impl.sublist.ClientCore()
    receiver.headers = sub_headers
    receiver.sublist = sl
    sl.insert(impl.sublist.Subscription(receiver, b"foo.*", b"7"))
    pub = impl.sublist.ClientCore()
    pub.headers = True
    pub.fast_pub = True
    pub.sublist = sl
    rec = Rec(pub)
    return sl, receiver, pub, rec


def test_fast_pub_delivers_msg(impl: Twin) -> None:
    _, receiver, pub, rec = _fast_setup(impl)
    p = impl.parser(pub, rec)
    data = b"PUB foo.bar 5\r\nhello\r\nPUB foo.baz _INBOX.1 2\r\nhi\r\nPUB nomatch 1\r\nx\r\nPING\r\n"
    p.feed(data[:20])
    p.feed(data[20:])
    assert rec.events == [("ping",)]  # no proto_pub: the messages never went through Python
    assert bytes(receiver.outbuf) == b"MSG foo.bar 7 5\r\nhello\r\nMSG foo.baz 7 _INBOX.1 2\r\nhi\r\n"
    assert pub.in_msgs == 3 and receiver.out_msgs == 2
    assert pub.pending == [receiver] and receiver.flush_scheduled


def test_fast_pub_hpub(impl: Twin) -> None:
    _, receiver, pub, rec = _fast_setup(impl)
    p = impl.parser(pub, rec)
    for k in range(0, 40):
        p.feed(b"HPUB foo.h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"[k : k + 1] if k < 38 else b"")
    assert bytes(receiver.outbuf) == b"HMSG foo.h 7 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"


def test_fast_pub_hpub_to_plain_subscriber(impl: Twin) -> None:
    _, receiver, pub, rec = _fast_setup(impl, sub_headers=False)
    p = impl.parser(pub, rec)
    p.feed(b"HPUB foo.h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
    assert bytes(receiver.outbuf) == b"MSG foo.h 7 2\r\nhi\r\n"


def test_fast_pub_large_split_payload(impl: Twin) -> None:
    _, receiver, pub, rec = _fast_setup(impl)
    p = impl.parser(pub, rec)
    payload = bytes(range(256)) * 300
    data = b"PUB foo.big %d\r\n%s\r\n" % (len(payload), payload)
    for k in range(0, len(data), 4093):
        p.feed(data[k : k + 4093])
    assert bytes(receiver.outbuf) == b"MSG foo.big 7 %d\r\n%s\r\n" % (len(payload), payload)


def test_fast_pub_toggle(impl: Twin) -> None:
    _, receiver, pub, rec = _fast_setup(impl)
    p = impl.parser(pub, rec)
    p.feed(b"PUB foo.a 1\r\na\r\n")
    pub.fast_pub = False  # e.g. a permissions change: the next publishes go through Python
    p.feed(b"PUB foo.b 1\r\nb\r\n")
    assert rec.events == [("pub", b"foo.b", b"", -1, b"b")]
    assert bytes(receiver.outbuf) == b"MSG foo.a 7 1\r\na\r\n"


def test_fast_pub_publisher_closed_stops(impl: Twin) -> None:
    sl, receiver, pub, rec = _fast_setup(impl)
    # the publisher is its own subscriber and a slow consumer: deliver closes it
    pub.max_pending = 10

    class Closing(type(pub)):  # type: ignore[misc]
        def on_slow_consumer(self) -> None:
            self.closed = True

    pub2 = Closing()
    pub2.fast_pub = True
    pub2.sublist = sl
    pub2.max_pending = 10
    sl.insert(impl.sublist.Subscription(pub2, b"foo.*", b"9"))
    rec2 = Rec(pub2)
    p = impl.parser(pub2, rec2)
    p.feed(b"PUB foo.x 20\r\n" + b"z" * 20 + b"\r\nPING\r\n")
    assert pub2.closed and rec2.events == []


def test_pub_arg_reported_before_the_payload(impl: Twin) -> None:
    """The slow path hears about an accepted PUB/HPUB control line before its payload arrives
    (nats-server answers a pedantic subject error at that point); the fast path does not."""
    core = make_core(impl, headers=True)
    rec = Rec(core)
    p = impl.parser(core, rec, 4096)
    p.feed(b"PUB a.* 5\r\nhel")
    assert rec.pub_args == [b"a.*"] and rec.events == []
    p.feed(b"lo\r\nHPUB b 12 12\r\n")
    assert rec.pub_args == [b"a.*", b"b"] and rec.events == [("pub", b"a.*", b"", -1, b"hello")]
    p.feed(b"PUB c 99999\r\n")  # refused control lines are not reported
    assert rec.pub_args == [b"a.*", b"b"]
    fast = make_core(impl, fast_pub=True)
    fast_rec = Rec(fast)
    impl.parser(fast, fast_rec, 4096).feed(b"PUB a 1\r\nx\r\n")
    assert fast_rec.pub_args == []


# -- route mode -------------------------------------------------------------------------------------


class RouteRec(Rec):
    def proto_rsub(self, args: list[bytes]) -> None:
        self._rec("rs+", *args)

    def proto_runsub(self, args: list[bytes]) -> None:
        self._rec("rs-", *args)

    def proto_lsub(self, args: list[bytes]) -> None:
        self._rec("ls+", *args)

    def proto_lunsub(self, args: list[bytes]) -> None:
        self._rec("ls-", *args)

    def proto_routed(self, origin, account, subject, reply, hdr_len, msg, queues) -> None:
        self._rec("routed", origin, account, subject, reply, hdr_len, msg, queues)


def route_events(impl: Twin, data: bytes, leaf_account: bytes | None = None, **fields: Any) -> list[tuple[Any, ...]]:
    """Route-mode (or, with `leaf_account`, leaf-mode) events of `data`, identical whole and at every
    split point."""

    def once(chunks: list[int] | None) -> list[tuple[Any, ...]]:
        kind = impl.sublist.KIND_ROUTER if leaf_account is None else impl.sublist.KIND_LEAF
        core = make_core(impl, kind=kind, max_payload=-1, **fields)
        rec = RouteRec(core)
        p = impl.parser(core, rec, 4096, leaf_account is None, leaf_account)
        pos = 0
        for size in chunks or []:
            p.feed(data[pos : pos + size])
            pos += size
        p.feed(data[pos:])
        return rec.events

    whole = once(None)
    for k in range(1, len(data)):
        assert once([k]) == whole, f"split at {k} differs"
    return whole


def test_route_control_ops(impl: Twin) -> None:
    stream = (
        b"RS+ APP svc.x workers 2\r\nrs- APP svc.x workers\r\nLS+ leaf1 APP a.>\r\nLS- leaf1 APP a.>\r\n"
        b'INFO {"server_id":"N"}\r\nCONNECT {"cluster":"c"}\r\nPING\r\nPONG\r\n-ERR \'x\'\r\n+OK\r\n'
    )
    assert route_events(impl, stream) == [
        ("rs+", b"APP", b"svc.x", b"workers", b"2"),
        ("rs-", b"APP", b"svc.x", b"workers"),
        ("ls+", b"leaf1", b"APP", b"a.>"),
        ("ls-", b"leaf1", b"APP", b"a.>"),
        ("info", b'{"server_id":"N"}'),
        ("connect", b'{"cluster":"c"}'),
        ("ping",),
        ("pong",),
        ("client_err", b"'x'"),
    ]


@pytest.mark.parametrize(
    ("line", "payload", "event"),
    [
        (b"RMSG APP a.b 5", b"hello", (None, b"APP", b"a.b", b"", -1, b"hello", None)),
        (b"RMSG APP a.b _INBOX.1 2", b"hi", (None, b"APP", b"a.b", b"_INBOX.1", -1, b"hi", None)),
        (b"RMSG APP a.b + _R.1 q1 q2 2", b"hi", (None, b"APP", b"a.b", b"_R.1", -1, b"hi", [b"q1", b"q2"])),
        (b"RMSG APP a.b | q1 2", b"hi", (None, b"APP", b"a.b", b"", -1, b"hi", [b"q1"])),
        (b"HMSG APP a.b 12 14", b"NATS/1.0\r\n\r\nhi", (None, b"APP", b"a.b", b"", 12, b"NATS/1.0\r\n\r\nhi", None)),
        (
            b"HMSG APP a.b + r g 12 12",
            b"NATS/1.0\r\n\r\n",
            (None, b"APP", b"a.b", b"r", 12, b"NATS/1.0\r\n\r\n", [b"g"]),
        ),
        (b"LMSG leaf1 APP a.b | g 1", b"x", (b"leaf1", b"APP", b"a.b", b"", -1, b"x", [b"g"])),
        (b"rmsg\tAPP  a.b\t1", b"x", (None, b"APP", b"a.b", b"", -1, b"x", None)),
    ],
)
def test_routed_messages(impl: Twin, line: bytes, payload: bytes, event: tuple) -> None:
    assert route_events(impl, line + b"\r\n" + payload + b"\r\n") == [("routed", *event)]


def test_routed_message_with_many_queues(impl: Twin) -> None:
    queues = [b"q%d" % i for i in range(40)]  # more tokens than the compiled twin records in C
    line = b"RMSG A s + r " + b" ".join(queues) + b" 1\r\nx\r\n"
    assert route_events(impl, line) == [("routed", None, b"A", b"s", b"r", -1, b"x", queues)]


@pytest.mark.parametrize(
    "line",
    [
        b"RMSG A 5",
        b"RMSG A s x y 1",
        b"RMSG A s * q 1",
        b"RMSG A s 1x",
        b"HMSG A s 5",
        b"HMSG A s 6 5",
        b"LMSG o A 1",
        b"RMSG A s ++ r q 1",
    ],
)
def test_bad_routed_lines_close_silently(impl: Twin, line: bytes) -> None:
    assert route_events(impl, line + b"\r\nx\r\n") == [("error", "silent")]


def test_client_ops_are_unknown_on_a_route(impl: Twin) -> None:
    assert route_events(impl, b"PUB a 1\r\nx\r\n") == [("error", "unknown_op")]
    assert route_events(impl, b"SUB a 1\r\n") == [("error", "unknown_op")]


def test_routed_fast_path_delivers_in_the_named_account(impl: Twin) -> None:
    mod = impl.sublist
    app = mod.Sublist()
    core = make_core(impl, kind=mod.KIND_ROUTER, max_payload=-1, fast_pub=True)
    core.routed_sublists = {b"APP": app}
    local = mod.ClientCore()
    app.insert(mod.Subscription(local, b"a.*", b"7"))
    rec = RouteRec(core)
    p = impl.parser(core, rec, 4096, True)
    p.feed(b"RMSG APP a.b 2\r\nhi\r\nRMSG OTHER a.b 2\r\nho\r\n")
    assert bytes(local.outbuf) == b"MSG a.b 7 2\r\nhi\r\n"
    assert rec.events == [("routed", None, b"OTHER", b"a.b", b"", -1, b"ho", None)]  # unknown account: Python


# -- leaf mode --------------------------------------------------------------------------------------


def leaf_events(impl: Twin, data: bytes) -> list[tuple[Any, ...]]:
    """Leaf-mode events of `data` (a connection bound to account APP)."""
    return route_events(impl, data, b"APP")


def test_leaf_control_ops(impl: Twin) -> None:
    stream = b"LS+ svc.x workers 2\r\nLS- svc.x workers\r\nLS+ $LDS.abc\r\nPING\r\n"
    assert leaf_events(impl, stream) == [
        ("ls+", b"svc.x", b"workers", b"2"),
        ("ls-", b"svc.x", b"workers"),
        ("ls+", b"$LDS.abc"),
        ("ping",),
    ]


@pytest.mark.parametrize(
    ("line", "payload", "event"),
    [
        (b"LMSG a.b 5", b"hello", (None, b"APP", b"a.b", b"", -1, b"hello", None)),
        (b"LMSG a.b _INBOX.1 2", b"hi", (None, b"APP", b"a.b", b"_INBOX.1", -1, b"hi", None)),
        (b"LMSG a.b + _R.1 q1 q2 2", b"hi", (None, b"APP", b"a.b", b"_R.1", -1, b"hi", [b"q1", b"q2"])),
        (b"LMSG a.b | q1 2", b"hi", (None, b"APP", b"a.b", b"", -1, b"hi", [b"q1"])),
        (b"HMSG a.b 12 14", b"NATS/1.0\r\n\r\nhi", (None, b"APP", b"a.b", b"", 12, b"NATS/1.0\r\n\r\nhi", None)),
        (b"HMSG a.b r 12 12", b"NATS/1.0\r\n\r\n", (None, b"APP", b"a.b", b"r", 12, b"NATS/1.0\r\n\r\n", None)),
    ],
)
def test_leaf_messages_carry_no_account(impl: Twin, line: bytes, payload: bytes, event: tuple) -> None:
    assert leaf_events(impl, line + b"\r\n" + payload + b"\r\n") == [("routed", *event)]


@pytest.mark.parametrize("line", [b"LMSG 5", b"RMSG APP a.b 1", b"LMSG a.b * q 1", b"HMSG a.b 6 5"])
def test_bad_leaf_lines_close_silently(impl: Twin, line: bytes) -> None:
    assert leaf_events(impl, line + b"\r\nx\r\n") == [("error", "silent")]


def test_leaf_fast_path_delivers_in_the_bound_account(impl: Twin) -> None:
    mod = impl.sublist
    app = mod.Sublist()
    core = make_core(impl, kind=mod.KIND_LEAF, max_payload=-1, fast_pub=True)
    core.routed_sublists = {b"APP": app}
    local = mod.ClientCore()
    app.insert(mod.Subscription(local, b"a.*", b"7"))
    rec = RouteRec(core)
    p = impl.parser(core, rec, 4096, False, b"APP")
    p.feed(b"LMSG a.b 2\r\nhi\r\nHMSG a.c 12 14\r\nNATS/1.0\r\n\r\nho\r\n")
    assert bytes(local.outbuf) == b"MSG a.b 7 2\r\nhi\r\nMSG a.c 7 2\r\nho\r\n"
    assert rec.events == []
