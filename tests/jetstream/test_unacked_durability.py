"""A message published into a stream without a reply subject (a sensor's plain PUB) is written and
fsynced right away, like an acknowledged one: kill -9 the server a moment later and it is still
there after the restart (before, it waited in the block buffer for the next acknowledged write)."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from tests.helpers import ServerProcess, acheck_for

pytestmark = pytest.mark.timeout(60)


def test_a_plain_publish_into_a_stream_survives_kill_9(tmp_path):
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path)]) as server:

        async def publish() -> None:
            nc = await nats.connect(server.url)
            body = {"name": "SENSORS", "subjects": ["sensors.>"]}
            await nc.request("$JS.API.STREAM.CREATE.SENSORS", json.dumps(body).encode(), timeout=5)
            for n in range(3):
                await nc.publish(f"sensors.t{n}", b"21.5")
            await nc.flush()

            async def stored() -> bool | None:
                reply = await nc.request("$JS.API.STREAM.INFO.SENSORS", b"", timeout=5)
                return json.loads(reply.data)["state"]["messages"] == 3 or None

            assert await acheck_for(10, stored, interval=0.05)
            await asyncio.sleep(0.3)  # the loop turn's sync (an fsync takes well under this)
            await nc.close()

        asyncio.run(publish())
        server.kill()
        server.start()

        async def count() -> int:
            nc = await nats.connect(server.url)
            reply = await nc.request("$JS.API.STREAM.INFO.SENSORS", b"", timeout=5)
            await nc.close()
            return json.loads(reply.data)["state"]["messages"]

        assert asyncio.run(count()) == 3
