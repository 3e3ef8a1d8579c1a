"""Fast batch publish (nats-server 2.14+, `allow_batched`) against jsedge and nats-server 2.15.1: a
publisher streams messages with replies `<inbox>.<batch id>.<flow>.<gap mode>.<seq>.<op>.$FI` and
gets flow-control acks every N persisted messages, gap and error reports, and one PubAck on commit;
the same replies, in the same order, and the same stored messages."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from tests.helpers import assert_same_lines, js_api, pure_pass_in_ci, run_on_both, stream_message

pytestmark = [pytest.mark.compat, pytest.mark.timeout(90)]

START, APPEND, COMMIT, EOB, PING = range(5)


def R(batch: str, seq: int, op: int, flow: int | str = 2, gap: str = "fail") -> str:
    return f"fb.in.{batch}.{flow}.{gap}.{seq}.{op}.$FI"


#: (title, extra stream config, publishes as (subject, reply, headers, payload))
SCENARIOS = [
    (
        "a batch of seven with acks every two, committed",
        {},
        [("f.a", R("b1", 1, START), {}, b"1")]
        + [("f.a", R("b1", n, APPEND), {}, b"%d" % n) for n in range(2, 7)]
        + [("f.a", R("b1", 7, COMMIT), {}, b"7")],
    ),
    (
        "committed by eob, a batch of one, pings",
        {},
        [
            ("f.a", R("e", 1, START, 1), {}, b"1"),
            ("f.a", R("e", 2, APPEND, 1), {}, b"2"),
            ("f.a", R("e", 2, PING, 1), {}, b""),
            ("f.a", R("e", 5, PING, 1), {}, b""),
            ("f.a", R("e", 3, EOB, 1), {}, b"not stored"),
            ("f.a", R("one", 1, COMMIT), {}, b"alone"),
        ],
    ),
    (
        "gaps: fail mode commits what it has, ok mode goes on",
        {},
        [
            ("f.a", R("gf", 1, START), {}, b"1"),
            ("f.a", R("gf", 2, APPEND), {}, b"2"),
            ("f.a", R("gf", 4, APPEND), {}, b"4"),
            ("f.a", R("gf", 5, APPEND), {}, b"5"),
            ("f.a", R("go", 1, START, 2, "ok"), {}, b"1"),
            ("f.a", R("go", 3, APPEND, 2, "ok"), {}, b"3"),
            ("f.a", R("go", 4, APPEND, 2, "ok"), {}, b"4"),
            ("f.a", R("go", 2, APPEND, 2, "ok"), {}, b"late"),
            ("f.a", R("go", 5, COMMIT, 2, "ok"), {}, b"5"),
        ],
    ),
    (
        "two batches at once share the flow (acks every message, ramping up)",
        {},
        [("f.a", R("p", 1, START, 8), {}, b"p1"), ("f.b", R("q", 1, START, 8), {}, b"q1")]
        + [
            item
            for n in range(2, 12)
            for item in (("f.a", R("p", n, APPEND, 8), {}, b"p%d" % n), ("f.b", R("q", n, APPEND, 8), {}, b"q%d" % n))
        ]
        + [("f.a", R("p", 12, COMMIT, 8), {}, b"p12"), ("f.b", R("q", 12, EOB, 8), {}, b"")],
    ),
    (
        "gap ok: an error inside the batch is reported and the batch goes on",
        {},
        [
            ("f.a", R("ok", 1, START, 2, "ok"), {}, b"1"),
            ("f.a", R("ok", 2, APPEND, 2, "ok"), {"Nats-Expected-Stream": "OTHER"}, b"2"),
            ("f.a", R("ok", 3, APPEND, 2, "ok"), {}, b"3"),
            ("f.a", R("ok", 7, PING, 2, "ok"), {}, b""),
            ("f.a", R("ok", 8, COMMIT, 2, "ok"), {}, b"8"),
        ],
    ),
    (
        "bad patterns, unknown batches, errors inside a batch",
        {"max_msg_size": 100},
        [
            ("f.a", "fb.in.x.2.fail.1.9.$FI", {}, b""),
            ("f.a", "fb.in.x.2.maybe.1.0.$FI", {}, b""),
            ("f.a", "fb.in.x.2.fail.0.0.$FI", {}, b""),
            ("f.a", "fb.in.x.2.fail.2.0.$FI", {}, b""),
            ("f.a", "fb.in.x.2.fail.1.1.$FI", {}, b""),
            ("f.a", "fb.in.x.2.fail.1.3.$FI", {}, b""),
            ("f.a", "fail.1.0.$FI", {}, b""),
            ("f.a", R("nobody", 2, APPEND), {}, b""),
            ("f.a", R("x" * 65, 1, START), {}, b""),
            ("f.a", R("first", 1, START), {"Nats-Expected-Last-Sequence": "99"}, b"fails at once"),
            ("f.a", R("first", 2, APPEND), {}, b"gone"),
            ("f.a", R("mid", 1, START), {}, b"1"),
            ("f.a", R("mid", 2, APPEND), {"Nats-Expected-Stream": "OTHER"}, b"2"),
            ("f.a", R("mid", 3, APPEND), {}, b"3"),
            ("f.a", R("big", 1, START), {}, b"x" * 200),
            ("f.a", R("dup", 1, START), {"Nats-Msg-Id": "d"}, b"1"),
            ("f.a", R("dup", 2, APPEND), {"Nats-Msg-Id": "d"}, b"again"),
            ("f.a", R("dup", 3, COMMIT), {}, b"3"),
            ("f.a", R("atomic", 1, START), {"Nats-Batch-Id": "atomic", "Nats-Batch-Sequence": "1"}, b"fast wins"),
            ("f.a", R("atomic", 2, COMMIT), {}, b"end"),
        ],
    ),
]


async def _messages(nc, stream: str) -> list[str]:
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{stream}", {})
    state = info["state"]
    out = [f"state msgs={state['messages']} last={state['last_seq']}"]
    for seq in range(max(1, state["first_seq"]), state["last_seq"] + 1):
        found = await stream_message(nc, stream, seq)
        if not isinstance(found, tuple):
            continue
        subject, hdrs, data = found
        out.append(f"{seq} {subject} {hdrs!r} {data}")
    return out


async def _scenarios(server) -> list[str]:
    nc = await nats.connect(server.url)
    out: list[str] = []
    replies: list[str] = []

    async def on_reply(msg) -> None:
        body = msg.data.decode() or "empty"
        try:
            parsed = json.loads(body)
            parsed.pop("domain", None)
            body = json.dumps(parsed, sort_keys=True)
        except ValueError:
            pass
        replies.append(f"  <- {msg.subject} {body}")

    sub = await nc.subscribe("fb.in.>", cb=on_reply)
    try:
        for title, config, publishes in SCENARIOS:
            await js_api(nc, "$JS.API.STREAM.DELETE.F", {})
            created = await js_api(
                nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f.>"], "allow_batched": True, **config}
            )
            out.append(f"== {title}: create {created.get('error')}")
            for subject, reply, headers, payload in publishes:
                replies.clear()
                await nc.publish(subject, payload, reply=reply, headers=headers or None)
                await nc.flush()
                await asyncio.sleep(0.1)  # every reply of this publish (jsedge's after its fsync)
                out.append(f"{reply} {headers}")
                out.extend(replies)
            out.extend(await _messages(nc, "F"))
    finally:
        await sub.unsubscribe()
        await nc.close()
    return out


@pure_pass_in_ci("the batch logic is pure Python in both passes; 15 s of paced publishes")
def test_fast_batches_answer_and_store_as_nats_server(tmp_path):
    expected, actual = run_on_both(tmp_path, _scenarios)
    assert_same_lines(expected, actual)
