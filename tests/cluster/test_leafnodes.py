"""Leaf nodes on loopback, every pairing of jsedge and nats-server as hub and leaf: the same
nats-py scenario gives the same results through each (nats-server ← nats-server is the reference).
Pub/sub both ways, queue groups spanning the link, request/reply and no-responders, headers,
unsubscribe, the leaf reconnecting after its hub restarts, leaf credentials, the leaf-port errors,
loop detection and /leafz."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
import urllib.request
from typing import Any

import nats
import pytest

from tests.helpers import ServerProcess, acheck_for, check_for

pytestmark = pytest.mark.timeout(90)

LISTENING = re.compile(r"Listening for leafnode connections on \S+:(\d+)")
PAIRS = [("nats", "jsedge"), ("jsedge", "nats"), ("jsedge", "jsedge"), ("nats", "nats")]


def start_hub(kind: str, extra: str = "", http: bool = False) -> tuple[ServerProcess, int]:
    hub = ServerProcess(kind, config=f"server_name: hub\nleafnodes {{ port: -1\n{extra} }}\n", http=http)
    port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
    return hub, port


def start_leaf(kind: str, hub_port: int, userinfo: str = "", http: bool = False) -> ServerProcess:
    url = f"nats-leaf://{userinfo}127.0.0.1:{hub_port}"
    config = f'server_name: leaf\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "{url}" }} ] }}\n'
    return ServerProcess(kind, config=config, http=http)


def collect(into: list[Any], convert: Any = None) -> Any:
    """A nats-py callback that appends each message (or `convert(message)`) to `into`."""

    async def callback(msg: Any) -> None:
        into.append(convert(msg) if convert is not None else msg)

    return callback


def wait_linked(leaf: ServerProcess, timeout: float = 10.0) -> None:
    leaf.wait_for_log("Leafnode connection created", timeout=timeout)


async def until_heard(pub: Any, subject: str, heard: list[Any], timeout: float = 10.0) -> None:
    """Publish probes until the other side's subscription hears one (interest crossed the link)."""

    async def probe() -> bool | None:
        await pub.publish(subject, b"probe")
        await pub.flush()
        await asyncio.sleep(0.05)
        return bool(heard) or None

    assert await acheck_for(timeout, probe, interval=0)
    await asyncio.sleep(0.1)
    heard.clear()


async def scenario(hub: ServerProcess, leaf: ServerProcess) -> dict[str, Any]:
    h = await nats.connect(hub.url)
    lf = await nats.connect(leaf.url)
    out: dict[str, Any] = {}
    try:
        # plain subscriptions, both directions
        at_hub: list[Any] = []
        at_leaf: list[Any] = []
        sub_h = await h.subscribe("up.>", cb=collect(at_hub))
        sub_l = await lf.subscribe("down.*", cb=collect(at_leaf))
        await until_heard(lf, "up.probe", at_hub)
        await until_heard(h, "down.probe", at_leaf)
        for n in range(20):
            await lf.publish(f"up.{n}", b"u%d" % n)
            await h.publish(f"down.{n}", b"d%d" % n)
        await lf.publish("up.h", b"with headers", headers={"X-Trace": "abc"})
        await lf.flush()
        await h.flush()
        await acheck_for(10, lambda: (len(at_hub) == 21 and len(at_leaf) == 20) or None)
        out["up"] = [(m.subject, m.data) for m in at_hub[:20]]
        out["down"] = [(m.subject, m.data) for m in at_leaf]
        out["headers"] = (at_hub[20].data, dict(at_hub[20].headers or {}))

        # a queue group with members on both sides: every message once
        got: dict[str, list[bytes]] = {"hub": [], "leaf": []}
        await h.subscribe("work", queue="workers", cb=collect(got["hub"], lambda m: m.data))
        await lf.subscribe("work", queue="workers", cb=collect(got["leaf"], lambda m: m.data))
        await h.flush()
        await lf.flush()
        await asyncio.sleep(0.3)
        for n in range(100):
            await (lf if n % 2 else h).publish("work", b"%d" % n)
        await lf.flush()
        await h.flush()
        await acheck_for(10, lambda: len(got["hub"]) + len(got["leaf"]) >= 100 or None)
        await asyncio.sleep(0.2)
        out["queue"] = sorted(int(x) for x in got["hub"] + got["leaf"])

        # request/reply across the link, and no responders
        async def respond(m: Any) -> None:
            await m.respond(b"pong:" + m.data)

        await h.subscribe("svc.hub", cb=respond)
        await lf.subscribe("svc.leaf", cb=respond)
        await h.flush()
        await lf.flush()

        async def ask(nc: Any, subject: str) -> bytes | None:
            try:
                return (await nc.request(subject, b"x", timeout=1)).data
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                return None

        out["req_up"] = await acheck_for(10, lambda: ask(lf, "svc.hub"), interval=0.05)
        out["req_down"] = await acheck_for(10, lambda: ask(h, "svc.leaf"), interval=0.05)
        try:
            await lf.request("svc.nobody", b"x", timeout=2)
            out["no_responders"] = "answered"
        except nats.errors.NoRespondersError:
            out["no_responders"] = "503"

        # unsubscribe: the interest leaves the other side
        await sub_l.unsubscribe()
        await lf.flush()

        async def gone() -> bool | None:
            try:
                await h.request("down.gone", b"", timeout=0.5)
            except nats.errors.NoRespondersError:
                return True
            except nats.errors.TimeoutError:
                return None
            return None

        out["unsubscribed"] = await acheck_for(10, gone, interval=0.05)
        await sub_h.unsubscribe()
    finally:
        await h.close()
        await lf.close()
    return out


EXPECTED = {
    "up": [(f"up.{n}", b"u%d" % n) for n in range(20)],
    "down": [(f"down.{n}", b"d%d" % n) for n in range(20)],
    "headers": (b"with headers", {"X-Trace": "abc"}),
    "queue": list(range(100)),
    "req_up": b"pong:x",
    "req_down": b"pong:x",
    "no_responders": "503",
    "unsubscribed": True,
}


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_core_traffic_across_a_leaf_link(hub_kind: str, leaf_kind: str) -> None:
    hub, port = start_hub(hub_kind)
    with hub, start_leaf(leaf_kind, port) as leaf:
        wait_linked(leaf)
        assert asyncio.run(scenario(hub, leaf)) == EXPECTED


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), [("nats", "jsedge"), ("jsedge", "nats"), ("jsedge", "jsedge")])
def test_the_leaf_reconnects_when_its_hub_restarts(hub_kind: str, leaf_kind: str) -> None:
    hub, port = start_hub(hub_kind)
    with hub, start_leaf(leaf_kind, port) as leaf:
        wait_linked(leaf)
        mark = leaf.log_mark()
        hub.stop()
        hub.config = f"server_name: hub\nleafnodes {{ port: {port} }}\n"
        hub.start()
        leaf.wait_for_log("Leafnode connection created", timeout=15, since=mark)

        async def traffic() -> bytes:
            h = await nats.connect(hub.url)
            lf = await nats.connect(leaf.url)
            heard: list[Any] = []
            await h.subscribe("after.restart", cb=collect(heard))
            await h.flush()
            await until_heard(lf, "after.restart", heard)
            await lf.publish("after.restart", b"again")
            await lf.flush()
            await acheck_for(5, lambda: heard or None)
            await h.close()
            await lf.close()
            return heard[0].data

        assert asyncio.run(traffic()) == b"again"


async def crosses(hub: ServerProcess, leaf: ServerProcess, wait: float, hub_url: str = "", **login: Any) -> bool:
    """Does a message published on the leaf reach a subscriber on the hub within `wait`?
    (`hub_url`, `login`: how to log in to the hub.)"""
    h = await nats.connect(hub_url or hub.url, allow_reconnect=False, **login)
    lf = await nats.connect(leaf.url)
    heard: list[Any] = []
    await h.subscribe("cred.check", cb=collect(heard))
    await h.flush()

    async def probe() -> bool | None:
        await lf.publish("cred.check", b"x")
        await lf.flush()
        await asyncio.sleep(0.05)
        return bool(heard) or None

    try:
        return bool(await acheck_for(wait, probe, interval=0))
    finally:
        await h.close()
        await lf.close()


@pytest.mark.parametrize("hub_kind", ["jsedge", "nats"])
@pytest.mark.parametrize("leaf_kind", ["jsedge", "nats"])
def test_leaf_credentials(hub_kind: str, leaf_kind: str) -> None:
    auth = 'authorization { user: "edge", password: "s3cret" }'
    hub, port = start_hub(hub_kind, auth)
    with hub:
        with start_leaf(leaf_kind, port, "edge:wrong@") as bad:
            hub.wait_for_log("Authorization Violation|authentication error|Authentication Failure", timeout=10)
            with pytest.raises(AssertionError):
                asyncio.run(crosses(hub, bad, 1.0))
        with start_leaf(leaf_kind, port, "edge:s3cret@") as good:
            assert asyncio.run(crosses(hub, good, 10.0))


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_a_client_on_the_leaf_port_is_refused(kind: str) -> None:
    hub, port = start_hub(kind)
    with hub, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        info = sock.recv(4096)
        assert info.startswith(b"INFO ")
        fields = json.loads(info[5:].split(b"\r\n")[0])
        assert fields["client_id"] and isinstance(fields["leafnode_urls"], list) and "nonce" in fields
        sock.sendall(b'CONNECT {"lang":"python","verbose":false}\r\n')
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.split(b"\r\n")[0] == b"-ERR 'attempted to connect to leaf node port'"


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_a_loop_of_leaf_links_is_detected(kind: str) -> None:
    """Two servers, each a leaf of the other: one of them sees its own $LDS subject come back."""
    a, a_port = start_hub(kind)
    b, b_port = start_hub(kind)
    with a, b:
        a.stop()
        a.config = (
            f'server_name: a\nleafnodes {{ port: {a_port}, reconnect: "0.2s", '
            f'remotes: [ {{ url: "nats-leaf://127.0.0.1:{b_port}" }} ] }}\n'
        )
        a.start()
        b.stop()
        b.config = (
            f'server_name: b\nleafnodes {{ port: {b_port}, reconnect: "0.2s", '
            f'remotes: [ {{ url: "nats-leaf://127.0.0.1:{a_port}" }} ] }}\n'
        )
        b.start()
        assert check_for(15, lambda: any("Loop detected" in line for line in a.log_lines() + b.log_lines()) or None)


def test_leafz_on_both_sides() -> None:
    hub, port = start_hub("jsedge", http=True)
    with hub, start_leaf("jsedge", port, http=True) as leaf:
        wait_linked(leaf)

        def leafz(server: ServerProcess) -> dict[str, Any]:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/leafz", timeout=5) as resp:
                return json.loads(resp.read())

        at_hub = check_for(10, lambda: leafz(hub) if leafz(hub)["leafnodes"] == 1 else None)
        at_leaf = leafz(leaf)
        assert at_leaf["leafnodes"] == 1
        assert (at_hub["leafs"][0]["name"], at_hub["leafs"][0]["is_spoke"], at_hub["leafs"][0]["account"]) == (
            "leaf",
            False,
            "$G",
        )
        assert (at_leaf["leafs"][0]["name"], at_leaf["leafs"][0]["is_spoke"]) == ("hub", True)
        # /metrics: prometheus-nats-exporter's -leafz series
        with urllib.request.urlopen(f"http://127.0.0.1:{hub.http_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert re.search(r'^gnatsd_leafz_conn_nodes_total\{server_id="[^"]+"\} 1$', text, re.M), text
        info = re.search(r"^gnatsd_leafz_info\{(.*)\} 1$", text, re.M)
        assert info is not None and 'account="$G"' in info.group(1) and 'name="leaf"' in info.group(1)
        for series in ("conn_rtt", "conn_in_msgs", "conn_out_msgs", "conn_in_bytes", "conn_out_bytes"):
            assert re.search(rf"^gnatsd_leafz_{series}\{{", text, re.M), series
        assert re.search(r"^gnatsd_leafz_conn_subscriptions_total\{", text, re.M)


def start_js(kind: str, name: str, domain: str, store: Any, leaf_block: str) -> ServerProcess:
    config = (
        f"server_name: {name}\njetstream {{ store_dir: {json.dumps(str(store))}, domain: {domain} }}\n"
        f"leafnodes {{ {leaf_block} }}\n"
    )
    return ServerProcess(kind, config=config)


async def domains_scenario(hub: ServerProcess, leaf: ServerProcess) -> dict[str, Any]:
    h = await nats.connect(hub.url)
    lf = await nats.connect(leaf.url)

    async def api(nc: Any, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        try:
            reply = await nc.request(subject, json.dumps(body).encode() if body else b"", timeout=1)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return None
        return json.loads(reply.data)

    try:
        out: dict[str, Any] = {}
        edge_info = await acheck_for(15, lambda: api(h, "$JS.edge.API.INFO"), interval=0.1)
        out["hub_asks_edge"] = edge_info.get("domain")
        out["hub_asks_local"] = (await api(h, "$JS.API.INFO") or {}).get("domain")
        out["leaf_asks_local"] = (await api(lf, "$JS.API.INFO") or {}).get("domain")
        hub_info = await acheck_for(15, lambda: api(lf, "$JS.hub.API.INFO"), interval=0.1)
        out["leaf_asks_hub"] = hub_info.get("domain")
        created = await api(h, "$JS.edge.API.STREAM.CREATE.EDGE", {"name": "EDGE", "subjects": ["edge.>"]})
        out["created_on_leaf"] = (created or {}).get("config", {}).get("name")
        for n in range(3):
            await lf.request(f"edge.{n}", b"reading", timeout=2)  # PubAck from the leaf's stream
        info = await api(h, "$JS.edge.API.STREAM.INFO.EDGE")
        out["stored_on_leaf"] = (info or {}).get("state", {}).get("messages")
        out["not_on_hub"] = ((await api(h, "$JS.API.STREAM.INFO.EDGE")) or {}).get("error", {}).get("err_code")
        return out
    finally:
        await h.close()
        await lf.close()


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_jetstream_domains_across_a_leaf_link(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """Each side answers `$JS.API` for itself and the other side's `$JS.<domain>.API` crosses the
    link: a hub client manages the leaf's streams (`nats --js-domain edge`), and back."""
    hub = start_js(hub_kind, "hub", "hub", tmp_path / "hub", "port: -1")
    with hub:
        port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
        leaf_block = f'reconnect: "0.2s", remotes: [ {{ url: "nats-leaf://127.0.0.1:{port}" }} ]'
        with start_js(leaf_kind, "leaf", "edge", tmp_path / "leaf", leaf_block) as leaf:
            wait_linked(leaf)
            assert asyncio.run(domains_scenario(hub, leaf)) == {
                "hub_asks_edge": "edge",
                "hub_asks_local": "hub",
                "leaf_asks_local": "edge",
                "leaf_asks_hub": "hub",
                "created_on_leaf": "EDGE",
                "stored_on_leaf": 3,
                "not_on_hub": 10059,
            }


async def cluster_scenario(far: ServerProcess, near: ServerProcess, leaf: ServerProcess) -> dict[str, Any]:
    """`leaf` hangs off `near`; `far` is another node of the hub's cluster."""
    f = await nats.connect(far.url)
    n = await nats.connect(near.url)
    lf = await nats.connect(leaf.url)
    try:
        at_far: list[Any] = []
        at_leaf: list[Any] = []
        await f.subscribe("fromleaf.>", cb=collect(at_far))
        await lf.subscribe("toleaf.>", cb=collect(at_leaf))
        await until_heard(lf, "fromleaf.probe", at_far)
        await until_heard(f, "toleaf.probe", at_leaf)
        for k in range(10):
            await lf.publish(f"fromleaf.{k}", b"%d" % k)
            await f.publish(f"toleaf.{k}", b"%d" % k)
        await lf.flush()
        await f.flush()
        await acheck_for(10, lambda: (len(at_far) >= 10 and len(at_leaf) >= 10) or None)
        got: list[bytes] = []
        await f.subscribe("jobs", queue="q", cb=collect(got, lambda m: m.data))
        await lf.subscribe("jobs", queue="q", cb=collect(got, lambda m: m.data))
        await f.flush()
        await lf.flush()
        await asyncio.sleep(0.5)
        for k in range(60):
            await (n if k % 3 == 0 else lf if k % 3 == 1 else f).publish("jobs", b"%d" % k)
        for nc in (n, lf, f):
            await nc.flush()
        await acheck_for(10, lambda: len(got) >= 60 or None)
        await asyncio.sleep(0.3)
        return {
            "far_heard": sorted(m.data for m in at_far),
            "leaf_heard": sorted(m.data for m in at_leaf),
            "queue": sorted(int(x) for x in got),
        }
    finally:
        for nc in (f, n, lf):
            await nc.close()


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_a_leaf_on_one_node_of_a_cluster(kind: str) -> None:
    """A three-node hub cluster with a leaf on its second node: the leaf reaches the first node
    through the route and back, and a queue group spanning both gets each message once."""
    from tests.helpers import Cluster

    with Cluster([kind] * 3, config="leafnodes { port: -1 }\n") as cluster:
        cluster.wait_mesh()
        port = int(cluster[1].wait_for_log(LISTENING, timeout=10).group(1))
        with start_leaf(kind, port) as leaf:
            wait_linked(leaf)
            result = asyncio.run(cluster_scenario(cluster[0], cluster[1], leaf))
    digits = sorted(b"%d" % k for k in range(10))
    assert result == {"far_heard": digits, "leaf_heard": digits, "queue": list(range(60))}


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_leaf_with_an_nkey_seed_logs_in_to_a_hub(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """The hub lists an nkey user; the leaf signs the hub's nonce with the seed."""
    import nkeys

    seed = nkeys.encode_seed(bytes(range(7, 39)), nkeys.PREFIX_BYTE_USER).decode()
    public = nkeys.from_seed(bytearray(seed.encode())).public_key.decode()
    # a hub checks leaf nkeys against the server's users (its leafnodes block has no nkey users)
    hub = ServerProcess(
        hub_kind,
        config=(
            f"server_name: hub\naccounts {{ A: {{ users: [ {{ user: app, password: app }}, {{ nkey: {public} }} ] }} }}\n"
            "no_auth_user: app\nleafnodes { port: -1 }\n"
        ),
    )
    port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
    with hub:
        for key, linked in ((nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER).decode(), False), (seed, True)):
            config = (
                'server_name: leaf\nleafnodes { reconnect: "0.2s", remotes: [ { url: '
                f'"nats-leaf://127.0.0.1:{port}", nkey: "{key}" }} ] }}\n'
            )
            with ServerProcess(leaf_kind, config=config) as leaf:
                if linked:
                    assert asyncio.run(crosses(hub, leaf, 10.0))
                else:
                    hub.wait_for_log("Authorization Violation|Authentication Failure|authentication error", timeout=10)
                    with pytest.raises(AssertionError):
                        asyncio.run(crosses(hub, leaf, 1.0))


async def js_api(
    nc: Any, subject: str, body: dict[str, Any] | None = None, timeout: float = 2
) -> dict[str, Any] | None:
    try:
        reply = await nc.request(subject, json.dumps(body).encode() if body else b"", timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return None
    return json.loads(reply.data)


async def stored_count(nc: Any, stream: str) -> int:
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{stream}")
    return int((info or {}).get("state", {}).get("messages", -1))


async def publish_readings(url: str, start: int, count: int) -> None:
    nc = await nats.connect(url)
    try:
        for n in range(start, start + count):
            reply = await nc.request(f"edge.sensor.{n % 3}", b"reading-%d" % n, timeout=5)
            ack = json.loads(reply.data)
            assert ack.get("stream") == "EDGE", ack
    finally:
        await nc.close()


async def wait_sourced(url: str, count: int, timeout: float = 30) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        await acheck_for(timeout, lambda: _equals(stored_count(nc, "AGG"), count), interval=0.2)
        out = []
        for seq in range(1, count + 1):
            msg = await js_api(nc, "$JS.API.STREAM.MSG.GET.AGG", {"seq": seq})
            import base64

            out.append(base64.b64decode(msg["message"]["data"]))
        return out
    finally:
        await nc.close()


async def _equals(value: Any, expected: Any) -> bool:
    return (await value) == expected


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_hub_stream_sources_a_leaf_stream_across_outages(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """Offline-first: a stream on the leaf stores readings while the hub is away; a hub stream that
    sources it (`external.api: $JS.edge.API`) gets every reading once, in order, after each outage
    (the hub killed with kill -9 and restarted, then the leaf)."""
    hub = start_js(hub_kind, "hub", "hub", tmp_path / "hub", "port: -1")
    with hub:
        port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
        hub.stop()
        hub.config = hub.config.replace("port: -1", f"port: {port}")
        hub.start()
        leaf_block = f'reconnect: "0.2s", remotes: [ {{ url: "nats-leaf://127.0.0.1:{port}" }} ]'
        with start_js(leaf_kind, "leaf", "edge", tmp_path / "leaf", leaf_block) as leaf:
            wait_linked(leaf)

            async def setup() -> None:
                lf = await nats.connect(leaf.url)
                h = await nats.connect(hub.url)
                try:
                    made = await js_api(lf, "$JS.API.STREAM.CREATE.EDGE", {"name": "EDGE", "subjects": ["edge.>"]})
                    assert (made or {}).get("config", {}).get("name") == "EDGE", made
                    source = {"name": "EDGE", "external": {"api": "$JS.edge.API", "deliver": ""}}
                    made = await js_api(h, "$JS.API.STREAM.CREATE.AGG", {"name": "AGG", "sources": [source]})
                    assert (made or {}).get("config", {}).get("name") == "AGG", made
                finally:
                    await lf.close()
                    await h.close()

            asyncio.run(setup())
            asyncio.run(publish_readings(leaf.url, 0, 20))
            assert asyncio.run(wait_sourced(hub.url, 20)) == [b"reading-%d" % n for n in range(20)]
            if hub_kind == "nats":
                # nats-server's hub resumes a source after its own restart on a back-off longer than
                # this test waits (over 30 s seen): the outages below are checked on jsedge hubs
                return
            # the hub dies (kill -9); the leaf keeps storing; the hub comes back
            hub.kill()
            asyncio.run(publish_readings(leaf.url, 20, 20))
            mark = leaf.log_mark()
            hub.start()
            leaf.wait_for_log("Leafnode connection created", timeout=15, since=mark)
            assert asyncio.run(wait_sourced(hub.url, 40)) == [b"reading-%d" % n for n in range(40)]
            # the leaf dies (kill -9) and restarts; more readings; nothing is copied twice
            leaf.kill()
            leaf.start()
            wait_linked(leaf)
            asyncio.run(publish_readings(leaf.url, 40, 10))
            assert asyncio.run(wait_sourced(hub.url, 50)) == [b"reading-%d" % n for n in range(50)]


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_leaf_stream_mirrors_a_hub_stream(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """The other direction: commands stored on the hub reach the Pi through a mirror of the hub's
    stream on the leaf (`external.api: $JS.hub.API`), the origin's sequences kept."""
    hub = start_js(hub_kind, "hub", "hub", tmp_path / "hub", "port: -1")
    with hub:
        port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
        leaf_block = f'reconnect: "0.2s", remotes: [ {{ url: "nats-leaf://127.0.0.1:{port}" }} ]'
        with start_js(leaf_kind, "leaf", "edge", tmp_path / "leaf", leaf_block) as leaf:
            wait_linked(leaf)

            async def scenario() -> list[tuple[int, bytes]]:
                import base64

                h = await nats.connect(hub.url)
                lf = await nats.connect(leaf.url)
                try:
                    made = await js_api(h, "$JS.API.STREAM.CREATE.CMDS", {"name": "CMDS", "subjects": ["cmds.>"]})
                    assert (made or {}).get("config", {}).get("name") == "CMDS", made
                    for n in range(15):
                        await h.request(f"cmds.pi.{n % 2}", b"cmd-%d" % n, timeout=5)
                    mirror = {"name": "CMDS", "external": {"api": "$JS.hub.API", "deliver": ""}}
                    made = await js_api(
                        lf, "$JS.API.STREAM.CREATE.LOCAL_CMDS", {"name": "LOCAL_CMDS", "mirror": mirror}
                    )
                    assert (made or {}).get("config", {}).get("name") == "LOCAL_CMDS", made
                    await acheck_for(30, lambda: _equals(stored_count(lf, "LOCAL_CMDS"), 15), interval=0.2)
                    out = []
                    for seq in range(1, 16):
                        msg = await js_api(lf, "$JS.API.STREAM.MSG.GET.LOCAL_CMDS", {"seq": seq})
                        out.append((msg["message"]["seq"], base64.b64decode(msg["message"]["data"])))
                    return out
                finally:
                    await h.close()
                    await lf.close()

            assert asyncio.run(scenario()) == [(n + 1, b"cmd-%d" % n) for n in range(15)]


async def wildcard_scenario(hub: ServerProcess, leaf: ServerProcess) -> dict[str, Any]:
    """Interest in `>` and `$JS.>` crosses the link both ways; messages on each side's JetStream
    API, KV and object store subjects do not (nats-server's deny on leaf connections)."""
    out: dict[str, Any] = {}
    h = await nats.connect(hub.url)
    lf = await nats.connect(leaf.url)
    try:
        for side, sub_nc, pub_nc in (("leaf hears", lf, h), ("hub hears", h, lf)):
            for pattern in (">", "$JS.>"):
                heard: list[str] = []
                sub = await sub_nc.subscribe(pattern, cb=collect(heard, lambda m: m.subject))
                await sub_nc.flush()
                await until_heard(pub_nc, "$JS.probe" if pattern != ">" else "probe", heard)
                for subject in (
                    "$JS.API.STREAM.NAMES",
                    "$KV.B.k",
                    "$OBJ.O.x",
                    "$JS.ACK.S.C.1.1.1.0.0",
                    "$SYS.X",
                    "a.b",
                ):
                    await pub_nc.publish(subject, b"x")
                await pub_nc.publish("$JS.last" if pattern != ">" else "last", b"x")  # after the others, in order
                await pub_nc.flush()
                await acheck_for(10, lambda heard=heard: any(s.endswith("last") for s in heard) or None, interval=0.05)
                out[f"{side} {pattern}"] = sorted(heard)
                await sub.unsubscribe()
                await sub_nc.flush()
    finally:
        await h.close()
        await lf.close()
    return out


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_wildcard_interest_crosses_but_not_the_jetstream_api(hub_kind: str, leaf_kind: str) -> None:
    hub, port = start_hub(hub_kind)
    with hub, start_leaf(leaf_kind, port) as leaf:
        wait_linked(leaf)
        result = asyncio.run(wildcard_scenario(hub, leaf))
    assert result["leaf hears >"] == ["$JS.ACK.S.C.1.1.1.0.0", "$SYS.X", "a.b", "last"]
    assert result["hub hears $JS.>"] == ["$JS.ACK.S.C.1.1.1.0.0", "$JS.last"]
    assert result["leaf hears >"] == result["hub hears >"]


@pytest.mark.parametrize(
    ("hub_kind", "leaf_kind"), [("nats", "jsedge"), ("nats", "nats"), ("jsedge", "jsedge"), ("jsedge", "nats")]
)
def test_a_leaf_with_a_creds_file_logs_in_to_an_operator_mode_hub(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """Hosted NATS: the hub runs in operator mode (JWTs); the leaf's remote names a `.creds`
    file (user JWT and seed) and signs the hub's nonce. A file that is missing, malformed, or
    holds another key's seed gets no link (and the log says why). A jsedge hub in operator
    mode checks the leaf's JWT as nats-server does."""
    from tests import natsjwt

    op = natsjwt.operator_with_user()
    good = tmp_path / "good.creds"
    good.write_text(op.creds())
    client = tmp_path / "client.creds"
    client.write_text(op.creds())
    stranger = natsjwt.new_key(nkeys_user_prefix())
    wrong = tmp_path / "wrong.creds"
    wrong.write_text(op.creds(seed=stranger.seed))
    malformed = tmp_path / "malformed.creds"
    malformed.write_text("not a creds file\n")
    hub = ServerProcess(hub_kind, config=f"server_name: hub\n{op.server_config()}leafnodes {{ port: -1 }}\n")
    port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
    with hub:
        for creds, linked, logged in (
            (tmp_path / "missing.creds", False, "no such file or directory"),
            (malformed, False, "Credentials file malformed"),
            (wrong, False, None),
            (good, True, None),
        ):
            config = (
                'server_name: leaf\nleafnodes { reconnect: "0.2s", remotes: [ { url: '
                f'"nats-leaf://127.0.0.1:{port}", credentials: "{creds}" }} ] }}\n'
            )
            with ServerProcess(leaf_kind, config=config) as leaf:
                if linked:
                    assert asyncio.run(crosses(hub, leaf, 10.0, user_credentials=str(client)))
                    continue
                if logged is not None:
                    leaf.wait_for_log(re.escape(logged), timeout=10)
                else:
                    hub.wait_for_log("Authorization Violation|authentication error|Authentication Failure", timeout=10)
                with pytest.raises(AssertionError):
                    asyncio.run(crosses(hub, leaf, 1.0, user_credentials=str(client)))


def nkeys_user_prefix() -> int:
    import nkeys

    return int(nkeys.PREFIX_BYTE_USER)


TLS_TROUBLE = re.compile("(?i)tls|certificate|x509|handshake")


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_leaf_links_over_tls(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """`leafnodes { tls {} }` on the hub (client certificates verified) and a remote's `tls {}`:
    INFO in the clear, then TLS, in every pairing. A leaf that cannot verify the hub's
    certificate (no `ca_file`), or has no certificate of its own, gets no link."""
    from tests.helpers import make_tls_files

    tls = make_tls_files(tmp_path)
    block = tls.server_config(verify=True, timeout=2).replace("\n", "\n  ")
    hub, port = start_hub(hub_kind, block)
    with hub:
        url = f"nats-leaf://127.0.0.1:{port}"
        good = f'tls {{ ca_file: "{tls.ca_cert}", cert_file: "{tls.client_cert}", key_file: "{tls.client_key}" }}'
        no_cert = f'tls {{ ca_file: "{tls.ca_cert}" }}'  # the hub verifies client certificates
        for tls_block, linked in (("", False), (no_cert, False), (good, True)):
            config = (
                f'server_name: leaf\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "{url}", {tls_block} }} ] }}\n'
            )
            with ServerProcess(leaf_kind, config=config) as leaf:
                if linked:
                    assert asyncio.run(crosses(hub, leaf, 10.0))
                else:
                    check_for(10, lambda: any(TLS_TROUBLE.search(line) for line in leaf.log_lines() + hub.log_lines()))
                    with pytest.raises(AssertionError):
                        asyncio.run(crosses(hub, leaf, 1.0))


async def deny_scenario(hub: ServerProcess, leaf: ServerProcess) -> dict[str, Any]:
    """What crosses a link whose remote has `deny_exports: ["secret.>"]` and `deny_imports:
    ["private.>", "x.*.y"]`, to literal and wildcard subscribers on the other side."""
    out: dict[str, Any] = {}
    h = await nats.connect(hub.url)
    lf = await nats.connect(leaf.url)
    try:
        for side, sub_nc, pub_nc in (("hub hears", h, lf), ("leaf hears", lf, h)):
            for pattern in (">", "secret.a", "private.a", "x.q.y", "open.a"):
                heard: list[str] = []
                sub = await sub_nc.subscribe(pattern, cb=collect(heard, lambda m: m.subject))
                probe = await sub_nc.subscribe("probe.>", cb=collect(heard, lambda m: m.subject))
                await sub_nc.flush()
                await until_heard(pub_nc, "probe.ready", heard)
                for subject in ("secret.a", "private.a", "x.q.y", "open.a"):
                    await pub_nc.publish(subject, b"x")
                await pub_nc.publish("probe.last", b"x")  # after the others, in order
                await pub_nc.flush()
                await acheck_for(10, lambda heard=heard: "probe.last" in heard or None, interval=0.05)
                out[f"{side} {pattern}"] = sorted(s for s in heard if not s.startswith("probe."))
                await sub.unsubscribe()
                await probe.unsubscribe()
                await sub_nc.flush()
    finally:
        await h.close()
        await lf.close()
    return out


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_deny_imports_and_exports_on_a_remote(hub_kind: str, leaf_kind: str) -> None:
    hub, port = start_hub(hub_kind)
    url = f"nats-leaf://127.0.0.1:{port}"
    config = (
        f'server_name: leaf\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "{url}", '
        'deny_exports: ["secret.>"], deny_imports: ["private.>", "x.*.y"] } ] }\n'
    )
    with hub, ServerProcess(leaf_kind, config=config) as leaf:
        wait_linked(leaf)
        result = asyncio.run(deny_scenario(hub, leaf))
    # nats-server's answers (nats ← nats): an export deny holds back the leaf's messages; an import
    # deny is sent to the hub (`deny_pub`), which then does not send those subjects to the leaf,
    # and the leaf does not send them to the hub either
    assert result == {
        "hub hears >": ["open.a"],
        "hub hears secret.a": [],
        "hub hears private.a": [],
        "hub hears x.q.y": [],
        "hub hears open.a": ["open.a"],
        "leaf hears >": ["open.a", "secret.a"],
        "leaf hears secret.a": ["secret.a"],
        "leaf hears private.a": [],
        "leaf hears x.q.y": [],
        "leaf hears open.a": ["open.a"],
    }


async def crossing(hub_url: str, leaf_url: str, subjects: list[str]) -> dict[str, Any]:
    """Which of `subjects` a `>` subscriber hears on each side when the other side publishes
    them (in order, then a probe that marks the end)."""
    out: dict[str, Any] = {}
    h = await nats.connect(hub_url)
    lf = await nats.connect(leaf_url)
    try:
        for side, sub_nc, pub_nc in (("hub hears", h, lf), ("leaf hears", lf, h)):
            heard: list[str] = []
            sub = await sub_nc.subscribe(">", cb=collect(heard, lambda m: m.subject))
            await sub_nc.flush()
            await until_heard(pub_nc, "probe.ready", heard)
            for subject in subjects:
                await pub_nc.publish(subject, b"x")
            await pub_nc.publish("probe.last", b"x")
            await pub_nc.flush()
            await acheck_for(10, lambda heard=heard: "probe.last" in heard or None, interval=0.05)
            out[side] = sorted(s for s in heard if not s.startswith("probe."))
            await sub.unsubscribe()
            await sub_nc.flush()
    finally:
        await h.close()
        await lf.close()
    return out


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_hub_checks_leaves_against_its_users(hub_kind: str, leaf_kind: str) -> None:
    """A hub whose `leafnodes {}` has no authorization of its own checks a leaf's credentials
    against the server's users: a leaf without them gets no link; with them it binds to that
    user's account, and the user's permissions apply from the leaf's view (`publish`: what the
    leaf may send into the hub, `subscribe`: what it may receive)."""
    users = (
        "accounts { A: { users: [ { user: app, password: app }, { user: edge, password: s3cret, permissions: { "
        'publish: { deny: ["nopub.>"] }, subscribe: { allow: ["in.>", "probe.>", "nopub.>"] } } } ] } }\n'
    )
    hub = ServerProcess(hub_kind, config=f"server_name: hub\n{users}leafnodes {{ port: -1 }}\n")
    port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
    with hub:
        hub_user = hub.url.replace("nats://", "nats://app:app@")  # a client of account A
        with start_leaf(leaf_kind, port) as anonymous:
            hub.wait_for_log("Authorization Violation|authentication error|Authentication Failure", timeout=10)
            with pytest.raises(AssertionError):
                asyncio.run(crosses(hub, anonymous, 1.0, hub_user))
        with start_leaf(leaf_kind, port, "edge:s3cret@") as leaf:
            wait_linked(leaf)
            result = asyncio.run(crossing(hub_user, leaf.url, ["nopub.a", "in.a", "other.a"]))
    assert result == {"hub hears": ["in.a", "other.a"], "leaf hears": ["in.a", "nopub.a"]}


@pytest.mark.parametrize("hub_kind", ["jsedge", "nats"])
def test_server_report_leafnodes(hub_kind: str) -> None:
    """`jsedge server report leafnodes` (system account user) lists each server's leaf links,
    from jsedge and from nats-server alike; an account user is told it needs the system account."""
    import subprocess
    import sys

    accounts = (
        "accounts { SYS: { users: [ { user: sys, password: sys } ] }, APP: { users: [ { user: app, password: app } ] } }\n"
        "system_account: SYS\n"
    )
    hub = ServerProcess(hub_kind, config=f"server_name: hub\n{accounts}leafnodes {{ port: -1 }}\n")
    port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
    with hub, start_leaf("jsedge", port, "app:app@") as leaf:
        wait_linked(leaf)

        def report(user: str, *extra: str) -> subprocess.CompletedProcess[str]:
            url = hub.url.replace("nats://", f"nats://{user}@")
            argv = [sys.executable, "-m", "jsedge", "server", "report", "leafnodes", "-s", url, *extra]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

        shown = report("sys:sys")
        assert shown.returncode == 0 and "Leafnode Report" in shown.stdout, shown
        rows = json.loads(report("sys:sys", "--json").stdout)
        assert [(r["server"], r["name"], r["account"], r["spoke"]) for r in rows] == [("hub", "leaf", "APP", False)]
        refused = report("app:app")
        assert refused.returncode == 1 and "system account" in refused.stderr


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_leaf_fails_over_to_a_hub_member_it_was_told_about(hub_kind: str, leaf_kind: str) -> None:
    """The leaf's remote names one member of a two-node hub cluster; the hub's INFO lists the
    other's leaf port too (`leafnode_urls`, learnt over the route). When the named member dies
    (kill -9), the leaf dials the other one and traffic flows again."""
    from tests.helpers import Cluster

    with Cluster([hub_kind] * 2, config="leafnodes { port: -1 }\n") as cluster:
        cluster.wait_mesh()
        port = int(cluster[0].wait_for_log(LISTENING, timeout=10).group(1))
        cluster[1].wait_for_log(LISTENING, timeout=10)
        with start_leaf(leaf_kind, port) as leaf:
            wait_linked(leaf)
            assert asyncio.run(crosses(cluster[1], leaf, 10.0))
            mark = leaf.log_mark()
            cluster[0].kill()
            leaf.wait_for_log("Leafnode connection created", timeout=20, since=mark)
            assert asyncio.run(crosses(cluster[1], leaf, 10.0))


class FlakyLink:
    """A TCP proxy between a leaf and its hub that breaks the link on a seeded schedule: it
    stalls it (bytes stop moving, nothing closes), cuts every open connection, or refuses and drops
    new ones for a while (a partition). Runs its own event loop in a thread; `heal()` stops the
    breaking."""

    def __init__(self, target_port: int, seed: int) -> None:
        import random
        import threading

        self.target_port = target_port
        self.rng = random.Random(seed)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.cuts = 0
        self.partitions = 0
        self.stalls = 0
        self._partitioned = False
        self._stalled = False
        self._healed = False
        self._pairs: set[Any] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._breaker = self.loop.create_task(self._break())
        self._ready.set()
        self.loop.run_forever()
        # wind down completely (no pending task is left for the garbage collector to finalize
        # later, in some other test's thread)
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _accept(self, reader: Any, writer: Any) -> None:
        if self._partitioned:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)

        async def pump(src: Any, dst: Any) -> None:
            try:
                while data := await src.read(65536):
                    while self._stalled:  # the link hangs: nothing moves, nothing closes
                        await asyncio.sleep(0.05)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pairs.discard(pair)

    async def _break(self) -> None:
        modes = ["stall", "cut", "partition"] * 4  # each kind of fault, in a seeded order
        self.rng.shuffle(modes)
        while not self._healed:
            await asyncio.sleep(self.rng.uniform(0.2, 0.8))
            if self._healed:
                return
            mode = modes.pop() if modes else self.rng.choice(["stall", "cut", "partition"])
            if mode == "stall":
                self.stalls += 1
                self._stalled = True
                await asyncio.sleep(self.rng.uniform(0.5, 3.0))
                self._stalled = False
            elif mode == "cut":
                self.cuts += 1
                for a, b in list(self._pairs):
                    a.transport.abort()
                    b.transport.abort()
            else:
                self.partitions += 1
                self._partitioned = True
                for a, b in list(self._pairs):
                    a.transport.abort()
                    b.transport.abort()
                await asyncio.sleep(self.rng.uniform(0.5, 2.0))
                self._partitioned = False

    def heal(self) -> None:
        def stop_breaking() -> None:
            self._healed = True
            self._partitioned = False
            self._stalled = False

        self.loop.call_soon_threadsafe(stop_breaking)

    def close(self) -> None:
        async def stop() -> None:
            self._healed = True
            self._breaker.cancel()
            for a, b in list(self._pairs):
                a.transport.abort()
                b.transport.abort()
            await asyncio.sleep(0)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the flaky-link proxy did not stop"


FLAKY_SEED = int(os.environ.get("JSEDGE_FAULT_SEED", "2027"))


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("hub_kind", "leaf_kind"), [("jsedge", "jsedge"), ("jsedge", "nats"), ("nats", "jsedge")])
def test_sourcing_across_a_flaky_link(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """Offline-first on a bad link: the leaf stores readings while a proxy between it and the hub
    stalls, cuts and partitions the link on a seeded schedule, and the leaf is killed (kill -9) and
    restarted once; once the link heals, the hub stream that sources the leaf stream holds every
    reading exactly once, in order, and the leaf's mirror of the hub's command stream every
    command."""
    hub = start_js(hub_kind, "hub", "hub", tmp_path / "hub", "port: -1")
    with hub:
        port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
        link = FlakyLink(port, FLAKY_SEED)
        try:
            leaf_block = f'reconnect: "0.2s", remotes: [ {{ url: "nats-leaf://127.0.0.1:{link.port}" }} ]'
            with start_js(leaf_kind, "leaf", "edge", tmp_path / "leaf", leaf_block) as leaf:

                async def setup() -> None:
                    lf = await nats.connect(leaf.url)
                    h = await nats.connect(hub.url)
                    try:
                        made = await js_api(lf, "$JS.API.STREAM.CREATE.EDGE", {"name": "EDGE", "subjects": ["edge.>"]})
                        assert (made or {}).get("config", {}).get("name") == "EDGE", made
                        source = {"name": "EDGE", "external": {"api": "$JS.edge.API", "deliver": ""}}
                        made = await js_api(h, "$JS.API.STREAM.CREATE.AGG", {"name": "AGG", "sources": [source]})
                        assert (made or {}).get("config", {}).get("name") == "AGG", made
                        # the other direction: the hub's commands mirrored on the leaf
                        made = await js_api(h, "$JS.API.STREAM.CREATE.CMDS", {"name": "CMDS", "subjects": ["cmds.>"]})
                        assert (made or {}).get("config", {}).get("name") == "CMDS", made
                        mirror = {"name": "CMDS", "external": {"api": "$JS.hub.API", "deliver": ""}}
                        made = await js_api(
                            lf, "$JS.API.STREAM.CREATE.LOCAL_CMDS", {"name": "LOCAL_CMDS", "mirror": mirror}
                        )
                        assert (made or {}).get("config", {}).get("name") == "LOCAL_CMDS", made
                    finally:
                        await lf.close()
                        await h.close()

                async def commands(start: int, count: int) -> None:
                    h = await nats.connect(hub.url)
                    try:
                        for n in range(start, start + count):
                            await h.request(f"cmds.pi.{n % 2}", b"cmd-%d" % n, timeout=5)
                    finally:
                        await h.close()

                asyncio.run(setup())
                total = 0
                for round_no in range(6):  # readings keep coming while the link flaps
                    asyncio.run(publish_readings(leaf.url, total, 25))
                    asyncio.run(commands(total // 25 * 5, 5))
                    total += 25
                    time.sleep(0.7)
                    if round_no == 2:  # and the leaf dies (kill -9) and comes back once
                        leaf.kill()
                        leaf.start()
                link.heal()
                print(
                    f"flaky link: {link.stalls} stalls, {link.cuts} cuts, {link.partitions} partitions "
                    f"(seed {FLAKY_SEED})"
                )
                assert link.stalls + link.cuts + link.partitions > 0
                got = asyncio.run(wait_sourced(hub.url, total, timeout=90))
                assert got == [b"reading-%d" % n for n in range(total)]

                async def mirrored() -> list[bytes]:
                    import base64

                    lf = await nats.connect(leaf.url)
                    try:
                        await acheck_for(60, lambda: _equals(stored_count(lf, "LOCAL_CMDS"), 30), interval=0.2)
                        out = []
                        for seq in range(1, 31):
                            msg = await js_api(lf, "$JS.API.STREAM.MSG.GET.LOCAL_CMDS", {"seq": seq})
                            out.append(base64.b64decode(msg["message"]["data"]))
                        return out
                    finally:
                        await lf.close()

                assert asyncio.run(mirrored()) == [b"cmd-%d" % n for n in range(30)]
        finally:
            link.close()


@pytest.mark.parametrize(("accepting_kind", "dialling_kind"), PAIRS)
def test_a_remote_with_hub_true_makes_the_dialling_side_the_hub(accepting_kind: str, dialling_kind: str) -> None:
    """`remotes: [{ url, hub: true }]`: the server that dials is the hub of the link (the server it
    reaches sees itself as the spoke, `/leafz` `is_spoke`), and traffic crosses both ways."""
    accepting, port = start_hub(accepting_kind, http=True)
    url = f"nats-leaf://127.0.0.1:{port}"
    config = f'server_name: dialler\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "{url}", hub: true }} ] }}\n'
    with accepting, ServerProcess(dialling_kind, config=config, http=True) as dialling:
        wait_linked(dialling)

        def spoke_flag(server: ServerProcess) -> Any:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/leafz", timeout=5) as resp:
                leafs = json.loads(resp.read())["leafs"]
            return leafs[0]["is_spoke"] if leafs else None

        # (both sides list the link before the flags are compared: nats-server's dialling side
        # was once caught between a link's close and its reconnect)
        check_for(10, lambda: spoke_flag(accepting) is not None and spoke_flag(dialling) is not None)
        assert (spoke_flag(accepting), spoke_flag(dialling)) == (True, False)
        assert asyncio.run(crosses(accepting, dialling, 10.0))
        assert asyncio.run(crosses(dialling, accepting, 10.0))


def _http(server: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def leafz_shape(kind: str) -> dict[str, Any]:
    """The keys and value types of /leafz (with subs) and /varz's leaf block, on a hub and on its
    leaf, both of `kind`, with one subscription crossing the link."""
    hub, port = start_hub(kind, http=True)
    with hub, start_leaf(kind, port, http=True) as leaf:
        wait_linked(leaf)

        async def subscribe_and_check() -> dict[str, Any]:
            nc = await nats.connect(leaf.url)
            try:
                await nc.subscribe("shape.test")
                await nc.flush()
                await acheck_for(
                    10, lambda: _http(hub, "/leafz?subs=1")["leafs"][0].get("subscriptions", 0) >= 1 or None
                )
                out = {}
                for side, server in (("hub", hub), ("leaf", leaf)):
                    leafz = _http(server, "/leafz?subs=1")
                    entry = leafz["leafs"][0]
                    out[f"{side} leafz"] = sorted(k for k in leafz if k not in ("leafs",))
                    out[f"{side} leaf entry"] = sorted((k, type(v).__name__) for k, v in entry.items())
                    out[f"{side} varz leaf"] = sorted(_http(server, "/varz").get("leaf", {}))
                return out
            finally:
                await nc.close()

        return asyncio.run(subscribe_and_check())


def test_leafz_and_varz_shapes_match_nats_server() -> None:
    expected = leafz_shape("nats")
    got = leafz_shape("jsedge")
    for key in expected:
        assert got[key] == expected[key], key


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), [("jsedge", "jsedge"), ("jsedge", "nats"), ("nats", "jsedge")])
def test_a_leaf_with_the_hubs_jetstream_domain_is_refused(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """Both sides with JetStream domain `home`: the jsedge side refuses the link and says why
    (it never extends a hub's JetStream over a leaf link); traffic does not cross."""
    hub = start_js(hub_kind, "hub", "home", tmp_path / "hub", "port: -1")
    with hub:
        port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
        block = f'reconnect: "0.2s", remotes: [ {{ url: "nats-leaf://127.0.0.1:{port}" }} ]'
        with start_js(leaf_kind, "leaf", "home", tmp_path / "leaf", block) as leaf:
            said = "both sides use JetStream domain 'home'"
            check_for(10, lambda: any(said in line for line in hub.log_lines() + leaf.log_lines()))
            with pytest.raises(AssertionError):
                asyncio.run(crosses(hub, leaf, 1.0))


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_leaf_client_publishes_into_a_hub_stream(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """The hub's stream subjects are announced across the link: a leaf's client publishes into a
    hub stream and gets the hub's PubAck."""
    hub = ServerProcess(
        hub_kind,
        config=f"server_name: hub\njetstream {{ store_dir: {json.dumps(str(tmp_path / 'hub'))} }}\nleafnodes {{ port: -1 }}\n",
    )
    port = int(hub.wait_for_log(LISTENING, timeout=10).group(1))
    with hub, start_leaf(leaf_kind, port) as leaf:
        wait_linked(leaf)

        async def run() -> list[Any]:
            h = await nats.connect(hub.url)
            lf = await nats.connect(leaf.url)
            try:
                made = await js_api(h, "$JS.API.STREAM.CREATE.ORD", {"name": "ORD", "subjects": ["orders.>"]})
                assert (made or {}).get("config", {}).get("name") == "ORD", made

                async def ack() -> Any:
                    try:
                        return json.loads((await lf.request("orders.1", b"x", timeout=1)).data)
                    except Exception:
                        return None

                first = await acheck_for(10, ack, interval=0.2)
                return [first, json.loads((await lf.request("orders.2", b"y", timeout=2)).data)]
            finally:
                await h.close()
                await lf.close()

        acks = asyncio.run(run())
    assert [a.get("stream") for a in acks] == ["ORD", "ORD"]
    assert acks[1]["seq"] == acks[0]["seq"] + 1


@pytest.mark.parametrize("options", ["", ", ws_compression: true", ", ws_no_masking: true"])
@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_leaf_dials_a_hubs_websocket_port(hub_kind: str, leaf_kind: str, options: str) -> None:
    """A `ws://` remote: the leaf upgrades to WebSocket on the hub's websocket port (path
    `/leafnode`), then runs the leaf protocol in frames; the same traffic as over the leaf port,
    in every pairing of jsedge and nats-server, with compression and without masking."""
    from tests.helpers import free_port

    ws_port = free_port()
    hub, _port = start_hub(hub_kind, extra=f"}}\nwebsocket {{ port: {ws_port}, no_tls: true, compression: true")
    config = (
        f'server_name: leaf\nleafnodes {{ reconnect: "0.2s", '
        f'remotes: [ {{ url: "ws://127.0.0.1:{ws_port}"{options} }} ] }}\n'
    )
    with hub, ServerProcess(leaf_kind, config=config) as leaf:
        wait_linked(leaf)
        assert asyncio.run(scenario(hub, leaf)) == EXPECTED


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), PAIRS)
def test_a_leaf_dials_a_hubs_websocket_port_over_tls(hub_kind: str, leaf_kind: str, tmp_path: Any) -> None:
    """A `wss://` remote: TLS first (the remote's `tls { ca_file }`), then the upgrade."""
    from tests.helpers import free_port, make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    ws_port = free_port()
    hub, _port = start_hub(
        hub_kind,
        extra=f'}}\nwebsocket {{ port: {ws_port}, tls {{ cert_file: "{tls.server_cert}", key_file: "{tls.server_key}" }}',
    )
    config = (
        f'server_name: leaf\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "wss://localhost:{ws_port}", '
        f'tls {{ ca_file: "{tls.ca_cert}" }} }} ] }}\n'
    )
    with hub, ServerProcess(leaf_kind, config=config) as leaf:
        wait_linked(leaf)
        assert asyncio.run(scenario(hub, leaf)) == EXPECTED
