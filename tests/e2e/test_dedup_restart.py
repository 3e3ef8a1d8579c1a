"""The Msg-Id duplicate window across restarts of a real server: after a clean stop it comes back
from the store's index snapshot (no message is read), after kill -9 from the stored messages'
headers; either way a republished Msg-Id is answered as a duplicate of its first sequence."""

from __future__ import annotations

import asyncio
import signal

import nats
import pytest

from tests.helpers import ServerProcess

pytestmark = pytest.mark.timeout(60)


async def _publish(port: int, msg_id: str, body: bytes = b"x") -> tuple[int, bool]:
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        ack = await js.publish("d.x", body, headers={"Nats-Msg-Id": msg_id})
        return ack.seq, bool(ack.duplicate)
    finally:
        await nc.close()


def test_the_duplicate_window_survives_a_clean_stop_and_a_kill(tmp_path) -> None:
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path / "js")]) as server:

        async def setup() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{server.port}")
            try:
                await nc.jetstream().add_stream(name="D", subjects=["d.>"], duplicate_window=600.0)
            finally:
                await nc.close()

        asyncio.run(setup())
        assert asyncio.run(_publish(server.port, "a")) == (1, False)
        for i in range(50):  # messages without an id around it
            asyncio.run(_publish(server.port, f"n{i}", b"y" * 100))
        server.restart()  # SIGTERM: clean, the index snapshot carries the window
        assert asyncio.run(_publish(server.port, "a")) == (1, True)
        assert asyncio.run(_publish(server.port, "b")) == (52, False)
        server.signal(signal.SIGKILL)
        server.kill()
        server.start()  # no index snapshot: the window is rebuilt from the stored headers
        assert asyncio.run(_publish(server.port, "a")) == (1, True)
        assert asyncio.run(_publish(server.port, "b")) == (52, True)
        assert not any("Traceback" in line for line in server.log_lines())
