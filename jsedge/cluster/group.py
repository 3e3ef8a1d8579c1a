"""The asyncio driver of one Raft group (layer 6): the sans-IO core (`raft.RaftNode`), its log on disk
(`wal.RaftLog`, or an in-memory log for memory streams), the transport and a state machine.

It follows the core's contract (types.Ready): a Ready's snapshot/truncation/entries/hard state are
written to the log and made durable by one group-commit fsync (off the event loop) before its messages
leave; then the core hears `persisted(...)`, which may commit entries (the leader counts itself only
from here). One exception, from the Raft thesis (§10.2.1): a leader's appends leave at once, so its
own fsync overlaps the round trip (safe: it still counts itself only once durable). Committed
entries are applied in order on the event loop (a follower with a write in flight applies them
once that write's acknowledgement has left); a proposal's future resolves
with the state machine's result for it once it is applied on this node (the leader), or fails when a
different entry took its index (leadership changed before it committed).

Proposals made in one event-loop turn go to the core as one batch (one log write, one fsync, one
append message per follower). A timer ticks the core every `TICK` seconds.

Timing comes from nats-server's values (heartbeat 1 s, election 4-9 s, lost quorum 10 s) unless the
environment says otherwise (tests): `JSEDGE_RAFT_HEARTBEAT`, `JSEDGE_RAFT_ELECTION` ("min-max"),
`JSEDGE_RAFT_LOST_QUORUM`, in seconds.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from jsedge.cluster.codec import encode_peers
from jsedge.cluster.raft import NotLeader, RaftNode, RaftTiming
from jsedge.cluster.types import ENTRY_NORMAL, ENTRY_PEERS, AppendRequest, Entry, HardState, Ready, SnapshotMeta

TICK = 0.05


class NotLeaderError(Exception):
    """A proposal on a node that is not (or no longer) the leader; `leader` is the peer id known."""

    def __init__(self, leader: str) -> None:
        super().__init__(f"not the leader (leader: {leader or 'none'})")
        self.leader = leader


class ProposalLost(Exception):
    """The proposal's index was taken by another leader's entry: it was never committed."""


def timing_from_env() -> RaftTiming:
    env = os.environ
    fields: dict[str, Any] = {}
    if env.get("JSEDGE_RAFT_HEARTBEAT"):
        fields["heartbeat"] = float(env["JSEDGE_RAFT_HEARTBEAT"])
    if env.get("JSEDGE_RAFT_ELECTION"):
        low, _, high = env["JSEDGE_RAFT_ELECTION"].partition("-")
        fields["election_min"] = float(low)
        fields["election_max"] = float(high or low)
    if env.get("JSEDGE_RAFT_LOST_QUORUM"):
        fields["lost_quorum"] = float(env["JSEDGE_RAFT_LOST_QUORUM"])
    return RaftTiming(**fields)


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, meta: SnapshotMeta, data: bytes, leader: str) -> Awaitable[None]: ...

    def leader_changed(self, is_leader: bool, leader: str) -> None: ...


class MemoryLog:
    """The log of a memory stream's group: nothing survives a restart (as nats-server's memory WAL);
    the node then catches up from the leader like a new replica."""

    def __init__(self) -> None:
        self.hard_state = HardState(0, "")
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = b""
        self.entries: list[Entry] = []

    def append(self, entries: list[Entry]) -> None:
        self.entries.extend(entries)

    def truncate_from(self, index: int) -> None:
        self.entries = [e for e in self.entries if e.index < index]

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self.snapshot, self.snapshot_data, self.entries = meta, data, []

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        self.snapshot, self.snapshot_data = meta, data
        self.entries = [e for e in self.entries if e.index > meta.index]

    def sync(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def close(self) -> None:
        self.entries = []

    def delete(self) -> None:
        self.entries = []


class RaftGroup:
    def __init__(
        self,
        name: str,
        directory: str | None,
        me: str,
        peers: tuple[str, ...],
        transport: Any,
        server: Any,
        machine: StateMachine,
        *,
        timing: RaftTiming | None = None,
        on_peers: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.name = name
        self.directory = directory
        self.me = me
        self.initial_peers = peers
        self.transport = transport
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.logger = server.logger
        self.machine = machine
        self.timing = timing or timing_from_env()
        self.on_peers = on_peers
        self.log: Any = None
        self.node: RaftNode = None  # type: ignore[assignment]
        #: index -> (term proposed in, future of the apply result)
        self.pending: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        self._batch: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._batch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._leader = ""
        self._is_leader = False
        self.stopped = False
        self.started = False
        self.failed: BaseException | None = None
        self._restore_task: asyncio.Task[None] | None = None
        self._restore_next: tuple[SnapshotMeta, bytes] | None = None
        self.applied = 0
        #: committed entries not yet applied (a follower applies after its ack left; `_process`)
        self._to_apply: list[Entry] = []
        #: log syncs in flight
        self._syncing = 0
        #: the log is durable (fsynced by this process) up to this index
        self.durable = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, seed: tuple[SnapshotMeta, bytes] | None = None, *, campaign: bool = False) -> None:
        """Open the log and start the core. `seed`: a new group made from an existing store (a
        replica change): when the log is empty, it starts from this snapshot (durable before the
        core can campaign on it)."""
        if self.directory is None:
            self.log = MemoryLog()
        else:
            from jsedge.cluster.wal import DEFAULT_SEGMENT_SIZE, RaftLog

            # (tests make segments small, so they rotate and are deleted under the store's links)
            size = int(os.environ.get("JSEDGE_RAFT_SEGMENT_BYTES") or DEFAULT_SEGMENT_SIZE)
            self.log = RaftLog.open(self.directory, log=self.logger.warn, segment_size=size)
        log = self.log
        fresh = log.snapshot is None and not log.entries and not log.hard_state.term
        if seed is not None and fresh:
            meta, data = seed
            log.install_snapshot(meta, data)
            log.set_hard_state(HardState(meta.term, ""))
            if hasattr(log, "sync_blocking"):
                log.sync_blocking()
        self.node = RaftNode(
            self.me,
            self.initial_peers,
            rng=random.Random(),
            config=self.timing,
            hard_state=log.hard_state,
            snapshot=log.snapshot,
            log=list(log.entries),
            now=self.loop.time(),
            snapshot_data=self.machine.snapshot,
        )
        self.applied = log.snapshot.index if log.snapshot is not None else 0
        if campaign and fresh:
            # the designated first leader of a new group does not wait a whole election timeout
            self.node.campaign_soon(self.loop.time(), min(0.2, self.timing.heartbeat))
        self.started = True
        self.transport.groups[self.name] = self.handle
        self._timer = self.loop.call_later(TICK, self._tick)

    def stop(self) -> None:
        self.stopped = True
        self._to_apply = []
        self.transport.groups.pop(self.name, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _term, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(NotLeaderError(""))
        self.pending.clear()
        if self._restore_task is not None:
            self._restore_task.cancel()
        if self.log is not None:
            self.log.close()

    def delete(self) -> None:
        self.stop()
        if self.log is not None:
            self.log.delete()

    # ------------------------------------------------------------------ state

    @property
    def is_leader(self) -> bool:
        return self.started and self.node.role == "leader"

    @property
    def leader(self) -> str:
        return self.node.leader if self.started else ""

    # ------------------------------------------------------------------ inputs

    def handle(self, message: Any) -> None:
        if self.stopped:
            return
        self._process(self.node.step(message, self.loop.time()))

    def _tick(self) -> None:
        self._timer = None
        if self.stopped:
            return
        try:
            self._process(self.node.tick(self.loop.time()))
        finally:
            if not self.stopped:
                self._timer = self.loop.call_later(TICK, self._tick)

    def propose(self, data: bytes) -> asyncio.Future[Any]:
        """Propose a state-machine command; the future gets apply()'s result on this node."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self.stopped or not self.is_leader:
            fut.set_exception(NotLeaderError(self.leader))
            return fut
        self._batch.append((data, fut))
        if not self._batch_scheduled:
            self._batch_scheduled = True
            self.loop.call_soon(self._flush_batch)
        return fut

    def _flush_batch(self) -> None:
        self._batch_scheduled = False
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self.stopped:
            for _data, fut in batch:
                if not fut.done():
                    fut.set_exception(NotLeaderError(""))
            return
        try:
            first, ready = self.node.propose_many([data for data, _fut in batch], self.loop.time())
        except NotLeader:
            for _data, fut in batch:
                if not fut.done():
                    fut.set_exception(NotLeaderError(self.leader))
            return
        term = self.node.term
        for offset, (_data, fut) in enumerate(batch):
            self.pending[first + offset] = (term, fut)
        self._process(ready)

    def propose_peers(self, peers: tuple[str, ...]) -> int:
        index, ready = self.node.propose_peers(peers, self.loop.time())
        self._process(ready)
        return int(index)

    def bootstrap(self, peers: tuple[str, ...]) -> None:
        """First start of a new group whose members do not know each other yet (the meta group):
        write the membership as entry 1 of term 1 and restart the core from it; it campaigns and
        the others learn the membership when the entry is replicated to them."""
        if self.node.last_index or self.node.peers:
            return
        entry = Entry(1, 1, ENTRY_PEERS, encode_peers(peers))
        hard_state = HardState(1, "")
        self.log.append([entry])
        self.log.set_hard_state(hard_state)
        fut = self.log.sync()

        def restart(f: asyncio.Future[None]) -> None:
            if self.stopped or self._failed(f):
                return
            self.node = RaftNode(
                self.me,
                peers,
                rng=random.Random(),
                config=self.timing,
                hard_state=hard_state,
                snapshot=None,
                log=[entry],
                now=self.loop.time(),
                snapshot_data=self.machine.snapshot,
            )
            # the bootstrapping server is the new group's designated first leader
            self.node.campaign_soon(self.loop.time(), min(0.2, self.timing.heartbeat))

        fut.add_done_callback(restart)

    def transfer(self, target: str | None) -> None:
        self._process(self.node.transfer_leadership(target, self.loop.time()))

    def leader_unreachable(self) -> None:
        """The route to the leader's server closed: elect a new leader soon (raft.py)."""
        if not self.stopped and self.started:
            self.node.leader_unreachable(self.loop.time(), 1.5)

    def step_down(self) -> None:
        self._process(self.node.step_down(self.loop.time()))

    def compact(self, index: int) -> None:
        """The state machine is durable up to `index`: fold the log before it into a snapshot."""
        if self.stopped or index <= (self.log.snapshot.index if self.log.snapshot else 0):
            return
        self.node.compact(index)
        meta = self.node.snapshot
        if meta is not None:
            self.log.compact(meta, self.machine.snapshot())

    # ------------------------------------------------------------------ the Ready loop

    def _process(self, ready: Ready | None) -> None:
        if ready is None or self.stopped:
            return
        log = self.log
        wrote = False
        if ready.snapshot is not None:
            if self._to_apply:
                self._apply_queued()  # what was committed before the snapshot comes first
            # the state machine catches up first; the log records the snapshot only once that is
            # done (a crash in between must not leave a log that claims state the store lacks)
            self._restore(ready.snapshot, ready.snapshot_data)
        if ready.snapshot is not None:
            self.durable = min(self.durable, ready.snapshot.index)
        if ready.truncate_from:
            log.truncate_from(ready.truncate_from)
            self.durable = min(self.durable, ready.truncate_from - 1)
            wrote = True
        if ready.entries:
            log.append(ready.entries)
            wrote = True
        if ready.hard_state is not None:
            log.set_hard_state(ready.hard_state)
            wrote = True
        leading = self.node.role == "leader"
        if wrote:
            mark = (self.node.last_index, self.node.last_term)
            messages = ready.messages
            if leading and messages and all(type(m) is AppendRequest for _peer, m in messages):
                # A leader's appends leave before its own fsync (Raft thesis §10.2.1): the leader
                # counts itself only from `persisted`, so the entries commit on a majority that
                # has them durable either way; the disk write and the round trip now overlap.
                self._send(messages)
                messages = []
            self._syncing += 1
            fut = log.sync()
            fut.add_done_callback(lambda f: self._synced(f, messages, mark))
        elif ready.messages:
            self._send(ready.messages)
        if ready.committed:
            self._to_apply.extend(ready.committed)
            # A follower with a write in flight applies once its acknowledgement has left (in
            # `_synced`): applying a large batch first would delay the ack the leader's commit
            # waits for. Order is kept: every apply drains this one queue from its head.
            if leading or not self._syncing:
                self._apply_queued()
        self._watch_leader()

    def _failed(self, fut: asyncio.Future[None]) -> bool:
        exc = None if fut.cancelled() else fut.exception()
        if not fut.cancelled() and exc is None:
            return False
        self.failed = exc or asyncio.CancelledError()
        self.logger.error(f"RAFT [{self.me} - {self.name}] Error writing the log, stopping the group: {exc}")
        self.stop()
        return True

    def _synced(self, fut: asyncio.Future[None], messages: list[tuple[str, Any]], mark: tuple[int, int]) -> None:
        self._syncing -= 1
        if self.stopped or self._failed(fut):
            return
        if mark[0] > self.durable and self.node.term_at(mark[0]) == mark[1]:
            self.durable = mark[0]  # (same index and term: the same entries as written, Log Matching)
        if messages:
            self._send(messages)
        self._process(self.node.persisted(*mark))  # a follower's acknowledgement leaves here
        if self._to_apply:
            self._apply_queued()

    def _restore(self, meta: SnapshotMeta, data: bytes) -> None:
        # One catch-up at a time. A snapshot handed out while one is being restored replaces it in
        # the core (which then waits for *that* one's `snapshot_installed`), so it is restored next:
        # dropping it would leave the core installing forever (the leader's resends of it look
        # stale once the core took its commit index).
        self._restore_next = (meta, data)
        if self._restore_task is not None and not self._restore_task.done():
            return

        async def run() -> None:
            while self._restore_next is not None and not self.stopped:
                meta, data = self._restore_next
                self._restore_next = None
                try:
                    await self.machine.restore(meta, data, self.node.leader)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.logger.error(f"RAFT [{self.me} - {self.name}] Snapshot restore failed: {exc}")
                    if not self._superseded():
                        self._restore_next = (meta, data)  # the core still waits for it: retry
                    await asyncio.sleep(1.0)
                    continue
                if self._superseded() or self.stopped:
                    continue  # superseded: the core waits for the newer one
                self.log.install_snapshot(meta, data)
                await self.log.sync()
                if not self.stopped:
                    self.applied = meta.index
                    self._process(self.node.snapshot_installed(meta))

        self._restore_task = self.loop.create_task(run())

    def _superseded(self) -> bool:
        """A newer snapshot arrived while one was being restored."""
        return self._restore_next is not None

    def _send(self, messages: list[tuple[str, Any]]) -> None:
        send = self.transport.send_raft
        name = self.name
        for peer, message in messages:
            send(peer, name, message)

    def _apply_queued(self) -> None:
        entries, self._to_apply = self._to_apply, []
        self._apply(entries)

    def _apply(self, entries: list[Entry]) -> None:
        machine = self.machine
        pending = self.pending
        for entry in entries:
            result: Any = None
            error: BaseException | None = None
            if entry.kind == ENTRY_NORMAL:
                try:
                    result = machine.apply(entry)
                except Exception as exc:  # a bad command fails its proposer, never the group
                    error = exc
                    self.logger.error(f"RAFT [{self.me} - {self.name}] Applying entry {entry.index} failed: {exc!r}")
            elif entry.kind == ENTRY_PEERS and self.on_peers is not None:
                self.on_peers(tuple(self.node.peers))
            self.applied = entry.index
            waiting = pending.pop(entry.index, None)
            if waiting is not None:
                term, fut = waiting
                if fut.done():
                    continue
                if term != entry.term:
                    fut.set_exception(ProposalLost(f"entry {entry.index} was replaced"))
                elif error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)
        applied_upto = getattr(machine, "applied_upto", None)
        if applied_upto is not None:
            applied_upto(self.applied)

    def _watch_leader(self) -> None:
        node = self.node
        is_leader = node.role == "leader"
        leader = node.leader
        if is_leader != self._is_leader or leader != self._leader:
            self._is_leader = is_leader
            self._leader = leader
            self.machine.leader_changed(is_leader, leader)

    # ------------------------------------------------------------------ monitoring

    def replicas(self, now: float) -> list[tuple[str, bool, float, int]]:
        """(peer, current, seconds since last contact, lag in entries) of the other peers, as the
        leader sees them (followers report what they know: nothing current)."""
        out = []
        node = self.node
        for peer in node.peers:
            if peer == self.me:
                continue
            if node.role == "leader":
                match, contact = node.progress(peer)
                lag = max(node.last_index - match, 0)
                since = max(now - contact, 0.0) if contact else -1.0
                out.append((peer, lag == 0 and 0 <= since < self.timing.heartbeat * 3, since, lag))
            else:
                out.append((peer, False, -1.0, 0))
        return out


__all__ = ["MemoryLog", "NotLeaderError", "ProposalLost", "RaftGroup", "StateMachine", "TICK", "timing_from_env"]
