"""Durable consumer state across restarts (jsedge): clean stop and kill -9."""

from __future__ import annotations

import asyncio

import nats
import pytest
from helpers import ServerProcess
from nats.js.api import AckPolicy, ConsumerConfig

pytestmark = pytest.mark.timeout(30)


async def _setup(url: str) -> list:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="R", subjects=["r.>"])
    for i in range(6):
        await js.publish("r.x", str(i).encode())
    await js.add_consumer("R", ConsumerConfig(durable_name="d", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
    sub = await js.pull_subscribe_bind("d", stream="R")
    msgs = await sub.fetch(4, timeout=1)
    for m in msgs[:2]:
        await m.ack_sync()
    await msgs[3].ack_sync()
    await nc.close()
    return msgs


async def _after(url: str) -> tuple:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.consumer_info("R", "d")
    sub = await js.pull_subscribe_bind("d", stream="R")
    got = [m.data for m in await sub.fetch(6, timeout=1)]
    await nc.close()
    return info, got


@pytest.mark.parametrize("how", ["clean", "kill"])
def test_consumer_state_survives(tmp_path, how):
    srv = ServerProcess("jsedge", ["-js", "-sd", str(tmp_path)])
    with srv:
        asyncio.run(_setup(srv.url))
        if how == "kill":
            srv.kill()
        else:
            srv.stop()
        srv.restart()
        info, got = asyncio.run(_after(srv.url))
    assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (4, 4)
    assert (info.ack_floor.consumer_seq, info.ack_floor.stream_seq) == (2, 2)
    assert info.num_ack_pending == 1 and info.num_pending == 2
    # the unacked message (3) is not lost (it comes back after ack_wait, not now); new ones flow
    assert got == [b"4", b"5"]
