"""The MQTT packet codec and topic conversion (jsedge.protocol.mqtt): nats-server's conversion
table, framing split at every byte, malformed lengths, and round trips (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jsedge.protocol import mqtt as P

pytestmark = pytest.mark.timeout(60)

# (MQTT topic or filter, NATS subject): nats-server's own conversion tables
CONVERSIONS = [
    (b"foo", b"foo"),
    (b"foo/bar", b"foo.bar"),
    (b"/", b"/./"),
    (b"//", b"/././"),
    (b"/foo", b"/.foo"),
    (b"//foo", b"/./.foo"),
    (b"foo/", b"foo./"),
    (b"bar//", b"bar././"),
    (b"/foo/bar/", b"/.foo.bar./"),
    (b"foo//bar", b"foo./.bar"),
    (b"foo///bar", b"foo././.bar"),
    (b".", b"//"),
    (b"./", b"//./"),
    (b"foo.bar/baz", b"foo//bar.baz"),
    (b"foo../bar/.", b"foo////.bar.//"),
    (b"//.foo.//", b"/././/foo//././"),
    (b"$SYS/foo", b"$SYS.foo"),
]

FILTERS = [
    (b"+", b"*"),
    (b"#", b">"),
    (b"/+/", b"/.*./"),
    (b"foo//+//bar", b"foo./.*./.bar"),
    (b"/#", b"/.>"),
    (b"foo/bar.baz/#", b"foo.bar//baz.>"),
    (b"foo*/bar", b"foo*.bar"),
]


@pytest.mark.parametrize(("topic", "subject"), CONVERSIONS)
def test_topic_conversion_both_ways(topic: bytes, subject: bytes) -> None:
    assert P.topic_to_subject(topic) == subject
    assert P.subject_to_topic(subject) == topic


@pytest.mark.parametrize(("topic", "subject"), FILTERS)
def test_filter_conversion(topic: bytes, subject: bytes) -> None:
    assert P.topic_to_subject(topic, wildcards=True) == subject


@pytest.mark.parametrize("topic", [b"a b", b"a\tb", b"x\x7f"])
def test_unsupported_characters(topic: bytes) -> None:
    with pytest.raises(P.TopicError, match="character not supported for MQTT topics"):
        P.topic_to_subject(topic, wildcards=True)


def test_wildcards_refused_in_topic_names() -> None:
    with pytest.raises(P.TopicError, match="wildcards not allowed in publish's topic"):
        P.topic_to_subject(b"a/+")


def test_nats_subjects_with_a_lone_slash_lose_it() -> None:
    # nats-server drops a `/` that is neither `/.` nor `//` when it makes a topic of a subject
    assert P.subject_to_topic(b"foo/bar") == b"foobar"
    assert P.subject_to_topic(b"_INBOX.x") == b"_INBOX/x"


_TOPIC_CHARS = st.sampled_from(list(b"ab$_-/.xyz09"))


@given(st.lists(_TOPIC_CHARS, min_size=1, max_size=24).map(bytes))
def test_topic_round_trip(topic: bytes) -> None:
    assert P.subject_to_topic(P.topic_to_subject(topic)) == topic


def test_reader_framing_at_every_split() -> None:
    stream = (
        P.encode_publish(b"a/b", b"x" * 200, 1, 7)
        + P.PINGRESP_PACKET
        + P.encode_suback(3, [0, 1, 0x80])
        + P.encode_publish(b"t", b"", 0)
    )
    for cut in range(len(stream) + 1):
        reader = P.Reader()
        packets = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [(kind, flags) for kind, flags, _ in packets] == [(3, 2), (13, 0), (9, 0), (3, 0)]
        assert reader.error is None
    one_by_one = P.Reader()
    packets = []
    for byte in stream:
        packets += one_by_one.feed(bytes([byte]))
    assert len(packets) == 4


def test_reader_refuses_a_long_length_after_the_packets_before_it() -> None:
    reader = P.Reader()
    packets = reader.feed(b"\xc0\x00\x30\xff\xff\xff\xff\x01")
    assert packets == [(12, 0, b"")]
    assert str(reader.error) == "malformed variable int"
    assert reader.feed(b"\xc0\x00") == []


def test_reader_size_limit() -> None:
    reader = P.Reader(max_size=10)
    assert reader.feed(b"\x10\x0b" + b"x" * 11) == []
    assert str(reader.error) == "maximum payload exceeded: 11 vs 10"


def test_publish_decode_and_encode() -> None:
    packet = P.encode_publish(b"a.b/c", b"payload", 2, 99, retain=True, dup=True)
    reader = P.Reader()
    ((kind, flags, body),) = reader.feed(packet)
    pub = P.decode_publish(flags, body)
    assert (pub.topic, pub.subject, pub.qos, pub.pid, pub.retain, pub.dup, pub.payload) == (
        b"a.b/c",
        b"a//b.c",
        2,
        99,
        True,
        True,
        b"payload",
    )


@pytest.mark.parametrize(
    ("flags", "body", "error"),
    [
        (6, b"\x00\x01a\x00\x01", "QoS=3 is invalid in MQTT"),
        (0, b"\x00\x00", "topic cannot be empty"),
        (0, b"\x00\x01#", "wildcards not allowed in publish's topic"),
        (2, b"\x00\x01a\x00\x00", "with QoS=1, packet identifier cannot be 0"),
        (0, b"\x00\x02\xff\xfe", "invalid utf8 for topic"),
        (0, b"\x00\x05", "error reading topic: unexpected EOF"),
    ],
)
def test_publish_refusals(flags: int, body: bytes, error: str) -> None:
    with pytest.raises(P.MQTTError, match=error):
        P.decode_publish(flags, body)


def _connect(name: bytes = b"MQTT", level: int = 4, flags: int = 2, rest: bytes = b"\x00\x02id") -> bytes:
    return len(name).to_bytes(2, "big") + name + bytes([level, flags]) + b"\x00\x1e" + rest


def test_connect_fields() -> None:
    rest = b"\x00\x02id" + b"\x00\x03w/t" + b"\x00\x03bye" + b"\x00\x04user" + b"\x00\x02pw"
    c = P.decode_connect(0, _connect(flags=0xC0 | 0x20 | 0x08 | 0x04 | 0x02, rest=rest))
    assert (c.client_id, c.will_topic, c.will_message, c.will_qos, c.will_retain) == ("id", b"w/t", b"bye", 1, True)
    assert (c.username, c.password, c.keepalive, c.clean) == ("user", b"pw", 30, True)


@pytest.mark.parametrize(
    ("packet", "code", "error"),
    [
        (_connect(level=5), P.UNACCEPTABLE_PROTOCOL, "unacceptable protocol version of 5"),
        (_connect(name=b"MQIsdp", level=3), None, 'older protocol "MQIsdp" not supported'),
        (_connect(name=b"XX"), None, 'expected connect packet with protocol name "MQTT", got "XX"'),
        (_connect(flags=3), None, "connect flags reserved bit not set to 0"),
        (_connect(flags=0x0A), None, "if Will flag is set to 0, Will QoS must be 0 too, got 1"),
        (_connect(flags=0x22), None, "if Will flag is set to 0, Will Retain flag must be 0 too"),
        (_connect(flags=0x1E), None, "if Will flag is set to 1, Will QoS can be 0, 1 or 2, got 3"),
        (_connect(flags=0x42), None, "password flag set but username flag is not"),
        (_connect(flags=0x82, rest=b"\x00\x02id\x00\x00"), P.BAD_CREDENTIALS, "empty user name not allowed"),
        (_connect(rest=b"\x00\x02\xff\xff"), P.IDENTIFIER_REJECTED, "invalid utf8 for client ID"),
    ],
)
def test_connect_refusals(packet: bytes, code: int | None, error: str) -> None:
    expected = P.ConnectRefused if code is not None else P.MQTTError
    with pytest.raises(expected, match=error) as caught:
        P.decode_connect(0, packet)
    if code is not None:
        assert isinstance(caught.value, P.ConnectRefused) and caught.value.code == code


def test_subscribe_and_unsubscribe() -> None:
    pid, filters = P.decode_subscribe(2, b"\x00\x05\x00\x03a/#\x01\x00\x01+\x02")
    assert (pid, filters) == (5, [(b"a/#", 1), (b"+", 2)])
    pid, topics = P.decode_unsubscribe(2, b"\x00\x06\x00\x03a/#")
    assert (pid, topics) == (6, [b"a/#"])
    with pytest.raises(P.MQTTError, match="subscribe QoS value must be 0, 1 or 2, got 3"):
        P.decode_subscribe(2, b"\x00\x05\x00\x01a\x03")
    with pytest.raises(P.MQTTError, match="at least 1 topic filter"):
        P.decode_subscribe(2, b"\x00\x05")
    assert P.encode_suback(5, [1, 0x80]) == b"\x90\x04\x00\x05\x01\x80"
    assert P.encode_unsuback(6) == b"\xb0\x02\x00\x06"
    assert P.encode_connack(True, 0) == b"\x20\x02\x01\x00"
    assert P.encode_connack(True, 5) == b"\x20\x02\x00\x05"
