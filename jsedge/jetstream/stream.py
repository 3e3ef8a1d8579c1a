"""A JetStream stream (layer 4): capture, the publish path, and the one `apply()` for every mutation.

Publishes on the stream's subjects arrive through internal subscriptions and run the checks of
spec/streams.md §4 in nats-server's order (transform, sealed, expected-* headers, Nats-Stream-Source,
Msg-Id dedup, rollup, TTL, sizes, interest) before a `StoreMsg` command is built. Every mutation —
store, skip, delete, purge, expiry, config change — is a command object passed to `apply()`, so the
same commands can later be replicated by Raft and applied on followers; side effects that only the
leader performs (PubAck, republish, delete-marker scheduling) stay outside `apply()`.

Consumers are the next layer of work: `consumers` holds them and `has_interest()` / `on_stored` are
the hooks interest/workqueue retention and delivery will use. May import layers 0-3 and jetstream.
"""

from __future__ import annotations

import asyncio
import marshal
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsedge import gojson
from jsedge.errors import JSError, go_quote, js_error
from jsedge.jetstream import headers as H
from jsedge.jetstream.batch import AtomicBatches, FastBatches, Staged

# the commands (the only way to change a stream) live in commands.py, with their byte encoding
from jsedge.jetstream.commands import (
    Command,
    DeleteMsg,
    ExpireMsgs,
    PurgeMsgs,
    SkipMsg,
    StoreMsg,
    UpdateConfig,
)
from jsedge.jetstream.host import ServerHandle
from jsedge.jetstream.ingest import ingest_plain
from jsedge.jetstream.models import NS, StreamConfig, encode, format_time_ns
from jsedge.jetstream.retention import consumers_of
from jsedge.jetstream.schedule import (
    SCHEDULE_ROLLUP,
    SCHEDULE_SOURCE,
    SCHEDULE_TARGET,
    SCHEDULE_TTL,
    PatternError,
    Scheduler,
    load_zone,
    next_fire,
)
from jsedge.jetstream.streamconfig import with_dynamic_metadata
from jsedge.store.base import (
    DiscardNewError,
    DiscardPolicy,
    StorageType,
    StoreConfig,
    StoredMsg,
    StreamState,
    StreamStore,
)
from jsedge.subjects import subject_matches, subjects_overlap, valid_literal_subject
from jsedge.transform import SubjectTransform

MAX_HEADER_SIZE = 65535


def store_config(config: StreamConfig) -> StoreConfig:
    return StoreConfig(
        name=config.name,
        storage=StorageType.MEMORY if config.storage == "memory" else StorageType.FILE,
        max_msgs=config.max_msgs,
        max_bytes=config.max_bytes,
        max_age_ns=config.max_age,
        max_msgs_per_subject=config.max_msgs_per_subject,
        discard=DiscardPolicy.NEW if config.discard == "new" else DiscardPolicy.OLD,
        discard_new_per_subject=config.discard_new_per_subject,
        first_seq=config.first_seq or 1,
        compression=config.compression or "none",
    )


def state_to_json(state: StreamState, consumer_count: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messages": state.messages,
        "bytes": state.bytes,
        "first_seq": state.first_seq,
        "first_ts": format_time_ns(state.first_ts),
        "last_seq": state.last_seq,
        "last_ts": format_time_ns(state.last_ts),
    }
    if state.num_subjects:
        out["num_subjects"] = state.num_subjects
    if state.subjects:
        out["subjects"] = {k.decode(): v for k, v in state.subjects.items()}
    if state.num_deleted:
        out["num_deleted"] = state.num_deleted
    if state.deleted:
        out["deleted"] = list(state.deleted)
    out["consumer_count"] = consumer_count
    return out


@dataclass(slots=True)
class PreparedPublish:
    """A checked publish: the commands that store it (a StoreMsg; or a SkipMsg and maybe a rollup
    PurgeMsgs when interest retention finds nobody interested) and what republish needs."""

    commands: list[Command]
    subject: bytes
    hdr: bytes
    data: bytes
    ts: int
    previous: int  # the subject's last sequence before this publish (Nats-Last-Sequence)
    #: a counter stream's new total (the PubAck's `val`), None on other streams
    counter: str | None = None


class Stream:
    """One stream of one account. `host` is the per-account JetStream (manager.AccountJetStream)."""

    def __init__(self, host: Any, config: StreamConfig, store: StreamStore, created: int) -> None:
        self.host = host
        self.server: ServerHandle = host.server
        self.account = host.account
        self.name = config.name
        self.config = config
        self.store = store
        self.created = created
        self.consumers: dict[str, Any] = {}
        #: Msg-Id -> (seq, ts ns), oldest first (timestamps are monotonic per stream).
        self.dedup: dict[bytes, tuple[int, int]] = {}
        self.last_msg_id = b""
        self.subs: list[Any] = []
        self.direct_subs: list[Any] = []
        self.closed = False
        #: open atomic and fast batches (batch.py)
        self.batches = AtomicBatches(self)
        self.fast_batches = FastBatches(self)
        #: message schedules (schedule.py), when the stream allows them
        self.scheduler: Scheduler | None = None
        self._expiry_handle: asyncio.TimerHandle | None = None
        self._expiry_at = 0
        self._mirror: Any = None
        #: Hook for consumers: called after a message is stored (seq, subject).
        self.on_stored: Callable[[int, bytes], None] | None = self._consumers_stored
        #: More hooks of the same shape (mirrors/sources of this stream listen here).
        self.stored_listeners: list[Callable[[int, bytes], None]] = []
        #: (reply, ack body) of publishes stored in this loop turn, acked after one shared fsync.
        self._pending_acks: list[tuple[bytes, bytes]] = []
        self._sync_requested = False
        self._ack_head: tuple[str, str, bytes] | None = None
        self._ack_task: asyncio.Task[None] | None = None
        #: The cluster side of a stream that lives in a JetStream cluster (cluster/stream.py), else None.
        self.replicated: Any = None
        #: (seq, subject) of messages the last apply() removed, for react().
        self.removed: list[tuple[int, bytes | None]] = []
        self._compile()
        store.set_removed_callback(self._on_store_removed)

    # ------------------------------------------------------------------ consumer hooks

    def _consumers_stored(self, seq: int, subject: bytes) -> None:
        if not self.consumers:
            return
        for consumer in list(self.consumers.values()):
            consumer.on_stored(seq, subject)

    def _consumers_removed(self, seq: int, subject: bytes | None) -> None:
        for consumer in list(self.consumers.values()):
            consumer.on_removed(seq, subject)

    def _consumers_purged(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.on_purged()

    # ------------------------------------------------------------------ lifecycle

    def _compile(self) -> None:
        config = self.config
        self.transform = (
            SubjectTransform(config.subject_transform.src, config.subject_transform.dest)
            if config.subject_transform is not None
            else None
        )
        self.republish = (
            SubjectTransform(config.republish.src or ">", config.republish.dest)
            if config.republish is not None
            else None
        )
        # a header-less publish needs no Python-level decision on this stream (ingest.py)
        self.plain = (
            not config.sealed
            and self.transform is None
            and self.republish is None
            and not config.allow_msg_counter
            and not config.allow_msg_schedules
            and config.retention != "interest"
            and config.mirror is None
        )

    def plain_fits(self, size: int) -> bool:
        """Does a header-less publish of `size` bytes on this plain stream pass prepare_publish()'s
        size and resource checks without a look at anything else (no storage limits to count)?"""
        host = self.host
        max_size = self.config.max_msg_size
        return (max_size < 0 or size <= max_size) and host.limits is None and not host.jetstream.explicit_limits

    def start(self) -> None:
        self._subscribe()
        self._rebuild_dedup()
        self._schedule_expiry()
        self._start_schedules()

    def _start_schedules(self) -> None:
        if self.config.allow_msg_schedules and self.scheduler is None and not self.closed:
            self.scheduler = Scheduler(self)
            self.scheduler.rebuild()

    def _subscribe(self) -> None:
        """Subscribe the stream's subjects (and DIRECT.GET). A single node keeps them to itself; in
        a cluster only the stream's leader takes publishes (its subscription is announced to the
        routes, so publishes from any node reach it) and every replica serves DIRECT.GET in one
        cluster-wide queue group."""
        for sub in self.subs + self.direct_subs:
            self.server.unsubscribe_internal(self.account, sub)
        self.subs = []
        self.direct_subs = []
        if self.closed:
            return
        replicated = self.replicated
        routed = replicated is not None
        # with leaf nodes, a stream's subjects are announced across the links too (nats-server's
        # hub does), so a leaf's clients publish into the hub's streams
        leafed = getattr(self.server, "leafnodes", None) is not None
        if replicated is None or replicated.publishing:
            for subject in self.config.subjects or []:
                self.subs.append(
                    self.server.subscribe_internal(
                        self.account, subject.encode(), self._on_publish, routed=routed or leafed
                    )
                )
        if self.config.allow_direct:
            prefix = b"$JS.API.DIRECT.GET." + self.name.encode()
            for direct_subject in (prefix, prefix + b".>"):
                self.direct_subs.append(
                    self.server.subscribe_internal(
                        self.account, direct_subject, self.host.direct_get_callback(self), queue=b"_sys_", routed=routed
                    )
                )

    def stop(self) -> None:
        self.closed = True
        for sub in self.subs + self.direct_subs:
            self.server.unsubscribe_internal(self.account, sub)
        self.subs = []
        self.direct_subs = []
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        if self._mirror is not None:
            self._mirror.stop()
        self.batches.clear()
        self.fast_batches.clear()
        if self.scheduler is not None:
            self.scheduler.stop()

    def _rebuild_dedup(self) -> None:
        """Msg-Ids of stored messages inside the window (nats-server rebuilds the same map). After a
        clean shutdown the file store hands back the map it kept in its index snapshot (taken at
        that close, so it matches the store exactly); otherwise every recent message's headers
        are read."""
        store = self.store
        saved: bytes | None = None
        kept: Any = store
        if hasattr(kept, "save_extra"):  # a file store (a memory store keeps nothing across starts)
            saved, kept.snapshot_extra = kept.snapshot_extra, None
            kept.save_extra = self._dedup_snapshot
        window = self.config.duplicate_window
        state = store.state()
        if state.last_seq == 0:
            return
        last = store.load_prev_msg(state.last_seq)
        if last is not None:
            self.last_msg_id = H.get_header(last.hdr, H.MSG_ID) or b""
        if not window:
            return
        cutoff = time.time_ns() - window
        if saved is not None:
            try:
                entries = marshal.loads(saved)
                for msg_id, seq, ts in entries:
                    if ts >= cutoff:
                        self.dedup[msg_id] = (seq, ts)
                return
            except (ValueError, EOFError, TypeError):
                self.dedup.clear()  # unreadable: read the headers instead
        for seq, ts, hdr in store.headers_since(cutoff):
            msg_id = H.get_header(hdr, H.MSG_ID)
            if msg_id:
                self.dedup.pop(msg_id, None)
                self.dedup[msg_id] = (seq, ts)

    def _dedup_snapshot(self) -> bytes:
        """The Msg-Id window for the store's index snapshot (`_rebuild_dedup` reads it back)."""
        return marshal.dumps([(msg_id, seq, ts) for msg_id, (seq, ts) in self.dedup.items()])

    # ------------------------------------------------------------------ apply

    def execute(self, command: Command) -> Any:
        """Change the stream: `apply()` the command, then `react()` to the result. A replicated
        stream's replicas run the same pair when the command commits: here the command is proposed
        and the result is a future (see cluster/stream.py)."""
        replicated = self.replicated
        if replicated is not None and replicated.group is not None:
            return replicated.submit(command)
        return self.execute_local(command)

    def execute_local(self, command: Command) -> Any:
        """apply() and react() on this replica only (single node; a replica catching up)."""
        old_config = self.config
        result = self.apply(command)
        self.react(command, result, old_config)
        return result

    def apply(self, command: Command) -> Any:
        """Execute one mutation on the stream's replicated state (the store, the Msg-Id map, the
        config). Deterministic given the state and the command: no clock (timestamps are inside
        the commands), no timers, no subscriptions, no notifications — `react()` does those. The
        messages it removes are collected in `self.removed` for `react()`."""
        store = self.store
        if isinstance(command, StoreMsg):
            if command.seq and command.seq <= store.last_seq():
                # replayed from a Raft log after a restart: already stored. Checked, because
                # answering a PubAck for a sequence that holds another message loses the publish:
                # a leader that predicted a sequence already taken gets an error, not an ack.
                stored = store.load_msg(command.seq)
                if (
                    stored is not None
                    and self.config.mirror is None
                    and (stored.ts != command.ts or stored.subject != command.subject)
                ):
                    raise DiscardNewError("sequence mismatch")
                return command.seq
            if command.seq and self.config.mirror is not None and command.seq != store.last_seq() + 1:
                # a replicated mirror's copy carries the origin's sequence: stored there or not at all
                raise DiscardNewError("mirror sequence mismatch")
            ttl_ns = command.ttl * NS if command.ttl > 0 else command.ttl
            seq = store.store_msg(command.subject, command.hdr, command.data, command.ts, ttl_ns)
            self._record_id(command.msg_id, seq, command.ts)
            if command.rollup == "sub":
                store.purge(command.subject, seq=seq)
            elif command.rollup == "all":
                store.purge(None, seq=seq)
            return seq
        if isinstance(command, SkipMsg):
            if command.seq and command.seq <= store.last_seq():
                return command.seq
            if command.seq and self.config.mirror is not None and command.seq != store.last_seq() + 1:
                raise DiscardNewError("mirror sequence mismatch")
            seq = store.skip_msg(command.ts)
            self._record_id(command.msg_id, seq, command.ts)
            return seq
        if isinstance(command, DeleteMsg):
            doomed = store.load_msg(command.seq) if self.consumers else None
            removed = store.remove_msg(command.seq, erase=command.erase)
            if removed and self.consumers:
                self.removed.append((command.seq, doomed.subject if doomed is not None else None))
            return removed
        if isinstance(command, PurgeMsgs):
            return store.purge(command.filter, seq=command.seq, keep=command.keep)
        if isinstance(command, ExpireMsgs):
            return store.expire(command.now)
        if isinstance(command, UpdateConfig):
            self.config = command.config
            store.update_config(store_config(command.config))
            self._compile()
            return None
        raise TypeError(f"unknown stream command {command!r}")

    def react(self, command: Command, result: Any, old_config: StreamConfig | None = None) -> None:
        """The effects of an applied command outside the replicated state: consumers and mirrors
        hear of stored and removed messages, subscriptions follow a config change, the expiry
        timer is rescheduled."""
        removed = self.removed
        if removed:
            self.removed = []
            for seq, subject in removed:
                self._consumers_removed(seq, subject)
        if isinstance(command, StoreMsg):
            if command.rollup:
                self._consumers_purged()
            if command.ttl or self.config.max_age:
                self._schedule_expiry()
            if self.scheduler is not None:
                self.scheduler.stored(result, command.subject, command.hdr, command.ts)
            if self.on_stored is not None:
                self.on_stored(result, command.subject)
            for listener in self.stored_listeners:
                listener(result, command.subject)
        elif isinstance(command, PurgeMsgs):
            self._consumers_purged()
        elif isinstance(command, UpdateConfig):
            config = self.config
            if (
                old_config is None
                or old_config.subjects != config.subjects
                or old_config.allow_direct != config.allow_direct
            ):
                self._subscribe()
            self._prune_dedup(time.time_ns())
            self._schedule_expiry()
            self._start_schedules()

    def _on_store_removed(self, seq: int, subject: bytes | None) -> None:
        self.removed.append((seq, subject))

    def _record_id(self, msg_id: bytes, seq: int, ts: int) -> None:
        self.last_msg_id = msg_id
        if msg_id and self.config.duplicate_window:
            self.dedup.pop(msg_id, None)
            self.dedup[msg_id] = (seq, ts)

    def _prune_dedup(self, now: int) -> None:
        cutoff = now - self.config.duplicate_window
        dedup = self.dedup
        while dedup:
            key = next(iter(dedup))
            if dedup[key][1] >= cutoff:
                break
            del dedup[key]

    # ------------------------------------------------------------------ publish path

    @property
    def trace_stream(self) -> str:
        """The name message tracing reports for a publish this stream takes (routing/tracing.py)."""
        return self.name

    def _on_publish(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if hdr_len < 0 and ingest_plain(self, subject, reply, msg):
            return  # stored and its PubAck queued, without a Python-level decision (ingest.py)
        if hdr_len >= 0:
            hdr, data = bytes(msg[:hdr_len]), bytes(msg[hdr_len:])
        else:
            hdr, data = b"", bytes(msg)
        try:
            self.process_publish(subject, reply, hdr, data)
        except Exception:
            self.server.logger.error(f"JetStream stream '{self.account.name} > {self.name}' publish failed")
            import traceback

            self.server.logger.error(traceback.format_exc())
            if reply and not self.config.no_ack:
                self._send_ack(reply, self._ack_error(js_error("JSStreamStoreFailedF", err="internal error")))

    def process_publish(self, subject: bytes, reply: bytes, hdr: bytes, data: bytes, sourced: bool = False) -> None:
        """streams.md §4 for one inbound message; sends the PubAck when there is a reply."""
        if not sourced:
            fast = len(reply) > 4 and reply.endswith(H.FAST_BATCH_SUFFIX)
            batch_id = H.get_header(hdr, H.BATCH_ID) if hdr and not fast else None
            if fast or batch_id:
                replicated = self.replicated
                if replicated is None or replicated.group is None or replicated.is_leader:
                    if fast:
                        self.fast_batches.receive(subject, reply, hdr, data)
                    elif batch_id:
                        self.batches.receive(batch_id, subject, reply, hdr, data)
                return
        replicated = self.replicated
        if replicated is not None and replicated.group is not None:
            replicated.publish(subject, reply, hdr, data, sourced)
            return
        try:
            result = self._check_and_store(subject, hdr, data, sourced)
        except JSError as exc:
            if reply and not self.config.no_ack:
                self._send_ack(reply, self._ack_error(exc))
            return
        seq, duplicate, counter = result
        if reply and not self.config.no_ack:
            body = self._ack_ok(seq, duplicate, counter)
            if duplicate:
                self._send_ack(reply, body)
            else:
                self._send_ack_after_sync(reply, body)
        elif not duplicate and not self._sync_requested:
            # nobody waits for an ack, but the record must not sit in the block buffer until
            # the next acknowledged write (a sensor publishing once a minute into a stream): one
            # group-commit sync at the end of this loop turn writes and fsyncs it
            self._sync_requested = True
            self.server.loop.call_soon(self._sync_unacked)

    def _check_and_store(self, subject: bytes, hdr: bytes, data: bytes, sourced: bool) -> tuple[int, bool, str | None]:
        """The single-node publish: checks, then the store, then republish and reactions. Returns
        the sequence, whether it was a duplicate, and a counter stream's new total."""
        prepared = self.prepare_publish(subject, hdr, data, sourced)
        if isinstance(prepared, int):
            return prepared, True, None  # a duplicate: the stored message's sequence
        commands = prepared.commands
        command = commands[0]
        if type(command) is not StoreMsg:  # interest retention with nobody interested: skip (and rollup)
            seq = self.execute(command)
            for command in commands[1:]:
                self.execute(command)
            return seq, False, None
        try:
            seq = self.apply(command)
        except DiscardNewError as exc:
            raise js_error("JSStreamStoreFailedF", err=exc.reason) from None
        self.published(prepared, seq)
        self.react(command, seq)
        for command in commands[1:]:  # a produced message ending its schedule: the schedule's purge
            self.execute(command)
        return seq, False, prepared.counter

    def prepare_publish(self, subject: bytes, hdr: bytes, data: bytes, sourced: bool) -> int | PreparedPublish:
        """streams.md §4's checks for one inbound message against the applied state: the commands
        that store it, or the sequence of the message it duplicates (an int). Raises JSError."""
        config = self.config
        store = self.store
        # 1. transform
        if self.transform is not None:
            mapped = self.transform.apply(subject)
            if mapped is not None:
                subject = mapped
        if hdr:
            hdr = H.clean_inbound(hdr)
        # 3. sealed
        if config.sealed:
            raise js_error("JSStreamSealedErr")
        # 15./16. sizes: observed on nats-server 2.15.1 to come before every header check
        if config.max_msg_size >= 0 and len(hdr) + len(data) > config.max_msg_size:
            raise js_error("JSStreamMessageExceedsMaximumErr")
        if len(hdr) > MAX_HEADER_SIZE:
            raise js_error("JSStreamHeaderExceedsMaximumErr")
        if hdr:
            # nats-server reads every header with getHeader/sliceHeader: an empty value is no value.
            # 4. counters (ADR-49): an increment only on a counter stream, with no payload and
            # none of the headers that expect a state (a sourced message is stored as it came)
            incr = H.get_header(hdr, H.INCR) or None
            if incr is not None:
                _check_incr(config, hdr, data, incr, sourced)
            # 5. expected stream
            expected = H.get_header(hdr, H.EXPECTED_STREAM)
            if expected and expected.decode("utf-8", "replace") != self.name:
                raise js_error("JSStreamNotMatchErr")
            # 6. TTL disabled (an unparsable TTL is reported later, as 10165)
            ttl_value = H.get_header(hdr, H.TTL) or None
            if ttl_value is not None and not sourced and not config.allow_msg_ttl and _ttl_or_zero(ttl_value):
                raise js_error("JSMessageTTLDisabledErr")
            # 7. expected last subject sequence
            subj_seq = H.get_header(hdr, H.EXPECTED_LAST_SUBJ_SEQ)
            subj_filter = H.get_header(hdr, H.EXPECTED_LAST_SUBJ_SEQ_SUBJ)
            if subj_seq:
                wanted = H.header_int(subj_seq)
                check_subject = subj_filter if subj_filter else subject
                last = store.load_last_msg(check_subject)
                actual = last.seq if last is not None else 0
                if wanted != actual:
                    raise js_error("JSStreamWrongLastSequenceErrF", seq=actual)
            elif subj_filter:
                raise js_error("JSStreamExpectedLastSeqPerSubjectInvalid")
            # 8. expected last sequence
            last_seq_value = H.get_header(hdr, H.EXPECTED_LAST_SEQ)
            if last_seq_value:
                actual = store.state().last_seq
                if H.header_int(last_seq_value) != actual:
                    raise js_error("JSStreamWrongLastSequenceErrF", seq=actual)
            # 9. schedules (ADR-51, schedule.py)
            purge_schedule = None
            if not sourced:
                hdr, purge_schedule = self._check_schedules(hdr, subject)
            elif config.mirror is None:
                purge_schedule = _schedule_purge(hdr)
            # 10. Nats-Stream-Source only on sourced messages
            if not sourced and H.get_header(hdr, H.STREAM_SOURCE):
                raise js_error("JSMessageSourceHdrNotAllowedErr")
            # 11. dedup
            msg_id = H.get_header(hdr, H.MSG_ID) or b""
            now = time.time_ns()
            if msg_id and config.duplicate_window and config.mirror is None:
                self._prune_dedup(now)
                entry = self.dedup.get(msg_id)
                if entry is not None and entry[1] >= now - config.duplicate_window:
                    return entry[0]
            # 12. expected last msg id
            expected_id = H.get_header(hdr, H.EXPECTED_LAST_MSG_ID)
            if expected_id and expected_id != self.last_msg_id:
                raise js_error("JSStreamWrongLastMsgIDErrF", id=self.last_msg_id.decode("utf-8", "replace"))
            # 13. rollup
            rollup = ""
            rollup_value = H.get_header(hdr, H.ROLLUP)
            if rollup_value:
                if (not config.allow_rollup_hdrs or config.deny_purge) and not sourced:
                    raise js_error("JSStreamRollupFailedF", err="rollup not permitted")
                rollup = rollup_value.decode("utf-8", "replace").lower()
                if rollup not in ("sub", "all"):
                    raise js_error("JSStreamRollupFailedF", err=f"rollup value invalid: {go_quote(rollup)}")
        else:
            ttl_value = None
            msg_id = b""
            rollup = ""
            incr = None
            purge_schedule = None
            now = time.time_ns()
        counter = None
        if config.allow_msg_counter:
            if incr is None:
                raise js_error("JSMessageIncrMissingErr")
            hdr, data, counter = self._count(subject, hdr, data, incr)
        # 17. server-wide resources
        self.host.check_resources(self, store.msg_size(subject, hdr, data))
        # 18. interest retention with nobody interested: consume the sequence only
        if config.retention == "interest" and not self.has_interest(subject):
            skip: list[Command] = [SkipMsg(now, msg_id)]
            if rollup:
                # the rollup purges up to the skipped sequence (the next one), as nats-server
                skip.append(PurgeMsgs(subject if rollup == "sub" else None, seq=store.state().last_seq + 1))
            return PreparedPublish(skip, subject, hdr, data, now, 0)
        # 20. TTL (nats-server checks that it parses only now, after the checks above)
        ttl = 0
        if ttl_value is not None:
            try:
                ttl = H.parse_ttl(ttl_value)
            except ValueError:
                raise js_error("JSMessageTTLInvalidErr") from None
            marker_ttl = config.subject_delete_marker_ttl // NS
            if marker_ttl and config.max_msgs_per_subject != 1 and 0 < ttl < marker_ttl:
                ttl = marker_ttl
                hdr = H.append_headers(H.remove_header(hdr, H.TTL), [(H.TTL, str(ttl).encode())])
        # republish needs the subject's previous sequence from before the store
        previous = 0
        if self.republish is not None:
            last = store.load_last_msg(subject)
            previous = last.seq if last is not None else 0
        commands: list[Command] = [StoreMsg(subject, hdr, data, now, ttl, msg_id, rollup)]
        if purge_schedule:
            commands.append(PurgeMsgs(purge_schedule))  # the schedule it was produced by ends here
        return PreparedPublish(commands, subject, hdr, data, now, previous, counter)

    def _count(
        self,
        subject: bytes,
        hdr: bytes,
        data: bytes,
        incr: bytes,
        running: dict[bytes, tuple[int, dict[str, dict[str, str]]]] | None = None,
    ) -> tuple[bytes, bytes, str]:
        """A counter stream's publish (ADR-49): the subject's new total becomes the stored payload
        `{"val":"<total>"}`. A message sourced from another counter carries that counter's total:
        it adds the difference from the last total seen from the same origin subject (kept in the
        `Nats-Counter-Sources` header, which every later message of the subject carries on).
        `running` (an atomic batch's staged totals) overrides the stored total and is updated."""
        total = 0
        sources: dict[str, dict[str, str]] = {}
        staged = running.get(subject) if running is not None else None
        if staged is not None:
            total = staged[0]
            sources = {name: dict(subjects) for name, subjects in staged[1].items()}
        else:
            last = self.store.load_last_msg(subject)
            if last is not None:
                total = _counter_value(last.data)
                raw = H.get_header(last.hdr, H.COUNTER_SOURCES) if last.hdr else None
                if raw:
                    sources = _counter_sources(raw)
        delta = int(incr)
        origin_header = H.get_header(hdr, H.STREAM_SOURCE)
        if origin_header:
            fields = origin_header.decode("utf-8", "replace").split(" ")
            origin = fields[0]
            origin_subject = fields[4] if len(fields) >= 5 else subject.decode("utf-8", "replace")
            value = _counter_value(data)
            seen = sources.setdefault(origin, {})
            delta = value - _big_int_or_zero(seen.get(origin_subject, ""))
            seen[origin_subject] = str(value)
            hdr = H.set_header(hdr, H.INCR, str(delta).encode())
        total += delta
        value_text = str(total)
        data = b'{"val":"%s"}' % value_text.encode()
        if sources:
            ordered = {name: dict(sorted(subjects.items())) for name, subjects in sorted(sources.items())}
            hdr = H.set_header(hdr, H.COUNTER_SOURCES, gojson.dumps(ordered).encode())
        max_payload = self.server.config.limits.max_payload
        if len(hdr) > max_payload or len(data) > max_payload - len(hdr):
            raise js_error("JSStreamMessageExceedsMaximumErr")
        if self.config.max_msg_size >= 0 and len(hdr) + len(data) > self.config.max_msg_size:
            raise js_error("JSStreamMessageExceedsMaximumErr")
        if running is not None:
            running[subject] = (total, sources)
        return hdr, data, value_text

    def published(self, prepared: PreparedPublish, seq: int) -> None:
        """After the store of a publish (on the node that took it): 24. republish."""
        if self.republish is not None:
            self._republish(prepared.subject, prepared.hdr, prepared.data, seq, prepared.ts, prepared.previous)

    # ------------------------------------------------------------------ atomic batches (batch.py)

    def commit_batch(self, batch_id: str, messages: list[tuple[bytes, bytes, bytes]], reply: bytes) -> None:
        """A committed atomic batch: every message checked against the stream as the ones before
        it leave it, then all stored in one go (one Raft entry on a replicated stream), one PubAck."""
        replicated = self.replicated
        if replicated is not None and replicated.group is not None:
            replicated.commit_batch(batch_id, messages, reply)
            return
        try:
            prepared = self.prepare_batch(messages)
        except JSError as exc:
            if reply:
                self._send_ack(reply, self._ack_error(exc))
            return
        commands = [command for item in prepared for command in item.commands]
        try:
            results = self.apply_atomic(commands)
        except DiscardNewError as exc:
            if reply:
                self._send_ack(reply, self._ack_error(js_error("JSStreamStoreFailedF", err=exc.reason)))
            return
        self.batch_applied(prepared, commands, results)
        if reply:
            self._send_ack_after_sync(
                reply, self._ack_ok(self.store.last_seq(), False, batch=(batch_id, len(messages)))
            )
        else:
            _ = self.store.sync()  # unacked, but written out at once: a batch half in a buffer would be dropped

    def store_fast(self, subject: bytes, hdr: bytes, data: bytes, done: Callable[[Any], None]) -> None:
        """One message of a fast batch, stored as a plain publish without its own PubAck; `done`
        hears (seq, duplicate), or the JSError that refused it (or, on a replicated stream, the
        exception that lost it)."""
        replicated = self.replicated
        if replicated is not None and replicated.group is not None:

            def notify(result: Any) -> None:
                done((result, False) if isinstance(result, int) else result)

            replicated.publish(subject, b"", hdr, data, False, notify)
            return
        try:
            seq, duplicate, _counter = self._check_and_store(subject, hdr, data, False)
        except JSError as exc:
            done(exc)
            return
        done((seq, duplicate))

    def batch_applied(self, prepared: list[PreparedPublish], commands: list[Command], results: list[Any]) -> None:
        """After an atomic batch's apply on the node that took it: reactions, then republish."""
        for command, result in zip(commands, results, strict=True):
            self.react(command, result)
        self.batch_published(prepared, results)

    def batch_published(self, prepared: list[PreparedPublish], results: list[Any]) -> None:
        """Republish an applied atomic batch's stored messages (`results`: one per command)."""
        index = 0
        for item in prepared:
            if isinstance(item.commands[0], StoreMsg):
                self.published(item, results[index])
            index += len(item.commands)

    def apply_atomic(self, commands: list[Command]) -> list[Any]:
        """apply() every command of an atomic batch, the store told first which sequences the batch
        takes: a file store that finds the batch cut short on restart drops what it has of it. A
        command replayed from a Raft log (its stated sequence already stored) is not part of it."""
        store = self.store
        last = store.last_seq()
        taking = sum(1 for c in commands if isinstance(c, (StoreMsg, SkipMsg)) and not (c.seq and c.seq <= last))
        if taking:
            store.begin_batch(last + 1, last + taking)
        results: list[Any] = []
        try:
            for command in commands:
                results.append(self.apply(command))
        except BaseException:
            if taking:
                store.end_batch(complete=False)
            raise
        if taking:
            store.end_batch()
        return results

    def prepare_batch(self, messages: list[tuple[bytes, bytes, bytes]]) -> list[PreparedPublish]:
        """An atomic batch's checks (nats-server's checkMsgHeadersPreClusteredProposal, in its order):
        each message as prepare_publish() would check it, against the stream as the messages before
        it would leave it (`Staged`). Raises the first message's JSError that fails."""
        staged = Staged()
        return [self._check_batch_message(staged, subject, hdr, data) for subject, hdr, data in messages]

    def _check_batch_message(self, staged: Staged, subject: bytes, hdr: bytes, data: bytes) -> PreparedPublish:
        config = self.config
        store = self.store
        if self.transform is not None:
            mapped = self.transform.apply(subject)
            if mapped is not None:
                subject = mapped
        if hdr:
            hdr = H.clean_inbound(hdr)
        if H.get_header(hdr, H.EXPECTED_LAST_MSG_ID):
            raise js_error("JSAtomicPublishUnsupportedHeaderBatchErr", header="Nats-Expected-Last-Msg-Id")
        if config.sealed:
            raise js_error("JSStreamSealedErr")
        if config.max_msg_size >= 0 and len(hdr) + len(data) > config.max_msg_size:
            raise js_error("JSStreamMessageExceedsMaximumErr")
        if len(hdr) > MAX_HEADER_SIZE:
            raise js_error("JSStreamHeaderExceedsMaximumErr")
        next_seq = store.last_seq() + staged.count + 1
        incr = H.get_header(hdr, H.INCR) or None
        ttl_value = H.get_header(hdr, H.TTL) or None
        msg_id = H.get_header(hdr, H.MSG_ID) or b""
        rollup = ""
        purge_schedule = None
        now = time.time_ns()
        if hdr:
            if incr is not None:
                _check_incr(config, hdr, data, incr, False)
            expected = H.get_header(hdr, H.EXPECTED_STREAM)
            if expected and expected.decode("utf-8", "replace") != self.name:
                raise js_error("JSStreamNotMatchErr")
            if ttl_value is not None:
                try:
                    ttl_check = H.parse_ttl(ttl_value)
                except ValueError:
                    ttl_check = None
                if ttl_check != 0:
                    if not config.allow_msg_ttl:
                        raise js_error("JSMessageTTLDisabledErr")
                    if ttl_check is None:
                        raise js_error("JSMessageTTLInvalidErr")
            if msg_id:
                if msg_id in staged.msg_ids:
                    raise js_error("JSAtomicPublishContainsDuplicateMessageErr")
                if config.duplicate_window and config.mirror is None:
                    self._prune_dedup(now)
                    entry = self.dedup.get(msg_id)
                    if entry is not None and entry[1] >= now - config.duplicate_window:
                        raise js_error("JSAtomicPublishContainsDuplicateMessageErr")
                staged.msg_ids.add(msg_id)
            if H.get_header(hdr, H.STREAM_SOURCE):
                raise js_error("JSMessageSourceHdrNotAllowedErr")
        counter = None
        if config.allow_msg_counter:
            if incr is None:
                raise js_error("JSMessageIncrMissingErr")
            hdr, data, counter = self._count(subject, hdr, data, incr, staged.counters)
        if hdr:
            last_seq_value = H.get_header(hdr, H.EXPECTED_LAST_SEQ)
            if last_seq_value:
                if H.header_int(last_seq_value) != next_seq - 1:
                    raise js_error("JSStreamWrongLastSequenceErrF", seq=next_seq - 1)
                if staged.inflight:
                    raise js_error("JSStreamWrongLastSequenceConstantErr")
            subj_seq = H.get_header(hdr, H.EXPECTED_LAST_SUBJ_SEQ)
            subj_filter = H.get_header(hdr, H.EXPECTED_LAST_SUBJ_SEQ_SUBJ)
            if subj_seq:
                wanted = H.header_int(subj_seq)
                check_subject = subj_filter if subj_filter else subject
                if check_subject in staged.inflight:
                    raise js_error("JSStreamWrongLastSequenceConstantErr")
                found = staged.expected.get(check_subject)
                if found is None:
                    last = store.load_last_msg(check_subject)
                    found = last.seq if last is not None else 0
                if wanted != found:
                    raise js_error("JSStreamWrongLastSequenceErrF", seq=found)
                staged.expected[check_subject] = found
            elif subj_filter:
                raise js_error("JSStreamExpectedLastSeqPerSubjectInvalid")
            hdr, purge_schedule = self._check_schedules(hdr, subject, staged)
            rollup_value = H.get_header(hdr, H.ROLLUP)
            if rollup_value:
                if not config.allow_rollup_hdrs or config.deny_purge:
                    raise js_error("JSStreamRollupFailedF", err="rollup not permitted")
                rollup = rollup_value.decode("utf-8", "replace").lower()
                if rollup == "sub":
                    if subject in staged.inflight:
                        raise js_error("JSStreamRollupFailedF", err="batch rollup sub invalid")
                elif rollup == "all":
                    if staged.inflight:
                        raise js_error("JSStreamRollupFailedF", err="batch rollup all invalid")
                else:
                    raise js_error("JSStreamRollupFailedF", err=f"rollup value invalid: {go_quote(rollup)}")
        size = store.msg_size(subject, hdr, data)
        previous_in_batch = staged.inflight.get(subject)
        if previous_in_batch is None:
            previous_in_batch = staged.inflight[subject] = [0, 0, 0]
        previous_in_batch[0] += 1
        previous_in_batch[1] += size
        staged.msgs += 1
        staged.size += size
        if config.discard == "new":
            if config.max_msgs > 0 or config.max_bytes > 0:
                state = store.state()
                if config.max_msgs > 0 and state.messages + staged.msgs > config.max_msgs:
                    raise js_error("JSStreamStoreFailedF", err="maximum messages exceeded")
                if config.max_bytes > 0 and state.bytes + staged.size > config.max_bytes:
                    raise js_error("JSStreamStoreFailedF", err="maximum bytes exceeded")
            if config.discard_new_per_subject and config.max_msgs_per_subject > 0 and not rollup:
                stored = store.subjects_state(subject).get(subject)
                if (stored.msgs if stored is not None else 0) + previous_in_batch[0] > config.max_msgs_per_subject:
                    raise js_error("JSStreamStoreFailedF", err="maximum messages per subject exceeded")
        self.host.check_resources(self, staged.size)
        staged.count += 1
        if config.retention == "interest" and not self.has_interest(subject):
            skip: list[Command] = [SkipMsg(now, msg_id)]
            if rollup:
                skip.append(PurgeMsgs(subject if rollup == "sub" else None, seq=next_seq))
            previous_in_batch[2] = next_seq
            return PreparedPublish(skip, subject, hdr, data, now, 0)
        ttl = 0
        if ttl_value is not None:
            ttl = _ttl_or_zero(ttl_value)
            marker_ttl = config.subject_delete_marker_ttl // NS
            if marker_ttl and config.max_msgs_per_subject != 1 and 0 < ttl < marker_ttl:
                ttl = marker_ttl
                hdr = H.append_headers(H.remove_header(hdr, H.TTL), [(H.TTL, str(ttl).encode())])
        previous = previous_in_batch[2]
        if not previous and self.republish is not None:
            last = store.load_last_msg(subject)
            previous = last.seq if last is not None else 0
        previous_in_batch[2] = next_seq
        if hdr and H.get_header(hdr, H.SCHEDULE):
            staged.schedules.add(subject)
        commands: list[Command] = [StoreMsg(subject, hdr, data, now, ttl, msg_id, rollup)]
        if purge_schedule:
            commands.append(PurgeMsgs(purge_schedule))
        return PreparedPublish(commands, subject, hdr, data, now, previous, counter)

    def _check_schedules(self, hdr: bytes, subject: bytes, staged: Staged | None = None) -> tuple[bytes, bytes | None]:
        """nats-server's checks of the schedule headers of a publish (ADR-51): a schedule's pattern,
        zone, TTL, rollup, target and source (adding `Nats-Rollup: sub` to a schedule), and a
        client's `Nats-Schedule-Next: purge` of a schedule. Returns the headers to store and the
        schedule subject to purge after it (or None)."""
        config = self.config
        allowed = config.allow_msg_schedules
        now = time.time_ns()
        try:
            zone = load_zone(H.get_header(hdr, H.SCHEDULE_TIME_ZONE))
            pattern = (H.get_header(hdr, H.SCHEDULE) or b"").decode("utf-8", "replace")
            try:
                due = next_fire(pattern, zone, now, now)[0]
            except PatternError:
                raise js_error("JSMessageSchedulesPatternInvalidErr") from None
        except JSError:
            if not allowed:
                raise js_error("JSMessageSchedulesDisabledErr") from None
            raise
        if due:
            if not allowed:
                raise js_error("JSMessageSchedulesDisabledErr")
            ttl = H.get_header(hdr, SCHEDULE_TTL) or b""
            if ttl:
                try:
                    H.parse_ttl(ttl)
                except ValueError:
                    raise js_error("JSMessageSchedulesTTLInvalidErr") from None
            if (H.get_header(hdr, SCHEDULE_ROLLUP) or b"sub") != b"sub":
                raise js_error("JSMessageSchedulesRollupInvalidErr")
            if ttl and not config.allow_msg_ttl:
                raise js_error("JSMessageTTLDisabledErr")
            target = H.get_header(hdr, SCHEDULE_TARGET) or b""
            if not target or not valid_literal_subject(target) or target == subject:
                raise js_error("JSMessageSchedulesTargetInvalidErr")
            source = H.get_header(hdr, SCHEDULE_SOURCE) or b""
            if source and (source == target or source == subject or not valid_literal_subject(source)):
                raise js_error("JSMessageSchedulesSourceInvalidErr")
            if not any(subjects_overlap(s.encode(), target) for s in config.subjects or []):
                raise js_error("JSMessageSchedulesTargetInvalidErr")
            if source and not any(subjects_overlap(s.encode(), source) for s in config.subjects or []):
                raise js_error("JSMessageSchedulesSourceInvalidErr")
            rollup = H.get_header(hdr, H.ROLLUP)
            if not rollup:
                hdr = H.append_headers(hdr, [(H.ROLLUP, b"sub")])
            elif rollup != b"sub":
                raise js_error("JSMessageSchedulesRollupInvalidErr")
        following = H.get_header(hdr, H.SCHEDULE_NEXT)
        if following:
            if following != b"purge":
                raise js_error("JSMessageSchedulesSchedulerInvalidErr")
            scheduler = H.get_header(hdr, H.SCHEDULER) or b""
            if not scheduler or scheduler == subject or not valid_literal_subject(scheduler):
                raise js_error("JSMessageSchedulesSchedulerInvalidErr")
            if not allowed:
                raise js_error("JSMessageSchedulesDisabledErr")
            if staged is not None and scheduler in staged.inflight:
                invalid = scheduler not in staged.schedules
            else:
                last = self.store.load_last_msg(scheduler)
                invalid = last is not None and not H.get_header(last.hdr, H.SCHEDULE)
            if invalid:
                raise js_error("JSMessageSchedulesSchedulerInvalidErr")
            return hdr, scheduler
        if H.get_header(hdr, H.SCHEDULER):
            raise js_error("JSMessageSchedulesSchedulerInvalidErr")
        return hdr, None

    def has_interest(self, subject: bytes) -> bool:
        """Interest retention: does any consumer's filter match? (no consumers yet: never; in a
        cluster, consumers running on other servers count too)."""
        for consumer in consumers_of(self) if self.replicated is not None else self.consumers.values():
            matches = getattr(consumer, "matches_subject", None)
            if matches is None or matches(subject):
                return True
        return False

    def _republish(self, subject: bytes, hdr: bytes, data: bytes, seq: int, ts: int, previous: int) -> None:
        assert self.republish is not None and self.config.republish is not None
        dest = self.republish.apply(subject)
        if dest is None:
            return
        from jsedge.subjects import valid_literal_subject

        if not valid_literal_subject(dest):
            return
        pairs = [
            (b"Nats-Stream", self.name.encode()),
            (b"Nats-Subject", subject),
            (b"Nats-Sequence", str(seq).encode()),
            (b"Nats-Time-Stamp", format_time_ns(ts).encode()),
            (b"Nats-Last-Sequence", str(previous).encode()),
        ]
        body = data
        if self.config.republish.headers_only:
            pairs.append((b"Nats-Msg-Size", str(len(data)).encode()))
            body = b""
        self.server.send_internal(self.account, dest, b"", H.append_headers(hdr, pairs), body)

    # ------------------------------------------------------------------ acks

    def _ack_ok(
        self, seq: int, duplicate: bool, counter: str | None = None, batch: tuple[str, int] | None = None
    ) -> bytes:
        head = self.ack_head()
        if duplicate:
            return b"%s%d%s" % (head, seq, b',"duplicate": true}')
        if batch is not None:
            return b'%s%d,"batch":%s,"count":%d}' % (head, seq, gojson.dumps(batch[0]).encode(), batch[1])
        if counter is not None:
            return b'%s%d,"val":"%s"}' % (head, seq, counter.encode())
        return b"%s%d}" % (head, seq)

    def ack_head(self) -> bytes:
        """A PubAck's JSON up to its sequence: `{"stream":"NAME"[,"domain":"D"],"seq":` (cached)."""
        domain = self.host.domain
        cached = self._ack_head
        if cached is None or cached[0] != domain or cached[1] != self.name:
            name = gojson.dumps(self.name)
            head = f'{{"stream":{name}'
            if domain:
                head += f',"domain":{gojson.dumps(domain)}'
            cached = self._ack_head = (domain, self.name, (head + ',"seq":').encode())
        return cached[2]

    def _ack_error(self, exc: JSError) -> bytes:
        error = gojson.dumps(exc.to_json())
        domain = self.host.domain
        text = f'{{"error":{error},"stream":{gojson.dumps(self.name)}'
        if domain:
            text += f',"domain":{gojson.dumps(domain)}'
        return (text + ',"seq":0}').encode()

    def _send_ack(self, reply: bytes, body: bytes) -> None:
        self.server.send_internal(self.account, reply, b"", b"", body)

    def _send_ack_after_sync(self, reply: bytes, body: bytes) -> None:
        """Ack only once the write is durable (group commit in the file store).

        With a file store that fsyncs before acking, acks are queued and one `store.sync()` is
        requested for all publishes of the current event-loop turn (at its end), so the buffered
        records are written with one `os.write` and covered by one fsync future; the acks are sent,
        in order, from that future's done callback. Stores whose `sync()` resolves at once (memory,
        `sync_interval`) ack immediately, as before."""
        if getattr(self.store, "sync_policy", "interval") == "interval":
            waiter = self.store.sync()
            if isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.add_done_callback(lambda fut: self._acks_synced(fut, [(reply, body)]))
            else:
                self._send_ack(reply, body)
            return
        pending = self._pending_acks
        pending.append((reply, body))
        if len(pending) == 1:
            self.server.loop.call_soon(self._sync_pending_acks)

    def _sync_unacked(self) -> None:
        self._sync_requested = False
        if self.closed:
            return
        waiter = self.store.sync()
        if isinstance(waiter, asyncio.Future):
            waiter.add_done_callback(_retrieved)

    def _sync_pending_acks(self) -> None:
        batch = self._pending_acks
        if not batch:
            return
        self._pending_acks = []
        store = self.store
        if getattr(store, "_closed", False):
            return  # stream stopped/deleted meanwhile: its fsync future would never resolve either
        try:
            waiter = store.sync()
        except Exception:
            self.server.logger.error(f"JetStream stream '{self.account.name} > {self.name}' publish failed")
            import traceback

            self.server.logger.error(traceback.format_exc())
            error = self._ack_error(js_error("JSStreamStoreFailedF", err="internal error"))
            for reply, _body in batch:
                self._send_ack(reply, error)
            return
        if isinstance(waiter, asyncio.Future):
            if waiter.done():
                self._acks_synced(waiter, batch)
            else:
                waiter.add_done_callback(lambda fut: self._acks_synced(fut, batch))
            return
        if asyncio.iscoroutine(waiter):

            async def wait() -> None:
                try:
                    await waiter
                except Exception as exc:
                    self._acks_failed(exc, batch)
                    return
                for reply, body in batch:
                    self._send_ack(reply, body)

            self._ack_task = self.server.loop.create_task(wait())  # kept referenced until it ends
            return
        for reply, body in batch:
            self._send_ack(reply, body)

    def _acks_synced(self, fut: asyncio.Future[None], batch: list[tuple[bytes, bytes]]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or exc is not None:
            self._acks_failed(exc, batch)
            return
        self.server.send_internal_many(self.account, batch, flush=True)

    def _acks_failed(self, exc: BaseException | None, batch: list[tuple[bytes, bytes]]) -> None:
        """A failed fsync is reported to every publisher it covered."""
        if exc is None:
            return  # cancelled: nobody is waiting any more (as an abandoned await)
        error = self._ack_error(js_error("JSStreamStoreFailedF", err=str(exc)))
        for reply, _body in batch:
            self._send_ack(reply, error)

    # ------------------------------------------------------------------ expiry

    def _schedule_expiry(self) -> None:
        if self.closed:
            return
        deadline = self.store.next_expiry()
        if not deadline:
            if self._expiry_handle is not None:
                self._expiry_handle.cancel()
                self._expiry_handle = None
            return
        if self._expiry_handle is not None and self._expiry_at <= deadline:
            return
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
        # At least 1 ms: a deadline the store does not yet consider due must not spin the loop.
        delay = max((deadline - time.time_ns()) / NS, 0.001)
        self._expiry_at = deadline
        self._expiry_handle = self.server.loop.call_later(delay, self._run_expiry)

    def _run_expiry(self) -> None:
        self._expiry_handle = None
        self._expiry_at = 0
        if self.closed:
            return
        replicated = self.replicated
        if replicated is not None and replicated.group is not None:
            replicated.expire()  # the leader proposes it; the commit reschedules every replica
            return
        try:
            removed: list[StoredMsg] = self.execute(ExpireMsgs(time.time_ns())) or []
            if removed and self.config.subject_delete_marker_ttl:
                self._write_markers(removed)
        except Exception:
            import traceback

            self.server.logger.error(traceback.format_exc())
        self._schedule_expiry()

    def _write_markers(self, removed: list[StoredMsg]) -> None:
        """One `Nats-Marker-Reason: MaxAge` marker per subject that expiry emptied; not when what
        expired was itself a delete marker (a marker, or a KV purge with its own TTL: nats-server's
        isSubjectDeleteMarker), which leaves nothing behind."""
        ttl = self.config.subject_delete_marker_ttl
        done: set[bytes] = set()
        for msg in removed:
            if msg.subject in done or _is_delete_marker(msg.hdr):
                continue
            done.add(msg.subject)
            if self.store.load_last_msg(msg.subject) is not None:
                continue
            hdr = (
                b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: "
                + H.format_go_duration(ttl).encode()
                + b"\r\nNats-Rollup: sub\r\n\r\n"
            )
            self.execute(StoreMsg(msg.subject, hdr, b"", time.time_ns(), ttl // NS, b"", "sub"))

    # ------------------------------------------------------------------ reads / info

    def state(self, *, deleted_details: bool = False, subjects_filter: bytes | None = None) -> StreamState:
        return self.store.state(deleted_details=deleted_details, subjects_filter=subjects_filter)

    def config_json(self, *, dynamic: bool = True) -> dict[str, Any]:
        out = encode(self.config)
        out["metadata"] = (
            with_dynamic_metadata(self.config.metadata)
            if dynamic
            else dict(sorted((self.config.metadata or {}).items()))
        )
        return out

    def info(
        self,
        *,
        dynamic: bool = True,
        cluster: bool = False,
        deleted_details: bool = False,
        subjects_filter: bytes | None = None,
        state: StreamState | None = None,
    ) -> dict[str, Any]:
        """StreamInfo (jetstream-api.md §5.6) as an ordered dict."""
        if state is None:
            state = self.state(deleted_details=deleted_details, subjects_filter=subjects_filter)
        out: dict[str, Any] = {
            "config": self.config_json(dynamic=dynamic),
            "created": format_time_ns(self.created),
            "state": state_to_json(
                state, self.replicated.consumer_count() if self.replicated is not None else len(self.consumers)
            ),
        }
        if self.host.domain:
            out["domain"] = self.host.domain
        if cluster and self.replicated is not None:
            out["cluster"] = self.replicated.cluster_info()
        elif cluster:
            cluster_info: dict[str, Any] = {}
            if self.server.config.cluster.name:
                cluster_info["name"] = self.server.config.cluster.name
            cluster_info["leader"] = self.server.server_name
            out["cluster"] = cluster_info
        if self._mirror is not None:
            self._mirror.add_info(out)
        out["ts"] = format_time_ns(time.time_ns())
        return out

    def statistics(self) -> dict[str, Any]:
        state = self.store.state()
        return {"name": self.name, "messages": state.messages, "bytes": state.bytes, "consumers": len(self.consumers)}

    def matches(self, subject: bytes) -> bool:
        return any(subject_matches(s.encode(), subject) for s in self.config.subjects or [])


#: What Go's big.Int.SetString(v, 10) accepts (Nats-Incr).
_BIG_INT = re.compile(rb"[+-]?[0-9]+")

#: Headers that expect a state, refused next to a counter increment (10171).
_NOT_WITH_INCR = (
    H.ROLLUP,
    H.EXPECTED_STREAM,
    H.EXPECTED_LAST_MSG_ID,
    H.EXPECTED_LAST_SUBJ_SEQ_SUBJ,
    H.EXPECTED_LAST_SEQ,
    H.EXPECTED_LAST_SUBJ_SEQ,
)


def _is_delete_marker(hdr: bytes) -> bool:
    if not hdr:
        return False
    return bool(H.get_header(hdr, H.MARKER_REASON)) or H.get_header(hdr, b"KV-Operation") == b"PURGE"


def _big_int_or_zero(text: str) -> int:
    """big.Int.SetString(text, 10), 0 when it does not parse."""
    return int(text) if _BIG_INT.fullmatch(text.encode()) else 0


def _counter_value(payload: bytes) -> int:
    """The total in a counter message's payload, read as nats-server's json.Unmarshal into
    `{"val": string}` does (null and a missing `val` are 0); a payload that is not such an object
    is a broken counter (10172)."""
    try:
        document = gojson.loads(payload)
    except ValueError:
        raise js_error("JSMessageCounterBrokenErr") from None
    if document is None:
        return 0
    if not isinstance(document, dict):
        raise js_error("JSMessageCounterBrokenErr")
    value = document.get("val")
    if value is None:  # Go matches field names without regard to case, the exact one first
        value = next((v for k, v in document.items() if k.lower() == "val"), None)
    if value is None:
        return 0
    if not isinstance(value, str):
        raise js_error("JSMessageCounterBrokenErr")
    return _big_int_or_zero(value)


def _counter_sources(raw: bytes) -> dict[str, dict[str, str]]:
    """The `Nats-Counter-Sources` header: origin stream -> origin subject -> last total seen."""
    try:
        document = gojson.loads(raw)
    except ValueError:
        raise js_error("JSMessageCounterBrokenErr") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise js_error("JSMessageCounterBrokenErr")
    sources: dict[str, dict[str, str]] = {}
    for name, subjects in document.items():
        if subjects is None:
            continue
        if not isinstance(subjects, dict) or not all(v is None or isinstance(v, str) for v in subjects.values()):
            raise js_error("JSMessageCounterBrokenErr")
        sources[name] = {k: v or "" for k, v in subjects.items()}
    return sources


def _ttl_or_zero(value: bytes) -> int:
    """nats-server's `ttl, _ := getMessageTTL(hdr)`: the TTL, 0 when it does not parse."""
    try:
        return H.parse_ttl(value)
    except ValueError:
        return 0


def _schedule_purge(hdr: bytes) -> bytes | None:
    """A stored message's `Nats-Schedule-Next: purge` names the schedule to purge after it."""
    if hdr and H.get_header(hdr, H.SCHEDULE_NEXT) == b"purge":
        return H.get_header(hdr, H.SCHEDULER) or None
    return None


def _retrieved(fut: asyncio.Future[None]) -> None:
    """A sync nobody awaits: its failure is the store's to log, not asyncio's "never retrieved"."""
    if not fut.cancelled():
        fut.exception()


def _check_incr(config: StreamConfig, hdr: bytes, data: bytes, incr: bytes, sourced: bool) -> None:
    """A `Nats-Incr` header's checks (ADR-49): an integer; on a counter stream, with no payload
    and none of the headers that expect a state (a sourced message is stored as it came)."""
    if not _BIG_INT.fullmatch(incr):
        raise js_error("JSMessageIncrInvalidErr")
    if sourced:
        return
    if not config.allow_msg_counter:
        raise js_error("JSMessageIncrDisabledErr")
    if data:
        raise js_error("JSMessageIncrPayloadErr")
    if any(H.get_header(hdr, name) for name in _NOT_WITH_INCR):
        raise js_error("JSMessageIncrInvalidErr")
