"""Message schedules across a restart of a single jsedge server: the scheduler is rebuilt from the
stored schedule messages (nats-server recovers them from its store the same way), an `@every`
schedule keeps firing, and a stream that starts allowing schedules by an update fires them too."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from tests.helpers import ServerProcess, acheck_for

pytestmark = pytest.mark.timeout(60)


async def _count(nc, stream: str, subject: str) -> int:
    reply = await nc.request(
        f"$JS.API.STREAM.INFO.{stream}", json.dumps({"subjects_filter": subject}).encode(), timeout=3
    )
    return (json.loads(reply.data)["state"].get("subjects") or {}).get(subject, 0)


def test_schedules_survive_a_restart_and_an_update_turns_them_on(tmp_path):
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path)]) as server:

        async def before() -> None:
            nc = await nats.connect(server.url)
            try:
                for name, extra in (("S", {"allow_msg_schedules": True}), ("U", {})):
                    body = {"name": name, "subjects": [f"{name.lower()}.>"], **extra}
                    await nc.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(body).encode(), timeout=3)
                hdrs = {"Nats-Schedule": "@every 1s", "Nats-Schedule-Target": "s.tick"}
                assert "error" not in json.loads((await nc.request("s.every", b"", headers=hdrs, timeout=3)).data)
                assert await acheck_for(10, lambda: _positive(nc, "S", "s.tick"), interval=0.3)
            finally:
                await nc.close()

        asyncio.run(before())
        server.stop()
        server.start()

        async def after() -> None:
            nc = await nats.connect(server.url)
            try:
                seen = await _count(nc, "S", "s.tick")
                assert await acheck_for(10, lambda: _more(nc, "S", "s.tick", seen), interval=0.3)
                # a stream updated to allow schedules takes them from then on
                hdrs = {"Nats-Schedule": "@every 1s", "Nats-Schedule-Target": "u.tick"}
                refused = json.loads((await nc.request("u.every", b"", headers=hdrs, timeout=3)).data)
                assert refused["error"]["err_code"] == 10188
                body = {"name": "U", "subjects": ["u.>"], "allow_msg_schedules": True}
                updated = json.loads((await nc.request("$JS.API.STREAM.UPDATE.U", json.dumps(body).encode())).data)
                assert "error" not in updated, updated
                assert "error" not in json.loads((await nc.request("u.every", b"", headers=hdrs, timeout=3)).data)
                assert await acheck_for(10, lambda: _positive(nc, "U", "u.tick"), interval=0.3)
            finally:
                await nc.close()

        asyncio.run(after())


async def _positive(nc, stream: str, subject: str) -> bool | None:
    return await _count(nc, stream, subject) > 0 or None


async def _more(nc, stream: str, subject: str, than: int) -> bool | None:
    return await _count(nc, stream, subject) > than or None
