"""Differential: the route protocol bytes a hand-made peer gets from jsedge and from nats-server
for the same script (interest dump on registration, later RS+/RS- with queue weights, RMSG/HMSG
in every reply/queue form), compared line for line on the `$G` account.

`$SYS` lines are left out (each server announces its own system services) and so are INFO values
that name the server; the INFO keys may differ only as listed in INFO_ONLY_IN.
"""

from __future__ import annotations

import pytest
from helpers import RawClient, ServerProcess, free_port, route_handshake, until_pong

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

#: Route INFO keys one server has and the other lacks, and why.
INFO_ONLY_IN = {
    # nats-server: route compression negotiation, route pooling, leaf-node origin-cluster support
    # (jsedge has none of these yet, so it does not offer them); jsedge: marks a jsedge peer
    "nats": {"compression", "route_pool_size", "ln", "lnoc", "lnocu"},
    "jsedge": {"jsedge"},
}

SCRIPT: list[tuple[str, bytes]] = [
    # (who sends, bytes); "local" is a client of the server, "peer" is the route peer; from the
    # handshake on, the peer PINGs after each step and what it got up to the PONG is one chunk
    ("local", b"SUB a.b 1\r\nSUB q.* grp 2\r\nSUB q.* grp 3\r\nSUB > 4\r\nSUB a.b 5\r\n"),
    ("handshake", b""),
    ("local", b"SUB late 6\r\nSUB late g 7\r\nUNSUB 3\r\nUNSUB 6\r\nUNSUB 5\r\n"),
    ("peer", b"RS+ $G x.>\r\nRS+ $G svc workers 2\r\nRS+ $G svc workers 5\r\n"),
    (
        "local",
        b"PUB x.1 3\r\nabc\r\nPUB x.2 _INBOX.r 2\r\nhi\r\nHPUB x.3 12 14\r\nNATS/1.0\r\n\r\nyo\r\n"
        b"HPUB x.4 rep 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nzz\r\nPUB svc rr 1\r\nq\r\nPUB svc 1\r\nw\r\n"
        b"PUB x.y.z 0\r\n\r\nPUB nowhere 1\r\nn\r\n",
    ),
    ("peer", b"RS- $G x.>\r\n"),
    ("local", b"PUB x.1 1\r\nz\r\nUNSUB 4\r\nUNSUB 2\r\nUNSUB 7 1\r\n"),
]


def _run(kind: str) -> tuple[set[str], list[list[bytes]]]:
    port = free_port()
    server = ServerProcess(kind, ["--cluster", f"nats://127.0.0.1:{port}", "--cluster_name", "c1"])
    try:
        server.wait_for_log("Listening for route connections", 5)
        chunks: list[list[bytes]] = []
        with RawClient(port) as peer, RawClient(server) as local:
            info = peer.read_info()
            local.read_info()
            local.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
            local.ping_barrier()
            shaken = False
            for who, data in SCRIPT:
                if who == "handshake":
                    shaken = True
                    route_handshake(peer)
                elif who == "local":
                    local.send(data)
                    local.ping_barrier()
                else:
                    peer.send(data)
                if not shaken:
                    continue  # a PING before CONNECT is an authorization violation
                received = until_pong(peer)
                lines = [line for line in received.split(b"\r\n") if line and not line.startswith(b"RS+ $SYS ")]
                chunks.append([line for line in lines if line not in (b"PING", b"PONG")])
        return set(info), chunks
    finally:
        server.cleanup()


def _normalized(chunk: list[bytes]) -> list[bytes]:
    # the interest dump walks a hash table in nats-server: its order carries no meaning
    return sorted(chunk) if all(line.startswith(b"RS") for line in chunk) else chunk


def test_route_frames_match_nats_server() -> None:
    nats_keys, nats_chunks = _run("nats")
    jsedge_keys, jsedge_chunks = _run("jsedge")
    assert nats_keys - jsedge_keys == INFO_ONLY_IN["nats"]
    assert jsedge_keys - nats_keys == INFO_ONLY_IN["jsedge"]
    assert [_normalized(c) for c in jsedge_chunks] == [_normalized(c) for c in nats_chunks]


def _routed_js_delivery(kind: str) -> tuple[bytes, bytes]:
    """A peer routes a JetStream delivery (deliver subject, stored subject after `@` in the ack
    reply): what a local subscriber of the deliver subject sees."""
    port = free_port()
    server = ServerProcess(kind, ["--cluster", f"nats://127.0.0.1:{port}", "--cluster_name", "c1"])
    try:
        server.wait_for_log("Listening for route connections", 5)
        with RawClient(port) as peer, RawClient(server) as local:
            peer.read_info()
            local.read_info()
            local.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nSUB deliver.x 1\r\n')
            local.ping_barrier()
            route_handshake(peer)
            until_pong(peer)
            ack = b"$JS.ACK.S.C.1.5.5.1700000000000000000.0"
            peer.send(b"RMSG $G deliver.x " + ack + b"@orders.new 2\r\nhi\r\n")
            peer.send(b"HMSG $G deliver.x " + ack + b"@orders.h 12 14\r\nNATS/1.0\r\n\r\nyo\r\n")
            peer.send(b"RMSG $G deliver.x $JS.ACK.not.enough@x 1\r\nz\r\n")
            until_pong(peer)
            got = local.read_until(b"\r\nz\r\n", timeout=5)
            return got, ack
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_routed_jetstream_deliveries_show_the_stored_subject(kind: str) -> None:
    got, ack = _routed_js_delivery(kind)
    assert got == (
        b"MSG orders.new 1 " + ack + b" 2\r\nhi\r\n"
        b"HMSG orders.h 1 " + ack + b" 12 14\r\nNATS/1.0\r\n\r\nyo\r\n"
        b"MSG deliver.x 1 $JS.ACK.not.enough@x 1\r\nz\r\n"
    )
