"""The asyncio driver of a Raft group (jsedge/cluster/group.py): the order in which it writes, sends
and applies, with a log whose fsyncs the test completes by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jsedge.cluster.group import MemoryLog, RaftGroup
from jsedge.cluster.types import (
    ENTRY_NORMAL,
    AppendRequest,
    AppendResponse,
    Entry,
    SnapshotMeta,
    VoteRequest,
    VoteResponse,
)

pytestmark = pytest.mark.timeout(30)


class HeldLog(MemoryLog):
    """A memory log whose syncs complete only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[asyncio.Future[None]] = []

    def sync(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.syncs.append(fut)
        return fut


class Recorder:
    """Transport, server and state machine in one: every send and apply goes into `events`."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.groups: dict[str, Any] = {}
        self.events: list[tuple[str, Any]] = []
        self.logger = self

    def warn(self, text: str) -> None:
        pass

    error = warn

    def send_raft(self, peer: str, group: str, message: Any) -> None:
        self.events.append(("send", (peer, message)))

    def apply(self, entry: Entry) -> Any:
        self.events.append(("apply", entry.index))
        return entry.index

    def snapshot(self) -> bytes:
        return b""

    async def restore(self, meta: SnapshotMeta, data: bytes, leader: str) -> None:
        pass

    def leader_changed(self, is_leader: bool, leader: str) -> None:
        pass

    def sent(self, kind: type) -> list[tuple[str, Any]]:
        return [e[1] for e in self.events if e[0] == "send" and isinstance(e[1][1], kind)]


def group(me: str, rec: Recorder) -> tuple[RaftGroup, HeldLog]:
    g = RaftGroup("G", None, me, ("a", "b", "c"), rec, rec, rec)
    g.start()
    log = HeldLog()
    g.log = log
    return g, log


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_follower_acknowledges_an_append_before_it_applies_what_the_append_committed() -> None:
    async def run() -> None:
        rec = Recorder()
        b, log = group("b", rec)
        b.handle(AppendRequest(1, "a", 0, 0, (Entry(1, 1, ENTRY_NORMAL, b"x"),), 0))
        log.syncs[-1].set_result(None)
        await settle()
        assert [m.index for _p, m in rec.sent(AppendResponse)] == [1]
        rec.events.clear()
        # the next append commits entry 1 while entry 2 is being written
        b.handle(AppendRequest(1, "a", 1, 1, (Entry(1, 2, ENTRY_NORMAL, b"y"),), 1))
        await settle()
        assert rec.events == []  # neither acked (not durable) nor applied (the ack goes first)
        log.syncs[-1].set_result(None)
        await settle()
        kinds = [(kind, payload if kind == "apply" else type(payload[1]).__name__) for kind, payload in rec.events]
        assert kinds == [("send", "AppendResponse"), ("apply", 1)]
        # with no write in flight, a commit is applied at once, in order
        rec.events.clear()
        b.handle(AppendRequest(1, "a", 2, 1, (), 2))
        await settle()
        assert ("apply", 2) in rec.events
        b.stop()

    asyncio.run(run())


def test_a_leader_sends_its_appends_before_its_own_write_is_durable_and_counts_itself_after() -> None:
    async def run() -> None:
        rec = Recorder()
        a, log = group("a", rec)
        now = rec.loop.time()
        a._process(a.node.tick(now + 100.0))  # election timeout: pre-vote
        a.handle(VoteResponse(1, "b", True, pre_vote=True))
        for fut in log.syncs:
            if not fut.done():
                fut.set_result(None)  # the vote for itself is durable before the requests leave
        await settle()
        assert rec.sent(VoteRequest)
        a.handle(VoteResponse(1, "b", True))
        await settle()
        assert a.is_leader
        for f in log.syncs:
            if not f.done():
                f.set_result(None)
        await settle()
        noop = a.node.last_index
        a.handle(AppendResponse(1, "b", True, noop))
        a.handle(AppendResponse(1, "c", True, noop))
        await settle()
        rec.events.clear()
        fut = a.propose(b"cmd")
        await settle()
        appends = rec.sent(AppendRequest)
        assert {peer for peer, _m in appends} == {"b", "c"}
        assert all(not f.done() for f in log.syncs[-1:])  # sent while the leader's write is pending
        last = a.node.last_index
        # one follower's ack is not a majority while the leader's own write is not durable
        a.handle(AppendResponse(1, "b", True, last))
        await settle()
        assert not fut.done()
        for f in log.syncs:
            if not f.done():
                f.set_result(None)
        await settle()
        assert fut.done() and fut.result() == last
        a.stop()

    asyncio.run(run())
