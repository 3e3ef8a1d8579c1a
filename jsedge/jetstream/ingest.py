"""The plain publish and the plain apply, fused (issue 14's ingest; the path replicated streams share).

Most publishes need no decision in Python: no header to read (no Msg-Id, expectation, rollup, TTL,
counter or schedule), a stream without transform, republish, interest retention or seal, a subject the
store already holds, limits that a few comparisons settle. `ingest_plain()` takes such a publish from
the stream's subscription callback straight into the active block's buffer, the index arrays and the
subject's state, and queues its PubAck for the stream's next group commit, without the general path's
command object, prepared-publish record and dispatch. `apply_plain()` does the same for a committed
StoreMsg on every replica of a replicated stream (headers allowed, the payload stored by reference
into the Raft log when the write-once hint says so). Anything else returns 0 before changing
anything, and the general path runs as always.

What they do is exactly what the general path does for the same message, in the same order:
`Stream.prepare_publish` (size check, the clock), `IndexedStore.store_msg` (discard-new checks, the
record, `_add_live`, the limits), `Stream._record_id`, `Stream.react` and, for a publish, the PubAck
after the fsync (`Stream._send_ack_after_sync` with the group-commit policy).
`tests/property/test_ingest_property.py` feeds the same messages to both and compares the stores byte
for byte.

This module is the reference; `jsedge/_speedups/ingest.pyx` is its compiled twin (chosen by
`jsedge._ext`), which mirrors it helper for helper with typed arrays, the clock read in C and the
records written through the codec's C entry points. Most of the gain over the general path is the
fusion itself: both twins touch the same Python attributes (benchmarks/README.md).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

from jsedge._ext import load
from jsedge.jetstream.headers import FAST_BATCH_SUFFIX
from jsedge.store import codec
from jsedge.store.base import FLUSH_AT, MSG_HDR_OVERHEAD, MSG_OVERHEAD, DiscardPolicy

#: the wall clock (ns); tests inject theirs with `set_clock()`
_clock: Callable[[], int] = time.time_ns


def _active_block(store: Any) -> Any:
    """The block a record is appended to, or None when the general path must open a new one."""
    blocks = store._blocks
    if not blocks:
        return None
    block = blocks[-1]
    if block.size >= store.block_size or block.fd < 0:
        return None
    return block


def _run_starts(store: Any) -> bool:
    """Would the general path start a run of whole messages (the last record was a reference)?"""
    return bool(store._ref_runs) and bool(store._ref_files[-1])


def _refused(store: Any, ss: list[int], size: int) -> bool:
    """Would `IndexedStore.store_msg` refuse the message (discard new)? Then the general path raises."""
    cfg = store.config
    if cfg.discard is not DiscardPolicy.NEW:
        return False
    mps = cfg.max_msgs_per_subject
    at_limit = 0 < mps <= ss[1]
    if at_limit and cfg.discard_new_per_subject:
        return True
    if cfg.max_msgs > 0 and store._msgs >= cfg.max_msgs and not at_limit:
        return True
    return bool(cfg.max_bytes > 0 and store._bytes + size > cfg.max_bytes)


def _index(store: Any, ss: list[int], seq: int, ts: int, size: int, subject: bytes) -> None:
    """`IndexedStore._add_live` of a known subject (its count is above zero: no first to set), then
    the rest of `IndexedStore.store_msg`: the last timestamp and the limits."""
    store._sid.append(ss[0])
    store._ts.append(ts)
    store._size.append(size)
    store._last = seq
    store._used = True
    ss[1] += 1
    ss[3] = seq
    store._msgs += 1
    store._bytes += size
    if store._msgs == 1:
        store._first = seq
    store._last_ts = ts
    cfg = store.config
    if cfg.max_msgs_per_subject > 0 and ss[1] > cfg.max_msgs_per_subject:
        store._enforce_per_subject(subject)
    if cfg.discard is DiscardPolicy.OLD and (cfg.max_msgs > 0 or cfg.max_bytes > 0):
        store._enforce_discard_old()


def _react(stream: Any, seq: int, subject: bytes) -> None:
    """`Stream.react` of a stored message without TTL or rollup (the stream has no scheduler)."""
    if stream.removed:
        removed = stream.removed
        stream.removed = []
        for removed_seq, removed_subject in removed:
            stream._consumers_removed(removed_seq, removed_subject)
    if stream.config.max_age:
        stream._schedule_expiry()
    if stream.consumers and stream.on_stored is not None:
        stream.on_stored(seq, subject)
    for listener in stream.stored_listeners:
        listener(seq, subject)


def _ingest_plain_py(stream: Any, subject: bytes, reply: bytes, data: Any) -> int:
    """Store one header-less publish as the general path would; its sequence, or 0 when the message
    needs the general path (nothing has changed then)."""
    if not stream.plain or stream.scheduler is not None:
        return 0
    replicated = stream.replicated
    if replicated is not None and replicated.group is not None:
        return 0
    if len(reply) > 4 and reply.endswith(FAST_BATCH_SUFFIX):
        return 0
    n = len(data)
    if not stream.plain_fits(n):
        return 0  # too large, or check_resources() has something to check
    store = stream.store
    if not store.plain_ingest or store._closed or store._ref_hint is not None:
        return 0
    if _run_starts(store):
        return 0
    block = _active_block(store)
    if block is None:
        return 0
    ss = store._subjects.get(subject)
    if ss is None or not ss[1]:
        return 0  # a new subject: interned by the general path
    size = MSG_OVERHEAD + len(subject) + n
    if _refused(store, ss, size):
        return 0
    # ---- from here on the message is stored: nothing below declines
    now = _clock()
    seq: int = store._last + 1
    # FileStore._write_msg
    store._off.append(block.size)
    block.live += 1
    block.size += codec.encode_msg(block.buf, block.base_seq, block.base_ts, seq, now, subject, b"", data, 0)
    if len(block.buf) >= FLUSH_AT:
        store._flush_block(block)
    _index(store, ss, seq, now, size, subject)
    stream.last_msg_id = b""  # Stream._record_id without a Msg-Id
    _react(stream, seq, subject)
    # the PubAck, released by the group commit that covers the record
    if reply and not stream.config.no_ack:
        head = stream.ack_head()
        pending = stream._pending_acks
        pending.append((reply, b"%s%d}" % (head, seq)))
        if len(pending) == 1:
            stream.server.loop.call_soon(stream._sync_pending_acks)
    elif not stream._sync_requested:
        stream._sync_requested = True
        stream.server.loop.call_soon(stream._sync_unacked)
    return seq


def _apply_plain_py(stream: Any, command: Any) -> int:
    """`Stream.apply()` of one StoreMsg followed by `Stream.react()`, for a replica applying a
    committed entry: its sequence, or 0 when the command needs the general path (nothing has changed
    then). Headers are allowed (the leader checked them); a TTL, a rollup, a mirror, schedules, a new
    subject, a sequence other than the next, and a limit that refuses it are not."""
    if command.ttl or command.rollup:
        return 0
    config = stream.config
    if config.mirror is not None or stream.scheduler is not None:
        return 0
    store = stream.store
    if not store.plain_ingest or store._closed:
        return 0
    seq: int = store._last + 1
    if command.seq and command.seq != seq:
        return 0  # replayed after a restart, or a sequence mismatch: the general path decides
    data = command.data
    n = len(data)
    hint = store._ref_hint
    if hint is not None:
        if hint[0] != seq or hint[3] != n:
            return 0
    elif _run_starts(store):
        return 0
    block = _active_block(store)
    if block is None:
        return 0
    subject = command.subject
    ss = store._subjects.get(subject)
    if ss is None or not ss[1]:
        return 0
    hdr = command.hdr
    size = (MSG_HDR_OVERHEAD + len(hdr) if hdr else MSG_OVERHEAD) + len(subject) + n
    if _refused(store, ss, size):
        return 0
    # ---- from here on the message is stored: nothing below declines
    ts = command.ts
    # FileStore._write_msg, the payload by reference into the Raft log when the hint says so
    store._off.append(block.size)
    block.live += 1
    if hint is not None:
        fid = hint[1]
        block.size += codec.encode_msg_ref(
            block.buf, block.base_seq, block.base_ts, seq, ts, subject, hdr, n, fid, hint[2], zlib.crc32(data)
        )
        store._ref_stored(seq, fid)
        store._ref_hint = None
    else:
        block.size += codec.encode_msg(block.buf, block.base_seq, block.base_ts, seq, ts, subject, hdr, data, 0)
    if len(block.buf) >= FLUSH_AT:
        store._flush_block(block)
    _index(store, ss, seq, ts, size, subject)
    # Stream._record_id
    msg_id = command.msg_id
    stream.last_msg_id = msg_id
    if msg_id and config.duplicate_window:
        dedup = stream.dedup
        dedup.pop(msg_id, None)
        dedup[msg_id] = (seq, ts)
    _react(stream, seq, subject)
    return seq


ingest_plain = _ingest_plain_py
apply_plain = _apply_plain_py

_compiled = load("ingest")
IMPLEMENTATION = "py" if _compiled is None else "c"
if _compiled is not None:
    _compiled.bind(
        codec.encode_msg,
        codec.encode_msg_ref,
        DiscardPolicy.NEW,
        DiscardPolicy.OLD,
        FLUSH_AT,
        MSG_OVERHEAD,
        MSG_HDR_OVERHEAD,
        FAST_BATCH_SUFFIX,
    )
    ingest_plain = _compiled.ingest_plain
    apply_plain = _compiled.apply_plain


def set_clock(clock: Callable[[], int] | None) -> None:
    """Make both twins read `clock` (ns) instead of the wall clock; None restores it (tests)."""
    global _clock
    _clock = clock if clock is not None else time.time_ns
    if _compiled is not None:
        _compiled.set_clock(clock)


__all__ = ["IMPLEMENTATION", "apply_plain", "ingest_plain", "set_clock"]
