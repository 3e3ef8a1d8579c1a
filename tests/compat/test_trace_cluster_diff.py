"""Message tracing across a cluster (2.11) against nats-server 2.15.1: each server traces its own
part. The origin sends each route its copy with a `Nats-Trace-Hop`, shows the same `hop` on that
egress event and counts the hops; the servers at the other end publish their events (ingress from
the route) to the same destination. Trace-only messages cross too and are delivered nowhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
import pytest

# (imported here, not inside the test: rewriting a test module's asserts in the middle of a run once
# hit CPython 3.11.7's "AST constructor recursion depth mismatch")
from tests.cluster.test_leafnodes import start_hub, start_leaf, wait_linked
from tests.helpers import Cluster, acheck_for

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]


def _shape(event: dict[str, Any]) -> str:
    """One server's trace event without times, ids and hop numbering (which route is hop 1
    depends on the order the routes were made)."""
    request = dict(event["request"])
    header = dict(request.get("header") or {})
    if "Nats-Trace-Hop" in header:
        header["Nats-Trace-Hop"] = ["H"]
    request["header"] = header
    items = []
    for item in event["events"]:
        item = {k: ("H" if k == "hop" else v) for k, v in item.items() if k not in ("ts", "cid")}
        items.append(json.dumps(item, sort_keys=True))
    head = [items[0]] + sorted(items[1:])
    return (
        f"{event['server']['name']} hops={event.get('hops', 0)} {json.dumps(request, sort_keys=True)} {' '.join(head)}"
    )


def _hops_agree(events: list[dict[str, Any]]) -> bool:
    """Every route or leaf egress's hop is the Nats-Trace-Hop the server at its other end received."""
    received = {e["server"]["name"]: (e["request"].get("header") or {}).get("Nats-Trace-Hop", [""])[0] for e in events}
    for event in events:
        for item in event["events"]:
            if item["type"] == "eg" and item["kind"] in (1, 4) and received.get(item.get("name")) != item.get("hop"):
                return False
    return True


def _collectors() -> tuple[list[dict[str, Any]], list[str], Any, Any]:
    """(trace events, messages received, their nats-py callbacks)."""
    events: list[dict[str, Any]] = []
    got: list[str] = []

    async def on_trace(msg: Any) -> None:
        events.append(json.loads(msg.data))

    async def on_msg(msg: Any) -> None:
        got.append(f"{msg.subject} {msg.data.decode()} {sorted((msg.headers or {}).items())}")

    return events, got, on_trace, on_msg


async def _script(cluster: Cluster) -> list[str]:
    conns = [await nats.connect(cluster[i].url, name=f"c{i + 1}") for i in range(3)]
    one, two, three = conns
    out: list[str] = []
    events, got, on_trace, on_msg = _collectors()
    try:
        await one.subscribe("trace.out", cb=on_trace)
        await one.subscribe("t.x", cb=on_msg)
        await two.subscribe("t.x", cb=on_msg)
        await three.subscribe("t.*", cb=on_msg)
        await two.subscribe("q.x", queue="w", cb=on_msg)
        for conn in conns:
            await conn.flush()

        async def routed() -> bool:  # every server knows every subscription, trace.out's too
            got.clear()
            events.clear()
            await one.publish("t.x", b"warm")
            await one.publish("q.x", b"warm")
            await two.publish("trace.out", b"{}")
            await three.publish("trace.out", b"{}")
            for conn in conns:
                await conn.flush()
            await asyncio.sleep(0.2)
            return len(got) == 4 and len(events) == 2

        await acheck_for(20, routed, interval=0.1)
        got.clear()
        traced = [
            ("t.x", {"Nats-Trace-Dest": "trace.out"}, 3),
            ("t.x", {"Nats-Trace-Dest": "trace.out", "Nats-Trace-Only": "true"}, 3),
            ("q.x", {"Nats-Trace-Dest": "trace.out"}, 2),
        ]
        for subject, headers, expected in traced:
            events.clear()
            await one.publish(subject, b"traced", headers=headers)
            await one.flush()
            try:
                await acheck_for(20, lambda n=expected: len(events) >= n, interval=0.05)
            except AssertionError as exc:
                names = [e.get("server", {}).get("name") for e in events]
                raise AssertionError(f"{subject} {headers}: trace events from {names} only") from exc
            await asyncio.sleep(0.2)  # nothing more comes
            out.append(f"{subject} {len(events)} events, hops agree: {_hops_agree(events)}")
            out.extend(sorted(_shape(e) for e in events))
        await asyncio.sleep(0.2)
        out.extend(sorted(got))
    finally:
        for conn in conns:
            await conn.close()
    return out


def test_traces_across_a_cluster_as_nats_server() -> None:
    results = []
    for kind in ("nats", "jsedge"):
        with Cluster([kind] * 3) as cluster:
            cluster.wait_mesh()
            results.append(asyncio.run(_script(cluster)))
    expected, actual = results
    mismatches = [f"nats:   {a}\njsedge: {b}" for a, b in zip(expected, actual) if a != b]
    assert not mismatches, "\n".join(mismatches)
    assert len(expected) == len(actual)


async def _leaf_script(hub: Any, leaf: Any) -> list[str]:
    """A client of the leaf traces a publish that a client of the hub receives, and back."""
    up = await nats.connect(leaf.url, name="on-leaf")
    down = await nats.connect(hub.url, name="on-hub")
    out: list[str] = []
    events, got, on_trace, on_msg = _collectors()
    try:
        await down.subscribe("trace.out", cb=on_trace)
        await down.subscribe("to.hub", cb=on_msg)
        await up.subscribe("to.leaf", cb=on_msg)
        await up.flush()
        await down.flush()

        async def linked() -> bool:
            got.clear()
            await up.publish("to.hub", b"warm")
            await down.publish("to.leaf", b"warm")
            await up.flush()
            await down.flush()
            await asyncio.sleep(0.2)
            return len(got) == 2

        await acheck_for(20, linked, interval=0.1)
        for conn, subject in ((up, "to.hub"), (down, "to.leaf")):
            events.clear()
            await conn.publish(subject, b"traced", headers={"Nats-Trace-Dest": "trace.out"})
            await conn.flush()
            await acheck_for(10, lambda: len(events) >= 2, interval=0.05)
            await asyncio.sleep(0.3)
            out.append(f"{subject} {len(events)} events, hops agree: {_hops_agree(events)}")
            out.extend(sorted(_shape(e) for e in events))
    finally:
        await up.close()
        await down.close()
    return out


@pytest.mark.parametrize(("hub_kind", "leaf_kind"), [("jsedge", "jsedge"), ("nats", "jsedge"), ("jsedge", "nats")])
def test_traces_across_a_leaf_link_as_nats_server(hub_kind: str, leaf_kind: str) -> None:
    results = []
    for kinds in (("nats", "nats"), (hub_kind, leaf_kind)):
        hub, port = start_hub(kinds[0])
        with hub, start_leaf(kinds[1], port) as leaf:
            wait_linked(leaf)
            results.append(asyncio.run(_leaf_script(hub, leaf)))
    expected, actual = results
    mismatches = [f"nats:   {a}\njsedge: {b}" for a, b in zip(expected, actual) if a != b]
    assert not mismatches, "\n".join(mismatches)
    assert len(expected) == len(actual)
