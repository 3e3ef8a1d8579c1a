"""Push and ordered consumers through nats-py, on jsedge and on nats-server."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import acheck_for
from nats.js.api import AckPolicy, ConsumerConfig

pytestmark = pytest.mark.timeout(30)


async def test_push_subscribe_shows_stored_subject(nc):
    js = nc.jetstream()
    await js.add_stream(name="PS", subjects=["ps.>"])
    for i in range(3):
        await js.publish(f"ps.{i}", f"m{i}".encode(), headers={"H": str(i)})
    sub = await js.subscribe("ps.>", durable="p1", manual_ack=True)
    got = []
    for _ in range(3):
        msg = await sub.next_msg(timeout=2)
        got.append((msg.subject, msg.data, msg.headers["H"]))
        await msg.ack()
    assert got == [("ps.0", b"m0", "0"), ("ps.1", b"m1", "1"), ("ps.2", b"m2", "2")]
    await js.publish("ps.9", b"later")
    assert (await sub.next_msg(timeout=2)).data == b"later"
    info = await js.consumer_info("PS", "p1")
    assert info.push_bound


async def test_push_queue_group(nc):
    js = nc.jetstream()
    await js.add_stream(name="PQ", subjects=["pq.>"])
    received: list[bytes] = []

    async def handler(msg):
        received.append(msg.data)
        await msg.ack()

    await js.subscribe("pq.>", queue="workers", durable="workers", cb=handler, stream="PQ")
    await js.subscribe("pq.>", queue="workers", durable="workers", cb=handler, stream="PQ")
    for i in range(20):
        await js.publish("pq.x", str(i).encode())
    await acheck_for(3, lambda: len(received) >= 20)
    await asyncio.sleep(0.1)
    assert sorted(received, key=int) == [str(i).encode() for i in range(20)]


async def test_ordered_consumer(nc):
    js = nc.jetstream()
    await js.add_stream(name="OC", subjects=["oc.>"])
    for i in range(50):
        await js.publish(f"oc.{i % 4}", str(i).encode())
    sub = await js.subscribe("oc.>", ordered_consumer=True)
    got = [int((await sub.next_msg(timeout=2)).data) for _ in range(50)]
    assert got == list(range(50))
    await js.publish("oc.x", b"50")
    assert (await sub.next_msg(timeout=2)).data == b"50"


async def test_headers_only_and_flow_control_heartbeat(nc):
    js = nc.jetstream()
    await js.add_stream(name="HO", subjects=["ho.>"])
    await js.publish("ho.a", b"1234")
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await js.add_consumer(
        "HO",
        ConsumerConfig(
            durable_name="h",
            deliver_subject=inbox,
            headers_only=True,
            ack_policy=AckPolicy.NONE,
            flow_control=True,
            idle_heartbeat=0.2,
        ),
    )
    msg = await sub.next_msg(timeout=2)
    assert msg.subject == "ho.a" and msg.data == b"" and msg.headers["Nats-Msg-Size"] == "4"
    assert msg.reply.startswith("$JS.ACK.HO.h.1.1.1.")
    beat = await sub.next_msg(timeout=2)
    assert beat.headers["Status"] == "100" and beat.headers["Description"] == "Idle Heartbeat"
    assert beat.headers["Nats-Last-Consumer"] == "1" and beat.headers["Nats-Last-Stream"] == "1"
    assert not beat.reply


async def test_push_ack_wait_redelivery(nc):
    js = nc.jetstream()
    await js.add_stream(name="PR", subjects=["pr.>"])
    await js.publish("pr.a", b"x")
    sub = await js.subscribe("pr.>", durable="r", manual_ack=True, config=ConsumerConfig(ack_wait=0.3))
    first = await sub.next_msg(timeout=2)
    second = await sub.next_msg(timeout=2)
    assert first.metadata.num_delivered == 1 and second.metadata.num_delivered == 2
    assert second.metadata.sequence.consumer == 2
    await second.ack_sync()
    info = await js.consumer_info("PR", "r")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_nak_and_term_advisories(nc):
    js = nc.jetstream()
    await js.add_stream(name="AD", subjects=["ad.>"])
    await js.publish("ad.a", b"1")
    await js.publish("ad.a", b"2")
    events = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.>")
    sub = await js.pull_subscribe("ad.>", durable="c1", stream="AD")
    first, second = await sub.fetch(2, timeout=1)
    await first.nak()
    await nc.publish(second.reply, b"+TERM bad payload")
    await nc.flush()
    seen = {}
    while "nak" not in seen or "terminated" not in seen:
        event = json.loads((await events.next_msg(timeout=2)).data)
        seen[event["type"].rsplit(".", 1)[1]] = event
    assert seen["nak"]["stream_seq"] == 1 and seen["nak"]["deliveries"] == 1
    assert seen["terminated"]["reason"] == "bad payload" and seen["terminated"]["stream_seq"] == 2
