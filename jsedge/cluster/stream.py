"""A stream of a JetStream cluster (layer 6): the local replica of an assigned stream and, with more
than one replica, the Raft group that replicates its commands.

* R1: the one server the meta group placed it on runs it like a single-node stream (no Raft), with
  its subscriptions announced to the routes so publishes from any node reach it.
* R>1: every replica opens the stream's store and joins the group `S-R<n><F|M>-xxxxxxxx`. Only the
  leader subscribes to the stream's subjects. A publish is checked by the leader against the applied
  state (streams.md §4), proposed as an encoded StoreMsg (with the sequence it will get), and the
  PubAck is sent when the entry is applied on the leader — after a majority of the replicas fsynced it
  in their Raft log. Every replica applies committed commands through the one `Stream.apply()` and
  `react()`. Other mutations (purge, delete, expiry, config updates, acks of work-queue consumers)
  are proposed the same way.

In-flight proposals: the leader keeps publishes in order, and a publish whose checks depend on
state that in-flight commands may change (an `Nats-Expected-*` header, a Msg-Id inside the
duplicate window, a rollup, discard-new limits, interest retention) waits until everything before it
is applied. Plain publishes are pipelined: the sequence each will get is known in advance.

Durability: the Raft log is fsynced before an append is acknowledged; the stream store is written on
apply and fsynced in groups, after which the Raft log is compacted up to what the store holds (a
restart replays the rest; commands carry their sequence, so one already in the store is skipped).

Catch-up: a replica too far behind the leader's log gets a snapshot — the leader's stream state
(first/last sequence, interior deletions, config) — and then pulls the messages it lacks in batches
(control message `catchup` -> CATCHUP frames of stored messages).

Replica changes (`num_replicas` 1 <-> 3 ...) make a new group rather than changing the old one's
membership: the meta group records the wanted peers (`stream_scale`); the old group's leader seals its
log with a REGROUP entry (every replica stops applying at that entry, so every replica that applied it
holds the same state, and a replica that did not holds a prefix of it); the replica that applied it
as leader proposes the new assignment with itself as `seed` (`stream_update` with the new group); the
seed starts the new group from a snapshot of its store at index 1, members that stay keep their
stores and reconcile with that snapshot like any lagging follower, new members start empty and catch
up, and servers that leave delete their replica. Publishes between the seal and the new leader get no
answer (the client retries), as during any leader change.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections import deque
from typing import Any

from jsedge.cluster.group import NotLeaderError, ProposalLost, RaftGroup
from jsedge.cluster.types import Entry, SnapshotMeta
from jsedge.errors import JSError, js_error
from jsedge.jetstream import headers as H
from jsedge.jetstream.commands import (
    KIND_ATOMIC,
    KIND_BATCH,
    Command,
    DeleteMsg,
    ExpireMsgs,
    PurgeMsgs,
    SkipMsg,
    StoreMsg,
    UpdateConfig,
    command_ends,
    decode_batch,
    decode_command,
    encode_batch,
    encode_command,
    encode_store_batch,
    read_uvarint,
    state_seq,
    uvarint,
)
from jsedge.jetstream.ingest import apply_plain
from jsedge.store.base import DiscardNewError

#: Compact the Raft log once this many entries were applied since the last compaction...
COMPACT_EVERY = int(os.environ.get("JSEDGE_RAFT_COMPACT_EVERY") or 8192)
#: ...keeping this many of the newest entries, so a briefly lagging replica catches up from the log.
#: (Both environment variables are for tests: fault tests compact often to exercise snapshots.)
RETAIN = int(os.environ.get("JSEDGE_RAFT_RETAIN") or 4096)
#: Catch-up batch size (bytes of stored messages per CATCHUP frame).
CATCHUP_BYTES = 256 * 1024
CATCHUP_TIMEOUT = 5.0
#: First byte of the entry that seals a group before a replica change (stream commands use 1..7).
REGROUP = 0xFF
#: Write once: a file replica stores a message's payload as a reference into the Raft log segment
#: that already holds it (jsedge.store.filestore, "Write once"). `JSEDGE_WRITE_ONCE=0` stores every
#: message whole (as before; for comparisons). Payloads shorter than REF_MIN are stored whole (a
#: reference costs about 11 bytes).
WRITE_ONCE = os.environ.get("JSEDGE_WRITE_ONCE", "1") != "0"
REF_MIN = 32
_BATCH = bytes((KIND_BATCH,))
_ATOMIC = bytes((KIND_ATOMIC,))


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_uvarint(data, pos)
    if pos + length > len(data):
        raise ValueError("length beyond the end")
    return data[pos : pos + length], pos + length


def _barrier(hdr: bytes, stream: Any) -> bool:
    """Must this publish wait until every earlier command is applied?"""
    config = stream.config
    if config.retention == "interest" or config.mirror is not None or config.allow_msg_counter:
        # (a counter's total is computed from the applied state: one increment at a time)
        return True
    if config.discard == "new" and (
        config.max_msgs > 0
        or config.max_bytes > 0
        or (config.discard_new_per_subject and config.max_msgs_per_subject > 0)
    ):
        # a limit that refuses new messages: whether this one fits depends on everything before it
        # (a KV bucket is discard-new without such limits: its puts are pipelined)
        return True
    if not hdr:
        return False
    for name in (
        H.EXPECTED_LAST_SEQ,
        H.EXPECTED_LAST_SUBJ_SEQ,
        H.EXPECTED_LAST_MSG_ID,
        H.EXPECTED_STREAM,
        H.ROLLUP,
    ):
        if H.get_header(hdr, name):
            return True
    return bool(config.duplicate_window and H.get_header(hdr, H.MSG_ID))


class ClusteredStream:
    """The cluster side of one local stream replica (`stream.replicated`)."""

    def __init__(self, coordinator: Any, jsa: Any, assignment: Any) -> None:
        self.coordinator = coordinator
        self.server = coordinator.server
        self.jsa = jsa
        self.assignment = assignment
        #: the group this replica runs (the assignment's changes with a replica change; this does not)
        self.group_name: str = assignment.group
        self.stream: Any = None
        self.group: RaftGroup | None = None
        self.publishing = False
        self.leader_since = 0
        self.leader_peer = ""
        #: write once: the store's reference file per (group, Raft log segment), and for the entry
        #: being applied, its file and the offset of its data in it (`_ref_locate`)
        self._ref_files: dict[tuple[str, int], int] = {}
        self._ref_file = 0
        self._ref_offset = 0
        self._ref_off = False
        #: the create/update API request waiting for this replica to lead: (reply, api, request)
        self.waiting_response: list[Any] = []
        #: proposals of this leadership not yet settled (`_begin`/`_end`); `_epoch` counts the
        #: leaderships, so a proposal of an earlier one settling late leaves the count alone
        self._inflight = 0
        self._epoch = 0
        self._next_seq = 0
        self._drain_scheduled = False
        #: batches this leader proposed, by their encoding, until applied
        self._proposed: dict[bytes, list[Command]] = {}
        #: publishes (subject, reply, hdr, data, sourced) and other commands (callables) in order
        self._queue: deque[Any] = deque()
        self._applied_since_compact = 0  # messages (a batch entry counts each of its messages)
        self._entries_since_compact = 0
        self._compacting = False
        self._catchup: dict[str, Any] | None = None
        self._stopped = False
        self._caught_up = False
        self._caught_up_at = 0
        #: the group applied its REGROUP entry: nothing after it is applied, nothing new is proposed
        self.sealed = False
        self._seal_proposed = False
        #: this server's members of the stream's replicated consumers (cluster/consumer.py)
        self.consumer_groups: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def name(self) -> str:
        return str(self.assignment.name)

    @property
    def replicas(self) -> int:
        return len(self.assignment.peers)

    def open(self, stream: Any) -> None:
        """Attach to the opened (not yet started) local Stream and start the group."""
        self.stream = stream
        stream.replicated = self
        coordinator = self.coordinator
        if self.replicas > 1:
            directory = None
            if stream.config.storage != "memory":
                directory = coordinator.group_dir(self.group_name)
            seed = self.assignment.seed
            peers = tuple(self.assignment.peers)
            seeding = None
            if seed:
                if seed == coordinator.me:
                    # this store seeds the group: its state is the group's snapshot at index 1
                    seeding = (SnapshotMeta(1, 1, peers), self.snapshot())
                else:
                    peers = ()  # learn the membership from the seed (never campaign without its data)
            self.group = RaftGroup(
                self.group_name,
                directory,
                coordinator.me,
                peers,
                coordinator.transport,
                self.server,
                self,
            )
            coordinator.transport.catchup[self.group_name] = self._on_catchup_batch
            # a new group's first leader: the seed, or the first peer the meta leader placed
            first = seed == coordinator.me if seed else bool(peers) and peers[0] == coordinator.me
            self.group.start(seed=seeding, campaign=first)
        else:
            self.publishing = True
            self.leader_peer = coordinator.me
            self.leader_since = time.time_ns()

    def stop(self) -> None:
        self._stopped = True
        for member in self.consumer_groups.values():
            member.stop()
        self.consumer_groups.clear()
        if self.group is not None:
            self.coordinator.transport.catchup.pop(self.group_name, None)
            self.group.stop()

    def delete(self, *, consumers: bool = True) -> None:
        """Stop and delete this replica's group log; with `consumers`, its replicated consumers'
        logs too (a replica change keeps them: the consumers reopen on the new group's replica)."""
        self._stopped = True
        for member in self.consumer_groups.values():
            member.stop()
            if consumers and member.group is not None:
                member.group.delete()
        self.consumer_groups.clear()
        if self.group is not None:
            self.coordinator.transport.catchup.pop(self.group_name, None)
            self.group.delete()

    @property
    def is_leader(self) -> bool:
        return self.group.is_leader if self.group is not None else True

    # ------------------------------------------------------------------ StateMachine

    def apply(self, entry: Entry) -> Any:
        if self.sealed:
            return None  # the group was sealed for a replica change: its state ends at the seal
        if entry.data[:1] == bytes((REGROUP,)):
            self._sealed()
            return None
        stream = self.stream
        if entry.data[:1] == _BATCH:
            commands = self._proposed.pop(entry.data, None)  # the leader's own: not decoded again
            return self._apply_batch(commands if commands is not None else decode_batch(entry.data), entry)
        if entry.data[:1] == _ATOMIC:
            commands = self._proposed.pop(entry.data, None)
            return self._apply_atomic(commands if commands is not None else decode_batch(entry.data))
        command = decode_command(entry.data)
        old = stream.config
        referenced = (
            type(command) is StoreMsg and not command.ttl and len(command.data) >= REF_MIN and self._ref_locate(entry)
        )
        if referenced:
            self._ref_next(len(entry.data), command)  # type: ignore[arg-type]
        try:
            result = stream.apply(command)
        finally:
            if referenced:
                stream.store.clear_ref()
        stream.react(command, result, old)
        if isinstance(command, UpdateConfig):
            self.jsa._write_meta(command.config, stream.created)
            self.jsa.attach_mirror(stream)
        self._applied_since_compact += 1
        self._entries_since_compact += 1
        if self._applied_since_compact >= COMPACT_EVERY and not self._compacting:
            self._compact()
        return result

    def _apply_batch(self, commands: list[Command], entry: Entry) -> list[Any]:
        """A batch of stored messages: each applied and reacted to on its own; the result is one
        sequence or exception (a discard-new refusal) per message, in order."""
        stream = self.stream
        results: list[Any] = []
        ends = command_ends(entry.data) if self._ref_locate(entry) else None
        for k, command in enumerate(commands):
            if ends is not None and not command.ttl and len(command.data) >= REF_MIN:  # type: ignore[union-attr]
                self._ref_next(ends[k], command)  # type: ignore[arg-type]
            seq = apply_plain(stream, command)  # the common case, fused (jetstream/ingest.py)
            if seq:
                results.append(seq)
                continue
            try:
                result = stream.apply(command)
            except DiscardNewError as exc:
                results.append(exc)
                continue
            finally:
                if ends is not None:
                    stream.store.clear_ref()
            stream.react(command, result, None)
            results.append(result)
        self._applied_since_compact += len(commands)
        self._entries_since_compact += 1
        if self._applied_since_compact >= COMPACT_EVERY and not self._compacting:
            self._compact()
        return results

    # ------------------------------------------------------------------ write once

    def _ref_locate(self, entry: Entry) -> bool:
        """Can the payloads of `entry` be stored as references into this node's Raft log? (A file
        replica, uncompressed, the entry durable here and in a segment.) Sets `_ref_file` (the
        store's number for the segment, linked into the store on first use) and `_ref_offset`
        (where the entry's data begins in it)."""
        self._ref_file = 0
        group = self.group
        if not WRITE_ONCE or self._ref_off or group is None or entry.index > group.durable:
            return False
        locate = getattr(group.log, "locate", None)
        store = self.stream.store
        if locate is None or not hasattr(store, "link_ref") or self.stream.config.compression not in ("", "none"):
            return False
        found = locate(entry.index, len(entry.data))
        if found is None:
            return False
        seg_no, path, offset = found
        key = (self.group_name, seg_no)
        fid = self._ref_files.get(key)
        if fid is None or not store.has_ref(fid):
            try:
                fid = store.link_ref(path)
            except OSError as exc:
                # a file system without hard links (FAT on a USB stick): every message stored whole
                self._ref_off = True
                self.server.logger.warn(
                    f"JetStream stream '{self.jsa.name} > {self.name}' stores every message twice "
                    f"(Raft log and store): cannot link the log into the store ({exc})"
                )
                return False
            self._ref_files = {key: fid}  # only the segment being filled is linked again
        self._ref_file = fid
        self._ref_offset = offset
        return True

    def _ref_next(self, end: int, command: StoreMsg) -> None:
        """The next message stored is `command`, whose command ends at `end` in the data of the
        entry `_ref_locate` just located."""
        store = self.stream.store
        size = len(command.data)
        store.set_ref(store.last_seq() + 1, self._ref_file, self._ref_offset + end - size, size)

    def _apply_atomic(self, commands: list[Command]) -> list[Any] | BaseException:
        """An atomic batch: all applied (the store told it is one batch), then reacted to; the
        result is each command's, or the exception that stopped the batch."""
        stream = self.stream
        try:
            results: list[Any] = stream.apply_atomic(commands)
        except DiscardNewError as exc:
            return exc
        for command, result in zip(commands, results, strict=True):
            stream.react(command, result, None)
        self._applied_since_compact += len(commands)
        self._entries_since_compact += 1
        if self._applied_since_compact >= COMPACT_EVERY and not self._compacting:
            self._compact()
        return results

    def commit_batch(self, batch_id: str, messages: list[tuple[bytes, bytes, bytes]], reply: bytes) -> None:
        """A committed atomic batch on the leader: checked once everything before it is applied
        (a barrier in the publish queue), proposed as one KIND_ATOMIC entry, acked once applied."""
        self._queue.append(lambda: self._propose_atomic(batch_id, messages, reply))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.server.loop.call_soon(self._scheduled_drain)

    def _propose_atomic(self, batch_id: str, messages: list[tuple[bytes, bytes, bytes]], reply: bytes) -> None:
        stream = self.stream
        if self.group is None or not self.group.is_leader or self._seal_proposed or self.sealed:
            return  # leadership moved: the batch is gone, the client's commit times out
        try:
            prepared = stream.prepare_batch(messages)
        except JSError as exc:
            if reply:
                stream._send_ack(reply, stream._ack_error(exc))
            return
        commands = [self._sequenced(command) for item in prepared for command in item.commands]
        data = encode_batch([encode_command(command) for command in commands], atomic=True)
        self._proposed[data] = commands
        epoch = self._begin()

        def done(fut: asyncio.Future[Any]) -> None:
            self._end(epoch)
            try:
                results = fut.result()
            except (NotLeaderError, ProposalLost, asyncio.CancelledError):
                self._proposed.clear()
                self._drain()
                return  # no ack: the client's commit times out (as nats-server's)
            except Exception as exc:
                self.server.logger.error(f"JetStream stream '{self.jsa.name} > {self.name}' batch failed: {exc}")
                results = exc
            if isinstance(results, BaseException):
                self._resync()
                reason = results.reason if isinstance(results, DiscardNewError) else "internal error"
                if reply:
                    stream._send_ack(reply, stream._ack_error(js_error("JSStreamStoreFailedF", err=reason)))
            else:
                stream.batch_published(prepared, results)
                if reply:
                    last = next(
                        r for c, r in zip(reversed(commands), reversed(results)) if isinstance(c, (StoreMsg, SkipMsg))
                    )
                    stream._send_ack(reply, stream._ack_ok(last, False, batch=(batch_id, len(messages))))
            self._drain()

        self.group.propose(data).add_done_callback(done)

    def _sequenced(self, command: Command) -> Command:
        """A stored or skipped message with the sequence the leader predicts for it stated."""
        if type(command) is StoreMsg:
            command = state_seq(command, self._next_seq)  # (just prepared: nobody else holds it)
            self._next_seq += 1
        elif isinstance(command, SkipMsg):
            command = SkipMsg(command.ts, command.msg_id, self._next_seq)
            self._next_seq += 1
        return command

    def applied_upto(self, index: int) -> None:
        """The group applied every entry up to `index` (its own no-ops included)."""
        if not self._caught_up and index >= self._caught_up_at and self.publishing:
            self._caught_up = True
            # predict from the applied state now: a drain already scheduled for this loop turn
            # may run before _start_leading, and must not use the guess made at the election
            # (before this leader applied its log), which names sequences already taken
            self._resync()
            self.server.loop.call_soon(self._start_leading)

    def _start_leading(self) -> None:
        if self._stopped or not self.publishing:
            return
        self._resync()
        self._drain()
        if self.stream._mirror is not None:
            self.stream._mirror._kick()  # a mirror or sources: this leader copies now
        if self.assignment.scale is not None:
            self.seal()

    # ------------------------------------------------------------------ replica changes

    def seal(self) -> None:
        """The meta group wants a replica change: seal this group (leader or R1 only)."""
        if self.assignment.scale is None or self._stopped:
            return
        if self.sealed:
            self.finish_seal()
            return
        if self.group is None:
            self._sealed()
            return
        if self._seal_proposed or not self.group.is_leader or not self._caught_up:
            return
        self._seal_proposed = True
        marker = bytes((REGROUP,)) + str(self.assignment.scale["group"]).encode()
        group = self.group

        def run() -> None:
            fut = group.propose(marker)
            fut.add_done_callback(self._seal_settled)

        self._queue.append(run)
        self._drain()

    def _seal_settled(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._seal_proposed = False  # leadership moved first: the next leader seals

    def _sealed(self) -> None:
        self.sealed = True
        if self.publishing:
            self.publishing = False
            self.stream._subscribe()  # stop taking publishes: the new group's leader will
        self._queue.clear()
        self.finish_seal()

    def finish_seal(self) -> None:
        """Phase 2, by the sealed group's leader (or the R1 server): the new assignment, seeded here.
        Repeated (every hello) until the meta group applied it; a repeat is a no-op there."""
        scale = self.assignment.scale
        if scale is None or not self.sealed or self._stopped:
            return
        if self.group is not None and not self.group.is_leader:
            return
        coordinator = self.coordinator
        me = coordinator.me
        peers = list(scale["peers"])
        if me == scale.get("remove"):
            # this replica is the one being moved away: another sealed replica seeds the new group
            if self.group is not None:
                self.group.transfer(None)
            return
        if me not in peers:
            peers[-1] = me
        # which server each consumer continues from: its group's leader, when it stays (see
        # meta._replace_consumer)
        consumer_seeds = {}
        for name, member in self.consumer_groups.items():
            leader = member.group.leader if member.group is not None else ""
            if leader in peers:
                consumer_seeds[name] = leader
        coordinator.propose_meta_anywhere(
            {
                "op": "stream_update",
                "account": self.assignment.account,
                "config": scale["config"],
                "group": scale["group"],
                "peers": peers,
                "seed": me,
                "consumer_seeds": consumer_seeds,
                "reply": scale.get("reply", ""),
                "subject": scale.get("subject", ""),
                "ts": scale.get("ts", 0),
            }
        )

    def snapshot(self) -> bytes:
        state = self.stream.store.state(deleted_details=True)
        document = {
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "last_ts": state.last_ts,
            "deleted": list(state.deleted or ()),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    async def restore(self, meta: SnapshotMeta, data: bytes, leader: str) -> None:
        """Bring the local store to the leader's snapshot: drop what the leader dropped, then pull
        the messages this replica lacks."""
        summary = json.loads(data) if data else {}
        stream = self.stream
        first = int(summary.get("first_seq", 0))
        last = int(summary.get("last_seq", 0))
        last_ts = int(summary.get("last_ts", 0))
        state = stream.store.state()
        if first > state.first_seq and state.messages:
            stream.execute_local(PurgeMsgs(None, seq=first))
        for seq in summary.get("deleted") or ():
            if seq <= state.last_seq:
                stream.execute_local(DeleteMsg(int(seq), erase=False))
        state = stream.store.state()
        if state.last_seq < last:
            await self._pull(leader, state.last_seq + 1, last)
        state = stream.store.state()
        if state.last_seq < last:
            # the tail the leader no longer holds (deleted at its end): consume the sequences
            if not state.messages:
                stream.execute_local(PurgeMsgs(None, seq=last + 1))
            else:
                while stream.store.state().last_seq < last:
                    stream.execute_local(SkipMsg(last_ts))
        stream._rebuild_dedup()
        if stream.scheduler is not None:
            stream.scheduler.rebuild()
        # durable before the group records the snapshot as installed: its log then holds nothing
        # before the snapshot, so a purge or delete still in the store's buffer would be lost for
        # good by a kill (acknowledged work-queue messages coming back on this replica)
        await stream.store.sync()

    def leader_changed(self, is_leader: bool, leader: str) -> None:
        stream = self.stream
        if stream is None or self._stopped:
            return
        if not is_leader and not leader and self.leader_peer == self.coordinator.me:
            # check-quorum made this leader step down (spec/clustering.md §4.7)
            self.server.logger.warn(f"JetStream cluster stream '{self.jsa.name} > {self.name}' has NO quorum, stalled")
            self._advise("QUORUM_LOST", "stream_quorum_lost", [])
        self.leader_peer = leader
        was = self.publishing
        self.publishing = is_leader and not self.sealed
        name = f"'{self.jsa.name} > {self.name}'"
        if is_leader:
            self.leader_since = time.time_ns()
            self._epoch += 1
            self._inflight = 0
            # publishes wait until this leader applied its whole log (up to its first entry of
            # the term): only then does the applied state predict the next sequence
            assert self.group is not None
            self._caught_up_at = self.group.node.last_index
            self._caught_up = self.group.applied >= self._caught_up_at
            self._next_seq = stream.store.last_seq() + 1
            if self._caught_up:
                self.server.loop.call_soon(self._start_leading)
            self.server.logger.info(f"JetStream cluster new stream leader for {name}")
            self._advise("LEADER_ELECTED", "stream_leader_elected", [("leader", self.coordinator.server_name)])
            if not was:
                stream._subscribe()
                stream._schedule_expiry()
                if stream.scheduler is not None:
                    stream.scheduler.leading()
            self._respond_waiting()
        else:
            if leader:
                self.leader_since = time.time_ns()
            if was:
                stream._subscribe()
            if stream.scheduler is not None:
                stream.scheduler.stop()
            self._queue.clear()
            if stream._mirror is not None:
                stream._mirror._kick()  # stop copying

    # ------------------------------------------------------------------ the publish path (leader)

    def publish(self, subject: bytes, reply: bytes, hdr: bytes, data: bytes, sourced: bool, notify: Any = None) -> None:
        """Queue one inbound message. `notify(result)` (a source's copy loop) hears how it ended:
        the sequence, or the exception (JSError, NotLeaderError...)."""
        self._queue.append((subject, reply, hdr, data, sourced, notify))
        if not self._drain_scheduled:
            # drained once per event-loop turn: the turn's pipelined publishes become one entry
            self._drain_scheduled = True
            self.server.loop.call_soon(self._scheduled_drain)

    def _scheduled_drain(self) -> None:
        self._drain_scheduled = False
        self._drain()

    def copy(self, command: Command) -> asyncio.Future[Any]:
        """A mirror's copy (StoreMsg/SkipMsg carrying the origin's sequence, or a PurgeMsgs that
        moves an empty mirror): proposed at once, pipelined like a plain publish. The apply stores
        it at that sequence or refuses it, so a failed copy cannot shift the ones behind it."""
        fut: asyncio.Future[Any]
        if self.group is None or not self.publishing or not self._caught_up or self._seal_proposed or self.sealed:
            fut = self.server.loop.create_future()
            fut.set_exception(NotLeaderError(self.group.leader if self.group is not None else ""))
            return fut
        fut = self._propose(command)
        fut.add_done_callback(functools.partial(self._settled, self._begin()))
        return fut

    def _publish(
        self,
        subject: bytes,
        reply: bytes,
        hdr: bytes,
        data: bytes,
        sourced: bool,
        notify: Any = None,
        batch: list[Any] | None = None,
    ) -> None:
        """Check one publish and propose it; with `batch`, a publish that is one stored message
        joins the batch (proposed by `_flush_publishes`) instead of its own entry."""
        stream = self.stream
        ack = bool(reply) and not stream.config.no_ack
        if self.group is None or not self.group.is_leader or self._seal_proposed or self.sealed:
            if notify is not None:
                notify(NotLeaderError(""))
            return  # leadership moved: the publisher times out and retries, as with nats-server
        if not hdr and batch is not None and not sourced and stream.plain and stream.plain_fits(len(data)):
            # prepare_publish() of a header-less message on a plain stream (ingest.py) decides
            # nothing but the clock: the command joins the batch straight away
            command = StoreMsg(subject, b"", data, time.time_ns(), 0, b"", "", self._next_seq)
            batch.append((command, None, reply, ack, notify))
            self._next_seq += 1
            return
        try:
            prepared = stream.prepare_publish(subject, hdr, data, sourced)
        except JSError as exc:
            if ack:
                stream._send_ack(reply, stream._ack_error(exc))
            if notify is not None:
                notify(exc)
            return
        if isinstance(prepared, int):
            if ack:
                stream._send_ack(reply, stream._ack_ok(prepared, True))
            if notify is not None:
                notify(prepared)
            return
        commands = prepared.commands
        if batch is not None and len(commands) == 1 and type(commands[0]) is StoreMsg:
            # the common case, inline: one stored message joins the batch with its sequence stated
            batch.append((state_seq(commands[0], self._next_seq), prepared, reply, ack, notify))
            self._next_seq += 1
            return
        commands = [self._sequenced(command) for command in commands]
        if batch is not None:
            if batch:
                self._flush_publishes(batch)  # proposed before these, in sequence order
        futures = [self._propose(command) for command in commands]
        epoch = self._begin(len(futures))

        def done(fut: asyncio.Future[Any]) -> None:
            self._end(epoch)
            try:
                seq = fut.result()
            except DiscardNewError as exc:
                self._resync()
                error = js_error("JSStreamStoreFailedF", err=exc.reason)
                if ack:
                    stream._send_ack(reply, stream._ack_error(error))
                if notify is not None:
                    notify(error)
                self._drain()
                return
            except (NotLeaderError, ProposalLost, asyncio.CancelledError) as exc:
                if notify is not None:
                    notify(exc)
                self._drain()
                return  # no ack: the client's request times out (nats-server does the same)
            except Exception as exc:
                self.server.logger.error(f"JetStream stream '{self.jsa.name} > {self.name}' publish failed: {exc}")
                error = js_error("JSStreamStoreFailedF", err="internal error")
                if ack:
                    stream._send_ack(reply, stream._ack_error(error))
                if notify is not None:
                    notify(error)
                self._drain()
                return
            if isinstance(commands[0], StoreMsg):
                stream.published(prepared, seq)
            if ack:
                stream._send_ack(reply, stream._ack_ok(seq, False, prepared.counter))
            if notify is not None:
                notify(seq)
            self._drain()

        futures[0].add_done_callback(done)
        for extra in futures[1:]:
            extra.add_done_callback(functools.partial(self._settled, epoch))

    def _flush_publishes(self, batch: list[Any]) -> None:
        """Propose the batched publishes as one entry; each gets its PubAck from its own result."""
        items = batch[:]
        batch.clear()
        assert self.group is not None
        data = encode_store_batch([item[0] for item in items])
        self._proposed[data] = [item[0] for item in items]
        fut = self.group.propose(data)
        epoch = self._begin(len(items))
        fut.add_done_callback(lambda f: self._batch_done(f, items, epoch))

    def _batch_done(self, fut: asyncio.Future[Any], items: list[Any], epoch: int) -> None:
        self._end(epoch, len(items))
        stream = self.stream
        if fut.cancelled() or fut.exception() is not None:
            self._proposed.clear()  # leadership moved: whatever was not applied never will be here
        try:
            results = fut.result()
        except (NotLeaderError, ProposalLost, asyncio.CancelledError) as exc:
            for item in items:
                if item[4] is not None:
                    item[4](exc)
            self._drain()
            return  # no acks: the clients' requests time out and are retried (as nats-server)
        except Exception as exc:
            self.server.logger.error(f"JetStream stream '{self.jsa.name} > {self.name}' publish failed: {exc}")
            results = [exc] * len(items)
        acks: list[tuple[bytes, bytes]] = []
        resync = False
        head = stream.ack_head()
        for (_command, prepared, reply, ack, notify), result in zip(items, results, strict=False):
            if isinstance(result, BaseException):
                if isinstance(result, DiscardNewError):
                    resync = True
                    error = js_error("JSStreamStoreFailedF", err=result.reason)
                else:
                    error = js_error("JSStreamStoreFailedF", err="internal error")
                if ack:
                    stream._send_ack(reply, stream._ack_error(error))
                if notify is not None:
                    notify(error)
                continue
            if prepared is None:  # a plain publish (see _publish): no republish, no counter
                if ack:
                    acks.append((reply, b"%s%d}" % (head, result)))
            else:
                stream.published(prepared, result)
                if ack:
                    acks.append((reply, stream._ack_ok(result, False, prepared.counter)))
            if notify is not None:
                notify(result)
        if acks:
            self.server.send_internal_many(stream.account, acks, flush=True)
        if resync:
            self._resync()
        self._drain()

    def _begin(self, count: int = 1) -> int:
        """Count `count` proposals in flight; returns the leadership they belong to."""
        self._inflight += count
        return self._epoch

    def _end(self, epoch: int, count: int = 1) -> None:
        """`count` proposals of leadership `epoch` settled. One of an earlier leadership is not
        counted any more: the count restarted at this leader's election, and taking it off again
        would make `_resync` predict sequences already stored (every publish refused)."""
        if epoch == self._epoch:
            self._inflight -= count

    def _settled(self, epoch: int, fut: asyncio.Future[Any]) -> None:
        self._end(epoch)
        if not fut.cancelled():
            fut.exception()  # retrieved: nobody else waits for it
        self._drain()

    def _resync(self) -> None:
        """A command did not consume the sequence the leader predicted: predict again from the
        applied state (everything still in flight fails its sequence check harmlessly)."""
        self._next_seq = self.stream.store.last_seq() + 1 + self._inflight

    def _drain(self) -> None:
        """Start queued work in order: a publish goes at once unless it must see everything before
        it applied (a barrier), other commands always wait for that."""
        queue = self._queue
        if not self._caught_up:
            return
        batch: list[Any] = []
        try:
            while queue and not self._stopped:
                item = queue[0]
                if callable(item):
                    if batch:
                        self._flush_publishes(batch)
                    if self._inflight:
                        return
                    queue.popleft()
                    item()
                    continue
                if _barrier(item[2], self.stream):
                    if batch:
                        self._flush_publishes(batch)
                    if self._inflight:
                        return
                    queue.popleft()
                    self._publish(*item)
                    continue
                queue.popleft()
                subject, reply, hdr, data, sourced, notify = item
                self._publish(subject, reply, hdr, data, sourced, notify, batch=batch)
        finally:
            if batch and not self._stopped:
                self._flush_publishes(batch)

    def _propose(self, command: Command) -> asyncio.Future[Any]:
        assert self.group is not None
        return self.group.propose(encode_command(command))

    # ------------------------------------------------------------------ other mutations

    def submit(self, command: Command) -> asyncio.Future[Any]:
        """A mutation other than a publish (purge, delete, config, consumer acks): proposed by the
        leader after everything in flight (a barrier), or forwarded to the leader."""
        assert self.group is not None
        loop = self.server.loop
        if not self.group.is_leader:
            leader = self.group.leader
            fut: asyncio.Future[Any] = loop.create_future()
            if leader and isinstance(command, DeleteMsg):
                # a consumer on a follower acked a work-queue message: the leader deletes it
                self.coordinator.forward_proposal(leader, self.group_name, encode_command(command))
                fut.set_result(None)
            else:
                fut.set_exception(NotLeaderError(leader))
            return fut
        outer: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            if self._seal_proposed or self.sealed:
                outer.set_exception(NotLeaderError(""))  # sealed for a replica change
                return
            inner = self._propose(command)
            epoch = self._begin()

            def finished(f: asyncio.Future[Any]) -> None:
                self._end(epoch)
                if f.cancelled():
                    outer.cancel()
                elif f.exception() is not None:
                    outer.set_exception(f.exception())  # type: ignore[arg-type]
                else:
                    outer.set_result(f.result())
                if not self._inflight:
                    self._resync()
                self._drain()

            inner.add_done_callback(finished)

        self._queue.append(run)
        self._drain()
        return outer

    def forwarded(self, data: bytes) -> None:
        """A proposal a follower forwarded (consumer acks): propose it if still leader."""
        if self.group is not None and self.group.is_leader:
            try:
                command = decode_command(data)
            except ValueError:
                return
            fut = self.submit(command)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def expire(self) -> None:
        """The expiry timer fired: the leader proposes the expiry (markers follow from its result)."""
        if self.group is None or not self.group.is_leader or self._stopped:
            return
        fut = self.submit(ExpireMsgs(time.time_ns()))

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            removed = f.result() or []
            if removed and self.stream.config.subject_delete_marker_ttl:
                self.stream._write_markers(removed)

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ compaction

    def _compact(self) -> None:
        group = self.group
        if group is None or self._stopped:
            return
        self._compacting = True
        # RETAIN is in messages: with batch entries, keep as many entries as held that many lately
        retain = max(16, RETAIN * self._entries_since_compact // max(self._applied_since_compact, 1))
        self._applied_since_compact = 0
        self._entries_since_compact = 0
        mark = group.applied
        waiter = self.stream.store.sync()

        def synced(_fut: Any = None) -> None:
            self._compacting = False
            if self._stopped or group.stopped:
                return
            upto = mark - retain
            if upto > 0:
                group.compact(upto)

        if isinstance(waiter, asyncio.Future):
            waiter.add_done_callback(synced)
        else:

            async def wait() -> None:
                await waiter
                synced()

            self.server.loop.create_task(wait())

    # ------------------------------------------------------------------ catch-up

    async def _pull(self, leader: str, start: int, last: int) -> None:
        """Fetch [start, last] from the leader in batches, applying each as it arrives."""
        loop = self.server.loop
        nxt = start
        while nxt <= last and not self._stopped:
            waiter: asyncio.Future[int] = loop.create_future()
            self._catchup = {"waiter": waiter, "last": last}
            self.coordinator.transport.send_control(
                leader or self.leader_peer,
                "catchup",
                {"group": self.group_name, "start": nxt, "last": last},
            )
            try:
                nxt = await asyncio.wait_for(waiter, CATCHUP_TIMEOUT)
            except TimeoutError:
                leader = self.group.leader if self.group is not None else leader
                continue
            finally:
                self._catchup = None

    def serve_catchup(self, peer: str, start: int, last: int) -> None:
        """Send `peer` the stored messages from `start` (one batch), telling it where to go on."""
        store = self.stream.store
        out = bytearray()
        seq = start
        size = 0
        while seq <= last and size < CATCHUP_BYTES:
            msg = store.load_next_msg(b">", seq)
            if msg is None or msg.seq > last:
                seq = last + 1
                break
            uvarint(msg.seq, out)
            uvarint(msg.ts & ((1 << 64) - 1), out)
            for part in (msg.subject, msg.hdr, msg.data):
                uvarint(len(part), out)
                out += part
            size += len(msg.subject) + len(msg.hdr) + len(msg.data) + 16
            seq = msg.seq + 1
        head = bytearray()
        uvarint(seq, head)
        self.coordinator.transport.send_catchup(peer, self.group_name, bytes(head) + bytes(out))

    def _on_catchup_batch(self, payload: bytes) -> None:
        pending = self._catchup
        if pending is None:
            return
        stream = self.stream
        try:
            nxt, pos = read_uvarint(payload, 0)
            while pos < len(payload):
                seq, pos = read_uvarint(payload, pos)
                ts, pos = read_uvarint(payload, pos)
                if ts >= 1 << 63:
                    ts -= 1 << 64
                subject, pos = _read_bytes(payload, pos)
                hdr, pos = _read_bytes(payload, pos)
                data, pos = _read_bytes(payload, pos)
                state = stream.store.state()
                if seq <= state.last_seq:
                    continue
                if seq > state.last_seq + 1:
                    if not state.messages:
                        stream.execute_local(PurgeMsgs(None, seq=seq))
                    else:
                        for _ in range(seq - state.last_seq - 1):
                            stream.execute_local(SkipMsg(ts))
                ttl = H.stored_ttl(hdr) if stream.config.allow_msg_ttl else 0
                stream.execute_local(StoreMsg(subject, hdr, data, ts, ttl, H.get_header(hdr, H.MSG_ID) or b""))
        except (ValueError, DiscardNewError) as exc:
            self.server.logger.warn(f"JetStream stream '{self.jsa.name} > {self.name}' catch-up batch dropped: {exc}")
            return
        waiter = pending["waiter"]
        if not waiter.done():
            waiter.set_result(nxt)

    # ------------------------------------------------------------------ consumers

    def consumer_gone(self, name: str) -> None:
        """A consumer of this stream was deleted here (an ephemeral's inactivity): the meta group
        forgets it (a delete that came from the meta group finds it already gone there)."""
        sa = self.coordinator.state.stream(self.jsa.name, self.name)
        if sa is not None and name in sa.consumers:
            self.coordinator.propose_meta_anywhere(
                {"op": "consumer_remove", "account": self.jsa.name, "stream": self.name, "name": name}
            )

    def consumer_views(self) -> list[Any]:
        """For retention (jetstream/retention.py): the stream's consumers that do not run here, as
        this server knows them — a replicated consumer's state as this member holds it, or, with
        no state here (an R1 consumer on another server), a view that needs everything."""
        from jsedge.cluster.consumer import ConsumerView

        sa = self.coordinator.state.stream(self.jsa.name, self.name)
        if sa is None:
            return []
        running = self.stream.consumers if self.stream is not None else {}
        views: list[Any] = []
        for name, ca in sa.consumers.items():
            if name not in running:
                views.append(ConsumerView(ca.config, self.consumer_groups.get(name)))
        return views

    def consumer_count(self) -> int:
        sa = self.coordinator.state.stream(self.jsa.name, self.name)
        return len(sa.consumers) if sa is not None else len(self.stream.consumers)

    # ------------------------------------------------------------------ API answers

    def _respond_waiting(self) -> None:
        waiting, self.waiting_response = self.waiting_response, []
        for respond in waiting:
            respond(self)

    def consumer_cluster_info(self) -> dict[str, Any]:
        """CONSUMER.INFO's `cluster` block for a consumer this server runs (consumers are R1 here)."""
        coordinator = self.coordinator
        info: dict[str, Any] = {}
        if coordinator.cluster_name:
            info["name"] = coordinator.cluster_name
        info["leader"] = coordinator.server_name
        return info

    def alternates(self) -> list[dict[str, Any]]:
        """STREAM.INFO's `alternates`: this stream and the account's mirrors of it, with their
        cluster (nats-server's streamAlternates; nothing when there is no mirror)."""
        coordinator = self.coordinator
        cluster = coordinator.cluster_name
        found: list[dict[str, Any]] = []
        for sa in coordinator.state.account_streams(self.jsa.name):
            mirror = sa.config.get("mirror") if isinstance(sa.config, dict) else None
            if sa.name == self.name or (isinstance(mirror, dict) and mirror.get("name") == self.name):
                entry: dict[str, Any] = {"name": sa.name}
                if self.jsa.domain:
                    entry["domain"] = self.jsa.domain
                entry["cluster"] = cluster
                found.append(entry)
        if len(found) < 2:
            return []
        found.sort(key=lambda e: (e["name"] != self.name, e["name"]))
        return found

    def _advise(self, event: str, kind: str, fields: list[tuple[str, Any]]) -> None:
        """STREAM.LEADER_ELECTED / STREAM.QUORUM_LOST, as nats-server sends them."""
        from jsedge.cluster.report import advisory_peers
        from jsedge.jetstream import advisory

        if self.group is None or self.stream is None:
            return
        coordinator = self.coordinator
        advisory.leader_event(
            self.server,
            self.stream.account,
            coordinator.system_account,
            f"{advisory.ADVISORY_PREFIX}STREAM.{event}.{self.name}",
            kind,
            [("stream", self.name), *fields, ("replicas", advisory_peers(coordinator, self.group))],
            domain=self.stream.host.domain,
        )

    def cluster_info(self) -> dict[str, Any]:
        """STREAM.INFO's `cluster` block (spec/clustering.md §4.6), the same on every replica as
        nats-server builds it: `leader_since` only on the leader, every peer but this one listed."""
        from jsedge.cluster.report import group_cluster_info

        group = self.group
        leader_since = int(self.leader_since or 0) if group is not None and group.is_leader else 0
        return group_cluster_info(self.coordinator, group, self.group_name, leader_since)


__all__ = ["ClusteredStream"]
