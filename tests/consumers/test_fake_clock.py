"""Consumer timing logic with an injected clock: ack_wait, backoff, NAK delay, max_deliver,
inactive_threshold. No sockets: a fake server routes through a real account sublist."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jsedge.jetstream.consumers import create_consumer
from jsedge.jetstream.models import NS, ConsumerConfig, StreamConfig
from jsedge.routing.account import Account
from jsedge.routing.sublist import Subscription, deliver_as
from jsedge.store.base import StorageType, StoreConfig
from jsedge.store.memstore import MemStore

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000 * NS

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * NS)


def FakeAccount() -> Account:
    return Account("$G")


class FakeServer:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sent: list[tuple[bytes, bytes, bytes]] = []
        self.pending: list[Any] = []
        self._flush_scheduled = True

        class Log:
            def error(self, text: str) -> None:
                raise AssertionError(text)

        self.logger = Log()

    def send_internal(self, account, subject, reply, hdr, data):
        self.sent.append((subject, hdr, data))
        return 1

    def send_internal_as(self, account, subject, shown, reply, hdr, data):
        # The real router primitive, into the account's sublist (no sockets: flushed by the test).
        if hdr:
            return deliver_as(account.sublist, None, subject, shown, reply, len(hdr), hdr + data)
        return deliver_as(account.sublist, None, subject, shown, reply, -1, data)

    def subscribe_internal(self, account, subject, callback, queue=None, *, routed=True):
        sub = Subscription(None, subject, b"", queue, 0, callback)
        account.subscribe(sub, routed=routed)
        return sub

    def unsubscribe_internal(self, account, sub):
        account.unsubscribe(sub)


class FakeHost:
    domain = ""

    def __init__(self, server, account) -> None:
        self.server = server
        self.account = account
        self.streams: dict[str, Any] = {}

    def limit(self, name, replicas=None):
        return -1


class FakeStream:
    def __init__(self, server, account) -> None:
        self.name = "S"
        self.server = server
        self.account = account
        self.host = FakeHost(server, account)
        self.host.streams["S"] = self
        self.config = StreamConfig(name="S", subjects=["s.>"], max_consumers=-1)
        self.store = MemStore(StoreConfig(name="S", storage=StorageType.MEMORY))
        self.consumers: dict[str, Any] = {}

    def publish(self, subject: bytes, data: bytes, ts: int) -> None:
        seq = self.store.store_msg(subject, b"", data, ts)
        for consumer in list(self.consumers.values()):
            consumer.on_stored(seq, subject)


@pytest.fixture
async def env():
    server = FakeServer()
    account = FakeAccount()
    stream = FakeStream(server, account)
    clock = Clock()
    received: list[tuple[bytes, bytes]] = []

    def inbox(sub, src, subject, reply, hdr_len, msg):
        received.append((subject, reply))

    server.subscribe_internal(account, b"_INBOX.>", inbox)
    return stream, clock, received


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def dc_of(reply: bytes) -> int:
    return int(reply.split(b".")[4])


async def pull(consumer, n: int = 10) -> None:
    consumer.process_pull(b"_INBOX.r", b'{"batch":%d,"expires":%d}' % (n, 3600 * NS))
    await settle()


async def test_ack_wait_redelivery(env):
    stream, clock, received = env
    stream.publish(b"s.a", b"x", clock())
    c = create_consumer(stream, ConsumerConfig(durable_name="d", ack_policy="explicit", ack_wait=2 * NS), now=clock)
    await pull(c, 1)
    assert [dc_of(r) for _, r in received] == [1]
    clock.advance(1.9)
    c.check_pending()
    assert not c.rdq
    clock.advance(0.1)
    c.check_pending()
    assert c.rdq == [1]
    await pull(c, 1)
    assert [dc_of(r) for _, r in received] == [1, 2]
    info = c.info()
    assert (info["delivered"]["consumer_seq"], info["num_redelivered"], info["num_ack_pending"]) == (2, 1, 1)


async def test_backoff_schedule(env):
    stream, clock, received = env
    stream.publish(b"s.a", b"x", clock())
    config = ConsumerConfig(durable_name="d", ack_policy="explicit", backoff=[1 * NS, 3 * NS], max_deliver=5)
    c = create_consumer(stream, config, now=clock)
    assert c.config.ack_wait == NS
    deliveries = []
    for _ in range(4):
        await pull(c, 1)
        deliveries.append(clock())
        # find when it becomes due again
        waited = 0.0
        while not c.rdq:
            clock.advance(0.5)
            waited += 0.5
            c.check_pending()
        if len(deliveries) < 4:
            deliveries[-1] = waited
    assert deliveries[:3] == [1.0, 3.0, 3.0]


async def test_nak_delay_and_progress(env):
    stream, clock, received = env
    stream.publish(b"s.a", b"x", clock())
    c = create_consumer(stream, ConsumerConfig(durable_name="d", ack_policy="explicit", ack_wait=10 * NS), now=clock)
    await pull(c, 1)
    reply = received[-1][1]
    tokens = reply.split(b".")[4:7]
    c.process_ack(tokens, b"", b'-NAK {"delay":3000000000}')
    clock.advance(2.9)
    c.check_pending()
    assert not c.rdq
    clock.advance(0.1)
    c.check_pending()
    assert c.rdq == [1]
    await pull(c, 1)
    tokens = received[-1][1].split(b".")[4:7]
    clock.advance(9)
    c.process_ack(tokens, b"", b"+WPI")
    clock.advance(9)
    c.check_pending()
    assert not c.rdq
    c.process_ack(tokens, b"", b"+ACK")
    assert c.info()["num_ack_pending"] == 0 and c.info()["ack_floor"]["stream_seq"] == 1


async def test_max_deliver_retires(env):
    stream, clock, received = env
    stream.publish(b"s.a", b"x", clock())
    c = create_consumer(
        stream, ConsumerConfig(durable_name="d", ack_policy="explicit", ack_wait=NS, max_deliver=2), now=clock
    )
    await pull(c, 1)
    clock.advance(1)
    c.check_pending()
    await pull(c, 1)
    clock.advance(1)
    c.check_pending()
    assert not c.rdq and not c.pending
    assert any(s.startswith(b"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES") for s, _, _ in stream.server.sent) is False
    # (advisories only go out when someone listens: nobody subscribed here)


async def test_inactive_threshold_pull(env):
    stream, clock, received = env
    c = create_consumer(stream, ConsumerConfig(ack_policy="explicit", inactive_threshold=5 * NS), now=clock)
    assert c.name in stream.consumers
    clock.advance(4)
    c._inactivity_tick()
    assert c.name in stream.consumers
    clock.advance(1.1)
    c._inactivity_tick()
    assert c.name not in stream.consumers


async def test_request_expiry_and_heartbeat_statuses(env):
    stream, clock, received = env
    c = create_consumer(stream, ConsumerConfig(durable_name="d", ack_policy="explicit"), now=clock)
    c.process_pull(b"_INBOX.r", b'{"batch":2,"expires":2000000000,"idle_heartbeat":500000000}')
    clock.advance(0.5)
    c._process_waiting(clock())
    assert stream.server.sent[-1] == (
        b"_INBOX.r",
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 0\r\n\r\n",
        b"",
    )
    clock.advance(1.5)
    c._process_waiting(clock())
    assert stream.server.sent[-1][1] == (
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 2\r\nNats-Pending-Bytes: 0\r\n\r\n"
    )
    assert c.num_waiting() == 0
