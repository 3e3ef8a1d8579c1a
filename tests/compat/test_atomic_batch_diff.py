"""Atomic batch publish (ADR-50, `allow_atomic`, `Nats-Batch-Id`) against jsedge and nats-server
2.15.1: the same empty replies to staged messages, the same PubAck on commit (`batch`, `count`), the
same 1017x/1019x/1020x errors, and the same stored messages (all of a batch, or none of it)."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import assert_same_lines, js_api, run_on_both, run_on_both_with_config, stream_message

pytestmark = [pytest.mark.compat, pytest.mark.timeout(90)]


def B(batch: str, seq: int | str | None, commit: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"Nats-Batch-Id": batch}
    if seq is not None:
        headers["Nats-Batch-Sequence"] = str(seq)
    if commit is not None:
        headers["Nats-Batch-Commit"] = commit
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return headers


INFLIGHT = [("a.1", B(f"open{n}", 1), b"") for n in range(51)] + [("a.1", B("open0", 2, "1"), b"closes one")]

#: (title, extra stream config, publishes as (subject, headers, payload)); every publish is a
#: request, so staged messages answer too
SCENARIOS: list[tuple[str, dict, list[tuple[str, dict[str, str], bytes]]]] = [
    (
        "a plain batch of three, then one committed by eob",
        {},
        [
            ("a.1", B("b1", 1), b"one"),
            ("a.2", B("b1", 2), b"two"),
            ("a.1", B("b1", 3, "1"), b"three"),
            ("a.x", B("b2", 1), b"x1"),
            ("a.y", B("b2", 2), b"x2"),
            ("a.z", B("b2", 3, "eob"), b"not stored"),
            ("a.s", B("single", 1, "1"), b"a batch of one"),
        ],
    ),
    (
        "broken batches",
        {},
        [
            ("a.1", B("gap", 1), b""),
            ("a.1", B("gap", 3, "1"), b""),
            ("a.1", B("gap", 2, "1"), b""),
            ("a.1", B("late", 2), b""),
            ("a.1", B("noseq", None), b""),
            ("a.1", B("badseq", "x"), b""),
            ("a.1", B("badcommit", 1), b""),
            ("a.1", B("badcommit", 2, "yes"), b""),
            ("a.1", B("badcommit", 3, "1"), b""),
            ("a.1", B("eob1", 1, "eob"), b""),
            ("a.1", B("x" * 65, 1, "1"), b""),
            ("a.1", B("x" * 64, 1, "1"), b"64 is fine"),
            ("a.1", B("big", 1001), b""),
            ("a.1", B("big", 1001, "eob"), b""),
            ("a.1", B("commit0", 1, "0"), b""),
            ("a.1", {"Nats-Batch-Id": "", "Nats-Batch-Sequence": "1"}, b"empty id: a plain publish"),
            ("b.1", B("nostream", 1, "1"), b""),
        ],
    ),
    (
        "headers a batch refuses or checks across its messages",
        {},
        [
            ("a.1", B("lmi", 1, Nats_Expected_Last_Msg_Id="x"), b""),
            ("a.1", B("lmi", 2, "1"), b""),
            ("a.1", B("dup", 1, Nats_Msg_Id="m1"), b""),
            ("a.1", B("dup", 2, "1", Nats_Msg_Id="m1"), b""),
            ("a.1", B("ok", 1, Nats_Msg_Id="m2"), b"m2"),
            ("a.2", B("ok", 2, "1", Nats_Msg_Id="m3"), b"m3"),
            ("a.1", B("dup2", 1, "1", Nats_Msg_Id="m2"), b"already stored"),
            ("a.1", B("els", 1, Nats_Expected_Last_Sequence="2"), b"els"),
            ("a.1", B("els", 2, "1"), b"els"),
            ("a.1", B("els2", 1), b""),
            ("a.1", B("els2", 2, "1", Nats_Expected_Last_Sequence="4"), b""),
            ("a.1", B("els3", 1), b""),
            ("a.1", B("els3", 2, "1", Nats_Expected_Last_Sequence="5"), b""),
            ("a.9", B("elss", 1, Nats_Expected_Last_Subject_Sequence="0"), b""),
            ("a.9", B("elss", 2, "1", Nats_Expected_Last_Subject_Sequence="6"), b""),
            ("a.8", B("elss2", 1, Nats_Expected_Last_Subject_Sequence="0"), b""),
            ("a.7", B("elss2", 2, "1", Nats_Expected_Last_Subject_Sequence="0"), b"two subjects"),
            ("a.1", B("wrong", 1, Nats_Expected_Last_Subject_Sequence="1"), b""),
            ("a.1", B("wrong", 2, "1"), b""),
            ("a.1", B("stream", 1, "1", Nats_Expected_Stream="OTHER"), b""),
            ("a.1", B("ttl", 1, "1", Nats_TTL="5s"), b""),
            ("a.1", B("src", 1, "1", Nats_Stream_Source="X 1 > > a.1"), b""),
            ("a.1", B("roll", 1), b""),
            ("a.1", B("roll", 2, "1", Nats_Rollup="all"), b""),
            ("a.1", B("roll2", 1), b""),
            ("a.1", B("roll2", 2, "1", Nats_Rollup="sub"), b""),
            ("a.1", B("roll3", 1, "1", Nats_Rollup="bad"), b""),
            ("a.1", B("incr", 1, "1", Nats_Incr="1"), b""),
        ],
    ),
    (
        "rollups and TTLs in a batch",
        {"allow_rollup_hdrs": True, "allow_msg_ttl": True},
        [
            ("a.1", {}, b"before"),
            ("a.2", {}, b"before"),
            ("a.1", B("r1", 1, Nats_Rollup="all"), b"rolls all up"),
            ("a.3", B("r1", 2, "1", Nats_TTL="1h"), b"ttl"),
            ("a.1", B("r2", 1), b""),
            ("a.1", B("r2", 2, "1", Nats_Rollup="all"), b""),
            ("a.1", B("r3", 1), b""),
            ("a.1", B("r3", 2, "1", Nats_Rollup="sub"), b""),
            ("a.2", B("r4", 1), b"r4"),
            ("a.1", B("r4", 2, Nats_Rollup="sub"), b"r4 rolls a.1 up"),
            ("a.1", B("r4", 3, "eob"), b""),
            ("a.1", B("r5", 1, "1", Nats_Rollup="bad"), b""),
            ("a.1", B("t1", 1, "1", Nats_TTL="bad"), b""),
        ],
    ),
    (
        "discard new limits count the whole batch",
        {"discard": "new", "max_msgs": 3},
        [
            ("a.1", B("fits", 1), b""),
            ("a.2", B("fits", 2, "1"), b""),
            ("a.1", B("over", 1), b""),
            ("a.2", B("over", 2, "1"), b""),
            ("a.3", B("last", 1, "1"), b"the third"),
        ],
    ),
    (
        "discard new per subject",
        {"discard": "new", "max_msgs_per_subject": 1, "discard_new_per_subject": True},
        [
            ("a.1", B("p1", 1), b""),
            ("a.1", B("p1", 2, "1"), b""),
            ("a.1", B("p2", 1), b""),
            ("a.2", B("p2", 2, "1"), b""),
        ],
    ),
    (
        "counters add up across a batch",
        {"allow_msg_counter": True},
        [
            ("a.1", {"Nats-Incr": "5"}, b""),
            ("a.1", B("c1", 1, Nats_Incr="1"), b""),
            ("a.2", B("c1", 2, Nats_Incr="2"), b""),
            ("a.1", B("c1", 3, "1", Nats_Incr="10"), b""),
            ("a.1", B("c2", 1, Nats_Incr="1"), b""),
            ("a.1", B("c2", 2, "1"), b""),
        ],
    ),
    ("at most 50 batches in flight per stream", {}, INFLIGHT),
]


async def _messages(nc, stream: str) -> list[str]:
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{stream}", {})
    state = info["state"]
    out = [f"state msgs={state['messages']} first={state['first_seq']} last={state['last_seq']}"]
    for seq in range(state["first_seq"], state["last_seq"] + 1):
        found = await stream_message(nc, stream, seq)
        if not isinstance(found, tuple):
            out.append(f"{seq} {found}")
            continue
        subject, hdrs, data = found
        out.append(f"{seq} {subject} {hdrs!r} {data}")
    return out


def _answer(data: bytes) -> str:
    if not data:
        return "empty"
    body = json.loads(data)
    body.pop("domain", None)
    return json.dumps(body, sort_keys=True)


async def _scenarios(server) -> list[str]:
    nc = await nats.connect(server.url)
    out: list[str] = []
    try:
        for title, config, publishes in SCENARIOS:
            await js_api(nc, "$JS.API.STREAM.DELETE.S", {})
            created = await js_api(
                nc, "$JS.API.STREAM.CREATE.S", {"name": "S", "subjects": ["a.>"], "allow_atomic": True, **config}
            )
            out.append(f"== {title}: create {created.get('error')}")
            for subject, headers, payload in publishes:
                try:
                    reply = await nc.request(subject, payload, headers=headers, timeout=1)
                    out.append(f"{subject} {headers} -> {_answer(reply.data)}")
                except NatsTimeout:
                    out.append(f"{subject} {headers} -> timeout")
                except nats.errors.NoRespondersError:
                    out.append(f"{subject} {headers} -> no responders")
            out.extend(await _messages(nc, "S"))
    finally:
        await nc.close()
    return out


def test_atomic_batches_answer_and_store_as_nats_server(tmp_path):
    expected, actual = run_on_both(tmp_path, _scenarios)
    assert_same_lines(expected, actual)


LIMITS_CONFIG = """
jetstream {
  store_dir: "%s"
  limits { batch { max_msgs: 3, max_inflight_per_stream: 2, timeout: "400ms" } }
}
"""


async def _limits_script(server) -> list[str]:
    nc = await nats.connect(server.url)
    out: list[str] = []
    advisories = []

    async def collect(msg) -> None:
        event = json.loads(msg.data)
        advisories.append(f"{msg.subject} {event['type']} {event['stream']} {event['batch']} {event['reason']}")

    sub = await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.>", cb=collect)
    try:
        created = await js_api(nc, "$JS.API.STREAM.CREATE.S", {"name": "S", "subjects": ["a.>"], "allow_atomic": True})
        out.append(f"create {created.get('error')}")

        async def pub(subject: str, headers: dict[str, str]) -> None:
            try:
                reply = await nc.request(subject, b"", headers=headers, timeout=1)
                out.append(f"{subject} {headers} -> {_answer(reply.data)}")
            except NatsTimeout:
                out.append(f"{subject} {headers} -> timeout")

        await pub("a.1", B("slow", 1))
        await asyncio.sleep(1.0)  # past the batch timeout: abandoned
        await pub("a.1", B("slow", 2, "1"))
        for seq in (1, 2, 3):
            await pub("a.1", B("big", seq))
        await pub("a.1", B("big", 4, "1"))
        await pub("a.1", B("eob", 1))
        await pub("a.1", B("eob", 2))
        await pub("a.1", B("eob", 3))
        await pub("a.1", B("eob", 4, "eob"))
        await pub("a.1", B("gap", 1))
        await pub("a.1", B("gap", 3))
        await pub("a.1", B("one", 1))
        await pub("a.1", B("two", 1))
        await pub("a.1", B("three", 1))
        await nc.flush()
        await asyncio.sleep(0.2)
        out.extend(sorted(advisories))
    finally:
        await sub.unsubscribe()
        await nc.close()
    return out


def test_batch_limits_timeout_and_abandoned_advisories_as_nats_server(tmp_path):
    assert_same_lines(*run_on_both_with_config(tmp_path, LIMITS_CONFIG, _limits_script))
