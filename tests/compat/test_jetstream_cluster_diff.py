"""Differential tests of clustered JetStream: the same `$JS.API` script against a three-node jsedge
cluster and a three-node nats-server 2.15.1 cluster, through a client on the first node. Answers must
be equal once times, ids, leader names, peer ids and the replicas' momentary progress are masked (the
`cluster` block is compared by shape: name, group kind, leader present, replica count).

Consumers are scripted on an R1 stream and on an R3 stream, whose durable consumers get their own
Raft group (C-R3F) on both servers."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import Cluster

pytestmark = [pytest.mark.compat, pytest.mark.timeout(180)]

FAST = {"JSEDGE_RAFT_HEARTBEAT": "0.2", "JSEDGE_RAFT_ELECTION": "0.8-1.6", "JSEDGE_RAFT_LOST_QUORUM": "2.5"}
API = "$JS.API."
_TIMES = ("created", "ts", "first_ts", "last_ts", "time", "leader_since", "last_active")


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "cluster" and isinstance(item, dict):
                out[key] = _cluster_shape(item)
            elif key in _TIMES and isinstance(item, str):
                out[key] = "T"
            elif key == "alternates" and isinstance(item, list):
                out[key] = sorted(item, key=json.dumps)  # nats-server's order follows a Go map
            elif key == "active" and isinstance(item, int):
                out[key] = "D"  # a mirror's or source's time since its last contact (-1: none yet)
            elif key == "api" and isinstance(item, dict):
                out[key] = {k: v for k, v in item.items() if k not in ("total", "errors")}
            else:
                out[key] = _mask(item)
        return out
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


def _cluster_shape(block: dict[str, Any]) -> dict[str, Any]:
    shape: dict[str, Any] = {"name": block.get("name"), "leader": bool(block.get("leader"))}
    group = block.get("raft_group")
    if group:
        shape["raft_group"] = re.sub(r"-[0-9A-Za-z]{8}$", "-*", group)
        shape["system_account"] = block.get("system_account")
        shape["traffic_account"] = block.get("traffic_account")
        shape["replicas"] = len(block.get("replicas") or [])
    return shape


def _body(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode() if body is not None else b""


async def _wait_for_meta(nc: Any) -> None:
    """Poll until the meta group has a leader (account info answers without 10008)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        try:
            msg = await nc.request(API + "INFO", b"", timeout=1)
            if b'"error"' not in msg.data:
                return
        except (NatsTimeout, NoRespondersError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the meta group never elected a leader")


async def _leader(nc: Any, stream: str) -> str:
    try:
        msg = await nc.request(API + "STREAM.INFO." + stream, b"", timeout=1)
    except (NatsTimeout, NoRespondersError):
        return ""
    return str((json.loads(msg.data).get("cluster") or {}).get("leader") or "")


async def _stepdown(nc: Any, stream: str) -> str:
    """STREAM.LEADER.STEPDOWN, then poll until another server leads: both servers answer the
    request before the hand-over completes, and a request sent in between goes unanswered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    old = ""
    while not old and loop.time() < deadline:
        old = await _leader(nc, stream)
    msg = await nc.request(API + "STREAM.LEADER.STEPDOWN." + stream, b"", timeout=5)
    while loop.time() < deadline:
        now = await _leader(nc, stream)
        if now and now != old and await _leader(nc, stream) == now:
            return msg.data.decode()
        await asyncio.sleep(0.1)
    raise AssertionError(f"stream {stream} never elected another leader")


async def _settle(nc: Any, stream: str, messages: int) -> bool:
    """Poll STREAM.INFO until the stream (a mirror or a stream with sources) holds `messages`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        try:
            msg = await nc.request(API + "STREAM.INFO." + stream, b"", timeout=1)
            document = json.loads(msg.data)
            if (document.get("state") or {}).get("messages") == messages:
                return True
        except (NatsTimeout, NoRespondersError, ValueError):
            pass
        await asyncio.sleep(0.2)
    return False


async def _until_state(nc: Any, subject: str, body: Any, messages: int) -> Any:
    """Send an idempotent request until its answer's `state` holds `messages` (deadline 30 s).
    nats-server answers a repeated stream create from whichever replica processes the equal
    assignment, whose applied state may trail the leader's for a moment (seen in CI)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        msg = await nc.request(subject, _body(body), timeout=5)
        document = json.loads(msg.data)
        if (document.get("state") or {}).get("messages") == messages or loop.time() > deadline:
            return msg
        await asyncio.sleep(0.1)


async def _publish(nc: Any, subject: str, body: Any) -> Any:
    """A publish to a stream's subject, again while nobody answers (deadline 10 s): right after a
    stream is created, its leader's interest may not have reached this node yet (nats-server,
    seen under load). Nothing is stored by a publish nobody heard, so a retry changes nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            return await nc.request(subject, _body(body), timeout=5)
        except NoRespondersError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _run(url: str, script: list[tuple[Any, ...]]) -> list[str]:
    nc = await nats.connect(url, connect_timeout=3)
    out = []
    try:
        await _wait_for_meta(nc)
        for subject, body, *until in script:
            if subject == "stepdown":
                out.append(f"stepdown {await _stepdown(nc, body)}")
                continue
            if subject == "settle":
                out.append(f"settle {await _settle(nc, *body)}")
                continue
            try:
                if until:
                    msg = await _until_state(nc, subject, body, until[0])
                elif not subject.startswith("$JS."):
                    msg = await _publish(nc, subject, body)
                else:
                    msg = await nc.request(subject, _body(body), timeout=5)
                try:
                    document = json.loads(msg.data)
                except ValueError:
                    out.append(f"{subject} {msg.data!r}")
                    continue
                out.append(f"{subject} {json.dumps(_mask(document))}")
            except NoRespondersError:
                out.append(f"{subject} no-responders")
            except NatsTimeout:
                out.append(f"{subject} timeout")
    finally:
        await nc.close()
    return out


def _both(script: list[tuple[Any, ...]], config: Any = None) -> tuple[list[str], list[str]]:
    results = []
    for kind in ("nats", "jsedge"):
        with Cluster([kind] * 3, extra_args=["-js", "-sd", "js"], env=FAST, config=config) as cluster:
            cluster.wait_mesh()
            try:
                results.append(asyncio.run(_run(cluster[0].url, script)))
            except AssertionError as exc:
                # say which server failed, with what its nodes logged last
                logs = "\n".join(f"n{i + 1}: {line}" for i in range(3) for line in cluster[i].log_lines()[-15:])
                raise AssertionError(f"{kind}: {exc}\n{logs}") from exc
    return results[0], results[1]


def _assert_same(script: list[tuple[Any, ...]], config: Any = None) -> None:
    expected, actual = _both(script, config)
    mismatches = [f"nats:   {want}\njsedge: {got}" for want, got in zip(expected, actual) if want != got]
    assert not mismatches, "\n\n".join(mismatches)
    assert len(expected) == len(actual) == len(script)


def test_replicated_stream_api_diff() -> None:
    orders = {"name": "ORDERS", "subjects": ["orders.>"], "num_replicas": 3}
    _assert_same(
        [
            (API + "INFO", None),
            (API + "STREAM.CREATE.ORDERS", orders),
            ("orders.1", b"hello"),
            ("orders.2", b"world"),
            (API + "STREAM.INFO.ORDERS", None),
            (API + "STREAM.CREATE.ORDERS", orders),  # idempotent
            (API + "STREAM.CREATE.ORDERS", {**orders, "num_replicas": 1}),  # 10058
            (API + "STREAM.CREATE.BIG", {"name": "BIG", "subjects": ["big"], "num_replicas": 5}),  # 10005
            (API + "STREAM.CREATE.MEM", {"name": "MEM", "subjects": ["mem"], "num_replicas": 2, "storage": "memory"}),
            (API + "STREAM.CREATE.OVER", {"name": "OVER", "subjects": ["orders.x"], "num_replicas": 3}),  # 10065
            (API + "STREAM.UPDATE.ORDERS", {**orders, "max_msgs": 100}),
            (API + "STREAM.NAMES", None),
            (API + "STREAM.LIST", None),
            (API + "STREAM.MSG.GET.ORDERS", {"seq": 1}),
            (API + "STREAM.MSG.GET.ORDERS", {"seq": 9}),  # 10037
            (API + "STREAM.MSG.DELETE.ORDERS", {"seq": 1}),
            (API + "STREAM.INFO.ORDERS", None),
            ("stepdown", "ORDERS"),
            (API + "STREAM.PEER.REMOVE.ORDERS", None),  # 10003
            (API + "STREAM.PEER.REMOVE.ORDERS", {"peer": "n9"}),  # 10040
            (API + "STREAM.PEER.REMOVE.ORDERS", {"peer": "n2"}),  # a member, no spare server: 10075
            (API + "STREAM.PURGE.ORDERS", None),
            (API + "STREAM.DELETE.ORDERS", None),
            (API + "STREAM.INFO.ORDERS", None),  # 10059
            (API + "STREAM.DELETE.MEM", None),
            (API + "STREAM.INFO.MEM", None),  # 10059 (names may lag in nats-server)
        ]
    )


def test_consumer_api_on_a_cluster_diff() -> None:
    one = {"name": "ONE", "subjects": ["one.>"], "num_replicas": 1}
    durable = {"stream_name": "ONE", "config": {"durable_name": "D", "ack_policy": "explicit"}}
    _assert_same(
        [
            (API + "STREAM.CREATE.ONE", one),
            ("one.a", b"1"),
            ("one.b", b"2"),
            (API + "CONSUMER.CREATE.ONE.D", durable),
            (API + "CONSUMER.CREATE.ONE.D", durable),  # idempotent
            (API + "CONSUMER.INFO.ONE.D", None),
            (API + "CONSUMER.NAMES.ONE", None),
            (API + "CONSUMER.LIST.ONE", None),
            (API + "CONSUMER.INFO.ONE.NOPE", None),  # 10014
            (API + "CONSUMER.CREATE.NOSTREAM.D", {"stream_name": "NOSTREAM", "config": {"durable_name": "D"}}),
            (API + "STREAM.INFO.ONE", None),
            (API + "CONSUMER.DELETE.ONE.D", None),
            (API + "CONSUMER.INFO.ONE.D", None),  # 10014 once deleted (names may lag in nats-server)
            (API + "STREAM.DELETE.ONE", None),
        ]
    )


def test_replicated_consumer_api_diff() -> None:
    """Consumers of an R3 stream: durables are replicated (C-R3F), a consumer may ask for one replica,
    an ephemeral of a limits stream is R1; info, stepdown (with a preferred server that is no member)
    and delete answer alike."""
    three = {"name": "TRI", "subjects": ["tri.>"], "num_replicas": 3}
    durable = {"stream_name": "TRI", "config": {"durable_name": "D", "ack_policy": "explicit"}}
    single = {"stream_name": "TRI", "config": {"durable_name": "S", "ack_policy": "explicit", "num_replicas": 1}}
    mem = {"stream_name": "TRI", "config": {"durable_name": "M", "ack_policy": "explicit", "mem_storage": True}}
    too_many = {"stream_name": "TRI", "config": {"durable_name": "X", "num_replicas": 5}}
    _assert_same(
        [
            (API + "STREAM.CREATE.TRI", three),
            ("tri.a", b"1"),
            ("tri.b", b"2"),
            (API + "CONSUMER.CREATE.TRI.D", durable),
            (API + "CONSUMER.INFO.TRI.D", None),
            (API + "CONSUMER.CREATE.TRI.S", single),
            (API + "CONSUMER.INFO.TRI.S", None),
            (API + "CONSUMER.CREATE.TRI.M", mem),
            (API + "CONSUMER.CREATE.TRI.X", too_many),
            (API + "CONSUMER.LEADER.STEPDOWN.TRI.D", b'{"placement":{"preferred":"nowhere"}}'),
            (API + "CONSUMER.LEADER.STEPDOWN.TRI.D", b'{"placement":{"tags":["nowhere"]}}'),
            (API + "STREAM.LEADER.STEPDOWN.TRI", b'{"placement":{"preferred":"nowhere"}}'),
            (API + "STREAM.LEADER.STEPDOWN.TRI", b'{"placement":{"tags":["nowhere"]}}'),
            (API + "CONSUMER.LEADER.STEPDOWN.TRI.S", None),  # R1: nothing to step down from
            (API + "CONSUMER.DELETE.TRI.D", None),
            (API + "CONSUMER.INFO.TRI.D", None),
            (API + "STREAM.DELETE.TRI", None),
        ]
    )


def test_placement_by_server_tags_diff() -> None:
    """`server_tags` per server and `placement.tags` (with `!` to exclude), and nats-server's error
    text naming the tags that were not matched or were excluded."""
    tags = ["az:1", "az:2", "az:2"]

    def config(index: int) -> str:
        return f'server_tags: ["{tags[index]}", "Rack:A"]\n'

    def stream(name: str, replicas: int, *wanted: str) -> tuple[str, Any]:
        body = {"name": name, "subjects": [name.lower()], "num_replicas": replicas, "placement": {"tags": list(wanted)}}
        return (API + "STREAM.CREATE." + name, body)

    _assert_same(
        [
            stream("TWO", 2, "az:2"),
            stream("THREE", 3, "az:2"),  # only two servers have it
            stream("ONE", 1, "!az:2"),
            stream("EXCL", 2, "!az:2"),  # only one server lacks it
            stream("CASE", 3, "rack:a"),  # tags compare without case
            stream("NONE", 1, "az:9"),
        ],
        config,
    )


def test_unique_tag_placement_diff() -> None:
    """`jetstream { unique_tag: az }`: replicas go to servers with different az:* tags; R3 over two
    zones fails with nats-server's "server tag not unique"."""
    zones = ["az:1", "az:2", "az:2"]

    def config(index: int) -> str:
        return f'server_tags: ["{zones[index]}"]\njetstream {{ unique_tag: "az" }}\n'

    def stream(name: str, replicas: int, *wanted: str) -> tuple[str, Any]:
        body: dict[str, Any] = {"name": name, "subjects": [name.lower()], "num_replicas": replicas}
        if wanted:
            body["placement"] = {"tags": list(wanted)}
        return (API + "STREAM.CREATE." + name, body)

    _assert_same(
        [
            stream("TWO", 2),
            stream("THREE", 3),  # two zones only
            stream("NAMED", 2, "az:2"),  # naming a unique-prefixed tag turns the rule off
        ],
        config,
    )


def test_mirror_and_sources_on_a_cluster_diff() -> None:
    """An R3 mirror and an R3 stream with a filtered source of an R3 origin: create answers, info
    with the `mirror`/`sources` blocks once copied, the copies, the origin's info and consumer names
    (the internal consumers are not listed), the config checks, delete."""
    orig = {"name": "ORIG", "subjects": ["orig.>"], "num_replicas": 3, "max_msg_size": 1024}
    mirror = {"name": "MIR", "mirror": {"name": "ORIG"}, "num_replicas": 3}
    agg = {
        "name": "AGG",
        "subjects": ["agg"],
        "sources": [{"name": "ORIG", "filter_subject": "orig.a"}],
        "num_replicas": 3,
    }
    small = {"name": "SMALL", "mirror": {"name": "ORIG"}, "num_replicas": 3, "max_msg_size": 10}
    cycle = {**orig, "sources": [{"name": "AGG"}]}
    _assert_same(
        [
            (API + "STREAM.CREATE.ORIG", orig),
            ("orig.a", b"1"),
            ("orig.b", b"2"),
            ("orig.a", b"3"),
            (API + "STREAM.CREATE.MIR", mirror),
            (API + "STREAM.CREATE.AGG", agg),
            ("settle", ("MIR", 3)),
            ("settle", ("AGG", 2)),
            (API + "STREAM.INFO.MIR", None),
            (API + "STREAM.INFO.AGG", None),
            (API + "STREAM.MSG.GET.MIR", {"seq": 2}),
            ("orig.b", b"4"),
            ("settle", ("MIR", 4)),
            (API + "STREAM.MSG.GET.MIR", {"seq": 4}),
            (API + "STREAM.INFO.ORIG", None),
            (API + "CONSUMER.NAMES.ORIG", None),
            (API + "STREAM.CREATE.SMALL", small),  # 10030
            (API + "STREAM.UPDATE.ORIG", cycle),  # 10052 detected cycle
            ("mir.x", b"no"),  # a mirror takes no publishes
            (API + "STREAM.DELETE.MIR", None),
            (API + "STREAM.DELETE.AGG", None),
        ]
    )


async def _ephemeral_across_restart(cluster: Cluster) -> list[str]:
    """An ephemeral pull consumer of an R3 stream fetches two and acks one; its server restarts."""
    out: list[str] = []
    nc = await nats.connect(cluster[0].url, connect_timeout=3)
    try:
        await _wait_for_meta(nc)
        await nc.request(API + "STREAM.CREATE.EPH", _body({"name": "EPH", "subjects": ["eph.>"], "num_replicas": 3}), 5)
        for i in range(3):
            for _ in range(50):
                try:
                    await nc.request("eph.a", b"%d" % i, timeout=1)
                    break
                except (NatsTimeout, NoRespondersError):
                    await asyncio.sleep(0.2)
        config = {"ack_policy": "explicit", "inactive_threshold": 120_000_000_000}
        created = json.loads(
            (await nc.request(API + "CONSUMER.CREATE.EPH", _body({"stream_name": "EPH", "config": config}), 5)).data
        )
        name, host = created["name"], created["cluster"]["leader"]
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        # pull until two arrived: a request sent as the new consumer's leader settles can go
        # unanswered for a while (seen on nats-server's side under load), so it is sent again
        got: list[Any] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < 2:
            # each request expires (2 s) before the next is sent: never two pending at once
            pull = b'{"batch":%d,"expires":2000000000}' % (2 - len(got))
            await nc.publish(API + "CONSUMER.MSG.NEXT.EPH." + name, pull, reply=inbox)
            try:
                while len(got) < 2:
                    msg = await sub.next_msg(2.5)
                    if msg.reply and msg.reply.startswith("$JS.ACK."):
                        got.append(msg)
            except NatsTimeout:
                if asyncio.get_running_loop().time() > deadline:
                    raise
        await nc.request(got[0].reply, b"+ACK", timeout=5)
    finally:
        await nc.close()
    index = int(host[1:]) - 1
    cluster[index].stop()
    cluster.restart(index)
    cluster.wait_mesh(30)
    nc = await nats.connect(cluster[0].url, connect_timeout=3)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        info: dict[str, Any] = {}
        while loop.time() < deadline:
            try:
                info = json.loads((await nc.request(API + "CONSUMER.INFO.EPH." + name, b"", timeout=1)).data)
                if "error" not in info:
                    break
            except (NatsTimeout, NoRespondersError):
                pass
            await asyncio.sleep(0.2)
        keys = ("num_pending", "num_ack_pending", "delivered", "ack_floor", "error")
        out.append(json.dumps({k: info.get(k) for k in keys}, sort_keys=True))
        names = json.loads((await nc.request(API + "CONSUMER.NAMES.EPH", b"", timeout=5)).data)
        out.append(json.dumps([n == name for n in names.get("consumers") or []]))
    finally:
        await nc.close()
    return out


def test_an_ephemeral_consumer_of_a_clustered_stream_keeps_its_state_across_a_restart_diff() -> None:
    """As nats-server: the meta group brings the ephemeral back on its server, with what it had
    delivered and acknowledged (it used to start over, delivering acknowledged messages again)."""
    results = []
    for kind in ("nats", "jsedge"):
        with Cluster([kind] * 3, extra_args=["-js", "-sd", "js"], env=FAST) as cluster:
            cluster.wait_mesh()
            results.append(asyncio.run(_ephemeral_across_restart(cluster)))
    assert results[0] == results[1]
    assert '"stream_seq": 1' in results[1][0]
