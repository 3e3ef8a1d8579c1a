"""Segment record codec, pure-Python reference twin (layer 3). Import `jsedge.store.codec` instead.

On-disk format (all integers little-endian or LEB128; no native sizes, no alignment: a block written
on x86-64 reads unchanged on 32-bit ARM)
===========================================================================================

A block file is a plain sequence of records, no file header. Its name carries the two bases every
record is relative to: ``<base_seq:016x>-<base_ts:016x>.blk`` (base_ts as the uint64 two's complement of
the int64). A record::

    tag        1 byte    0xE0 | kind      (the high nibble is the resync magic)
    body_len   uvarint   1-5 bytes, body_len <= MAX_BODY
    body       body_len bytes, layout by kind (below)
    crc        4 bytes   CRC-32 (zlib/IEEE polynomial) of tag + body_len + body, little-endian

    uvarint = LEB128, at most 9 bytes (values < 2**63); svarint = zigzag(value) as uvarint.

    kind 0 MSG       uvarint(seq - base_seq) svarint(ts - base_ts) uvarint(len subj) subj
                     uvarint(len hdr) hdr data                      (data = rest of the body)
    kind 1 MSG_TTL   as MSG with svarint(ttl_ns) after the timestamp (-1 = never expires)
    kind 2 SKIP      uvarint(seq - base_seq) svarint(ts - base_ts)    sequence consumed, nothing stored
    kind 3 TOMBSTONE uvarint(seq)                                     absolute: deletes a message of
                                                                      this or an earlier block
    kind 4 ERASED    uvarint(seq - base_seq) zero padding             an erased MSG, rewritten in place
                                                                      with the same total length
    kind 5 STATE     uvarint(first_seq) uvarint(last_seq) svarint(last_ts)   absolute: every seq below
                                                                      first_seq is gone; last_seq and
                                                                      last_ts survive an empty stream
    kind 6 BLOB      opaque bytes (consumer state logs)
    kind 7 MSG_REF   as MSG, but the data lives elsewhere (a replicated stream's Raft log segment,
                     hard-linked into the store: jsedge.store.filestore "Write once"); in its place
                     the reference: uvarint(data_len) uvarint(file) uvarint(offset) crc32(data, 4 B
                     LE); `scan` reports data_len as the record's aux (the size it accounts)

Trailing bytes inside a SKIP/TOMBSTONE/STATE/ERASED body are ignored (room to grow).

Size: a 128 B payload on a 10 B subject with the block's base a few thousand sequences and a few
seconds away costs 1 + 2 + 2 + 5 + 1 + 1 + 4 = 16 bytes of framing (nats-server: 22 + 8 = 30), so the
record is 154 B against nats-server's 168 B (0.92x); a 0 B payload on a 3 B subject is 18 B against
33 B. Varints instead of fixed fields pay off because deltas to the block base are small; the
block's base_ts comes from its file name, so no record depends on the one before it.

Checksum: CRC-32 (IEEE) from zlib, not CRC-32C. Both detect every single-bit error and every burst up
to 32 bits; zlib's CRC-32 is in the standard library (the pure-Python twin needs no dependency and runs
at C speed, ~1.5 GB/s measured here) and the Cython twin calls the same zlib routine, so the twins
agree by construction. CRC-32C's edge is hardware instructions, which zlib >= 1.2.12 also uses for
CRC-32 on ARMv8 and x86 (pclmul).

Recovery and resync (`scan`): records are decoded in order; a record that fails its checks (tag,
bounds, checksum, body layout) starts a corrupt range. The scanner first tries the record's own
declared length (a flipped bit in the payload leaves the length intact, so the next record is found
without looking inside the bad payload), then every later offset whose byte is a valid tag, and resumes
at the first offset holding a fully valid record. Nothing valid after the failure means a torn tail:
`valid_end` is where the file should be truncated. A random false resync needs a matching tag, a
plausible length and a matching CRC-32: about 2**-37 per byte scanned.

Both twins (this module and `jsedge/_speedups/codec.pyx`) produce identical bytes and identical scan
results; `tests/property/test_codec_property.py` checks it.
"""

from __future__ import annotations

import struct
import zlib
from array import array

TAG_BASE = 0xE0
KIND_MSG = 0
KIND_MSG_TTL = 1
KIND_SKIP = 2
KIND_TOMBSTONE = 3
KIND_ERASED = 4
KIND_STATE = 5
KIND_BLOB = 6
KIND_MSG_REF = 7
NUM_KINDS = 8

#: Largest body accepted (a 64 MiB message is far above nats-server's max_payload ceiling).
MAX_BODY = 64 * 1024 * 1024
#: Longest accepted uvarint: 9 bytes = 63 bits, so every value fits an int64 in the compiled twin.
MAX_VARINT = 9
MAX_UVARINT = (1 << 63) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

#: Fields per record in the `scan` result array, in this order.
FIELDS = 10
F_KIND, F_OFFSET, F_LEN, F_SEQ, F_TS, F_AUX, F_SUBJ_OFF, F_SUBJ_LEN, F_HDR_LEN, F_DATA_LEN = range(FIELDS)

_CRC = struct.Struct("<I")


class CorruptRecordError(ValueError):
    """The bytes at this offset are not one valid record."""


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return zlib.crc32(data, value)


def _uvarint(value: int) -> bytes:
    if value < 0x80:
        if value < 0:
            raise ValueError("uvarint of a negative value")
        return bytes((value,))
    if value > MAX_UVARINT:
        raise ValueError("uvarint value too large")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _svarint(value: int) -> bytes:
    if not _I64_MIN <= value <= _I64_MAX:
        raise ValueError("svarint value out of int64 range")
    zigzag = (value << 1) if value >= 0 else ((-value) << 1) - 1
    return _uvarint(zigzag)


def varint_len(value: int) -> int:
    return len(_uvarint(value))


def _frame(out: bytearray, kind: int, parts: tuple[bytes, ...]) -> int:
    body_len = sum(len(p) for p in parts)
    if body_len > MAX_BODY:
        raise ValueError("record too large")
    head = bytes((TAG_BASE | kind,)) + _uvarint(body_len)
    crc = zlib.crc32(head)
    out += head
    for part in parts:
        crc = zlib.crc32(part, crc)
        out += part
    out += _CRC.pack(crc)
    return len(head) + body_len + 4


def encode_msg(
    out: bytearray,
    base_seq: int,
    base_ts: int,
    seq: int,
    ts: int,
    subject: bytes,
    hdr: bytes,
    data: bytes,
    ttl: int = 0,
) -> int:
    """Append a MSG (or MSG_TTL when ttl != 0) record to `out`; returns its length."""
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    if ttl:
        head = _uvarint(seq - base_seq) + _svarint(ts - base_ts) + _svarint(ttl)
        kind = KIND_MSG_TTL
    else:
        head = _uvarint(seq - base_seq) + _svarint(ts - base_ts)
        kind = KIND_MSG
    return _frame(out, kind, (head, _uvarint(len(subject)), subject, _uvarint(len(hdr)), hdr, data))


def encode_msg_ref(
    out: bytearray,
    base_seq: int,
    base_ts: int,
    seq: int,
    ts: int,
    subject: bytes,
    hdr: bytes,
    data_len: int,
    file: int,
    offset: int,
    crc: int,
) -> int:
    """Append a MSG_REF record (a message whose `data_len` bytes of data, with CRC-32 `crc`, are at
    `offset` in reference file `file`); returns its length."""
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    if not 0 <= data_len <= MAX_BODY:
        raise ValueError("referenced data too large")
    head = _uvarint(seq - base_seq) + _svarint(ts - base_ts)
    ref = _uvarint(data_len) + _uvarint(file) + _uvarint(offset) + _CRC.pack(crc & 0xFFFFFFFF)
    return _frame(out, KIND_MSG_REF, (head, _uvarint(len(subject)), subject, _uvarint(len(hdr)), hdr, ref))


def decode_ref(ref: bytes) -> tuple[int, int, int, int]:
    """The reference of a MSG_REF record (its `data` as `decode` returns it): (data_len, file,
    offset, crc); ValueError when malformed."""
    n = len(ref)
    data_len, pos = _read_uvarint(ref, 0, n)
    file, pos = _read_uvarint(ref, pos, n) if data_len >= 0 else (-1, pos)
    offset, pos = _read_uvarint(ref, pos, n) if file >= 0 else (-1, pos)
    if offset < 0 or pos + 4 > n:
        raise ValueError("malformed reference")
    return data_len, file, offset, _CRC.unpack_from(ref, pos)[0]


def encode_skip(out: bytearray, base_seq: int, base_ts: int, seq: int, ts: int) -> int:
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    return _frame(out, KIND_SKIP, (_uvarint(seq - base_seq), _svarint(ts - base_ts)))


def encode_tombstone(out: bytearray, seq: int) -> int:
    return _frame(out, KIND_TOMBSTONE, (_uvarint(seq),))


def encode_state(out: bytearray, first_seq: int, last_seq: int, last_ts: int) -> int:
    return _frame(out, KIND_STATE, (_uvarint(first_seq), _uvarint(last_seq), _svarint(last_ts)))


def encode_blob(out: bytearray, data: bytes) -> int:
    return _frame(out, KIND_BLOB, (bytes(data),))


def erased_record(rec_len: int, base_seq: int, seq: int) -> bytes:
    """An ERASED record of exactly `rec_len` bytes (to overwrite a MSG record of that length)."""
    dseq = _uvarint(seq - base_seq)
    for vlen in range(1, 6):
        body_len = rec_len - 5 - vlen
        if body_len >= len(dseq) and varint_len(body_len) == vlen:
            out = bytearray()
            _frame(out, KIND_ERASED, (dseq, bytes(body_len - len(dseq))))
            return bytes(out)
    raise ValueError("record too short to erase in place")


# ---- decoding -----------------------------------------------------------------------------------


def _read_uvarint(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, new pos); (-1, pos) when the varint runs past `end` or is longer than MAX_VARINT."""
    value = 0
    shift = 0
    for i in range(MAX_VARINT):
        if pos + i >= end:
            return -1, pos
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    return -1, pos


def _unzigzag(value: int) -> int:
    return (value >> 1) if not value & 1 else -((value + 1) >> 1)


def _try(buf: bytes | bytearray | memoryview, p: int, n: int, base_seq: int, base_ts: int) -> tuple[int, ...] | None:
    """Decode the record at p (buffer length n): the FIELDS tuple, or None when invalid."""
    kind = buf[p] ^ TAG_BASE
    if kind >= NUM_KINDS:
        return None
    body_len, body = _read_uvarint(buf, p + 1, n)
    if body_len < 0 or body_len > MAX_BODY:
        return None
    body_end = body + body_len
    end = body_end + 4
    if end > n:
        return None
    if zlib.crc32(buf[p:body_end]) != _CRC.unpack_from(buf, body_end)[0]:
        return None
    rec_len = end - p
    if kind == KIND_BLOB:
        return (kind, p, rec_len, 0, 0, 0, 0, 0, 0, body_len)
    first, pos = _read_uvarint(buf, body, body_end)
    if first < 0:
        return None
    if kind == KIND_TOMBSTONE:
        return (kind, p, rec_len, first, 0, 0, 0, 0, 0, 0)
    if kind == KIND_STATE:
        last, pos = _read_uvarint(buf, pos, body_end)
        if last < 0:
            return None
        zz, pos = _read_uvarint(buf, pos, body_end)
        if zz < 0:
            return None
        return (kind, p, rec_len, first, _unzigzag(zz), last, 0, 0, 0, 0)
    seq = base_seq + first
    if seq > _I64_MAX:
        return None
    if kind == KIND_ERASED:
        return (kind, p, rec_len, seq, 0, 0, 0, 0, 0, 0)
    zz, pos = _read_uvarint(buf, pos, body_end)
    if zz < 0:
        return None
    ts = base_ts + _unzigzag(zz)
    if not _I64_MIN <= ts <= _I64_MAX:
        return None
    if kind == KIND_SKIP:
        return (kind, p, rec_len, seq, ts, 0, 0, 0, 0, 0)
    ttl = 0
    if kind == KIND_MSG_TTL:
        zz, pos = _read_uvarint(buf, pos, body_end)
        if zz < 0:
            return None
        ttl = _unzigzag(zz)
    subj_len, pos = _read_uvarint(buf, pos, body_end)
    if subj_len < 0 or pos + subj_len > body_end:
        return None
    subj_off = pos
    hdr_len, pos = _read_uvarint(buf, pos + subj_len, body_end)
    if hdr_len < 0 or pos + hdr_len > body_end:
        return None
    if kind == KIND_MSG_REF:
        ttl, _ = _read_uvarint(buf, pos + hdr_len, body_end)  # aux: the referenced data's length
        if ttl < 0 or ttl > MAX_BODY:
            return None
    return (kind, p, rec_len, seq, ts, ttl, subj_off, subj_len, hdr_len, body_end - pos - hdr_len)


def decode(
    buf: bytes | bytearray | memoryview, offset: int, base_seq: int, base_ts: int
) -> tuple[int, int, int, int, bytes, bytes, bytes, int]:
    """Decode the record at `offset`: (kind, seq, ts, aux, subject, hdr, data, rec_len).

    `seq` is the target for a TOMBSTONE and first_seq for a STATE record (whose `aux` is last_seq and
    `ts` last_ts); `aux` is the TTL of a MSG_TTL and the referenced length of a MSG_REF (whose `data`
    is the reference: `decode_ref`); `data` is the blob of a BLOB. Raises
    CorruptRecordError when the bytes there are not one valid record."""
    n = len(buf)
    fields = _try(buf, offset, n, base_seq, base_ts) if 0 <= offset < n else None
    if fields is None:
        raise CorruptRecordError(f"no valid record at offset {offset}")
    kind, p, rec_len, seq, ts, aux, subj_off, subj_len, hdr_len, data_len = fields
    data_off = p + rec_len - 4 - data_len
    subject = bytes(buf[subj_off : subj_off + subj_len])
    hdr = bytes(buf[data_off - hdr_len : data_off])
    data = bytes(buf[data_off : data_off + data_len])
    return kind, seq, ts, aux, subject, hdr, data, rec_len


def scan(
    buf: bytes | bytearray | memoryview, base_seq: int, base_ts: int, start: int = 0
) -> tuple[array[int], list[tuple[int, int]], int]:
    """Decode every record from `start`: (entries, corrupt ranges, valid_end).

    `entries` is an array('q') with FIELDS values per valid record (see F_*; the data starts at
    offset + len - 4 - data_len, headers just before it). `corrupt` lists the skipped [start, end)
    byte ranges; `valid_end` is the end of the last valid record (truncate the file there) or
    len(buf) when the buffer ends with a valid record."""
    n = len(buf)
    entries = array("q")
    corrupt: list[tuple[int, int]] = []
    p = start
    while p < n:
        fields = _try(buf, p, n, base_seq, base_ts)
        if fields is not None:
            entries.extend(fields)
            p += fields[F_LEN]
            continue
        # 1. the declared length, if it is plausible, skips the bad record without reading inside it
        q = -1
        if buf[p] ^ TAG_BASE < NUM_KINDS:
            body_len, body = _read_uvarint(buf, p + 1, n)
            if 0 <= body_len <= MAX_BODY:
                skip = body + body_len + 4
                if skip < n and _try(buf, skip, n, base_seq, base_ts) is not None:
                    q = skip
        # 2. else the first later offset that holds a valid record
        if q < 0:
            r = p + 1
            while r < n:
                if buf[r] ^ TAG_BASE < NUM_KINDS and _try(buf, r, n, base_seq, base_ts) is not None:
                    q = r
                    break
                r += 1
        if q < 0:
            corrupt.append((p, n))
            return entries, corrupt, p
        corrupt.append((p, q))
        p = q
    return entries, corrupt, n


def index_sid(arr: array[int], value: int, lo: int, hi: int) -> int:
    """`arr.index(value, lo, hi)` (the compiled twin scans the buffer in C; same result and ValueError)."""
    return arr.index(value, lo, hi)
