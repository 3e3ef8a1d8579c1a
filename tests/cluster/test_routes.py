"""Routes: three-node clusters of real server processes on loopback, all jsedge or mixed with
nats-server nodes, driven by nats-py clients (and raw sockets for the route port's answers)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats
import pytest
from helpers import (
    Cluster,
    RawClient,
    ServerProcess,
    acheck_for,
    check_for,
    free_port,
    http_json,
    route_handshake,
    route_peer,
    until_pong,
)
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

pytestmark = pytest.mark.timeout(90)

MIXES = {
    "jsedge": ["jsedge", "jsedge", "jsedge"],
    "jsedge+nats": ["jsedge", "nats", "nats"],
    "nats+jsedge": ["nats", "jsedge", "jsedge"],
}


@pytest.fixture(params=list(MIXES))
def cluster(request):
    with Cluster(MIXES[request.param]) as c:
        c.wait_mesh()
        yield c


async def _connect(server: ServerProcess, **kw):
    kw.setdefault("allow_reconnect", False)
    kw.setdefault("connect_timeout", 2)
    return await nats.connect(server.url, **kw)


async def _settle(*conns) -> None:
    for conn in conns:
        await conn.flush()


async def test_traffic_across_the_mesh(cluster: Cluster) -> None:
    a, b, c = [await _connect(cluster[i]) for i in range(3)]
    try:
        plain = [await conn.subscribe("orders.>") for conn in (a, b, c)]
        await _settle(a, b, c)

        async def everyone_sees(subject: str) -> bool:
            await a.publish(subject, b"probe")
            await a.flush()
            await asyncio.sleep(0.05)
            return all(sub.pending_msgs > 0 for sub in plain[1:])

        await acheck_for(10, lambda: everyone_sees("orders.probe"))
        for sub in plain:
            while sub.pending_msgs:
                await sub.next_msg(timeout=1)
        await b.publish("orders.new", b"from b", headers={"X-Trace": "42"})
        await b.flush()
        for sub in plain:
            msg = await sub.next_msg(timeout=2)
            assert (msg.subject, msg.data, msg.headers) == ("orders.new", b"from b", {"X-Trace": "42"})

        async def echo(msg) -> None:
            await msg.respond(msg.data.upper())

        await c.subscribe("svc.upper", cb=echo)
        await c.flush()
        reply = await acheck_for(10, lambda: _request(a, "svc.upper", b"hello"))
        assert reply == b"HELLO"
        with pytest.raises(NoRespondersError):
            await a.request("svc.nobody", b"?", timeout=2)
    finally:
        for conn in (a, b, c):
            await conn.close()


async def _request(conn, subject: str, data: bytes) -> bytes | None:
    try:
        return (await conn.request(subject, data, timeout=0.5)).data
    except (NoRespondersError, NatsTimeout):
        return None


async def test_queue_groups_deliver_once_over_the_cluster(cluster: Cluster) -> None:
    """Each message reaches one member of the group, chosen over the whole cluster (nats-server
    does not prefer the publisher's server)."""
    a, b, c = [await _connect(cluster[i]) for i in range(3)]
    try:
        members = [await conn.subscribe("work", queue="workers") for conn in (a, b, c)]
        await _settle(a, b, c)

        async def all_members_known() -> bool:
            await a.publish("work", b"warm-up")
            await a.flush()
            await asyncio.sleep(0.02)
            return all(sub.pending_msgs for sub in members)

        await acheck_for(10, all_members_known)
        base = sum(sub.pending_msgs for sub in members)
        for i in range(300):
            await a.publish("work", b"%d" % i)
        await a.flush()
        await acheck_for(5, lambda: sum(sub.pending_msgs for sub in members) == base + 300)
        await asyncio.sleep(0.2)
        assert sum(sub.pending_msgs for sub in members) == base + 300  # once per message
        counts = [sub.pending_msgs for sub in members]
        assert all(count > 30 for count in counts), counts  # spread over the three servers
        await members[0].unsubscribe()
        await a.flush()

        async def remote_only() -> bool:
            await a.publish("work", b"x")
            await a.flush()
            await asyncio.sleep(0.05)
            return members[1].pending_msgs + members[2].pending_msgs > 0

        await acheck_for(10, remote_only)
        before = members[1].pending_msgs + members[2].pending_msgs
        for i in range(100):
            await a.publish("work", b"%d" % i)
        await a.flush()
        await acheck_for(5, lambda: members[1].pending_msgs + members[2].pending_msgs == before + 100)
        assert members[1].pending_msgs > 0 and members[2].pending_msgs > 0  # spread over the remote members
    finally:
        for conn in (a, b, c):
            await conn.close()


async def test_unsubscribe_withdraws_remote_interest(cluster: Cluster) -> None:
    a, b = await _connect(cluster[0]), await _connect(cluster[1])
    try:
        sub = await b.subscribe("temp.x")
        await b.flush()
        assert await acheck_for(10, lambda: _published_reaches(a, "temp.x", sub))
        await sub.unsubscribe()
        await b.flush()

        async def gone() -> bool:
            try:
                await a.request("temp.x", b"", timeout=0.3)
            except NoRespondersError:
                return True
            except NatsTimeout:
                return False
            return False

        await acheck_for(10, gone)
    finally:
        await a.close()
        await b.close()


async def _published_reaches(conn, subject: str, sub) -> bool:
    await conn.publish(subject, b"?")
    await conn.flush()
    await asyncio.sleep(0.05)
    return sub.pending_msgs > 0


def test_client_info_lists_every_member(cluster: Cluster) -> None:
    ports = {f"127.0.0.1:{cluster[i].port}" for i in range(3)}
    for i in range(3):
        with RawClient(cluster[i]) as client:
            info = client.read_info()
            assert info["cluster"] == "c1"
            assert set(info["connect_urls"]) == ports


def test_monitoring_shows_the_routes(cluster: Cluster) -> None:
    for i in range(3):
        routez = http_json(cluster[i], "/routez")
        assert {r["remote_name"] for r in routez["routes"]} == {f"n{k + 1}" for k in range(3) if k != i}
        varz = http_json(cluster[i], "/varz")
        assert varz["cluster"]["name"] == "c1" and varz["cluster"]["cluster_port"] == cluster.cluster_ports[i]
        assert varz["routes"] >= 2


async def test_node_death_clients_reconnect_and_mesh_heals() -> None:
    with Cluster(["jsedge", "jsedge", "jsedge"]) as cluster:
        cluster.wait_mesh()
        disconnected = asyncio.Event()
        reconnected = asyncio.Event()

        async def on_disconnect() -> None:
            disconnected.set()

        async def on_reconnect() -> None:
            reconnected.set()

        survivor = await _connect(cluster[2])
        roaming = await nats.connect(
            cluster[0].url,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=50,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        try:
            # the client learnt the other members from INFO
            await acheck_for(5, lambda: len(roaming.discovered_servers) >= 2)
            sub = await survivor.subscribe("still.there")
            await survivor.flush()
            assert await acheck_for(10, lambda: _published_reaches(roaming, "still.there", sub))
            port = cluster[0].port
            cluster.kill(0)
            await asyncio.wait_for(disconnected.wait(), 10)
            await asyncio.wait_for(reconnected.wait(), 15)
            assert roaming.connected_url.port != port
            assert await acheck_for(10, lambda: _published_reaches(roaming, "still.there", sub))
            cluster.start(0, port=port)
            cluster.wait_mesh(15)
        finally:
            await roaming.close()
            await survivor.close()


def test_gossip_builds_the_full_mesh_from_one_seed() -> None:
    # n1 lists nobody; n2 and n3 list only n1: gossip must connect n2 and n3.
    with Cluster(["jsedge", "jsedge", "jsedge"], routes_of=lambda i, urls: [] if i == 0 else [urls[0]]) as cluster:
        cluster.wait_mesh(15)
        routez = http_json(cluster[1], "/routez")
        assert any(r["remote_name"] == "n3" and not r["is_configured"] for r in routez["routes"]) or any(
            r["remote_name"] == "n3" for r in routez["routes"]
        )


def test_gossip_into_a_mixed_cluster() -> None:
    kinds = ["nats", "jsedge", "jsedge"]
    with Cluster(kinds, routes_of=lambda i, urls: [] if i == 0 else [urls[0]]) as cluster:
        cluster.wait_mesh(15)


# ------------------------------------------------------------------ the route port's answers


@pytest.fixture(params=["jsedge", "nats"])
def lone(request):
    port = free_port()
    server = ServerProcess(request.param, ["--cluster", f"nats://127.0.0.1:{port}", "--cluster_name", "c1"])
    server.wait_for_log("Listening for route connections", 5)  # nats-server opens it after "ready"
    server.cluster_port = port
    yield server
    server.cleanup()


def test_client_on_the_route_port(lone: ServerProcess) -> None:
    with route_peer(lone) as client:
        client.send(b'CONNECT {"verbose":false,"pedantic":false,"lang":"python3","version":"2.9"}\r\n')
        assert client.expect_closed(3)
        assert client.drain() == b"-ERR 'attempted to connect to route port'\r\n"


def test_cluster_name_mismatch(lone: ServerProcess) -> None:
    with route_peer(lone) as client:
        client.send(b'CONNECT {"echo":true,"verbose":false,"pedantic":false,"name":"NX","cluster":"other"}\r\n')
        assert client.expect_closed(3)
        assert client.drain() == b'-ERR \'Rejecting connection, cluster name "other" does not match "c1"\'\r\n'


def test_route_handshake_interest_and_messages(lone: ServerProcess) -> None:
    """A hand-made peer: it gets the server's interest as RS+, its RS+ brings the server's
    publishes as RMSG, and its RMSG reaches the server's subscribers."""
    with route_peer(lone) as peer, RawClient(lone) as local:
        local.read_info()
        local.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nSUB in.> 1\r\nSUB q.x grp 2\r\n')
        local.ping_barrier()
        route_handshake(peer)
        lines = until_pong(peer)
        assert b"RS+ $G in.>\r\n" in lines and b"RS+ $G q.x grp 1\r\n" in lines
        peer.send(b"RS+ $G out.*\r\nRS+ $G svc grp 3\r\n")
        until_pong(peer)
        local.send(b"PUB out.a r 2\r\nhi\r\nHPUB out.b 12 14\r\nNATS/1.0\r\n\r\nyo\r\nPUB svc 1\r\nx\r\n")
        local.ping_barrier()
        got = peer.read_until(b"RMSG $G svc | grp 1\r\nx\r\n", timeout=3)
        assert b"RMSG $G out.a r 2\r\nhi\r\n" in got
        assert b"HMSG $G out.b 12 14\r\nNATS/1.0\r\n\r\nyo\r\n" in got
        peer.send(b"RMSG $G in.x 5\r\nhello\r\nRMSG $G q.x | grp 1\r\nq\r\nRMSG $G q.x 1\r\nz\r\n")
        until_pong(peer)  # the server has read them all
        received = local.read_until(b"MSG q.x 2 1\r\nq\r\n", timeout=3) + local.read_all_available(0.3, 1)
        assert b"MSG in.x 1 5\r\nhello\r\n" in received
        assert received.count(b"MSG q.x 2 1\r\nq\r\n") == 1 and b"z" not in received  # queue only when named
        peer.send(b"RMSG NOSUCHACCOUNT in.x 1\r\nx\r\n")  # ignored, the route stays up
        assert until_pong(peer).endswith(b"PONG\r\n")


@pytest.mark.parametrize(
    "frame",
    [b"RMSG $G 5\r\nhello\r\n", b"RMSG $G a.b x y 1\r\nz\r\n", b"HMSG $G a 6 5\r\nxxxxx\r\n"],
)
def test_malformed_routed_messages_close_the_route(lone: ServerProcess, frame: bytes) -> None:
    with route_peer(lone) as peer:
        route_handshake(peer)
        until_pong(peer)
        peer.send(frame)
        assert peer.expect_closed(3)


def test_unknown_op_on_a_route(lone: ServerProcess) -> None:
    with route_peer(lone) as peer:
        route_handshake(peer)
        until_pong(peer)
        peer.send(b"XYZ\r\n")
        assert peer.expect_closed(3)
        assert peer.drain().endswith(b"-ERR 'Unknown Protocol Operation'\r\n")


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_route_authorization(kind: str) -> None:
    port = free_port()
    config = f"cluster {{ name: c1, listen: 127.0.0.1:{port}, authorization {{ user: ru, password: rp }} }}\n"
    with ServerProcess(kind, config=config) as server:
        server.wait_for_log("Listening for route connections", 5)
        with RawClient(port) as peer:
            info = peer.read_info()
            assert info["auth_required"] is True
            peer.send(
                b'CONNECT {"echo":true,"verbose":false,"pedantic":false,"user":"ru","pass":"bad","name":"NX","cluster":"c1"}\r\n'
            )
            assert peer.expect_closed(3)
            assert peer.drain() == b"-ERR 'Authorization Violation'\r\n"
        with RawClient(port) as peer:
            peer.read_info()
            peer.send(
                b'CONNECT {"echo":true,"verbose":false,"pedantic":false,"user":"ru","pass":"rp","name":"NX","cluster":"c1"}\r\n'
            )
            assert until_pong(peer).endswith(b"PONG\r\n")


def test_two_nodes_with_route_credentials() -> None:
    ports = [free_port(), free_port()]

    def config(i: int) -> str:
        other = ports[1 - i]
        return (
            f"server_name: n{i + 1}\ncluster {{ name: c1, listen: 127.0.0.1:{ports[i]}, "
            f"authorization {{ user: ru, password: rp }}, routes: [nats-route://ru:rp@127.0.0.1:{other}] }}\n"
        )

    servers = [ServerProcess("jsedge", config=config(i), http=True) for i in range(2)]
    try:
        check_for(10, lambda: all(http_json(s, "/routez")["num_routes"] == 1 for s in servers))
    finally:
        for server in servers:
            server.cleanup()


def test_self_route_is_dropped_without_retrying() -> None:
    port = free_port()
    server = ServerProcess(
        "jsedge",
        ["--cluster", f"nats://127.0.0.1:{port}", "--cluster_name", "c1", "--routes", f"nats-route://127.0.0.1:{port}"],
        http=True,
    )
    try:
        server.wait_for_log("Duplicate Route", 5)
        time.sleep(1.5)
        assert sum("Route connection created" in line for line in server.log_lines()) == 2  # one dial, one accept
        assert http_json(server, "/routez")["num_routes"] == 0
    finally:
        server.cleanup()


async def test_clustered_jetstream_answers_once_from_any_node(tmp_path) -> None:
    """With routes, JetStream is clustered: a stream created through one node is listed through the
    other, and an API request gets one answer, never one from every node."""
    env = {"JSEDGE_RAFT_HEARTBEAT": "0.2", "JSEDGE_RAFT_ELECTION": "0.8-1.6", "JSEDGE_RAFT_LOST_QUORUM": "2.5"}
    with Cluster(["jsedge", "jsedge"], extra_args=["-js", "-sd", "js"], env=env) as cluster:
        cluster.wait_mesh()
        a, b = await _connect(cluster[0]), await _connect(cluster[1])
        try:
            js_a = a.jetstream(timeout=2)

            async def create():
                try:
                    return await js_a.add_stream(name="ONLY_A", subjects=["only.a"])
                except Exception:
                    return None  # the meta group is still electing its first leader

            await acheck_for(30, create, interval=0.2)
            inbox = b.new_inbox()
            answers = await b.subscribe(inbox)
            await b.publish("$JS.API.STREAM.NAMES", b"", reply=inbox)
            first = json.loads((await answers.next_msg(timeout=3)).data)
            assert first["streams"] == ["ONLY_A"]
            with pytest.raises(NatsTimeout):
                await answers.next_msg(timeout=0.5)  # one answer only
        finally:
            await a.close()
            await b.close()


ACCOUNTS = """
accounts {
  A: { users: [ {user: a, password: a} ] }
  B: { users: [ {user: b, password: b} ] }
}
"""


def _node_config(index: int, ports: list[int], extra: str = "", routes: list[int] | None = None, tls: str = "") -> str:
    listed = ports if routes is None else routes
    urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in listed)
    return (
        f"server_name: n{index + 1}\n{extra}\n"
        f"cluster {{ name: c1, listen: 127.0.0.1:{ports[index]}, routes: [{urls}]\n  {tls} }}\n"
    )


@pytest.mark.parametrize("kinds", [["jsedge", "jsedge"], ["jsedge", "nats"]])
async def test_accounts_stay_isolated_across_the_cluster(kinds: list[str]) -> None:
    ports = [free_port(), free_port()]
    servers = [ServerProcess(kind, config=_node_config(i, ports, ACCOUNTS), http=True) for i, kind in enumerate(kinds)]
    try:
        check_for(10, lambda: all(http_json(s, "/routez")["num_routes"] >= 1 for s in servers))
        a_there = await _connect(servers[1], user="a", password="a")
        b_there = await _connect(servers[1], user="b", password="b")
        a_here = await _connect(servers[0], user="a", password="a")
        try:
            sub_a = await a_there.subscribe("shared.subject")
            sub_b = await b_there.subscribe("shared.subject")
            await _settle(a_there, b_there)
            assert await acheck_for(10, lambda: _published_reaches(a_here, "shared.subject", sub_a))
            await asyncio.sleep(0.2)
            assert sub_b.pending_msgs == 0  # account B never sees account A's traffic
        finally:
            for conn in (a_there, b_there, a_here):
                await conn.close()
    finally:
        for server in servers:
            server.cleanup()


def _async_info(client: RawClient) -> dict[str, Any]:
    """The next async INFO a protocol-1 client gets, skipping the one-off `connect_info` INFO that
    follows its first PONG."""
    while True:
        line = client.read_until(b"\r\n", timeout=10)
        assert line.startswith(b"INFO "), line
        info: dict[str, Any] = json.loads(line[5:-3])
        if not info.get("connect_info"):
            return info


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_clients_learn_of_joining_and_leaving_members(kind: str) -> None:
    with Cluster([kind, kind, kind], start=False) as cluster:
        cluster.start(0)
        with RawClient(cluster[0]) as client:
            info = client.read_info()
            assert "connect_urls" not in info  # nats-server lists URLs once a peer brought some
            client.send(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n')
            client.ping_barrier()
            cluster.start(1)
            update = _async_info(client)
            assert set(update["connect_urls"]) == {f"127.0.0.1:{cluster[0].port}", f"127.0.0.1:{cluster[1].port}"}
            cluster.kill(1)
            update = _async_info(client)
            assert update["connect_urls"] == [f"127.0.0.1:{cluster[0].port}"]


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_lame_duck_node_is_dropped_from_peers_client_lists(kind: str) -> None:
    import signal

    with Cluster([kind, kind]) as cluster:
        cluster.wait_mesh()
        with RawClient(cluster[0]) as peer_client, RawClient(cluster[1]) as ldm_client:
            for client in (peer_client, ldm_client):
                client.read_info()
                client.send(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n')
                client.ping_barrier()
            cluster[1].signal(signal.SIGUSR2)
            ldm = _async_info(ldm_client)
            assert ldm["ldm"] is True
            assert ldm["connect_urls"] == [f"127.0.0.1:{cluster[0].port}"]  # only the others
            update = _async_info(peer_client)
            assert update["connect_urls"] == [f"127.0.0.1:{cluster[0].port}"]


def test_reload_adds_and_removes_routes() -> None:
    import signal

    ports = [free_port(), free_port()]
    first = ServerProcess("jsedge", config=_node_config(0, ports, routes=[]), http=True)
    second = ServerProcess("jsedge", config=_node_config(1, ports, routes=[]), http=True)
    try:
        assert http_json(first, "/routez")["num_routes"] == 0
        assert first.config_path is not None
        first.config_path.write_text(_node_config(0, ports, routes=[ports[1]]))
        mark = first.log_mark()
        first.signal(signal.SIGHUP)
        first.wait_for_log("Reloaded: cluster.routes", 5, since=mark)
        check_for(10, lambda: http_json(first, "/routez")["num_routes"] == 1)
        first.config_path.write_text(_node_config(0, ports, routes=[]))
        mark = first.log_mark()
        first.signal(signal.SIGHUP)
        first.wait_for_log("Router connection closed: Route Removed", 5, since=mark)
        check_for(10, lambda: http_json(second, "/routez")["num_routes"] == 0)
    finally:
        first.cleanup()
        second.cleanup()


@pytest.mark.parametrize("kinds", [["jsedge", "jsedge"], ["jsedge", "nats"], ["nats", "jsedge"]])
async def test_routes_over_tls(kinds: list[str], tmp_path) -> None:
    """`cluster { tls { } }`: mutual TLS from the first byte, with nats-server nodes too; a plain
    peer on the TLS route port gets nothing but a failed handshake."""
    from helpers import make_tls_files

    tls = make_tls_files(tmp_path)
    block = tls.server_config(verify=True, timeout=2).replace("\n", "\n  ")
    ports = [free_port(), free_port()]
    servers = [
        ServerProcess(kind, config=_node_config(i, ports, extra="", tls=block), http=True)
        for i, kind in enumerate(kinds)
    ]
    try:
        check_for(15, lambda: all(http_json(s, "/routez")["num_routes"] == 1 for s in servers))
        here, there = await _connect(servers[0]), await _connect(servers[1])
        try:
            sub = await there.subscribe("over.tls")
            await _settle(here, there)
            assert await acheck_for(10, lambda: _published_reaches(here, "over.tls", sub))
        finally:
            await here.close()
            await there.close()
        with RawClient(ports[0]) as plain:
            plain.send(b"CONNECT {}\r\nPING\r\n")
            assert plain.expect_closed(5)
            assert b"PONG" not in plain.drain()
    finally:
        for server in servers:
            server.cleanup()


def test_jetstream_is_not_clustered_with_nats_server_peers() -> None:
    with Cluster(["jsedge", "nats"], extra_args=["-js", "-sd", "js"]) as cluster:
        cluster.wait_mesh()
        cluster[0].wait_for_log(r'\[WRN\] .*JetStream is not clustered with "n2": it is a nats-server node', 5)


PERMISSIONS = """
authorization {
  users: [
    {user: limited, password: l, permissions: {publish: {deny: ["secret.>"]}, subscribe: {deny: ["private.>"]}}}
    {user: open, password: o}
  ]
}
"""


@pytest.mark.parametrize("kinds", [["jsedge", "jsedge"], ["jsedge", "nats"], ["nats", "jsedge"]])
async def test_permissions_are_checked_on_the_publishers_node(kinds: list[str]) -> None:
    """Node 0's limited user cannot publish what it is denied, wherever the subscriber is, and
    cannot receive what it may not subscribe to from publishers on other nodes."""
    ports = [free_port(), free_port()]
    servers = [
        ServerProcess(kind, config=_node_config(i, ports, PERMISSIONS), http=True) for i, kind in enumerate(kinds)
    ]
    try:
        check_for(10, lambda: all(http_json(s, "/routez")["num_routes"] >= 1 for s in servers))
        # the limited user speaks raw protocol (nats-py closes its connection on a permissions -ERR)
        there = await _connect(servers[1], user="open", password="o")
        try:
            with RawClient(servers[0]) as limited:
                limited.read_info()
                limited.send(b'CONNECT {"verbose":false,"pedantic":false,"user":"limited","pass":"l"}\r\n')
                limited.send(b"SUB > 1\r\n")
                limited.ping_barrier()
                secret = await there.subscribe("secret.>")
                public = await there.subscribe("public.>")
                await there.flush()

                def reaches_public() -> bool:
                    limited.send(b"PUB public.x 1\r\n?\r\n")
                    limited.ping_barrier()
                    return public.pending_msgs > 0

                await acheck_for(10, lambda: asyncio.to_thread(reaches_public))
                limited.send(b"PUB secret.x 2\r\nno\r\n")
                got = limited.ping_barrier()
                assert b"-ERR 'Permissions Violation for Publish to \"secret.x\"'" in got
                await there.publish("private.y", b"hidden")
                await there.publish("public.z", b"shown")
                await there.flush()
                received = await asyncio.to_thread(limited.read_until, b"MSG public.z 1 5\r\nshown\r\n", 5)
                assert b"private.y" not in received
                await asyncio.sleep(0.2)
                assert secret.pending_msgs == 0
        finally:
            await there.close()
    finally:
        for server in servers:
            server.cleanup()
