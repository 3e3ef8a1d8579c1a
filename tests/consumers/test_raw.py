"""Byte-exact status messages and ack subjects on a raw socket (both server kinds)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from helpers import RawClient

pytestmark = pytest.mark.timeout(30)

ACK_RE = rb"\$JS\.ACK\.Q\.pc\.(\d+)\.(\d+)\.(\d+)\.(\d{19})\.(\d+)"


@pytest.fixture
def client(server_factory, tmp_path):
    srv = server_factory(args=["-js", "-sd", str(tmp_path)])
    c = RawClient(srv)
    c.read_info()
    c.connect(headers=True, no_responders=True)
    c.send(b"SUB _INBOX.> 1\r\n")
    c.ping_barrier()
    yield c
    c.close()


def request(c: RawClient, subject: str, body, reply: str = "_INBOX.api") -> dict:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.send(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(data), data))
    head = c.read_line()
    assert head.startswith(b"MSG " + reply.encode()), head
    size = int(head.split()[-1])
    return json.loads(c.read_exactly(size + 2)[:-2])


def setup_stream(c: RawClient, count: int = 3, **consumer) -> None:
    request(c, "$JS.API.STREAM.CREATE.Q", {"name": "Q", "subjects": ["q.>"]})
    for i in range(count):
        c.send(b"PUB q.a 2\r\nm%d\r\n" % i)
    # nats-server stores asynchronously: wait until the stream has them all
    deadline = time.monotonic() + 5
    while request(c, "$JS.API.STREAM.INFO.Q", b"")["state"]["messages"] < count:
        assert time.monotonic() < deadline, "messages not stored in time"
        time.sleep(0.01)
    config = {"durable_name": "pc", "ack_policy": "explicit"}
    config.update(consumer)
    reply = request(c, "$JS.API.CONSUMER.CREATE.Q.pc", {"stream_name": "Q", "config": config})
    assert "error" not in reply, reply


def pull(c: RawClient, body, reply: str = "_INBOX.p") -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.send(b"PUB $JS.API.CONSUMER.MSG.NEXT.Q.pc %s %d\r\n%s\r\n" % (reply.encode(), len(data), data))


def test_no_wait_messages_then_404(client):
    setup_stream(client)
    pull(client, {"batch": 5, "no_wait": True})
    data = client.read_until(b"NATS/1.0 404 No Messages\r\n\r\n\r\n")
    acks = re.findall(rb"MSG q\.a 1 " + ACK_RE + rb" 2\r\nm(\d)\r\n", data)
    assert [(a[0], a[1], a[2], a[4], a[5]) for a in acks] == [
        (b"1", b"1", b"1", b"2", b"0"),
        (b"1", b"2", b"2", b"1", b"1"),
        (b"1", b"3", b"3", b"0", b"2"),
    ]
    assert data.endswith(b"HMSG _INBOX.p 1 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n")
    pull(client, {"batch": 1, "no_wait": True})
    assert client.read_until(b"\r\n\r\n\r\n") == b"HMSG _INBOX.p 1 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n"


def test_request_timeout_408_and_heartbeat(client):
    setup_stream(client, count=0)
    pull(client, {"batch": 3, "expires": 300_000_000})
    assert client.read_until(b"\r\n\r\n\r\n", timeout=3) == (
        b"HMSG _INBOX.p 1 81 81\r\nNATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\n"
        b"Nats-Pending-Bytes: 0\r\n\r\n\r\n"
    )
    pull(client, {"batch": 1, "expires": 1_000_000_000, "idle_heartbeat": 200_000_000})
    assert client.read_until(b"\r\n\r\n\r\n", timeout=3) == (
        b"HMSG _INBOX.p 1 75 75\r\nNATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n"
        b"Nats-Last-Stream: 0\r\n\r\n\r\n"
    )


def test_max_bytes_statuses(client):
    setup_stream(client)
    pull(client, {"batch": 5, "max_bytes": 10})
    assert client.read_until(b"\r\n\r\n\r\n") == (
        b"HMSG _INBOX.p 1 96 96\r\nNATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 5\r\n"
        b"Nats-Pending-Bytes: 10\r\n\r\n\r\n"
    )
    pull(client, {"batch": 1, "max_bytes": 1000})
    data = client.read_until(b"Nats-Pending-Bytes: ")
    size = len(re.search(rb"MSG q\.a 1 (" + ACK_RE + rb")", data).group(1)) + len(b"q.a") + 2
    rest = client.read_until(b"\r\n\r\n\r\n")
    assert rest == b"%d\r\n\r\n\r\n" % (1000 - size)
    assert b"NATS/1.0 409 Batch Completed\r\nNats-Pending-Messages: 0\r\n" in data


def test_request_errors(client):
    setup_stream(client, count=0, max_batch=10, max_expires=1_000_000_000, max_bytes=1000)
    for body, text in (
        ({"batch": 11}, b"409 Exceeded MaxRequestBatch of 10"),
        ({"batch": 1, "expires": 2_000_000_000}, b"409 Exceeded MaxRequestExpires of 1s"),
        ({"batch": 1, "max_bytes": 2000}, b"409 Exceeded MaxRequestMaxBytes of 1000"),
        (
            {"batch": 1, "expires": 500_000_000, "idle_heartbeat": 400_000_000},
            b"400 Bad Request - heartbeat value too large",
        ),
    ):
        pull(client, body)
        line = client.read_until(b"\r\n\r\n\r\n")
        assert line.endswith(b"NATS/1.0 " + text + b"\r\n\r\n\r\n"), (body, line)


def test_consumer_deleted_and_no_responders(client):
    setup_stream(client, count=0)
    pull(client, {"batch": 1})
    request(client, "$JS.API.CONSUMER.INFO.Q.pc", b"")
    client.send(b"PUB $JS.API.CONSUMER.DELETE.Q.pc _INBOX.api 0\r\n\r\n")
    # the waiting request hears about it, and the API answers (usually in this order; nats-server's
    # 409 comes from the consumer's own goroutine and was seen after the API reply under load)
    seen: dict[str, Any] = {}
    while len(seen) < 2:
        head = client.read_line()
        size = int(head.split()[-1])
        payload = client.read_exactly(size + 2)[:-2]
        if head.startswith(b"HMSG _INBOX.p 1 "):
            seen["pull"] = head + payload
        else:
            seen["api"] = json.loads(payload)
    assert seen["pull"] == b"HMSG _INBOX.p 1 33 33\r\nNATS/1.0 409 Consumer Deleted\r\n\r\n"
    assert seen["api"] == {"type": "io.nats.jetstream.api.v1.consumer_delete_response", "success": True}
    pull(client, {"batch": 1})
    line = client.read_until(b"\r\n\r\n\r\n")
    assert line.startswith(b"HMSG _INBOX.p 1 ") and b"NATS/1.0 503\r\n" in line


def test_ack_sync_and_ack_above_cursor(client):
    setup_stream(client, count=2)
    pull(client, {"batch": 1})
    data = client.read_until(b"m0\r\n")
    ack = re.search(rb"(\$JS\.ACK\.\S+)", data).group(1)
    client.send(b"PUB %s _INBOX.ack 0\r\n\r\n" % ack)
    assert client.read_until(b"\r\n\r\n") == b"MSG _INBOX.ack 1 0\r\n\r\n"
    # an ack for a sequence not delivered yet: ignored, no ack-ack
    bogus = ack.replace(b".1.1.1.", b".1.2.2.")
    client.send(b"PUB %s _INBOX.ack2 4\r\n+ACK\r\n" % bogus)
    assert b"_INBOX.ack2" not in client.ping_barrier()
    info = request(client, "$JS.API.CONSUMER.INFO.Q.pc", b"")
    assert info["ack_floor"]["stream_seq"] == 1 and info["num_ack_pending"] == 0


def test_push_heartbeat_and_consumer_seq(client):
    request(client, "$JS.API.STREAM.CREATE.Q", {"name": "Q", "subjects": ["q.>"]})
    client.send(b"PUB q.a 2\r\nm0\r\nSUB dlv.ps 7\r\n")
    client.ping_barrier()
    config = {"durable_name": "pc", "ack_policy": "none", "deliver_subject": "dlv.ps", "idle_heartbeat": 200_000_000}
    body = json.dumps({"stream_name": "Q", "config": config}).encode()
    client.send(b"PUB $JS.API.CONSUMER.CREATE.Q.pc _INBOX.api %d\r\n%s\r\n" % (len(body), body))
    data = client.read_until(b"Nats-Last-Stream: 1\r\n\r\n\r\n", timeout=3)
    assert b'"push_bound":true' in data
    assert re.search(rb"MSG q\.a 7 " + ACK_RE + rb" 2\r\nm0\r\n", data)
    assert data.endswith(
        b"HMSG dlv.ps 7 75 75\r\nNATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\n"
        b"Nats-Last-Stream: 1\r\n\r\n\r\n"
    )
    client.send(b"UNSUB 7\r\n")
    client.ping_barrier()
    pull(client, {"batch": 1})
    assert client.read_until(b"\r\n\r\n\r\n").endswith(b"NATS/1.0 409 Consumer is push based\r\n\r\n\r\n")
