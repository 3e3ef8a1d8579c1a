"""Stream commands (layer 4): the only way to change a stream, and their byte encoding.

Every mutation of a stream (store, skip, delete, purge, expiry, config change) is one of these frozen
objects passed to `Stream.apply()`. Given the same state and the same command, `apply()` produces the
same result on every node (timestamps are inside the commands), so a replicated stream's Raft log is a
list of encoded commands and every replica applies them through the same `apply()`.

Encoding (ours, between jsedge nodes only; compact because the Raft log is written per message)::

    byte 0          kind: 1 STORE, 2 SKIP, 3 DELETE, 4 PURGE, 5 EXPIRE, 6 CONFIG
    STORE   flags (bit 0 rollup=sub, bit 1 rollup=all, bit 2 ttl, bit 3 msg id, bit 4 headers,
            bit 5 seq), svarint ts, [uvarint seq], uvarint len subject, subject, [svarint ttl],
            [uvarint len, msg id], [uvarint len, headers], data = the rest
    SKIP    svarint ts, uvarint len msg id, msg id, [uvarint seq]
    DELETE  uvarint seq, byte erase (0/1)
    PURGE   flags (bit 0 filter), [uvarint len, filter], uvarint seq, uvarint keep
    EXPIRE  svarint now
    CONFIG  the stream config as JSON (nats-server's StreamConfig field names)

    uvarint = LEB128 (at most 10 bytes); svarint = zigzag then uvarint.

A 128 B payload on a 14 B subject with no headers costs 1 + 1 + 9 + 1 = 12 bytes beyond subject and
payload (plus 1-4 for a stated sequence). `decode` raises ValueError on anything malformed (it never trusts a length it cannot back).

The hot functions (`encode_command`, `encode_store_batch`, `decode_batch`, `command_ends`) have a
compiled twin, `jsedge/_speedups/commands.pyx`, chosen at import by `jsedge._ext` (the functions
below are the reference; `IMPLEMENTATION` says which one runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from jsedge import gojson
from jsedge._ext import load
from jsedge.jetstream.models import StreamConfig, decode_stream_config_request, encode

# ------------------------------------------------------------------------------------------------
# the commands


@dataclass(frozen=True, slots=True)
class StoreMsg:
    subject: bytes
    hdr: bytes
    data: bytes
    ts: int
    ttl: int = 0  # seconds; -1 never; 0 none
    msg_id: bytes = b""
    rollup: str = ""  # "", "sub", "all"
    #: The sequence the message gets (0 = unstated). A replicated stream states it, so a command
    #: replayed from the Raft log after a restart is recognised as already applied.
    seq: int = 0

    def __init__(
        self,
        subject: bytes,
        hdr: bytes,
        data: bytes,
        ts: int,
        ttl: int = 0,
        msg_id: bytes = b"",
        rollup: str = "",
        seq: int = 0,
    ) -> None:
        # Same fields as the generated __init__ (one per publish: the slot setters are ~40 % cheaper
        # than the frozen dataclass's object.__setattr__ calls).
        s = _STORE_MSG_SET
        s[0](self, subject)
        s[1](self, hdr)
        s[2](self, data)
        s[3](self, ts)
        s[4](self, ttl)
        s[5](self, msg_id)
        s[6](self, rollup)
        s[7](self, seq)


_STORE_MSG_SET = tuple(getattr(StoreMsg, name).__set__ for name in StoreMsg.__slots__)
assert StoreMsg.__slots__ == ("subject", "hdr", "data", "ts", "ttl", "msg_id", "rollup", "seq")


def state_seq(command: StoreMsg, seq: int) -> StoreMsg:
    """`command` with the sequence it will get stated, set in place. Only for a command nobody else
    holds yet (a replicated stream's leader stating the sequences of the publishes it just
    prepared): a second object would cost every replicated publish about 2 µs."""
    _STORE_MSG_SET[7](command, seq)
    return command


@dataclass(frozen=True, slots=True)
class SkipMsg:
    ts: int
    msg_id: bytes = b""
    seq: int = 0  # as StoreMsg.seq


@dataclass(frozen=True, slots=True)
class DeleteMsg:
    seq: int
    erase: bool = True


@dataclass(frozen=True, slots=True)
class PurgeMsgs:
    filter: bytes | None = None
    seq: int = 0
    keep: int = 0


@dataclass(frozen=True, slots=True)
class ExpireMsgs:
    now: int


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    config: StreamConfig


Command = StoreMsg | SkipMsg | DeleteMsg | PurgeMsgs | ExpireMsgs | UpdateConfig

KIND_STORE = 1
KIND_SKIP = 2
KIND_DELETE = 3
KIND_PURGE = 4
KIND_EXPIRE = 5
KIND_CONFIG = 6
#: Several StoreMsg commands in one Raft entry (a replicated stream's pipelined publishes of one
#: event-loop turn): ``7 uvarint(count) (uvarint(len) store-command)*``. Decoded with
#: `decode_batch`, never by `decode_command` (a batch is the cluster's framing, not a stream command).
KIND_BATCH = 7
#: An atomic batch (batch.py): the same framing as KIND_BATCH, applied all or nothing
#: (`Stream.apply_atomic`); it may also hold the SkipMsg/PurgeMsgs of interest retention.
KIND_ATOMIC = 8

_ROLLUP_SUB = 0x01
_ROLLUP_ALL = 0x02
_HAS_TTL = 0x04
_HAS_MSG_ID = 0x08
_HAS_HDR = 0x10
_HAS_SEQ = 0x20

# ------------------------------------------------------------------------------------------------
# varints


def uvarint(value: int, out: bytearray) -> None:
    if value < 0:
        raise ValueError("negative uvarint")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def svarint(value: int, out: bytearray) -> None:
    uvarint((value << 1) ^ (value >> 63) if -(1 << 63) <= value < (1 << 63) else _too_big(), out)


def _too_big() -> int:
    raise ValueError("integer out of int64 range")


def read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def read_svarint(data: bytes, pos: int) -> tuple[int, int]:
    value, pos = read_uvarint(data, pos)
    return (value >> 1) ^ -(value & 1), pos


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_uvarint(data, pos)
    end = pos + length
    if end > len(data):
        raise ValueError("length beyond the end")
    return data[pos:end], end


# ------------------------------------------------------------------------------------------------
# encode / decode


def _encode_command_py(command: Command) -> bytes:
    out = bytearray()
    if type(command) is StoreMsg:
        flags = 0
        if command.rollup == "sub":
            flags |= _ROLLUP_SUB
        elif command.rollup == "all":
            flags |= _ROLLUP_ALL
        if command.ttl:
            flags |= _HAS_TTL
        if command.msg_id:
            flags |= _HAS_MSG_ID
        if command.hdr:
            flags |= _HAS_HDR
        if command.seq:
            flags |= _HAS_SEQ
        out.append(KIND_STORE)
        out.append(flags)
        svarint(command.ts, out)
        if flags & _HAS_SEQ:
            uvarint(command.seq, out)
        uvarint(len(command.subject), out)
        out += command.subject
        if flags & _HAS_TTL:
            svarint(command.ttl, out)
        if flags & _HAS_MSG_ID:
            uvarint(len(command.msg_id), out)
            out += command.msg_id
        if flags & _HAS_HDR:
            uvarint(len(command.hdr), out)
            out += command.hdr
        out += command.data
        return bytes(out)
    if isinstance(command, SkipMsg):
        out.append(KIND_SKIP)
        svarint(command.ts, out)
        uvarint(len(command.msg_id), out)
        out += command.msg_id
        if command.seq:
            uvarint(command.seq, out)
    elif isinstance(command, DeleteMsg):
        out.append(KIND_DELETE)
        uvarint(command.seq, out)
        out.append(1 if command.erase else 0)
    elif isinstance(command, PurgeMsgs):
        out.append(KIND_PURGE)
        out.append(1 if command.filter is not None else 0)
        if command.filter is not None:
            uvarint(len(command.filter), out)
            out += command.filter
        uvarint(command.seq, out)
        uvarint(command.keep, out)
    elif isinstance(command, ExpireMsgs):
        out.append(KIND_EXPIRE)
        svarint(command.now, out)
    elif isinstance(command, UpdateConfig):
        out.append(KIND_CONFIG)
        out += gojson.dumpb(encode(command.config))
    else:
        raise TypeError(f"not a stream command: {command!r}")
    return bytes(out)


def decode_command(data: bytes) -> Command:
    """The command `encode_command` made; ValueError when `data` is not one."""
    if not data:
        raise ValueError("empty command")
    kind = data[0]
    if kind == KIND_STORE:
        if len(data) < 2:
            raise ValueError("truncated store command")
        flags = data[1]
        if flags & ~0x3F or (flags & _ROLLUP_SUB and flags & _ROLLUP_ALL):
            raise ValueError("bad store flags")
        ts, pos = read_svarint(data, 2)
        seq = 0
        if flags & _HAS_SEQ:
            seq, pos = read_uvarint(data, pos)
            if not seq:
                raise ValueError("a stated sequence is never 0")
        subject, pos = _read_bytes(data, pos)
        ttl = 0
        msg_id = b""
        hdr = b""
        if flags & _HAS_TTL:
            ttl, pos = read_svarint(data, pos)
        if flags & _HAS_MSG_ID:
            msg_id, pos = _read_bytes(data, pos)
        if flags & _HAS_HDR:
            hdr, pos = _read_bytes(data, pos)
        rollup = "sub" if flags & _ROLLUP_SUB else "all" if flags & _ROLLUP_ALL else ""
        return StoreMsg(subject, hdr, data[pos:], ts, ttl, msg_id, rollup, seq)
    if kind == KIND_SKIP:
        ts, pos = read_svarint(data, 1)
        msg_id, pos = _read_bytes(data, pos)
        seq = 0
        if pos < len(data):
            seq, pos = read_uvarint(data, pos)
            if not seq:
                raise ValueError("a stated sequence is never 0")
        _end(data, pos)
        return SkipMsg(ts, msg_id, seq)
    if kind == KIND_DELETE:
        seq, pos = read_uvarint(data, 1)
        if pos >= len(data) or data[pos] > 1:
            raise ValueError("bad delete command")
        _end(data, pos + 1)
        return DeleteMsg(seq, erase=bool(data[pos]))
    if kind == KIND_PURGE:
        if len(data) < 2 or data[1] > 1:
            raise ValueError("bad purge command")
        pos = 2
        subject_filter: bytes | None = None
        if data[1]:
            subject_filter, pos = _read_bytes(data, pos)
        seq, pos = read_uvarint(data, pos)
        keep, pos = read_uvarint(data, pos)
        _end(data, pos)
        return PurgeMsgs(subject_filter, seq=seq, keep=keep)
    if kind == KIND_EXPIRE:
        now, pos = read_svarint(data, 1)
        _end(data, pos)
        return ExpireMsgs(now)
    if kind == KIND_CONFIG:
        try:
            document = json.loads(data[1:])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad config command: {exc}") from None
        try:
            config = decode_stream_config_request(document)
        except Exception as exc:  # a JSError from the request decoder: not a valid config
            raise ValueError(f"bad config command: {exc}") from None
        config.pedantic = False
        return UpdateConfig(config)
    raise ValueError(f"unknown command kind {kind}")


def encode_batch(encoded: list[bytes], *, atomic: bool = False) -> bytes:
    """One entry for several encoded StoreMsg commands (KIND_BATCH), or an atomic batch's
    commands (KIND_ATOMIC)."""
    out = bytearray((KIND_ATOMIC if atomic else KIND_BATCH,))
    uvarint(len(encoded), out)
    for command in encoded:
        uvarint(len(command), out)
        out += command
    return bytes(out)


def _decode_batch_py(data: bytes) -> list[Command]:
    """The commands of a KIND_BATCH entry (each a StoreMsg) or a KIND_ATOMIC one; ValueError
    when malformed."""
    if not data or data[0] not in (KIND_BATCH, KIND_ATOMIC):
        raise ValueError("not a batch")
    allowed: tuple[type, ...] = (StoreMsg,) if data[0] == KIND_BATCH else (StoreMsg, SkipMsg, PurgeMsgs)
    count, pos = read_uvarint(data, 1)
    commands: list[Command] = []
    for _ in range(count):
        length, pos = read_uvarint(data, pos)
        end = pos + length
        if end > len(data):
            raise ValueError("length beyond the end")
        command = decode_command(data[pos:end])
        if type(command) not in allowed:
            raise ValueError("a batch holds only stored messages")
        commands.append(command)
        pos = end
    _end(data, pos)
    return commands


def _end(data: bytes, pos: int) -> None:
    if pos != len(data):
        raise ValueError("trailing bytes after command")


def _command_ends_py(data: bytes) -> list[int]:
    """Where each command of a batch entry ends in `data` (a StoreMsg's payload is the last
    len(payload) bytes of its command). Lengths are not checked against the end: the caller
    decoded the entry already."""
    count, pos = read_uvarint(data, 1)
    ends = []
    for _ in range(count):
        length, pos = read_uvarint(data, pos)
        pos += length
        ends.append(pos)
    return ends


def _encode_store_batch_py(commands: list[StoreMsg]) -> bytes:
    return encode_batch([_encode_command_py(command) for command in commands])


# ------------------------------------------------------------------------------------------------
# the twin in use (jsedge._ext): the compiled jsedge/_speedups/commands.pyx, which takes the common
# shapes and hands everything else to the functions above

encode_command: Callable[[Command], bytes] = _encode_command_py
decode_batch: Callable[[bytes], list[Command]] = _decode_batch_py
command_ends: Callable[[bytes], list[int]] = _command_ends_py
#: `encode_batch([encode_command(c) for c in commands])` for a batch of StoreMsg (KIND_BATCH).
encode_store_batch: Callable[[list[StoreMsg]], bytes] = _encode_store_batch_py

_compiled = load("commands")
IMPLEMENTATION = "py" if _compiled is None else "c"
if _compiled is not None:
    _compiled.bind(StoreMsg, _encode_command_py, encode_batch, _decode_batch_py, _command_ends_py)
    encode_command = _compiled.encode_command
    decode_batch = _compiled.decode_batch
    command_ends = _compiled.command_ends
    encode_store_batch = _compiled.encode_store_batch


__all__ = [
    "IMPLEMENTATION",
    "Command",
    "DeleteMsg",
    "ExpireMsgs",
    "PurgeMsgs",
    "SkipMsg",
    "StoreMsg",
    "UpdateConfig",
    "command_ends",
    "decode_batch",
    "decode_command",
    "encode_batch",
    "encode_command",
    "encode_store_batch",
    "read_svarint",
    "read_uvarint",
    "svarint",
    "uvarint",
]
