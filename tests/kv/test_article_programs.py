"""The article's programs (shared/seed/000_f4d5d52d0939ab57.txt) translated to nats-py, both servers.

* The Go producer/consumer: create-or-update the ORDERS stream, publish an order with a message
  id (run twice: the second publish is a duplicate with the first one's sequence), create-or-update
  the `order-processor` pull consumer, fetch a batch, ack good orders and nak a bad one (which is
  redelivered).
* The KV section: `nats kv add config --ttl 1h`, put/get/del of `database.host`/`database.port`,
  and the Go KV program (create-or-update the bucket, put, get, compare-and-swap update with the
  revision, watch `database.*` until the initial-values marker, then live updates).
The same programs run through nats.js in test_nats_js.py.
"""

from __future__ import annotations

import json

import nats
import pytest
from helpers import acheck_for
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

pytestmark = pytest.mark.timeout(30)

DAY = 24 * 3600


@pytest.fixture
def js_server(server_factory, tmp_path):
    return server_factory(args=["-js", "-sd", str(tmp_path)])


async def _create_or_update_stream(js, cfg: StreamConfig):
    """nats.go `CreateOrUpdateStream`: UPDATE first, CREATE when the stream does not exist."""
    try:
        return await js.update_stream(cfg)
    except NotFoundError:
        return await js.add_stream(cfg)


async def _producer_consumer_run(url: str) -> dict:
    """One run of the article's Go `main()`; returns what it printed, as data."""
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=2)
    try:
        js = nc.jetstream()
        si = await _create_or_update_stream(
            js,
            StreamConfig(
                name="ORDERS",
                subjects=["orders.>"],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                max_age=7 * DAY,
                max_bytes=5 * 1024 * 1024 * 1024,
                duplicate_window=120,
            ),
        )
        order = {"id": "ord-002", "amount": 129.99}
        ack = await js.publish("orders.created", json.dumps(order).encode(), headers={"Nats-Msg-Id": "ord-002-created"})
        await js.add_consumer(
            "ORDERS",
            ConsumerConfig(
                name="order-processor",
                durable_name="order-processor",
                filter_subject="orders.>",
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=5,
            ),
        )
        sub = await js.pull_subscribe_bind("order-processor", stream="ORDERS")
        processed, nakked = [], []
        try:
            msgs = await sub.fetch(10, timeout=1)
        except nats.errors.TimeoutError:
            msgs = []
        for m in msgs:
            try:
                o = json.loads(m.data)
            except ValueError:
                await m.nak()
                nakked.append(m.metadata.sequence.stream)
                continue
            processed.append((o["id"], o["amount"], m.metadata.num_delivered))
            await m.ack_sync()
        await sub.unsubscribe()
        return {
            "stream": (si.config.name, si.config.max_age, si.config.max_bytes, si.config.duplicate_window),
            "seq": ack.seq,
            "duplicate": bool(ack.duplicate),
            "processed": processed,
            "nakked": nakked,
        }
    finally:
        await nc.drain()


async def test_go_producer_consumer_program(js_server):
    first = await _producer_consumer_run(js_server.url)
    assert first["stream"] == ("ORDERS", 7 * DAY, 5 * 1024**3, 120)
    assert (first["seq"], first["duplicate"]) == (1, False)
    assert first["processed"] == [("ord-002", 129.99, 1)]

    # the CLI examples publish two more orders, one of them malformed
    nc = await nats.connect(js_server.url)
    js = nc.jetstream()
    await js.publish("orders.shipped", b'{"id":"ord-001","amount":49.99}')
    await js.publish("orders.created", b"not json")
    await nc.close()

    # second run: stream updated in place, the same message id is a duplicate of seq 1
    second = await _producer_consumer_run(js_server.url)
    assert (second["seq"], second["duplicate"]) == (1, True)
    assert second["processed"] == [("ord-001", 49.99, 1)] and second["nakked"] == [3]

    # the nak'ed message is redelivered to the durable consumer (num_delivered 2)
    nc = await nats.connect(js_server.url)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind("order-processor", stream="ORDERS")
    (m,) = await sub.fetch(1, timeout=2)
    assert (m.data, m.metadata.num_delivered, m.metadata.sequence.stream) == (b"not json", 2, 3)
    await m.term()

    async def settled():
        info = await js.consumer_info("ORDERS", "order-processor")
        return info.num_pending == 0 and info.num_ack_pending == 0 and info.config.max_deliver == 5

    await acheck_for(3, settled)
    assert (await js.stream_info("ORDERS")).state.messages == 3
    await nc.close()


async def test_kv_cli_and_go_kv_program(js_server):
    nc = await nats.connect(js_server.url)
    try:
        js = nc.jetstream()
        # `nats kv add config --ttl 1h --replicas 1`
        kv = await js.create_key_value(KeyValueConfig(bucket="config", ttl=3600, replicas=1))
        # watcher started before the CLI puts (the CLI's `nats kv watch config`)
        wall = await kv.watchall()
        assert await wall.updates(timeout=3) is None
        assert await kv.put("database.host", b"pg.internal") == 1
        assert await kv.put("database.port", b"5432") == 2
        assert (await kv.get("database.host")).value == b"pg.internal"
        await kv.delete("database.host")
        with pytest.raises(KeyNotFoundError):
            await kv.get("database.host")
        seen = [(e.key, e.value, e.operation) for e in [await wall.updates(timeout=3) for _ in range(3)]]
        assert seen == [
            ("database.host", b"pg.internal", None),
            ("database.port", b"5432", None),
            ("database.host", b"", "DEL"),
        ]
        await wall.stop()

        # Go program: CreateOrUpdateKeyValue with the same config is fine
        kv = await js.create_key_value(KeyValueConfig(bucket="config", ttl=3600))
        assert await kv.put("database.host", b"pg.internal") == 4
        entry = await kv.get("database.host")
        assert (entry.value, entry.revision) == (b"pg.internal", 4)
        assert await kv.update("database.host", b"pg2.internal", last=entry.revision) == 5
        with pytest.raises(KeyWrongLastSequenceError):  # stale revision: optimistic locking works
            await kv.update("database.host", b"pg3.internal", last=entry.revision)

        w = await kv.watch("database.*")
        initial = []
        while (u := await w.updates(timeout=3)) is not None:
            initial.append((u.key, u.value, u.operation))
        assert initial == [("database.port", b"5432", None), ("database.host", b"pg2.internal", None)]
        await kv.put("database.port", b"6432")
        u = await w.updates(timeout=3)
        assert (u.key, u.value, u.revision) == ("database.port", b"6432", 6)
        await w.stop()
    finally:
        await nc.close()


async def test_discard_new_stream_rejects_when_full(js_server):
    """The article's `--discard new` option: publishes beyond max_msgs are refused (10077)."""
    nc = await nats.connect(js_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="SMALL", subjects=["s.>"], max_msgs=2, discard=DiscardPolicy.NEW)
        await js.publish("s.a", b"1")
        await js.publish("s.b", b"2")
        with pytest.raises(nats.js.errors.APIError) as ei:
            await js.publish("s.c", b"3")
        assert ei.value.err_code == 10077
    finally:
        await nc.close()
