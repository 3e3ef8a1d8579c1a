"""MQTT 3.1.1 packets (layer 1, sans-IO): framing, decoding and encoding, and topic <-> subject.

Used by jsedge.routing.mqtt (the `mqtt {}` listener). Pure Python: MQTT devices publish a few
messages a second each, so this is not a compiled hot path (the NATS side of an MQTT message --
subject matching and delivery -- is, once a PUBLISH is decoded).

Framing (MQTT 3.1.1 §2): a fixed header byte (type << 4 | flags), the remaining length as 1-4
base-128 bytes, then the packet. `Reader.feed()` returns complete packets as (type, flags, body);
a length longer than 4 bytes, or a packet over `max_size`, raises `MQTTError`. Decoders raise
`MQTTError` with nats-server's wording for what they refuse; the connection logs it and closes
(MQTT has no error packet).

Topics: `topic_to_subject` / `subject_to_topic` (nats-server's conversion rules, in their
docstrings). A filter `a/#` also matches `a` itself (MQTT's parent rule): the caller subscribes to
both `a` and `a.>`.
"""

from __future__ import annotations

import struct

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}

# CONNACK return codes (MQTT 3.1.1 §3.2.2.3)
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_CREDENTIALS = 4
NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80

#: MQTT's largest remaining length (4 length bytes)
MAX_REMAINING = 268_435_455

PINGRESP_PACKET = b"\xd0\x00"


class MQTTError(Exception):
    """A packet jsedge refuses: the connection is closed (the text is logged)."""


class Reader:
    """Splits a byte stream into packets. `feed()` returns [(type, flags, body)] for the complete
    ones; a partial packet waits for more bytes. A malformed length stops the stream: the packets
    before it are returned and `error` is set (the caller handles them, then closes)."""

    __slots__ = ("buf", "max_size", "error")

    def __init__(self, max_size: int = MAX_REMAINING) -> None:
        self.buf = bytearray()
        self.max_size = max_size
        self.error: MQTTError | None = None

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self.buf
        if self.error is not None:
            return []
        buf += data
        packets: list[tuple[int, int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            length = 0
            multiplier = 1
            i = pos + 1
            complete = False
            for _ in range(4):
                if i >= end:
                    break
                byte = buf[i]
                i += 1
                length += (byte & 0x7F) * multiplier
                multiplier *= 128
                if not byte & 0x80:
                    complete = True
                    break
            else:
                self.error = MQTTError("malformed variable int")
                break
            if not complete:
                break  # the length bytes are not all here yet
            if length > self.max_size:
                self.error = MQTTError(f"maximum payload exceeded: {length} vs {self.max_size}")
                break
            if end - i < length:
                break
            first = buf[pos]
            packets.append((first >> 4, first & 0x0F, bytes(buf[i : i + length])))
            pos = i + length
        if pos:
            del buf[:pos]
        return packets


# ---------------------------------------------------------------------------- field helpers


class Body:
    """A cursor over a packet body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise MQTTError(f"error reading {what}: unexpected EOF")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint16(self, what: str) -> int:
        if len(self.data) - self.pos < 2:
            raise MQTTError(f"error reading {what}: unexpected EOF")
        value: int = struct.unpack_from(">H", self.data, self.pos)[0]
        self.pos += 2
        return value

    def binary(self, what: str) -> bytes:
        size = self.uint16(what)
        if len(self.data) - self.pos < size:
            raise MQTTError(f"error reading {what}: unexpected EOF")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(raw)) + raw


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte = length % 128
        length //= 128
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _remaining(len(body)) + body


# ---------------------------------------------------------------------------- CONNECT


class Connect:
    __slots__ = (
        "protocol",
        "level",
        "clean",
        "keepalive",
        "client_id",
        "will_topic",
        "will_message",
        "will_qos",
        "will_retain",
        "username",
        "password",
    )

    def __init__(self) -> None:
        self.protocol = ""
        self.level = 0
        self.clean = True
        self.keepalive = 0
        self.client_id = ""
        self.will_topic: bytes | None = None
        self.will_message = b""
        self.will_qos = 0
        self.will_retain = False
        self.username: str | None = None
        self.password: bytes | None = None


class ConnectRefused(Exception):
    """A CONNECT answered with a CONNACK return code (then the connection closes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def decode_connect(flags: int, data: bytes) -> Connect:
    """The CONNECT packet (§3.1), checked as nats-server checks it (mqttParseConnect):
    `MQTTError` closes the connection without a CONNACK, `ConnectRefused` answers with one."""
    body = Body(data)
    c = Connect()
    name = body.binary("protocol name")
    if name != b"MQTT":
        if name == b"MQIsdp":
            raise MQTTError('older protocol "MQIsdp" not supported')
        raise MQTTError(f'expected connect packet with protocol name "MQTT", got {_go_quote(name)}')
    c.protocol = "MQTT"
    c.level = body.byte("protocol level")
    if c.level != 4:
        raise ConnectRefused(UNACCEPTABLE_PROTOCOL, f"unacceptable protocol version of {c.level}")
    cflags = body.byte("flags")
    if cflags & 0x01:
        raise MQTTError("connect flags reserved bit not set to 0")
    c.clean = bool(cflags & 0x02)
    will = bool(cflags & 0x04)
    c.will_qos = (cflags >> 3) & 0x03
    c.will_retain = bool(cflags & 0x20)
    if not will:
        if c.will_qos:
            raise MQTTError(f"if Will flag is set to 0, Will QoS must be 0 too, got {c.will_qos}")
        if c.will_retain:
            raise MQTTError("if Will flag is set to 0, Will Retain flag must be 0 too")
    elif c.will_qos == 3:
        raise MQTTError("if Will flag is set to 1, Will QoS can be 0, 1 or 2, got 3")
    has_password = bool(cflags & 0x40)
    has_user = bool(cflags & 0x80)
    if has_password and not has_user:
        raise MQTTError("password flag set but username flag is not")
    c.keepalive = body.uint16("keep alive")
    raw_id = body.binary("client ID")
    c.client_id = _checked_text(raw_id, "client ID", IDENTIFIER_REJECTED)
    if will:
        c.will_topic = body.binary("Will topic")
        _checked_text(c.will_topic, "Will topic", 0)
        c.will_message = body.binary("Will message")
    if has_user:
        raw_user = body.binary("user name")
        if not raw_user:
            raise ConnectRefused(BAD_CREDENTIALS, "empty user name not allowed")
        c.username = _checked_text(raw_user, "user name", BAD_CREDENTIALS)
    if has_password:
        c.password = body.binary("password")
    return c


def _checked_text(raw: bytes, field: str, code: int) -> str:
    """nats-server's mqttValidateString: UTF-8 without NUL (`code` 0: close without CONNACK)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        problem = f"invalid utf8 for {field} {_go_quote(raw)}"
    else:
        if "\x00" not in text:
            return text
        problem = f"invalid null character in {field} {_go_quote(raw)}"
    if code:
        raise ConnectRefused(code, problem)
    raise MQTTError(problem)


def encode_connack(session_present: bool, code: int) -> bytes:
    return bytes([CONNACK << 4, 2, 1 if session_present and code == ACCEPTED else 0, code])


# ---------------------------------------------------------------------------- PUBLISH


class Publish:
    __slots__ = ("topic", "subject", "qos", "retain", "dup", "pid", "payload")

    def __init__(
        self, topic: bytes, subject: bytes, qos: int, retain: bool, dup: bool, pid: int, payload: bytes
    ) -> None:
        self.topic = topic
        self.subject = subject
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.pid = pid
        self.payload = payload


def decode_publish(flags: int, data: bytes) -> Publish:
    """A PUBLISH, checked as nats-server checks it (mqttParsePub; the DUP flag is not)."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MQTTError("QoS=3 is invalid in MQTT")
    body = Body(data)
    topic = body.binary("topic")
    if not topic:
        raise MQTTError("topic cannot be empty")
    _checked_text(topic, "topic", 0)
    try:
        subject = topic_to_subject(topic)
    except TopicError as problem:
        raise MQTTError(str(problem)) from None
    pid = 0
    if qos:
        pid = body.uint16("packet identifier")
        if pid == 0:
            raise MQTTError(f"with QoS={qos}, packet identifier cannot be 0")
    return Publish(topic, subject, qos, bool(flags & 0x01), bool(flags & 0x08), pid, body.rest())


def encode_publish(
    topic: bytes, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False, dup: bool = False
) -> bytes:
    flags = (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = _string(topic)
    if qos:
        body += struct.pack(">H", pid)
    return packet(PUBLISH, flags, body + payload)


def decode_pid(kind: int, flags: int, data: bytes) -> int:
    """PUBACK / PUBREC / PUBREL / PUBCOMP: the packet identifier (flags and length are checked
    before, by the caller)."""
    if len(data) < 2:
        raise MQTTError("error reading packet identifier: unexpected EOF")
    pid: int = struct.unpack_from(">H", data)[0]
    if pid == 0:
        raise MQTTError("packet identifier cannot be 0")
    return pid


def encode_pid(kind: int, pid: int) -> bytes:
    return bytes([kind << 4 | (2 if kind == PUBREL else 0), 2]) + struct.pack(">H", pid)


# ---------------------------------------------------------------------------- SUBSCRIBE


def decode_subscribe(flags: int, data: bytes) -> tuple[int, list[tuple[bytes, int]]]:
    """(packet id, [(topic filter, requested QoS)])."""
    if flags != 2:
        raise MQTTError(f"invalid flags for SUBSCRIBE packet: {flags:x}")
    body = Body(data)
    pid = body.uint16("packet identifier")
    if pid == 0:
        raise MQTTError("packet identifier cannot be 0")
    filters: list[tuple[bytes, int]] = []
    while body.remaining():
        topic = body.binary("topic filter")
        if not topic:
            raise MQTTError("topic filter cannot be empty")
        _checked_text(topic, "topic filter", 0)
        qos = body.byte("QoS")
        if qos > 2:
            raise MQTTError(f"subscribe QoS value must be 0, 1 or 2, got {qos}")
        filters.append((topic, qos))
    if not filters:
        raise MQTTError("subscribe protocol must contain at least 1 topic filter")
    return pid, filters


def encode_suback(pid: int, codes: list[int]) -> bytes:
    return packet(SUBACK, 0, struct.pack(">H", pid) + bytes(codes))


def decode_unsubscribe(flags: int, data: bytes) -> tuple[int, list[bytes]]:
    if flags != 2:
        raise MQTTError(f"invalid flags for UNSUBSCRIBE packet: {flags:x}")
    body = Body(data)
    pid = body.uint16("packet identifier")
    if pid == 0:
        raise MQTTError("packet identifier cannot be 0")
    filters: list[bytes] = []
    while body.remaining():
        topic = body.binary("topic filter")
        if not topic:
            raise MQTTError("topic filter cannot be empty")
        _checked_text(topic, "topic filter", 0)
        filters.append(topic)
    if not filters:
        raise MQTTError("unsubscribe protocol must contain at least 1 topic filter")
    return pid, filters


def encode_unsuback(pid: int) -> bytes:
    return bytes([UNSUBACK << 4, 2]) + struct.pack(">H", pid)


# ---------------------------------------------------------------------------- topics


class TopicError(ValueError):
    pass


_UNSUPPORTED = frozenset(b" \t\n\r\f\x7f")


_TO_SUBJECT: dict[bytes, bytes] = {}
_TO_TOPIC: dict[bytes, bytes] = {}
#: entries each conversion cache keeps (emptied when full: devices publish on few topics)
_CACHE_SIZE = 4096


def topic_to_subject(topic: bytes, *, wildcards: bool = False) -> bytes:
    """An MQTT topic name (or, with `wildcards`, a topic filter) as a NATS subject, the way
    nats-server converts it: `/` -> `.`, except that an empty level becomes `/` (a leading `/` gives
    `/.`, a doubled or trailing one `./`); `.` -> `//`; `+` -> `*` and `#` -> `>` in filters;
    whitespace and DEL are refused. `TopicError` carries nats-server's reason."""
    if not wildcards:
        cached = _TO_SUBJECT.get(topic)
        if cached is not None:
            return cached
        subject = _convert(topic, False)
        if len(_TO_SUBJECT) >= _CACHE_SIZE:
            _TO_SUBJECT.clear()
        _TO_SUBJECT[topic] = subject
        return subject
    return _convert(topic, True)


def _convert(topic: bytes, wildcards: bool) -> bytes:
    if b"/" not in topic and b"." not in topic and b"+" not in topic and b"#" not in topic:
        if _UNSUPPORTED.isdisjoint(topic):
            return topic
    out = bytearray()
    end = len(topic) - 1
    for i, char in enumerate(topic):
        if char == 0x2F:  # "/"
            if i == 0 or out[-1] == 0x2E:
                out += b"/."
            elif i == end or topic[i + 1] == 0x2F:
                out += b"./"
            else:
                out += b"."
        elif char in _UNSUPPORTED:
            raise TopicError("character not supported for MQTT topics")
        elif char == 0x2E:  # "."
            out += b"//"
        elif char in (0x2B, 0x23):  # "+", "#"
            if not wildcards:
                raise TopicError(f"wildcards not allowed in publish's topic: {_go_quote(topic)}")
            out.append(0x2A if char == 0x2B else 0x3E)
        else:
            out.append(char)
    if out and out[-1] == 0x2E:
        out += b"/"
    return bytes(out)


def subject_to_topic(subject: bytes) -> bytes:
    """A NATS subject as the MQTT topic its message is delivered with (the reverse of
    `topic_to_subject`: `./` and `/.` are an empty level, `//` a dot, `.` a level separator)."""
    cached = _TO_TOPIC.get(subject)
    if cached is not None:
        return cached
    topic = _to_topic(subject)
    if len(_TO_TOPIC) >= _CACHE_SIZE:
        _TO_TOPIC.clear()
    _TO_TOPIC[subject] = topic
    return topic


def _to_topic(subject: bytes) -> bytes:
    if b"/" not in subject:
        return subject.replace(b".", b"/")
    out = bytearray()
    i = 0
    end = len(subject) - 1
    while i <= end:
        char = subject[i]
        if char == 0x2F:
            if i < end and subject[i + 1] in (0x2E, 0x2F):
                out.append(0x2F if subject[i + 1] == 0x2E else 0x2E)
                i += 1
        elif char == 0x2E:
            out.append(0x2F)
        else:
            out.append(char)
        i += 1
    return bytes(out)


def _go_quote(raw: bytes) -> str:
    import json

    return json.dumps(raw.decode(errors="replace"), ensure_ascii=False)


__all__ = [
    "Connect",
    "ConnectRefused",
    "MQTTError",
    "Publish",
    "Reader",
    "TopicError",
    "decode_connect",
    "decode_pid",
    "decode_publish",
    "decode_subscribe",
    "decode_unsubscribe",
    "encode_connack",
    "encode_pid",
    "encode_publish",
    "encode_suback",
    "encode_unsuback",
    "packet",
    "subject_to_topic",
    "topic_to_subject",
]
