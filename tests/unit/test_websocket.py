"""The WebSocket frame codec (jsedge.routing.websocket), sans IO: any fragmentation of any message,
masked and split at any byte, decodes to the same payload; deflated messages inflate; server frames
decode back; malformed frames raise with nats-server's words."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsedge.routing.websocket import (
    FrameReader,
    ProtocolError,
    accept_key,
    close_payload,
    encode_frame,
)


def client_frame(opcode: int, payload: bytes, final: bool = True, rsv1: bool = False) -> bytes:
    key = os.urandom(4)
    first = (0x80 if final else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def fragments(opcode: int, payload: bytes, cuts: list[int], rsv1: bool = False) -> bytes:
    points = sorted({c % (len(payload) + 1) for c in cuts})
    pieces = [payload[a:b] for a, b in zip([0, *points], [*points, len(payload)], strict=True)]
    out = b""
    for i, piece in enumerate(pieces):
        out += client_frame(opcode if i == 0 else 0, piece, final=i == len(pieces) - 1, rsv1=rsv1 and i == 0)
    return out


def feed_in_chunks(reader: FrameReader, data: bytes, splits: list[int]) -> list[tuple[str, bytes]]:
    events = []
    points = sorted({s % (len(data) + 1) for s in splits})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        events += reader.feed(data[a:b])
    return events


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=70000),
    cuts=st.lists(st.integers(min_value=0, max_value=80000), max_size=4),
    splits=st.lists(st.integers(min_value=0, max_value=80000), max_size=6),
    ping=st.binary(max_size=125),
)
def test_fragmented_masked_messages_decode_whole(
    payload: bytes, cuts: list[int], splits: list[int], ping: bytes
) -> None:
    stream = client_frame(9, ping) + fragments(2, payload, cuts)
    events = feed_in_chunks(FrameReader(), stream, splits)
    assert events[0] == ("ping", ping)
    assert b"".join(value for kind, value in events if kind == "data") == payload


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=20000), cuts=st.lists(st.integers(min_value=0, max_value=30000), max_size=3))
def test_deflated_messages_inflate(payload: bytes, cuts: list[int]) -> None:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
    stream = fragments(2, body[:-4], cuts, rsv1=True)
    events = FrameReader(compress=True).feed(stream)
    assert b"".join(value for kind, value in events if kind == "data") == payload


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=20000), compress=st.booleans(), max_frame=st.sampled_from([0, 4096, 100]))
def test_server_frames_decode_back(payload: bytes, compress: bool, max_frame: int) -> None:
    data = encode_frame(2, payload, compress, max_frame)
    events = FrameReader(masked=False, compress=True).feed(data)
    assert b"".join(value for kind, value in events if kind == "data") == payload


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (bytes((0x82, 0x01)) + b"x", "mask bit missing"),
        (client_frame(3, b"x"), "unknown opcode 3"),
        (client_frame(9, b"x", final=False), "control frame does not have final bit set"),
        (client_frame(9, b"x" * 126), "control frame length bigger than maximum allowed of 125 bytes"),
        (client_frame(0, b"x"), "invalid continuation frame"),
        (client_frame(2, b"x", rsv1=True), "compressed frame received without negotiated permessage-deflate"),
        (client_frame(8, b"x"), "close frame payload cannot be 1 byte"),
        (client_frame(8, (999).to_bytes(2, "big")), "invalid close status code 999"),
        (client_frame(2, b"a", final=False) + client_frame(2, b"b"), "new message started before final frame"),
    ],
)
def test_malformed_frames(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        FrameReader().feed(frame)


def test_close_frames_and_keys() -> None:
    assert FrameReader().feed(client_frame(8, (1000).to_bytes(2, "big") + b"bye")) == [("close", (1000, "bye"))]
    assert FrameReader().feed(client_frame(8, b"")) == [("close", (1005, ""))]
    assert close_payload(1002, "x" * 200)[-3:] == b"..." and len(close_payload(1002, "x" * 200)) == 125
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
