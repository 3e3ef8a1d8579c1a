"""Account exports and imports in config mode against nats-server 2.15.1: stream imports (prefix,
`to` with wildcards, JetStream push deliveries through an imported deliver subject), service
imports (`to`, wildcard mapping, the `_R_` reply and `Nats-Request-Info`, singleton and stream
responses, no responders) and cross-account JetStream (B uses A's `$JS.API` through an import with
its own prefix, pulls and acks A's consumer, A sees the acks), and that nothing crosses an account
boundary without an export and an import (a third account sees none of it)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import acheck_for, assert_same_lines, http_json, run_on_both_with_config

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]

CONFIG = """
jetstream { store_dir: "%s" }
accounts {
  A { jetstream: enabled, users: [{user: a, password: a}]
      exports: [
        {stream: "ev.>"}
        {stream: "wc.*.x"}
        {service: "svc.>"}
        {service: "many", response_type: stream}
        {service: "priv.>", accounts: [B]}
        {service: "$JS.API.>", response_type: stream}
        {service: "$JS.ACK.>"}
        {stream: "deliver.b.>"}
      ] }
  B { users: [{user: b, password: b}]
      imports: [
        {stream: {account: A, subject: "ev.>"}, prefix: "a"}
        {stream: {account: A, subject: "wc.*.x"}, to: "mapped.*.y"}
        {service: {account: A, subject: "svc.>"}, to: "a.svc.>"}
        {service: {account: A, subject: "many"}}
        {service: {account: A, subject: "priv.x"}}
        {service: {account: A, subject: "$JS.API.>"}, to: "JSA.API.>"}
        {service: {account: A, subject: "$JS.ACK.>"}}
        {stream: {account: A, subject: "deliver.b.>"}}
      ] }
  C { users: [{user: c, password: c}] }
}
"""

_MASKS = [
    (re.compile(r"_R_\.[0-9A-Za-z]{6}\.[0-9A-Za-z]+"), "_R_.P.R"),
    (re.compile(r"_INBOX\.[0-9A-Za-z.]+"), "_INBOX.X"),
    (re.compile(r'"rtt":\d+'), '"rtt":N'),
    (re.compile(r'"(created|ts|first_ts|last_ts|last_active|time)":"[^"]*"'), r'"\1":"T"'),
]


def _same_on_both(tmp_path: Path, config: str, script: Any, http: bool = False) -> None:
    """`script(server)` against nats-server and jsedge with `config` (`%s`: a store directory):
    the same lines."""
    expected, actual = run_on_both_with_config(tmp_path, config, script, http=http)
    assert_same_lines(expected, actual)
    assert len(expected) == len(actual)


def _mask(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def _line(msg: Any) -> str:
    headers = sorted((msg.headers or {}).items())
    return _mask(f"{msg.subject} reply={msg.reply or '-'} {msg.data.decode()} {headers}")


async def _collect(sub: Any, count: int, timeout: float = 10.0) -> list[str]:
    """The next `count` messages (waiting up to `timeout` for each), then whatever else comes
    within a moment: what a subscriber got, without racing slow deliveries."""
    out = []
    for _ in range(count):
        try:
            out.append(_line(await sub.next_msg(timeout)))
        except NatsTimeout:
            break
    return out + await _drain(sub, 0.2)


async def _drain(sub: Any, wait: float = 0.3) -> list[str]:
    out = []
    while True:
        try:
            out.append(_line(await sub.next_msg(wait)))
        except NatsTimeout:
            return out


async def _script(server: Any) -> list[str]:
    host = server.url.split("//", 1)[1]
    a = await nats.connect(f"nats://a:a@{host}")
    b = await nats.connect(f"nats://b:b@{host}")
    c = await nats.connect(f"nats://c:c@{host}")
    out: list[str] = []
    try:
        # -- stream imports
        a_side = await a.subscribe("ev.>")
        b_orders = await b.subscribe("orders.>")
        imported = await b.subscribe("a.ev.>")
        mapped = await b.subscribe("mapped.>")
        unprefixed = await b.subscribe("ev.>")
        other = await c.subscribe(">")
        await b.flush()
        await c.flush()
        await a.publish("ev.one", b"1", headers={"X": "y"})
        await a.publish("wc.k.x", b"2")
        await a.publish("wc.k.z", b"3")
        await a.flush()
        out += ["imported"] + await _collect(imported, 1)
        out += ["mapped"] + await _collect(mapped, 1)
        out += ["unprefixed"] + await _drain(unprefixed, 0.1)

        # -- service imports
        async def echo(msg: Any) -> None:
            info = (msg.headers or {}).get("Nats-Request-Info", "")
            await a.publish(msg.reply, _mask(f"{msg.subject} {msg.reply} {info}").encode())
            if msg.subject == "svc.twice":
                await a.publish(msg.reply, b"second")

        await a.subscribe("svc.>", cb=echo)

        async def many(msg: Any) -> None:
            for n in range(3):
                await a.publish(msg.reply, f"part {n}".encode())

        await a.subscribe("many", cb=many)
        await a.flush()
        # nats-server answered this first request with no responders under load (A's SUB
        # flushed before): it is repeated until a deadline
        reply = None
        for _attempt in range(50):
            try:
                reply = await b.request("a.svc.q", b"hi", timeout=2)
                break
            except NoRespondersError:
                await asyncio.sleep(0.1)
        assert reply is not None
        out.append(f"a.svc.q -> {reply.data.decode()}")
        inbox = b.new_inbox()
        collector = await b.subscribe(inbox)
        await b.publish("a.svc.twice", b"", reply=inbox)
        await b.publish("many", b"", reply=inbox)
        await b.flush()
        out += ["collected"] + sorted(await _collect(collector, 4))  # svc.twice's one, many's three
        for conn, subject in ((b, "svc.q"), (b, "priv.x"), (c, "a.svc.q")):
            try:
                got = await conn.request(subject, b"", timeout=1)
                out.append(f"{subject} -> {got.data.decode()}")
            except NoRespondersError:
                out.append(f"{subject} -> no responders")
            except NatsTimeout:
                out.append(f"{subject} -> timeout")

        # -- cross-account JetStream: B works on A's stream through JSA.API
        js_a = a.jetstream()
        await js_a.add_stream(name="ORDERS", subjects=["orders.>"])
        for n in range(3):
            await js_a.publish(f"orders.{n}", f"o{n}".encode())
        info = await b.request("JSA.API.STREAM.INFO.ORDERS", b"", timeout=2)
        state = json.loads(info.data)["state"]
        out.append(f"stream info via import: {state['messages']} messages, last {state['last_seq']}")
        own = await b.request("$JS.API.INFO", b"", timeout=2)
        out.append(f"B's own API: {json.loads(own.data).get('error')}")
        js_b = b.jetstream(prefix="JSA.API")
        await js_b.add_consumer("ORDERS", durable_name="PULL", ack_policy="explicit")
        pull = await js_b.pull_subscribe_bind("PULL", stream="ORDERS")
        msgs = await pull.fetch(3, timeout=3)
        for msg in msgs:
            out.append(f"pulled {msg.subject} {msg.data.decode()} reply={msg.reply.split('.')[:4]}")
            await msg.ack()
        await b.flush()

        async def acked(name: str) -> bool:
            consumer = await js_a.consumer_info("ORDERS", name)
            return consumer.num_ack_pending == 0 and consumer.ack_floor.stream_seq == 3

        await acheck_for(5, lambda: acked("PULL"), interval=0.1)
        out.append("pull consumer acknowledged in A")
        pushed = await b.subscribe("deliver.b.push")
        await b.flush()
        await js_b.add_consumer("ORDERS", durable_name="PUSH", deliver_subject="deliver.b.push", ack_policy="explicit")
        for _ in range(3):
            msg = await pushed.next_msg(3)
            out.append(f"pushed {msg.subject} {msg.data.decode()}")
            await msg.ack()
        await b.flush()
        await acheck_for(5, lambda: acked("PUSH"), interval=0.1)
        out.append("push consumer acknowledged in A")
        # nothing flows back: B's publishes on the imported subjects stay in B
        await b.publish("ev.back", b"")
        await b.publish("a.ev.back", b"")
        await b.flush()
        out += ["A's ev.> saw"] + await _drain(a_side, 0.2)
        out += ["B's orders.> saw"] + await _drain(b_orders, 0.1)
        out += ["C saw"] + await _drain(other, 0.2)
        for account in ("A", "B", "C"):
            detail = http_json(server, f"/accountz?acc={account}")["account_detail"]
            out.append(f"{account} jetstream_enabled={detail['jetstream_enabled']}")
            for key in ("exports", "imports"):
                out += [f"{account} {key}"] + sorted(json.dumps(item) for item in detail.get(key) or [])
    finally:
        for conn in (a, b, c):
            await conn.close()
    return out


def test_exports_and_imports_as_nats_server(tmp_path: Path) -> None:
    _same_on_both(tmp_path, CONFIG, _script, http=True)


def test_imports_follow_a_reload() -> None:
    """An import added by a reload works at once; one removed stops at once (both servers)."""
    import signal

    from tests.helpers import ServerProcess

    before = (
        'accounts {\n A { users: [{user: a, password: a}], exports: [ {stream: "ev.>"} ] }\n'
        " B { users: [{user: b, password: b}] }\n}\n"
    )
    after = before.replace("B { users", 'B { imports: [ {stream: {account: A, subject: "ev.>"}} ], users')

    async def received(url: str) -> int:
        host = url.split("//", 1)[1]
        a = await nats.connect(f"nats://a:a@{host}")
        b = await nats.connect(f"nats://b:b@{host}")
        try:
            sub = await b.subscribe("ev.>")
            await b.flush()
            await a.publish("ev.x", b"")
            await a.flush()
            return len(await _drain(sub, 0.3))
        finally:
            await a.close()
            await b.close()

    answers = []
    for kind in ("nats", "jsedge"):
        with ServerProcess(kind, config=before) as server:
            counts = [asyncio.run(received(server.url))]
            assert server.config_path is not None
            for text in (after, before):
                server.config_path.write_text(text)
                mark = server.log_mark()
                server.signal(signal.SIGHUP)
                server.wait_for_log("Reloaded server configuration", 10, since=mark)
                counts.append(asyncio.run(received(server.url)))
            answers.append(counts)
    assert answers[0] == answers[1] == [0, 1, 0]


CLUSTER_CONFIG = """
accounts {
  A { users: [{user: a, password: a}]
      exports: [ {stream: "ev.>"}, {service: "svc.>"}, {service: "many", response_type: stream} ] }
  B { users: [{user: b, password: b}]
      imports: [
        {stream: {account: A, subject: "ev.>"}, prefix: "a"}
        {service: {account: A, subject: "svc.>"}, to: "a.svc.>"}
        {service: {account: A, subject: "many"}}
      ] }
}
"""


async def _cluster_script(cluster: Any) -> list[str]:
    """A's publisher and responders on n2, B's clients on n1 and n3: every imported message
    reaches each subscriber once, every request its answers, wherever the two sides connect."""
    hosts = [cluster[i].url.split("//", 1)[1] for i in range(3)]
    a2 = await nats.connect(f"nats://a:a@{hosts[1]}")
    b1 = await nats.connect(f"nats://b:b@{hosts[0]}")
    b3 = await nats.connect(f"nats://b:b@{hosts[2]}")
    out: list[str] = []
    try:

        async def echo(msg: Any) -> None:
            await a2.publish(msg.reply, _mask(f"{msg.subject} {msg.reply}").encode())

        async def many(msg: Any) -> None:
            for n in range(3):
                await a2.publish(msg.reply, f"part {n}".encode())

        await a2.subscribe("svc.>", cb=echo)
        await a2.subscribe("many", cb=many)
        await a2.flush()
        subs = [await b1.subscribe("a.ev.>"), await b3.subscribe("a.ev.>")]
        await b1.flush()
        await b3.flush()

        async def ready() -> bool:  # interest crossed the routes both ways
            for conn in (b1, b3):
                try:
                    await conn.request("a.svc.ping", b"", timeout=0.5)
                except (NoRespondersError, NatsTimeout):
                    return False
            await a2.publish("ev.warm", b"")
            await a2.flush()
            return all([len(await _drain(sub, 0.2)) > 0 for sub in subs])

        await acheck_for(20, ready, interval=0.2)
        for sub in subs:
            await _drain(sub, 0.2)
        for n in range(3):
            await a2.publish(f"ev.{n}", f"{n}".encode())
        await a2.flush()
        for name, sub in zip(("n1", "n3"), subs):
            out += [f"{name} got"] + await _collect(sub, 3)
        for name, conn in (("n1", b1), ("n3", b3)):
            reply = await conn.request("a.svc.q", b"", timeout=2)
            out.append(f"{name} a.svc.q -> {reply.data.decode()}")
            inbox = conn.new_inbox()
            collector = await conn.subscribe(inbox)
            await conn.publish("many", b"", reply=inbox)
            await conn.flush()
            out += [f"{name} many"] + sorted(await _collect(collector, 3))
    finally:
        for conn in (a2, b1, b3):
            await conn.close()
    return out


@pytest.mark.parametrize("mixed", [False, True], ids=["jsedge", "mixed"])
def test_imports_across_a_cluster_as_nats_server(mixed: bool) -> None:
    """A three-node jsedge cluster, and one whose n2 (the exporter's publisher and responders) is a
    nats-server, against three nats-servers."""
    from tests.helpers import Cluster

    results = []
    for kind in ("nats", "jsedge"):
        kinds = ["jsedge", "nats", "jsedge"] if kind == "jsedge" and mixed else [kind] * 3
        with Cluster(kinds, config=CLUSTER_CONFIG) as cluster:
            cluster.wait_mesh()
            results.append(asyncio.run(_cluster_script(cluster)))
    assert_same_lines(results[0], results[1])
    assert len(results[0]) == len(results[1])


SOURCING_CONFIG = """
jetstream { store_dir: "%s" }
accounts {
  A { jetstream: enabled, users: [{user: a, password: a}]
      exports: [ {service: "$JS.API.>"}, {service: "$JS.FC.>"}, {stream: "deliver.b.>"} ] }
  B { jetstream: enabled, users: [{user: b, password: b}]
      imports: [ {service: {account: A, subject: "$JS.API.>"}, to: "JSA.API.>"}
                 {service: {account: A, subject: "$JS.FC.>"}}
                 {stream: {account: A, subject: "deliver.b.>"}} ] }
}
"""


async def _sourcing_script(server: Any) -> list[str]:
    """B's stream sources, and B's other stream mirrors, A's stream through A's imported API and
    deliver subject (`external: {api, deliver}`), before and after more publishes."""
    host = server.url.split("//", 1)[1]
    a = await nats.connect(f"nats://a:a@{host}")
    b = await nats.connect(f"nats://b:b@{host}")
    out: list[str] = []
    try:
        js_a, js_b = a.jetstream(), b.jetstream()
        await js_a.add_stream(name="ORDERS", subjects=["orders.>"])
        for n in range(5):
            await js_a.publish(f"orders.{n}", f"o{n}".encode())
        external = {"api": "JSA.API", "deliver": "deliver.b"}
        for name, config in (
            ("COPY", {"name": "COPY", "sources": [{"name": "ORDERS", "external": external}]}),
            ("MIRROR", {"name": "MIRROR", "mirror": {"name": "ORDERS", "external": external}}),
        ):
            created = await b.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(config).encode(), timeout=3)
            document = json.loads(created.data)
            out.append(f"create {name}: {document.get('error')}")

        async def holds(name: str, count: int) -> bool:
            return (await js_b.stream_info(name)).state.messages == count

        for count in (5, 8):
            if count == 8:
                for n in range(5, 8):
                    await js_a.publish(f"orders.{n}", f"o{n}".encode())
            for name in ("COPY", "MIRROR"):
                await acheck_for(15, lambda n=name, c=count: holds(n, c), interval=0.1)
                out.append(f"{name} holds {count}")
        for name in ("COPY", "MIRROR"):
            msg = await js_b.get_msg(name, 8)
            source = (msg.headers or {}).get("Nats-Stream-Source", "")
            out.append(f"{name} 8: {msg.subject} {msg.data.decode()} {re.sub(r' [0-9A-Za-z]{8}$', ' ID', source)}")
            info = json.loads((await b.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=2)).data)
            for origin in info.get("sources") or [info.get("mirror")]:
                out.append(f"{name} origin: {origin['name']} {origin.get('external')} lag={origin['lag']}")
    finally:
        await a.close()
        await b.close()
    return out


def test_sourcing_from_another_account_as_nats_server(tmp_path: Path) -> None:
    _same_on_both(tmp_path, SOURCING_CONFIG, _sourcing_script)


MATRIX_CONFIG = """
accounts {
  A { users: [{user: a, password: a}]
      exports: [ {stream: "ev.pub.>"}, {service: "svc.pub.>"}, {stream: "ev.priv.>", accounts: [B]},
                 {service: "svc.priv.>", accounts: [B]} ] }
  B { users: [{user: b, password: b}]
      imports: [ {stream: {account: A, subject: "ev.pub.>"}, prefix: "b"}
                 {stream: {account: A, subject: "ev.priv.>"}}
                 {service: {account: A, subject: "svc.pub.>"}}
                 {service: {account: A, subject: "svc.priv.x"}, to: "b.svc.priv.x"} ] }
  C { users: [{user: c, password: c}]
      imports: [ {stream: {account: A, subject: "ev.pub.x"}} ] }
}
"""

#: Subjects every client publishes: exported ones, their local names in the importers, subjects
#: nobody exported, the reply and system prefixes, and the exported ones from the wrong side.
MATRIX_SUBJECTS = [
    "ev.pub.x", "ev.pub.y", "b.ev.pub.x", "ev.priv.x", "svc.pub.x", "svc.priv.x", "svc.priv.y",
    "b.svc.priv.x", "other.x", "_R_.abc.def", "$SYS.REQ.SERVER.PING", "_INBOX.x",
]  # fmt: skip


async def _matrix_script(server: Any) -> list[str]:
    """Who receives what: every account's client subscribes to everything (`>`) and publishes
    every subject once; only exported-and-imported subjects may cross accounts."""
    host = server.url.split("//", 1)[1]
    conns = {name: await nats.connect(f"nats://{name}:{name}@{host}") for name in "abc"}
    got: dict[str, list[str]] = {name: [] for name in conns}
    try:
        for name, conn in conns.items():

            async def on_msg(msg: Any, name: str = name) -> None:
                got[name].append(f"{msg.subject} <- {msg.data.decode()}")

            await conn.subscribe(">", cb=on_msg)
            await conn.flush()

        async def imports_live() -> bool:
            # A server may wire an import's interest a moment after the subscription (seen with
            # nats-server under load): wait until both importers hear A's probes, then forget them.
            await conns["a"].publish("ev.pub.x", b"probe")
            await conns["a"].flush()
            await asyncio.sleep(0.02)
            return all(any(line.endswith("<- probe") for line in got[name]) for name in "bc")

        await acheck_for(10, imports_live, interval=0.05)
        for name, conn in conns.items():
            for subject in MATRIX_SUBJECTS:
                await conn.publish(subject, name.encode())
            await conn.flush()
        for _ in range(2):  # a PING round trip on every connection: what was sent is delivered
            for conn in conns.values():
                await conn.flush()
        await asyncio.sleep(0.2)
    finally:
        for conn in conns.values():
            await conn.close()
    return [
        f"{name.upper()} hears {line}"
        for name in sorted(got)
        for line in sorted(got[name])
        if not line.endswith("<- probe")  # the import probes above, however late they came
    ]


def test_nothing_crosses_an_account_boundary_unless_exported_and_imported(tmp_path: Path) -> None:
    _same_on_both(tmp_path, MATRIX_CONFIG, _matrix_script)


LATENCY_CONFIG = """
accounts {
  A { users: [{user: a, password: a}]
      exports: [ {service: "svc.>", latency: {sampling: 100%, subject: "lat.svc"}},
                 {service: "shared", latency: "lat.shared"} ] }
  B { users: [{user: b, password: b}]
      imports: [ {service: {account: A, subject: "svc.>"}}, {service: {account: A, subject: "shared"}, share: true} ] }
}
"""


def _mask_metric(value: Any) -> Any:
    if isinstance(value, dict):
        masked = {}
        for key, item in value.items():
            if key in ("id", "timestamp", "start", "rtt", "service", "system", "total", "server"):
                masked[key] = type(item).__name__
            else:
                masked[key] = _mask_metric(item)
        return masked
    return value


async def _latency_script(server: Any) -> list[str]:
    """Service latency tracking: the metric nats-server publishes to the export's latency subject
    for each sampled request, the requestor shown in full only when the import shares."""
    host = server.url.split("//", 1)[1]
    a = await nats.connect(f"nats://a:a@{host}", name="responder")
    b = await nats.connect(f"nats://b:b@{host}", name="requester")
    out = []
    try:
        metrics = await a.subscribe("lat.>")

        async def echo(msg: Any) -> None:
            await a.publish(msg.reply, b"ok")

        await a.subscribe("svc.>", cb=echo)
        await a.subscribe("shared", cb=echo)
        await a.flush()
        for subject in ("svc.x", "shared"):
            await b.request(subject, b"q", timeout=2)
            msg = await metrics.next_msg(2)
            out.append(f"{msg.subject} {json.dumps(_mask_metric(json.loads(msg.data)))}")
    finally:
        await a.close()
        await b.close()
    return out


def test_service_latency_metrics_as_nats_server(tmp_path: Path) -> None:
    async def script(server: Any) -> list[str]:
        lines = await _latency_script(server)
        exports = http_json(server, "/accountz?acc=A")["account_detail"]["exports"]
        return lines + sorted(json.dumps(item) for item in exports)

    _same_on_both(tmp_path, LATENCY_CONFIG, script, http=True)


async def _remote_latency_script(cluster: Any) -> list[str]:
    """The requester (B) on n1, the responder (A) on n2: the metric carries the responder's
    details measured on n2 (merged with n1's measurement, as nats-server does)."""
    hosts = [cluster[i].url.split("//", 1)[1] for i in range(2)]
    a2 = await nats.connect(f"nats://a:a@{hosts[1]}", name="responder")
    a1 = await nats.connect(f"nats://a:a@{hosts[0]}", name="watcher")
    b1 = await nats.connect(f"nats://b:b@{hosts[0]}", name="requester")
    out = []
    try:
        metrics = await a1.subscribe("lat.>")

        async def echo(msg: Any) -> None:
            await a2.publish(msg.reply, b"ok")

        await a2.subscribe("svc.>", cb=echo)
        await a2.subscribe("shared", cb=echo)
        await a2.flush()
        await a1.flush()

        async def ready() -> bool:  # the responders' interest reached n1
            try:
                await b1.request("svc.ping", b"", timeout=0.5)
                await b1.request("shared", b"", timeout=0.5)
            except (NoRespondersError, NatsTimeout):
                return False
            return True

        await acheck_for(20, ready, interval=0.2)
        await asyncio.sleep(0.3)
        await _drain(metrics, 0.5)
        for subject in ("svc.x", "shared"):
            await b1.request(subject, b"q", timeout=2)
            msg = await metrics.next_msg(5)
            metric = json.loads(msg.data)
            out.append(f"{msg.subject} {json.dumps(_mask_metric(metric))}")
            responder = metric.get("responder") or {}
            out.append(
                f"responder named {responder.get('name')!r}, service <= total: {metric['service'] <= metric['total']}"
            )
    finally:
        for conn in (a1, a2, b1):
            await conn.close()
    return out


@pytest.mark.parametrize("kinds", [["jsedge", "jsedge"], ["jsedge", "nats"], ["nats", "jsedge"]])
def test_service_latency_across_routes_as_nats_server(kinds: list[str]) -> None:
    from tests.helpers import Cluster

    results = []
    for pair in (["nats", "nats"], kinds):
        with Cluster(pair, config=LATENCY_CONFIG) as cluster:
            cluster.wait_mesh()
            results.append(asyncio.run(_remote_latency_script(cluster)))
    print(results[0])
    assert_same_lines(results[0], results[1])
    assert len(results[0]) == len(results[1])
