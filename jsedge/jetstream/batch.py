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
    size: int = MAX_BATCH_SIZE
    per_stream: int = MAX_INFLIGHT_PER_STREAM
    total: int = MAX_INFLIGHT_TOTAL
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
    bytes: int = 0


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
        if config.sealed:
            raise js_error("JSStreamSealedErr")
        stream.host.check_resources(stream, stream.store.msg_size(subject, hdr, data))
        if config.max_msg_size >= 0 and len(hdr) + len(data) > config.max_msg_size:
            raise js_error("JSStreamMessageExceedsMaximumErr")
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
                if (seq - 1 if eob else seq) > limits.size:
                    raise js_error("JSAtomicPublishTooLargeBatchErrF", size=limits.size)
                raise js_error("JSAtomicPublishIncompleteBatchErr")
            key = self._server_key()
            if len(self.open) + 1 > limits.per_stream or self._open_total.get(key, 0) + 1 > limits.total:
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
        if (seq - 1 if eob else seq) > limits.size:
            self._abandon(batch, "large")
            raise js_error("JSAtomicPublishTooLargeBatchErrF", size=limits.size)
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
