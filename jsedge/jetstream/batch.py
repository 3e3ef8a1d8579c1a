"""Atomic batch publish (nats-server 2.12+, ADR-50): `allow_atomic`, `Nats-Batch-Id`.

A client sends a batch as ordinary publishes carrying `Nats-Batch-Id: <id>` and
`Nats-Batch-Sequence: 1, 2, ...`; the last one also carries `Nats-Batch-Commit: 1` (stored) or
`Nats-Batch-Commit: eob` (not stored: it only ends the batch, and the message before it gets the
`Nats-Batch-Commit: 1` header). Until the commit nothing reaches the stream: messages are staged
here, in memory, and a staged message with a reply gets an empty message back. On commit every
message is checked in order against the stream as it would be after the ones before it (the staged
diff, `Staged`), and then either the whole batch is stored or none of it, with one PubAck
`{"stream", "seq": <last>, "batch", "count"}`.

All or nothing holds across a crash too: the batch is applied in one go (one Raft entry on a
replicated stream), and a file store writes a batch marker before the batch's records, so a restart
that finds a batch cut short by a kill or a power loss drops what it has of it (filestore.py).
Staging in memory is safe for the same reason: a batch that was not committed when the server died
is answered "incomplete" when its commit arrives, and nothing of it is stored.

Limits (nats-server's, and its `jetstream { limits { batch { max_msgs, max_inflight_per_stream,
max_inflight_total, timeout } } }`): 1000 messages per batch, 50 open batches per stream, 1000 per
server, and a batch with no message for 10 s is abandoned (the `BATCH_ABANDONED` advisory).

Layer 4: imports jetstream models/headers/errors and layer 0.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from jsedge import gojson
from jsedge.errors import JSError, js_error
from jsedge.goparse import parse_duration_ns
from jsedge.jetstream import advisory
from jsedge.jetstream import headers as H
from jsedge.jetstream.streamconfig import API_LEVEL

MAX_BATCH_SIZE = 1000
MAX_INFLIGHT_PER_STREAM = 50
MAX_INFLIGHT_TOTAL = 1000
TIMEOUT = 10.0
MAX_ID_LEN = 64

BATCH_SEQUENCE = b"Nats-Batch-Sequence"
BATCH_COMMIT = b"Nats-Batch-Commit"


@dataclass(slots=True)
class Limits:
    """`limits { batch { ... } }`; 0 = nats-server's default (the atomic and fast batch defaults
    differ: 50 and 1000 batches per stream, 1000 and 50 000 per server)."""

    size: int = 0
    per_stream: int = 0
    total: int = 0
    timeout: float = TIMEOUT


def limits_from(raw: Any) -> Limits:
    """The `batch` block of the JetStream `limits` (raw key/value pairs as the config keeps them)."""
    limits = Limits()
    block = None
    for key, value in raw or ():
        if str(key).lower() == "batch" and isinstance(value, dict):
            block = value
    if not block:
        return limits
    for key, value in block.items():
        name = str(key).lower()
        try:
            if name == "max_msgs" and int(value) > 0:
                limits.size = int(value)
            elif name == "max_inflight_per_stream" and int(value) > 0:
                limits.per_stream = int(value)
            elif name == "max_inflight_total" and int(value) > 0:
                limits.total = int(value)
            elif name == "timeout":
                seconds = parse_duration_ns(str(value)) / 1e9 if isinstance(value, str) else float(value)
                if seconds > 0:
                    limits.timeout = seconds
        except (TypeError, ValueError):
            continue
    return limits


@dataclass(slots=True)
class Staged:
    """nats-server's batchStagedDiff: what the messages checked so far would change."""

    count: int = 0  # sequences the checked messages take
    msg_ids: set[bytes] = field(default_factory=set)
    #: subject -> [messages, bytes] written by the batch so far
    inflight: dict[bytes, list[int]] = field(default_factory=dict)
    #: a counter stream's running totals: subject -> (total, sources)
    counters: dict[bytes, tuple[int, dict[str, dict[str, str]]]] = field(default_factory=dict)
    #: Nats-Expected-Last-Subject-Sequence checks already made: subject -> the sequence found
    expected: dict[bytes, int] = field(default_factory=dict)
    msgs: int = 0
    size: int = 0  # bytes
    #: subjects of the batch's schedule messages
    schedules: set[bytes] = field(default_factory=set)


def check_before_batch(stream: Any, subject: bytes, hdr: bytes, data: bytes) -> None:
    """What nats-server checks of any message of a batch before looking at the batch: sealed,
    server and account resources, the stream's message size."""
    config = stream.config
    if config.sealed:
        raise js_error("JSStreamSealedErr")
    stream.host.check_resources(stream, stream.store.msg_size(subject, hdr, data))
    if config.max_msg_size >= 0 and len(hdr) + len(data) > config.max_msg_size:
        raise js_error("JSStreamMessageExceedsMaximumErr")


class _Batch:
    __slots__ = ("id", "messages", "timer")

    def __init__(self, batch_id: str) -> None:
        self.id = batch_id
        self.messages: list[tuple[bytes, bytes, bytes]] = []
        self.timer: asyncio.TimerHandle | None = None


class AtomicBatches:
    """The open batches of one stream (`stream.batches`), staged until their commit."""

    #: open batches of every stream of every server in the process, by server (the total limit)
    _open_total: dict[int, int] = {}

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.open: dict[str, _Batch] = {}

    # ------------------------------------------------------------------ bookkeeping
    def _limits(self) -> Limits:
        host = self.stream.host
        limits = getattr(host.jetstream, "batch_limits", None)
        return limits if limits is not None else Limits()

    @staticmethod
    def _size(limits: Limits) -> int:
        return limits.size or MAX_BATCH_SIZE

    def _server_key(self) -> int:
        return id(self.stream.server)

    def _discard(self, batch: _Batch) -> None:
        if self.open.pop(batch.id, None) is not None:
            key = self._server_key()
            self._open_total[key] = max(0, self._open_total.get(key, 1) - 1)
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None

    def _abandon(self, batch: _Batch, reason: str) -> None:
        self._discard(batch)
        stream = self.stream
        advisory.publish(
            stream.server,
            stream.account,
            f"{advisory.ADVISORY_PREFIX}STREAM.BATCH_ABANDONED.{stream.name}",
            "stream_batch_abandoned",
            [("stream", stream.name), ("batch", batch.id), ("reason", reason)],
            domain=stream.host.domain,
        )

    def _arm(self, batch: _Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        loop = self.stream.server.loop
        batch.timer = loop.call_later(self._limits().timeout, self._timed_out, batch)

    def _timed_out(self, batch: _Batch) -> None:
        batch.timer = None
        if self.open.get(batch.id) is batch:
            self._abandon(batch, "timeout")

    def clear(self) -> None:
        """The stream stops (deleted, shut down, leadership lost): open batches are dropped."""
        for batch in list(self.open.values()):
            self._discard(batch)

    # ------------------------------------------------------------------ one inbound message
    def receive(self, batch_id: bytes, subject: bytes, reply: bytes, hdr: bytes, data: bytes) -> None:
        """processJetStreamAtomicBatchMsg: stage one message, or commit the batch it ends."""
        stream = self.stream
        respond = bool(reply) and not stream.config.no_ack
        try:
            committed = self._stage(batch_id, subject, reply, hdr, data)
        except JSError as exc:
            if respond:
                stream._send_ack(reply, stream._ack_error(exc))
            return
        if committed is None:
            if respond:
                stream._send_ack(reply, b"")  # staged: nothing stored yet
            return
        batch, messages = committed
        stream.commit_batch(batch.id, messages, reply if respond else b"")

    def _stage(
        self, raw_id: bytes, subject: bytes, reply: bytes, hdr: bytes, data: bytes
    ) -> tuple[_Batch, list[tuple[bytes, bytes, bytes]]] | None:
        stream = self.stream
        config = stream.config
        check_before_batch(stream, subject, hdr, data)
        if not config.allow_atomic:
            raise js_error("JSAtomicPublishDisabledErr")
        if len(raw_id) > MAX_ID_LEN:
            raise js_error("JSAtomicPublishInvalidBatchIDErr")
        batch_id = raw_id.decode("utf-8", "replace")
        seq_value = H.get_header(hdr, BATCH_SEQUENCE)
        if not seq_value or not seq_value.isdigit() or int(seq_value) >= 1 << 64:
            raise js_error("JSAtomicPublishMissingSeqErr")
        seq = int(seq_value)
        commit_value = H.get_header(hdr, BATCH_COMMIT)
        commit = commit_value is not None
        eob = commit_value == b"eob"
        limits = self._limits()
        batch = self.open.get(batch_id)
        if batch is None:
            if seq != 1:
                if (seq - 1 if eob else seq) > self._size(limits):
                    raise js_error("JSAtomicPublishTooLargeBatchErrF", size=self._size(limits))
                raise js_error("JSAtomicPublishIncompleteBatchErr")
            key = self._server_key()
            per_stream = limits.per_stream or MAX_INFLIGHT_PER_STREAM
            total = limits.total or MAX_INFLIGHT_TOTAL
            if len(self.open) + 1 > per_stream or self._open_total.get(key, 0) + 1 > total:
                raise js_error("JSAtomicPublishTooManyInflight")
            batch = self.open[batch_id] = _Batch(batch_id)
            self._open_total[key] = self._open_total.get(key, 0) + 1
        if commit and not eob and commit_value != b"1":
            self._discard(batch)
            raise js_error("JSAtomicPublishInvalidBatchCommitErr")
        level = H.get_header(hdr, H.REQUIRED_API_LEVEL)
        if level:
            if not level.strip().isdigit() or int(level) > API_LEVEL:
                self._abandon(batch, "unsupported")
                raise js_error("JSRequiredApiLevelErr")
            hdr = H.remove_header(hdr, H.REQUIRED_API_LEVEL)
        if seq != len(batch.messages) + 1 or (seq == 1 and eob):
            self._abandon(batch, "incomplete")
            raise js_error("JSAtomicPublishIncompleteBatchErr")
        if (seq - 1 if eob else seq) > self._size(limits):
            self._abandon(batch, "large")
            raise js_error("JSAtomicPublishTooLargeBatchErrF", size=self._size(limits))
        batch.messages.append((subject, hdr, data))
        if not commit:
            self._arm(batch)
            return None
        self._discard(batch)
        messages = batch.messages
        if eob:
            messages.pop()
            last_subject, last_hdr, last_data = messages[-1]
            messages[-1] = (last_subject, H.append_headers(last_hdr, [(BATCH_COMMIT, b"1")]), last_data)
        return batch, messages


# ------------------------------------------------------------------------------------------------
# fast (non-atomic) batch publish: `allow_batched`, nats-server 2.14+

MAX_FAST_INFLIGHT_PER_STREAM = 1000
MAX_FAST_INFLIGHT_TOTAL = 50_000
OP_START, OP_APPEND, OP_COMMIT, OP_EOB, OP_PING = range(5)


@dataclass(slots=True)
class FastRequest:
    """What a fast batch message's reply subject says:
    `<inbox>.<batch id>.<flow>.<gap mode>.<batch seq>.<operation>.$FI`."""

    id: str
    seq: int
    flow: int
    gap_ok: bool
    op: int

    @property
    def commit(self) -> bool:
        return self.op in (OP_COMMIT, OP_EOB)


def parse_fast_reply(reply: bytes) -> FastRequest | None:
    """nats-server's getFastBatch for a reply ending in `.$FI`; None for a pattern it refuses."""
    tokens = reply[: -len(H.FAST_BATCH_SUFFIX)].split(b".")
    if len(tokens) < 6:
        return None
    batch_id, flow_text, gap, seq_text, op_text = tokens[-5:]
    op = int(op_text) if op_text.isdigit() else -1
    if not OP_START <= op <= OP_PING:
        return None
    if not seq_text.isdigit() or not 0 < int(seq_text) < (1 << 64) - 1:
        return None
    seq = int(seq_text)
    if (seq == 1 and op == OP_EOB) or (op == OP_START and seq != 1) or (op == OP_APPEND and seq <= 1):
        return None
    if gap not in (b"fail", b"ok"):
        return None
    flow = int(flow_text) if flow_text.isdigit() else 0
    flow = 10 if flow <= 0 else min(flow, 0xFFFF)
    return FastRequest(batch_id.decode("utf-8", "replace"), seq, flow, gap == b"ok", op)


class _Fast:
    __slots__ = (
        "id",
        "lseq",
        "sseq",
        "pseq",
        "fseq",
        "pending",
        "ack_messages",
        "max_ack",
        "gap_ok",
        "commit",
        "timer",
    )

    def __init__(self, batch_id: str, gap_ok: bool, max_ack: int) -> None:
        self.id = batch_id
        self.lseq = 0  # the highest batch sequence received
        self.sseq = 0  # the stream sequence of the last message stored
        self.pseq = 0  # the highest batch sequence stored
        self.fseq = 0  # the batch sequence of the last flow-control ack
        self.pending = 0  # messages on their way to the store (a replicated stream's proposals)
        self.ack_messages = 1
        self.max_ack = max_ack
        self.gap_ok = gap_ok
        self.commit = False
        self.timer: asyncio.TimerHandle | None = None


def _flow_ack(seq: int, messages: int) -> bytes:
    return b'{"type":"ack","seq":%d,"msgs":%d}' % (seq, messages)


def _flow_gap(expected: int, current: int) -> bytes:
    return b'{"type":"gap","last_seq":%d,"seq":%d}' % (expected, current)


class FastBatches:
    """The open fast batches of one stream (`stream.fast_batches`): nats-server's flow control.

    A publisher streams messages whose reply subjects carry the batch id, the flow it asks for
    (an ack every N messages at most), the gap mode and the batch sequence. Each message is stored
    as an ordinary publish; the server answers the first with `{"type":"ack","seq":0,"msgs":N}`,
    then one such ack each time N more are stored (N ramps up to the client's flow, or down when
    several batches share the stream), `{"type":"gap",...}` when sequences jump (gap mode `fail`
    then commits what arrived; `ok` carries on), `{"type":"err",...}` for a message refused inside
    the batch, and one PubAck with `batch` and `count` on commit. Every answer leaves after the
    fsync that covers what it reports (jsedge acknowledges only what is on disk)."""

    _open_total: dict[int, int] = {}

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.open: dict[str, _Fast] = {}

    def _limits(self) -> Limits:
        limits = getattr(self.stream.host.jetstream, "batch_limits", None)
        return limits if limits is not None else Limits()

    def _send(self, reply: bytes, body: bytes) -> None:
        if reply and not self.stream.config.no_ack:
            self.stream._send_ack_after_sync(reply, body)

    def _cleanup(self, batch: _Fast) -> None:
        if self.open.get(batch.id) is batch:
            del self.open[batch.id]
            key = id(self.stream.server)
            self._open_total[key] = max(0, self._open_total.get(key, 1) - 1)
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None

    def clear(self) -> None:
        for batch in list(self.open.values()):
            self._cleanup(batch)

    def _arm(self, batch: _Fast) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        batch.timer = self.stream.server.loop.call_later(self._limits().timeout, self._cleanup, batch)

    def _pub_ack(self, batch: _Fast, reply: bytes) -> None:
        stream = self.stream
        self._send(reply, stream._ack_ok(batch.sseq, False, batch=(batch.id, batch.lseq)))

    def _commit(self, batch: _Fast, reply: bytes) -> bool:
        """The batch ends at its last received sequence: the PubAck now if all of it is stored
        (True), else when the last of it is."""
        batch.commit = True
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if batch.lseq == batch.pseq:
            self._cleanup(batch)
            self._pub_ack(batch, reply)
            return True
        return False

    def _check_flow(self, batch: _Fast, reply: bytes) -> bool:
        every = batch.ack_messages
        if batch.pseq < batch.fseq + every:
            return False
        batch.fseq += (batch.pseq - batch.fseq) // every * every
        ceiling = min(max(1, 500 // max(1, len(self.open))), batch.max_ack)
        if batch.ack_messages < ceiling:
            batch.ack_messages = min(batch.ack_messages * 2, ceiling)
        elif batch.ack_messages > ceiling:
            batch.ack_messages = max(batch.ack_messages // 2, ceiling)
        self._send(reply, _flow_ack(batch.fseq, batch.ack_messages))
        return True

    # ------------------------------------------------------------------ one inbound message
    def receive(self, subject: bytes, reply: bytes, hdr: bytes, data: bytes) -> None:
        stream = self.stream
        try:
            self._receive(subject, reply, hdr, data)
        except JSError as exc:
            if reply and not stream.config.no_ack:
                stream._send_ack(reply, stream._ack_error(exc))

    def _receive(self, subject: bytes, reply: bytes, hdr: bytes, data: bytes) -> None:
        stream = self.stream
        config = stream.config
        check_before_batch(stream, subject, hdr, data)
        if not config.allow_batched:
            raise js_error("JSBatchPublishDisabledErr")
        request = parse_fast_reply(reply)
        if request is None:
            raise js_error("JSBatchPublishInvalidPatternErr")
        if len(request.id.encode()) > MAX_ID_LEN:
            raise js_error("JSBatchPublishInvalidBatchIDErr")
        batch = self.open.get(request.id)
        if batch is None:
            if request.seq != 1:
                raise js_error("JSBatchPublishUnknownBatchIDErr")
            limits = self._limits()
            per_stream = limits.per_stream or MAX_FAST_INFLIGHT_PER_STREAM
            total = limits.total or MAX_FAST_INFLIGHT_TOTAL
            key = id(stream.server)
            if len(self.open) + 1 > per_stream or self._open_total.get(key, 0) + 1 > total:
                raise js_error("JSBatchPublishTooManyInflight")
            batch = self.open[request.id] = _Fast(request.id, request.gap_ok, request.flow)
            self._open_total[key] = self._open_total.get(key, 0) + 1
            batch.ack_messages = 1 if len(self.open) > 1 else min(500, request.flow)
        level = H.get_header(hdr, H.REQUIRED_API_LEVEL) if hdr else None
        if level:
            if not level.strip().isdigit() or int(level) > API_LEVEL:
                self._cleanup(batch)
                raise js_error("JSRequiredApiLevelErr")
            hdr = H.remove_header(hdr, H.REQUIRED_API_LEVEL)
        if not batch.commit:
            self._arm(batch)
        if request.op == OP_PING:
            send_flow = True
            if request.seq > batch.lseq:
                self._send(reply, _flow_gap(batch.lseq + 1, request.seq + 1))
                if batch.gap_ok:
                    batch.lseq = request.seq
                    if batch.pending == 0:
                        batch.pseq = batch.lseq
                    send_flow = not self._check_flow(batch, reply)
                else:
                    self._commit(batch, reply)
                    send_flow = False
            if send_flow:
                self._send(reply, _flow_ack(batch.fseq, batch.ack_messages))
            return
        if batch.commit:
            return  # committing: later messages are dropped, the publisher waits for its PubAck
        batch.lseq += 1
        if batch.lseq != request.seq:
            self._send(reply, _flow_gap(batch.lseq, request.seq))
            if batch.gap_ok and request.seq > batch.lseq:
                batch.lseq = request.seq
            else:
                batch.lseq -= 1
                self._commit(batch, reply)
                return
        if request.commit:
            if request.op == OP_EOB:
                batch.lseq -= 1
                if batch.pending == 0:
                    batch.pseq = batch.lseq
            self._commit(batch, reply)
            if request.op == OP_EOB:
                return
        if request.seq == 1 and not request.commit:
            self._send(reply, _flow_ack(0, batch.ack_messages))
        batch.pending += 1
        stream.store_fast(subject, hdr, data, lambda result: self._stored(batch, request, reply, result))

    def _stored(self, batch: _Fast, request: FastRequest, reply: bytes, result: Any) -> None:
        """How one message of the batch ended: (seq, duplicate) or the JSError that refused it."""
        stream = self.stream
        batch.pending = max(0, batch.pending - 1)
        if isinstance(result, JSError):
            if not batch.gap_ok and batch.lseq == 1:
                self._cleanup(batch)
                self._send(reply, stream._ack_error(result))
                return
            error = gojson.dumps(result.to_json()).encode()
            self._send(reply, b'{"type":"err","seq":%d,"error":%s}' % (request.seq, error))
            if batch.gap_ok and not request.commit:
                return
            batch.lseq = request.seq - 1
            if batch.pending == 0:
                batch.pseq = batch.lseq
            self._commit(batch, reply)
            return
        if isinstance(result, BaseException):
            return  # leadership moved: the publisher's batch times out
        seq, duplicate = result
        if duplicate:
            if batch.pending == 0:
                batch.pseq = request.seq
                self._check_flow(batch, reply)
            if not request.commit:
                return
            if not batch.gap_ok and batch.lseq == 1:
                self._cleanup(batch)
                body = stream._ack_ok(seq, True)[:-1] + b',"batch":%s,"count":%d}' % (
                    gojson.dumps(batch.id).encode(),
                    request.seq,
                )
                self._send(reply, body)
                return
            self._commit(batch, reply)
            return
        batch.sseq = seq
        if batch.pending == 0:
            batch.pseq = batch.lseq
        else:
            batch.pseq = request.seq
        if batch.lseq == batch.pseq and batch.commit:
            self._cleanup(batch)
            self._pub_ack(batch, reply)
            return
        self._check_flow(batch, reply)
