"""Mirrors and sources (streams.md §15): copying, headers, cursors across restarts, origin re-creation.

Tests marked with `server_factory` run on jsedge and nats-server; restart / re-creation tests are
jsedge-only (nats-server retries a vanished origin with a long back-off). Every wait polls with a
deadline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time

import nats
import pytest

pytestmark = pytest.mark.timeout(60)

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def identity(created: str) -> str:
    digest = hashlib.sha256(created.encode()).digest()
    return "".join(B62[b % 62] for b in digest[:8])


async def api(nc, subject: str, body=None) -> dict:
    data = b"" if body is None else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=2)
    return json.loads(msg.data)


async def until(timeout: float, fn):
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def info(nc, name: str) -> dict:
    return await api(nc, f"$JS.API.STREAM.INFO.{name}")


async def messages_of(nc, name: str) -> list[dict]:
    state = (await info(nc, name))["state"]
    out = []
    for seq in range(max(state["first_seq"], 1), state["last_seq"] + 1):
        r = await api(nc, f"$JS.API.STREAM.MSG.GET.{name}", {"seq": seq})
        if "message" in r:
            m = r["message"]
            m["hdrs"] = base64.b64decode(m.get("hdrs", "")).decode()
            m["data"] = base64.b64decode(m.get("data", "")).decode()
            out.append(m)
    return out


def has_messages(nc, name, count):
    async def check():
        return (await info(nc, name))["state"]["messages"] == count

    return check


@pytest.fixture
async def nc_any(server_factory, tmp_path):
    srv = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(srv.url)
    yield nc
    await nc.close()


async def test_mirror_keeps_origin_sequences(nc_any):
    nc = nc_any
    await api(nc, "$JS.API.STREAM.CREATE.O", {"name": "O", "subjects": ["o.>"]})
    for i in range(5):
        await nc.request("o.a", b"m%d" % i, headers={"Nats-Msg-Id": f"id{i}"}, timeout=2)
    await api(nc, "$JS.API.STREAM.MSG.DELETE.O", {"seq": 3})
    created = await api(nc, "$JS.API.STREAM.CREATE.M", {"name": "M", "mirror": {"name": "O", "opt_start_seq": 2}})
    assert created["mirror"] == {"name": "O", "lag": 0, "active": -1}
    assert "subjects" not in created["config"] and "duplicate_window" not in created["config"]
    await until(4, has_messages(nc, "M", 3))
    state = (await info(nc, "M"))["state"]
    assert (state["first_seq"], state["last_seq"], state["num_deleted"]) == (2, 5, 1)
    origin = {m["seq"]: m for m in await messages_of(nc, "O")}
    for m in await messages_of(nc, "M"):
        assert m == origin[m["seq"]]  # same seq, subject, headers, data and time
    await nc.request("o.b", b"live", timeout=2)
    await until(4, has_messages(nc, "M", 4))
    mi = (await info(nc, "M"))["mirror"]
    assert mi["name"] == "O" and mi["lag"] == 0 and mi["active"] >= 0 and "seq" not in mi
    # a mirror accepts no publishes of its own and cannot change its mirror config
    r = await api(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "O", "opt_start_seq": 3}})
    assert r["error"]["err_code"] == 10055


async def test_source_header_filter_and_transforms(nc_any):
    nc = nc_any
    origin = await api(nc, "$JS.API.STREAM.CREATE.ORIG", {"name": "ORIG", "subjects": ["orig.>"]})
    ident = identity(origin["created"])
    await nc.request("orig.a", b"a1", headers={"X": "1"}, timeout=2)
    await nc.request("orig.b", b"b1", timeout=2)
    await nc.request("orig.a", b"a2", timeout=2)
    sources = [
        {"name": "ORIG", "filter_subject": "orig.a"},
        {"name": "ORIG", "subject_transforms": [{"src": "orig.b", "dest": "tb"}, {"src": "orig.c", "dest": "tc"}]},
    ]
    r = await api(nc, "$JS.API.STREAM.CREATE.SRC", {"name": "SRC", "subjects": ["own"], "sources": sources})
    assert [s["active"] for s in r["sources"]] == [-1, -1]
    await until(4, has_messages(nc, "SRC", 3))
    got = sorted((m["subject"], m["data"], m["hdrs"]) for m in await messages_of(nc, "SRC"))
    assert got == [
        ("orig.a", "a1", f"NATS/1.0\r\nX: 1\r\nNats-Stream-Source: ORIG 1 orig.a > orig.a {ident}\r\n\r\n"),
        ("orig.a", "a2", f"NATS/1.0\r\nNats-Stream-Source: ORIG 3 orig.a > orig.a {ident}\r\n\r\n"),
        ("tb", "b1", f"NATS/1.0\r\nNats-Stream-Source: ORIG 2 orig.b\x0corig.c tb\x0ctc orig.b {ident}\r\n\r\n"),
    ]
    si = (await info(nc, "SRC"))["sources"]
    by_filter = {s.get("filter_subject", "T"): s for s in si}
    assert by_filter["orig.a"]["seq"] == 3 and by_filter["orig.a"]["lag"] == 0
    assert by_filter["T"]["seq"] == 2 and by_filter["T"]["subject_transforms"][0] == {"src": "orig.b", "dest": "tb"}
    # own publishes still work; a client-set Nats-Stream-Source is refused
    ack = json.loads((await nc.request("own", b"x", timeout=2)).data)
    assert ack["seq"] == 4
    ack = json.loads((await nc.request("own", b"x", headers={"Nats-Stream-Source": "z"}, timeout=2)).data)
    assert ack["error"]["err_code"] == 10227


async def test_validation_errors(nc_any):
    nc = nc_any
    await api(
        nc, "$JS.API.STREAM.CREATE.V", {"name": "V", "subjects": ["v"], "max_msg_size": 100, "allow_direct": True}
    )
    r = await api(nc, "$JS.API.STREAM.CREATE.M1", {"name": "M1", "mirror": {"name": "V"}, "subjects": ["x"]})
    assert r["error"]["err_code"] == 10034
    r = await api(nc, "$JS.API.STREAM.CREATE.M2", {"name": "M2", "mirror": {"name": "V"}, "max_msg_size": 50})
    assert r["error"]["err_code"] == 10030
    r = await api(nc, "$JS.API.STREAM.CREATE.S1", {"name": "S1", "sources": [{"name": "V"}], "max_msg_size": 50})
    assert r["error"]["err_code"] == 10046
    r = await api(nc, "$JS.API.STREAM.CREATE.S2", {"name": "S2", "sources": [{"name": "S2"}]})
    assert r["error"] == {"code": 500, "err_code": 10052, "description": "detected cycle"}
    r = await api(nc, "$JS.API.STREAM.CREATE.M3", {"name": "M3", "mirror": {"name": "V"}})
    assert r["config"]["mirror_direct"] is True  # inherited from the origin's allow_direct
    r = await api(nc, "$JS.API.STREAM.CREATE.M3", {"name": "M3", "mirror": {"name": "V"}})
    assert "error" not in r  # idempotent create with the inherited mirror_direct
    r = await api(nc, "$JS.API.STREAM.CREATE.M4", {"name": "M4", "mirror": {"name": "NOPE"}})
    assert r["mirror"] == {"name": "NOPE", "lag": 0, "active": -1}

    async def not_found():
        m = (await info(nc, "M4"))["mirror"]
        return m.get("error", {}).get("err_code") == 10059

    await until(4, not_found)


async def test_source_cursor_survives_restart(jsedge_server, tmp_path):
    srv = jsedge_server(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(srv.url)
    await api(nc, "$JS.API.STREAM.CREATE.R", {"name": "R", "subjects": ["r.>"]})
    await api(
        nc, "$JS.API.STREAM.CREATE.S", {"name": "S", "subjects": ["s"], "sources": [{"name": "R"}], "max_msgs": 3}
    )
    await api(nc, "$JS.API.STREAM.CREATE.M", {"name": "M", "mirror": {"name": "R"}})
    for i in range(10):
        await nc.request("r.a", b"%d" % i, timeout=2)
    await until(4, has_messages(nc, "M", 10))

    async def caught_up():
        return (await info(nc, "S"))["sources"][0].get("seq") == 10

    await until(4, caught_up)
    await nc.close()
    srv.kill()  # no clean shutdown: the cursor must come from the metadata + header scan
    srv.start()
    nc = await nats.connect(srv.url)
    for i in range(10, 15):
        await nc.request("r.a", b"%d" % i, timeout=2)
    await until(4, has_messages(nc, "M", 15))

    async def caught_up_again():
        return (await info(nc, "S"))["sources"][0].get("seq") == 15

    await until(4, caught_up_again)
    # S keeps only 3 (max_msgs) but never re-copied: last_seq counts every copy exactly once
    state = (await info(nc, "S"))["state"]
    assert state["last_seq"] == 15
    assert [m["data"] for m in await messages_of(nc, "S")] == ["12", "13", "14"]
    mirror = await messages_of(nc, "M")
    assert [m["seq"] for m in mirror] == list(range(1, 16))
    await nc.close()


async def test_origin_recreated_and_late_origin(jsedge_server, tmp_path):
    srv = jsedge_server(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(srv.url)
    # the mirror/source exist before their origin: they catch up once it appears
    await api(nc, "$JS.API.STREAM.CREATE.S", {"name": "S", "sources": [{"name": "R"}]})
    await api(nc, "$JS.API.STREAM.CREATE.M", {"name": "M", "mirror": {"name": "R"}, "storage": "memory"})
    first = await api(nc, "$JS.API.STREAM.CREATE.R", {"name": "R", "subjects": ["r.>"]})
    for i in range(3):
        await nc.request("r.a", b"x", timeout=2)
    await until(4, has_messages(nc, "S", 3))
    await until(4, has_messages(nc, "M", 3))
    await api(nc, "$JS.API.STREAM.DELETE.R")
    second = await api(nc, "$JS.API.STREAM.CREATE.R", {"name": "R", "subjects": ["r.>"]})
    for i in range(2):
        await nc.request("r.b", b"y", timeout=2)
    await until(4, has_messages(nc, "S", 5))
    hdrs = [m["hdrs"] for m in await messages_of(nc, "S")]
    assert hdrs[2].endswith(f"R 3 > > r.a {identity(first['created'])}\r\n\r\n")
    assert hdrs[4].endswith(f"R 2 > > r.b {identity(second['created'])}\r\n\r\n")
    await nc.close()


async def test_mirror_direct_and_sourced_dedup(jsedge_server, tmp_path):
    srv = jsedge_server(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(srv.url)
    await api(nc, "$JS.API.STREAM.CREATE.D", {"name": "D", "subjects": ["d.>"], "allow_direct": True})
    await api(nc, "$JS.API.STREAM.CREATE.D2", {"name": "D2", "subjects": ["d2.>"]})
    await nc.request("d.a", b"one", headers={"Nats-Msg-Id": "same"}, timeout=2)
    await nc.request("d2.a", b"two", headers={"Nats-Msg-Id": "same"}, timeout=2)
    r = await api(nc, "$JS.API.STREAM.CREATE.DM", {"name": "DM", "mirror": {"name": "D"}})
    assert r["config"]["mirror_direct"] is True
    await until(4, has_messages(nc, "DM", 1))
    await api(nc, "$JS.API.STREAM.DELETE.D")  # now only the mirror can answer DIRECT.GET.D
    msg = await nc.request("$JS.API.DIRECT.GET.D", json.dumps({"seq": 1}).encode(), timeout=2)
    assert msg.data == b"one"
    r = await api(
        nc,
        "$JS.API.STREAM.CREATE.DS",
        {"name": "DS", "sources": [{"name": "D2"}, {"name": "DM"}], "duplicate_window": 60_000_000_000},
    )
    await until(4, has_messages(nc, "DS", 1))

    async def both_seen():
        return all(s.get("seq") == 1 for s in (await info(nc, "DS"))["sources"])

    await until(4, both_seen)
    assert (await info(nc, "DS"))["state"]["messages"] == 1  # same Msg-Id from two sources: one copy
    await nc.close()


async def test_a_sourced_work_queue_loses_and_doubles_nothing_across_kill_9(jsedge_server, tmp_path):
    """Durable sourcing of a work-queue stream on one server, killed (-9) while copying: a message
    leaves the origin only once its copy is fsynced, so after the restart every message is in the
    sourcing stream exactly once (what was copied but not yet acknowledged is delivered again and
    skipped by the source's cursor) and the origin ends empty."""
    srv = jsedge_server(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(srv.url)
    await api(nc, "$JS.API.STREAM.CREATE.WQ", {"name": "WQ", "subjects": ["wq.>"], "retention": "workqueue"})
    await api(nc, "$JS.API.STREAM.CREATE.AGG", {"name": "AGG", "sources": [{"name": "WQ"}]})
    total = 400
    for i in range(total):
        await nc.publish("wq.a", b"%d" % i, headers={"Nats-Msg-Id": str(i)})

    async def copying():
        return (await info(nc, "AGG"))["state"]["messages"] > 0

    await until(10, copying)
    await nc.close()
    srv.kill()
    srv.start()
    nc = await nats.connect(srv.url)
    for i in range(total):  # anything the kill cut before the origin stored it (deduplicated)
        await nc.request("wq.a", b"%d" % i, headers={"Nats-Msg-Id": str(i)}, timeout=2)
    await until(30, has_messages(nc, "AGG", total))
    await until(30, has_messages(nc, "WQ", 0))
    copies = sorted(int(m["data"]) for m in await messages_of(nc, "AGG"))
    assert copies == list(range(total))
    await nc.close()
