"""Routes under stress and misuse, each scenario run against jsedge and nats-server alike: a peer
that stops reading, one that reads slowly, one that dies in the middle of a frame, implicit routes
bounded by `connect_retries`, the cluster flags, and the route series on /metrics."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from helpers import (
    Cluster,
    RawClient,
    ServerProcess,
    check_for,
    free_port,
    http_json,
    route_handshake,
    route_peer,
    until_pong,
)

pytestmark = pytest.mark.timeout(90)

KINDS = ["jsedge", "nats"]
PAYLOAD = b"x" * 65536


def _lone(kind: str, extra: str = "", args: tuple[str, ...] = ()) -> ServerProcess:
    port = free_port()
    config = f"cluster {{ name: c1, listen: 127.0.0.1:{port}\n{extra} }}\n"
    server = ServerProcess(kind, list(args), config=config, http=True)
    server.wait_for_log("Listening for route connections", 5)
    server.cluster_port = port  # type: ignore[attr-defined]
    return server


def _publisher(server: ServerProcess) -> RawClient:
    client = RawClient(server)
    client.read_info()
    client.send(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    client.ping_barrier()
    return client


@pytest.mark.parametrize("kind", KINDS)
def test_a_route_that_stops_reading_is_closed_at_the_write_deadline(kind: str) -> None:
    server = _lone(kind, 'write_deadline: "1s"')
    try:
        with route_peer(server) as peer, _publisher(server) as publisher, _publisher(server) as other:
            route_handshake(peer)
            peer.send(b"RS+ $G big.>\r\n")
            until_pong(peer)
            other.send(b"SUB local 1\r\n")
            other.ping_barrier()
            for _ in range(500):  # 32 MiB that the peer never reads
                publisher.send(b"PUB big.x 65536\r\n" + PAYLOAD + b"\r\n")
            server.wait_for_log(r"Slow Consumer Detected: WriteDeadline of 1s exceeded", 10)
            server.wait_for_log(r"Router connection closed: Slow Consumer \(Write Deadline\) - Remote: peer", 10)
            assert http_json(server, "/varz")["slow_consumer_stats"]["routes"] == 1
            # the server kept serving its clients throughout
            publisher.send(b"PUB local 2\r\nok\r\n")
            assert other.read_until(b"MSG local 1 2\r\nok\r\n", timeout=5)
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_route_that_keeps_reading_is_kept(kind: str) -> None:
    """nats-server's route write policy is "retry": a missed deadline with bytes still moving
    only marks the route a slow consumer."""
    server = _lone(kind, 'write_deadline: "1s"')
    count = 256  # 16 MiB, more than the socket buffers hold
    try:
        with route_peer(server) as peer, _publisher(server) as publisher:
            route_handshake(peer)
            peer.send(b"RS+ $G big.>\r\n")
            until_pong(peer)
            for _ in range(count):
                publisher.send(b"PUB big.x 65536\r\n" + PAYLOAD + b"\r\n")
            publisher.ping_barrier(10)
            received = 0
            frame = len(b"RMSG $G big.x 65536\r\n") + 65536 + 2
            deadline = time.monotonic() + 30
            while received < count * frame and time.monotonic() < deadline:
                time.sleep(0.2)
                peer.sock.settimeout(1)
                chunk = peer.sock.recv(1 << 20)  # about 5 MB/s
                assert chunk, "the route was closed"
                received += len(chunk)
            assert received >= count * frame
            assert http_json(server, "/routez")["num_routes"] == 1
            assert not any("Router connection closed" in line for line in server.log_lines())
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "torn", [b"RMSG $G in.x 10\r\nhal", b"RMSG $G in.x", b"HMSG $G in.y 12 14\r\nNATS/1.0", b"RS+ $G in"]
)
def test_a_peer_dying_mid_frame(kind: str, torn: bytes) -> None:
    server = _lone(kind)
    try:
        with _publisher(server) as local:
            local.send(b"SUB in.> 1\r\n")
            local.ping_barrier()
            with route_peer(server) as peer:
                route_handshake(peer)
                until_pong(peer)
                peer.send(torn)
            server.wait_for_log(r"Router connection closed: .* - Remote: peer", 5)
            check_for(5, lambda: http_json(server, "/routez")["num_routes"] == 0)
            # nothing of the torn frame was delivered, and the same peer comes back cleanly
            with route_peer(server) as peer:
                route_handshake(peer)
                until_pong(peer)
                peer.send(b"RMSG $G in.z 5\r\nwhole\r\n")
                until_pong(peer)
                got = local.read_until(b"MSG in.z 1 5\r\nwhole\r\n", timeout=5)
                assert b"in.x" not in got and b"in.y" not in got
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", KINDS)
def test_connect_retries_bounds_an_implicit_route(kind: str) -> None:
    """A gossiped server that cannot be reached is dialled 1 + connect_retries times."""
    server = _lone(kind, args=("-D", "--connect_retries", "2"))
    dead = free_port()
    try:
        with route_peer(server) as peer:
            route_handshake(peer)
            until_pong(peer)
            gossip = {
                "server_id": "NGHOST",
                "server_name": "ghost",
                "proto": 3,
                "host": "127.0.0.1",
                "port": dead,
                "cluster": "c1",
                "ip": f"nats-route://127.0.0.1:{dead}/",
            }
            peer.send(b"INFO " + json.dumps(gossip).encode() + b"\r\n")
            until_pong(peer)
            server.wait_for_log(r"Error trying to connect to route \(attempt 3\)", 10)
            time.sleep(2.5)  # nats-server would have tried again after 1 s
            assert not any("(attempt 4)" in line for line in server.log_lines())
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_flags(kind: str) -> None:
    """--cluster_listen, --cluster_advertise, --no_advertise as nats-server reads them."""
    port = free_port()
    first = ServerProcess(
        kind,
        [
            "--cluster_listen",
            f"nats://127.0.0.1:{port}",
            "--cluster_name",
            "flags",
            "--cluster_advertise",
            "127.0.0.5:7777",
            "--no_advertise",
            "-n",
            "first",
        ],
        http=True,
    )
    first.wait_for_log("Listening for route connections", 5)
    second = ServerProcess(
        kind, ["--cluster", f"nats://127.0.0.1:{free_port()}", "--routes", f"nats://127.0.0.1:{port}"], http=True
    )
    try:
        with RawClient(port) as peer:
            info = peer.read_info()
        assert (info["host"], info["port"], info["cluster"]) == ("127.0.0.5", 7777, "flags")
        assert "connect_urls" not in info
        check_for(10, lambda: http_json(second, "/routez")["num_routes"] >= 1)  # nats-server pools
        # the joining node took the cluster name; first's client URL is not advertised, so
        # second has no peer URLs to list, and first lists none with no_advertise
        with RawClient(second) as client:
            client_info = client.read_info()
        assert client_info["cluster"] == "flags"
        assert "connect_urls" not in client_info
        with RawClient(first) as client:
            assert "connect_urls" not in client.read_info()
    finally:
        second.cleanup()
        first.cleanup()


def test_metrics_carry_the_route_series() -> None:
    with Cluster(["jsedge", "jsedge"]) as cluster:
        cluster.wait_mesh()
        text = ""

        def scraped() -> bool:
            nonlocal text
            url = f"http://127.0.0.1:{cluster[0].http_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
            return "gnatsd_routez_route_info" in text

        check_for(10, scraped)
        assert "gnatsd_routez_num_routes{" in text and "} 1\n" in text
        assert 'remote_name="n2"' in text
        assert "gnatsd_routez_route_in_msgs{" in text
        assert 'gnatsd_varz_slow_consumer_stats{server_id="' in text
