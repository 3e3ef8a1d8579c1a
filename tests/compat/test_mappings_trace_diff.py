"""Core subject mappings (`mappings {}`, top level and per account) and message tracing
(`Nats-Trace-Dest`, `Nats-Trace-Only`, 2.11) against jsedge and nats-server 2.15.1: the same
deliveries after mapping, the same trace events (ingress, subject mapping, egress, JetStream), the
same answers to bad mappings in a config file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import nats
import pytest

from tests.helpers import REPO_ROOT, ServerProcess, assert_same_lines, run_on_both_with_config, server_command

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

CONFIG = """
server_name: tracer
jetstream { store_dir: "%s" }
mappings {
  "old.>": "new.>"
  "swap.*.*": "swapped.$2.{{wildcard(1)}}"
  "part.*": "parts.{{partition(3,1)}}.{{wildcard(1)}}"
  "all.in": [ { destination: "all.out", weight: 100%% } ]
  "js.in.*": "js.$1"
}
"""

ACCOUNTS_CONFIG = """
mappings { "a.in": "top.level" }
accounts {
  A { users: [ { user: a, password: a } ], mappings { "a.in": "a.out" } }
  B { users: [ { user: b, password: b } ] }
}
"""


async def _script(server) -> list[str]:
    nc = await nats.connect(server.url, name="pub")
    sub_nc = await nats.connect(server.url, name="subber")
    out: list[str] = []
    got: list[str] = []
    events: list[dict] = []

    async def on_msg(msg) -> None:
        got.append(f"{msg.subject} {msg.data.decode()}")

    async def on_trace(msg) -> None:
        events.append(json.loads(msg.data))

    try:
        await nc.subscribe("trace.out", cb=on_trace)
        for subject in ("new.>", "swapped.>", "parts.>", "all.out", "old.>", "all.in"):
            await sub_nc.subscribe(subject, cb=on_msg)
        await sub_nc.subscribe("new.x", queue="q", cb=on_msg)
        await sub_nc.flush()
        created = await nc.request(
            "$JS.API.STREAM.CREATE.S", json.dumps({"name": "S", "subjects": ["js.>"]}).encode(), timeout=3
        )
        out.append(f"create {json.loads(created.data).get('error')}")
        for subject in ("old.x", "swap.a.b", "part.alpha", "part.beta", "part.gamma", "all.in", "other"):
            await nc.publish(subject, subject.encode())
        await nc.publish("js.in.a", b"into the stream")
        traced = [
            ("old.x", {"Nats-Trace-Dest": "trace.out"}),
            ("new.x", {"Nats-Trace-Dest": "trace.out", "Nats-Trace-Only": "true"}),
            ("js.a", {"Nats-Trace-Dest": "trace.out"}),
            ("js.in.b", {"Nats-Trace-Dest": "trace.out", "Nats-Trace-Only": "1", "X-Extra": "kept"}),
            ("nobody", {"Nats-Trace-Dest": "trace.out"}),
            ("new.y", {"Nats-Trace-Dest": "bad.*"}),
            ("new.z", {"Nats-Trace-Only": "true"}),
            ("new.w", {"Nats-Trace-Dest": "trace disabled"}),
        ]
        for subject, headers in traced:
            await nc.publish(subject, b"traced", headers=headers)
        await nc.flush()
        await asyncio.sleep(0.5)
        out.extend(sorted(got))
        traces = []
        for event in events:
            kinds = []
            for item in event["events"]:
                item = {k: v for k, v in item.items() if k not in ("ts", "cid")}
                kinds.append(json.dumps(item, sort_keys=True))
            traces.append(f"trace {json.dumps(event['request'], sort_keys=True)} {' '.join(kinds)}")
        out.extend(sorted(traces))  # a JetStream trace leaves after the stream took the message
        info = await nc.request("$JS.API.STREAM.INFO.S", b"", timeout=3)
        out.append(f"stream messages {json.loads(info.data)['state']['messages']}")
    finally:
        await nc.close()
        await sub_nc.close()
    return out


async def _accounts_script(server) -> list[str]:
    out = []
    for user in ("a", "b"):
        nc = await nats.connect(server.url, user=user, password=user)
        got: list[str] = []

        async def on_msg(msg, got=got) -> None:
            got.append(msg.subject)

        await nc.subscribe(">", cb=on_msg)
        await nc.publish("a.in", b"x")
        await nc.flush()
        await asyncio.sleep(0.2)
        out.append(f"{user}: {got}")
        await nc.close()
    return out


def test_account_mappings_as_nats_server(tmp_path):
    expected, actual = run_on_both_with_config(tmp_path, ACCOUNTS_CONFIG, _accounts_script)
    assert expected == actual == ["a: ['a.out']", "b: ['a.in']"]


def test_mappings_and_traces_as_nats_server(tmp_path):
    assert_same_lines(*run_on_both_with_config(tmp_path, CONFIG, _script))


BAD_MAPPINGS = [
    'mappings { "a.*": "b.$2" }',
    'mappings { "a.>": [ {destination: "x.>", weight: 60%}, {destination: "y.>", weight: 50%} ] }',
]


@pytest.mark.parametrize("text", BAD_MAPPINGS)
def test_bad_mappings_are_config_errors_as_in_nats_server(tmp_path, text):
    (tmp_path / "bad.conf").write_text(text + "\n")
    answers = []
    for kind in ("nats", "jsedge"):
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        done = subprocess.run(
            [*server_command(kind), "-t", "-c", "bad.conf"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
        )
        text_out = (done.stdout + done.stderr).strip().splitlines()[-1]
        answers.append((done.returncode, text_out.split(": ", 1)[1]))
    assert answers[0] == answers[1]


def test_a_reload_changes_the_mappings_as_in_nats_server(tmp_path):
    """SIGHUP with a changed `mappings {}`: the next publish goes to the new destination."""
    import signal

    async def delivered_on(url: str, subject: str) -> list[str]:
        nc = await nats.connect(url)
        got: list[str] = []

        async def on_msg(msg) -> None:
            got.append(msg.subject)

        await nc.subscribe(">", cb=on_msg)
        await nc.flush()
        await nc.publish(subject, b"x")
        await nc.flush()
        await asyncio.sleep(0.2)
        await nc.close()
        return got

    answers = []
    for kind in ("nats", "jsedge"):
        with ServerProcess(kind, config='mappings { "a": "b" }\n') as server:
            before = asyncio.run(delivered_on(server.url, "a"))
            assert server.config_path is not None
            server.config_path.write_text('mappings { "a": "c" }\n')
            mark = server.log_mark()
            server.signal(signal.SIGHUP)
            server.wait_for_log("Reloaded server configuration", 10, since=mark)
            answers.append((before, asyncio.run(delivered_on(server.url, "a"))))
    assert answers[0] == answers[1] == (["b"], ["c"])
