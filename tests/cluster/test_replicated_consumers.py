"""Replicated consumers (C-R3F groups) on real jsedge processes through nats-py: the consumer's
delivery and ack state survives its leader's kill -9 and a restart of every node, stepdown hands
leadership over, a work-queue message acked with ack_sync never comes back, and consumer info shows
the group (spec/clustering.md §4, consumers.md)."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import acheck_for, compiled_only, move_leader
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError
from test_jetstream_cluster import add_stream, connect, js_cluster

pytestmark = pytest.mark.timeout(150)


def _index(server_name: str) -> int:
    return int(server_name[1:]) - 1


async def _consumer_info(js, stream: str, name: str, *, want_leader: bool = True):
    """Consumer info, retried while the consumer's group elects a leader."""

    async def attempt():
        try:
            ci = await js.consumer_info(stream, name)
        except (TimeoutError, NatsTimeout):
            return None
        except APIError as exc:
            if exc.err_code in (10008, 10014):  # leaderless, or not found on a server that lost it
                return None
            raise
        if want_leader and (ci.cluster is None or not ci.cluster.leader):
            return None
        return ci

    return await acheck_for(30, attempt, interval=0.2)


async def _fetch(sub, n: int, deadline: float = 20):
    """Fetch `n` messages, retrying while a consumer leader changes."""
    got = []

    async def attempt():
        try:
            msgs = await sub.fetch(n - len(got), timeout=1)
        except (TimeoutError, NatsTimeout):
            return len(got) >= n
        got.extend(msgs)
        return len(got) >= n

    await acheck_for(deadline, attempt, interval=0.05)
    return got


async def _ack_sync(msg, deadline: float = 20) -> None:
    async def attempt():
        try:
            await msg.ack_sync(timeout=1)
            return True
        except (TimeoutError, NatsTimeout):
            return False

    await acheck_for(deadline, attempt, interval=0.05)


@compiled_only(
    "replicated-consumer logic is pure Python in both passes; the pure pass keeps the failover and reset tests"
)
async def test_consumer_group_info_and_failover_keeps_acks() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="ORD", subjects=["ord.>"], num_replicas=3)
            for i in range(20):
                await js.publish("ord.x", str(i).encode())
            sub = await js.pull_subscribe("ord.>", durable="proc", stream="ORD")
            ci = await _consumer_info(js, "ORD", "proc")
            assert ci.cluster.raft_group.startswith("C-R3F-")
            assert len(ci.cluster.replicas) == 2
            assert {r.name for r in ci.cluster.replicas} | {ci.cluster.leader} == {"n1", "n2", "n3"}
            msgs = await _fetch(sub, 10)
            assert [m.data for m in msgs] == [str(i).encode() for i in range(10)]
            for m in msgs:
                await _ack_sync(m)
            # the consumer's leader dies: another replica leads from the replicated state
            leader = ci.cluster.leader
            victim = _index(leader)
            if victim == 0:
                await nc.close()
                nc = await connect(cluster[1])
                js = nc.jetstream(timeout=3)
                sub = await js.pull_subscribe_bind("proc", stream="ORD")
            cluster.kill(victim)

            async def new_leader():
                ci = await _consumer_info(js, "ORD", "proc")
                return ci if ci.cluster.leader != leader else None

            ci = await acheck_for(30, new_leader, interval=0.2)
            assert ci.ack_floor.stream_seq == 10
            assert ci.delivered.stream_seq == 10
            assert ci.num_pending == 10 and ci.num_ack_pending == 0
            rest = await _fetch(sub, 10)
            assert [m.data for m in rest] == [str(i).encode() for i in range(10, 20)]
            for m in rest:
                await _ack_sync(m)
            cluster.restart(victim)
            ci = await _consumer_info(js, "ORD", "proc")
            assert ci.ack_floor.stream_seq == 20 and ci.num_ack_pending == 0 and ci.num_pending == 0
        finally:
            await nc.close()


@compiled_only(
    "replicated-consumer logic is pure Python in both passes; the pure pass keeps the failover and reset tests"
)
async def test_consumer_stepdown_and_full_restart_keep_state() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="EV", subjects=["ev.>"], num_replicas=3)
            for i in range(10):
                await js.publish("ev.x", str(i).encode())
            sub = await js.pull_subscribe("ev.>", durable="d", stream="EV")
            msgs = await _fetch(sub, 4)
            for m in msgs:
                await _ack_sync(m)
            ci = await _consumer_info(js, "EV", "d")
            before = ci.cluster.leader
            reply = await nc.request("$JS.API.CONSUMER.LEADER.STEPDOWN.EV.d", b"", timeout=3)
            assert reply.data == b'{"type":"io.nats.jetstream.api.v1.consumer_leader_stepdown_response","success":true}'

            async def moved():
                ci = await _consumer_info(js, "EV", "d")
                return ci if ci.cluster.leader != before else None

            ci = await acheck_for(30, moved, interval=0.2)
            assert ci.ack_floor.stream_seq == 4 and ci.num_pending == 6
            # the preferred placement must name a member of the group
            bad = await nc.request(
                "$JS.API.CONSUMER.LEADER.STEPDOWN.EV.d", b'{"placement":{"preferred":"nope"}}', timeout=3
            )
            assert b'"err_code":10005' in bad.data
        finally:
            await nc.close()
        for index in range(3):
            cluster.kill(index)
        for index in range(3):
            cluster.restart(index)
        cluster.wait_mesh()
        nc = await connect(cluster[2])
        try:
            js = nc.jetstream(timeout=3)
            ci = await _consumer_info(js, "EV", "d")
            assert ci.ack_floor.stream_seq == 4 and ci.num_pending == 6 and ci.num_ack_pending == 0
            sub = await js.pull_subscribe_bind("d", stream="EV")
            rest = await _fetch(sub, 6)
            assert [m.data for m in rest] == [str(i).encode() for i in range(4, 10)]
        finally:
            await nc.close()


async def test_work_queue_acked_messages_never_come_back_after_failover() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[1])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="WQ", subjects=["wq.>"], num_replicas=3, retention="workqueue")
            for i in range(30):
                await js.publish("wq.x", str(i).encode())
            sub = await js.pull_subscribe("wq.>", durable="workers", stream="WQ")
            done = set()
            msgs = await _fetch(sub, 15)
            for m in msgs:
                await _ack_sync(m)
                done.add(m.data)
            ci = await _consumer_info(js, "WQ", "workers")
            victim = _index(ci.cluster.leader)
            if victim == 1:
                await nc.close()
                nc = await connect(cluster[2])
                js = nc.jetstream(timeout=3)
                sub = await js.pull_subscribe_bind("workers", stream="WQ")
            cluster.kill(victim)
            rest = await _fetch(sub, 15, deadline=40)
            again = [m.data for m in rest if m.data in done]
            assert again == [], f"acknowledged work came back: {again}"
            for m in rest:
                await _ack_sync(m)
                done.add(m.data)
            assert done == {str(i).encode() for i in range(30)}

            async def drained():
                try:
                    return (await js.stream_info("WQ")).state.messages == 0
                except (TimeoutError, NatsTimeout):
                    return False

            await acheck_for(20, drained, interval=0.2)
        finally:
            await nc.close()


async def test_ephemeral_of_a_limits_stream_stays_r1_and_r1_consumers_keep_working() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="LIM", subjects=["lim.>"], num_replicas=3)
            await js.publish("lim.x", b"1")
            sub = await js.pull_subscribe("lim.>", stream="LIM")  # ephemeral
            ci = await sub.consumer_info()
            assert ci.cluster is not None and not ci.cluster.raft_group
            await js.add_consumer("LIM", durable_name="one", num_replicas=1, ack_policy="explicit")
            ci = await _consumer_info(js, "LIM", "one")
            assert not ci.cluster.raft_group and not ci.cluster.replicas
            msgs = await _fetch(sub, 1)
            assert msgs[0].data == b"1"
            await asyncio.sleep(0)
        finally:
            await nc.close()


@compiled_only(
    "replicated-consumer logic is pure Python in both passes; the pure pass keeps the failover and reset tests"
)
async def test_stream_replica_changes_carry_the_consumers_state() -> None:
    """num_replicas 3 -> 1 -> 3 with a durable consumer (replicas follow the stream's): its ack state
    survives each change and it keeps delivering."""
    from test_jetstream_cluster import _update

    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            info = await add_stream(js, name="SC", subjects=["sc.>"], num_replicas=3)
            for i in range(12):
                await js.publish("sc.x", str(i).encode())
            sub = await js.pull_subscribe("sc.>", durable="reader", stream="SC")
            for m in await _fetch(sub, 4):
                await _ack_sync(m)
            expected = 4
            for replicas in (1, 3):
                config = info.config
                config.num_replicas = replicas
                info = await _update(js, config)

                async def settled(replicas: int = replicas, expected: int = expected):
                    ci = await _consumer_info(js, "SC", "reader")
                    group = ci.cluster.raft_group or ""
                    shaped = group.startswith("C-R3F-") if replicas == 3 else not group
                    return ci if shaped and ci.ack_floor.stream_seq == expected else None

                ci = await acheck_for(30, settled, interval=0.3)
                assert ci.num_pending == 12 - expected
                for m in await _fetch(sub, 4):
                    await _ack_sync(m)
                expected += 4
            ci = await _consumer_info(js, "SC", "reader")
            assert ci.ack_floor.stream_seq == 12 and ci.num_pending == 0
        finally:
            await nc.close()


@compiled_only(
    "replicated-consumer logic is pure Python in both passes; the pure pass keeps the failover and reset tests"
)
async def test_interest_retention_waits_for_consumers_led_by_other_servers() -> None:
    """Two consumers of an interest stream led by different servers, and the stream led by a third:
    a message stays until both acknowledged it, publishes are kept while any consumer is
    interested, and the stream empties once both acked."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="INT", subjects=["int.>"], num_replicas=3, retention="interest")
            await js.add_consumer("INT", durable_name="a", ack_policy="explicit")
            await js.add_consumer("INT", durable_name="b", ack_policy="explicit")
            await _consumer_info(js, "INT", "a")
            await _consumer_info(js, "INT", "b")

            async def leader_of(kind: str, name: str = "") -> str:
                try:
                    if kind == "stream":
                        return (await js.stream_info("INT")).cluster.leader
                    return (await js.consumer_info("INT", name)).cluster.leader
                except Exception:
                    return ""

            api = "$JS.API."
            await move_leader(nc, api + "STREAM.LEADER.STEPDOWN.INT", "n1", lambda: leader_of("stream"))
            await move_leader(nc, api + "CONSUMER.LEADER.STEPDOWN.INT.a", "n2", lambda: leader_of("c", "a"))
            await move_leader(nc, api + "CONSUMER.LEADER.STEPDOWN.INT.b", "n3", lambda: leader_of("c", "b"))
            for i in range(10):
                await js.publish("int.x", str(i).encode())
            assert (await js.stream_info("INT")).state.messages == 10  # kept: a and b are interested
            sub_a = await js.pull_subscribe_bind("a", stream="INT")
            for m in await _fetch(sub_a, 10):
                await _ack_sync(m)
            await asyncio.sleep(1.5)  # longer than a retention sweep: nothing may go while b needs it
            assert (await js.stream_info("INT")).state.messages == 10
            sub_b = await js.pull_subscribe_bind("b", stream="INT")
            for m in await _fetch(sub_b, 10):
                await _ack_sync(m)

            async def empty():
                return (await js.stream_info("INT")).state.messages == 0

            await acheck_for(20, empty, interval=0.2)
        finally:
            await nc.close()


async def test_a_pause_survives_a_consumer_leader_change() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="PZ", subjects=["pz.>"], num_replicas=3)
            await js.add_consumer("PZ", durable_name="p", ack_policy="explicit")
            ci = await _consumer_info(js, "PZ", "p")
            until = "2099-01-01T00:00:00Z"
            reply = await nc.request("$JS.API.CONSUMER.PAUSE.PZ.p", json.dumps({"pause_until": until}).encode(), 3)
            assert json.loads(reply.data)["paused"] is True
            before = ci.cluster.leader
            await nc.request("$JS.API.CONSUMER.LEADER.STEPDOWN.PZ.p", b"", timeout=3)

            async def paused_elsewhere():
                ci = await _consumer_info(js, "PZ", "p")
                return ci if ci.cluster.leader != before and ci.paused else None

            ci = await acheck_for(30, paused_elsewhere, interval=0.3)
            assert ci.config.pause_until is not None
        finally:
            await nc.close()


async def test_a_reset_commits_and_survives_a_consumer_leader_change() -> None:
    """CONSUMER.RESET on an R3 consumer: answered by its leader once the new state committed (from a
    client on any server), then the next leader continues from the reset state."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[1])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="RZ", subjects=["rz.>"], num_replicas=3)
            for i in range(10):
                await js.publish("rz.x", str(i).encode())
            await js.add_consumer("RZ", durable_name="r", ack_policy="explicit")
            sub = await js.pull_subscribe_bind("r", stream="RZ")
            for msg in await _fetch(sub, 4):
                await _ack_sync(msg)
            before = (await _consumer_info(js, "RZ", "r")).cluster.leader

            async def reset():
                try:
                    reply = await nc.request("$JS.API.CONSUMER.RESET.RZ.r", b'{"seq":7}', timeout=2)
                except (TimeoutError, NatsTimeout):
                    return None
                return json.loads(reply.data)

            answer = await acheck_for(30, reset, interval=0.2)
            assert answer["reset_seq"] == 7 and answer["ack_floor"]["stream_seq"] == 6, answer
            assert answer["num_pending"] == 4 and answer["delivered"]["consumer_seq"] == 0
            await nc.request("$JS.API.CONSUMER.LEADER.STEPDOWN.RZ.r", b"", timeout=3)

            async def moved():
                ci = await _consumer_info(js, "RZ", "r")
                return ci if ci.cluster.leader != before else None

            ci = await acheck_for(30, moved, interval=0.3)
            assert ci.ack_floor.stream_seq == 6 and ci.num_pending == 4
            (msg,) = await _fetch(sub, 1)
            assert msg.data == b"6" and msg.metadata.sequence.consumer == 1
        finally:
            await nc.close()
