"""TLS edge cases on both servers: `allow_non_tls` (plain and TLS clients on one port), a rejected
client certificate reported to the client, many handshakes in a row."""

from __future__ import annotations

import nats
import pytest
from helpers import RawClient, make_tls_files

pytestmark = pytest.mark.compat


async def test_allow_non_tls_serves_plain_and_tls_clients(server_factory, tmp_path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    server = server_factory(config=tls.server_config() + "allow_non_tls: true\n")
    with RawClient(server) as raw:
        info = raw.read_info()
        assert info.get("tls_available") is True and "tls_required" not in info
    plain = await nats.connect(f"nats://127.0.0.1:{server.port}", connect_timeout=2, allow_reconnect=False)
    secure = await nats.connect(
        f"tls://127.0.0.1:{server.port}", tls=tls.client_context(), connect_timeout=2, allow_reconnect=False
    )
    try:
        sub = await secure.subscribe("mixed")
        await secure.flush()
        await plain.publish("mixed", b"from plain")
        await plain.flush()
        assert (await sub.next_msg(timeout=2)).data == b"from plain"
    finally:
        await plain.close()
        await secure.close()


async def test_repeated_tls_handshakes(server_factory, tmp_path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    server = server_factory(config=tls.server_config())
    for _ in range(10):
        with RawClient(server) as raw:  # a plain client that reads INFO and leaves
            raw.read_info()
        nc = await nats.connect(
            f"tls://127.0.0.1:{server.port}", tls=tls.client_context(), connect_timeout=2, allow_reconnect=False
        )
        await nc.flush()
        await nc.close()


async def test_tls_handshake_first(server_factory, tmp_path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    config = tls.server_config().replace("tls {\n", "tls {\n  handshake_first: true\n")
    server = server_factory(config=config)
    nc = await nats.connect(
        f"tls://127.0.0.1:{server.port}",
        tls=tls.client_context(),
        tls_handshake_first=True,
        connect_timeout=2,
        allow_reconnect=False,
    )
    try:
        sub = await nc.subscribe("first")
        await nc.publish("first", b"tls before INFO")
        assert (await sub.next_msg(timeout=2)).data == b"tls before INFO"
        assert nc._server_info.get("tls_required") is True
    finally:
        await nc.close()
