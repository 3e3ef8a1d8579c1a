"""The S2 stream reader and the Snappy framed writer (jsedge.store.s2), and the backup archive
entries (jsedge.api.natsarchive). Real nats-server S2 streams are read in
tests/compat/test_backup_interop.py; here: hand-made blocks for every tag, round trips, and
damaged input that must fail with S2Error and nothing else."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsedge.api import natsarchive
from jsedge.store import s2


def _frame(block: bytes, magic: bytes = s2.S2_MAGIC) -> bytes:
    body = b"\0\0\0\0" + block  # CRC (not checked by the reader)
    return magic + bytes((0x00,)) + len(body).to_bytes(3, "little") + body


def _read(stream: bytes) -> bytes:
    return b"".join(s2.iter_stream(io.BytesIO(stream)))


def test_crc32c_known_answer() -> None:
    assert s2.crc32c(b"123456789") == 0xE3069283
    assert s2.crc32c(b"") == 0


def test_every_tag_kind() -> None:
    # literal "abcd"; copy1 offset 4 length 4; copy2 offset 2 length 3; copy4 offset 8 length 2
    block = bytes([22]) + bytes([3 << 2]) + b"abcd"
    block += bytes([0b01 | (0 << 2), 4])  # copy1: length 4, offset 4
    block += bytes([0b10 | (2 << 2)]) + (2).to_bytes(2, "little")  # copy2: length 3
    block += bytes([0b11 | (1 << 2)]) + (8).to_bytes(4, "little")  # copy4: length 2
    # S2's repeat (copy1 with offset 0): the last offset (8) again, code 1: length 5
    block += bytes([0b01 | (1 << 2), 0])
    # 4 more literal bytes, 60-form (length in one extra byte)
    block += bytes([60 << 2, 3]) + b"wxyz"
    assert s2.decode_block(block) == b"abcd" + b"abcd" + b"cdc" + b"da" + b"bcdcd" + b"wxyz"


def test_repeat_lengths_with_extra_bytes() -> None:
    lit = b"0123456789"
    # repeat code 5: length = next byte + 8; code 6: 2 bytes + 260; code 7: 3 bytes + 65540
    for code, extra, length in (
        (5, bytes([7]), 15),
        (6, (5).to_bytes(2, "little"), 265),
        (7, (1).to_bytes(3, "little"), 65541),
    ):
        total = len(lit) + 2 + length
        head = bytearray()
        v = total
        while v >= 0x80:
            head.append((v & 0x7F) | 0x80)
            v >>= 7
        head.append(v)
        block = bytes(head) + bytes([(len(lit) - 1) << 2]) + lit
        block += bytes([0b10 | (1 << 2)]) + (10).to_bytes(2, "little")  # copy2 offset 10 length 2: sets the offset
        block += bytes([0b01 | (code << 2), 0]) + extra
        out = s2.decode_block(block)
        assert len(out) == total
        assert out[len(lit) :] == (lit * (total // 10 + 2))[: total - len(lit)]


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.binary(max_size=5000), st.binary(max_size=40).map(lambda b: b * 97)))
def test_round_trip(data: bytes) -> None:
    assert _read(s2.compress_stream(data)) == data
    assert _read(s2._stored_stream(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_damaged_blocks_fail_cleanly(junk: bytes) -> None:
    try:
        s2.decode_block(junk)
    except s2.S2Error:
        pass
    try:
        _read(_frame(junk))
    except s2.S2Error:
        pass


@pytest.mark.parametrize(
    "stream",
    [b"", b"\xff\x06\x00\x00XXXXXX", s2.S2_MAGIC + b"\x02\x01\x00\x00x", s2.S2_MAGIC + b"\x00\x10\x00\x00abc"],
    ids=["empty", "bad-magic", "unskippable", "truncated"],
)
def test_bad_streams(stream: bytes) -> None:
    with pytest.raises(s2.S2Error):
        _read(stream)


def test_skippable_chunks_are_ignored() -> None:
    stream = s2._stored_stream(b"hello")
    padded = stream[:10] + b"\xfe\x02\x00\x00\0\0" + stream[10:] + b"\x99\x01\x00\x00\0"
    assert _read(padded) == b"hello"


@settings(max_examples=50, deadline=None)
@given(
    st.binary(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=50),
    st.binary(max_size=50),
)
def test_archive_entries_round_trip(name: bytes, ts: int, seq: int, hdr: bytes, payload: bytes) -> None:
    data = natsarchive.MAGIC + natsarchive.entry(name, ts, seq, hdr, payload) + natsarchive.END
    entries = natsarchive._Entries(io.BytesIO(data))
    assert entries.next() == (name, ts, seq, hdr, payload)
    assert entries.next() == (b"", 0, 0, b"", b"")


def test_archive_must_start_with_state_and_end_with_the_marker() -> None:
    state = natsarchive.entry(b"state.json", 1, 0, b"", b'{"first_seq":5,"last_seq":6,"consumer_count":0}')
    msg = natsarchive.entry(b"a.b", 7, 5, b"", b"x")
    whole = s2.compress_stream(natsarchive.MAGIC + state + msg + natsarchive.END)
    document, messages, meta, consumers = natsarchive.read_nats_archive(io.BytesIO(whole), {"name": "S"})
    assert document["state"]["first_seq"] == 5 and meta is None and consumers == []
    assert list(messages) == [(5, 7, b"a.b", b"", b"x")]
    cut = s2.compress_stream(natsarchive.MAGIC + state + msg)
    _d, messages, _m, _c = natsarchive.read_nats_archive(io.BytesIO(cut), None)
    with pytest.raises(natsarchive.NatsArchiveError, match="truncated"):
        list(messages)
    wrong = s2.compress_stream(natsarchive.MAGIC + msg)
    with pytest.raises(natsarchive.NatsArchiveError, match="state.json"):
        natsarchive.read_nats_archive(io.BytesIO(wrong), None)
