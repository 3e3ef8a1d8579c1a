"""nats-py against a cluster: discovery, reconnect to a discovered member, lame duck mode.

Every test runs on a three-node jsedge cluster and on a three-node nats-server cluster (the oracle),
with the same assertions: the official client must not be able to tell them apart. The client is
only ever given node 0's URL; everything else it knows comes from the `connect_urls` of INFO.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nats
import pytest
from helpers import Cluster, ServerProcess, acheck_for
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

pytestmark = pytest.mark.timeout(90)

CLUSTERS = {
    "jsedge": ["jsedge", "jsedge", "jsedge"],
    "nats": ["nats", "nats", "nats"],
}

# nats-server refuses a lame_duck_duration under 30s (and so does jsedge); the grace period before
# the first client is closed can be short, so a lame-duck test does not wait for the defaults (10s).
LAME_DUCK_CONFIG = 'lame_duck_duration: "30s"\nlame_duck_grace_period: "1s"\n'


@pytest.fixture(params=list(CLUSTERS))
def kinds(request) -> list[str]:
    return CLUSTERS[request.param]


def hostport(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


class Events:
    """The connection callbacks of one nats-py client, as asyncio events plus a log of their order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.errors: list[BaseException] = []
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.discovered = asyncio.Event()
        self.lame_duck = asyncio.Event()

    def _setter(self, name: str, event: asyncio.Event) -> Callable[[], Awaitable[None]]:
        async def callback() -> None:
            self.order.append(name)
            event.set()

        return callback

    def options(self) -> dict:
        async def on_error(exc: BaseException) -> None:
            self.errors.append(exc)  # refused reconnect attempts to a dead or lame-duck node land here

        return {
            "disconnected_cb": self._setter("disconnected", self.disconnected),
            "reconnected_cb": self._setter("reconnected", self.reconnected),
            "discovered_server_cb": self._setter("discovered", self.discovered),
            "lame_duck_mode_cb": self._setter("lame_duck", self.lame_duck),
            "error_cb": on_error,
        }


async def _connect_seed(server: ServerProcess, events: Events | None = None, **kw) -> Client:
    """A client given only `server`'s URL, reconnecting quickly and (for the test's duration) forever."""
    kw.setdefault("connect_timeout", 2)
    kw.setdefault("reconnect_time_wait", 0.2)
    kw.setdefault("max_reconnect_attempts", -1)
    if events is not None:
        kw.update(events.options())
    return await nats.connect(servers=[server.url], **kw)


async def _plain(server: ServerProcess) -> Client:
    return await nats.connect(server.url, allow_reconnect=False, connect_timeout=2)


async def _reaches(publisher: Client, subject: str, sub) -> bool:
    """Publish a probe; true once `sub` (possibly on another node) has received something."""
    await publisher.publish(subject, b"probe")
    await publisher.flush()
    await asyncio.sleep(0.05)
    return sub.pending_msgs > 0


async def _request(conn: Client, subject: str, data: bytes) -> bytes | None:
    try:
        return (await conn.request(subject, data, timeout=0.5)).data
    except (NoRespondersError, NatsTimeout):
        return None  # interest not propagated yet


async def _drain(sub) -> None:
    while sub.pending_msgs:
        await sub.next_msg(timeout=1)


async def _upper(msg: Msg) -> None:
    await msg.respond(msg.data.upper())


# ------------------------------------------------------------------------------ discovery


async def test_discovery_from_one_seed(kinds: list[str]) -> None:
    with Cluster(kinds) as cluster:
        cluster.wait_mesh()
        events = Events()
        nc = await _connect_seed(cluster[0], events)
        try:
            others = {hostport(cluster[1]), hostport(cluster[2])}
            await acheck_for(10, lambda: {u.netloc for u in nc.discovered_servers} == others)
            # the seed URL itself is in connect_urls too, and is not added twice
            assert sorted(u.netloc for u in nc.servers) == sorted({hostport(cluster[0])} | others)
            assert [u.netloc for u in nc.servers if u.netloc == hostport(cluster[0])] == [hostport(cluster[0])]
            assert all(u.scheme == "nats" for u in nc.discovered_servers)
            assert nc.connected_url is not None and nc.connected_url.netloc == hostport(cluster[0])
            assert set(events.order) <= {"discovered"} and events.errors == []  # connected once, stayed
        finally:
            await nc.close()


async def test_a_member_joining_later_is_discovered(kinds: list[str]) -> None:
    """A node started after the client connected reaches it as an async INFO: discovered_server_cb."""
    with Cluster(kinds, start=False) as cluster:
        cluster.start(0)
        cluster.start(1)
        cluster.wait_mesh()
        events = Events()
        nc = await _connect_seed(cluster[0], events)
        try:
            await acheck_for(10, lambda: {u.netloc for u in nc.discovered_servers} == {hostport(cluster[1])})
            events.discovered.clear()
            events.order.clear()
            cluster.start(2)
            await asyncio.wait_for(events.discovered.wait(), 15)
            await acheck_for(
                10, lambda: {u.netloc for u in nc.discovered_servers} == {hostport(cluster[1]), hostport(cluster[2])}
            )
            assert nc.connected_url is not None and nc.connected_url.netloc == hostport(cluster[0])
            assert events.order == ["discovered"] and events.errors == []  # no reconnect on the way
        finally:
            await nc.close()


# ------------------------------------------------------------------------------ reconnect


@dataclass
class Trio:
    """`roaming` is seeded with node 0 only; `one` and `two` are pinned to nodes 1 and 2. Interest:
    `to.roaming` and `svc.roaming` on `roaming`, `to.one` on `one`, `svc.two` on `two`."""

    roaming: Client
    one: Client
    two: Client
    to_roaming: Subscription
    to_one: Subscription

    @classmethod
    async def start(cls, cluster: Cluster, events: Events) -> Trio:
        roaming = await _connect_seed(cluster[0], events)
        one, two = await _plain(cluster[1]), await _plain(cluster[2])
        to_roaming = await roaming.subscribe("to.roaming")
        await roaming.subscribe("svc.roaming", cb=_upper)
        to_one = await one.subscribe("to.one")
        await two.subscribe("svc.two", cb=_upper)
        for conn in (roaming, one, two):
            await conn.flush()
        others = {hostport(cluster[1]), hostport(cluster[2])}
        await acheck_for(10, lambda: {u.netloc for u in roaming.discovered_servers} == others)
        return cls(roaming, one, two, to_roaming, to_one)

    async def traffic(self) -> None:
        """Messages and requests both ways between `roaming` (wherever it is connected) and the
        pinned clients; after a reconnect this proves the subscriptions were replayed."""
        roaming, one, two = self.roaming, self.one, self.two
        for sub in (self.to_roaming, self.to_one):
            await _drain(sub)
        assert await acheck_for(10, lambda: _reaches(roaming, "to.one", self.to_one))
        assert await acheck_for(10, lambda: _reaches(two, "to.roaming", self.to_roaming))
        assert await acheck_for(10, lambda: _request(roaming, "svc.two", b"from roaming")) == b"FROM ROAMING"
        assert await acheck_for(10, lambda: _request(one, "svc.roaming", b"to roaming")) == b"TO ROAMING"
        for sub in (self.to_roaming, self.to_one):
            await _drain(sub)
        await two.publish("to.roaming", b"last", headers={"X-Hop": "1"})
        await two.flush()
        msg = await self.to_roaming.next_msg(timeout=2)
        assert (msg.subject, msg.data, msg.headers) == ("to.roaming", b"last", {"X-Hop": "1"})

    async def close(self) -> None:
        for conn in (self.roaming, self.one, self.two):
            if not conn.is_closed:
                await conn.close()


async def test_reconnect_to_a_discovered_member_after_kill(kinds: list[str]) -> None:
    with Cluster(kinds) as cluster:
        cluster.wait_mesh()
        events = Events()
        trio = await Trio.start(cluster, events)
        roaming = trio.roaming
        try:
            await trio.traffic()
            events.order.clear()
            cluster.kill(0)  # SIGKILL: no goodbye, the client sees the socket die
            await asyncio.wait_for(events.disconnected.wait(), 10)
            await asyncio.wait_for(events.reconnected.wait(), 15)
            assert roaming.connected_url is not None
            assert roaming.connected_url.netloc in {hostport(cluster[1]), hostport(cluster[2])}
            assert events.order == ["disconnected", "reconnected"]
            await trio.traffic()
            # the seed URL stays in the pool (it was given explicitly); nothing was discovered twice
            assert sorted(u.netloc for u in roaming.servers) == sorted(hostport(cluster[i]) for i in range(3))
        finally:
            await trio.close()


# ------------------------------------------------------------------------------ lame duck mode


async def test_lame_duck_mode_moves_the_client(kinds: list[str], tmp_path: Path) -> None:
    """SIGUSR2 on the client's node: INFO with ldm (lame_duck_mode_cb), the node closes the client
    after the grace period, the client reconnects to a discovered member, and the node exits."""
    config = tmp_path / "lame_duck.conf"
    config.write_text(LAME_DUCK_CONFIG)
    with Cluster(kinds, extra_args=["-c", str(config)]) as cluster:
        cluster.wait_mesh()
        events = Events()
        trio = await Trio.start(cluster, events)
        roaming = trio.roaming
        try:
            await trio.traffic()
            mark = cluster[0].log_mark()
            events.order.clear()
            cluster[0].signal(signal.SIGUSR2)
            await asyncio.wait_for(events.lame_duck.wait(), 5)
            assert events.order == ["lame_duck"]  # the INFO came while still connected
            assert roaming.connected_url is not None and roaming.connected_url.netloc == hostport(cluster[0])
            cluster[0].wait_for_log("Entering lame duck mode, stop accepting new clients", 5, since=mark)
            await asyncio.wait_for(events.reconnected.wait(), 15)
            assert events.order == ["lame_duck", "disconnected", "reconnected"]
            assert roaming.connected_url is not None
            assert roaming.connected_url.netloc in {hostport(cluster[1]), hostport(cluster[2])}
            await trio.traffic()
            # the lame duck shuts down once its clients are gone
            assert await asyncio.to_thread(cluster[0].wait_exit, 20) == 0
        finally:
            await trio.close()


_LOG_TIME = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+")


def _logged_at(server: ServerProcess, text: str, since: int) -> datetime:
    line = server.wait_for_log(re.escape(text), 5, since=since).string
    stamp = _LOG_TIME.search(line)
    assert stamp is not None, line
    return datetime.strptime(stamp.group(0), "%Y/%m/%d %H:%M:%S.%f")


@pytest.mark.parametrize("kinds", [CLUSTERS["jsedge"], CLUSTERS["nats"]], ids=["jsedge", "nats"])
async def test_lame_duck_node_stops_right_after_its_last_client(kinds: list[str], tmp_path: Path) -> None:
    """Two clients on the lame duck: closed one close interval apart (1s here: (30s - 1s) / 2
    capped at 1s; nats-server picks at random in [interval/2, interval)), then the node shuts down
    without waiting once more."""
    config = tmp_path / "lame_duck.conf"
    config.write_text(LAME_DUCK_CONFIG)
    with Cluster(kinds, extra_args=["-c", str(config)]) as cluster:
        cluster.wait_mesh()
        events = [Events(), Events()]
        clients = [await _connect_seed(cluster[0], e) for e in events]
        try:
            for client in clients:
                await acheck_for(10, lambda client=client: len(client.discovered_servers) == 2)
            mark = cluster[0].log_mark()
            cluster[0].signal(signal.SIGUSR2)
            for e in events:
                await asyncio.wait_for(e.reconnected.wait(), 15)
            assert await asyncio.to_thread(cluster[0].wait_exit, 20) == 0
            closing = _logged_at(cluster[0], "Closing existing clients", mark)
            shutdown = _logged_at(cluster[0], "Initiating Shutdown...", mark)
            assert 0.4 <= (shutdown - closing).total_seconds() < 1.5
        finally:
            for client in clients:
                await client.close()
