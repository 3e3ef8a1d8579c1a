"""`$JS.EVENT.ADVISORY.API` audit advisories: the same events, with the same fields, from jsedge and
nats-server (ids, times, rtt and server names aside)."""

from __future__ import annotations

import json

import nats
import pytest

pytestmark = pytest.mark.compat

VOLATILE = {"id", "timestamp", "server"}
VOLATILE_CLIENT = {"start", "id", "rtt", "server", "ver", "host"}


def _shape(event: dict) -> dict:
    out = {k: v for k, v in event.items() if k not in VOLATILE}
    client = dict(out.pop("client"))
    out["client_keys"] = sorted(client)
    out["client"] = {k: v for k, v in client.items() if k not in VOLATILE_CLIENT}
    response = json.loads(out.pop("response"))
    for key in ("created", "ts"):
        response.pop(key, None)
    out["response"] = response
    return out


async def _events(server) -> list[dict]:
    nc = await nats.connect(server.url, name="auditor")
    try:
        sub = await nc.subscribe("$JS.EVENT.ADVISORY.API")
        await nc.flush()
        await nc.request("$JS.API.STREAM.INFO.NOPE", b"", timeout=2)
        await nc.request("$JS.API.STREAM.CREATE.A", b'{"name":"A","subjects":["a"]}', timeout=2)
        await nc.request("$JS.API.STREAM.NAMES", b"", timeout=2)
        await nc.request("$JS.API.STREAM.CREATE.B", b"{not json", timeout=2)
        events = [json.loads((await sub.next_msg(timeout=2)).data) for _ in range(4)]
        await nc.publish("not.an.api.call", b"")
        await nc.request("$JS.API.INFO", b"", timeout=2)
        events.append(json.loads((await sub.next_msg(timeout=2)).data))
        return events
    finally:
        await nc.close()


async def test_api_audit_advisories(nats_server, jsedge_server, tmp_path) -> None:
    ref = nats_server(args=["-js", "-sd", str(tmp_path / "n")])
    got = jsedge_server(args=["-js", "-sd", str(tmp_path / "j")])
    want = [_shape(e) for e in await _events(ref)]
    have = [_shape(e) for e in await _events(got)]
    assert [e["type"] for e in have] == ["io.nats.jetstream.advisory.v1.api_audit"] * 5
    assert have == want


async def test_no_audit_without_listener(jsedge_server, tmp_path) -> None:
    """Nothing is encoded or sent when nobody listens (a publish to the subject would show it)."""
    server = jsedge_server(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await nc.request("$JS.API.INFO", b"", timeout=2)
        late = await nc.subscribe("$JS.EVENT.ADVISORY.>")
        await nc.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await late.next_msg(timeout=0.3)
    finally:
        await nc.close()
