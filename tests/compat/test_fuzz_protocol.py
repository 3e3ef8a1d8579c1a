"""Differential protocol fuzzer: the same mutated client bytes to jsedge and nats-server, the same bytes
back (every `-ERR`, every close, every delivery).

Inputs come from a grammar of client frames (CONNECT, SUB, UNSUB, PUB, HPUB, PING, PONG, INFO, +OK,
-ERR, junk) whose fields are mutated: sizes off by one, separators, key case and JSON types in
CONNECT, control bytes and empty tokens in subjects, header blocks of any size, long lines. Each
input runs on a fresh connection to each server; the connection's echo makes its own subscriptions
see its publishes, so deliveries show in the transcript.

CI runs a bounded, derandomized batch (a fixed seed). A long run:

    JSEDGE_FUZZ_EXAMPLES=20000 python -m pytest tests/compat/test_fuzz_protocol.py -p no:randomly

(`JSEDGE_FUZZ_SEED=<n>` picks another seed). Every mismatch found becomes a named scenario in
tests/compat/test_protocol_diff.py. The fuzz also checks that jsedge logs no traceback and that its
memory returns to its baseline after the run (no leak per connection).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from helpers import RawClient, ServerProcess, normalize_transcript
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.compat

EXAMPLES = int(os.environ.get("JSEDGE_FUZZ_EXAMPLES", "120"))
SEED = int(os.environ.get("JSEDGE_FUZZ_SEED", "20261203"))
LONG_RUN = "JSEDGE_FUZZ_EXAMPLES" in os.environ

# Small limits make the limit paths reachable; the first server PING (2 s after CONNECT) never falls
# inside an example, which lasts well under a second.
CONFIG = "max_payload: 512\nmax_control_line: 256\nmax_subscriptions: 6\n"

# ---------------------------------------------------------------------------------------- grammar

token = st.sampled_from([b"foo", b"bar", b"a", b"*", b">", b"", b"x\x01", b"\x0c", b"f*", b"\xff", b"$JS", b"_INBOX"])
subject = st.lists(token, min_size=1, max_size=4).map(b".".join)
sid = st.sampled_from([b"1", b"2", b"3", b"sid", b"0", b"-1", b"99999999999999999999"])
sep = st.sampled_from([b" ", b" ", b" ", b"\t", b"  ", b" \t"])
eol = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
payload = st.binary(max_size=24) | st.sampled_from([b"", b"\r\n", b"PING\r\n", b"x" * 600])


def cased(name: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from([name, name.lower(), name.capitalize()])


_CONNECT_KEYS = [
    "verbose",
    "pedantic",
    "headers",
    "echo",
    "no_responders",
    "protocol",
    "name",
    "lang",
    "version",
    "tls_required",
    "user",
    "pass",
    "auth_token",
    "account",
    "import",
    "unknown",
]
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.5, 1e3, 2**64]) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["allow", "deny", "x"]), inner, max_size=2)
    ),
    max_leaves=4,
)


@st.composite
def connect(draw: st.DrawFn) -> bytes:
    body: dict = {"verbose": draw(st.booleans()), "pedantic": draw(st.booleans()), "headers": draw(st.booleans())}
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(_CONNECT_KEYS))
        if draw(st.integers(0, 3)) == 0:
            key = key.upper()
        body[key] = draw(json_value)
    text = json.dumps(body, separators=(",", ":")).encode()
    mutate = draw(st.integers(0, 9))
    if mutate == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif mutate == 1:
        text = text.replace(b":", b"", 1)
    elif mutate == 2:
        text = b"null" if draw(st.booleans()) else b"[]"
    return draw(cased(b"CONNECT")) + draw(sep) + text + draw(eol)


@st.composite
def pub(draw: st.DrawFn) -> bytes:
    data = draw(payload)
    size = len(data) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    reply = [draw(subject)] if draw(st.integers(0, 3)) == 0 else []
    size_text = str(size).encode() if draw(st.integers(0, 9)) else draw(st.sampled_from([b"x", b"", b"1 2"]))
    args = [draw(subject), *reply, size_text]
    line = draw(cased(b"PUB")) + draw(sep) + draw(sep).join(args)
    return line + draw(eol) + data + b"\r\n"


@st.composite
def hpub(draw: st.DrawFn) -> bytes:
    headers = draw(
        st.sampled_from([b"NATS/1.0\r\n\r\n", b"NATS/1.0\r\nA: b\r\n\r\n", b"", b"garbage", b"NATS/1.0 503\r\n\r\n"])
    )
    data = draw(payload)
    hdr_size = len(headers) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    total = len(headers) + len(data) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    reply = [draw(subject)] if draw(st.integers(0, 3)) == 0 else []
    args = [draw(subject), *reply, str(hdr_size).encode(), str(total).encode()]
    line = draw(cased(b"HPUB")) + draw(sep) + draw(sep).join(args)
    return line + draw(eol) + headers + data + b"\r\n"


@st.composite
def sub(draw: st.DrawFn) -> bytes:
    queue = [draw(st.sampled_from([b"q", b"q2", b"*"]))] if draw(st.integers(0, 3)) == 0 else []
    args = [draw(subject), *queue, draw(sid)]
    return draw(cased(b"SUB")) + draw(sep) + draw(sep).join(args) + draw(eol)


@st.composite
def unsub(draw: st.DrawFn) -> bytes:
    args = [draw(sid)]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from([b"0", b"1", b"2", b"x", b"-1"])))
    return draw(cased(b"UNSUB")) + draw(sep) + draw(sep).join(args) + draw(eol)


@st.composite
def other(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                b"PING",
                b"PONG",
                b"+OK",
                b"-ERR 'x'",
                b"INFO {}",
                b"INFO {",
                b"MSG a 1 1",
                b"HMSG",
                b"PINGX",
                b"P",
                b"",
                b"\x00",
                b"SUB",
                b"UNSUB",
            ]
        )
    )
    if draw(st.integers(0, 19)) == 0:
        kind = draw(st.sampled_from([b"P", b"S", b"A", b"PUB a "])) * draw(st.integers(100, 300))
    return kind + draw(eol)


frame = st.one_of(sub(), pub(), hpub(), unsub(), other(), connect())


@st.composite
def session(draw: st.DrawFn) -> list[bytes]:
    frames = [draw(connect())] if draw(st.integers(0, 4)) else []
    frames += draw(st.lists(frame, max_size=7))
    return frames


# ---------------------------------------------------------------------------------------- running


def transcript(server: ServerProcess, frames: list[bytes], quiet: float) -> bytes:
    """Everything the server sends for these frames on a new connection, then `<EOF>` when it
    closed the connection, `<OPEN>` when not."""
    with RawClient(server.port, timeout=2.0) as client:
        out = bytearray(client.read_line())
        for data in frames:
            try:
                client.send(data)
            except OSError:
                break
        out += client.read_all_available(quiet=quiet, max_time=2.5)
        closed = client.eof or client.expect_closed(0.05)
        out += client.drain()
    return normalize_transcript(bytes(out)) + (b"<EOF>" if closed else b"<OPEN>")


@pytest.fixture(scope="module")
def servers():
    pair = {kind: ServerProcess(kind, config=CONFIG) for kind in ("nats", "jsedge")}
    yield pair
    for server in pair.values():
        server.cleanup()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.timeout(60 + EXAMPLES * 3)
def test_protocol_fuzz(servers) -> None:
    mismatches: list[str] = []

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(session())
    def run(frames: list[bytes]) -> None:
        ref = transcript(servers["nats"], frames, 0.12)
        got = transcript(servers["jsedge"], frames, 0.12)
        if ref != got:
            # confirm with more patience before calling it a difference (a loaded machine)
            ref = transcript(servers["nats"], frames, 0.6)
            got = transcript(servers["jsedge"], frames, 0.6)
            if ref != got:
                mismatches.append(f"input {b''.join(frames)!r}\n  nats:   {ref!r}\n  jsedge: {got!r}")
                if LONG_RUN:
                    print(mismatches[-1], flush=True)

    run()
    jsedge = servers["jsedge"]
    assert not [line for line in jsedge.log_lines() if "Traceback" in line], "\n".join(jsedge.log_lines()[-40:])
    assert not mismatches, f"{len(mismatches)} of {EXAMPLES} inputs differ:\n" + "\n".join(mismatches[:10])


def test_connections_leave_no_memory_behind(servers) -> None:
    """After thousands of short fuzz-style connections, jsedge's resident memory is back near its
    baseline (bounded growth, no per-connection leak)."""
    jsedge = servers["jsedge"]
    frames = [
        b'CONNECT {"verbose":true,"pedantic":true,"headers":true}\r\n',
        b"SUB foo.* q 1\r\n",
        b"PUB foo.a r 3\r\nabc\r\n",
        b"HPUB foo.b 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        b"UNSUB 1\r\n",
        b"PUB x..y 1\r\n1\r\n",
        b"BAD\r\n",
    ]

    def burst(count: int) -> None:
        for _ in range(count):
            with RawClient(jsedge.port, timeout=2.0) as client:
                client.read_line()
                for data in frames:
                    client.send(data)
                client.expect_closed(2.0)

    burst(300)  # warm-up: caches, allocator arenas
    time.sleep(0.3)
    baseline = _rss_kib(jsedge.pid)
    burst(1500)
    time.sleep(0.3)
    grown = _rss_kib(jsedge.pid) - baseline
    assert grown < 3 * 1024, f"RSS grew by {grown} KiB over 1500 connections"
