"""Monitoring of clustered JetStream against nats-server 2.15: `/jsz` meta_cluster, `/varz`
jetstream.meta, the stream `cluster` blocks of `/jsz?streams=true` (and `raft=true`), `/healthz` with
its clustered checks, and `/healthz` once the meta group lost its quorum (spec/monitoring.md §2 and
§9, spec/clustering.md §4.6-4.7). The comparisons are of key sets and shapes: ids, times and which
server leads differ between runs."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from typing import Any

import nats
import pytest
from helpers import Cluster, acheck_for, check_for, http_json
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

#: Raft timing for jsedge: nats-server's shape, ten times faster (nats-server ignores it).
FAST = {"JSEDGE_RAFT_HEARTBEAT": "0.2", "JSEDGE_RAFT_ELECTION": "0.8-1.6", "JSEDGE_RAFT_LOST_QUORUM": "2.5"}


def http_get(server: Any, path: str) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body) of a monitoring request, error statuses included."""
    url = f"http://127.0.0.1:{server.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def meta_of(server: Any) -> dict[str, Any]:
    return http_json(server, "/jsz").get("meta_cluster") or {}


def settled(cluster: Cluster) -> bool:
    """Every node knows the meta leader, and the leader sees all its followers current."""
    metas = [meta_of(cluster[i]) for i in range(3)]
    if not all(m.get("leader") for m in metas) or len({m["leader"] for m in metas}) != 1:
        return False
    leader = next(m for i, m in enumerate(metas) if m["leader"] == f"n{i + 1}")
    replicas = leader.get("replicas") or []
    return len(replicas) == 2 and all(r["current"] and "lag" not in r and "offline" not in r for r in replicas)


async def add_r3_stream(server: Any) -> None:
    nc = await nats.connect(server.url, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)

        async def attempt() -> Any:
            try:
                return await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
            except (TimeoutError, NatsTimeout):
                return None
            except APIError as exc:
                if exc.err_code == 10008:
                    return None
                raise

        await acheck_for(60, attempt, interval=0.2)
        for i in range(3):
            # nats-server may not route the new stream's subjects yet (no responders): retry
            async def publish(i: int = i) -> bool:
                try:
                    await js.publish("r3.x", f"m{i}".encode(), headers={"Nats-Msg-Id": f"m{i}"})
                    return True
                except (NoStreamResponseError, NatsTimeout):
                    return False

            await acheck_for(30, publish, interval=0.2)
    finally:
        await nc.close()


async def add_durable(server: Any) -> None:
    """A durable pull consumer of R3 (R3 itself) that fetched and acked one message."""
    nc = await nats.connect(server.url, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        sub = await js.pull_subscribe("r3.>", durable="D", stream="R3")

        # nats-server answers a pull to a new consumer with 503 (no responders) until the consumer
        # leader's subscription reached this server over the routes: retry
        async def fetch() -> Any:
            try:
                return await sub.fetch(1, timeout=2)
            except (ServiceUnavailableError, NatsTimeout):
                return None

        msgs = await acheck_for(30, fetch, interval=0.2)
        await msgs[0].ack_sync()
    finally:
        await nc.close()


def stream_detail(server: Any, query: str = "streams=true") -> tuple[dict[str, Any], dict[str, Any]]:
    jsz = http_json(server, f"/jsz?{query}")
    return jsz, jsz["account_details"][0]["stream_detail"][0]


def stream_settled(cluster: Cluster) -> bool:
    """The stream has one leader, known everywhere, that sees both followers current."""
    leaders = set()
    for i in range(3):
        _jsz, detail = stream_detail(cluster[i])
        if not detail["cluster"].get("leader"):
            return False
        leaders.add(detail["cluster"]["leader"])
        if detail["cluster"]["leader"] == f"n{i + 1}":
            replicas = detail["cluster"].get("replicas") or []
            if len(replicas) != 2 or not all(r["current"] and "lag" not in r for r in replicas):
                return False
    return len(leaders) == 1


def shape(kind: str) -> dict[str, Any]:
    """Start a 3-node cluster of `kind`, create an R3 stream, and describe its monitoring output."""
    with Cluster([kind] * 3, extra_args=["-js", "-sd", "js"], env=FAST) as cluster:
        cluster.wait_mesh()
        check_for(60, lambda: settled(cluster), interval=0.2)
        asyncio.run(add_r3_stream(cluster[0]))
        check_for(30, lambda: settled(cluster) and stream_settled(cluster), interval=0.2)
        out: dict[str, Any] = {}
        metas = {}
        for i in range(3):
            meta = meta_of(cluster[i])
            metas[f"n{i + 1}"] = meta
        leader = next(iter(metas.values()))["leader"]
        lmeta, fmeta = metas[leader], next(m for name, m in metas.items() if name != leader)
        out["meta_keys"] = list(lmeta)
        out["meta_snapshot_keys"] = sorted(lmeta["snapshot"])
        out["meta_sizes"] = (lmeta["cluster_size"], lmeta["quorum_needed"], lmeta["pending"])
        out["meta_leader_replicas"] = sorted(tuple(r) for r in lmeta["replicas"])
        out["meta_leader_peer_is_leader"] = lmeta["peer"] not in {r["peer"] for r in lmeta["replicas"]}
        # a follower lists every peer but itself: the leader (current) and the other follower
        names = {r["name"] for r in fmeta["replicas"]}
        follower = next(name for name in metas if name != leader and name not in names)
        out["meta_follower_view"] = (len(fmeta["replicas"]), leader in names, follower not in names)
        varz = http_json(cluster[0], "/varz")["jetstream"]
        out["varz_keys"] = list(varz)
        out["varz_meta_keys"] = list(varz["meta"])
        out["varz_ha_assets"] = varz["stats"]["ha_assets"] >= 2
        # stream details on the stream leader and on a follower
        views = {}
        for i in range(3):
            jsz, detail = stream_detail(cluster[i], "streams=true&raft=true")
            views[f"n{i + 1}"] = (jsz, detail)
        sleader = next(iter(views.values()))[1]["cluster"]["leader"]
        ljsz, ldetail = views[sleader]
        fjsz, fdetail = next(v for name, v in views.items() if name != sleader)
        out["detail_keys"] = [k for k in ldetail if k not in ("consumer_detail", "consumer_raft_groups")]
        out["leader_cluster_keys"] = list(ldetail["cluster"])
        out["follower_cluster_keys"] = list(fdetail["cluster"])
        out["leader_replica_keys"] = sorted(tuple(r) for r in ldetail["cluster"]["replicas"])
        out["follower_replicas"] = len(fdetail["cluster"]["replicas"])
        out["raft_group_matches"] = ldetail["stream_raft_group"] == ldetail["cluster"]["raft_group"]
        out["streams_leader"] = (ljsz.get("streams_leader"), fjsz.get("streams_leader"))
        out["jsz_keys"] = [k for k in ljsz if k not in ("streams_leader", "consumers_leader")]
        # plain /jsz?streams=true: no raft group names
        _jsz, plain = stream_detail(cluster[0])
        out["plain_detail_has_raft"] = "stream_raft_group" in plain
        # a replicated (R3) consumer: listed by every member, its group under consumer_raft_groups
        asyncio.run(add_durable(cluster[0]))

        def consumer_views() -> dict[str, Any] | None:
            seen = {}
            for i in range(3):
                _jsz, detail = stream_detail(cluster[i], "streams=true&consumers=true&raft=true")
                for consumer in detail.get("consumer_detail") or []:
                    if consumer["name"] == "D" and consumer.get("cluster", {}).get("leader"):
                        seen[f"n{i + 1}"] = (consumer, detail.get("consumer_raft_groups"))
            if len(seen) != 3:
                return None
            # the followers learn the delivered state from the leader's replicated updates: wait for them
            delivered = {c["delivered"]["stream_seq"] for c, _g in seen.values()}
            return seen if delivered == {1} else None

        seen = check_for(30, consumer_views, interval=0.2)
        cleader = next(iter(seen.values()))[0]["cluster"]["leader"]
        lconsumer, groups = seen[cleader]
        fconsumer = next(c for name, (c, _g) in seen.items() if name != cleader)
        out["consumer_listed_on"] = len(seen)
        out["consumer_raft_groups"] = [(g["name"], re.sub(r"-[0-9A-Za-z]{8}$", "-*", g["raft_group"])) for g in groups]
        out["consumer_leader_keys"] = sorted(k for k in lconsumer if k not in ("ts",))
        out["consumer_follower_keys"] = sorted(k for k in fconsumer if k not in ("ts",))
        out["consumer_cluster_keys"] = (sorted(lconsumer["cluster"]), sorted(fconsumer["cluster"]))
        out["consumer_delivered"] = (lconsumer["delivered"]["stream_seq"], fconsumer["delivered"]["stream_seq"])
        # /healthz, clustered checks (identical bodies on both servers)
        checks = [
            "/healthz",
            "/healthz?js-meta-only=true",
            "/healthz?js-enabled-only=true",
            "/healthz?account=%24G",
            "/healthz?account=%24G&stream=R3",
            "/healthz?account=%24G&stream=NOPE",
            "/healthz?account=NOPE",
            "/healthz?account=%24G&stream=R3&consumer=NOPE",
            "/healthz?account=%24G&stream=NOPE&details=true",
        ]
        out["healthz"] = {path: http_get(cluster[1], path) for path in checks}
        return out


@pytest.mark.timeout(300)
def test_cluster_monitoring_shapes_match_nats_server() -> None:
    expected = shape("nats")
    got = shape("jsedge")
    for key in expected:
        assert got[key] == expected[key], key
    assert expected["meta_sizes"] == (3, 2, 0)
    assert expected["healthz"]["/healthz"] == (200, {"status": "ok"})


@pytest.mark.timeout(180)
def test_healthz_reports_lost_meta_quorum() -> None:
    with Cluster(["jsedge"] * 3, extra_args=["-js", "-sd", "js"], env=FAST) as cluster:
        cluster.wait_mesh()
        check_for(60, lambda: settled(cluster), interval=0.2)
        assert http_get(cluster[0], "/healthz") == (200, {"status": "ok"})
        cluster[1].stop()
        cluster[2].stop()
        message = "JetStream has not established contact with a meta leader"

        def unhealthy() -> bool:
            return http_get(cluster[0], "/healthz") == (503, {"status": "unavailable", "error": message})

        check_for(30, unhealthy, interval=0.2)
        assert http_get(cluster[0], "/healthz?js-meta-only=true")[0] == 503
        assert http_get(cluster[0], "/healthz?js-enabled-only=true") == (200, {"status": "ok"})
        assert http_get(cluster[0], "/healthz?details=true") == (
            503,
            {"status": "error", "errors": [{"type": "JETSTREAM", "error": message}]},
        )
        meta = meta_of(cluster[0])
        assert "leader" not in meta and "peer" not in meta
        # leaderless: every peer is listed, this server included; the stopped ones offline
        replicas = {r["name"]: r for r in meta["replicas"]}
        assert set(replicas) == {"n1", "n2", "n3"}
        assert replicas["n1"]["current"] and "offline" not in replicas["n1"]
        assert replicas["n2"].get("offline") and replicas["n3"].get("offline")
        # back to a quorum: healthy again
        cluster.restart(1)
        check_for(30, lambda: http_get(cluster[0], "/healthz") == (200, {"status": "ok"}), interval=0.2)


@pytest.mark.timeout(10)
def test_cli_renders_meta_group_and_replicas() -> None:
    from jsedge.cli.server import meta_group_table
    from jsedge.cli.stream import replica_state

    meta = {
        "name": "c1",
        "leader": "n2",
        "peer": "44jzkV9D",
        "replicas": [
            {"name": "n3", "current": False, "offline": True, "active": 0, "peer": "BXScrY9i"},
            {"name": "n1", "current": True, "active": 1_500_000_000, "lag": 2, "peer": "fjFyEjc1"},
        ],
        "cluster_size": 3,
    }
    text = str(meta_group_table(meta))
    assert "RAFT Meta Group Information" in text
    lines = [line for line in text.splitlines() if line.startswith("| n")]
    assert [line.split("|")[1].strip() for line in lines] == ["n1", "n2", "n3"]
    assert "| 44jzkV9D | yes" in lines[1]
    assert "false" in lines[2].split("|")[5]  # n3 offline
    assert replica_state(meta["replicas"][1]) == "n1, current, seen 1.50s ago, 2 operations behind"
    assert replica_state(meta["replicas"][0]) == "n3, outdated, OFFLINE, not seen"
