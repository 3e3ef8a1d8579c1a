"""Keep-alive (server PINGs, stale connections) and slow-consumer closes, on both servers.

Timings are bounded by the configured intervals (1 s) and asserted with generous deadlines, never as
speed claims.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from helpers import RawClient, check_for

pytestmark = pytest.mark.compat


def test_server_pings_then_closes_stale_connection(server_factory) -> None:
    server = server_factory(config='ping_interval: "1s"\nping_max: 2\n')
    client = RawClient(server, timeout=8)
    client.read_info()
    client.connect()
    started = time.monotonic()
    assert client.read_until(b"PING\r\n", 5).endswith(b"PING\r\n")
    first = time.monotonic() - started
    assert 0.5 < first < 3.0
    client.read_until(b"PING\r\n", 5)
    data = client.read_until(b"-ERR 'Stale Connection'\r\n", 5)
    assert data.endswith(b"-ERR 'Stale Connection'\r\n")
    assert client.expect_closed(3)


def test_answered_pings_keep_the_connection(server_factory) -> None:
    server = server_factory(config='ping_interval: "1s"\nping_max: 1\n')
    client = RawClient(server, timeout=8)
    client.read_info()
    client.connect()
    for _ in range(3):
        client.read_until(b"PING\r\n", 5)
        client.send(b"PONG\r\n")
    client.send(b"PING\r\n")
    assert client.read_until(b"PONG\r\n", 5).endswith(b"PONG\r\n")


def _closed_connz(http_port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/connz?state=closed", timeout=5) as resp:
        return json.loads(resp.read())["connections"] or []


def test_slow_consumer_pending_bytes_is_closed_without_err(server_factory) -> None:
    server = server_factory(config="max_pending: 262144\nmax_payload: 65536\n", http=True)
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"slow"}\r\nSUB big 1\r\nPING\r\n')
    time.sleep(0.05)  # let the SUB land before publishing; the PING/PONG below is the real barrier
    publisher = RawClient(server)
    publisher.read_info()
    publisher.connect()
    publisher.ping_barrier()
    payload = b"x" * 60000
    frame = b"PUB big %d\r\n%s\r\n" % (len(payload), payload)
    # Far more than max_pending + socket buffers while the subscriber never reads.
    for _ in range(400):
        publisher.send(frame)
    publisher.ping_barrier(10)

    def closed_slow() -> list[dict]:
        return [c for c in _closed_connz(server.http_port) if c.get("name") == "slow"]

    closed = check_for(10, closed_slow)
    assert closed[0]["reason"] in ("Slow Consumer (Pending Bytes)", "Slow Consumer (Write Deadline)")
    slow.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/varz", timeout=5) as resp:
        varz = json.loads(resp.read())
    assert varz["slow_consumers"] >= 1
