"""A stream created with `compression: s2` through a client stores its sealed blocks compressed, and
every message reads back after a kill -9 and restart (the store-level cases are in
tests/store/test_filestore_compression.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import nats
import pytest

from tests.helpers import ServerProcess, acheck_for, check_for

pytestmark = pytest.mark.timeout(90)

COUNT = 5000  # ~5.5 MiB of records: more than one 4 MiB block


def body(n: int) -> bytes:
    return json.dumps({"sensor": f"temp-{n % 9}", "celsius": 18 + n % 11, "n": n, "pad": "x" * 900}).encode()


def compressed_blocks(root: Path) -> list[Path]:
    return [p for p in root.rglob("msgs/*.blk") if p.read_bytes()[:4] == b"JSZ\x01"]


def test_an_s2_stream_compresses_sealed_blocks_and_survives_kill_9(tmp_path):
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path)]) as server:

        async def publish() -> dict:
            nc = await nats.connect(server.url)
            config = {"name": "TELEMETRY", "subjects": ["tele.>"], "compression": "s2"}
            reply = await nc.request("$JS.API.STREAM.CREATE.TELEMETRY", json.dumps(config).encode(), timeout=5)
            assert json.loads(reply.data)["config"]["compression"] == "s2"
            for start in range(0, COUNT, 250):
                acks = await asyncio.gather(
                    *(nc.request(f"tele.{n % 9}", body(n), timeout=10) for n in range(start, start + 250))
                )
                assert all("seq" in json.loads(a.data) for a in acks)
            reply = await nc.request("$JS.API.STREAM.INFO.TELEMETRY", b"", timeout=5)
            await nc.close()
            return json.loads(reply.data)

        info = asyncio.run(publish())
        assert info["state"]["messages"] == COUNT
        assert check_for(10, lambda: compressed_blocks(tmp_path) or None, interval=0.05)
        stored = sum(p.stat().st_size for p in tmp_path.rglob("msgs/*.blk"))
        assert stored < info["state"]["bytes"] * 0.6
        server.kill()
        server.start()

        async def read_back() -> None:
            nc = await nats.connect(server.url)

            async def ready() -> dict | None:
                reply = await nc.request("$JS.API.STREAM.INFO.TELEMETRY", b"", timeout=5)
                data = json.loads(reply.data)
                return data if "state" in data else None

            info = await acheck_for(10, ready, interval=0.05)
            assert info["state"]["messages"] == COUNT
            for seq in (1, 2, COUNT // 2, COUNT - 1, COUNT):
                reply = await nc.request(
                    "$JS.API.STREAM.MSG.GET.TELEMETRY", json.dumps({"seq": seq}).encode(), timeout=5
                )
                msg = json.loads(reply.data)["message"]
                assert base64.b64decode(msg["data"]) == body(seq - 1), seq
            await nc.close()

        asyncio.run(read_back())
