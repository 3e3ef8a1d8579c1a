"""Durable sourcing (ADR-60, nats-server 2.14+) against nats-server 2.15.1: a mirror or source of a
work-queue or interest stream reads through a durable the origin makes from the `sourcing`
consumer it is asked for (`JS_SRC_<hash>` / `JS_MIRROR_<hash>`, acknowledged by flow control), so
the origin empties as the copies are stored and deletes it with the source; a source may name the
user's own flow_control durable instead (`consumer: {name, deliver_subject}`), with the config
errors 10213-10216 and the runtime ones 10214/10217 of a durable acked otherwise."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import assert_same_lines, run_on_both

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]

API = "$JS.API."
_MASK = [
    (re.compile(r'"(created|ts|last_active|first_ts|last_ts)": "[^"]*"'), r'"\1": "T"'),
    (re.compile(r'"\$JS\.[SM]\.[A-Za-z0-9]+"'), '"$JS.DELIVER"'),
    (re.compile(r'"(active|lag)": -?\d+'), r'"\1": N'),
]


def _mask(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    for pattern, repl in _MASK:
        text = pattern.sub(repl, text)
    return text


async def _script(url: str) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []

    async def req(subject: str, body: Any = None) -> dict:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            reply = await nc.request(subject, data, timeout=2)
        except (NatsTimeout, NoRespondersError) as exc:
            return {"no answer": type(exc).__name__}
        return json.loads(reply.data) if reply.data else {}

    async def until(what: str, check: Any, timeout: float = 15) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = None
        while loop.time() < deadline:
            last = await check()
            if last is not None:
                return last
            await asyncio.sleep(0.1)
        out.append(f"never: {what}")
        return None

    def messages(stream: str, count: int) -> Any:
        async def check() -> Any:
            info = await req(API + "STREAM.INFO." + stream)
            return info if (info.get("state") or {}).get("messages") == count else None

        return check

    def consumers(stream: str, count: int) -> Any:
        async def check() -> Any:
            listed = await req(API + "CONSUMER.LIST." + stream)
            return listed if listed.get("total") == count else None

        return check

    def source_error(stream: str) -> Any:
        async def check() -> Any:
            info = await req(API + "STREAM.INFO." + stream)
            entries = info.get("sources") or ([info["mirror"]] if info.get("mirror") else [])
            errors = [e.get("error") for e in entries if e.get("error")]
            return errors or None

        return check

    def config_of(reply: dict) -> str:
        if "error" in reply:
            return _mask(reply["error"])
        return _mask(reply.get("config"))

    try:
        # a work-queue origin, sourced: the origin empties as the copies are stored
        await req(API + "STREAM.CREATE.WQ", {"name": "WQ", "subjects": ["wq.>"], "retention": "workqueue"})
        for i in range(3):
            await req("wq.a", b"w%d" % i)
        out.append(config_of(await req(API + "STREAM.CREATE.AGG", {"name": "AGG", "sources": [{"name": "WQ"}]})))
        await until("AGG holds 3", messages("AGG", 3))
        origin = await until("WQ empty", messages("WQ", 0))
        out.append(_mask((origin or {}).get("state")))
        listed = await req(API + "CONSUMER.LIST.WQ")
        out.append(_mask([(c["name"], c["config"], c["ack_floor"]) for c in listed.get("consumers") or []]))
        for i in range(2):
            await req("wq.b", b"x%d" % i)
        await until("AGG holds 5", messages("AGG", 5))
        await until("WQ empty again", messages("WQ", 0))
        got = await req(API + "STREAM.MSG.GET.AGG", {"seq": 4})
        out.append(json.dumps(sorted((got.get("message") or {}).keys())))
        # the source goes: so does the durable made for it
        await req(API + "STREAM.UPDATE.AGG", {"name": "AGG", "subjects": ["agg"]})
        out.append(_mask(await until("the durable deleted", consumers("WQ", 0))))

        # an interest origin, mirrored
        await req(API + "STREAM.CREATE.IN", {"name": "IN", "subjects": ["in.>"], "retention": "interest"})
        out.append(config_of(await req(API + "STREAM.CREATE.MIR", {"name": "MIR", "mirror": {"name": "IN"}})))
        listed = await until("the mirror's durable", consumers("IN", 1))
        out.append(_mask([(c["name"], c["config"]) for c in (listed or {}).get("consumers") or []]))
        for i in range(3):
            await req("in.a", b"i%d" % i)  # kept while the mirror's durable has not acked them
        await until("MIR holds 3", messages("MIR", 3))
        await until("IN empty", messages("IN", 0))
        await req(API + "STREAM.DELETE.MIR")
        out.append(_mask(await until("the mirror's durable deleted", consumers("IN", 0))))

        # the user's durable
        await req(API + "STREAM.CREATE.UQ", {"name": "UQ", "subjects": ["uq.>"], "retention": "workqueue"})
        for i in range(2):
            await req("uq.a", b"u%d" % i)
        made = await req(
            API + "CONSUMER.CREATE.UQ.mine",
            {
                "stream_name": "UQ",
                "config": {"durable_name": "mine", "deliver_subject": "deliver.mine", "ack_policy": "flow_control"},
            },
        )
        out.append(config_of(made))
        own = {"name": "UQ", "consumer": {"name": "mine", "deliver_subject": "deliver.mine"}}
        out.append(config_of(await req(API + "STREAM.CREATE.OWN", {"name": "OWN", "sources": [own]})))
        await until("OWN holds 2", messages("OWN", 2))
        await until("UQ empty", messages("UQ", 0))
        info = await req(API + "STREAM.INFO.OWN")
        out.append(_mask([{k: v for k, v in s.items() if k in ("name", "consumer", "error")} for s in info["sources"]]))
        await req(API + "STREAM.DELETE.OWN")
        listed = await req(API + "CONSUMER.LIST.UQ")
        out.append(json.dumps([c["name"] for c in listed.get("consumers") or []]))  # the user's stays

        # a durable acked otherwise cannot feed a source (10217) or a mirror (10214)
        await req(API + "STREAM.CREATE.LQ", {"name": "LQ", "subjects": ["lq.>"]})
        await req(
            API + "CONSUMER.CREATE.LQ.plain",
            {"stream_name": "LQ", "config": {"durable_name": "plain", "deliver_subject": "deliver.plain"}},
        )
        plain = {"name": "plain", "deliver_subject": "deliver.plain"}
        await req(API + "STREAM.CREATE.BADS", {"name": "BADS", "sources": [{"name": "LQ", "consumer": plain}]})
        out.append(_mask(await until("10217", source_error("BADS"))))
        await req(API + "STREAM.CREATE.BADM", {"name": "BADM", "mirror": {"name": "LQ", "consumer": plain}})
        out.append(_mask(await until("10214", source_error("BADM"))))

        # config errors
        for name, body in [
            ("E1", {"mirror": {"name": "LQ", "consumer": {"name": "a.b", "deliver_subject": "d"}}}),
            ("E2", {"mirror": {"name": "LQ", "consumer": {"name": "a", "deliver_subject": "d.*"}}}),
            ("E3", {"mirror": {"name": "LQ", "opt_start_seq": 2, "consumer": {"name": "a", "deliver_subject": "d"}}}),
            (
                "E4",
                {"mirror": {"name": "LQ", "filter_subject": "lq.x", "consumer": {"name": "a", "deliver_subject": "d"}}},
            ),
            ("E5", {"sources": [{"name": "LQ", "consumer": {"name": "", "deliver_subject": "d"}}]}),
            (
                "E6",
                {
                    "sources": [
                        {"name": "LQ", "filter_subject": "lq.a", "consumer": {"name": "a", "deliver_subject": "d"}}
                    ]
                },
            ),
            (
                "E7",
                {
                    "sources": [
                        {"name": "LQ", "consumer": {"name": "a", "deliver_subject": "d"}},
                        {"name": "LQ", "consumer": {"name": "a", "deliver_subject": "e"}},
                    ]
                },
            ),
            (
                "E8",
                {
                    "sources": [
                        {"name": "LQ", "consumer": {"name": "a", "deliver_subject": "d"}},
                        {"name": "LQ", "consumer": {"name": "b", "deliver_subject": "e"}},
                    ]
                },
            ),
            (
                "E9",
                {
                    "sources": [
                        {
                            "name": "LQ",
                            "subject_transforms": [{"src": "lq.a", "dest": "x.a"}],
                            "consumer": {"name": "a", "deliver_subject": "d"},
                        },
                        {
                            "name": "LQ",
                            "subject_transforms": [{"src": "lq.b", "dest": "x.b"}],
                            "consumer": {"name": "a", "deliver_subject": "e"},
                        },
                    ]
                },
            ),
        ]:
            out.append(config_of(await req(API + "STREAM.CREATE." + name, {"name": name, **body})))
    finally:
        await nc.close()
    return out


def test_durable_sourcing_diff(tmp_path):
    expected, actual = run_on_both(tmp_path, lambda server: _script(server.url))
    assert_same_lines(expected, actual)
    assert len(expected) == len(actual)
    assert not [line for line in actual if line.startswith("never")]
