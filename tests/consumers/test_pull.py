"""Pull consumers through nats-py, on jsedge and on nats-server (same test, both kinds).

Time-based checks use ack_wait/expires of 0.3-1 s and poll with deadlines (`acheck_for`).
"""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from helpers import acheck_for
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy
from nats.js.errors import NotFoundError

pytestmark = pytest.mark.timeout(30)


async def _stream(js, name="Q", subjects=("q.>",), count=0, **kw):
    await js.add_stream(name=name, subjects=list(subjects), **kw)
    for i in range(count):
        await js.publish(f"{subjects[0][:-1]}{i % 3}", f"m{i}".encode())


async def test_fetch_batch_and_info_counters(nc):
    js = nc.jetstream()
    await _stream(js, count=5)
    sub = await js.pull_subscribe("q.>", durable="pc", stream="Q")
    msgs = await sub.fetch(3, timeout=1)
    assert [m.data for m in msgs] == [b"m0", b"m1", b"m2"]
    meta = msgs[2].metadata
    assert (meta.sequence.stream, meta.sequence.consumer, meta.num_delivered, meta.num_pending) == (3, 3, 1, 2)
    info = await js.consumer_info("Q", "pc")
    assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (3, 3)
    assert info.num_ack_pending == 3 and info.num_pending == 2 and info.ack_floor.stream_seq == 0
    await msgs[0].ack_sync()
    await msgs[2].ack_sync()
    info = await js.consumer_info("Q", "pc")
    assert info.ack_floor.stream_seq == 1 and info.num_ack_pending == 1
    await msgs[1].ack_sync()
    info = await js.consumer_info("Q", "pc")
    assert (info.ack_floor.consumer_seq, info.ack_floor.stream_seq, info.num_ack_pending) == (3, 3, 0)


async def test_fetch_no_messages_times_out(nc):
    js = nc.jetstream()
    await _stream(js, count=1)
    sub = await js.pull_subscribe("q.>", durable="pc", stream="Q")
    assert len(await sub.fetch(5, timeout=1)) == 1
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await sub.fetch(1, timeout=0.5)


async def test_fetch_waits_for_late_message_and_heartbeat(nc):
    js = nc.jetstream()
    await _stream(js)
    sub = await js.pull_subscribe("q.>", durable="pc", stream="Q")

    async def later():
        await asyncio.sleep(0.3)
        await js.publish("q.x", b"late")

    task = asyncio.create_task(later())
    msgs = await sub.fetch(1, timeout=2, heartbeat=0.2)
    await task
    assert msgs[0].data == b"late"


async def test_nak_delay_wpi_term_and_redelivery(nc):
    js = nc.jetstream()
    await _stream(js, count=3)
    await js.add_consumer("Q", ConsumerConfig(durable_name="pc", ack_policy=AckPolicy.EXPLICIT, ack_wait=0.5))
    sub = await js.pull_subscribe_bind("pc", stream="Q")
    first = await sub.fetch(3, timeout=1)
    await first[0].nak()
    await first[1].nak(delay=0.4)
    await first[2].term()
    again = await sub.fetch(1, timeout=1)
    assert again[0].data == b"m0" and again[0].metadata.num_delivered == 2
    assert again[0].metadata.sequence.consumer == 4
    await again[0].in_progress()
    later = await sub.fetch(1, timeout=2)
    assert later[0].data == b"m1" and later[0].metadata.num_delivered == 2
    await later[0].ack_sync()
    await again[0].ack_sync()
    info = await js.consumer_info("Q", "pc")
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3


async def test_redelivery_after_ack_wait_counts(nc):
    js = nc.jetstream()
    await _stream(js, count=3)
    await js.add_consumer("Q", ConsumerConfig(durable_name="pc", ack_policy=AckPolicy.EXPLICIT, ack_wait=0.3))
    sub = await js.pull_subscribe_bind("pc", stream="Q")
    await sub.fetch(3, timeout=1)
    again = await sub.fetch(3, timeout=2)
    assert [m.metadata.num_delivered for m in again] == [2, 2, 2]
    info = await js.consumer_info("Q", "pc")
    assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (6, 3)
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (3, 3, 0)


async def test_max_deliver_advisory(nc):
    js = nc.jetstream()
    await _stream(js, count=1)
    advisories = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.Q.pc")
    await js.add_consumer(
        "Q", ConsumerConfig(durable_name="pc", ack_policy=AckPolicy.EXPLICIT, ack_wait=0.2, max_deliver=2)
    )
    sub = await js.pull_subscribe_bind("pc", stream="Q")
    await sub.fetch(1, timeout=1)
    await sub.fetch(1, timeout=1)
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await sub.fetch(1, timeout=0.5)
    event = json.loads((await advisories.next_msg(timeout=2)).data)
    assert event["type"] == "io.nats.jetstream.advisory.v1.max_deliver"
    assert (event["stream"], event["consumer"], event["stream_seq"], event["deliveries"]) == ("Q", "pc", 1, 2)

    async def retired():
        return (await js.consumer_info("Q", "pc")).num_ack_pending == 0

    await acheck_for(2, retired)


async def test_max_ack_pending_blocks_new(nc):
    js = nc.jetstream()
    await _stream(js, count=5)
    await js.add_consumer("Q", ConsumerConfig(durable_name="pc", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=2))
    sub = await js.pull_subscribe_bind("pc", stream="Q")
    msgs = await sub.fetch(5, timeout=0.5)
    assert len(msgs) == 2
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await sub.fetch(1, timeout=0.3)
    await msgs[0].ack_sync()
    more = await sub.fetch(5, timeout=0.5)
    assert [m.data for m in more] == [b"m2"]


async def test_ack_all_policy(nc):
    js = nc.jetstream()
    await _stream(js, count=5)
    await js.add_consumer("Q", ConsumerConfig(durable_name="pc", ack_policy=AckPolicy.ALL))
    sub = await js.pull_subscribe_bind("pc", stream="Q")
    msgs = await sub.fetch(5, timeout=1)
    await msgs[2].ack_sync()
    info = await js.consumer_info("Q", "pc")
    assert (info.ack_floor.stream_seq, info.num_ack_pending) == (3, 2)


async def test_deliver_policies(nc):
    js = nc.jetstream()
    await js.add_stream(name="LP", subjects=["lp.>"])
    for subject in ("lp.a", "lp.b", "lp.a", "lp.c", "lp.b"):
        await js.publish(subject, subject.encode())
    expectations = {
        "last": (DeliverPolicy.LAST, {}, [5], 4),
        "new": (DeliverPolicy.NEW, {}, [], 5),
        "seq": (DeliverPolicy.BY_START_SEQUENCE, {"opt_start_seq": 4}, [4, 5], 3),
        "lps": (DeliverPolicy.LAST_PER_SUBJECT, {"filter_subject": "lp.>"}, [3, 4, 5], 2),
    }
    for name, (policy, extra, seqs, start) in expectations.items():
        info = await js.add_consumer(
            "LP", ConsumerConfig(durable_name=name, deliver_policy=policy, ack_policy=AckPolicy.EXPLICIT, **extra)
        )
        assert info.delivered.stream_seq == start, name
        sub = await js.pull_subscribe_bind(name, stream="LP")
        got = []
        try:
            got = [m.metadata.sequence.stream for m in await sub.fetch(10, timeout=0.3)]
        except (TimeoutError, nats.errors.TimeoutError):
            pass
        assert got == seqs, name


async def test_filter_subjects_and_pending(nc):
    js = nc.jetstream()
    await _stream(js, count=6)
    await js.add_consumer(
        "Q", ConsumerConfig(durable_name="f", filter_subjects=["q.0", "q.2"], ack_policy=AckPolicy.EXPLICIT)
    )
    info = await js.consumer_info("Q", "f")
    assert info.num_pending == 4
    sub = await js.pull_subscribe_bind("f", stream="Q")
    msgs = await sub.fetch(10, timeout=0.5)
    assert [m.subject for m in msgs] == ["q.0", "q.2", "q.0", "q.2"]
    await js.publish("q.1", b"x")
    await js.publish("q.0", b"y")
    assert (await js.consumer_info("Q", "f")).num_pending == 1


async def test_interest_retention(nc):
    js = nc.jetstream()
    await js.add_stream(name="I", subjects=["i.>"], retention=RetentionPolicy.INTEREST)
    await js.add_consumer("I", ConsumerConfig(durable_name="c1", ack_policy=AckPolicy.EXPLICIT))
    await js.add_consumer("I", ConsumerConfig(durable_name="c2", filter_subject="i.a", ack_policy=AckPolicy.EXPLICIT))
    await js.publish("i.a", b"1")
    await js.publish("i.b", b"2")
    s1 = await js.pull_subscribe_bind("c1", stream="I")
    for m in await s1.fetch(2, timeout=1):
        await m.ack_sync()

    async def messages(n):
        return (await js.stream_info("I")).state.messages == n

    await acheck_for(2, lambda: messages(1))
    s2 = await js.pull_subscribe_bind("c2", stream="I")
    (m,) = await s2.fetch(1, timeout=1)
    await m.ack_sync()
    await acheck_for(2, lambda: messages(0))


async def test_workqueue_retention_and_rules(nc):
    js = nc.jetstream()
    await js.add_stream(name="W", subjects=["w.>"], retention=RetentionPolicy.WORK_QUEUE)
    await js.add_consumer("W", ConsumerConfig(durable_name="a", filter_subject="w.a", ack_policy=AckPolicy.EXPLICIT))
    with pytest.raises(nats.js.errors.BadRequestError) as err:
        await js.add_consumer(
            "W", ConsumerConfig(durable_name="b", filter_subject="w.>", ack_policy=AckPolicy.EXPLICIT)
        )
    assert err.value.err_code == 10100
    with pytest.raises(nats.js.errors.BadRequestError) as err:
        await js.add_consumer("W", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT))
    assert err.value.err_code == 10099
    await js.publish("w.a", b"job")
    sub = await js.pull_subscribe_bind("a", stream="W")
    (m,) = await sub.fetch(1, timeout=1)
    await m.ack_sync()

    async def empty():
        return (await js.stream_info("W")).state.messages == 0

    await acheck_for(2, empty)


async def test_delete_and_names_list(nc):
    js = nc.jetstream()
    await _stream(js)
    for name in ("b", "a", "c"):
        await js.add_consumer("Q", ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT))
    reply = json.loads((await nc.request("$JS.API.CONSUMER.NAMES.Q", b"")).data)
    assert reply["consumers"] == ["a", "b", "c"] and reply["total"] == 3
    listed = await js.consumers_info("Q")
    assert [c.name for c in listed] == ["a", "b", "c"]
    assert await js.delete_consumer("Q", "b")
    with pytest.raises(NotFoundError):
        await js.consumer_info("Q", "b")


async def test_pause_and_resume(nc):
    js = nc.jetstream()
    await _stream(js, count=1)
    await js.add_consumer("Q", ConsumerConfig(durable_name="pc", ack_policy=AckPolicy.EXPLICIT))
    future = "2099-01-01T00:00:00Z"
    reply = json.loads(
        (await nc.request("$JS.API.CONSUMER.PAUSE.Q.pc", json.dumps({"pause_until": future}).encode())).data
    )
    assert reply["paused"] is True and reply["pause_until"] == future and reply["pause_remaining"] > 0
    info = json.loads((await nc.request("$JS.API.CONSUMER.INFO.Q.pc", b"")).data)
    assert info["paused"] is True and info["config"]["pause_until"] == future
    sub = await js.pull_subscribe_bind("pc", stream="Q")
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await sub.fetch(1, timeout=0.3)
    reply = json.loads((await nc.request("$JS.API.CONSUMER.PAUSE.Q.pc", b"")).data)
    assert reply == {
        "type": "io.nats.jetstream.api.v1.consumer_pause_response",
        "paused": False,
        "pause_until": "0001-01-01T00:00:00Z",
    }
    assert len(await sub.fetch(1, timeout=1)) == 1


async def test_inactive_ephemeral_cleanup(nc):
    js = nc.jetstream()
    await _stream(js)
    info = await js.add_consumer("Q", ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, inactive_threshold=0.3))
    assert len(info.name) == 8

    async def gone():
        names = json.loads((await nc.request("$JS.API.CONSUMER.NAMES.Q", b"")).data)["consumers"]
        return not names

    await acheck_for(4, gone)


async def test_ephemeral_default_threshold(nc):
    js = nc.jetstream()
    await _stream(js)
    reply = json.loads(
        (
            await nc.request(
                "$JS.API.CONSUMER.CREATE.Q",
                json.dumps({"stream_name": "Q", "config": {"ack_policy": "explicit"}}).encode(),
            )
        ).data
    )
    assert reply["config"]["inactive_threshold"] == 5_000_000_000


async def test_acks_reach_a_consumer_recreated_under_the_same_name(nc):
    """Acks for a deleted consumer go nowhere; the new consumer of the same name (and of a stream
    deleted and made again) gets its own acks (the server's ack routing must not hold on to the old
    one)."""
    js = nc.jetstream()
    for round_ in range(2):
        await _stream(js, count=3)
        for generation in range(2):
            sub = await js.pull_subscribe("q.>", durable="pc", stream="Q")
            msgs = await sub.fetch(2, timeout=1)
            for msg in msgs:
                await msg.ack_sync()
            info = await js.consumer_info("Q", "pc")
            assert (info.ack_floor.stream_seq, info.num_ack_pending) == (2, 0), (round_, generation)
            await sub.unsubscribe()
            await js.delete_consumer("Q", "pc")
        await js.delete_stream("Q")
