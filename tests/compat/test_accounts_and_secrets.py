"""Accounts (isolated subject spaces), bcrypt secrets and allow_responses, on both servers with nats-py
and raw sockets."""

from __future__ import annotations

import asyncio

import bcrypt
import nats
import pytest
from helpers import RawClient
from nats.errors import TimeoutError as NatsTimeoutError

pytestmark = pytest.mark.compat

ACCOUNTS = """
accounts {
  A: { users: [ {user: a, password: a} ] }
  B: { users: [ {user: b, password: b} ] }
  SYS: { users: [ {user: sys, password: sys} ] }
}
system_account: SYS
"""


async def _connect(url: str, **kw):
    kw.setdefault("connect_timeout", 2)
    kw.setdefault("allow_reconnect", False)
    return await nats.connect(url, **kw)


async def test_accounts_isolate_subjects(server_factory) -> None:
    server = server_factory(config=ACCOUNTS)
    url = f"nats://127.0.0.1:{server.port}"
    a1 = await _connect(url, user="a", password="a")
    a2 = await _connect(url, user="a", password="a")
    b = await _connect(url, user="b", password="b")
    try:
        sub_a = await a2.subscribe("events.>")
        sub_b = await b.subscribe("events.>")
        await a2.flush()
        await b.flush()
        await a1.publish("events.x", b"for A")
        await a1.flush()
        assert (await sub_a.next_msg(timeout=2)).data == b"for A"
        await b.flush()
        with pytest.raises(NatsTimeoutError):
            await sub_b.next_msg(timeout=0.3)
    finally:
        for nc in (a1, a2, b):
            await nc.close()


@pytest.mark.parametrize(("user", "account", "is_sys"), [("a", "A", False), ("sys", "SYS", True)])
def test_connect_info_names_the_account(server_factory, user: str, account: str, is_sys: bool) -> None:
    server = server_factory(config=ACCOUNTS)
    with RawClient(server) as client:
        info = client.read_info()
        assert info["auth_required"] is True
        client.connect(user=user, **{"pass": user}, protocol=1)
        client.ping_barrier()
        second = client.read_info()
        assert second["connect_info"] is True
        assert second["remote_account"] == account
        assert second.get("acc_is_sys", False) is is_sys


async def test_bcrypt_password(server_factory) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    server = server_factory(config=f'authorization {{ user: admin, password: "{hashed}" }}\n')
    url = f"nats://127.0.0.1:{server.port}"
    nc = await _connect(url, user="admin", password="s3cret")
    await nc.flush()
    await nc.close()
    with pytest.raises(Exception):
        await _connect(url, user="admin", password="wrong")


ALLOW_RESPONSES = """
authorization {
  users: [
    { user: svc, password: svc,
      permissions: { publish: { deny: ">" }, subscribe: "svc.>", allow_responses: true } }
    { user: cli, password: cli }
  ]
}
"""


async def test_allow_responses_grants_one_reply(server_factory) -> None:
    server = server_factory(config=ALLOW_RESPONSES)
    url = f"nats://127.0.0.1:{server.port}"
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    svc = await _connect(url, user="svc", password="svc", error_cb=on_error)
    cli = await _connect(url, user="cli", password="cli")
    try:

        async def answer(msg) -> None:
            await msg.respond(b"pong")
            await msg.respond(b"again")  # the grant allows one response only

        await svc.subscribe("svc.ping", cb=answer)
        await svc.flush()
        inbox = cli.new_inbox()
        replies = await cli.subscribe(inbox)
        await cli.flush()
        await cli.publish("svc.ping", b"", reply=inbox)
        assert (await replies.next_msg(timeout=2)).data == b"pong"
        with pytest.raises(NatsTimeoutError):
            await replies.next_msg(timeout=0.3)
        # The second reply was refused as a permission violation, and the connection stayed up.
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.02)
        assert errors and "permissions violation" in str(errors[0]).lower()
        assert svc.is_connected
        # Without a request, publishing anywhere is denied.
        await svc.publish("anything", b"x")
        await svc.flush()
    finally:
        await svc.close()
        await cli.close()
