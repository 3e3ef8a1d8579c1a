"""Mirrors and sources on a jsedge cluster, through nats-py: the copying stream's leader reads its
origins through internal `direct` push consumers (nats-server's `JS_MIRROR_`/`JS_SRC_`), wherever the
origin runs, and writes through its own Raft group. A mirror keeps the origin's sequences, sources
add `Nats-Stream-Source`, and a kill -9 of the copying stream's leader neither loses nor duplicates a
copy (spec/streams.md §15, clustering.md §4)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import acheck_for, compiled_only
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import StreamSource
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from test_jetstream_cluster import add_stream, connect, js_cluster

pytestmark = pytest.mark.timeout(180)


async def _info(js, name: str):
    try:
        return await js.stream_info(name)
    except (TimeoutError, NatsTimeout):
        return None
    except APIError as exc:
        if exc.err_code in (10008, 10014):
            return None
        raise


async def _wait_messages(js, name: str, count: int, deadline: float = 60):
    async def attempt():
        si = await _info(js, name)
        return si if si is not None and si.state.messages == count else None

    return await acheck_for(deadline, attempt, interval=0.2)


async def _contents(js, name: str, last: int) -> list[tuple[int, str, bytes, dict]]:
    out = []
    for seq in range(1, last + 1):
        for _ in range(50):
            try:
                msg = await js.get_msg(name, seq)
                out.append((seq, msg.subject, msg.data, dict(msg.headers or {})))
                break
            except NotFoundError:
                break  # a gap (a mirror keeps the origin's)
            except (TimeoutError, NatsTimeout, APIError):
                continue
    return out


@compiled_only(
    "the copy loops are the same Python code in both modes, and the pure twins' cluster paths are "
    "covered by the other cluster tests"
)
async def test_mirror_and_sources_across_nodes_survive_the_copying_leader() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="ORIG", subjects=["orig.>"], num_replicas=3)
            await add_stream(js, name="SIDE", subjects=["side.>"], num_replicas=1)
            for i in range(60):
                await js.publish("orig.a" if i % 2 else "orig.b", f"m{i}".encode(), headers={"Nats-Msg-Id": f"id{i}"})
            for i in range(5):
                await js.publish("side.x", f"s{i}".encode())
            await js.delete_msg("ORIG", 10)  # a gap the mirror keeps
            await add_stream(js, name="MIR", mirror=StreamSource(name="ORIG"), num_replicas=3)
            await add_stream(
                js,
                name="AGG",
                sources=[StreamSource(name="ORIG", filter_subject="orig.a"), StreamSource(name="SIDE")],
                num_replicas=3,
            )
            await add_stream(js, name="MIR1", mirror=StreamSource(name="SIDE"), num_replicas=1)
            si = await _wait_messages(js, "MIR", 59)
            assert (si.state.first_seq, si.state.last_seq) == (1, 60)
            assert si.mirror.name == "ORIG" and si.mirror.lag == 0
            si = await _wait_messages(js, "AGG", 34)  # 30 on orig.a, one of them deleted, and 5
            by_name = {s.name: s for s in si.sources}
            assert by_name["ORIG"].lag == 0 and by_name["SIDE"].lag == 0
            await _wait_messages(js, "MIR1", 5)
            mirrored = await _contents(js, "MIR", 60)
            assert [m[0] for m in mirrored] == [s for s in range(1, 61) if s != 10]
            assert all(m[2] == f"m{m[0] - 1}".encode() for m in mirrored)
            sourced = await _contents(js, "AGG", 34)
            assert sorted(m[2] for m in sourced) == sorted(
                [f"m{i}".encode() for i in range(60) if i % 2 and i != 9] + [f"s{i}".encode() for i in range(5)]
            )
            assert all("Nats-Stream-Source" in m[3] for m in sourced)

            # the copying streams' leaders die while the origin takes more messages
            victims = set()
            for name in ("MIR", "AGG"):
                si = await _info(js, name)
                victims.add(int(si.cluster.leader[1:]) - 1)
            victims.discard(0)  # keep the client's node; a leader there moves by stepdown instead
            for victim in victims:
                cluster.kill(victim)
            for name in ("MIR", "AGG"):
                si = await _info(js, name)
                if si is not None and si.cluster.leader == "n1":
                    try:
                        await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{name}", b"", timeout=3)
                    except Exception:
                        pass

            async def publish(subject: str, data: bytes) -> None:
                async def attempt():
                    try:
                        await js.publish(subject, data)
                        return True
                    except (TimeoutError, NatsTimeout):
                        return False
                    except APIError as exc:
                        if exc.err_code in (10008,):
                            return False
                        raise

                await acheck_for(30, attempt, interval=0.1)

            if len(victims) < 2:  # a quorum remains: ORIG keeps taking messages
                for i in range(60, 100):
                    await publish("orig.a" if i % 2 else "orig.b", f"m{i}".encode())
                total = 100
            else:
                total = 60
            for victim in victims:
                cluster.restart(victim)
            if total == 60:
                for i in range(60, 100):
                    await publish("orig.a" if i % 2 else "orig.b", f"m{i}".encode())
                total = 100
            si = await _wait_messages(js, "MIR", 99, deadline=90)
            assert si.state.last_seq == 100
            si = await _wait_messages(js, "AGG", 54, deadline=90)
            sourced = await _contents(js, "AGG", si.state.last_seq)
            datas = [m[2] for m in sourced]
            assert len(datas) == len(set(datas)) == 54  # nothing lost, nothing copied twice
            mirrored = await _contents(js, "MIR", 100)
            assert [m[0] for m in mirrored] == [s for s in range(1, 101) if s != 10]
        finally:
            await nc.close()


async def test_cluster_checks_mirror_and_source_configs() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="A", subjects=["a.>"], num_replicas=3, max_msg_size=1024)
            with pytest.raises(APIError) as err:
                await js.add_stream(name="B", mirror=StreamSource(name="A"), max_msg_size=100)
            assert err.value.err_code == 10030
            await add_stream(js, name="B", sources=[StreamSource(name="A")], subjects=["b.>"], num_replicas=3)
            with pytest.raises(APIError) as err:
                await js.update_stream(
                    name="A", subjects=["a.>"], num_replicas=3, max_msg_size=1024, sources=[StreamSource(name="B")]
                )
            assert err.value.err_code == 10052 and "cycle" in err.value.description
        finally:
            await nc.close()


@compiled_only("the copy loops and the durable are the same Python code in both modes")
async def test_a_replicated_work_queue_is_sourced_through_a_replicated_durable() -> None:
    """ADR-60 on a cluster: the source of an R3 work-queue stream asks for a `sourcing` consumer,
    which becomes a replicated durable (`JS_SRC_<hash>`, flow_control acks); the origin empties as
    the copies commit, keeps what arrives while the copying leader is killed, and the durable goes
    with the source."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=2)
            await add_stream(js, name="WQ", subjects=["wq.>"], retention="workqueue", num_replicas=3)
            for i in range(5):
                await js.publish("wq.a", b"w%d" % i)
            await add_stream(js, name="AGG", sources=[StreamSource(name="WQ")], num_replicas=3)
            await _wait_messages(js, "AGG", 5)
            await _wait_messages(js, "WQ", 0)

            async def durable():
                try:
                    names = await js.consumers_info("WQ")
                except (TimeoutError, NatsTimeout, APIError):
                    return None
                return names[0] if len(names) == 1 else None

            info = await acheck_for(30, durable, interval=0.2)
            assert info.name.startswith("JS_SRC_") and info.config.durable_name == info.name
            assert info.config.ack_policy == "flow_control"  # (nats-py has no enum member for it)
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2

            # the copying leader dies: what it had not acknowledged is delivered to the next one
            leader = (await js.stream_info("AGG")).cluster.leader
            index = int(leader[1:]) - 1
            if index == 0:
                await nc.close()
                nc = await connect(cluster[1])
                js = nc.jetstream(timeout=2)
            cluster.kill(index)
            for i in range(5):
                for _ in range(50):
                    try:
                        await js.publish("wq.b", b"x%d" % i)
                        break
                    except (TimeoutError, NatsTimeout, APIError, NoStreamResponseError):
                        await asyncio.sleep(0.1)  # (the stream's leader moving: no responders)
            await _wait_messages(js, "AGG", 10, deadline=90)
            await _wait_messages(js, "WQ", 0, deadline=60)
            payloads = sorted(m[2] for m in await _contents(js, "AGG", 10))
            assert payloads == sorted([b"w%d" % i for i in range(5)] + [b"x%d" % i for i in range(5)])

            await js.update_stream(name="AGG", subjects=["agg"], num_replicas=3)

            async def gone():
                try:
                    return not await js.consumers_info("WQ")
                except (TimeoutError, NatsTimeout, APIError):
                    return False

            await acheck_for(30, gone, interval=0.3)
        finally:
            await nc.close()
