"""A replicated consumer of a JetStream cluster (layer 6): the Raft group `C-R<n><F|M>-xxxxxxxx` that
replicates one consumer's delivery and ack state (nats-server's clustered consumers).

Every peer of the group keeps the consumer's state in its stream replica's ConsumerStore, beside the
messages, as one node does. Only the group's leader runs the `Consumer` (delivery, pull requests,
acks, redelivery timers). Its store writes are not written locally: `ReplicatedConsumerStore`
proposes them, and every peer, the leader included, writes them to its store when they commit. The
Raft log's apply is therefore the one write point for deliveries (`update_delivered`), acks
(`update_acks`) and the rarer full states (`update`); the ack-floor rule is the store's
(`store._core.apply_delivered` / `apply_ack`), on every replica.

Leadership: a new leader waits until it applied its whole log, then builds the Consumer from its
store's state (`restore_state`), or, for a group that never recorded a state (a consumer being
created), creates it (start position from its replica of the stream) and answers the create request.
A leader that loses leadership stops its Consumer; deliveries it made that did not commit are made
again by the next leader (at-least-once), and its waiting pull requests expire at the client.

An ack that asked for a reply (AckSync, double ack) is answered only once the ack committed on a
majority (`sync()`): an acknowledged ack is never undone by a failover.

Entry encoding (ours; only jsedge nodes read it): one entry carries the ops one event-loop turn
produced, each a kind byte and uvarints:
  0x01 delivered  consumer seq, stream seq, delivery count, timestamp ns (zigzag)
  0x02 ack        consumer seq, stream seq
  0x03 state      length, then the consumer store's snapshot encoding (`encode_consumer_state`)
A snapshot of the group (log compaction, install-snapshot) is a flag byte (1: a state was
recorded) followed by that same state encoding.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from jsedge.cluster.group import RaftGroup
from jsedge.cluster.types import Entry, SnapshotMeta
from jsedge.jetstream.commands import read_svarint, read_uvarint, svarint, uvarint
from jsedge.store.base import ConsumerState
from jsedge.store.filestore import decode_consumer_state, encode_consumer_state

OP_DELIVERED = 1
OP_ACK = 2
OP_STATE = 3

#: Compact a consumer group's log after this many applied entries (each a turn's worth of ops).
COMPACT_EVERY = int(os.environ.get("JSEDGE_RAFT_COMPACT_EVERY") or 8192)
#: Seconds between the leader's retention sweeps (interest and work-queue streams).
SWEEP_INTERVAL = 1.0


def encode_delivered(out: bytearray, consumer_seq: int, stream_seq: int, count: int, ts: int) -> None:
    out.append(OP_DELIVERED)
    uvarint(consumer_seq, out)
    uvarint(stream_seq, out)
    uvarint(count, out)
    svarint(ts, out)


def encode_ack(out: bytearray, consumer_seq: int, stream_seq: int) -> None:
    out.append(OP_ACK)
    uvarint(consumer_seq, out)
    uvarint(stream_seq, out)


def encode_state(out: bytearray, state: ConsumerState) -> None:
    blob = encode_consumer_state(state)
    out.append(OP_STATE)
    uvarint(len(blob), out)
    out += blob


def apply_ops(store: Any, data: bytes) -> bool:
    """Write one entry's ops to a ConsumerStore; True when it carried a full state. A malformed
    entry raises ValueError before anything is written."""
    ops: list[tuple[int, tuple[Any, ...]]] = []
    pos = 0
    end = len(data)
    while pos < end:
        op = data[pos]
        pos += 1
        if op == OP_DELIVERED:
            dseq, pos = read_uvarint(data, pos)
            sseq, pos = read_uvarint(data, pos)
            count, pos = read_uvarint(data, pos)
            ts, pos = read_svarint(data, pos)
            ops.append((op, (dseq, sseq, count, ts)))
        elif op == OP_ACK:
            dseq, pos = read_uvarint(data, pos)
            sseq, pos = read_uvarint(data, pos)
            ops.append((op, (dseq, sseq)))
        elif op == OP_STATE:
            length, pos = read_uvarint(data, pos)
            if pos + length > end:
                raise ValueError("state beyond the end")
            try:
                state = decode_consumer_state(data[pos : pos + length])
            except Exception as exc:
                raise ValueError(f"bad consumer state: {exc}") from None
            pos += length
            ops.append((op, (state,)))
        else:
            raise ValueError(f"unknown consumer op {op}")
    full = False
    for op, args in ops:
        if op == OP_DELIVERED:
            store.update_delivered(*args)
        elif op == OP_ACK:
            store.update_acks(*args)
        else:
            store.update(args[0])
            full = True
    return full


class ReplicatedConsumerStore:
    """The ConsumerStore the leader's Consumer writes to: reads and config go to the local store,
    state changes are proposed to the group (one entry per event-loop turn)."""

    def __init__(self, owner: ClusteredConsumer) -> None:
        self.owner = owner
        self.local = owner.store
        self._buf = bytearray()
        self._scheduled = False
        self._last: asyncio.Future[Any] | None = None

    @property
    def deleted(self) -> bool:
        return bool(getattr(self.local, "deleted", False))

    # reads and config: the local replica
    def load(self) -> tuple[bytes | None, ConsumerState]:
        return self.local.load()  # type: ignore[no-any-return]

    def state(self) -> ConsumerState:
        return self.local.state()  # type: ignore[no-any-return]

    def save_config(self, config_json: bytes) -> None:
        self.owner.save_config(config_json)

    def delete(self) -> None:
        self.owner.delete_store()

    # state changes: proposed
    def update(self, state: ConsumerState) -> None:
        encode_state(self._buf, state)
        self._schedule()

    def update_delivered(self, consumer_seq: int, stream_seq: int, delivery_count: int, ts: int) -> None:
        encode_delivered(self._buf, consumer_seq, stream_seq, delivery_count, ts)
        self._schedule()

    def update_acks(self, consumer_seq: int, stream_seq: int) -> None:
        encode_ack(self._buf, consumer_seq, stream_seq)
        self._schedule()

    def sync_blocking(self) -> None:
        self.local.sync_blocking()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.owner.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        data = bytes(self._buf)
        self._buf.clear()
        group = self.owner.group
        if group is None:
            return
        fut = group.propose(data)
        fut.add_done_callback(_retrieve)
        self._last = fut

    def sync(self) -> asyncio.Future[Any]:
        """Done when everything written so far committed on a majority (and applied here); failed
        when leadership moved first."""
        self.flush()
        last = self._last
        if last is not None:
            return last
        fut: asyncio.Future[Any] = self.owner.loop.create_future()
        fut.set_result(None)
        return fut


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class ClusteredConsumer:
    """This server's member of one consumer's Raft group."""

    def __init__(self, coordinator: Any, replica: Any, assignment: Any) -> None:
        self.coordinator = coordinator
        self.server = coordinator.server
        self.loop = self.server.loop
        self.replica = replica
        self.assignment = assignment
        self.name: str = assignment.name
        self.group_name: str = assignment.group
        self.group: RaftGroup | None = None
        self.store: Any = None
        #: the running Consumer (on the leader only)
        self.consumer: Any = None
        self.leader_since = 0
        self.has_state = False
        #: the last create/update request of the assignment, answered by the leader
        self.command: dict[str, Any] = {}
        self._lead_at = -1
        self._stopped = False
        self._applied_since_compact = 0
        self._compacting = False
        self._sweep_timer: Any = None
        self._stepping_down = False

    # ------------------------------------------------------------------ lifecycle

    def _config(self) -> Any:
        from jsedge.jetstream.models import decode_consumer_config

        return decode_consumer_config(self.assignment.config)

    def _memory(self) -> bool:
        return bool(self.replica.stream.config.storage == "memory" or self.assignment.config.get("mem_storage"))

    def open(self, command: dict[str, Any]) -> None:
        from jsedge.store.memstore import MemConsumerStore

        self.command = command
        stream = self.replica.stream
        memory = self._memory()
        self.store = MemConsumerStore(self.name) if memory else stream.store.consumer_store(self.name)
        coordinator = self.coordinator
        me = coordinator.me
        seed = self.assignment.seed
        self.has_state = _holds_state(self.store, self.group_name, seed == me)
        self._write_config()
        peers = tuple(self.assignment.peers)
        seeding = None
        if seed == me:
            # a replica change: this store's state is the new group's snapshot at index 1; it is
            # written and fsynced first (it may hold entries of a retired group's deleted log)
            self.store.sync_blocking()
            seeding = (SnapshotMeta(1, 1, peers), self.snapshot())
        elif seed:
            peers = ()  # learn the membership from the seed (never campaign without its state)
        directory = None if memory else coordinator.group_dir(self.group_name)
        self.group = RaftGroup(self.group_name, directory, me, peers, coordinator.transport, self.server, self)
        first = seed == me if seed else bool(peers) and peers[0] == me
        self.group.start(seed=seeding, campaign=first)

    def _write_config(self) -> None:
        from jsedge.jetstream.models import format_time_ns

        document = {
            "config": self.assignment.config,
            "created": format_time_ns(self.assignment.created),
            "name": self.name,
            "group": self.group_name,
            "state": self.has_state,
        }
        self.save_config(json.dumps(document).encode())

    def save_config(self, config_json: bytes) -> None:
        """The consumer's config file, marked with its group so a restart does not run it alone
        (`recover_consumers` skips it; the meta group brings the group back). A config the leader's
        Consumer changed by itself (CONSUMER.PAUSE) also goes to the meta group, so every member,
        and the next leader, has it."""
        try:
            document = json.loads(config_json)
        except ValueError:
            document = {}
        config = document.get("config")
        if self.is_leader and isinstance(config, dict) and config != self.assignment.config:
            ca = self.assignment
            self.coordinator.propose_meta_anywhere(
                {
                    "op": "consumer",
                    "account": ca.account,
                    "stream": ca.stream,
                    "name": ca.name,
                    "config": config,
                    "group": ca.group,
                    "peers": list(ca.peers),
                    "created": ca.created,
                    "seed": ca.seed,
                }
            )
        document["group"] = self.group_name
        document["state"] = self.has_state
        store = self.store
        if store is not None and not getattr(store, "deleted", False):
            store.save_config(json.dumps(document).encode())

    def delete_store(self) -> None:
        store = self.store
        if store is not None and not getattr(store, "deleted", False):
            try:
                store.delete()
            except Exception:
                pass

    def retire(self, *, keep_store: bool) -> None:
        """The consumer moved to a new group (its stream changed replicas): leave this one, deleting
        its log, and its state unless this server is a member of the new group."""
        self.stop()
        if keep_store and self.store is not None and not getattr(self.store, "deleted", False):
            # what this group applied is in the store's buffer: durable before its log goes
            self.store.sync_blocking()
        if self.group is not None:
            self.group.delete()
        if not keep_store:
            self.delete_store()

    def update(self, assignment: Any, command: dict[str, Any]) -> None:
        """The meta group applied a new config for this consumer (an update)."""
        self.assignment = assignment
        self.command = command
        self._write_config()
        consumer = self.consumer
        if consumer is not None and not consumer.closed:
            self.coordinator.cluster_api.host_consumer(self.replica, assignment, command, clustered=self)
            until = self._config().pause_until
            if until != consumer.config.pause_until:
                consumer.pause(until)  # a pause made on the previous leader

    def stop(self) -> None:
        self._stopped = True
        self._stop_consumer(deleted=False)
        if self.group is not None:
            self.group.stop()

    def delete(self) -> None:
        """The consumer was deleted (meta group): stop everything and remove its state and log."""
        self._stopped = True
        consumer = self.consumer
        self.consumer = None
        stream = self.replica.stream
        if consumer is not None and not consumer.closed and stream is not None:
            if stream.consumers.get(self.name) is consumer:
                from jsedge.jetstream.consumers import delete_consumer

                try:
                    delete_consumer(stream, self.name)
                except Exception:
                    pass
            else:
                consumer.stop(deleted=True)
        if self.group is not None:
            self.group.delete()
        self.delete_store()

    @property
    def is_leader(self) -> bool:
        return self.group is not None and self.group.is_leader

    # ------------------------------------------------------------------ StateMachine

    def apply(self, entry: Entry) -> Any:
        if apply_ops(self.store, entry.data) and not self.has_state:
            self.has_state = True
            self._write_config()
        self._applied_since_compact += 1
        if self._applied_since_compact >= COMPACT_EVERY and not self._compacting:
            self._compact()
        return None

    def applied_upto(self, index: int) -> None:
        if 0 <= self._lead_at <= index:
            self._lead_at = -1
            self.loop.call_soon(self._lead)

    def snapshot(self) -> bytes:
        return bytes((1 if self.has_state else 0,)) + encode_consumer_state(self.store.state())

    async def restore(self, meta: SnapshotMeta, data: bytes, leader: str) -> None:
        if not data:
            return
        self.store.update(decode_consumer_state(data[1:]))
        # durable before the group records the snapshot as installed (and applied): a restart
        # does not apply it again, so a state still in the store's buffer would be lost
        self.store.sync_blocking()
        if data[0] and not self.has_state:
            self.has_state = True
            self._write_config()

    def leader_changed(self, is_leader: bool, leader: str) -> None:
        if self._stopped:
            return
        stream_name = f"'{self.replica.jsa.name} > {self.replica.name} > {self.name}'"
        if is_leader:
            self.leader_since = time.time_ns()
            self.server.logger.info(f"JetStream cluster new consumer leader for {stream_name}")
            self._advise("LEADER_ELECTED", "consumer_leader_elected", [("leader", self.coordinator.server_name)])
            assert self.group is not None
            # run the consumer only once the whole log (up to this term's first entry) is applied
            self._lead_at = self.group.node.last_index
            if self.group.applied >= self._lead_at:
                self._lead_at = -1
                self.loop.call_soon(self._lead)
        else:
            self._lead_at = -1
            if leader:
                self.leader_since = time.time_ns()
            elif self.consumer is not None and not self._stepping_down:
                self.server.logger.warn(f"JetStream cluster consumer {stream_name} has NO quorum, stalled")
                self._advise("QUORUM_LOST", "consumer_quorum_lost", [])
            self._stepping_down = False
            self._stop_consumer(deleted=False)

    def _advise(self, event: str, kind: str, fields: list[tuple[str, Any]]) -> None:
        """CONSUMER.LEADER_ELECTED / CONSUMER.QUORUM_LOST, as nats-server sends them."""
        from jsedge.cluster.report import advisory_peers
        from jsedge.jetstream import advisory

        stream = self.replica.stream
        if self.group is None or stream is None:
            return
        coordinator = self.coordinator
        advisory.leader_event(
            self.server,
            stream.account,
            coordinator.system_account,
            f"{advisory.ADVISORY_PREFIX}CONSUMER.{event}.{stream.name}.{self.name}",
            kind,
            [
                ("stream", stream.name),
                ("consumer", self.name),
                *fields,
                ("replicas", advisory_peers(coordinator, self.group)),
            ],
            domain=stream.host.domain,
        )

    # ------------------------------------------------------------------ the leader's Consumer

    def _lead(self) -> None:
        if self._stopped or not self.is_leader or self.consumer is not None:
            return
        stream = self.replica.stream
        if stream is None:
            return
        store = ReplicatedConsumerStore(self)
        if self.has_state:
            from jsedge.jetstream.consumer import Consumer
            from jsedge.jetstream.consumers import attach

            _raw, state = self.store.load()
            consumer = Consumer(stream, self.name, self._config(), self.assignment.created, store)
            consumer.clustered = self
            consumer.restore_state(state)
            self.consumer = consumer
            attach(stream, consumer)
        else:
            # a consumer being created: the first leader makes it and answers the request
            self.consumer = self.coordinator.cluster_api.host_consumer(
                self.replica, self.assignment, self.command, clustered=self, store=store
            )
        if self.consumer is not None and stream.config.retention != "limits":
            self._sweep()

    def _sweep(self) -> None:
        """Interest and work-queue streams: a message is removed through the stream's own log, by
        its leader, once no consumer needs it; a removal lost to a stream leader change, or not
        decided yet because this server's view of another consumer lagged, is asked for again
        here, until the stream holds nothing this consumer acknowledged that nobody else needs."""
        self._sweep_timer = None
        consumer = self.consumer
        if consumer is None or consumer.closed or self._stopped:
            return
        try:
            consumer.retention_sweep()
        except Exception as exc:
            self.server.logger.warn(f"JetStream consumer '{self.replica.name} > {self.name}' retention sweep: {exc}")
        self._sweep_timer = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _stop_consumer(self, *, deleted: bool) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        consumer = self.consumer
        self.consumer = None
        if consumer is None:
            return
        stream = self.replica.stream
        if stream is not None and stream.consumers.get(self.name) is consumer:
            del stream.consumers[self.name]
        consumer.stop(deleted=deleted)

    def step_down(self, target: str | None = None) -> None:
        """CONSUMER.LEADER.STEPDOWN: hand leadership to `target` (None: any caught-up member)."""
        if self.group is not None and self.group.is_leader:
            self._stepping_down = True
            self.group.transfer(target)

    def info(self, *, with_config: bool = True) -> dict[str, Any]:
        """ConsumerInfo from this member's replica of the state (`/jsz` on a follower; the leader's
        running Consumer answers CONSUMER.INFO)."""
        from jsedge.jetstream.models import format_time_ns

        if self.consumer is not None and not self.consumer.closed:
            return self.consumer.info(dynamic=False, with_config=with_config)  # type: ignore[no-any-return]
        state = self.store.state()
        stream = self.replica.stream
        out: dict[str, Any] = {
            "stream_name": self.replica.name,
            "name": self.name,
            "created": format_time_ns(self.assignment.created),
        }
        if with_config:
            out["config"] = dict(self.assignment.config)
        delivered, floor = state.delivered, state.ack_floor
        out["delivered"] = {"consumer_seq": delivered.consumer_seq, "stream_seq": delivered.stream_seq}
        out["ack_floor"] = {"consumer_seq": floor.consumer_seq, "stream_seq": floor.stream_seq}
        out["num_ack_pending"] = len(state.pending)
        out["num_redelivered"] = sum(1 for seq in state.pending if state.redelivered.get(seq, 1) > 1)
        out["num_waiting"] = 0
        pending = 0
        if stream is not None:
            config = self.assignment.config
            filters = list(config.get("filter_subjects") or []) or [config.get("filter_subject") or ">"]
            for subject in filters:
                pending += stream.store.num_pending(delivered.stream_seq + 1, str(subject).encode())
        out["num_pending"] = pending
        out["cluster"] = self.cluster_info()
        out["ts"] = format_time_ns(time.time_ns())
        return out

    def cluster_info(self) -> dict[str, Any]:
        from jsedge.cluster.report import group_cluster_info

        group = self.group
        leader_since = int(self.leader_since or 0) if group is not None and group.is_leader else 0
        return group_cluster_info(self.coordinator, group, self.group_name, leader_since)

    # ------------------------------------------------------------------ log compaction

    def _compact(self) -> None:
        group = self.group
        stream = self.replica.stream
        if group is None or self._stopped or stream is None:
            return
        self._compacting = True
        self._applied_since_compact = 0
        mark = group.applied
        waiter = stream.store.sync()

        def synced(_fut: Any = None) -> None:
            self._compacting = False
            if self._stopped or group.stopped:
                return
            group.compact(mark)

        if isinstance(waiter, asyncio.Future):
            waiter.add_done_callback(synced)
        else:

            async def wait() -> None:
                try:
                    await waiter
                except Exception:
                    self._compacting = False
                    return
                synced()

            self.loop.create_task(wait())


def _filters(config: dict[str, Any]) -> list[bytes]:
    subjects = config.get("filter_subjects") or [config.get("filter_subject") or ""]
    return [str(f).encode() for f in subjects if f and f != ">"]


class ConsumerView:
    """A consumer that does not run here, as retention asks it (`matches_subject`, `needs_ack`):
    a replicated consumer led elsewhere answers from this member's replica of its state (which may
    lag the leader's: that only makes it say "needed" for longer); with no state here (`member`
    None: an R1 consumer on another server) every message it matches is needed."""

    def __init__(self, config: dict[str, Any], member: ClusteredConsumer | None = None) -> None:
        from jsedge.subjects import subject_matches

        self._filters = _filters(config)
        self._matches = subject_matches
        self._member = member if member is not None and member.store is not None else None
        self._state: ConsumerState | None = None  # read on the first needs_ack
        self._floor_only = config.get("ack_policy") in ("none", "all")

    def matches_subject(self, subject: bytes) -> bool:
        return not self._filters or any(self._matches(f, subject) for f in self._filters)

    def needs_ack(self, seq: int) -> bool:
        if self._member is None:
            return True
        state = self._state
        if state is None:
            state = self._state = self._member.store.state()
        if seq <= state.ack_floor.stream_seq:
            return False
        if self._floor_only or seq > state.delivered.stream_seq:
            return True
        return seq in state.pending


def _holds_state(store: Any, group: str, seeding: bool) -> bool:
    """Does this consumer store hold a state to continue from? Its config file says so: written
    by this group (with `state` once one was recorded), by an R1 consumer (always), or by an earlier
    group when this server seeds the new one."""
    raw, _state = store.load()
    if raw is None:
        return False
    try:
        document = json.loads(raw)
    except ValueError:
        return False
    owner = document.get("group") or ""
    return bool(document.get("state", True)) and (not owner or owner == group or seeding)


def run_local(coordinator: Any, replica: Any, ca: Any, command: dict[str, Any] | None = None) -> Any:
    """Run an R1 consumer on this server (the one it is placed on): continue from the state its
    store holds here (a restart, a replica change that made it R1), else create it."""
    from jsedge.jetstream.consumer import Consumer
    from jsedge.jetstream.consumers import attach
    from jsedge.jetstream.models import decode_consumer_config

    stream = replica.stream
    if ca.name in stream.consumers:
        return coordinator.cluster_api.host_consumer(replica, ca, command or {})
    memory = stream.config.storage == "memory" or ca.config.get("mem_storage")
    if not memory:  # durable or ephemeral: both come back with their state, as nats-server's
        store = stream.store.consumer_store(ca.name)
        if _holds_state(store, "", True):
            _raw, state = store.load()
            consumer = Consumer(stream, ca.name, decode_consumer_config(ca.config), ca.created, store)
            consumer.restore_state(state)
            attach(stream, consumer)
            return consumer
    return coordinator.cluster_api.host_consumer(replica, ca, command or {})


__all__ = ["ClusteredConsumer", "ReplicatedConsumerStore", "apply_ops", "run_local"]
