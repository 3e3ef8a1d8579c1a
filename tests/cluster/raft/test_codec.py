"""The Raft wire codec (jsedge/cluster/codec.py): round trips of every message type, canonical
encodings, and decode never failing with anything but ValueError on random or mutated input."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsedge.cluster import codec
from jsedge.cluster.types import (
    ENTRY_NOOP,
    ENTRY_NORMAL,
    ENTRY_PEERS,
    AppendRequest,
    AppendResponse,
    Entry,
    Message,
    SnapshotMeta,
    SnapshotRequest,
    SnapshotResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

pytestmark = pytest.mark.timeout(120)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = st.integers(0, 2**64 - 1)
SMALL = st.integers(0, 2**20)
NUMBER = st.one_of(SMALL, U64)
TEXT = st.text(max_size=12)
PEER_SETS = st.lists(TEXT, max_size=6, unique=True).map(tuple)


@st.composite
def appends(draw: st.DrawFn) -> AppendRequest:
    prev_index = draw(st.one_of(SMALL, st.integers(0, 2**64 - 50)))
    prev_term = draw(st.one_of(SMALL, st.integers(0, 2**63)))
    count = draw(st.integers(0, 8))
    entries = []
    term = prev_term
    for k in range(count):
        term += draw(st.sampled_from((0, 0, 0, 1, 7, 300)))
        kind = draw(st.sampled_from((ENTRY_NORMAL, ENTRY_NOOP, ENTRY_PEERS)))
        entries.append(Entry(term, prev_index + 1 + k, kind, draw(st.binary(max_size=300))))
    return AppendRequest(draw(NUMBER), draw(TEXT), prev_index, prev_term, tuple(entries), draw(NUMBER))


MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(VoteRequest, NUMBER, TEXT, NUMBER, NUMBER, st.booleans(), st.booleans()),
    st.builds(VoteResponse, NUMBER, TEXT, st.booleans(), st.booleans()),
    appends(),
    st.builds(AppendResponse, NUMBER, TEXT, st.booleans(), NUMBER),
    st.builds(
        SnapshotRequest, NUMBER, TEXT, st.builds(SnapshotMeta, NUMBER, NUMBER, PEER_SETS), st.binary(max_size=500)
    ),
    st.builds(SnapshotResponse, NUMBER, TEXT, NUMBER),
    st.builds(TimeoutNow, NUMBER, TEXT),
)


def decode_or_value_error(data: bytes) -> tuple[str, Message] | None:
    try:
        return codec.decode(data)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ round trips


@SETTINGS
@given(group=TEXT, msg=MESSAGES)
def test_round_trip_every_message_type(group: str, msg: Message) -> None:
    data = codec.encode(group, msg)
    assert codec.decode(data) == (group, msg)
    assert codec.decode(bytearray(data)) == (group, msg)
    assert codec.decode(memoryview(data)) == (group, msg)


@SETTINGS
@given(peers=PEER_SETS)
def test_peers_round_trip(peers: tuple[str, ...]) -> None:
    assert codec.decode_peers(codec.encode_peers(peers)) == peers


def test_every_kind_is_covered_by_a_fixed_vector() -> None:
    """The format pinned down byte by byte (a change here breaks mixed-version clusters)."""
    entries = (Entry(5, 11, ENTRY_NORMAL, b"hi"), Entry(5, 12, ENTRY_NOOP, b""), Entry(6, 13, ENTRY_PEERS, b"\x00"))
    vectors: list[tuple[Message, bytes]] = [
        (VoteRequest(5, "n1", 10, 4, True, False), b"\x01\x01G\x05\x02n1\x0a\x04\x01"),
        (VoteResponse(5, "n2", True, True), b"\x02\x01G\x05\x02n2\x03"),
        (
            AppendRequest(6, "n1", 10, 4, entries, 9),
            b"\x03\x01G\x06\x02n1\x0a\x04\x09\x03" + b"\x08\x02hi" + b"\x01\x00" + b"\x0a\x01\x00",
        ),
        (AppendResponse(6, "n3", False, 300), b"\x04\x01G\x06\x02n3\x00\xac\x02"),
        (
            SnapshotRequest(6, "n1", SnapshotMeta(9, 5, ("a", "b")), b"xyz"),
            b"\x05\x01G\x06\x02n1\x09\x05\x02\x01a\x01b\x03xyz",
        ),
        (SnapshotResponse(6, "n2", 9), b"\x06\x01G\x06\x02n2\x09"),
        (TimeoutNow(7, "n1"), b"\x07\x01G\x07\x02n1"),
    ]
    for msg, data in vectors:
        assert codec.encode("G", msg) == data, msg
        assert codec.decode(data) == ("G", msg)


def test_a_typical_append_is_small() -> None:
    """One 100-byte command to a follower: 8-character ids, a 14-character group, indexes near 10⁵."""
    msg = AppendRequest(3, "fjFyEjc1", 99_999, 3, (Entry(3, 100_000, ENTRY_NORMAL, b"x" * 100),), 99_998)
    assert len(codec.encode("S-R3F-FuW7YT38", msg)) == 136  # 100 of payload, 36 of framing
    assert len(codec.encode("S-R3F-FuW7YT38", AppendResponse(3, "44jzkV9D", True, 100_000))) == 30


# ------------------------------------------------------------------------------------------ canonical


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_raise_value_error_or_decode_canonically(data: bytes) -> None:
    decoded = decode_or_value_error(data)
    if decoded is not None:
        assert codec.encode(*decoded) == data  # exactly one encoding per message


@SETTINGS
@given(group=TEXT, msg=MESSAGES, data=st.data())
def test_mutated_encodings_raise_value_error_or_decode_canonically(
    group: str, msg: Message, data: st.DataObject
) -> None:
    raw = bytearray(codec.encode(group, msg))
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(("flip", "set", "cut", "insert", "delete", "append")))
        at = data.draw(st.integers(0, len(raw)))
        if how == "flip" and at < len(raw):
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "set" and at < len(raw):
            raw[at] = data.draw(st.sampled_from((0x00, 0x7F, 0x80, 0xFF)))
        elif how == "cut":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=12))
        elif how == "delete" and at < len(raw):
            del raw[at]
        elif how == "append":
            raw += data.draw(st.binary(min_size=1, max_size=4))
    decoded = decode_or_value_error(bytes(raw))
    if decoded is not None:
        assert codec.encode(*decoded) == bytes(raw)


@SETTINGS
@given(data=st.binary(max_size=100))
def test_decode_peers_raises_value_error_only(data: bytes) -> None:
    try:
        peers = codec.decode_peers(data)
    except ValueError:
        return
    assert codec.encode_peers(peers) == data


# ------------------------------------------------------------------------------------------ malformed


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",  # unknown kind
        b"\x08\x00",
        b"\x01",  # no group
        b"\x01\x05ab",  # group longer than the frame
        b"\x07\x00\x01\x00\x00",  # trailing byte
        b"\x07\x00\x80\x00\x00",  # non-canonical varint (redundant zero group)
        b"\x07\x00" + b"\xff" * 10 + b"\x01\x00",  # varint past 64 bits
        b"\x07\x00" + b"\xff" * 11,  # varint longer than 10 bytes
        b"\x07\x00\x01\x01\xff",  # invalid UTF-8
        b"\x02\x00\x01\x00\x04",  # unknown flag bit
        b"\x04\x00\x01\x00\x02\x00",  # unknown flag bit
        b"\x03\x00\x01\x00\x00\x00\x00\x01\x03\x00",  # unknown entry kind
        b"\x03\x00\x01\x00\x00\x00\x00\x02\x00\x00",  # one entry announced two
        b"\x05\x00\x01\x00\x01\x01\x02\x01a\x01a\x00",  # duplicate peers
    ],
)
def test_malformed_frames_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode(data)


def test_bogus_lengths_and_counts_fail_fast_without_allocating() -> None:
    huge = b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"  # 2**63 - 1
    frames = [
        b"\x07" + huge,  # group length
        b"\x05\x00\x01\x00\x01\x01" + huge,  # peer count
        b"\x05\x00\x01\x00\x01\x01\x00" + huge,  # snapshot data length
        b"\x03\x00\x01\x00\x00\x00\x00" + huge + b"\x00\x00",  # entry count
        b"\x03\x00\x01\x00\x00\x00\x00\x01\x00" + huge,  # entry length
    ]
    start = time.perf_counter()
    for data in frames:
        with pytest.raises(ValueError):
            codec.decode(data)
    assert time.perf_counter() - start < 0.5


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ValueError):
        codec.decode("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "msg",
    [
        AppendRequest(1, "a", 5, 1, (Entry(1, 7, ENTRY_NORMAL, b""),), 0),  # index gap
        AppendRequest(2, "a", 5, 2, (Entry(1, 6, ENTRY_NORMAL, b""),), 0),  # term goes down
        AppendRequest(1, "a", 5, 1, (Entry(1, 6, 9, b""),), 0),  # unknown kind
        AppendResponse(-1, "a", True, 0),
        SnapshotResponse(1, "a", 2**64),
        SnapshotRequest(1, "a", SnapshotMeta(1, 1, ("x", "x")), b""),
    ],
)
def test_encode_refuses_unrepresentable_messages(msg: Message) -> None:
    with pytest.raises(ValueError):
        codec.encode("g", msg)


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(ValueError):
        codec.encode("g", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        codec.encode_peers(["a", "a"])
