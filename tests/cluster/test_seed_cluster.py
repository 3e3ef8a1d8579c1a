"""The seed article's production cluster, verbatim: three hosts (network namespaces named nats-1,
nats-2, nats-3, every node on the same ports 4222/6222/8222, listening on 0.0.0.0), each with the
article's `cluster { name: production, listen: 0.0.0.0:6222, routes: [...] }` and JetStream on.
Run on three jsedge nodes and, as the reference, on three nats-server nodes.
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from helpers import ServerProcess, acheck_for, check_for, http_json
from netns import NetHosts

pytestmark = pytest.mark.timeout(120)

HOSTS = ["nats-1", "nats-2", "nats-3"]


def seed_config(name: str, store_dir: str, itself: bool) -> str:
    """The article's nats-2.conf for host `name` (store_dir moved into the test's directory); with
    `itself`, the routes list names every node, this one included (a common copy-paste setup)."""
    peers = [host for host in HOSTS if itself or host != name]
    routes = "\n".join(f'    "nats-route://{host}:6222"' for host in peers)
    return f"""# {name}.conf
server_name: {name}

jetstream {{
  store_dir: {store_dir}
}}

cluster {{
  name: production
  listen: 0.0.0.0:6222
  routes: [
{routes}
  ]
}}

http_port: 8222
"""


@pytest.fixture(scope="module")
def hosts():
    NetHosts.skip_unless_available()
    with NetHosts(HOSTS) as made:
        yield made


def _start(kind: str, hosts: NetHosts, name: str, tmp_path) -> ServerProcess:
    store = tmp_path / f"{kind}-{name}"
    store.mkdir()
    config = seed_config(name, str(store), itself=name != "nats-2")
    return ServerProcess(
        kind, ["-a", "0.0.0.0", "-p", "4222", "-m", "8222"], config=config, http=True, netns=hosts.netns(name)
    )


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
async def test_the_articles_three_node_cluster(kind: str, hosts: NetHosts, tmp_path) -> None:
    servers = [_start(kind, hosts, name, tmp_path) for name in HOSTS]
    try:

        def meshed() -> bool:
            # (nats-server pools several connections per peer: count peers, not connections)
            for name, server in zip(HOSTS, servers, strict=True):
                peers = {r["remote_name"] for r in http_json(server, "/routez")["routes"]}
                if peers != set(HOSTS) - {name}:
                    return False
            return True

        check_for(20, meshed)
        # clients of a 0.0.0.0 listener learn every host's real address (nats-server adds a peer's
        # a moment after its route is up: wait for it)
        urls = {f"{hosts.addresses[n]}:4222" for n in HOSTS}
        check_for(10, lambda: set(http_json(servers[1], "/varz")["connect_urls"]) == urls)
        varz = http_json(servers[1], "/varz")
        assert varz["cluster"]["name"] == "production" and varz["cluster"]["cluster_port"] == 6222

        one = await nats.connect(servers[0].url)
        three = await nats.connect(servers[2].url)
        try:
            # the greeting may predate the last route; an async INFO completes the list
            assert await acheck_for(10, lambda: {f"{s.hostname}:{s.port}" for s in one.servers} == urls)
            sub = await three.subscribe("orders.>")
            await three.flush()
            await asyncio.sleep(0)

            async def delivered() -> bool:
                await one.publish("orders.new", b"1")
                try:
                    await sub.next_msg(timeout=0.2)
                    return True
                except nats.errors.TimeoutError:
                    return False

            assert await acheck_for(10, delivered)

            async def echo(msg) -> None:
                await msg.respond(msg.data)

            reply = await three.subscribe("svc.echo", cb=echo)
            await three.flush()
            assert await acheck_for(10, lambda: _answers(one))
            await reply.unsubscribe()
            # "With three nodes, set --replicas 3 on your streams and consumers"
            js = one.jetstream(timeout=3)

            async def replicated_stream():
                try:
                    return await js.add_stream(name="ORDERS", subjects=["shop.>"], num_replicas=3)
                except Exception:
                    return None  # the meta group is still electing its first leader

            info = await acheck_for(60, replicated_stream, interval=0.5)
            assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
            acked = [(await js.publish("shop.order", f"o{i}".encode())).seq for i in range(20)]
            durable = await js.pull_subscribe("shop.>", durable="billing", stream="ORDERS")

            async def first_fetch():
                try:
                    return await durable.fetch(5, timeout=5)
                except nats.js.errors.ServiceUnavailableError:
                    return None  # 503: the new R3 consumer's group has no leader yet (nats-server too)

            got = await acheck_for(30, first_fetch, interval=0.2)
            for msg in got:
                await msg.ack()
            # kill -9 the client's node: it reconnects to a host it learned from INFO
            servers[0].kill()
            await acheck_for(15, lambda: one.is_connected and one.connected_url.hostname != hosts.addresses["nats-1"])
            assert await acheck_for(10, delivered)

            # "Losing one node is survivable": the R3 stream keeps taking and keeping writes
            async def publish_again():
                try:
                    return await js.publish("shop.order", b"after", timeout=2)
                except Exception:
                    return None  # the stream's leader may be electing a successor

            acked.append((await acheck_for(60, publish_again, interval=0.5)).seq)
            info = await js.stream_info("ORDERS")
            assert info.state.last_seq >= acked[-1] and info.state.messages >= len(acked)
            for seq in acked:
                assert (await js.get_msg("ORDERS", seq)).subject == "shop.order"
        finally:
            await one.close()
            await three.close()
    finally:
        for server in servers:
            server.cleanup()


async def _answers(conn: nats.NATS) -> bool:
    try:
        return (await conn.request("svc.echo", b"ping", timeout=0.3)).data == b"ping"
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return False
