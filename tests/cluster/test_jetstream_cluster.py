"""Clustered JetStream on real jsedge processes: the meta group, replicated (R3) streams through
nats-py, leader failover with acks in flight, restarts that catch up, KV and consumers on replicated
streams, and the API's cluster answers (spec/clustering.md §4)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import nats
import pytest
from helpers import Cluster, acheck_for, check_for, compiled_only, http_json, move_leader
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError

pytestmark = pytest.mark.timeout(120)

#: Raft timing for tests: nats-server's shape, ten times faster.
FAST = {"JSEDGE_RAFT_HEARTBEAT": "0.2", "JSEDGE_RAFT_ELECTION": "0.8-1.6", "JSEDGE_RAFT_LOST_QUORUM": "2.5"}


def js_cluster(size: int = 3) -> Cluster:
    return Cluster(["jsedge"] * size, extra_args=["-js", "-sd", "js"], env=FAST)


async def connect(server, **kw):
    kw.setdefault("connect_timeout", 2)
    kw.setdefault("max_reconnect_attempts", -1)
    kw.setdefault("reconnect_time_wait", 0.2)
    return await nats.connect(server.url, **kw)


async def _while_leaderless(make):
    """Run `make()` until it answers, retrying while the meta group elects its first leader (a
    timeout or 10008)."""

    async def attempt():
        try:
            return await make()
        except (TimeoutError, NatsTimeout):
            return None
        except APIError as exc:
            if exc.err_code == 10008:
                return None
            raise

    return await acheck_for(30, attempt, interval=0.2)


async def add_stream(js, **config):
    """Create a stream, retrying while the meta group elects its first leader."""
    return await _while_leaderless(lambda: js.add_stream(**config))


async def kill_stream_leader(cluster, nc, js, stream: str, timeout: float = 3):
    """kill -9 the server leading `stream`: (client, JetStream context, the victim's index), the
    client moved to another server when it was on the victim."""
    leader = (await js.stream_info(stream)).cluster.leader
    victim = int(leader[1:]) - 1
    if victim == 0:
        await nc.close()
        nc = await connect(cluster[1])
        js = nc.jetstream(timeout=timeout)
    cluster.kill(victim)
    return nc, js, victim


async def add_bucket(js, **config):
    """Create a KV bucket, retrying as `add_stream` does."""
    return await _while_leaderless(lambda: js.create_key_value(**config))


async def test_replicated_stream_basics() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            advisories = await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.>")
            js = nc.jetstream(timeout=3)
            info = await add_stream(js, name="ORDERS", subjects=["orders.>"], num_replicas=3)
            assert info.config.num_replicas == 3
            assert info.cluster.name == "c1" and info.cluster.leader in ("n1", "n2", "n3")
            assert info.cluster.raft_group.startswith("S-R3F-")
            assert len(info.cluster.replicas) == 2
            acks = [await js.publish("orders.new", f"o{i}".encode()) for i in range(50)]
            assert [a.seq for a in acks] == list(range(1, 51))
            si = await js.stream_info("ORDERS")
            assert si.state.messages == 50 and si.state.last_seq == 50
            assert sorted([si.cluster.leader] + [r.name for r in si.cluster.replicas]) == ["n1", "n2", "n3"]
            msg = await js.get_msg("ORDERS", 7)
            assert msg.data == b"o6"
            await js.delete_msg("ORDERS", 7)
            with pytest.raises(APIError) as err:
                await js.get_msg("ORDERS", 7)
            assert err.value.err_code == 10037
            purged = await js.purge_stream("ORDERS", subject="orders.new", keep=10)
            assert purged
            si = await js.stream_info("ORDERS")
            assert si.state.messages == 10
            assert await js.streams_info() and [s.config.name for s in await js.streams_info()] == ["ORDERS"]
            names = await js.stream_names() if hasattr(js, "stream_names") else None
            assert names in (None, ["ORDERS"])
            # every replica holds the same messages
            for index in range(3):
                other = await connect(cluster[index])
                try:
                    got = await other.jetstream().get_msg("ORDERS", 50)
                    assert got.data == b"o49"
                finally:
                    await other.close()
            config = info.config
            config.max_msgs = 1000
            await _update(js, config)
            assert await js.delete_stream("ORDERS")
            with pytest.raises(APIError) as err:
                await js.stream_info("ORDERS")
            assert err.value.err_code == 10059
            # one advisory per action, from the leader only (not one per replica), and the leader's
            # election with every peer listed
            seen, elected = [], []

            async def three() -> bool:
                try:
                    msg = await advisories.next_msg(0.2)
                except NatsTimeout:
                    return len(seen) >= 3
                event = json.loads(msg.data)
                if msg.subject.startswith("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."):
                    elected.append(event)
                else:
                    seen.append((msg.subject, event["action"]))
                return False

            await acheck_for(10, three, interval=0)
            assert elected and elected[0]["stream"] == "ORDERS" and elected[0]["leader"] in ("n1", "n2", "n3")
            assert sorted(p["name"] for p in elected[0]["replicas"]) == ["n1", "n2", "n3"]
            assert seen == [
                ("$JS.EVENT.ADVISORY.STREAM.CREATED.ORDERS", "create"),
                ("$JS.EVENT.ADVISORY.STREAM.UPDATED.ORDERS", "modify"),
                ("$JS.EVENT.ADVISORY.STREAM.DELETED.ORDERS", "delete"),
            ]
        finally:
            await nc.close()


async def test_errors_of_a_cluster() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[1])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="ONE", subjects=["one"], num_replicas=1)
            with pytest.raises(APIError) as err:
                await js.add_stream(name="R5", subjects=["r5"], num_replicas=5)
            assert (err.value.err_code, err.value.description) == (10005, "no suitable peers for placement")
            with pytest.raises(APIError) as err:
                await js.add_stream(name="R6", subjects=["r6"], num_replicas=6)
            assert (err.value.err_code, err.value.description) == (10052, "maximum replicas is 5")
            with pytest.raises(APIError) as err:
                await js.add_stream(name="TWO", subjects=["one"], num_replicas=3)
            assert err.value.err_code == 10065
            info = await js.stream_info("ONE")
            assert set(vars(info.cluster)) >= {"leader"} and info.cluster.leader in ("n1", "n2", "n3")
        finally:
            await nc.close()


async def test_leader_failover_loses_no_acknowledged_message() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=2)
            await add_stream(js, name="R3", subjects=["r3.>"], num_replicas=3)
            acked: dict[int, bytes] = {}
            for i in range(100):
                ack = await js.publish("r3.x", f"before-{i}".encode())
                acked[ack.seq] = f"before-{i}".encode()
            nc, js, victim = await kill_stream_leader(cluster, nc, js, "R3", timeout=2)
            sent = 0
            while sent < 100:
                payload = f"after-{sent}".encode()
                try:
                    # a retry after a timed-out publish that was stored after all is deduplicated
                    ack = await js.publish("r3.x", payload, headers={"Nats-Msg-Id": payload.decode()})
                except (TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError):
                    await asyncio.sleep(0.1)
                    continue
                acked[ack.seq] = payload
                sent += 1
            cluster.restart(victim)
            # every replica converges on the same content, with every acknowledged message in it
            for index in range(3):
                conn = await connect(cluster[index])
                try:
                    js_here = conn.jetstream(timeout=3)

                    async def caught_up(js_here=js_here):
                        last = max(acked)
                        try:
                            return (await js_here.get_msg("R3", last, direct=False)).data == acked[last]
                        except Exception:
                            return False

                    await acheck_for(20, caught_up, interval=0.2)
                finally:
                    await conn.close()
            si = await js.stream_info("R3")
            assert si.state.messages == len(acked) == si.state.last_seq
            for seq in (1, 50, 100, 101, 150, 200):
                assert (await js.get_msg("R3", seq)).data == acked[seq]
        finally:
            await nc.close()


async def test_quorum_loss_then_recovery() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=1)
            await add_stream(js, name="Q", subjects=["q"], num_replicas=3)
            await js.publish("q", b"1")

            async def leader_name() -> str:
                return str((await js.stream_info("Q")).cluster.leader)

            # the survivor leads: publishes reach it while it still believes it leads, and are
            # proposed and left in flight when it notices the lost quorum and steps down; once
            # re-elected, those settling late must not disturb its sequence prediction (they did:
            # every later publish was refused as a sequence mismatch)
            await move_leader(nc, "$JS.API.STREAM.LEADER.STEPDOWN.Q", "n1", leader_name)
            leader = await leader_name()
            cluster.kill(1)
            cluster.kill(2)
            for _ in range(4):
                await nc.publish("q", b"lost?", reply=nc.new_inbox())

            async def no_responders() -> bool:
                try:
                    await nc.request("q", b"x", timeout=0.5)
                except NoRespondersError:
                    return True
                except NatsTimeout:
                    return False
                return False

            await acheck_for(20, no_responders, interval=0.3)
            # the survivor logs what nats-server logs when its groups lose their majority
            assert cluster[0].wait_for_log("JetStream cluster no metadata leader", 10)
            if leader == "n1":
                assert cluster[0].wait_for_log(
                    re.escape("JetStream cluster stream '$G > Q' has NO quorum, stalled"), 10
                )

            async def unavailable() -> bool:
                try:
                    await js.add_stream(name="LATER", subjects=["later"], num_replicas=1)
                except APIError as exc:
                    return exc.err_code == 10008
                except NatsTimeout:
                    return False  # the meta leader has not noticed yet
                return False

            await acheck_for(20, unavailable, interval=0.3)
            cluster.restart(1)
            cluster.restart(2)

            async def writable() -> bool:
                try:
                    return bool(await js.publish("q", b"2"))
                except Exception:
                    return False

            await acheck_for(30, writable, interval=0.3)
            assert (await js.stream_info("Q")).state.messages >= 2
        finally:
            await nc.close()


async def test_kv_and_consumers_on_replicated_streams() -> None:
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[2])
        try:
            js = nc.jetstream(timeout=3)

            kv = await add_bucket(js, bucket="cfg", replicas=3, history=5)
            assert await kv.put("a", b"1") == 1
            assert await kv.put("a", b"2") == 2
            assert (await kv.get("a")).value == b"2"
            await kv.update("a", b"3", last=2)
            assert [e.value for e in await kv.history("a")] == [b"1", b"2", b"3"]
            watcher = await kv.watchall()
            await kv.put("b", b"bee")

            async def first_update():
                async for entry in watcher:
                    if entry is not None:
                        return entry

            seen = await asyncio.wait_for(first_update(), 5)
            assert (seen.key, seen.value) == ("a", b"3")
            await add_stream(js, name="WORK", subjects=["work.>"], num_replicas=3, retention="workqueue")
            for i in range(5):
                await js.publish("work.x", str(i).encode())
            sub = await js.pull_subscribe("work.>", durable="workers", stream="WORK")
            msgs = await sub.fetch(5, timeout=3)
            assert [m.data for m in msgs] == [b"0", b"1", b"2", b"3", b"4"]
            for m in msgs:
                await m.ack_sync()

            async def drained() -> bool:
                return (await js.stream_info("WORK")).state.messages == 0

            await acheck_for(10, drained, interval=0.2)
        finally:
            await nc.close()


async def test_consumers_on_another_node_get_acks_and_flow_control() -> None:
    """A consumer runs on the stream leader; a client on another node fetches, acks (ack_sync gets the
    host's answer across the route) and takes push deliveries with flow control."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        first = await connect(cluster[0])
        try:
            js = first.jetstream(timeout=3)
            info = await add_stream(js, name="EV", subjects=["ev.>"], num_replicas=3)
            for i in range(40):
                await js.publish("ev.x", str(i).encode())
            info = await js.stream_info("EV")
            leader = info.cluster.leader
        finally:
            await first.close()
        other = next(i for i in range(3) if f"n{i + 1}" != leader)
        nc = await connect(cluster[other])
        try:
            js = nc.jetstream(timeout=3)
            sub = await js.pull_subscribe("ev.>", durable="puller", stream="EV")
            ci = await js.consumer_info("EV", "puller")
            assert ci.cluster is not None and ci.cluster.leader == leader
            msgs = await sub.fetch(10, timeout=3)
            assert len(msgs) == 10
            for m in msgs:
                await m.ack_sync()
            ci = await js.consumer_info("EV", "puller")
            assert ci.ack_floor.stream_seq == 10 and ci.num_ack_pending == 0

            got: list[bytes] = []
            done = asyncio.get_running_loop().create_future()

            async def handler(msg):
                got.append(msg.data)
                await msg.ack()
                if len(got) == 40 and not done.done():
                    done.set_result(True)

            await js.subscribe("ev.>", durable="pusher", cb=handler, flow_control=True, idle_heartbeat=0.5, stream="EV")
            await asyncio.wait_for(done, 10)
            assert got == [str(i).encode() for i in range(40)]

            async def all_acked() -> bool:
                return (await js.consumer_info("EV", "pusher")).num_ack_pending == 0

            await acheck_for(10, all_acked, interval=0.2)
        finally:
            await nc.close()


async def _update(js, config):
    """Update a stream, retrying while a leader change or a replica change is under way."""

    async def attempt():
        try:
            return await js.update_stream(config)
        except (TimeoutError, NatsTimeout):
            return None
        except APIError as exc:
            if exc.err_code == 10008:
                return None
            raise

    return await acheck_for(30, attempt, interval=0.3)


async def _publish(js, subject, data):
    async def attempt():
        try:
            return await js.publish(subject, data, timeout=2)
        except (TimeoutError, NatsTimeout, NoRespondersError):
            return None

    return await acheck_for(30, attempt, interval=0.2)


async def test_scaling_replicas_keeps_messages_and_consumers() -> None:
    """num_replicas 1 -> 3 -> 2 -> 1 (nats stream edit --replicas): every step keeps the messages and
    the consumer's state, publishing goes on, and every replica ends with the same messages. The
    payloads are long enough to be kept as references into the Raft log (write once), whose
    groups a replica change retires."""

    def body(tag: str, i: int) -> bytes:
        return f"{tag}{i}".encode().ljust(40, b"-")

    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            info = await add_stream(js, name="SC", subjects=["sc.>"], num_replicas=1)
            for i in range(20):
                await js.publish("sc.x", f"a{i}".encode())
            sub = await js.pull_subscribe("sc.>", durable="reader", stream="SC")
            msgs = await sub.fetch(5, timeout=3)
            for m in msgs:
                await m.ack_sync()
            sent = [f"a{i}".encode() for i in range(20)]
            for replicas, tag in ((3, "b"), (2, "c"), (1, "d")):
                config = info.config
                config.num_replicas = replicas
                info = await _update(js, config)
                assert info.config.num_replicas == replicas
                assert info.state.messages == len(sent) and info.state.last_seq == len(sent)
                if replicas > 1:
                    assert info.cluster.raft_group.startswith(f"S-R{replicas}F-")
                for i in range(5):
                    ack = await _publish(js, "sc.x", body(tag, i))
                    assert ack.seq == len(sent) + 1
                    sent.append(body(tag, i))

                async def everywhere(replicas: int = replicas) -> bool:
                    si = await js.stream_info("SC")
                    if si.state.messages != len(sent):
                        return False
                    if replicas == 1:
                        return True
                    return len(si.cluster.replicas or []) == replicas - 1 and all(
                        r.current for r in si.cluster.replicas
                    )

                await acheck_for(30, everywhere, interval=0.3)
            ci = await js.consumer_info("SC", "reader")
            assert ci.ack_floor.stream_seq >= 5 or ci.num_pending > 0
            msgs = await sub.fetch(len(sent), timeout=5)
            assert [m.data for m in msgs][-5:] == sent[-5:]
            for seq, payload in enumerate(sent, 1):  # every message, from whichever store leads now
                assert (await js.get_msg("SC", seq)).data == payload
        finally:
            await nc.close()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NATS_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "jsedge", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )


async def test_backup_and_restore_of_a_replicated_stream(tmp_path) -> None:
    """`stream backup` of an R3 stream gets one snapshot (from the leader), and `stream restore` on
    the cluster brings it back as an R3 stream with every message on every replica."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="BK", subjects=["bk.>"], num_replicas=3)
            for i in range(30):
                await js.publish(f"bk.{i % 3}", f"m{i}".encode())
            await js.delete_msg("BK", 7)
            backup = _cli(cluster[1].url, "stream", "backup", "BK", str(tmp_path / "bk"))
            assert backup.returncode == 0, backup.stderr
            await js.delete_stream("BK")
            restore = _cli(cluster[2].url, "stream", "restore", str(tmp_path / "bk"))
            assert restore.returncode == 0, restore.stdout + restore.stderr

            async def restored() -> bool:
                try:
                    si = await js.stream_info("BK")
                except Exception:
                    return False
                return (
                    si.config.num_replicas == 3
                    and si.state.messages == 29
                    and si.state.last_seq == 30
                    and len(si.cluster.replicas or []) == 2
                    and all(r.current for r in si.cluster.replicas)
                )

            await acheck_for(30, restored, interval=0.3)
            assert (await js.get_msg("BK", 30)).data == b"m29"
            ack = await _publish(js, "bk.x", b"after")
            assert ack.seq == 31
        finally:
            await nc.close()
        # every replica holds the restored messages (each node's own /jsz state)

        def replica_states() -> bool:
            states = []
            for index in range(3):
                jsz = http_json(cluster[index], "/jsz?streams=true", timeout=1.0)
                for account in jsz.get("account_details") or []:
                    for stream in account.get("stream_detail") or []:
                        if stream["name"] == "BK":
                            states.append((stream["state"]["messages"], stream["state"]["last_seq"]))
            return states == [(30, 31)] * 3

        check_for(30, replica_states, interval=0.3)


@compiled_only(
    "placement and membership logic, pure Python in both passes (CI time); the pure pass keeps failover, quorum and restart"
)
async def test_peer_remove_moves_a_replica_to_a_spare_server() -> None:
    """Four servers, an R3 stream: STREAM.PEER.REMOVE of a replica (the leader included) moves it to
    the fourth server; the stream keeps every message and its replica count."""
    with Cluster(["jsedge"] * 4, extra_args=["-js", "-sd", "js"], env=FAST) as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="MV", subjects=["mv.>"], num_replicas=3)
            for i in range(20):
                await js.publish("mv.x", f"m{i}".encode())
            sent = 20
            for _ in range(2):
                si = await js.stream_info("MV")
                before = {si.cluster.leader} | {r.name for r in si.cluster.replicas}
                victim = si.cluster.leader  # the hardest case: the leader moves away
                reply = await nc.request(
                    "$JS.API.STREAM.PEER.REMOVE.MV", json.dumps({"peer": victim}).encode(), timeout=3
                )
                assert json.loads(reply.data) == {
                    "type": "io.nats.jetstream.api.v1.stream_remove_peer_response",
                    "success": True,
                }

                async def moved(before=before, victim=victim, sent=sent) -> bool:
                    try:
                        si = await js.stream_info("MV")
                    except Exception:
                        return False
                    members = {si.cluster.leader} | {r.name for r in si.cluster.replicas or []}
                    return (
                        victim not in members
                        and len(members) == 3
                        and len(members - before) == 1
                        and si.state.messages == sent
                        and all(r.current for r in si.cluster.replicas)
                    )

                await acheck_for(30, moved, interval=0.3)
                ack = await _publish(js, "mv.x", b"after")
                sent += 1
                assert ack.seq == sent
        finally:
            await nc.close()


SYS_ACCOUNTS = """
accounts {
  SYS: { users: [ {user: sys, password: sys} ] }
  APP: { jetstream: enabled, users: [ {user: app, password: app} ] }
}
system_account: SYS
"""


@compiled_only(
    "placement and membership logic, pure Python in both passes (CI time); the pure pass keeps failover, quorum and restart"
)
async def test_server_remove_takes_a_dead_server_out_and_moves_its_replicas() -> None:
    """$JS.API.SERVER.REMOVE (system account): unknown servers get 10044; a dead server leaves the
    meta group, and the R3 stream it held a replica of moves that replica to the spare server."""
    with Cluster(["jsedge"] * 4, extra_args=["-js", "-sd", "js"], env=FAST, config=SYS_ACCOUNTS) as cluster:
        cluster.wait_mesh()
        app = await connect(cluster[0], user="app", password="app")
        sys_nc = await connect(cluster[0], user="sys", password="sys")
        try:
            js = app.jetstream(timeout=3)
            await add_stream(js, name="SR", subjects=["sr.>"], num_replicas=3)
            for i in range(10):
                await js.publish("sr.x", f"m{i}".encode())
            si = await js.stream_info("SR")
            members = {si.cluster.leader} | {r.name for r in si.cluster.replicas}
            follower = sorted(r.name for r in si.cluster.replicas)[0]
            index = int(follower[1:]) - 1
            if index == 0:  # keep our connections' server alive
                follower = sorted(r.name for r in si.cluster.replicas)[1]
                index = int(follower[1:]) - 1
            reply = await sys_nc.request("$JS.API.SERVER.REMOVE", b'{"peer": "nope"}', timeout=3)
            assert json.loads(reply.data)["error"]["err_code"] == 10044
            cluster[index].kill()

            async def removed() -> dict | None:
                try:
                    msg = await sys_nc.request(
                        "$JS.API.SERVER.REMOVE", json.dumps({"peer": follower}).encode(), timeout=3
                    )
                except (TimeoutError, NatsTimeout, NoRespondersError):
                    return None
                return json.loads(msg.data)

            answer = await acheck_for(30, removed, interval=0.5)
            assert answer == {"type": "io.nats.jetstream.api.v1.meta_server_remove_response", "success": True}

            async def moved() -> bool:
                try:
                    si = await js.stream_info("SR")
                except Exception:
                    return False
                now = {si.cluster.leader} | {r.name for r in si.cluster.replicas or []}
                return (
                    follower not in now
                    and len(now) == 3
                    and len(now - members) == 1
                    and si.state.messages == 10
                    and all(r.current for r in si.cluster.replicas)
                )

            await acheck_for(30, moved, interval=0.3)
            # the system account also moves the meta leader
            reply = await sys_nc.request("$JS.API.META.LEADER.STEPDOWN", b"", timeout=3)
            assert json.loads(reply.data) == {
                "type": "io.nats.jetstream.api.v1.meta_leader_stepdown_response",
                "success": True,
            }
        finally:
            await app.close()
            await sys_nc.close()


@compiled_only(
    "placement and membership logic, pure Python in both passes (CI time); the pure pass keeps failover, quorum and restart"
)
async def test_five_nodes_r5_survives_two_failures_and_stalls_at_three() -> None:
    """Five servers, an R5 stream: with two servers killed the stream still acks (3 of 5); with a
    third gone publishes stop being acknowledged; restarting one brings the acks back, with nothing
    acknowledged lost."""
    with Cluster(["jsedge"] * 5, extra_args=["-js", "-sd", "js"], env=FAST) as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="FIVE", subjects=["five.>"], num_replicas=5)
            acked = [(await js.publish("five.x", f"a{i}".encode())).seq for i in range(10)]
            for index in (4, 3):
                cluster[index].kill()
            for i in range(10):
                acked.append((await _publish(js, "five.x", f"b{i}".encode())).seq)
            cluster[2].kill()
            with pytest.raises((TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError)):
                await js.publish("five.x", b"stalled", timeout=1)
            cluster.restart(2)
            acked.append((await _publish(js, "five.x", b"back")).seq)
            assert acked == sorted(set(acked))

            async def all_there() -> bool:
                try:
                    si = await js.stream_info("FIVE")
                except Exception:
                    return False
                return si.state.last_seq >= acked[-1]

            await acheck_for(30, all_there, interval=0.3)
            for seq in acked:
                await js.get_msg("FIVE", seq)
        finally:
            await nc.close()


async def test_malformed_raft_traffic_is_dropped_and_the_cluster_carries_on() -> None:
    """Garbage on `$NRG.<peer>` (only the system account can publish there): Raft frames, control
    JSON and catch-up batches that are truncated, mistyped or random are dropped with a warning; no
    traceback, no crash, and the replicated stream keeps acking."""
    import random as _random

    from jsedge.cluster.peers import peer_id

    rng = _random.Random(11)
    with Cluster(["jsedge"] * 3, extra_args=["-js", "-sd", "js"], env=FAST, config=SYS_ACCOUNTS) as cluster:
        cluster.wait_mesh()
        app = await connect(cluster[0], user="app", password="app")
        sys_nc = await connect(cluster[1], user="sys", password="sys")
        try:
            js = app.jetstream(timeout=3)
            await add_stream(js, name="FZ", subjects=["fz.>"], num_replicas=3)
            await js.publish("fz.x", b"before")
            payloads = [
                b"",
                b"\x01",
                b"\x02",
                b"\x03",
                b"\x03\xff",
                b"\x02not json",
                b'\x02{"t": "hello"}',
                b'\x02{"t": "hello", "from": 5, "name": [], "cluster": {}}',
                b'\x02{"t": "hello", "from": "AAAAAAAA", "name": "phantom", "cluster": "c1"}',
                b'\x02{"t": "propose", "group": "_meta_", "data": "!!!"}',
                b'\x02{"t": "catchup", "group": 1, "start": "x"}',
                b'\x02{"t": "info", "id": null}',
                b'\x02{"t": "info_reply"}',
                b"\x02[1, 2]",
                b"\x09" + b"x" * 10,
            ]
            payloads += [bytes([rng.choice((1, 2, 3))]) + rng.randbytes(rng.randrange(0, 80)) for _ in range(300)]
            for index in range(3):
                subject = f"$NRG.{peer_id(f'n{index + 1}')}"
                for payload in payloads:
                    await sys_nc.publish(subject, payload)
            await sys_nc.flush()
            for i in range(5):
                assert (await _publish(js, "fz.x", f"after{i}".encode())).seq == i + 2
            # no phantom server joined the meta group (a hello must come from its name's peer id)
            loop = asyncio.get_running_loop()
            until = loop.time() + 3
            while loop.time() < until:
                sizes = {http_json(cluster[i], "/jsz")["meta_cluster"]["cluster_size"] for i in range(3)}
                assert sizes == {3}
                await asyncio.sleep(0.2)
            assert any("dropped a malformed message" in line for i in range(3) for line in cluster[i].log_lines())
            for index in range(3):
                assert cluster[index].running
                assert not [line for line in cluster[index].log_lines() if "Traceback" in line]
        finally:
            await app.close()
            await sys_nc.close()


async def test_a_full_restart_after_replica_changes_keeps_everything() -> None:
    """Every node restarts after num_replicas 1 -> 3 -> 2 (the meta log then holds assignments that
    later ones replaced): the stream keeps its messages, the consumer its acks."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            info = await add_stream(js, name="RS", subjects=["rs.>"], num_replicas=1)
            for i in range(20):
                await js.publish("rs.x", str(i).encode())
            sub = await js.pull_subscribe("rs.>", durable="d", stream="RS")
            for m in await sub.fetch(5, timeout=3):
                await m.ack_sync()
            for replicas in (3, 2):
                config = info.config
                config.num_replicas = replicas
                info = await _update(js, config)

                async def current(replicas: int = replicas) -> bool:
                    si = await js.stream_info("RS")
                    return si.state.messages == 20 and len(si.cluster.replicas or []) == replicas - 1

                await acheck_for(30, current, interval=0.3)
        finally:
            await nc.close()
        for index in range(3):
            cluster.kill(index)
        for index in range(3):
            cluster.restart(index)
        cluster.wait_mesh()
        nc = await connect(cluster[1])
        try:
            js = nc.jetstream(timeout=3)

            async def back():
                try:
                    si = await js.stream_info("RS")
                    ci = await js.consumer_info("RS", "d")
                except Exception:
                    return None
                return (si, ci) if si.cluster.leader and ci.cluster.leader else None

            si, ci = await acheck_for(45, back, interval=0.3)
            assert si.state.messages == 20 and si.state.last_seq == 20
            assert si.config.num_replicas == 2
            assert ci.ack_floor.stream_seq == 5 and ci.num_pending == 15
        finally:
            await nc.close()


@compiled_only(
    "placement and membership logic, pure Python in both passes (CI time); the pure pass keeps failover, quorum and restart"
)
async def test_a_killed_leader_is_replaced_before_the_election_timeout() -> None:
    """With nats-server's timing (election timeout 4-9 s), a leader whose process dies is replaced
    within about a second: its routes close, and the followers campaign at once instead of waiting
    out the timeout (a partition, which closes nothing, still waits). Stream and consumer groups."""
    slow = {"JSEDGE_RAFT_HEARTBEAT": "1", "JSEDGE_RAFT_ELECTION": "4-9", "JSEDGE_RAFT_LOST_QUORUM": "10"}
    with Cluster(["jsedge"] * 3, extra_args=["-js", "-sd", "js"], env=slow) as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="FAST", subjects=["fast"], num_replicas=3)

            async def leader() -> str:
                try:
                    info = await js.stream_info("FAST")
                except (TimeoutError, NatsTimeout, APIError):
                    return ""
                return info.cluster.leader if info.cluster is not None else ""

            old = await acheck_for(30, leader, interval=0.2)
            victim = int(old[1:]) - 1
            if victim == 0:  # keep the client's server: move the leadership off it first
                await nc.request("$JS.API.STREAM.LEADER.STEPDOWN.FAST", b"", timeout=3)
                old = await acheck_for(30, lambda: _other_leader(leader, "n1"), interval=0.2)
                victim = int(old[1:]) - 1
            loop = asyncio.get_running_loop()
            cluster.kill(victim)
            killed = loop.time()
            new = await acheck_for(10, lambda: _other_leader(leader, old), interval=0.1)
            assert new != old
            # below the 4 s minimum election timeout: only the closed route explains it
            assert loop.time() - killed < 3.5
        finally:
            await nc.close()


async def _other_leader(leader, old: str) -> str:
    now = await leader()
    return now if now and now != old else ""


async def test_a_replicated_counter_counts_every_increment_once() -> None:
    """An R3 counter stream (ADR-49): concurrent increments each get their own running total (each
    is computed from everything before it, on the leader), and the total carries over a failover."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="CNT", subjects=["cnt.>"], num_replicas=3, allow_msg_counter=True)

            async def incr(by: int) -> int:
                reply = await nc.request("cnt.hits", b"", headers={"Nats-Incr": str(by)}, timeout=5)
                ack = json.loads(reply.data)
                assert "error" not in ack, ack
                return int(ack["val"])

            totals = await asyncio.gather(*(incr(1) for _ in range(40)))
            assert sorted(totals) == list(range(1, 41))
            nc, js, _ = await kill_stream_leader(cluster, nc, js, "CNT")

            async def after_failover() -> int | None:
                try:
                    return await incr(2)
                except (TimeoutError, NatsTimeout, NoRespondersError):
                    return None

            # (a retried increment whose first try timed out yet was stored counts twice, as on
            # nats-server: an increment without Nats-Msg-Id is not idempotent)
            total = await acheck_for(30, after_failover, interval=0.2)
            assert total >= 42 and total % 2 == 0
            last = await js.get_last_msg("CNT", "cnt.hits")
            assert last.data == b'{"val":"%d"}' % total and last.headers == {"Nats-Incr": "2"}
        finally:
            await nc.close()


@compiled_only(
    "cluster logic (Raft entries, leader-only timers), no twin-specific path; the compat tests cover the twins"
)
async def test_an_atomic_batch_on_a_replicated_stream_is_stored_whole() -> None:
    """An R3 stream with `allow_atomic` (ADR-50): batches staged on the leader while plain
    publishes go on, each committed as one Raft entry (its messages consecutive in the stream, one
    PubAck naming the batch), and all of them on the new leader after the old one is killed."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="ATOM", subjects=["atom.>"], num_replicas=3, allow_atomic=True)

            async def batch(name: str, size: int) -> dict:
                for n in range(1, size):
                    hdrs = {"Nats-Batch-Id": name, "Nats-Batch-Sequence": str(n)}
                    reply = await nc.request(f"atom.{name}", b"%d" % n, headers=hdrs, timeout=5)
                    assert reply.data == b"", reply.data
                    await nc.publish("atom.plain", b"between")
                hdrs = {"Nats-Batch-Id": name, "Nats-Batch-Sequence": str(size), "Nats-Batch-Commit": "1"}
                reply = await nc.request(f"atom.{name}", b"%d" % size, headers=hdrs, timeout=5)
                return json.loads(reply.data)

            acks = await asyncio.gather(batch("one", 20), batch("two", 30))
            assert [(a["batch"], a["count"]) for a in acks] == [("one", 20), ("two", 30)], acks
            # an unknown batch's commit is incomplete, a second commit of a done batch too
            hdrs = {"Nats-Batch-Id": "one", "Nats-Batch-Sequence": "21", "Nats-Batch-Commit": "1"}
            reply = json.loads((await nc.request("atom.one", b"", headers=hdrs, timeout=5)).data)
            assert reply["error"]["err_code"] == 10176

            async def positions(js) -> dict[str, list[int]]:
                found: dict[str, list[int]] = {"one": [], "two": []}
                info = await js.stream_info("ATOM")
                for seq in range(1, info.state.last_seq + 1):
                    msg = await js.get_msg("ATOM", seq)
                    if msg.subject != "atom.plain":
                        found[msg.subject[5:]].append(seq)
                return found

            await nc.flush()
            before = await positions(js)
            for name, ack in zip(("one", "two"), acks, strict=True):
                seqs = before[name]
                assert seqs == list(range(ack["seq"] - len(seqs) + 1, ack["seq"] + 1)), (name, seqs, ack)
            nc, js, _ = await kill_stream_leader(cluster, nc, js, "ATOM")

            async def new_leader() -> dict | None:
                try:
                    return await positions(js)
                except (TimeoutError, NatsTimeout, NoRespondersError, APIError):
                    return None

            assert await acheck_for(30, new_leader, interval=0.3) == before
        finally:
            await nc.close()


@compiled_only(
    "cluster logic (Raft entries, leader-only timers), no twin-specific path; the compat tests cover the twins"
)
async def test_message_schedules_on_a_replicated_stream_fire_once_from_the_leader() -> None:
    """An R3 stream with `allow_msg_schedules` (ADR-51): only the leader fires a schedule (one
    produced message per period, never one per replica), an `@at` schedule fires once and is
    purged, and an `@every` schedule keeps firing from the new leader after the old one is killed."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="SCHED", subjects=["sched.>"], num_replicas=3, allow_msg_schedules=True)
            every = {"Nats-Schedule": "@every 1s", "Nats-Schedule-Target": "sched.tick"}
            ack = json.loads((await nc.request("sched.every", b"tick", headers=every, timeout=5)).data)
            assert "error" not in ack, ack
            soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
            once = {"Nats-Schedule": f"@at {soon}", "Nats-Schedule-Target": "sched.once"}
            ack = json.loads((await nc.request("sched.at", b"once", headers=once, timeout=5)).data)
            assert "error" not in ack, ack

            async def ticks(js) -> list[float]:
                info = await js.stream_info("SCHED", subjects_filter="sched.>")
                found = []
                for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                    try:
                        msg = await js.get_msg("SCHED", seq)
                    except APIError:
                        continue  # purged or rolled up
                    if msg.subject == "sched.tick":
                        found.append(msg.seq)
                return found

            async def settled():
                info = await js.stream_info("SCHED", subjects_filter="sched.>")
                subjects = info.state.subjects or {}
                return subjects if subjects.get("sched.tick", 0) >= 3 and "sched.at" not in subjects else None

            subjects = await acheck_for(15, settled, interval=0.3)
            assert subjects.get("sched.once") == 1 and subjects.get("sched.every") == 1
            start = time.monotonic()
            before = len(await ticks(js))
            await asyncio.sleep(2.0)
            fired = len(await ticks(js)) - before
            assert 1 <= fired <= 1 + int(time.monotonic() - start + 0.5), fired  # once per second, not per replica
            nc, js, _ = await kill_stream_leader(cluster, nc, js, "SCHED")

            async def ticking_again() -> bool:
                try:
                    return len(await ticks(js)) >= before + fired + 2 or None
                except (TimeoutError, NatsTimeout, NoRespondersError, APIError):
                    return None

            assert await acheck_for(30, ticking_again, interval=0.5)
        finally:
            await nc.close()


@compiled_only(
    "cluster logic (Raft entries, leader-only timers), no twin-specific path; the compat tests cover the twins"
)
async def test_a_fast_batch_on_a_replicated_stream() -> None:
    """Fast batch publish (`allow_batched`) on an R3 stream: the messages are proposed as they come,
    flow-control acks report what the group stored, and the PubAck counts the whole batch."""
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[1])
        try:
            js = nc.jetstream(timeout=3)
            await add_stream(js, name="FAST", subjects=["fast.>"], num_replicas=3, allow_batched=True)
            replies: list[dict] = []
            done = asyncio.get_running_loop().create_future()

            async def on_reply(msg) -> None:
                body = json.loads(msg.data)
                replies.append(body)
                if "batch" in body and not done.done():
                    done.set_result(body)

            await nc.subscribe("fbin.>", cb=on_reply)
            total = 60
            for n in range(1, total + 1):
                op = 0 if n == 1 else (2 if n == total else 1)
                await nc.publish(f"fast.{n % 3}", b"m%d" % n, reply=f"fbin.run.10.fail.{n}.{op}.$FI")
            ack = await asyncio.wait_for(done, 10)
            assert (ack["batch"], ack["count"]) == ("run", total), ack
            acked = [r["seq"] for r in replies if r.get("type") == "ack"]
            assert acked[0] == 0 and acked == sorted(acked) and acked[-1] >= total - 10, replies
            assert not [r for r in replies if r.get("type") in ("gap", "err")], replies
            info = await js.stream_info("FAST")
            assert info.state.messages == total and ack["seq"] == info.state.last_seq
        finally:
            await nc.close()
