"""Client-level compatibility: the real nats-py client against each `server_kind` (jsedge, nats).

Select one implementation with `-k nats` / `-k jsedge`. Every test is bounded (a few seconds).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import nats
import pytest
from helpers import RawClient, acheck_for, connect_line, make_tls_files
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

pytestmark = [pytest.mark.compat, pytest.mark.timeout(30)]


async def _connect(srv_or_url, **kw):
    url = srv_or_url if isinstance(srv_or_url, str) else srv_or_url.url
    kw.setdefault("connect_timeout", 2)
    kw.setdefault("allow_reconnect", False)
    kw.setdefault("max_reconnect_attempts", 1)  # 0 means "forever" in nats-py
    kw.setdefault("reconnect_time_wait", 0.1)
    return await nats.connect(url, **kw)


async def _recv(sub, timeout: float = 2.0):
    return await sub.next_msg(timeout=timeout)


async def _no_more(nc, sub) -> None:
    """Prove nothing else is queued for `sub`: a flush is a server round trip barrier."""
    await nc.flush(timeout=2)
    with pytest.raises(NatsTimeoutError):
        await sub.next_msg(timeout=0.05)


# --------------------------------------------------------------------------------------------------
# core pub/sub


async def test_pub_sub(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        sub = await nc.subscribe("greet")
        await nc.publish("greet", b"hello")
        await nc.publish("greet", b"")
        await nc.publish("other", b"nope")
        m = await _recv(sub)
        assert (m.subject, m.data, m.reply) == ("greet", b"hello", "")
        assert (await _recv(sub)).data == b""
        await _no_more(nc, sub)
    finally:
        await nc.close()


async def test_wildcards(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        star = await nc.subscribe("a.*.c")
        full = await nc.subscribe("a.>")
        for subj in ("a.b.c", "a.x.c", "a.b", "a.b.c.d", "b.b.c"):
            await nc.publish(subj, subj.encode())
        assert [(await _recv(star)).subject for _ in range(2)] == ["a.b.c", "a.x.c"]
        assert [(await _recv(full)).subject for _ in range(4)] == ["a.b.c", "a.x.c", "a.b", "a.b.c.d"]
        await _no_more(nc, star)
        await _no_more(nc, full)
    finally:
        await nc.close()


async def test_queue_groups(server_factory):
    srv = server_factory()
    pub = await _connect(srv)
    members = [await _connect(srv) for _ in range(3)]
    try:
        got: Counter[str] = Counter()
        seen: list[bytes] = []
        subs = []
        for i, nc in enumerate(members):

            async def cb(msg, i=i):
                got[f"m{i}"] += 1
                seen.append(msg.data)

            subs.append(await nc.subscribe("work", queue="workers", cb=cb))
            await nc.flush()
        plain = await pub.subscribe("work")
        n = 90
        for k in range(n):
            await pub.publish("work", str(k).encode())
        await pub.flush()
        for _ in range(n):
            await _recv(plain)  # the plain subscriber sees every message
        for _ in range(100):
            if len(seen) >= n:
                break
            await asyncio.sleep(0.02)
        for nc in members:
            await nc.flush()
        assert sorted(seen, key=int) == [str(k).encode() for k in range(n)]  # exactly once each
        assert len(got) == 3 and min(got.values()) >= 5, got  # random spread over members
    finally:
        for nc in members + [pub]:
            await nc.close()


async def test_headers_round_trip(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        sub = await nc.subscribe("h")
        await nc.publish("h", b"body", headers={"X-One": "1", "Mixed-Case": "Value With Spaces"})
        m = await _recv(sub)
        assert m.data == b"body"
        assert m.headers == {"X-One": "1", "Mixed-Case": "Value With Spaces"}
    finally:
        await nc.close()


async def test_header_only_message_to_plain_subscriber(server_factory):
    """A subscriber without headers support gets the payload only (raw client, nats-py publisher)."""
    srv = server_factory()
    nc = await _connect(srv)
    try:
        with RawClient(srv) as raw:
            raw.read_info()
            raw.send(connect_line() + b"SUB h 1\r\n")
            raw.ping_barrier()
            await nc.publish("h", b"data", headers={"X": "1"})
            await nc.flush()
            # nats-server once answered the PING before the MSG reached this socket (its flush of
            # other clients' buffers runs apart from the PONG): wait for the message, then compare
            got = raw.read_until(b"data\r\n") + raw.ping_barrier()
            assert got == b"MSG h 1 4\r\ndata\r\nPONG\r\n"
    finally:
        await nc.close()


async def test_request_reply_muxed_inbox(server_factory):
    srv = server_factory()
    svc = await _connect(srv)
    nc = await _connect(srv)
    try:

        async def handler(msg):
            await msg.respond(b"re:" + msg.data)

        await svc.subscribe("svc.echo", cb=handler)
        await svc.flush()
        # the first request sets up nats-py's muxed inbox; concurrent *first* requests race in nats-py.
        # nats-server once answered this first request with no responders in CI (a loaded machine,
        # the service's SUB flushed before): it is repeated until a deadline; the ones below are not
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                first = await nc.request("svc.echo", b"0", timeout=2)
                break
            except NoRespondersError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        rest = await asyncio.gather(*(nc.request("svc.echo", f"{i}".encode(), timeout=2) for i in range(1, 5)))
        replies = [first, *rest]
        assert [r.data for r in replies] == [f"re:{i}".encode() for i in range(5)]
        inboxes = {r.subject for r in replies}
        assert len(inboxes) == 5 and all(s.startswith("_INBOX.") for s in inboxes)
        assert len({s.rsplit(".", 1)[0] for s in inboxes}) == 1  # one muxed wildcard inbox
    finally:
        await nc.close()
        await svc.close()


async def test_no_responders(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        with pytest.raises(NoRespondersError):
            await nc.request("nobody.home", b"?", timeout=2)
        assert nc.is_connected
    finally:
        await nc.close()


async def test_drain(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    pub = await _connect(srv)
    try:
        got: list[bytes] = []

        async def slow(msg):
            await asyncio.sleep(0)  # yield, so drain overlaps callback work
            got.append(msg.data)

        await nc.subscribe("d", cb=slow)
        await nc.flush()
        for i in range(50):
            await pub.publish("d", str(i).encode())
        await pub.flush()
        await nc.flush()
        await asyncio.wait_for(nc.drain(), 5)
        assert nc.is_closed
        assert got == [str(i).encode() for i in range(50)]
    finally:
        await pub.close()
        if not nc.is_closed:
            await nc.close()


async def test_unsubscribe_with_max(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        sub = await nc.subscribe("u")
        await sub.unsubscribe(limit=2)
        for i in range(5):
            await nc.publish("u", str(i).encode())
        await nc.flush()
        assert [(await _recv(sub)).data for _ in range(2)] == [b"0", b"1"]
        with pytest.raises(NatsTimeoutError):
            await sub.next_msg(timeout=0.1)
        # the server removed it too: a raw subscriber-free publish with reply gets no responders
        with pytest.raises(NoRespondersError):
            await nc.request("u", b"", timeout=2)
    finally:
        await nc.close()


async def test_reconnect_after_restart(server_factory):
    srv = server_factory()
    reconnected = asyncio.Event()
    disconnected = asyncio.Event()

    async def on_reconnect():
        reconnected.set()

    async def on_disconnect():
        disconnected.set()

    nc = await _connect(
        srv,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        reconnected_cb=on_reconnect,
        disconnected_cb=on_disconnect,
    )
    try:
        sub = await nc.subscribe("r")
        await nc.flush()
        port = srv.port
        srv.restart(timeout=5)
        assert srv.port == port
        await asyncio.wait_for(disconnected.wait(), 5)
        await asyncio.wait_for(reconnected.wait(), 5)
        await nc.flush(timeout=2)  # subscriptions were replayed before this PING
        await nc.publish("r", b"after")
        assert (await _recv(sub)).data == b"after"
    finally:
        await nc.close()


async def test_flush_and_rtt(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        for _ in range(3):
            await nc.flush(timeout=2)
        rtt = await nc.rtt(timeout=2)
        assert 0 <= rtt < 1
    finally:
        await nc.close()


async def test_max_payload_default(server_factory):
    srv = server_factory()
    nc = await _connect(srv)
    try:
        assert nc.max_payload == 1048576
        sub = await nc.subscribe("big")
        await nc.publish("big", b"x" * 1048576)
        assert len((await _recv(sub, 5)).data) == 1048576
    finally:
        await nc.close()


async def test_max_payload_from_config(server_factory):
    srv = server_factory(config="max_payload: 1000\n")
    nc = await _connect(srv)
    try:
        assert nc.max_payload == 1000
        with pytest.raises(MaxPayloadError):
            await nc.publish("big", b"x" * 1001)
        sub = await nc.subscribe("big")
        await nc.publish("big", b"x" * 1000)
        assert len((await _recv(sub)).data) == 1000
    finally:
        await nc.close()


# --------------------------------------------------------------------------------------------------
# auth

USERS = """
authorization {
  users: [
    {user: alice, password: secret, permissions: {
        publish: {allow: ["ok.>"]},
        subscribe: {allow: ["ok.>", "_INBOX.>"]}}}
  ]
}
"""


async def _connect_fails(url: str, **kw) -> str:
    errors: list[Exception] = []

    async def error_cb(e):
        errors.append(e)

    with pytest.raises(Exception) as ei:
        nc = await asyncio.wait_for(_connect(url, error_cb=error_cb, **kw), 5)
        await nc.close()
    assert not isinstance(ei.value, asyncio.TimeoutError), "connect neither succeeded nor failed in 5 s"
    return f"{ei.value!r} {errors!r}".lower()


async def test_token_auth(server_factory):
    srv = server_factory(config="authorization { token: s3cr3t }\n")
    nc = await _connect(srv, token="s3cr3t")
    try:
        await nc.flush()
    finally:
        await nc.close()
    assert "authorization" in await _connect_fails(srv.url, token="wrong")


async def test_user_password_flags(server_factory):
    srv = server_factory(["--user", "u", "--pass", "p"])
    nc = await _connect(srv, user="u", password="p")
    try:
        await nc.flush()
    finally:
        await nc.close()
    assert "authorization" in await _connect_fails(srv.url, user="u", password="bad")
    assert "authorization" in await _connect_fails(srv.url)


async def test_user_url_credentials(server_factory):
    srv = server_factory(config=USERS)
    nc = await _connect(f"nats://alice:secret@127.0.0.1:{srv.port}")
    try:
        await nc.flush()
    finally:
        await nc.close()


async def test_permission_violation_is_async(server_factory):
    srv = server_factory(config=USERS)
    errors: list[Exception] = []

    async def error_cb(e):
        errors.append(e)

    nc = await _connect(srv, user="alice", password="secret", error_cb=error_cb)
    try:
        sub = await nc.subscribe("ok.x")
        await nc.publish("denied.x", b"no")
        await nc.subscribe("denied.y")
        await nc.flush()
        for _ in range(100):
            if len(errors) >= 2:
                break
            await asyncio.sleep(0.02)
        texts = [str(e) for e in errors]
        assert any('permissions violation for publish to "denied.x"' in t.lower() for t in texts), texts
        assert any('permissions violation for subscription to "denied.y"' in t.lower() for t in texts), texts
        assert nc.is_connected
        await nc.publish("ok.x", b"yes")
        assert (await _recv(sub)).data == b"yes"
        assert nc.is_connected
    finally:
        await nc.close()


async def test_no_auth_user(server_factory):
    srv = server_factory(
        config="""
authorization { users: [
  {user: anon, password: x, permissions: {publish: {allow: ["pub.>"]}, subscribe: {allow: ["pub.>"]}}}
  {user: admin, password: y}
] }
no_auth_user: anon
"""
    )
    with RawClient(srv) as raw:
        assert "auth_required" not in raw.read_info()
    errors: list[Exception] = []

    async def error_cb(e):
        errors.append(e)

    nc = await _connect(srv, error_cb=error_cb)
    admin = await _connect(srv, user="admin", password="y")
    try:
        sub = await nc.subscribe("pub.a")
        await nc.publish("pub.a", b"1")
        assert (await _recv(sub)).data == b"1"
        await nc.publish("other", b"2")
        await nc.flush()
        await acheck_for(2, lambda: any("permissions violation" in str(e).lower() for e in errors))
        await admin.publish("other", b"admin may")
        await admin.flush()
    finally:
        await nc.close()
        await admin.close()


# --------------------------------------------------------------------------------------------------
# TLS


async def test_tls(server_factory, tmp_path):
    tls = make_tls_files(tmp_path / "tls")
    srv = server_factory(config=tls.server_config())
    with RawClient(srv) as raw:
        info = raw.read_info()
        assert info.get("tls_required") is True and "tls_verify" not in info
    nc = await _connect(f"tls://127.0.0.1:{srv.port}", tls=tls.client_context())
    try:
        sub = await nc.subscribe("t")
        await nc.publish("t", b"secure")
        assert (await _recv(sub)).data == b"secure"
    finally:
        await nc.close()


async def test_tls_verify_client_cert(server_factory, tmp_path):
    tls = make_tls_files(tmp_path / "tls")
    srv = server_factory(config=tls.server_config(verify=True))
    with RawClient(srv) as raw:
        info = raw.read_info()
        assert info.get("tls_required") is True and info.get("tls_verify") is True
    nc = await _connect(f"tls://127.0.0.1:{srv.port}", tls=tls.client_context(with_cert=True))
    try:
        await nc.flush()
    finally:
        await nc.close()
    await _connect_fails(f"tls://127.0.0.1:{srv.port}", tls=tls.client_context(with_cert=False))


# --------------------------------------------------------------------------------------------------
# lame duck


async def test_lame_duck(server_factory):
    srv = server_factory(config='lame_duck_duration: "30s"\nlame_duck_grace_period: "1s"\n')
    ldm = asyncio.Event()

    async def on_ldm():
        ldm.set()

    nc = await _connect(srv, lame_duck_mode_cb=on_ldm)
    raw = RawClient(srv)
    try:
        raw.read_info()
        raw.send(connect_line(protocol=1))
        raw.ping_barrier()
        assert raw.read_info().get("connect_info") is True
        await nc.flush()
        mark = srv.log_mark()
        srv.signal(signal.SIGUSR2)
        info = raw.read_info(timeout=3)
        assert info.get("ldm") is True and "connect_info" not in info
        await asyncio.wait_for(ldm.wait(), 3)
        srv.wait_for_log("Entering lame duck mode, stop accepting new clients", 3, since=mark)
        # new connections are refused
        await _connect_fails(srv.url)
        # after the grace period, existing clients are closed (spread over the rest of the duration)
    finally:
        raw.close()
        await nc.close()
        srv.kill()  # SIGTERM is ignored during lame duck; do not wait 30 s
