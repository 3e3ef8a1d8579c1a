"""Message schedules (ADR-51, `allow_msg_schedules`) against jsedge and nats-server 2.15.1: the same
answers to every schedule header (and every invalid one), the same produced messages (`@at` once,
then the schedule purged; `@every` with `Nats-Schedule-Next`; a schedule's TTL, rollup and source),
and a client's `Nats-Schedule-Next: purge` ending a schedule. Real time, schedules a second apart."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import assert_same_lines, js_api, pure_pass_in_ci, run_on_both, stream_message

pytestmark = [pytest.mark.compat, pytest.mark.timeout(90)]

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def S(pattern: str | None, target: str | None = "s.out", **extra: str) -> dict[str, str]:
    headers = {}
    if pattern is not None:
        headers["Nats-Schedule"] = pattern
    if target is not None:
        headers["Nats-Schedule-Target"] = target
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return headers


INVALID = [
    ("s.sched", S("@at 2025-13-01T00:00:00Z")),
    ("s.sched", S("@at tomorrow")),
    ("s.sched", S("@every 500ms")),
    ("s.sched", S("@every nope")),
    ("s.sched", S("* * * * *")),
    ("s.sched", S("61 * * * * *")),
    ("s.sched", S("@fortnightly")),
    ("s.sched", S("@hourly", Nats_Schedule_Time_Zone="Mars/Olympus")),
    ("s.sched", S("@hourly", Nats_Schedule_Time_Zone="")),
    ("s.sched", S("@every 1s", Nats_Schedule_Time_Zone="Europe/Paris")),
    ("s.sched", S("@every 1s", None)),
    ("s.sched", S("@every 1s", "s.*")),
    ("s.sched", S("@every 1s", "s.sched")),
    ("s.sched", S("@every 1s", "other.out")),
    ("s.sched", S("@every 1s", Nats_Schedule_Source="s.out")),
    ("s.sched", S("@every 1s", Nats_Schedule_Source="s.sched")),
    ("s.sched", S("@every 1s", Nats_Schedule_Source="other.x")),
    ("s.sched", S("@every 1s", Nats_Schedule_TTL="soon")),
    ("s.sched", S("@every 1s", Nats_Schedule_Rollup="all")),
    ("s.sched", S("@every 1s", Nats_Rollup="all")),
    ("s.x", {"Nats-Schedule-Next": "later", "Nats-Scheduler": "s.sched"}),
    ("s.x", {"Nats-Schedule-Next": "purge"}),
    ("s.x", {"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.x"}),
    ("s.x", {"Nats-Scheduler": "s.sched"}),
    ("s.plain", {}),
    ("s.x", {"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.plain"}),
    ("s.sched", S("", "s.out")),
    ("s.sched", S("0 0 0 1 1 *", Nats_Schedule_Time_Zone="America/New_York")),
]


def _answer(data: bytes) -> str:
    body = json.loads(data)
    body.pop("domain", None)
    return json.dumps(body, sort_keys=True)


async def _stored(nc, stream: str) -> list[str]:
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{stream}", {})
    state = info["state"]
    out = [f"state msgs={state['messages']}"]
    for seq in range(max(1, state["first_seq"]), state["last_seq"] + 1):
        found = await stream_message(nc, stream, seq)
        if not isinstance(found, tuple):
            continue
        subject, hdrs, data = found
        out.append(_TIME.sub("TIME", f"{subject} {hdrs!r} {data}"))
    return out


async def _script(server) -> list[str]:
    nc = await nats.connect(server.url)
    out: list[str] = []
    try:
        no = await js_api(nc, "$JS.API.STREAM.CREATE.N", {"name": "N", "subjects": ["n.>"]})
        out.append(f"create N {no.get('error')}")
        created = await js_api(
            nc,
            "$JS.API.STREAM.CREATE.S",
            {"name": "S", "subjects": ["s.>"], "allow_msg_schedules": True, "allow_msg_ttl": True},
        )
        config = created["config"]
        out.append(f"create S {created.get('error')} rollup={config.get('allow_rollup_hdrs')}")
        bad = await js_api(
            nc,
            "$JS.API.STREAM.CREATE.B",
            {"name": "B", "subjects": ["b.>"], "allow_msg_schedules": True, "discard": "new"},
        )
        out.append(f"create B {bad.get('error')}")

        async def pub(subject: str, headers: dict[str, str], payload: bytes = b"", seq: bool = True) -> None:
            try:
                reply = await nc.request(subject, payload, headers=headers, timeout=2)
                answer = _answer(reply.data) if seq else str(json.loads(reply.data).get("error"))
                out.append(_TIME.sub("TIME", f"{subject} {headers} -> {answer}"))
            except NatsTimeout:
                out.append(f"{subject} {headers} -> timeout")

        for subject, headers in INVALID:
            await pub(subject, headers)
        await pub("n.sched", S("@every 1s", "n.out"))
        await pub("s.data", {"Kind": "source"}, b"from the source subject")
        started = time.monotonic()
        await pub("s.sched.at", S(f"@at {_at(1)}", Nats_Msg_Id="id1", Extra="kept"), b"once")
        await pub("s.sched.every", S("@every 1s", "s.out.every", Nats_Schedule_TTL="1h"), b"repeating")
        await pub(
            "s.sched.src", S(f"@at {_at(1)}", "s.out.src", Nats_Schedule_Source="s.data", Nats_Schedule_Rollup="sub")
        )
        await pub("s.sched.cron", S("@yearly", "s.out.cron"), b"not yet")
        # the @at ones fire within ~2 s (nats-server's timer runs at most every 250 ms)
        await asyncio.sleep(max(0.0, 3.2 - (time.monotonic() - started)))
        # (its sequence depends on how often @every fired meanwhile)
        await pub("s.stop", {"Nats-Schedule-Next": "purge", "Nats-Scheduler": "s.sched.every"}, b"stop it", seq=False)
        stored = await _stored(nc, "S")
        out.append(stored[0].split()[0])
        # how many times @every fired depends on timing: the first produced message stands for all
        every = [line for line in stored[1:] if line.startswith("s.out.every ")]
        out.append(f"every fired: {bool(every)}")
        # (in the order of their subjects: when each schedule fires relative to the others is timing)
        out.extend(sorted(set(stored[1:])))
    finally:
        await nc.close()
    return out


@pure_pass_in_ci("the schedule logic is pure Python in both passes; real-time schedules")
def test_message_schedules_answer_and_fire_as_nats_server(tmp_path):
    expected, actual = run_on_both(tmp_path, _script)
    assert_same_lines(expected, actual)
