"""Reading S2 streams (layer 3): nats-server's snapshot archives are a tar inside an S2 stream.

S2 (github.com/klauspost/compress/s2) extends Snappy: the same framing (chunks of ``type(1)
length(3, little endian) body``, the stream identifier chunk ``0xff`` with ``S2sTwO`` or Snappy's
``sNaPpY``, compressed ``0x00`` and uncompressed ``0x01`` chunks whose body starts with a masked
CRC-32C of the decoded data, padding ``0xfe`` and skippable ``0x80``–``0xfd`` chunks) and the same
block tags (literal, copy with 1-, 2- and 4-byte offsets), plus one addition: a 1-byte-offset copy
whose offset is 0 repeats the previous copy's offset, with a longer length encoding. No maintained
Python package decodes S2 (cramjam has Snappy, not S2), and decoding is small, so it is ours. It is
not a hot path (a restore reads each archive once), so there is no compiled twin; literals and
copies are slices, so the cost is per tag, not per byte.

The CRC of each chunk is not checked when reading (CRC-32C is not in the standard library and would
cost more than the decoding); a damaged archive still fails on a malformed tag, a length that does
not add up, or the archive's own checks after it.

Writing (`compress_stream`) makes a Snappy framed stream, which S2 readers (nats-server's restore)
accept: cramjam's framed Snappy encoder (CRCs included) where cramjam is installed, else chunks
stored uncompressed with a CRC-32C of our own (slow, but only on platforms without cramjam).

Layer 3: stdlib, and cramjam when present.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

#: The first bytes of an S2 stream (stream identifier chunk) and of a Snappy framed stream.
S2_MAGIC = b"\xff\x06\x00\x00S2sTwO"
SNAPPY_MAGIC = b"\xff\x06\x00\x00sNaPpY"
#: Largest decoded size of one chunk S2 writes (4 MiB blocks); a larger claim is corruption.
MAX_BLOCK = 4 << 20


class S2Error(ValueError):
    """The data is not a well-formed S2 (or Snappy framed) stream."""


def is_s2_stream(head: bytes) -> bool:
    return head.startswith(S2_MAGIC) or head.startswith(SNAPPY_MAGIC)


def decode_block(src: bytes) -> bytes:
    """Decode one S2 (or Snappy) block: a uvarint of the decoded length, then tags."""
    n = len(src)
    want = shift = s = 0
    while True:
        if s >= n or shift > 28:
            raise S2Error("bad block length")
        b = src[s]
        s += 1
        want |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    if want > MAX_BLOCK:
        raise S2Error("block too large")
    out = bytearray()
    offset = 0
    while s < n:
        tag = src[s]
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length < 60:
                s += 1
            else:
                extra = length - 59
                if s + 1 + extra > n:
                    raise S2Error("truncated literal")
                length = int.from_bytes(src[s + 1 : s + 1 + extra], "little")
                s += 1 + extra
            length += 1
            if s + length > n:
                raise S2Error("truncated literal")
            out += src[s : s + length]
            s += length
            continue
        if kind == 1:  # copy, 1-byte offset (offset 0: repeat the last offset)
            if s + 2 > n:
                raise S2Error("truncated copy")
            code = (tag >> 2) & 7
            toffset = ((tag & 0xE0) << 3) | src[s + 1]
            s += 2
            if toffset == 0:
                if code == 5:
                    if s + 1 > n:
                        raise S2Error("truncated repeat")
                    length = src[s] + 4
                    s += 1
                elif code == 6:
                    if s + 2 > n:
                        raise S2Error("truncated repeat")
                    length = int.from_bytes(src[s : s + 2], "little") + (1 << 8)
                    s += 2
                elif code == 7:
                    if s + 3 > n:
                        raise S2Error("truncated repeat")
                    length = int.from_bytes(src[s : s + 3], "little") + (1 << 16)
                    s += 3
                else:
                    length = code
            else:
                offset = toffset
                length = code
            length += 4
        elif kind == 2:  # copy, 2-byte offset
            if s + 3 > n:
                raise S2Error("truncated copy")
            length = (tag >> 2) + 1
            offset = src[s + 1] | (src[s + 2] << 8)
            s += 3
        else:  # copy, 4-byte offset
            if s + 5 > n:
                raise S2Error("truncated copy")
            length = (tag >> 2) + 1
            offset = int.from_bytes(src[s + 1 : s + 5], "little")
            s += 5
        have = len(out)
        if offset <= 0 or offset > have:
            raise S2Error("copy offset out of range")
        if len(out) + length > want:
            raise S2Error("block longer than declared")
        start = have - offset
        if offset >= length:
            out += out[start : start + length]
        else:  # overlapping: the last `offset` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    if len(out) != want:
        raise S2Error("block shorter than declared")
    return bytes(out)


def iter_stream(handle: BinaryIO) -> Iterator[bytes]:
    """The decoded data of an S2 (or Snappy framed) stream, chunk by chunk."""
    first = True
    while True:
        head = handle.read(4)
        if not head:
            if first:
                raise S2Error("empty stream")
            return
        if len(head) < 4:
            raise S2Error("truncated chunk header")
        kind = head[0]
        size = int.from_bytes(head[1:4], "little")
        body = handle.read(size)
        if len(body) < size:
            raise S2Error("truncated chunk")
        if first:
            if kind != 0xFF or body not in (b"S2sTwO", b"sNaPpY"):
                raise S2Error("not an S2 stream")
            first = False
            continue
        if kind == 0x00:
            if size < 4:
                raise S2Error("short compressed chunk")
            yield decode_block(body[4:])
        elif kind == 0x01:
            if size < 4:
                raise S2Error("short uncompressed chunk")
            yield body[4:]
        elif kind == 0xFF:
            if body not in (b"S2sTwO", b"sNaPpY"):
                raise S2Error("bad stream identifier")
        elif kind < 0x80:
            raise S2Error(f"unskippable chunk type {kind:#x}")
        # 0x80-0xfe: skippable (padding, S2's index): ignored


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE: list[int] = []


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the Snappy framing format uses it."""
    if not _CRC_TABLE:
        _CRC_TABLE.extend(_crc32c_table())
    table = _CRC_TABLE
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def compress_stream(data: bytes) -> bytes:
    """`data` as a Snappy framed stream (readable by S2 and Snappy stream readers)."""
    try:
        import cramjam
    except ImportError:
        return _stored_stream(data)
    return bytes(cramjam.snappy.compress(data)) or SNAPPY_MAGIC  # (nothing at all for no data)


def _stored_stream(data: bytes) -> bytes:
    """A Snappy framed stream of uncompressed chunks (no codec needed, CRCs our own)."""
    out = [SNAPPY_MAGIC]
    for start in range(0, len(data), 65536):
        chunk = data[start : start + 65536]
        out.append(bytes((0x01,)) + (len(chunk) + 4).to_bytes(3, "little"))
        out.append(_masked(crc32c(chunk)).to_bytes(4, "little"))
        out.append(chunk)
    return b"".join(out)


class S2Reader:
    """A read-only file object over the decoded stream (for `tarfile.open(fileobj=..., mode="r|")`)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._chunks = iter_stream(handle)
        self._buf = b""
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        parts = []
        want = size if size >= 0 else 1 << 62
        while want > 0:
            if self._pos >= len(self._buf):
                try:
                    self._buf = next(self._chunks)
                except StopIteration:
                    break
                self._pos = 0
            take = self._buf[self._pos : self._pos + want]
            self._pos += len(take)
            want -= len(take)
            parts.append(take)
        return b"".join(parts)


__all__ = [
    "S2_MAGIC",
    "SNAPPY_MAGIC",
    "S2Error",
    "S2Reader",
    "compress_stream",
    "crc32c",
    "decode_block",
    "is_s2_stream",
    "iter_stream",
]
