"""Differential consumer tests: the same `$JS.API.CONSUMER.*` requests, publishes, pulls and acks
against jsedge and nats-server 2.15.1. Replies (JSON and status headers, subjects, ack reply subjects)
must be equal after masking times, ids and ephemeral names. Each script runs on a fresh server.
"""

from __future__ import annotations

import asyncio
import json
import re

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import ServerProcess, acheck_for, assert_same_lines, run_on_both

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

_MASK = [
    (re.compile(r"_INBOX\.[A-Za-z0-9.]+"), "INBOX"),
    (re.compile(r'"(created|ts|last_active|timestamp|id)":"[^"]*"'), r'"\1":"T"'),
    (re.compile(r"(\$JS\.ACK\.[^.]+\.[^.]+\.\d+\.\d+\.\d+\.)\d+"), r"\1TS"),
    (re.compile(r'"pause_remaining":\d+'), '"pause_remaining":N'),
    (re.compile(r'"(leader|first_ts|last_ts)":"[^"]*"'), r'"\1":"L"'),
    (re.compile(r'"name":"[A-Za-z0-9]{8}"'), '"name":"EPH"'),
]


def normalize(text: str) -> str:
    for pattern, repl in _MASK:
        text = pattern.sub(repl, text)
    return text


def _data(body) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _show(msg) -> str:
    hdrs = sorted((msg.headers or {}).items())
    return f"{msg.subject} {msg.reply} {hdrs} {msg.data.decode(errors='replace')}"


#: How much longer than its step says a pull that ends with neither its batch nor a status waits.
PULL_WINDOW_SCALE = 3


def _batch_of(body) -> int:
    """The batch a MSG.NEXT body asks for (1 when it names none or does not parse)."""
    try:
        value = json.loads(_data(body) or b"1")
    except ValueError:
        return 1
    if isinstance(value, dict):
        value = value.get("batch", 1)
    return value if isinstance(value, int) and value > 0 else 1


async def run_script(url: str, script: list[tuple]) -> list[str]:
    """Steps: ("req", subject, body) | ("pub", subject, body) | ("pull", subject, body, seconds) |
    ("ack", index of a message seen in the last pull, body). Scripts publish to streams with "req":
    nats-server stores a publish asynchronously, and only its PubAck says it is stored before the
    next step (a consumer created right after a plain publish may or may not count it)."""
    nc = await nats.connect(url)
    out: list[str] = []
    last: list = []
    try:
        for step in script:
            kind, subject = step[0], step[1]
            if kind == "pub":
                await nc.publish(subject, _data(step[2]))
                await nc.flush()
            elif kind == "req":
                try:
                    msg = await nc.request(subject, _data(step[2]), timeout=1.0)
                    out.append(normalize(f"{subject} {_show(msg)}"))
                except NoRespondersError:
                    out.append(f"{subject} no-responders")
                except NatsTimeout:
                    out.append(f"{subject} timeout")
            elif kind == "pull":
                inbox = nc.new_inbox()
                sub = await nc.subscribe(inbox)
                await nc.publish(subject, _data(step[2]), reply=inbox)
                # A pull ends with its batch or a status (404, 408, 409, 400...): stop there. The
                # window is only for pulls that end in neither, and is generous so that a loaded
                # machine's late delivery is not mistaken for a difference.
                deadline = asyncio.get_running_loop().time() + step[3] * PULL_WINDOW_SCALE
                wanted = _batch_of(step[2])
                last = []
                while True:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    try:
                        msg = await sub.next_msg(timeout=remaining)
                    except NatsTimeout:
                        break
                    out.append(normalize(f"pull {_show(msg)}".replace(inbox, "INBOX")))
                    if "Status" in (msg.headers or {}):
                        break
                    last.append(msg)
                    if len(last) >= wanted:
                        break
                await sub.unsubscribe()
            elif kind == "ack":
                msg = last[subject]
                try:
                    reply = await nc.request(msg.reply, _data(step[2]), timeout=0.5)
                    out.append(f"ack {reply.data!r}")
                except NatsTimeout:
                    out.append("ack no-reply")
                except NoRespondersError:
                    out.append("ack no-responders")
    finally:
        await nc.close()
    return out


def both(tmp_path, script: list[tuple]) -> tuple[list[str], list[str]]:
    return run_on_both(tmp_path, lambda server: run_script(server.url, script))


def assert_same(tmp_path, script: list[tuple]) -> None:
    assert_same_lines(*both(tmp_path, script))


API = "$JS.API."
STREAM = ("req", API + "STREAM.CREATE.C", {"name": "C", "subjects": ["c.>"]})


def create(name_part: str, config: dict, stream: str = "C", **extra) -> tuple:
    body = {"stream_name": stream, "config": config}
    body.update(extra)
    subject = API + "CONSUMER.CREATE." + stream + (("." + name_part) if name_part else "")
    return ("req", subject, body)


def test_consumer_create_forms_and_errors(tmp_path):
    assert_same(
        tmp_path,
        [
            STREAM,
            ("req", "c.a", b"1"),
            ("req", "c.b", b"2"),
            ("req", "c.a", b"3"),
            create("dur1", {"durable_name": "dur1", "ack_policy": "explicit"}),
            create("dur1", {"durable_name": "dur1", "ack_policy": "explicit"}, action="create"),
            create("dur1", {"durable_name": "dur1", "ack_policy": "explicit", "max_deliver": 3}, action="create"),
            create("dur1", {"durable_name": "dur1", "ack_policy": "all"}),
            create("dur1", {"durable_name": "dur1", "ack_policy": "explicit", "description": "x", "max_deliver": 5}),
            create("nope", {"durable_name": "nope", "ack_policy": "explicit"}, action="update"),
            create("x", {"durable_name": "y"}),
            create("", {"durable_name": "y"}),
            (
                "req",
                API + "CONSUMER.CREATE.C",
                {"stream_name": "C", "config": {"ack_policy": "none"}, "action": "bogus"},
            ),
            create("f1.c.a", {"name": "f1", "filter_subject": "c.b"}),
            create("f1.c.a", {"name": "f1", "filter_subject": "c.a", "ack_policy": "explicit"}),
            create("f2.c.a", {"filter_subjects": ["c.a"]}),
            ("req", API + "CONSUMER.CREATE.X.a", {"stream_name": "X", "config": {}}),
            ("req", API + "CONSUMER.CREATE.X.a", {"stream_name": "C", "config": {}}),
            create("r3", {"num_replicas": 3}),
            create("lp", {"deliver_policy": "last_per_subject"}),
            create("ss", {"deliver_policy": "by_start_sequence"}),
            create("ss", {"deliver_policy": "by_start_sequence", "opt_start_seq": 100, "ack_policy": "explicit"}),
            create("la", {"deliver_policy": "last", "ack_policy": "explicit"}),
            create("nw", {"deliver_policy": "new", "ack_policy": "explicit"}),
            create("lps", {"deliver_policy": "last_per_subject", "filter_subject": "c.>"}),
            create("both", {"filter_subject": "c.a", "filter_subjects": ["c.b"]}),
            create("ovl", {"filter_subjects": ["c.>", "c.a"]}),
            create("bo", {"ack_policy": "explicit", "backoff": [1000000000, 2000000000], "max_deliver": 1}),
            create("bo2", {"ack_policy": "explicit", "ack_wait": 5000000000, "backoff": [1000000000, 2000000000]}),
            create("fc", {"deliver_subject": "d.fc", "flow_control": True}),
            create("wc", {"deliver_subject": "d.*"}),
            create("cy", {"deliver_subject": "c.loop"}),
            create("mw", {"deliver_subject": "d.mw", "max_waiting": 3}),
            create("hb", {"deliver_subject": "d.hb", "idle_heartbeat": 50000000}),
            create("pr", {"rate_limit_bps": 100}),
            create("ph", {"idle_heartbeat": 1000000000}),
            create("sf", {"sample_freq": "x%"}),
            create("mp", {"deliver_subject": "d.mp", "max_ack_pending": 5}),
            create("push", {"deliver_subject": "d.push", "ack_policy": "none"}),
            create("push", {"deliver_subject": "d.push2", "ack_policy": "none"}),
            create("push", {"ack_policy": "none"}),
            ("req", API + "CONSUMER.DURABLE.CREATE.C.leg", {"stream_name": "C", "config": {"ack_policy": "explicit"}}),
            ("req", API + "CONSUMER.DURABLE.CREATE.C.leg", {"stream_name": "C", "config": {"durable_name": "leg2"}}),
            (
                "req",
                API + "CONSUMER.DURABLE.CREATE.C.leg",
                {"stream_name": "C", "config": {"durable_name": "leg", "ack_policy": "explicit"}},
            ),
            ("req", API + "CONSUMER.INFO.C.leg", b""),
            ("req", API + "CONSUMER.INFO.C.leg", b"x"),
            ("req", API + "CONSUMER.INFO.C.zz", b""),
            ("req", API + "CONSUMER.INFO.X.zz", b""),
            ("req", API + "CONSUMER.NAMES.C", b""),
            ("req", API + "CONSUMER.NAMES.C", {"offset": 2}),
            ("req", API + "CONSUMER.NAMES.X", b""),
            ("req", API + "CONSUMER.LIST.C", {"offset": 6}),
            ("req", API + "CONSUMER.DELETE.C.leg", b""),
            ("req", API + "CONSUMER.DELETE.C.leg", b""),
            ("req", API + "CONSUMER.DELETE.C.dur1", b"x"),
            ("req", API + "CONSUMER.LEADER.STEPDOWN.C.dur1", b""),
        ],
    )


def test_consumer_pull_and_acks_diff(tmp_path):
    nxt = API + "CONSUMER.MSG.NEXT.C.pc"
    assert_same(
        tmp_path,
        [
            STREAM,
            ("req", "c.a", b"m1"),
            ("req", "c.b", b"m2"),
            ("req", "c.a", b"m3"),
            create("pc", {"durable_name": "pc", "ack_policy": "explicit", "max_batch": 10, "max_bytes": 1000}),
            ("pull", nxt, {"batch": 2}, 0.3),
            ("ack", 0, b"+ACK"),
            ("ack", 1, b"-NAK"),
            ("pull", nxt, {"batch": 5, "no_wait": True}, 0.3),
            ("ack", 0, b"+WPI"),
            ("ack", 1, b"+TERM because"),
            ("ack", 0, b"+ACK"),
            ("req", API + "CONSUMER.INFO.C.pc", b""),
            ("pull", nxt, {"batch": 1, "no_wait": True}, 0.3),
            ("pull", nxt, {"batch": 3, "expires": 200000000}, 0.5),
            ("pull", nxt, {"batch": 11}, 0.2),
            ("pull", nxt, {"batch": 1, "max_bytes": 2000}, 0.2),
            ("pull", nxt, b"garbage", 0.3),
            ("req", "c.z", b"m4"),
            ("pull", nxt, b"2", 0.3),
            ("pull", nxt, {"batch": "x"}, 0.2),
            ("pull", API + "CONSUMER.MSG.NEXT.C.none", b"", 0.2),
            ("req", API + "CONSUMER.INFO.C.pc", b""),
            ("req", API + "CONSUMER.PAUSE.C.pc", {"pause_until": "2099-01-01T00:00:00Z"}),
            ("req", API + "CONSUMER.INFO.C.pc", b""),
            ("req", API + "CONSUMER.PAUSE.C.pc", b""),
            ("req", API + "CONSUMER.PAUSE.C.nope", b""),
            ("req", API + "CONSUMER.INFO.C.pc", b""),
        ],
    )


def test_consumer_retention_diff(tmp_path):
    # nats-server counts a consumer's pending messages asynchronously: the count in the first ack
    # reply of a pull right after two stored publishes was seen as 0 or 1 (jsedge: always 1)
    pending = re.compile(r"(\$JS\.ACK\.\S+\.TS\.)\d+")
    expected, actual = both(
        tmp_path,
        [
            ("req", API + "STREAM.CREATE.W", {"name": "W", "subjects": ["w.>"], "retention": "workqueue"}),
            create("a", {"durable_name": "a", "filter_subject": "w.a", "ack_policy": "explicit"}, stream="W"),
            create("b", {"durable_name": "b", "filter_subject": "w.>", "ack_policy": "explicit"}, stream="W"),
            create("c", {"durable_name": "c", "ack_policy": "explicit"}, stream="W"),
            create("d", {"durable_name": "d", "filter_subject": "w.d", "ack_policy": "none"}, stream="W"),
            create(
                "e",
                {"durable_name": "e", "filter_subject": "w.e", "ack_policy": "explicit", "deliver_policy": "last"},
                stream="W",
            ),
            ("req", "w.a", b"job"),
            ("pull", API + "CONSUMER.MSG.NEXT.W.a", b"", 0.3),
            ("ack", 0, b""),
            ("req", API + "STREAM.INFO.W", b""),
            ("req", API + "STREAM.CREATE.I", {"name": "I", "subjects": ["i.>"], "retention": "interest"}),
            ("req", "i.a", b"lost"),
            create("c1", {"durable_name": "c1", "ack_policy": "explicit"}, stream="I"),
            create("c2", {"durable_name": "c2", "ack_policy": "explicit", "filter_subject": "i.a"}, stream="I"),
            ("req", "i.a", b"1"),
            ("req", "i.b", b"2"),
            ("pull", API + "CONSUMER.MSG.NEXT.I.c1", {"batch": 2}, 0.3),
            ("ack", 0, b""),
            ("ack", 1, b""),
            ("req", API + "STREAM.INFO.I", b""),
            ("req", API + "CONSUMER.DELETE.I.c2", b""),
            ("req", API + "STREAM.INFO.I", b""),
        ],
    )
    assert_same_lines(*([pending.sub(r"\1P", line) for line in lines] for lines in (expected, actual)))


def test_ack_sync_on_ack_none_and_unknown_consumers_diff(tmp_path):
    """nats-server has no ack subscription for an AckNone consumer (or one that does not exist): an
    AckSync there gets 503 no responders instead of an ack-ack."""
    assert_same(
        tmp_path,
        [
            STREAM,
            ("req", "c.a", b"m1"),
            create("nn", {"durable_name": "nn", "ack_policy": "none"}),
            ("pull", API + "CONSUMER.MSG.NEXT.C.nn", {"batch": 1}, 0.3),
            ("ack", 0, b"+ACK"),
            ("req", "$JS.ACK.C.nope.1.1.1.1.0", b"+ACK"),
            create("ex", {"durable_name": "ex", "ack_policy": "explicit"}),
            ("pull", API + "CONSUMER.MSG.NEXT.C.ex", {"batch": 1}, 0.3),
            ("ack", 0, b"+ACK"),
        ],
    )


async def _pull_through_shutdown(srv) -> list[str]:
    import signal

    nc = await nats.connect(srv.url, max_reconnect_attempts=0)
    seen: list[str] = []
    try:
        js = nc.jetstream()
        await js.add_stream(name="SD", subjects=["sd"])
        await js.add_consumer("SD", durable_name="D", ack_policy="explicit")
        inbox = nc.new_inbox()
        got = asyncio.Event()

        async def on_msg(msg) -> None:
            seen.append(_show(msg).replace(inbox, "INBOX"))
            got.set()

        await nc.subscribe(inbox, cb=on_msg)
        body = json.dumps({"batch": 5, "max_bytes": 4096, "expires": 10_000_000_000}).encode()
        await nc.publish(API + "CONSUMER.MSG.NEXT.SD.D", body, reply=inbox)
        await nc.flush()
        await asyncio.sleep(0.2)  # the request is waiting
        srv.signal(signal.SIGTERM)
        await asyncio.wait_for(got.wait(), 5)
    finally:
        try:
            await nc.close()
        except Exception:
            pass
    return seen


def test_waiting_pulls_hear_server_shutdown_diff(tmp_path):
    """A pull request still waiting when the server stops gets `409 Server Shutdown` with what it
    still wanted, before the connection closes."""
    results = run_on_both(tmp_path, _pull_through_shutdown)
    assert results[0] == results[1]
    assert len(results[0]) == 1 and "Server Shutdown" in results[0][0] and "4096" in results[0][0]


def test_consumer_reset_diff(tmp_path):
    """`CONSUMER.RESET` (2.14): back to the ack floor or to a sequence, the delivery numbering
    starting over, the 10204 rules of each deliver policy, Go's JSON errors, and silence for a
    consumer that does not exist (nats-server answers from the consumer's own subscription)."""
    reset = API + "CONSUMER.RESET.C."
    nxt = API + "CONSUMER.MSG.NEXT.C.d"
    script: list[tuple] = [STREAM]
    script += [("req", "c.x", b"m%d" % i) for i in range(10)]
    script += [
        create("d", {"durable_name": "d", "ack_policy": "explicit"}),
        create(
            "s",
            {"durable_name": "s", "ack_policy": "explicit", "deliver_policy": "by_start_sequence", "opt_start_seq": 4},
        ),
        create("n", {"durable_name": "n", "ack_policy": "explicit", "deliver_policy": "new"}),
        create("l", {"durable_name": "l", "ack_policy": "explicit", "deliver_policy": "last"}),
        create(
            "t",
            {
                "durable_name": "t",
                "ack_policy": "explicit",
                "deliver_policy": "by_start_time",
                "opt_start_time": "2001-01-01T00:00:00Z",
            },
        ),
        create("p", {"durable_name": "p", "deliver_subject": "push.p", "ack_policy": "explicit"}),
        ("pull", nxt, {"batch": 3}, 0.3),
        ("ack", 0, b"+ACK"),
        ("req", reset + "d", b""),
        ("pull", nxt, {"batch": 1}, 0.3),
        ("req", reset + "d", {"seq": 7}),
        ("pull", nxt, {"batch": 2}, 0.3),
        ("ack", 1, b"+ACK"),
        ("req", API + "CONSUMER.INFO.C.d", b""),
        ("req", reset + "d", {"seq": 100}),
        ("req", reset + "s", {"seq": 2}),
        ("req", reset + "s", {"seq": 5}),
        ("req", reset + "n", {"seq": 5}),
        ("req", reset + "n", {"seq": 0}),
        ("req", reset + "n", {}),
        ("req", reset + "l", {"seq": 3}),
        ("req", reset + "t", {"seq": 3}),
        ("req", reset + "d", b"{nope"),
        ("req", reset + "d", b'{"seq":-1}'),
        ("req", reset + "d", b'{"seq":"x"}'),
        ("req", reset + "d", b"[]"),
        ("req", reset + "p", {"seq": 3}),
        ("req", reset + "zz", b""),
        ("req", API + "CONSUMER.RESET.Q.zz", b""),
        ("req", API + "CONSUMER.INFO.C.d", b""),
    ]
    assert_same(tmp_path, script)


async def _terminated_script(url: str) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []
    try:
        advisories = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>")

        async def req(subject: str, body) -> str:
            reply = await nc.request(subject, _data(body), timeout=2)
            return normalize(reply.data.decode())

        await req(API + "STREAM.CREATE.S", {"name": "S", "subjects": ["s.>"], "max_msgs": 3})
        for i in range(3):
            await req("s.x", b"m%d" % i)
        await req(
            API + "CONSUMER.CREATE.S.c", {"stream_name": "S", "config": {"durable_name": "c", "ack_policy": "explicit"}}
        )
        inbox = await nc.subscribe("ib")
        await nc.publish(API + "CONSUMER.MSG.NEXT.S.c", b'{"batch":2}', reply="ib")
        first = await inbox.next_msg(2)
        await inbox.next_msg(2)
        await nc.request(first.reply, b"-NAK", timeout=2)
        await nc.publish(API + "CONSUMER.MSG.NEXT.S.c", b'{"batch":1}', reply="ib")
        again = await inbox.next_msg(2)
        out.append(normalize(again.reply))
        out.append(await req("s.x", b"new"))  # max_msgs drops seq 1: pending, delivered twice
        out.append(await req(API + "STREAM.MSG.DELETE.S", {"seq": 2}))  # pending, delivered once
        for _ in range(2):
            event = json.loads((await advisories.next_msg(3)).data)
            out.append(json.dumps({k: v for k, v in event.items() if k not in ("id", "timestamp")}))
        out.append(await req(API + "CONSUMER.INFO.S.c", b""))
    finally:
        await nc.close()
    return out


def test_a_pending_message_leaving_the_stream_is_terminated_diff(tmp_path):
    """An unacknowledged message removed from the stream (limits, a delete) is acked in its place
    with a `MSG_TERMINATED` advisory ("Unacknowledged message was deleted"), as nats-server."""
    results = run_on_both(tmp_path, lambda server: _terminated_script(server.url))
    assert results[0] == results[1]
    assert "Unacknowledged message was deleted" in results[0][3]


async def _ephemeral_phase(url: str, phase: int) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []
    try:

        async def req(subject: str, body) -> str:
            reply = await nc.request(subject, _data(body), timeout=2)
            return normalize(reply.data.decode())

        if phase == 1:
            out.append(await req(API + "STREAM.CREATE.S", {"name": "S", "subjects": ["s.>"]}))
            for i in range(5):
                await req("s.x", b"m%d" % i)
            for name, extra in (("eph", {}), ("mem", {"mem_storage": True})):
                config = {"name": name, "ack_policy": "explicit", "inactive_threshold": 30_000_000_000, **extra}
                out.append(await req(API + f"CONSUMER.CREATE.S.{name}", {"stream_name": "S", "config": config}))
            inbox = await nc.subscribe("ib")
            await nc.publish(API + "CONSUMER.MSG.NEXT.S.eph", b'{"batch":2}', reply="ib")
            first = await inbox.next_msg(2)
            await inbox.next_msg(2)
            await nc.request(first.reply, b"+ACK", timeout=2)
        else:
            out.append(await req(API + "CONSUMER.NAMES.S", b""))
            out.append(await req(API + "CONSUMER.INFO.S.eph", b""))
            out.append(await req(API + "CONSUMER.INFO.S.mem", b""))
    finally:
        await nc.close()
    return out


def test_ephemeral_consumers_survive_a_restart_diff(tmp_path):
    """An ephemeral consumer of a file stream comes back after a restart with its state (until its
    inactive threshold passes); one with `mem_storage` does not, as nats-server."""
    results = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        with ServerProcess(kind, ["-js", "-sd", str(directory)]) as server:
            out = asyncio.run(_ephemeral_phase(server.url, 1))
            server.restart()
            out += asyncio.run(_ephemeral_phase(server.url, 2))
            results.append(out)
    assert results[0] == results[1]
    assert '"consumers":["eph"]' in results[0][3]


async def _priority_script(url: str) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []
    try:

        async def req(subject: str, body) -> str:
            reply = await nc.request(subject, _data(body), timeout=2)
            return normalize(reply.data.decode())

        async def pull(consumer: str, body, inbox: str) -> None:
            await nc.publish(API + f"CONSUMER.MSG.NEXT.P.{consumer}", _data(body), reply=inbox)

        async def collect(sub, count: int) -> None:
            for _ in range(count):
                msg = await sub.next_msg(3)
                out.append(normalize(f"{msg.subject} {_show(msg)}"))

        out.append(await req(API + "STREAM.CREATE.P", {"name": "P", "subjects": ["p.>"]}))
        for name, policy in (("o", "overflow"), ("r", "prioritized"), ("n", "none")):
            config = {"durable_name": name, "ack_policy": "explicit"}
            if policy != "none":
                config.update(priority_policy=policy, priority_groups=["A"])
            out.append(await req(API + f"CONSUMER.CREATE.P.{name}", {"stream_name": "P", "config": config}))
        inbox = await nc.subscribe("ib.>")
        # the request checks, answered at once
        for consumer, body in (
            ("o", {"batch": 1}),
            ("o", {"batch": 1, "group": "B"}),
            ("n", {"batch": 1, "min_pending": 2}),
            ("n", {"batch": 1, "id": "x"}),
            ("r", {"batch": 1, "group": "A", "priority": 10}),
            ("o", {"batch": 1, "group": "A", "id": "x"}),
        ):
            await pull(consumer, body, "ib.err")
            await collect(inbox, 1)
        for i in range(5):
            await req("p.x", b"m%d" % i)
        # overflow: 5 pending does not reach min_pending 10 (the request times out), reaches 3
        await pull("o", {"batch": 1, "group": "A", "min_pending": 10, "expires": 300_000_000}, "ib.o1")
        await collect(inbox, 1)
        await pull("o", {"batch": 2, "group": "A", "min_pending": 3}, "ib.o2")
        await collect(inbox, 2)
        # prioritized: the priority 1 request is served before the priority 5 one that came first
        await inbox.unsubscribe()
        config = {"durable_name": "rn", "ack_policy": "explicit", "deliver_policy": "new"}
        config.update(priority_policy="prioritized", priority_groups=["A"])
        out.append(await req(API + "CONSUMER.CREATE.P.rn", {"stream_name": "P", "config": config}))
        low, high = await nc.subscribe("ib.r5"), await nc.subscribe("ib.r1")
        await pull("rn", {"batch": 1, "group": "A", "priority": 5, "expires": 5_000_000_000}, "ib.r5")
        await pull("rn", {"batch": 1, "group": "A", "priority": 1, "expires": 5_000_000_000}, "ib.r1")

        async def both_waiting() -> bool:
            info = json.loads((await nc.request(API + "CONSUMER.INFO.P.rn", b"", timeout=2)).data)
            return info["num_waiting"] == 2

        await acheck_for(5, both_waiting, interval=0.05)
        for i, sub in ((5, high), (6, low)):
            await req("p.x", b"m%d" % i)
            msg = await sub.next_msg(3)
            out.append(normalize(f"{sub.subject} {_show(msg)}"))
    finally:
        await nc.close()
    return out


def test_priority_group_requests_diff(tmp_path):
    """Pull requests on priority-group consumers (ADR-42): nats-server's 400 answers to misplaced
    fields, an `overflow` request served only past its `min_pending`, and `prioritized` requests
    served by priority."""
    assert_same_lines(*run_on_both(tmp_path, lambda server: _priority_script(server.url)))


async def _pinned_script(url: str) -> list[str]:
    nc = await nats.connect(url)
    out: list[str] = []
    pins: dict[str, str] = {}

    def mask(text: str) -> str:
        # pin ids are random: named in order of appearance; a pin's time is masked
        for pin in re.findall(r"(?:Nats-Pin-Id', '|\"pinned_id\": \"|\"pinned_client_id\":\")([A-Za-z0-9]{22})", text):
            pins.setdefault(pin, f"PIN{len(pins) + 1}")
        for pin, name in pins.items():
            text = text.replace(pin, name)
        text = re.sub(r'"pinned_ts":"(?!0001-)[^"]*"', '"pinned_ts":"T"', text)
        return normalize(text)

    try:
        advisories = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.>")

        async def req(subject: str, body) -> str:
            reply = await nc.request(subject, _data(body), timeout=2)
            return mask(reply.data.decode())

        inbox = await nc.subscribe("ib.pull")

        async def pull(body) -> str:
            # (a plain inbox, as a pull subscription has: nats-server 2.15.1 does not serve a
            # pinned-client pull sent with nats-py's request(), whose reply is a muxed inbox)
            await nc.publish(API + "CONSUMER.MSG.NEXT.P.pc", _data(body), reply="ib.pull")
            reply = await inbox.next_msg(3)
            # (the ack reply's last token, the pending count, is masked: nats-server 2.15.1 once
            # said 2 for the first of 4 stored messages under load)
            return re.sub(r"(\$JS\.ACK\.\S*\.TS)\.\d+", r"\1.N", mask(f"pull {_show(reply)}"))

        async def advisory() -> str:
            while True:  # the PINNED / UNPINNED ones
                msg = await advisories.next_msg(5)
                if "PINNED" in msg.subject:
                    break
            event = json.loads(msg.data)
            return mask(
                msg.subject + " " + json.dumps({k: v for k, v in event.items() if k not in ("id", "timestamp")})
            )

        out.append(await req(API + "STREAM.CREATE.P", {"name": "P", "subjects": ["p.>"]}))
        config = {
            "durable_name": "pc",
            "ack_policy": "explicit",
            "priority_policy": "pinned_client",
            "priority_groups": ["A"],
            "priority_timeout": 1_000_000_000,
        }
        out.append(await req(API + "CONSUMER.CREATE.P.pc", {"stream_name": "P", "config": config}))
        for i in range(4):
            await req("p.x", b"m%d" % i)
        out.append(await pull({"batch": 1, "group": "A"}))  # pinned: the message carries Nats-Pin-Id
        out.append(await advisory())
        pin = next(iter(pins))
        out.append(await pull({"batch": 1, "group": "A", "expires": 300_000_000}))  # not pinned: waits, 408
        out.append(await pull({"batch": 1, "group": "A", "id": "bogus"}))  # 423
        out.append(await pull({"batch": 1, "group": "A", "id": pin}))
        out.append(await req(API + "CONSUMER.INFO.P.pc", b""))
        for body in (b"", {"group": ""}, {"group": "bad name!"}, {"group": "B"}, {"group": 5}):
            out.append(await req(API + "CONSUMER.UNPIN.P.pc", body))
        out.append(await req(API + "CONSUMER.UNPIN.P.nope", {"group": "A"}))
        out.append(await req(API + "CONSUMER.UNPIN.P.pc", {"group": "A"}))
        out.append(await advisory())  # unpinned by admin
        out.append(await pull({"batch": 1, "group": "A"}))  # a new pin
        out.append(await advisory())
        out.append(await advisory())  # unpinned after priority_timeout without a pull
    finally:
        await nc.close()
    return out


def test_pinned_client_diff(tmp_path):
    """`pinned_client` priority groups (ADR-42): the first client is pinned (`Nats-Pin-Id` on its
    messages, a PINNED advisory), others wait or get 423, CONSUMER.UNPIN and the pinned TTL let go
    (UNPINNED advisories), consumer info shows the pin, and UNPIN's errors."""
    assert_same_lines(*run_on_both(tmp_path, lambda server: _pinned_script(server.url)))


def test_pedantic_consumer_create_diff(tmp_path):
    """`"pedantic": true` on CONSUMER.CREATE: every value nats-server would default or clamp is
    refused with 10157 and its text instead (the stream's consumer_limits included)."""
    limited = (
        "req",
        API + "STREAM.CREATE.L",
        {
            "name": "L",
            "subjects": ["l.>"],
            "consumer_limits": {"max_ack_pending": 50, "inactive_threshold": 60_000_000_000},
        },
    )
    script: list[tuple] = [STREAM, limited]
    for extra in (
        {"max_deliver": -2},
        {"max_waiting": -1},
        {"max_ack_pending": -2},
        {"max_batch": -1},
        {"max_expires": -1},
        {"max_bytes": -1},
        {"idle_heartbeat": -1},
        {"inactive_threshold": -1},
        {"ack_wait": 5_000_000_000, "backoff": [1_000_000_000, 2_000_000_000]},
        {"ack_wait": 1_000_000_000, "backoff": [1_000_000_000, 2_000_000_000]},
        {},
    ):
        config = {"durable_name": "p", "ack_policy": "explicit", **extra}
        script.append(create("p", config, pedantic=True))
        script.append(("req", API + "CONSUMER.DELETE.C.p", b""))
    for extra in ({}, {"max_ack_pending": 10}, {"max_ack_pending": 10, "inactive_threshold": 1_000_000_000}):
        config = {"durable_name": "q", "ack_policy": "explicit", **extra}
        script.append(create("q", config, stream="L", pedantic=True))
    script.append(create("r", {"durable_name": "r", "ack_policy": "explicit"}, stream="L"))
    assert_same(tmp_path, script)


def test_flow_control_ack_policy_config_diff(tmp_path):
    """ADR-60's `flow_control` ack policy (2.14): a push consumer with flow control, a 1 s heartbeat,
    max ack pending, no ack wait or backoff, no delivery limit; nats-server's defaults and each of
    its errors (10218-10222), pedantic included, and a work-queue stream accepting it."""
    fc = {"ack_policy": "flow_control"}
    script: list[tuple] = [
        STREAM,
        ("req", API + "STREAM.CREATE.W", {"name": "W", "subjects": ["w.>"], "retention": "workqueue"}),
        create("a", {"name": "a", **fc}),
        create("b", {"name": "b", "deliver_subject": "d.b", **fc}),
        create("c", {"name": "c", "deliver_subject": "d.c", "idle_heartbeat": 5_000_000_000, **fc}),
        create("e", {"name": "e", "deliver_subject": "d.e", "ack_wait": 5_000_000_000, **fc}),
        create("f", {"name": "f", "deliver_subject": "d.f", "backoff": [1_000_000_000], **fc}),
        create("g", {"name": "g", "deliver_subject": "d.g", "max_deliver": 3, **fc}),
        create("h", {"name": "h", "deliver_subject": "d.h", "max_ack_pending": -1, **fc}),
        create("i", {"name": "i", "deliver_subject": "d.i", "max_ack_pending": 7, **fc}),
        create("j", {"name": "j", "deliver_subject": "d.j", **fc}, pedantic=True),
        create(
            "k",
            {"name": "k", "deliver_subject": "d.k", "flow_control": True, "max_ack_pending": 5, **fc},
            pedantic=True,
        ),
        create(
            "l",
            {
                "name": "l",
                "deliver_subject": "d.l",
                "flow_control": True,
                "idle_heartbeat": 1_000_000_000,
                "max_ack_pending": 5,
                "max_deliver": -1,
                **fc,
            },
            pedantic=True,
        ),
        create("w", {"durable_name": "w", "deliver_subject": "d.w", **fc}, stream="W"),
        create("x", {"durable_name": "x", "deliver_subject": "d.x", "ack_policy": "all"}, stream="W"),
        ("req", API + "CONSUMER.INFO.C.b", b""),
    ]
    assert_same(tmp_path, script)


async def _flow_control_acks_script(url: str) -> list[str]:
    """A flow_control consumer delivers up to max_ack_pending, asks for flow control, and the reply's
    `Nats-Last-Stream`/`Nats-Last-Consumer` acknowledge (a work-queue stream drops what they
    cover); an idle consumer asks again with its heartbeat; a plain ack goes nowhere."""
    nc = await nats.connect(url)
    out: list[str] = []
    try:

        async def req(subject: str, body) -> dict:
            reply = await nc.request(subject, _data(body), timeout=2)
            return json.loads(reply.data)

        await req(API + "STREAM.CREATE.W", {"name": "W", "subjects": ["w.>"], "retention": "workqueue"})
        for i in range(3):
            await req("w.x", b"m%d" % i)
        inbox = await nc.subscribe("d.fc")
        created = await req(
            API + "CONSUMER.CREATE.W.fc",
            {
                "stream_name": "W",
                "config": {
                    "durable_name": "fc",
                    "deliver_subject": "d.fc",
                    "ack_policy": "flow_control",
                    "max_ack_pending": 2,
                },
            },
        )
        out.append(json.dumps(created["config"], sort_keys=True))

        async def until_flow_control() -> list:
            seen = []
            while True:
                msg = await inbox.next_msg(5)
                status = (msg.headers or {}).get("Status")
                seen.append(msg)
                if msg.data:
                    out.append(f"msg {msg.subject} {msg.data!r} {normalize(msg.reply)}")
                else:
                    out.append(f"status {status} {(msg.headers or {}).get('Description')} reply={bool(msg.reply)}")
                if status == "100" and msg.reply:
                    return seen

        def state(info: dict) -> str:
            return f"delivered={info['delivered']['stream_seq']} floor={info['ack_floor']['stream_seq']} pending={info['num_ack_pending']}"

        seen = await until_flow_control()
        # a plain ack of a flow_control consumer has no subscriber: nats-server ignores it
        try:
            await nc.request(seen[0].reply, b"+ACK", timeout=0.5)
            out.append("ack answered")
        except (NatsTimeout, NoRespondersError) as exc:
            out.append(f"ack {type(exc).__name__}")
        out.append(state(await req(API + "CONSUMER.INFO.W.fc", b"")))
        # the sourcing side's reply: everything up to stream seq 1 / delivery 1 is stored
        await nc.publish(seen[-1].reply, b"", headers={"Nats-Last-Consumer": "1", "Nats-Last-Stream": "1"})

        async def floor(want: int) -> dict | None:
            # the floor moved, and the freed window let the third message out
            info = await req(API + "CONSUMER.INFO.W.fc", b"")
            done = info["ack_floor"]["stream_seq"] == want and info["delivered"]["stream_seq"] == 3
            return info if done else None

        out.append(state(await acheck_for(10, lambda: floor(1), interval=0.05)))
        seen = await until_flow_control()  # the third message, then (idle) a heartbeat and flow control
        await nc.publish(seen[-1].reply, b"", headers={"Nats-Last-Consumer": "3", "Nats-Last-Stream": "3"})
        out.append(state(await acheck_for(10, lambda: floor(3), interval=0.05)))
        # one more: the window is not full, so flow control waits for the idle heartbeat
        await req("w.x", b"m3")
        seen = await until_flow_control()
        await nc.publish(seen[-1].reply, b"", headers={"Nats-Last-Consumer": "4", "Nats-Last-Stream": "4"})

        async def all_acked() -> dict | None:
            info = await req(API + "CONSUMER.INFO.W.fc", b"")
            return info if info["ack_floor"]["stream_seq"] == 4 else None

        out.append(state(await acheck_for(10, all_acked, interval=0.05)))
        stream = await req(API + "STREAM.INFO.W", b"")
        out.append(f"stream messages={stream['state']['messages']} first={stream['state']['first_seq']}")
    finally:
        await nc.close()
    return out


def test_flow_control_acks_diff(tmp_path):
    results = run_on_both(tmp_path, lambda server: _flow_control_acks_script(server.url))
    assert_same_lines(*results)
    assert len(results[0]) == len(results[1])
    assert "status 100 Idle Heartbeat reply=False" in results[1]
