"""The embedding API (jsedge.serve, jsedge.run_in_thread) with nats-py over real TCP: a server on
the test's event loop and one in a thread, JetStream with a temporary store that goes away, a
restart that keeps the store and the port, several servers (a routed pair) in one process, log
lines through `logging`, no signal handlers taken, configuration errors as nats-server words them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import nats
import pytest

import jsedge

pytestmark = pytest.mark.timeout(60)


async def test_serve_core_and_jetstream_on_the_callers_loop(caplog: pytest.LogCaptureFixture) -> None:
    before = signal.getsignal(signal.SIGHUP)
    caplog.set_level(logging.INFO, logger="jsedge")
    async with jsedge.serve(jetstream=True, http_port=0) as server:
        assert server.client_url == f"nats://127.0.0.1:{server.port}" and server.port > 0
        assert server.monitor_url is not None and server.store_dir is not None
        store = server.store_dir
        nc = await nats.connect(server.client_url, reconnect_time_wait=0.1)
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["s.>"])
        assert (await js.publish("s.1", b"one")).seq == 1
        port = server.port
        await server.restart()  # same port, same store
        assert server.port == port
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                info = await js.stream_info("S")
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert info.state.messages == 1
        await nc.close()
    assert not os.path.exists(store)  # the temporary store is gone with the server
    assert signal.getsignal(signal.SIGHUP) == before
    assert any("Server is ready" in record.getMessage() for record in caplog.records)


async def test_a_config_text_and_two_routed_servers_in_one_process() -> None:
    config = "max_payload: 2048\n"
    async with jsedge.serve(config=config, name="a", cluster="nats://127.0.0.1:-1") as first:
        routes = first.server.routes
        listen = f"nats://127.0.0.1:{routes.port}" if hasattr(routes, "port") else None
        assert first.server.config.limits.max_payload == 2048
        if listen is None:
            pytest.skip("the route listener's port is not exposed")
        async with jsedge.serve(name="b", cluster="nats://127.0.0.1:-1", routes=[listen]) as second:
            a = await nats.connect(first.client_url)
            b = await nats.connect(second.client_url)
            sub = await b.subscribe("x")
            await b.flush()
            deadline = asyncio.get_running_loop().time() + 10
            got = None
            while got is None:
                await a.publish("x", b"across")
                try:
                    got = await sub.next_msg(0.2)
                except nats.errors.TimeoutError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
            assert got.data == b"across" and a.max_payload == 2048
            await a.close()
            await b.close()


async def test_a_bad_config_is_refused_with_nats_servers_words() -> None:
    with pytest.raises(ValueError, match='unknown field "nope"'):
        async with jsedge.serve(config="nope: 1\n"):
            pass


def test_run_in_thread_for_synchronous_programs() -> None:
    with jsedge.run_in_thread() as server:

        async def roundtrip() -> bytes:
            nc = await nats.connect(server.client_url)
            sub = await nc.subscribe("t")
            await nc.publish("t", b"from a thread")
            msg = await sub.next_msg(2)
            await nc.close()
            return bytes(msg.data)

        assert asyncio.run(roundtrip()) == b"from a thread"


async def test_the_config_tree_as_keyword_arguments() -> None:
    """Keys of the config tree as keyword arguments (blocks as dicts), as a conf file would set them."""
    users = [{"user": "app", "password": "s3cret", "permissions": {"publish": "app.>", "subscribe": "app.>"}}]
    async with jsedge.serve(max_payload=4096, authorization={"users": users}, jetstream={"max_mem": "64M"}) as server:
        assert server.server.config.jetstream.enabled and server.server.config.limits.max_payload == 4096
        nc = await nats.connect(server.client_url, user="app", password="s3cret")
        assert nc.max_payload == 4096
        await nc.close()
        with pytest.raises(Exception, match="Authorization Violation"):
            await nats.connect(server.client_url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_signals_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jsedge")
    before = signal.getsignal(signal.SIGHUP)
    async with jsedge.serve(handle_signals=True):
        os.kill(os.getpid(), signal.SIGHUP)  # reloads, as the jsedge command does
        deadline = asyncio.get_running_loop().time() + 5
        while not any("Reloaded server configuration" in r.getMessage() for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    assert signal.getsignal(signal.SIGHUP) == before  # given back at shutdown
