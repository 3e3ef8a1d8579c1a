# cython: language_level=3
"""Compiled twin of `jsedge/jetstream/ingest.py` (the fused plain publish and apply). It mirrors the
reference helper for helper; what differs is only how: the index arrays are grown and written in
place, the clock is read with clock_gettime, records go through the codec's C entry points
(codec.pxd), the PubAck body is formatted into one bytes object, and the constants the reference
imports are handed over once by `bind()`."""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdio cimport snprintf
from libc.string cimport memcpy
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from jsedge._speedups.codec cimport crc_of, encode_msg_c, encode_msg_ref_c

cdef object _encode_msg = None
cdef object _encode_msg_ref = None
cdef object _crc32 = None
cdef object _DISCARD_NEW = None
cdef object _DISCARD_OLD = None
cdef Py_ssize_t _FLUSH_AT = 65536
cdef Py_ssize_t _MSG_OVERHEAD = 30
cdef Py_ssize_t _MSG_HDR_OVERHEAD = 34
cdef bytes _FAST_SUFFIX = b".$FI"


def bind(encode_msg, encode_msg_ref, discard_new, discard_old, Py_ssize_t flush_at, Py_ssize_t msg_overhead,
         Py_ssize_t msg_hdr_overhead, bytes fast_suffix):
    """The reference's imports: the record encoders, DiscardPolicy.NEW/OLD, FLUSH_AT, MSG_OVERHEAD,
    MSG_HDR_OVERHEAD and the fast-batch reply suffix."""
    global _encode_msg, _encode_msg_ref, _crc32, _DISCARD_NEW, _DISCARD_OLD, _FLUSH_AT, _MSG_OVERHEAD
    global _MSG_HDR_OVERHEAD, _FAST_SUFFIX
    import zlib
    _crc32 = zlib.crc32
    _encode_msg = encode_msg
    _encode_msg_ref = encode_msg_ref
    _MSG_HDR_OVERHEAD = msg_hdr_overhead
    _DISCARD_NEW = discard_new
    _DISCARD_OLD = discard_old
    _FLUSH_AT = flush_at
    _MSG_OVERHEAD = msg_overhead
    _FAST_SUFFIX = fast_suffix


cdef object _clock = None


def set_clock(clock):
    """Read `clock()` (ns) instead of the wall clock; None restores it (tests)."""
    global _clock
    _clock = clock


cdef inline long long _now_ns() except? -1:
    if _clock is not None:
        return _clock()
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline void _push_u32(array.array arr, unsigned int value):
    cdef Py_ssize_t n = len(arr)
    array.resize_smart(arr, n + 1)
    arr.data.as_uints[n] = value


cdef inline void _push_i64(array.array arr, long long value):
    cdef Py_ssize_t n = len(arr)
    array.resize_smart(arr, n + 1)
    arr.data.as_longlongs[n] = value


cdef long long _encode(bytearray buf, long long base_seq, long long base_ts, long long seq, long long ts,
                       subject, hdr, data) except -1:
    """The MSG record, through the codec's C entry point; a negative timestamp (never written by this
    server's clock, but a replicated command carries the leader's) through its generic encoder."""
    if ts < 0 or base_ts < 0:
        return _encode_msg(buf, base_seq, base_ts, seq, ts, subject, hdr, data, 0)
    return encode_msg_c(buf, base_seq, base_ts, seq, ts, subject, hdr, data)


cdef bytes _ack_body(bytes head, long long seq):
    cdef char digits[24]
    cdef int m = snprintf(digits, sizeof(digits), "%lld}", seq)
    cdef Py_ssize_t h = len(head)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, h + m)
    cdef char *p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(head), h)
    memcpy(p + h, digits, m)
    return out


cdef object _active_block(store):
    """See `_active_block` in the reference."""
    cdef list blocks = store._blocks
    if not blocks:
        return None
    block = blocks[len(blocks) - 1]
    if <long long>block.size >= <long long>store.block_size or block.fd < 0:
        return None
    return block


cdef bint _run_starts(store) except -1:
    """See `_run_starts` in the reference."""
    if not store._ref_runs:
        return False
    ref_files = store._ref_files
    return bool(ref_files[len(ref_files) - 1])


cdef bint _refused(store, list ss, long long size) except -1:
    """See `_refused` in the reference."""
    cfg = store.config
    if cfg.discard is not _DISCARD_NEW:
        return False
    cdef long long mps = cfg.max_msgs_per_subject
    cdef long long max_msgs = cfg.max_msgs
    cdef long long max_bytes = cfg.max_bytes
    cdef bint at_limit = 0 < mps <= <long long>ss[1]
    if at_limit and cfg.discard_new_per_subject:
        return True
    if max_msgs > 0 and <long long>store._msgs >= max_msgs and not at_limit:
        return True
    return max_bytes > 0 and <long long>store._bytes + size > max_bytes


cdef int _index(store, list ss, long long seq, long long ts, long long size, subject) except -1:
    """See `_index` in the reference."""
    _push_u32(<array.array>store._sid, <unsigned int>ss[0])
    _push_i64(<array.array>store._ts, ts)
    _push_u32(<array.array>store._size, <unsigned int>size)
    store._last = seq
    store._used = True
    cdef long long count = <long long>ss[1] + 1
    ss[1] = count
    ss[3] = seq
    cdef long long msgs = <long long>store._msgs + 1
    store._msgs = msgs
    store._bytes = <long long>store._bytes + size
    if msgs == 1:
        store._first = seq
    store._last_ts = ts
    cfg = store.config
    cdef long long mps = cfg.max_msgs_per_subject
    if mps > 0 and count > mps:
        store._enforce_per_subject(subject)
    if cfg.discard is _DISCARD_OLD and (cfg.max_msgs > 0 or cfg.max_bytes > 0):
        store._enforce_discard_old()
    return 0


cdef int _react(stream, long long seq, subject) except -1:
    """See `_react` in the reference."""
    cdef list removed = stream.removed
    if removed:
        stream.removed = []
        for removed_seq, removed_subject in removed:
            stream._consumers_removed(removed_seq, removed_subject)
    if stream.config.max_age:
        stream._schedule_expiry()
    if stream.consumers:
        on_stored = stream.on_stored
        if on_stored is not None:
            on_stored(seq, subject)
    cdef list listeners = stream.stored_listeners
    if listeners:
        for listener in listeners:
            listener(seq, subject)
    return 0


def ingest_plain(stream, subject, reply, data):
    """See `jsedge.jetstream.ingest._ingest_plain_py`."""
    if not stream.plain or stream.scheduler is not None:
        return 0
    replicated = stream.replicated
    if replicated is not None and replicated.group is not None:
        return 0
    cdef Py_ssize_t rlen = len(reply)
    if rlen > 4 and reply.endswith(_FAST_SUFFIX):
        return 0
    config = stream.config
    cdef Py_ssize_t n = len(data)
    # Stream.plain_fits(n), inline
    cdef long long max_size = config.max_msg_size
    if max_size >= 0 and n > max_size:
        return 0
    host = stream.host
    if host.limits is not None or host.jetstream.explicit_limits:
        return 0
    store = stream.store
    if not store.plain_ingest or store._closed or store._ref_hint is not None:
        return 0
    if _run_starts(store):
        return 0
    block = _active_block(store)
    if block is None:
        return 0
    ss_obj = (<dict>store._subjects).get(subject)
    if ss_obj is None or not (<list>ss_obj)[1]:
        return 0
    cdef list ss = <list>ss_obj
    cdef long long size = _MSG_OVERHEAD + len(subject) + n
    if _refused(store, ss, size):
        return 0
    # ---- from here on the message is stored: nothing below declines
    cdef long long now = _now_ns()
    cdef long long seq = <long long>store._last + 1
    cdef long long block_size = block.size
    _push_u32(<array.array>store._off, <unsigned int>block_size)
    block.live += 1
    buf = block.buf
    block.size = block_size + _encode(buf, block.base_seq, block.base_ts, seq, now, subject, b"", data)
    if len(<bytearray>buf) >= _FLUSH_AT:
        store._flush_block(block)
    _index(store, ss, seq, now, size, subject)
    stream.last_msg_id = b""
    _react(stream, seq, subject)
    cdef list pending
    if rlen and not config.no_ack:
        cached = stream._ack_head
        if cached is not None and cached[0] == host.domain and cached[1] == stream.name:
            head = cached[2]
        else:
            head = stream.ack_head()
        pending = stream._pending_acks
        pending.append((reply, _ack_body(<bytes>head, seq)))
        if len(pending) == 1:
            stream.server.loop.call_soon(stream._sync_pending_acks)
    elif not stream._sync_requested:
        stream._sync_requested = True
        stream.server.loop.call_soon(stream._sync_unacked)
    return seq


def apply_plain(stream, command):
    """See `jsedge.jetstream.ingest._apply_plain_py`."""
    if command.ttl or command.rollup:
        return 0
    config = stream.config
    if config.mirror is not None or stream.scheduler is not None:
        return 0
    store = stream.store
    if not store.plain_ingest or store._closed:
        return 0
    cdef long long seq = <long long>store._last + 1
    cdef long long stated = command.seq
    if stated and stated != seq:
        return 0
    data = command.data
    cdef Py_ssize_t n = len(data)
    hint = store._ref_hint
    if hint is not None:
        if <long long>hint[0] != seq or <Py_ssize_t>hint[3] != n:
            return 0
    elif _run_starts(store):
        return 0
    block = _active_block(store)
    if block is None:
        return 0
    subject = command.subject
    ss_obj = (<dict>store._subjects).get(subject)
    if ss_obj is None or not (<list>ss_obj)[1]:
        return 0
    cdef list ss = <list>ss_obj
    hdr = command.hdr
    cdef Py_ssize_t hlen = len(hdr)
    cdef long long size = (_MSG_HDR_OVERHEAD + hlen if hlen else _MSG_OVERHEAD) + len(subject) + n
    if _refused(store, ss, size):
        return 0
    # ---- from here on the message is stored: nothing below declines
    ts = command.ts
    cdef long long ts_value = ts
    cdef long long block_size = block.size
    _push_u32(<array.array>store._off, <unsigned int>block_size)
    block.live += 1
    buf = block.buf
    if hint is not None:
        fid = hint[1]
        base_ts = block.base_ts
        if ts_value >= 0 and base_ts >= 0:
            block.size = block_size + encode_msg_ref_c(
                buf, block.base_seq, base_ts, seq, ts_value, subject, hdr, n, fid, hint[2], crc_of(data)
            )
        else:
            block.size = block_size + <long long>_encode_msg_ref(
                buf, block.base_seq, base_ts, seq, ts, subject, hdr, n, fid, hint[2], _crc32(data)
            )
        store._ref_stored(seq, fid)
        store._ref_hint = None
    else:
        block.size = block_size + _encode(buf, block.base_seq, block.base_ts, seq, ts_value, subject, hdr, data)
    if len(<bytearray>buf) >= _FLUSH_AT:
        store._flush_block(block)
    _index(store, ss, seq, ts_value, size, subject)
    msg_id = command.msg_id
    stream.last_msg_id = msg_id
    cdef dict dedup
    if msg_id and config.duplicate_window:
        dedup = stream.dedup
        dedup.pop(msg_id, None)
        dedup[msg_id] = (seq, ts)
    _react(stream, seq, subject)
    return seq
