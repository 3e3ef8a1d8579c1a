"""Bytes for every Raft message between jsedge nodes (layer 6, sans-IO: imports only the stdlib and
`jsedge.cluster.types`). Our own compact format; nats-server's `$NRG` encoding is not a goal (jsedge
never mixes with nats-server nodes in a JetStream cluster, spec/clustering.md §0).

Format
------
Every integer is an unsigned LEB128 varint ("uvarint": 7 bits a byte, low group first, high bit =
more follows), canonical (no redundant trailing 0x80 group) and below 2**64. A `str` is a uvarint
byte length and that many bytes of UTF-8; `bytes` is a uvarint length and raw bytes. `flags` is one
byte whose unknown bits must be zero. A frame is::

    frame = kind:u8  group:str  body

    kind 1  VoteRequest       term candidate:str last_index last_term flags(1=pre_vote 2=transfer)
    kind 2  VoteResponse      term voter:str flags(1=granted 2=pre_vote)
    kind 3  AppendRequest     term leader:str prev_index prev_term commit count entry{count}
    kind 4  AppendResponse    term follower:str flags(1=success) index
    kind 5  SnapshotRequest   term leader:str meta data:bytes
    kind 6  SnapshotResponse  term follower:str index
    kind 7  TimeoutNow        term leader:str

    entry = uvarint((term - previous term) << 3 | entry kind)  data:bytes
    meta  = index term peers
    peers = count str{count}                              (also `encode_peers`, the ENTRY_PEERS data)

Entries of one AppendRequest are consecutive, so their index is implied (prev_index + 1, + 2, ...),
and their terms never decrease along a log, so each carries only the step from the term before it
(prev_term for the first): a run of same-term entries costs one header byte plus the data length. An
append of one 100-byte command (8-character peer ids, a 14-character group name, indexes near 10**5)
is 136 bytes, its acknowledgement 30 (tests/cluster/raft/test_codec.py pins both, and every kind).

`decode` raises ValueError, and nothing else, on any malformed input: unknown kind or flags, a
truncated or overlong varint, a length or count past the end of the input (checked before anything is
allocated, so a bogus length never makes a large object), invalid UTF-8, an unknown entry kind,
duplicate peers, trailing bytes. A frame that decodes re-encodes to exactly the same bytes.

Speed: this runs for every replicated message, so varints are written and read inline with a
one-byte fast path (every small integer: kinds, flags, lengths of short strings, same-term deltas).
"""

from __future__ import annotations

from collections.abc import Iterable

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

__all__ = ["decode", "decode_peers", "encode", "encode_peers"]

KIND_VOTE_REQUEST = 1
KIND_VOTE_RESPONSE = 2
KIND_APPEND_REQUEST = 3
KIND_APPEND_RESPONSE = 4
KIND_SNAPSHOT_REQUEST = 5
KIND_SNAPSHOT_RESPONSE = 6
KIND_TIMEOUT_NOW = 7

_MAX_UVARINT = (1 << 64) - 1
_ENTRY_KINDS = frozenset((ENTRY_NORMAL, ENTRY_NOOP, ENTRY_PEERS))


# ------------------------------------------------------------------------------------------ encoding


def _uv(out: bytearray, value: int) -> None:
    if 0 <= value < 0x80:
        out.append(value)
        return
    if value < 0 or value > _MAX_UVARINT:
        raise ValueError(f"integer out of range for a uvarint: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _str(out: bytearray, text: str) -> None:
    raw = text.encode()
    _uv(out, len(raw))
    out += raw


def _bytes(out: bytearray, raw: bytes) -> None:
    _uv(out, len(raw))
    out += raw


def _peers(out: bytearray, peers: Iterable[str]) -> None:
    items = tuple(peers)
    if len(set(items)) != len(items):
        raise ValueError(f"duplicate peers in {items!r}")
    _uv(out, len(items))
    for peer in items:
        _str(out, peer)


def encode_peers(peers: Iterable[str]) -> bytes:
    """The data of an ENTRY_PEERS entry: the new peer set, in the given order."""
    out = bytearray()
    _peers(out, peers)
    return bytes(out)


def encode(group: str, msg: Message) -> bytes:
    """One frame for `msg` of Raft group `group`. Raises ValueError for a message that cannot be
    represented (a negative number, entries that do not follow prev_index one by one, a term that
    goes down, an unknown entry kind)."""
    out = bytearray()
    cls = type(msg)
    if cls is AppendRequest:
        assert isinstance(msg, AppendRequest)
        out.append(KIND_APPEND_REQUEST)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.leader)
        _uv(out, msg.prev_index)
        _uv(out, msg.prev_term)
        _uv(out, msg.commit)
        entries = msg.entries
        _uv(out, len(entries))
        index = msg.prev_index
        term = msg.prev_term
        for entry in entries:
            index += 1
            if entry.index != index:
                raise ValueError(f"entry index {entry.index} does not follow {index - 1}")
            delta = entry.term - term
            kind = entry.kind
            if delta < 0:
                raise ValueError(f"entry term {entry.term} below the term before it ({term})")
            if kind not in _ENTRY_KINDS:
                raise ValueError(f"unknown entry kind {kind}")
            term = entry.term
            _uv(out, (delta << 3) | kind)
            data = entry.data
            _uv(out, len(data))
            out += data
    elif cls is AppendResponse:
        assert isinstance(msg, AppendResponse)
        out.append(KIND_APPEND_RESPONSE)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.follower)
        out.append(1 if msg.success else 0)
        _uv(out, msg.index)
    elif cls is VoteRequest:
        assert isinstance(msg, VoteRequest)
        out.append(KIND_VOTE_REQUEST)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.candidate)
        _uv(out, msg.last_index)
        _uv(out, msg.last_term)
        out.append((1 if msg.pre_vote else 0) | (2 if msg.transfer else 0))
    elif cls is VoteResponse:
        assert isinstance(msg, VoteResponse)
        out.append(KIND_VOTE_RESPONSE)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.voter)
        out.append((1 if msg.granted else 0) | (2 if msg.pre_vote else 0))
    elif cls is SnapshotRequest:
        assert isinstance(msg, SnapshotRequest)
        out.append(KIND_SNAPSHOT_REQUEST)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.leader)
        _uv(out, msg.meta.index)
        _uv(out, msg.meta.term)
        _peers(out, msg.meta.peers)
        _bytes(out, msg.data)
    elif cls is SnapshotResponse:
        assert isinstance(msg, SnapshotResponse)
        out.append(KIND_SNAPSHOT_RESPONSE)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.follower)
        _uv(out, msg.index)
    elif cls is TimeoutNow:
        assert isinstance(msg, TimeoutNow)
        out.append(KIND_TIMEOUT_NOW)
        _str(out, group)
        _uv(out, msg.term)
        _str(out, msg.leader)
    else:
        raise ValueError(f"not a Raft message: {type(msg).__name__}")
    return bytes(out)


# ------------------------------------------------------------------------------------------ decoding


def _read_uv(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the uvarint at `pos`."""
    try:
        byte = data[pos]
    except IndexError:
        raise ValueError("truncated input: a number is missing") from None
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    pos += 1
    end = len(data)
    while True:
        if pos >= end:
            raise ValueError("truncated input inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0:
                raise ValueError("non-canonical number (redundant zero group)")
            if value > _MAX_UVARINT:
                raise ValueError("number does not fit 64 bits")
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("number longer than 10 bytes")


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _read_uv(data, pos)
    end = pos + length
    if end > len(data):
        raise ValueError(f"length {length} runs past the end of the input")
    return data[pos:end], end


def _read_str(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _read_bytes(data, pos)
    try:
        return raw.decode(), pos
    except UnicodeDecodeError:
        raise ValueError("invalid UTF-8 in a string") from None


def _read_peers(data: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    count, pos = _read_uv(data, pos)
    if count > len(data) - pos:  # every peer takes at least its length byte
        raise ValueError(f"peer count {count} runs past the end of the input")
    peers = []
    for _ in range(count):
        peer, pos = _read_str(data, pos)
        peers.append(peer)
    result = tuple(peers)
    if len(set(result)) != count:
        raise ValueError("duplicate peers")
    return result, pos


def _read_flags(data: bytes, pos: int, allowed: int) -> tuple[int, int]:
    try:
        flags = data[pos]
    except IndexError:
        raise ValueError("truncated input: flags are missing") from None
    if flags & ~allowed:
        raise ValueError(f"unknown flag bits {flags:#04x}")
    return flags, pos + 1


def decode_peers(data: bytes) -> tuple[str, ...]:
    """The peer set of an ENTRY_PEERS entry (ValueError if malformed)."""
    data = bytes(data)
    peers, pos = _read_peers(data, 0)
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the peer set")
    return peers


def _decode_append(data: bytes, pos: int) -> tuple[AppendRequest, int]:
    term, pos = _read_uv(data, pos)
    leader, pos = _read_str(data, pos)
    prev_index, pos = _read_uv(data, pos)
    prev_term, pos = _read_uv(data, pos)
    commit, pos = _read_uv(data, pos)
    count, pos = _read_uv(data, pos)
    end = len(data)
    if count > (end - pos) // 2:  # every entry takes at least two bytes
        raise ValueError(f"entry count {count} runs past the end of the input")
    entries: list[Entry] = []
    index = prev_index
    entry_term = prev_term
    append = entries.append
    for _ in range(count):
        # header and length, each with the one-byte fast path inline (the common case)
        if pos >= end:
            raise ValueError("truncated entry")
        head = data[pos]
        if head < 0x80:
            pos += 1
        else:
            head, pos = _read_uv(data, pos)
        if pos >= end:
            raise ValueError("truncated entry")
        length = data[pos]
        if length < 0x80:
            pos += 1
        else:
            length, pos = _read_uv(data, pos)
        stop = pos + length
        if stop > end:
            raise ValueError(f"entry length {length} runs past the end of the input")
        kind = head & 7
        if kind not in _ENTRY_KINDS:
            raise ValueError(f"unknown entry kind {kind}")
        entry_term += head >> 3
        index += 1
        append(Entry(entry_term, index, kind, data[pos:stop]))
        pos = stop
    if index > _MAX_UVARINT or entry_term > _MAX_UVARINT:
        raise ValueError("entry index or term does not fit 64 bits")
    return AppendRequest(term, leader, prev_index, prev_term, tuple(entries), commit), pos


def decode(data: bytes) -> tuple[str, Message]:
    """(group, message) from one frame; ValueError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"cannot decode {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ValueError("empty frame")
    kind = data[0]
    group, pos = _read_str(data, 1)
    msg: Message
    if kind == KIND_APPEND_REQUEST:
        msg, pos = _decode_append(data, pos)
    elif kind == KIND_APPEND_RESPONSE:
        term, pos = _read_uv(data, pos)
        follower, pos = _read_str(data, pos)
        flags, pos = _read_flags(data, pos, 1)
        index, pos = _read_uv(data, pos)
        msg = AppendResponse(term, follower, bool(flags), index)
    elif kind == KIND_VOTE_REQUEST:
        term, pos = _read_uv(data, pos)
        candidate, pos = _read_str(data, pos)
        last_index, pos = _read_uv(data, pos)
        last_term, pos = _read_uv(data, pos)
        flags, pos = _read_flags(data, pos, 3)
        msg = VoteRequest(term, candidate, last_index, last_term, bool(flags & 1), bool(flags & 2))
    elif kind == KIND_VOTE_RESPONSE:
        term, pos = _read_uv(data, pos)
        voter, pos = _read_str(data, pos)
        flags, pos = _read_flags(data, pos, 3)
        msg = VoteResponse(term, voter, bool(flags & 1), bool(flags & 2))
    elif kind == KIND_SNAPSHOT_REQUEST:
        term, pos = _read_uv(data, pos)
        leader, pos = _read_str(data, pos)
        index, pos = _read_uv(data, pos)
        snap_term, pos = _read_uv(data, pos)
        peers, pos = _read_peers(data, pos)
        blob, pos = _read_bytes(data, pos)
        msg = SnapshotRequest(term, leader, SnapshotMeta(index, snap_term, peers), blob)
    elif kind == KIND_SNAPSHOT_RESPONSE:
        term, pos = _read_uv(data, pos)
        follower, pos = _read_str(data, pos)
        index, pos = _read_uv(data, pos)
        msg = SnapshotResponse(term, follower, index)
    elif kind == KIND_TIMEOUT_NOW:
        term, pos = _read_uv(data, pos)
        leader, pos = _read_str(data, pos)
        msg = TimeoutNow(term, leader)
    else:
        raise ValueError(f"unknown message kind {kind}")
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the message")
    return group, msg
