"""Differential mirrors/sources: the same requests against jsedge and nats-server 2.15.1; the JSON
(create/info responses, `mirror`/`sources` blocks, validation errors, sourced and mirrored messages
with their `Nats-Stream-Source` header) must be equal after masking times, `active`, the server id
and the origin identity token (a hash of the origin's creation time, checked in
tests/jetstream/test_mirror_sources.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import nats
import pytest

from tests.helpers import ServerProcess

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

_MASK = [
    (re.compile(r'"(created|ts|first_ts|last_ts|time)":"[^"]*"'), r'"\1":"T"'),
    (re.compile(r'"leader":"[^"]*"'), '"leader":"L"'),
    (re.compile(r'"active":\d+'), '"active":N'),
]


def normalize(doc: dict) -> str:
    if isinstance(doc.get("sources"), list):  # nats-server lists sources in map order
        doc["sources"].sort(key=lambda s: (s.get("filter_subject", ""), json.dumps(s.get("subject_transforms"))))
    if "message" in doc and "hdrs" in doc["message"]:
        hdrs = base64.b64decode(doc["message"]["hdrs"]).decode()
        doc["message"]["hdrs"] = re.sub(r"(Nats-Stream-Source: .*) \w{8}\r\n", r"\1 ID\r\n", hdrs)
    text = json.dumps(doc, separators=(",", ":"))
    for pattern, repl in _MASK:
        text = pattern.sub(repl, text)
    return text


async def api(nc, subject: str, body=None) -> dict:
    data = b"" if body is None else json.dumps(body).encode()
    return json.loads((await nc.request(subject, data, timeout=2)).data)


async def settle(nc, name: str, count: int, key: str) -> None:
    deadline = time.monotonic() + 4
    while True:
        info = await api(nc, f"$JS.API.STREAM.INFO.{name}")
        blocks = info.get(key)
        blocks = [blocks] if isinstance(blocks, dict) else blocks or []
        if info["state"]["messages"] == count and all(b.get("active", -1) >= 0 or "error" in b for b in blocks):
            return
        assert time.monotonic() < deadline, f"{name} did not settle: {info}"
        await asyncio.sleep(0.05)


async def scenario(url: str) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []
    try:
        out.append(
            normalize(
                await api(
                    nc, "$JS.API.STREAM.CREATE.ORIG", {"name": "ORIG", "subjects": ["orig.>"], "allow_direct": True}
                )
            )
        )
        await nc.request("orig.a", b"a1", headers={"Nats-Msg-Id": "i1", "X": "y"}, timeout=2)
        await nc.request("orig.b", b"b1", headers={"Nats-Expected-Stream": "ORIG"}, timeout=2)
        await nc.request("orig.a", b"a2", timeout=2)
        await nc.request("orig.c.d", b"c1", timeout=2)
        await api(nc, "$JS.API.STREAM.MSG.DELETE.ORIG", {"seq": 2})
        out.append(normalize(await api(nc, "$JS.API.STREAM.CREATE.MIR", {"name": "MIR", "mirror": {"name": "ORIG"}})))
        out.append(
            normalize(
                await api(
                    nc,
                    "$JS.API.STREAM.CREATE.FM",
                    {"name": "FM", "mirror": {"name": "ORIG", "filter_subject": "orig.a"}},
                )
            )
        )
        sources = [
            {"name": "ORIG", "filter_subject": "orig.a"},
            {"name": "ORIG", "subject_transforms": [{"src": "orig.c.*", "dest": "moved.{{wildcard(1)}}"}]},
        ]
        out.append(
            normalize(
                await api(nc, "$JS.API.STREAM.CREATE.SRC", {"name": "SRC", "subjects": ["own"], "sources": sources})
            )
        )
        await settle(nc, "MIR", 3, "mirror")
        await settle(nc, "FM", 2, "mirror")
        await settle(nc, "SRC", 3, "sources")
        for name in ("MIR", "FM"):
            out.append(normalize(await api(nc, f"$JS.API.STREAM.INFO.{name}")))
            for seq in (1, 2, 3, 4):
                out.append(normalize(await api(nc, f"$JS.API.STREAM.MSG.GET.{name}", {"seq": seq})))
        info = await api(nc, "$JS.API.STREAM.INFO.SRC")
        out.append(normalize(info))
        msgs = [await api(nc, "$JS.API.STREAM.MSG.GET.SRC", {"seq": seq}) for seq in (1, 2, 3)]
        msgs.sort(key=lambda m: (m["message"]["subject"], m["message"]["data"]))
        for m in msgs:
            m["message"]["seq"] = 0  # the two sources interleave in any order
            out.append(normalize(m))
        # validation and update errors
        out.append(
            normalize(
                await api(
                    nc, "$JS.API.STREAM.CREATE.BAD1", {"name": "BAD1", "mirror": {"name": "ORIG"}, "subjects": ["x"]}
                )
            )
        )
        out.append(
            normalize(
                await api(
                    nc,
                    "$JS.API.STREAM.CREATE.BAD2",
                    {"name": "BAD2", "mirror": {"name": "ORIG"}, "sources": [{"name": "ORIG"}]},
                )
            )
        )
        out.append(
            normalize(
                await api(
                    nc, "$JS.API.STREAM.CREATE.BAD3", {"name": "BAD3", "sources": [{"name": "ORIG"}, {"name": "ORIG"}]}
                )
            )
        )
        out.append(
            normalize(await api(nc, "$JS.API.STREAM.CREATE.BAD4", {"name": "BAD4", "sources": [{"name": "BAD4"}]}))
        )
        out.append(
            normalize(
                await api(
                    nc, "$JS.API.STREAM.CREATE.BAD5", {"name": "BAD5", "mirror": {"name": "ORIG"}, "first_seq": 5}
                )
            )
        )
        out.append(normalize(await api(nc, "$JS.API.STREAM.UPDATE.MIR", {"name": "MIR", "mirror": {"name": "SRC"}})))
        out.append(
            normalize(
                await api(
                    nc, "$JS.API.STREAM.UPDATE.SRC", {"name": "SRC", "subjects": ["own"], "mirror": {"name": "ORIG"}}
                )
            )
        )
        # promotion: removing the mirror turns it into a normal stream with default subjects
        promoted = await api(nc, "$JS.API.STREAM.UPDATE.MIR", {"name": "MIR"})
        out.append(normalize(promoted))
    finally:
        await nc.close()
    return out


def test_mirror_and_sources_match_nats_server(tmp_path):
    results = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        with ServerProcess(kind, ["-js", "-sd", str(directory)]) as srv:
            results.append(asyncio.run(scenario(srv.url)))
    expected, actual = results
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual):
        assert got == want
