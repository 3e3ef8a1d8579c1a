"""Distributed counters (ADR-49, `allow_msg_counter`) against jsedge and nats-server 2.15.1: the same
PubAcks (the running total in `val`), the same 1016x/1017x errors, the same stored messages, and a
stream that sources a counter keeps the same `Nats-Counter-Sources` bookkeeping."""

from __future__ import annotations

import re

import nats
import pytest

from tests.helpers import acheck_for, assert_same_lines, js_api, run_on_both, stream_message

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

#: the last field of Nats-Stream-Source names the copying server (a hash of its name)
_IDENTITY = re.compile(r"(Nats-Stream-Source: \S+ \d+ \S+ \S+ \S+) \S+")

PUBLISHES = [
    ("c.a", {"Nats-Incr": "1"}, b""),
    ("c.a", {"Nats-Incr": "+5"}, b""),
    ("c.a", {"Nats-Incr": "-2"}, b""),
    ("c.a", {"Nats-Incr": "007"}, b""),
    ("c.b", {"Nats-Incr": "99999999999999999999999999"}, b""),
    ("c.b", {"Nats-Incr": "-99999999999999999999999999"}, b""),
    ("c.a", {"Nats-Incr": "x"}, b""),
    ("c.a", {"Nats-Incr": "1.5"}, b""),
    ("c.a", {"Nats-Incr": "1"}, b"payload"),
    ("c.a", {}, b""),
    ("c.a", {"Foo": "bar"}, b""),
    ("c.a", {"Nats-Incr": ""}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Rollup": "sub"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Expected-Last-Sequence": "3"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Expected-Last-Subject-Sequence": "3"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Expected-Last-Subject-Sequence-Subject": "c.a"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Expected-Last-Msg-Id": "m0"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Expected-Stream": "C"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Msg-Id": "m1"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Msg-Id": "m1"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-TTL": "5s"}, b""),
    ("c.a", {"Nats-Incr": "1", "Nats-Stream-Source": "X 1 > > c.a"}, b""),
    ("p.a", {"Nats-Incr": "1"}, b""),
    ("p.a", {"Nats-Incr": "1"}, b"x"),
    ("p.a", {"Nats-Incr": "nope"}, b"x"),
]


async def _messages(nc, stream: str, count: int) -> list[str]:
    out = []
    for seq in range(1, count + 1):
        found = await stream_message(nc, stream, seq)
        if not isinstance(found, tuple):
            out.append(f"{seq} {found}")
            continue
        subject, hdrs, data = found
        out.append(_IDENTITY.sub(r"\1 ID", f"{seq} {subject} {hdrs!r} {data}"))
    return out


async def _script(url: str) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []
    try:
        for name, config in (
            ("C", {"subjects": ["c.>"], "allow_msg_counter": True}),
            ("P", {"subjects": ["p.>"]}),
            ("AGG", {"subjects": ["agg.>"], "allow_msg_counter": True, "sources": [{"name": "C"}]}),
        ):
            created = await js_api(nc, f"$JS.API.STREAM.CREATE.{name}", {"name": name, **config})
            out.append(f"create {name} {created.get('error')} {created['config'].get('allow_msg_counter')}")
        for subject, headers, data in PUBLISHES:
            reply = await nc.request(subject, data, headers=headers, timeout=3)
            out.append(f"{subject} {headers} {reply.data.decode()}")
        out += await _messages(nc, "C", 8)

        async def sourced() -> bool:
            info = await js_api(nc, "$JS.API.STREAM.INFO.AGG", {})
            return info["state"]["messages"] == 7

        await acheck_for(20, sourced, interval=0.1)
        out += await _messages(nc, "AGG", 7)
        # a local increment on the aggregate adds to the sourced total
        reply = await nc.request("c.a", b"", headers={"Nats-Incr": "10"}, timeout=3)
        out.append(f"c.a again {reply.data.decode()}")

        async def seventh() -> bool:
            info = await js_api(nc, "$JS.API.STREAM.INFO.AGG", {})
            return info["state"]["messages"] == 8

        await acheck_for(20, seventh, interval=0.1)
        out += (await _messages(nc, "AGG", 8))[-1:]
        # a counter stream's config cannot turn counting off
        update = await js_api(nc, "$JS.API.STREAM.UPDATE.C", {"name": "C", "subjects": ["c.>"]})
        out.append(f"update {update.get('error')}")
    finally:
        await nc.close()
    return out


def test_counters_diff(tmp_path) -> None:
    expected, actual = run_on_both(tmp_path, lambda server: _script(server.url))
    assert_same_lines(expected, actual)
    assert any('"val":"11"' in line for line in expected)
