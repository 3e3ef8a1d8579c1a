"""A JetStream consumer (layer 4): cursor, delivery, acknowledgements, redelivery, durability.

spec/consumers.md is the contract. One `Consumer` per (stream, name). State kept in memory and made
durable through the stream store's ConsumerStore (incremental `update_delivered` / `update_acks`
records, full snapshots for the rarer transitions) so it rides the stream's group-commit `sync()`:

* `sseq` next stream sequence to examine, `dseq` next consumer sequence; `delivered` is (dseq-1,
  sseq-1) as nats-server reports it;
* `pending`: stream seq -> [consumer seq of the first delivery, delivery time, redelivery deadline];
* `rdc`: stream seq -> delivery count when > 1; `rdq`: sorted stream seqs due for redelivery;
* `adflr`/`asflr`: the ack floor.

Delivery runs in `_run()`, scheduled with `call_soon` whenever something may be deliverable (new
message, pull request, ack freeing `max_ack_pending`, redelivery due, interest appeared). Timers use
the event loop; every decision reads `self.now()` (ns), injectable for tests. Pull requests live in
`pull.py`. Deliveries go through the router's `deliver_as` (routed on the deliver subject, shown with
the stored subject) via `Server.send_internal_as`.

May import layers 0-3, jetstream models/config and advisories.
"""

from __future__ import annotations

import bisect
import json
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from jsedge.errors import js_error
from jsedge.jetstream import advisory
from jsedge.jetstream import headers as H
from jsedge.jetstream.ackroute import ACK_PREFIX, FC_PREFIX
from jsedge.jetstream.consumerconfig import (
    dynamic_metadata,
    is_durable,
    set_static_metadata,
)
from jsedge.jetstream.host import ServerHandle
from jsedge.jetstream.models import NS, ZERO_TIME, ConsumerConfig, encode, format_time_ns
from jsedge.jetstream.pull import (
    PullRequest,
    add_prioritized,
    end_of_stream,
    expire_waiting,
    parse_pull_request,
    priority_error,
    status,
    take_next,
)
from jsedge.jetstream.retention import check_message_retention, consumers_of
from jsedge.store.base import ConsumerState, Pending, SequencePair
from jsedge.subjects import subject_matches

FC_WINDOW_START = 2 * 1024 * 1024
FC_WINDOW_MAX = 32 * 1024 * 1024
RUN_BUDGET = 256


# ------------------------------------------------------------------------------------------------
# delivery: route with one subject, present another (the router's primitive)


def deliver_as(server: Any, account: Any, route: bytes, shown: bytes, reply: bytes, hdr: bytes, data: bytes) -> int:
    """Deliver like a core publish to `route` (queue groups honoured) but frame MSG/HMSG with
    `shown` as the subject (consumers.md §3). Returns the number of deliveries."""
    return int(server.send_internal_as(account, route, shown, reply, hdr, data))


def _heartbeat(last_consumer: int, last_stream: int, stalled: bytes = b"") -> bytes:
    text = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: %d\r\nNats-Last-Stream: %d\r\n" % (
        last_consumer,
        last_stream,
    )
    if stalled:
        text += b"Nats-Consumer-Stalled: " + stalled + b"\r\n"
    return text + b"\r\n"


class Consumer:
    """One consumer of one stream (see the module docstring)."""

    def __init__(
        self,
        stream: Any,
        name: str,
        config: ConsumerConfig,
        created: int,
        store: Any,
        *,
        now: Callable[[], int] | None = None,
    ) -> None:
        self.stream = stream
        self.server: ServerHandle = stream.server
        self.account = stream.account
        self.loop = self.server.loop
        self.name = name
        self._ack_prefix = b"%b%b.%b." % (ACK_PREFIX, stream.name.encode(), name.encode())
        self.created = created
        self.store = store
        self.now: Callable[[], int] = now or time.time_ns
        self.closed = False
        self.config = config
        self._compile()
        # cursor and ack state
        self.sseq = 1
        self.dseq = 1
        self.adflr = 0
        self.asflr = 0
        self.pending: dict[int, list[int]] = {}
        # stream seqs of `pending` in ascending order (first deliveries only ever add higher seqs);
        # acked/dropped seqs leave lazily, so the oldest pending seq is found in amortised O(1)
        self._order: deque[int] = deque()
        self.rdc: dict[int, int] = {}
        self.rdq: list[int] = []
        self._rdq_set: set[int] = set()
        self.lss: list[int] = []
        self.lss_resume = 0
        self._npc: int | None = None
        self.delivered_active = 0
        self.ack_active = 0
        self.waiting: list[PullRequest] = []
        # push state
        self.active = False
        self._last_delivery = 0
        self.fc_window = FC_WINDOW_START
        self.fc_bytes = 0
        self.fc_subject = b""
        self.fc_sent_bytes = 0
        self._rl_next = 0
        self._replay_last: tuple[int, int] | None = None  # (stored ts, sent at)
        # timers
        self._scheduled = False
        self._sync_scheduled = False
        # store records not written yet (flushed once per event-loop turn, and before any other store
        # write): acks as (consumer seq, stream seq); with ack policy none, the last delivery
        self._ack_buf: list[tuple[int, int]] = []
        self._none_last: tuple[int, int, int] | None = None
        self._run_timer: Any = None
        self._ack_timer: Any = None
        self._ack_timer_at = 0
        self._wait_timer: Any = None
        self._wait_timer_at = 0
        self._hb_timer: Any = None
        self._watch_timer: Any = None
        self._inactive_timer: Any = None
        self._pause_timer: Any = None
        #: priority policy pinned_client: the pinned client's id ("" when nobody is pinned)
        self.pin_id = ""
        self.pinned_ts = 0
        self._pin_timer: Any = None
        #: In a cluster: this consumer's own `$JS.ACK.<stream>.<name>.>` and `$JS.FC…` subscriptions,
        #: announced to the routes so acks reach the one server that runs it.
        self.routed_subs: list[Any] = []
        #: In a cluster, with more than one replica: the consumer's Raft group member
        #: (cluster/consumer.py); this Consumer runs on its leader and `store` proposes to it.
        self.clustered: Any = None
        #: deletes this consumer from its stream (set by consumers.attach)
        self.remove: Callable[[], None] | None = None
        self._last_request = 0

    # ------------------------------------------------------------------ config

    def _compile(self) -> None:
        config = self.config
        self.filters = [f.encode() for f in config.filters() if f != ">"]
        self.push = bool(config.deliver_subject)
        self.deliver_subject = config.deliver_subject.encode()
        self.ack_none = config.ack_policy == "none"
        #: ADR-60's flow_control policy acks as "all" does, from the replies to flow control
        self.ack_fc = config.ack_policy == "flow_control"
        self.ack_all = config.ack_policy == "all" or self.ack_fc
        self.maxp = config.max_ack_pending if not self.ack_none else 0
        self.max_deliver = config.max_deliver if config.max_deliver > 0 else 0
        self.backoff = list(config.backoff or [])
        freq = config.sample_freq.rstrip("%") if config.sample_freq else ""
        self.sample = int(freq) if freq.lstrip("+-").isdigit() else 0
        self.durable = is_durable(config)

    @property
    def domain(self) -> str:
        return self.stream.host.domain

    def matches_subject(self, subject: bytes) -> bool:
        if not self.filters:
            return True
        return any(subject_matches(f, subject) for f in self.filters)

    def _wait_for(self, dc: int) -> int:
        if self.backoff:
            return self.backoff[min(max(dc, 1) - 1, len(self.backoff) - 1)]
        return self.config.ack_wait

    # ------------------------------------------------------------------ lifecycle

    def set_start_position(self) -> None:
        """nats-server's selectStartingSeqNo (consumers.md §2) for a new consumer."""
        config = self.config
        store = self.stream.store
        state = store.state()
        policy = config.deliver_policy
        if policy == "all":
            sseq = state.first_seq
        elif policy == "last":
            if self.filters:
                found = [m.seq for m in (store.load_last_msg(f) for f in self.filters) if m is not None]
                sseq = max(found) if found else state.last_seq + 1
            else:
                sseq = state.last_seq
        elif policy == "new":
            sseq = state.last_seq + 1
        elif policy == "by_start_sequence":
            sseq = config.opt_start_seq
        elif policy == "by_start_time":
            sseq = self._seq_from_time(config.opt_start_time, state)
        else:  # last_per_subject
            seqs: set[int] = set()
            for f in self.filters or [b">"]:
                for entry in store.subjects_state(f).values():
                    seqs.add(entry.last_seq)
            self.lss = sorted(seqs)
            self.lss_resume = state.last_seq + 1
            sseq = self.lss[0] if self.lss else self.lss_resume
        if state.first_seq == 0:
            sseq = max(sseq, 1)
        elif sseq < state.first_seq:
            sseq = state.first_seq
        self.sseq = max(sseq, 1)
        self.dseq = 1
        self.adflr, self.asflr = 0, self.sseq - 1
        self._npc = None

    def _seq_from_time(self, start: int, state: Any) -> int:
        store = self.stream.store
        lo, hi = state.first_seq, state.last_seq
        if not state.messages:
            return state.last_seq + 1
        answer = state.last_seq + 1
        while lo <= hi:
            mid = (lo + hi) // 2
            msg = store.load_next_msg(b">", mid)
            if msg is None:
                hi = mid - 1
                continue
            if msg.ts >= start:
                answer = min(answer, msg.seq)
                hi = mid - 1
            else:
                lo = msg.seq + 1
        return answer

    def restore_state(self, state: ConsumerState) -> None:
        self.dseq = state.delivered.consumer_seq + 1
        self.sseq = state.delivered.stream_seq + 1
        self.adflr = state.ack_floor.consumer_seq
        self.asflr = state.ack_floor.stream_seq
        self.rdc = {seq: count for seq, count in state.redelivered.items() if count > 1}
        self.pending = {}
        if not self.ack_none:
            for seq, entry in sorted(state.pending.items()):
                dc = self.rdc.get(seq, 1)
                self.pending[seq] = [entry.consumer_seq, entry.timestamp, entry.timestamp + self._wait_for(dc)]
        self._order = deque(self.pending)
        first = self.stream.store.state().first_seq
        if first and self.sseq < first:
            self.sseq = first
        self._npc = None

    def state_snapshot(self) -> ConsumerState:
        return ConsumerState(
            delivered=SequencePair(self.dseq - 1, self.sseq - 1),
            ack_floor=SequencePair(self.adflr, self.asflr),
            pending={seq: Pending(p[0], p[1]) for seq, p in self.pending.items()},
            redelivered={seq: dc for seq, dc in self.rdc.items() if seq in self.pending},
        )

    def save(self) -> None:
        """Full state snapshot (used for the rarer transitions: ack-all, TERM, purge, max deliver)."""
        if self.closed:
            return
        if self._ack_buf or self._none_last is not None:
            self._flush_acks()
        self.store.update(self.state_snapshot())
        self._schedule_sync()

    def save_config(self) -> None:
        document = {"config": encode(self.config), "created": format_time_ns(self.created), "name": self.name}
        self.store.save_config(json.dumps(document).encode())

    def start(self) -> None:
        now = self.now()
        self._last_request = now
        if self.push:
            self.account.add_interest_listener(self._on_interest)
            self._push_interest()
            if self.config.idle_heartbeat:
                self._arm_heartbeat()
        self._arm_inactivity()
        self._arm_pause()
        self._arm_ack_timer()
        self.kick()

    def stop(self, *, deleted: bool = False) -> None:
        """Cancel timers. `deleted`: waiting pull requests get `409 Consumer Deleted`."""
        if self.closed:
            return
        if self._ack_buf or self._none_last is not None:
            try:
                self._flush_acks()
            except Exception:
                self._ack_buf = []
                self._none_last = None
        self.closed = True
        for sub in self.routed_subs:
            self.server.unsubscribe_internal(self.account, sub)
        self.routed_subs = []
        if self.push:
            self.account.remove_interest_listener(self._on_interest)
        for timer in (
            self._run_timer,
            self._ack_timer,
            self._wait_timer,
            self._hb_timer,
            self._watch_timer,
            self._inactive_timer,
            self._pause_timer,
            self._pin_timer,
        ):
            if timer is not None:
                timer.cancel()
        if deleted:
            for request in self.waiting:
                self._send_status(request.reply, b"NATS/1.0 409 Consumer Deleted\r\n\r\n")
        self.waiting = []

    def shutdown_waiting(self) -> None:
        """The server shuts down: every waiting pull request gets nats-server's `409 Server
        Shutdown` with what it still wanted."""
        waiting, self.waiting = self.waiting, []
        for request in waiting:
            self._send_status(
                request.reply,
                b"NATS/1.0 409 Server Shutdown\r\nNats-Pending-Messages: %d\r\nNats-Pending-Bytes: %d\r\n\r\n"
                % (max(request.n, 0), max(request.b, 0)),
            )

    # ------------------------------------------------------------------ helpers

    def _send_status(self, subject: bytes, hdr: bytes, reply: bytes = b"") -> None:
        self.server.send_internal(self.account, subject, reply, hdr, b"")

    def _schedule_sync(self) -> None:
        if self._sync_scheduled:
            return
        self._sync_scheduled = True
        self.loop.call_soon(self._sync)

    def _flush_acks(self) -> None:
        """Write the buffered ack records. Highest consumer sequence first: the final state (ack floor,
        pending, redelivered) does not depend on the order of a run of acks, and this way only the ack
        of the oldest pending message moves the floor (one scan for the new oldest instead of one per
        ack)."""
        last = self._none_last
        if last is not None:
            # ack policy none: each delivery is recorded delivered-then-acked, which leaves the store
            # state at (delivered = ack floor = the last delivery, nothing pending); record only the last
            self._none_last = None
            self.store.update_delivered(last[0], last[1], 1, last[2])
            self.store.update_acks(last[0], last[1])
        buf = self._ack_buf
        if not buf:
            return
        self._ack_buf = []
        if len(buf) > 1:
            buf.sort(reverse=True)
        update_acks = self.store.update_acks
        for cseq, sseq in buf:
            update_acks(cseq, sseq)

    def _sync(self) -> None:
        self._sync_scheduled = False
        try:
            if self._ack_buf or self._none_last is not None:
                self._flush_acks()
            flush = getattr(self.store, "flush", None)
            if flush is not None:
                flush()  # replicated: proposed to the consumer's group, whose log is fsynced
            else:
                self.stream.store.sync()
        except Exception:
            pass

    def kick(self) -> None:
        if self._scheduled or self.closed:
            return
        self._scheduled = True
        self.loop.call_soon(self._run)

    def _kick_later(self, delay_ns: int) -> None:
        if self._run_timer is not None:
            self._run_timer.cancel()
        self._run_timer = self.loop.call_later(max(delay_ns, 1_000_000) / NS, self._timer_kick)

    def _timer_kick(self) -> None:
        self._run_timer = None
        self.kick()

    def paused(self, now: int | None = None) -> bool:
        until = self.config.pause_until
        return bool(until) and until > (now if now is not None else self.now())

    # ------------------------------------------------------------------ pending count

    def num_pending(self) -> int:
        if self._npc is None:
            self._npc = self._compute_pending()
        return self._npc

    def _compute_pending(self) -> int:
        store = self.stream.store
        if self.lss:
            start = self.lss_resume
            extra = len([s for s in self.lss if s >= self.sseq])
        else:
            start = self.sseq
            extra = 0
        if not self.filters:
            return extra + store.num_pending(start, b">")
        return extra + sum(store.num_pending(start, f) for f in self.filters)

    # ------------------------------------------------------------------ stream events

    def on_stored(self, seq: int, subject: bytes) -> None:
        if not self.matches_subject(subject):
            return
        if self._npc is not None and seq >= self.sseq:
            self._npc += 1
        if (self.push and self.active) or self.waiting:
            self.kick()

    def on_removed(self, seq: int, subject: bytes | None) -> None:
        if subject is None or self.lss:
            self._npc = None
        elif self._npc is not None and seq >= self.sseq and self.matches_subject(subject):
            self._npc -= 1
        if seq in self.pending:
            # an unacknowledged message left the stream: acked in its place, with nats-server's
            # terminated advisory (its `deliveries` is nats-server's redelivery count, at least 1)
            entry = self.pending.pop(seq)
            deliveries = max(self.rdc.pop(seq, 1) - 1, 1)
            self._remove_rdq(seq)
            self._move_floor_after_ack(entry[0], seq)
            self._ack_buf.append((entry[0], seq))
            self._schedule_sync()
            self.ack_active = self.now()
            advisory.terminated(self, entry[0], seq, deliveries, "Unacknowledged message was deleted")
            if self.maxp and len(self.pending) == self.maxp - 1:
                self.kick()

    def on_purged(self) -> None:
        """nats-server's consumer.purge: skip past the purged range, drop stale pending."""
        state = self.stream.store.state()
        first = state.first_seq or 1
        if self.sseq < first:
            self.sseq = first
            self.lss = [s for s in self.lss if s >= first]
        if self.asflr < first - 1:
            self.asflr = first - 1
            for seq in [s for s in self.pending if s <= self.asflr]:
                entry = self.pending.pop(seq)
                if entry[0] > self.adflr:
                    self.adflr = entry[0]
                self.rdc.pop(seq, None)
                self._remove_rdq(seq)
        if not self.pending:
            self.adflr, self.asflr = self.dseq - 1, self.sseq - 1
        self._npc = None
        self.save()
        self.kick()

    def reset(self, seq: int) -> int:
        """`$JS.API.CONSUMER.RESET` (2.14): start over from stream sequence `seq`, or from just past
        the ack floor when `seq` is 0, forgetting what is pending (nats-server's
        resetStartingSeq). Delivery numbering starts again at 1. Going back is allowed only as far
        as the deliver policy reaches (10204). Returns the sequence delivered next."""
        config = self.config
        policy = config.deliver_policy
        if seq == 0:
            seq = self.asflr + 1
        elif policy == "all":
            pass
        elif policy == "by_start_sequence":
            if seq < config.opt_start_seq:
                raise js_error("JSConsumerInvalidResetErr", err="below start seq")
        elif policy == "by_start_time":
            if seq < self._seq_from_time(config.opt_start_time, self.stream.store.state()):
                raise js_error("JSConsumerInvalidResetErr", err="below start time")
        else:
            raise js_error("JSConsumerInvalidResetErr", err="not allowed")
        seq = max(seq, 1)
        self.pending = {}
        self._order = deque()
        self.rdc = {}
        self.rdq = []
        self._rdq_set = set()
        self.sseq, self.dseq = seq, 1
        self.adflr, self.asflr = 0, seq - 1
        self.delivered_active = self.ack_active = 0
        self._npc = None
        self.save()
        if self.stream.config.retention == "interest":
            self.retention_sweep()  # what this consumer no longer needs may go now
        self.kick()
        return seq

    # ------------------------------------------------------------------ delivery loop

    def _run(self) -> None:
        self._scheduled = False
        if self.closed:
            return
        now = self.now()
        if self.paused(now):
            return
        if self.push:
            self.active = self.account.sublist.has_interest(self.deliver_subject)
            if not self.active:
                return
        budget = RUN_BUDGET
        while budget > 0:
            budget -= 1
            if self.push:
                if self.config.flow_control and self.fc_bytes > self.fc_window:
                    return
                if self._rl_next > now:
                    self._kick_later(self._rl_next - now)
                    return
            elif not self.waiting:
                return
            found = self._peek()
            if found is None:
                if not self.push and self._eos:
                    self._end_of_stream()
                return
            msg, dc, redelivery = found
            if self.config.replay_policy == "original" and not redelivery and self._replay_last is not None:
                stored_gap = msg.ts - self._replay_last[0]
                wait = stored_gap - (now - self._replay_last[1])
                if wait > 0:
                    self._kick_later(wait)
                    return
            if not self._deliver(msg, dc, redelivery, now):
                return
            now = self.now()
        self.kick()

    def _peek(self) -> tuple[Any, int, bool] | None:
        self._eos = False
        store = self.stream.store
        while self.rdq:
            seq = self.rdq[0]
            if seq not in self.pending:
                self._pop_rdq()
                continue
            msg = store.load_msg(seq)
            if msg is None:
                self._pop_rdq()
                self.on_removed(seq, None)
                continue
            return msg, self.rdc.get(seq, 1) + 1, True
        if self.maxp > 0 and len(self.pending) >= self.maxp:
            return None
        while self.lss:
            seq = self.lss[0]
            if seq < self.sseq:
                self.lss.pop(0)
                if not self.lss:
                    self.sseq = max(self.sseq, self.lss_resume)
                continue
            msg = store.load_msg(seq)
            if msg is None:
                self.lss.pop(0)
                if not self.lss:
                    self.sseq = max(self.sseq, self.lss_resume)
                continue
            return msg, 1, False
        if not self.filters:
            msg = store.load_next_msg(b">", self.sseq)
        else:
            msg = None
            for f in self.filters:
                candidate = store.load_next_msg(f, self.sseq)
                if candidate is not None and (msg is None or candidate.seq < msg.seq):
                    msg = candidate
        if msg is None:
            last = store.state().last_seq
            if last + 1 > self.sseq:
                self.sseq = last + 1
            self._eos = True
            return None
        return msg, 1, False

    _eos = False

    def _pop_rdq(self) -> None:
        seq = self.rdq.pop(0)
        self._rdq_set.discard(seq)

    def _remove_rdq(self, seq: int) -> None:
        if seq in self._rdq_set:
            self._rdq_set.discard(seq)
            self.rdq.remove(seq)

    def _add_rdq(self, seq: int) -> None:
        if seq not in self._rdq_set:
            self._rdq_set.add(seq)
            bisect.insort(self.rdq, seq)

    def _deliver(self, msg: Any, dc: int, redelivery: bool, now: int) -> bool:
        dseq = self.dseq
        pending_after = self.num_pending() - (0 if redelivery else 1)
        if pending_after < 0:
            pending_after = 0
            self._npc = None
        reply = b"%b%d.%d.%d.%d.%d" % (
            self._ack_prefix,
            dc,
            msg.seq,
            dseq,
            msg.ts,
            pending_after,
        )
        hdr, data = msg.hdr, msg.data
        if self.config.headers_only:
            hdr = H.append_headers(hdr, [(b"Nats-Msg-Size", str(len(data)).encode())])
            data = b""
        if self.push:
            size = len(self.deliver_subject) + len(reply) + len(hdr) + len(data)
            deliver_as(self.server, self.account, self.deliver_subject, msg.subject, reply, hdr, data)
            if self.config.flow_control:
                self.fc_bytes += size
                if not self.fc_subject and self.fc_bytes > self.fc_window // 2:
                    self._send_flow_control()
            if self.config.rate_limit_bps:
                cost = size * 8 * NS // self.config.rate_limit_bps
                self._rl_next = max(self._rl_next, now) + cost
        else:
            size = len(msg.subject) + len(reply) + len(hdr) + len(data)
            request = self._next_waiting(size, now, pending_after + 1)
            if request is None:
                return False
            if self.pin_id and request.pin_id == self.pin_id:
                hdr = H.append_headers(hdr, [(b"Nats-Pin-Id", self.pin_id.encode())])
            deliver_as(self.server, self.account, request.reply, msg.subject, reply, hdr, data)
            if request.n <= 0 and request.b > 0:
                self._send_status(
                    request.reply,
                    b"NATS/1.0 409 Batch Completed\r\nNats-Pending-Messages: 0\r\nNats-Pending-Bytes: %d\r\n\r\n"
                    % request.b,
                )
        self._commit(msg, dc, redelivery, dseq, now, pending_after)
        if self.ack_fc and not self.fc_subject and 0 < self.maxp <= len(self.pending):
            self._send_flow_control()  # the window is full: its reply acks and frees it
        return True

    def _commit(self, msg: Any, dc: int, redelivery: bool, dseq: int, now: int, pending_after: int) -> None:
        seq = msg.seq
        self.dseq = dseq + 1
        if not redelivery:
            if self.lss and self.lss[0] == seq:
                self.lss.pop(0)
                self.sseq = seq + 1
                if not self.lss:
                    self.sseq = max(self.sseq, self.lss_resume)
            else:
                self.sseq = seq + 1
            self._npc = pending_after
        self.delivered_active = now
        self._last_delivery = now
        if self.config.replay_policy == "original" and not redelivery:
            self._replay_last = (msg.ts, now)
        if self.ack_none:
            self.adflr, self.asflr = dseq, seq
            if self._ack_buf:
                self._flush_acks()
            self._none_last = (dseq, seq, now)
            self._schedule_sync()
            if self.stream.config.retention != "limits":
                check_message_retention(self.stream, seq, msg.subject)
            return
        store = self.store
        if self._ack_buf or self._none_last is not None:
            self._flush_acks()
        if redelivery:
            self._pop_rdq()
            entry = self.pending[seq]
            entry[1] = now
            entry[2] = now + self._wait_for(dc)
            self.rdc[seq] = dc
        else:
            pending = self.pending
            pending[seq] = [dseq, now, now + self._wait_for(1)]
            order = self._order
            order.append(seq)
            if len(order) > 2 * len(pending) + 1024:
                self._order = deque(sorted(pending))
        store.update_delivered(dseq, seq, dc, now)
        if not self._sync_scheduled:
            self._schedule_sync()
        if self._ack_timer is None:
            self._arm_ack_timer()

    # ------------------------------------------------------------------ push specifics

    def _send_flow_control(self) -> None:
        self.fc_subject = b"%b%b.%b.%b" % (
            FC_PREFIX,
            self.stream.name.encode(),
            self.name.encode(),
            advisory.random_name(4).encode(),
        )
        self.fc_sent_bytes = self.fc_bytes
        self._send_status(self.deliver_subject, b"NATS/1.0 100 FlowControl Request\r\n\r\n", reply=self.fc_subject)

    def process_flow_control(self, subject: bytes, hdr: bytes = b"") -> None:
        """A reply to the latest flow control request. For the flow_control ack policy its
        `Nats-Last-Stream` / `Nats-Last-Consumer` headers say what the sourcing stream stored:
        everything up to there is acknowledged (as "all" acks)."""
        if subject != self.fc_subject or self.closed:
            return
        self.fc_bytes = max(self.fc_bytes - self.fc_sent_bytes, 0)
        self.fc_window = min(self.fc_window * 2, FC_WINDOW_MAX)
        self.fc_subject = b""
        self.fc_sent_bytes = 0
        if self.ack_fc and hdr:
            last_stream = H.get_header(hdr, b"Nats-Last-Stream")
            last_consumer = H.get_header(hdr, b"Nats-Last-Consumer")
            sseq = int(last_stream) if last_stream is not None and last_stream.isdigit() else 0
            dseq = int(last_consumer) if last_consumer is not None and last_consumer.isdigit() else 0
            if sseq > 0:
                self._ack(sseq, dseq, 1, sample=False)
        self.kick()

    def _arm_heartbeat(self) -> None:
        if self.closed:
            return
        interval = self.config.idle_heartbeat
        self._hb_timer = self.loop.call_later(interval / NS, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        self._hb_timer = None
        if self.closed:
            return
        now = self.now()
        if now - self._last_delivery >= self.config.idle_heartbeat * 9 // 10:
            if self.account.sublist.has_interest(self.deliver_subject):
                self._send_status(self.deliver_subject, _heartbeat(self.dseq - 1, self.sseq - 1, self.fc_subject))
                self._last_delivery = now
                if self.ack_fc and self.pending and not self.fc_subject:
                    self._send_flow_control()  # idle: the reply moves the ack floor up
        self._arm_heartbeat()

    def _on_interest(self, account: Any, subject: bytes, queue: bytes | None, count: int, delta: int) -> None:
        """The account's interest changed: does anyone (here or, over a route, elsewhere) still
        listen on the deliver subject?"""
        if not self.closed and subject_matches(subject, self.deliver_subject):
            self._push_interest()

    def _push_interest(self) -> None:
        active = self.account.sublist.has_interest(self.deliver_subject)
        if active:
            if self._watch_timer is not None:
                self._watch_timer.cancel()
                self._watch_timer = None
            if not self.active:
                self.active = True
                self.kick()
            return
        self.active = False
        threshold = self.config.inactive_threshold
        if threshold and self._watch_timer is None:
            self._watch_timer = self.loop.call_later(threshold / NS, self._push_inactive)

    def _push_inactive(self) -> None:
        """Nobody listened on the deliver subject for `inactive_threshold`: delete (ephemerals)."""
        self._watch_timer = None
        if not self.closed and not self.account.sublist.has_interest(self.deliver_subject):
            self.stream_delete()

    # ------------------------------------------------------------------ pull requests

    def process_pull(self, reply: bytes, body: bytes, hdr: bytes = b"") -> None:
        """A `CONSUMER.MSG.NEXT` request (consumers.md §7)."""
        if self.closed or not reply:
            return
        if hdr:
            level = H.get_header(hdr, H.REQUIRED_API_LEVEL)
            if level is not None and (not level.strip().isdigit() or int(level) > 5):
                self._send_status(reply, b"NATS/1.0 412 Required Api Level\r\n\r\n")
                return
        if self.push:
            self._send_status(reply, b"NATS/1.0 409 Consumer is push based\r\n\r\n")
            return
        now = self.now()
        try:
            request = parse_pull_request(body, reply, now)
        except ValueError as exc:
            self._send_status(reply, status(400, f"Bad Request - {exc}"))
            return
        config = self.config
        if config.max_batch > 0 and request.n > config.max_batch:
            self._send_status(reply, status(409, f"Exceeded MaxRequestBatch of {config.max_batch}"))
            return
        if config.max_expires > 0 and request.ttl > config.max_expires:
            self._send_status(
                reply, status(409, f"Exceeded MaxRequestExpires of {H.format_go_duration(config.max_expires)}")
            )
            return
        if request.b > 0 and config.max_bytes > 0 and request.b > config.max_bytes:
            self._send_status(reply, status(409, f"Exceeded MaxRequestMaxBytes of {config.max_bytes}"))
            return
        problem = priority_error(request, config.priority_policy, config.priority_groups or [])
        if problem:
            self._send_status(reply, status(400, f"Bad Request - {problem}"))
            return
        if request.grouped and self.pin_id and config.priority_policy == "pinned_client":
            if request.pin_id == self.pin_id:
                self._arm_pin_timer()  # the pinned client is alive
            elif request.pin_id:
                self._send_status(reply, b"NATS/1.0 423 Nats-Pin-Id mismatch\r\n\r\n")
                return
        self._last_request = now
        if request.no_wait:
            available = len(self.rdq)
            if not (self.maxp > 0 and len(self.pending) >= self.maxp):
                available += self.num_pending()
            if available == 0 and not request.expires:
                self._send_status(reply, b"NATS/1.0 404 No Messages\r\n\r\n")
                return
            if available > 0:
                self._process_waiting(now)
                batches = sum(r.n for r in self.waiting)
                if available < batches:
                    self._send_status(reply, b"NATS/1.0 408 Requests Pending\r\n\r\n")
                    return
        if len(self.waiting) >= config.max_waiting:
            self._process_waiting(now)
            if len(self.waiting) >= config.max_waiting:
                if not request.hb:
                    self._send_status(reply, b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n")
                return
        if config.priority_policy == "prioritized":
            add_prioritized(self.waiting, request)
        else:
            self.waiting.append(request)
        self._arm_wait_timer()
        self._arm_inactivity()
        self.kick()

    def _next_waiting(self, size: int, now: int, pending: int = 0) -> PullRequest | None:
        """`pending`: the messages left to deliver, this one included (an overflow request's
        `min_pending` is measured against it)."""
        policy = self.config.priority_policy
        if policy in ("", "none"):
            return take_next(self.waiting, size, now, self.account.sublist.has_interest, self._send_status)
        if policy == "pinned_client":
            request = take_next(
                self.waiting, size, now, self.account.sublist.has_interest, self._send_status, pinned=self.pin_id
            )
            if request is not None and not self.pin_id:
                self._pin(request)
            return request

        def overflowing(request: PullRequest) -> bool:
            return (0 < request.min_pending <= pending) or (0 < request.min_ack_pending <= len(self.pending))

        return take_next(
            self.waiting, size, now, self.account.sublist.has_interest, self._send_status, policy, overflowing
        )

    # ------------------------------------------------------------------ pinned client (ADR-42)

    def _pin(self, request: PullRequest) -> None:
        """Pin the priority group to the client of `request` (it gets a new id)."""
        if not request.group:
            return
        self.pin_id = request.pin_id = advisory.random_name(22)
        self.pinned_ts = self.now()
        self._arm_pin_timer()
        advisory.consumer_pin(self, request.group, pin_id=self.pin_id)

    def unpin(self, group: str, reason: str) -> None:
        """The pinned client is let go (`$JS.API.CONSUMER.UNPIN`: "admin"; silence: "timeout")."""
        self.pin_id = ""
        self.pinned_ts = 0
        if self._pin_timer is not None:
            self._pin_timer.cancel()
            self._pin_timer = None
        advisory.consumer_pin(self, group, reason=reason)
        self.kick()

    def _arm_pin_timer(self) -> None:
        if self._pin_timer is not None:
            self._pin_timer.cancel()
        ttl = self.config.priority_timeout
        if ttl > 0 and not self.closed:
            self._pin_timer = self.loop.call_later(ttl / NS, self._pin_expired)

    def _pin_expired(self) -> None:
        self._pin_timer = None
        if self.pin_id and not self.closed:
            self.unpin((self.config.priority_groups or [""])[0], "timeout")

    def _end_of_stream(self) -> None:
        self.waiting = end_of_stream(self.waiting, self._send_status)

    def _process_waiting(self, now: int) -> None:
        """Expire requests (408), drop those whose requester is gone, send due heartbeats."""
        self.waiting = expire_waiting(
            self.waiting,
            now,
            self.account.sublist.has_interest,
            self._send_status,
            lambda: _heartbeat(self.dseq - 1, self.sseq - 1),
        )

    def _arm_wait_timer(self) -> None:
        if self.closed:
            return
        deadlines = [r.expires for r in self.waiting if r.expires] + [r.hb_next for r in self.waiting if r.hb]
        if not deadlines:
            return
        at = min(deadlines)
        if self._wait_timer is not None:
            if self._wait_timer_at <= at:
                return
            self._wait_timer.cancel()
        self._wait_timer_at = at
        self._wait_timer = self.loop.call_later(max(at - self.now(), 0) / NS, self._wait_tick)

    def _wait_tick(self) -> None:
        self._wait_timer = None
        self._wait_timer_at = 0
        if self.closed:
            return
        self._process_waiting(self.now())
        self._arm_wait_timer()

    def num_waiting(self) -> int:
        if self.waiting:
            self._process_waiting(self.now())
        return len(self.waiting)

    # ------------------------------------------------------------------ acks

    def process_ack(self, tokens: list[bytes], reply: bytes, body: bytes) -> None:
        """An ack published to this consumer's `$JS.ACK…` subject (tokens after the names)."""
        if self.closed:
            return
        try:
            dc, sseq, dseq = int(tokens[0]), int(tokens[1]), int(tokens[2])
        except (ValueError, IndexError):
            return
        skip_reply = False
        if not body or body == b"+ACK" or body == b"+OK":
            if not self._ack(sseq, dseq, dc, sample=True):
                skip_reply = True
        elif body.startswith(b"+NXT"):
            self._ack(sseq, dseq, dc, sample=True)
            if reply:
                self.process_pull(reply, body[4:].strip())
            skip_reply = True
        elif body.startswith(b"-NAK"):
            self._nak(sseq, dseq, dc, body[4:].strip())
        elif body == b"+WPI":
            self._progress(sseq)
        elif body.startswith(b"+TERM"):
            reason = body[5:].strip().decode("utf-8", "replace")
            if not self._ack(sseq, dseq, dc, sample=False):
                skip_reply = True
            advisory.terminated(self, dseq, sseq, dc, reason)
        if reply and not skip_reply:
            self._ack_reply(reply)

    def _durable(self) -> Any:
        """An awaitable done when every state change so far is durable: the stream store's group
        commit, or, replicated, the commit of the group's entries on a majority."""
        sync = getattr(self.store, "sync", None)
        return sync() if sync is not None else self.stream.store.sync()

    def _ack_reply(self, reply: bytes) -> None:
        """The empty ack-ack, once the ack is durable (group commit; replicated: committed)."""
        try:
            if self._ack_buf or self._none_last is not None:
                self._flush_acks()
            waiter = self._durable()
        except Exception:
            waiter = None
        self._sync_scheduled = False
        if waiter is None or (hasattr(waiter, "done") and waiter.done()):
            if waiter is not None and not waiter.cancelled() and waiter.exception() is not None:
                return  # leadership moved before the ack committed: no ack-ack, the client retries
            self.server.send_internal(self.account, reply, b"", b"", b"")
            return

        async def wait_and_reply() -> None:
            try:
                await waiter
            except Exception:
                return
            self.server.send_internal(self.account, reply, b"", b"", b"")

        self.loop.create_task(wait_and_reply())

    def _move_floor_after_ack(self, dseq: int, sseq: int) -> None:
        if not self.pending:
            self.adflr, self.asflr = self.dseq - 1, self.sseq - 1
        elif dseq == self.adflr + 1:
            self.adflr, self.asflr = dseq, sseq
            pending = self.pending
            order = self._order
            while order and order[0] not in pending:
                order.popleft()
            if not order:  # defensive: never expected
                self._order = order = deque(sorted(pending))
            oldest = order[0]
            entry = pending[oldest]
            if entry[0] > 0:
                self.adflr, self.asflr = entry[0] - 1, oldest - 1

    def _ack(self, sseq: int, dseq: int, dc: int, *, sample: bool) -> bool:
        """processAckMsg: False when the ack is for something not delivered yet (no ack-ack)."""
        if sseq >= self.sseq and not self.lss:
            return False
        if self.ack_none:
            return True
        now = self.now()
        self.ack_active = now
        pending = self.pending
        maxp = self.maxp
        freed = maxp > 0 and len(pending) >= maxp
        if self.ack_all:
            if dseq <= self.adflr or sseq <= self.asflr:
                return True
            if sample and self.sample and sseq in self.pending:
                self._sample(sseq, dseq, dc, now)
            for seq in [s for s in self.pending if s <= sseq]:
                del self.pending[seq]
                self.rdc.pop(seq, None)
                self._remove_rdq(seq)
            acked = list(range(self.asflr + 1, sseq + 1))
            self.adflr, self.asflr = dseq, sseq
            if not self.pending:
                self.adflr, self.asflr = self.dseq - 1, self.sseq - 1
                if self.adflr < dseq:
                    self.adflr, self.asflr = dseq, sseq
            self.save()
            if self.stream.config.retention != "limits":
                for seq in acked:
                    check_message_retention(self.stream, seq, None)
        else:
            entry = pending.pop(sseq, None)
            if entry is not None and sample and self.sample:
                pending[sseq] = entry
                self._sample(sseq, dseq, dc, now)
                del pending[sseq]
            if self.rdc:
                self.rdc.pop(sseq, None)
            if sseq in self._rdq_set:
                self._remove_rdq(sseq)
            if entry is not None:
                self._move_floor_after_ack(entry[0], sseq)
                self._ack_buf.append((entry[0], sseq))
                if not self._sync_scheduled:
                    self._schedule_sync()
                if self.stream.config.retention != "limits":
                    check_message_retention(self.stream, sseq, None)
        if freed and len(self.pending) < self.maxp:
            self.kick()
        return True

    def _sample(self, sseq: int, dseq: int, dc: int, now: int) -> None:
        if dc != 1 or random.randint(1, 100) > self.sample:
            return
        entry = self.pending.get(sseq)
        delivered_at = entry[1] if entry else now
        advisory.ack_metric(self, dseq, sseq, now - delivered_at, dc)

    def _nak(self, sseq: int, dseq: int, dc: int, arg: bytes) -> None:
        if dseq <= self.adflr or dseq >= self.dseq:
            return
        entry = self.pending.get(sseq)
        if entry is None:
            return
        advisory.nak(self, dseq, sseq, dc)
        now = self.now()
        if arg:
            delay: int | None = None
            try:
                if arg[:1] == b"{":
                    value = json.loads(arg).get("delay", 0)
                    delay = int(value) if isinstance(value, int) and not isinstance(value, bool) else None
                else:
                    delay = H.parse_go_duration(arg.decode())
            except (ValueError, AttributeError, UnicodeDecodeError):
                delay = None
            if delay is not None:
                self._remove_rdq(sseq)
                entry[2] = now + delay
                entry[1] = now - self.config.ack_wait + delay
                if self._ack_buf or self._none_last is not None:
                    self._flush_acks()
                self.store.update_delivered(entry[0], sseq, dc, entry[1])
                self._schedule_sync()
                self._arm_ack_timer(force=True)
                return
        if self._exhausted(sseq):
            return
        self._add_rdq(sseq)
        self.kick()

    def _progress(self, sseq: int) -> None:
        entry = self.pending.get(sseq)
        if entry is None:
            return
        now = self.now()
        entry[1] = now
        entry[2] = now + self._wait_for(self.rdc.get(sseq, 1))
        if self._ack_buf or self._none_last is not None:
            self._flush_acks()
        self.store.update_delivered(entry[0], sseq, self.rdc.get(sseq, 1), now)
        self._schedule_sync()

    def _exhausted(self, sseq: int) -> bool:
        """hasMaxDeliveries: the advisory once, then the message leaves pending for good."""
        if not self.max_deliver:
            return False
        dc = self.rdc.get(sseq, 1)
        if dc < self.max_deliver:
            return False
        if dc == self.max_deliver:
            advisory.max_deliveries(self, sseq, dc)
        entry = self.pending.pop(sseq, None)
        self._remove_rdq(sseq)
        self.rdc[sseq] = dc
        if entry is not None:
            self.save()
        if self.maxp and len(self.pending) == self.maxp - 1:
            self.kick()
        return True

    # ------------------------------------------------------------------ redelivery timer

    def _arm_ack_timer(self, force: bool = False) -> None:
        if self.closed or self.ack_none or self.ack_fc or not self.pending:
            return
        at = (
            min(entry[2] for entry in self.pending.values()) if force or self._ack_timer is None else self._ack_timer_at
        )
        if self._ack_timer is not None:
            if not force:
                return
            self._ack_timer.cancel()
        self._ack_timer_at = at
        self._ack_timer = self.loop.call_later(max(at - self.now(), 0) / NS + 0.001, self._ack_tick)

    def _ack_tick(self) -> None:
        self._ack_timer = None
        if self.closed:
            return
        self.check_pending()
        self._arm_ack_timer(force=True)

    def check_pending(self) -> None:
        """checkPending: queue expired deliveries for redelivery (or retire them at max_deliver)."""
        if self.ack_fc:
            return  # no ack wait: what was not acknowledged is delivered again after a reset
        now = self.now()
        due = [seq for seq, entry in self.pending.items() if entry[2] <= now and seq not in self._rdq_set]
        for seq in sorted(due):
            if not self._exhausted(seq):
                self._add_rdq(seq)
        if self.rdq:
            self.kick()

    # ------------------------------------------------------------------ retention

    def needs_ack(self, seq: int) -> bool:
        if seq <= self.asflr:
            return False
        if self.ack_none or self.ack_all:
            return True
        if seq >= self.sseq:
            return True
        return seq in self.pending

    def retention_sweep(self, scan: int = 10_000) -> int:
        """An interest or work-queue stream still holding messages this consumer acknowledged
        (their removal was lost: in a cluster, a delete forwarded to a stream leader that died):
        ask for their removal again. Looks at no more than `scan` stored messages below the
        cursor; returns how many it asked to remove."""
        stream = self.stream
        if self.closed or stream.config.retention == "limits":
            return 0
        store = stream.store
        seq = store.state().first_seq
        found = 0
        consumers = None
        for _ in range(scan):
            msg = store.load_next_msg(b">", seq)
            if msg is None or msg.seq >= self.sseq:
                break
            if self.matches_subject(msg.subject) and not self.needs_ack(msg.seq):
                if consumers is None:
                    consumers = consumers_of(stream)
                check_message_retention(stream, msg.seq, msg.subject, consumers)
                found += 1
            seq = msg.seq + 1
        return found

    def _check_retention(self, seq: int, subject: bytes | None) -> None:
        retention = self.stream.config.retention
        if retention == "limits":
            return
        check_message_retention(self.stream, seq, subject)

    # ------------------------------------------------------------------ inactivity and pause

    def _arm_inactivity(self) -> None:
        threshold = self.config.inactive_threshold
        if self.closed or not threshold or self.push:
            return
        if self._inactive_timer is not None:
            self._inactive_timer.cancel()
        self._inactive_timer = self.loop.call_later(threshold / NS, self._inactivity_tick)

    def _inactivity_tick(self) -> None:
        self._inactive_timer = None
        if self.closed:
            return
        now = self.now()
        threshold = self.config.inactive_threshold
        last = max(self._last_request, self.delivered_active, self.ack_active)
        if self.pending:
            last = max(last, max(entry[2] for entry in self.pending.values()) - threshold)
        if self.num_waiting() or now - last < threshold:
            wait = max(last + threshold - now, threshold // 10, 10_000_000)
            self._inactive_timer = self.loop.call_later(wait / NS, self._inactivity_tick)
            return
        self.stream_delete()

    def stream_delete(self) -> None:
        """Delete this consumer from its stream (an ephemeral's inactivity), through the lifecycle
        module's `delete_consumer` that `attach` handed over (it imports this module)."""
        if self.remove is not None:
            self.remove()

    def _arm_pause(self) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        until = self.config.pause_until
        now = self.now()
        if until and until > now:
            self._pause_timer = self.loop.call_later((until - now) / NS, self._unpause)

    def _unpause(self) -> None:
        self._pause_timer = None
        if self.closed:
            return
        advisory.consumer_pause(self, False, self.config.pause_until)
        self.kick()

    def pause(self, until: int) -> None:
        self.config.pause_until = until
        set_static_metadata(self.config)
        self.save_config()
        self._arm_pause()
        now = self.now()
        advisory.consumer_pause(self, bool(until) and until > now, until)
        self.kick()

    # ------------------------------------------------------------------ update

    def update(self, config: ConsumerConfig) -> None:
        old = self.config
        config.pause_until = old.pause_until
        set_static_metadata(config)
        self.config = config
        self._compile()
        if old.filters() != config.filters():
            self._npc = None
        self.save_config()
        if old.inactive_threshold != config.inactive_threshold:
            self._arm_inactivity()
        self.kick()

    # ------------------------------------------------------------------ info

    def config_json(self, *, dynamic: bool = True) -> dict[str, Any]:
        out = encode(self.config)
        metadata = self.config.metadata
        out["metadata"] = dynamic_metadata(metadata) if dynamic else dict(sorted((metadata or {}).items()))
        return out

    def info(self, *, dynamic: bool = True, with_config: bool = True) -> dict[str, Any]:
        now = self.now()
        delivered: dict[str, Any] = {"consumer_seq": self.dseq - 1, "stream_seq": self.sseq - 1}
        if self.delivered_active:
            delivered["last_active"] = format_time_ns(self.delivered_active)
        floor: dict[str, Any] = {"consumer_seq": self.adflr, "stream_seq": self.asflr}
        if self.ack_active:
            floor["last_active"] = format_time_ns(self.ack_active)
        out: dict[str, Any] = {
            "stream_name": self.stream.name,
            "name": self.name,
            "created": format_time_ns(self.created),
        }
        if with_config:
            out["config"] = self.config_json(dynamic=dynamic)
        out["delivered"] = delivered
        out["ack_floor"] = floor
        out["num_ack_pending"] = len(self.pending)
        out["num_redelivered"] = sum(1 for seq in self.pending if self.rdc.get(seq, 1) > 1)
        out["num_waiting"] = self.num_waiting()
        out["num_pending"] = self.num_pending()
        replicated = getattr(self.stream, "replicated", None)
        if self.clustered is not None:
            out["cluster"] = self.clustered.cluster_info()
        elif replicated is not None:
            # clustered: the consumer runs on this server alone (R1), nats-server's shape for an R1 group
            out["cluster"] = replicated.consumer_cluster_info()
        if self.push and self.account.sublist.has_interest(self.deliver_subject):
            out["push_bound"] = True
        if self.paused(now):
            out["paused"] = True
            out["pause_remaining"] = self.config.pause_until - now
        out["ts"] = format_time_ns(now)
        if self.config.priority_groups:
            # nats-server reports the first group, with its pinned client
            state: dict[str, Any] = {"group": self.config.priority_groups[0]}
            if self.pin_id:
                state["pinned_client_id"] = self.pin_id
            state["pinned_ts"] = format_time_ns(self.pinned_ts) if self.pin_id else ZERO_TIME
            out["priority_groups"] = [state]
        return out

    def statistics(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "delivered": self.dseq - 1,
            "ack_pending": len(self.pending),
            "waiting": len(self.waiting),
        }


__all__ = ["Consumer", "deliver_as"]
