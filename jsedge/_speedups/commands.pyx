# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Stream command codec, compiled twin (layer 0 package, serving layer 4).

The reference is `jsedge/jetstream/commands.py`, whose docstring documents the encoding; never import
this module directly: `jsedge.jetstream.commands` binds it (`bind`) and exports the twin in use.

What is compiled and why (benchmarks/README.md, "Replicated publish"): a replicated stream's leader
encodes every publish into its Raft entry and every follower decodes it again before applying, ~1.5
and ~2.8 µs per message in Python. Here a StoreMsg is encoded with one allocation (sizes first, then
memcpy), a batch entry is decoded with C varint readers, and the only Python-level work per message
is building its StoreMsg.

The compiled path takes only the common shapes: exact `bytes` fields, integers that fit the encoding's
int64/uint64 fields, varints of at most 10 bytes whose value fits 64 bits, and batches of stored
messages (KIND_BATCH). Everything else (atomic batches, other commands, malformed bytes, odd types)
is handed to the Python reference bound at import, so errors and results are the reference's by
construction; the differential tests (tests/property/test_commands_property.py) check the rest.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

cdef object _store_cls = None
cdef object _py_encode_command = None
cdef object _py_encode_batch = None
cdef object _py_decode_batch = None
cdef object _py_command_ends = None

cdef int KIND_STORE = 1
cdef int KIND_BATCH = 7
cdef int ROLLUP_SUB = 0x01
cdef int ROLLUP_ALL = 0x02
cdef int HAS_TTL = 0x04
cdef int HAS_MSG_ID = 0x08
cdef int HAS_HDR = 0x10
cdef int HAS_SEQ = 0x20

cdef object INT64_LO = -(1 << 63)
cdef object INT64_HI = (1 << 63) - 1
cdef object UINT64_HI = (1 << 64) - 1


def bind(store_cls, encode_command, encode_batch, decode_batch, command_ends):
    """The reference's StoreMsg class and functions (the fallbacks)."""
    global _store_cls, _py_encode_command, _py_encode_batch, _py_decode_batch, _py_command_ends
    _store_cls = store_cls
    _py_encode_command = encode_command
    _py_encode_batch = encode_batch
    _py_decode_batch = decode_batch
    _py_command_ends = command_ends


# ---- encoding ------------------------------------------------------------------------------------


cdef inline int _uv_len(uint64_t v) noexcept nogil:
    cdef int n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline Py_ssize_t _put_uv(char *out, Py_ssize_t pos, uint64_t v) noexcept nogil:
    while v >= 0x80:
        out[pos] = <char>((v & 0x7F) | 0x80)
        v >>= 7
        pos += 1
    out[pos] = <char>v
    return pos + 1


cdef inline uint64_t _zz(int64_t v) noexcept nogil:
    # (v << 1) ^ (v >> 63), as the reference computes it on Python ints in int64 range
    return (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)


cdef struct Store:
    # one StoreMsg's fields, checked and converted (the bytes are borrowed from the command)
    int flags
    uint64_t ts_zz
    uint64_t seq
    uint64_t ttl_zz
    const char *subject
    Py_ssize_t subject_len
    const char *msg_id
    Py_ssize_t msg_id_len
    const char *hdr
    Py_ssize_t hdr_len
    const char *data
    Py_ssize_t data_len
    Py_ssize_t size


cdef bint _prepare(object command, Store *s) except -1:
    """Fill `s` from a StoreMsg the compiled encoder takes; False for anything else."""
    if type(command) is not _store_cls:
        return False
    subject = command.subject
    hdr = command.hdr
    data = command.data
    msg_id = command.msg_id
    ts = command.ts
    ttl = command.ttl
    seq = command.seq
    rollup = command.rollup
    if not (PyBytes_CheckExact(subject) and PyBytes_CheckExact(hdr) and PyBytes_CheckExact(data)
            and PyBytes_CheckExact(msg_id)):
        return False
    if type(ts) is not int or type(ttl) is not int or type(seq) is not int:
        return False
    if ts < INT64_LO or ts > INT64_HI or ttl < INT64_LO or ttl > INT64_HI or seq < 0 or seq > UINT64_HI:
        return False
    cdef int flags = 0
    if rollup == "sub":
        flags |= ROLLUP_SUB
    elif rollup == "all":
        flags |= ROLLUP_ALL
    s.subject = PyBytes_AS_STRING(subject)
    s.subject_len = PyBytes_GET_SIZE(subject)
    s.hdr = PyBytes_AS_STRING(hdr)
    s.hdr_len = PyBytes_GET_SIZE(hdr)
    s.data = PyBytes_AS_STRING(data)
    s.data_len = PyBytes_GET_SIZE(data)
    s.msg_id = PyBytes_AS_STRING(msg_id)
    s.msg_id_len = PyBytes_GET_SIZE(msg_id)
    s.ts_zz = _zz(<int64_t>ts)
    s.seq = <uint64_t>seq
    s.ttl_zz = _zz(<int64_t>ttl)
    if s.ttl_zz:
        flags |= HAS_TTL
    if s.msg_id_len:
        flags |= HAS_MSG_ID
    if s.hdr_len:
        flags |= HAS_HDR
    if s.seq:
        flags |= HAS_SEQ
    s.flags = flags
    cdef Py_ssize_t size = 2 + _uv_len(s.ts_zz)
    if flags & HAS_SEQ:
        size += _uv_len(s.seq)
    size += _uv_len(<uint64_t>s.subject_len) + s.subject_len
    if flags & HAS_TTL:
        size += _uv_len(s.ttl_zz)
    if flags & HAS_MSG_ID:
        size += _uv_len(<uint64_t>s.msg_id_len) + s.msg_id_len
    if flags & HAS_HDR:
        size += _uv_len(<uint64_t>s.hdr_len) + s.hdr_len
    s.size = size + s.data_len
    return True


cdef Py_ssize_t _write(char *out, Py_ssize_t pos, Store *s) noexcept nogil:
    out[pos] = <char>KIND_STORE
    out[pos + 1] = <char>s.flags
    pos = _put_uv(out, pos + 2, s.ts_zz)
    if s.flags & HAS_SEQ:
        pos = _put_uv(out, pos, s.seq)
    pos = _put_uv(out, pos, <uint64_t>s.subject_len)
    memcpy(out + pos, s.subject, s.subject_len)
    pos += s.subject_len
    if s.flags & HAS_TTL:
        pos = _put_uv(out, pos, s.ttl_zz)
    if s.flags & HAS_MSG_ID:
        pos = _put_uv(out, pos, <uint64_t>s.msg_id_len)
        memcpy(out + pos, s.msg_id, s.msg_id_len)
        pos += s.msg_id_len
    if s.flags & HAS_HDR:
        pos = _put_uv(out, pos, <uint64_t>s.hdr_len)
        memcpy(out + pos, s.hdr, s.hdr_len)
        pos += s.hdr_len
    memcpy(out + pos, s.data, s.data_len)
    return pos + s.data_len


def encode_command(command):
    """`commands.encode_command`."""
    cdef Store s
    if not _prepare(command, &s):
        return _py_encode_command(command)
    out = PyBytes_FromStringAndSize(NULL, s.size)
    _write(PyBytes_AS_STRING(out), 0, &s)
    return out


def encode_store_batch(list commands):
    """`commands.encode_batch([commands.encode_command(c) for c in commands])`: one KIND_BATCH
    entry, written in one allocation."""
    cdef Py_ssize_t n = len(commands)
    cdef Py_ssize_t i, total, pos
    cdef Store one
    cdef bytearray scratch = bytearray(n * sizeof(Store))
    cdef Store *stores = <Store *>(<char *>scratch)
    total = 1 + _uv_len(<uint64_t>n)
    for i in range(n):
        if not _prepare(commands[i], &stores[i]):
            return _py_encode_batch([_py_encode_command(c) for c in commands])
        total += _uv_len(<uint64_t>stores[i].size) + stores[i].size
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *buf = PyBytes_AS_STRING(out)
    buf[0] = <char>KIND_BATCH
    pos = _put_uv(buf, 1, <uint64_t>n)
    for i in range(n):
        pos = _put_uv(buf, pos, <uint64_t>stores[i].size)
        pos = _write(buf, pos, &stores[i])
    return out


# ---- decoding ------------------------------------------------------------------------------------


cdef inline Py_ssize_t _read_uv(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end,
                                uint64_t *value) noexcept nogil:
    """New position after the varint at pos, or -1: past `end`, longer than 10 bytes, or a value
    beyond 64 bits (all cases the reference decides)."""
    cdef uint64_t v = 0
    cdef int i
    cdef unsigned char byte
    for i in range(10):
        if pos + i >= end:
            return -1
        byte = buf[pos + i]
        if i == 9 and byte > 1:
            return -1
        v |= (<uint64_t>(byte & 0x7F)) << (7 * i)
        if byte < 0x80:
            value[0] = v
            return pos + i + 1
    return -1


cdef inline int64_t _unzz(uint64_t zz) noexcept nogil:
    return <int64_t>(zz >> 1) ^ -<int64_t>(zz & 1)


cdef object _decode_store(object data, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end):
    """The StoreMsg in buf[pos:end], or None when the reference must decide."""
    cdef uint64_t v, seq = 0, length
    cdef int64_t ts, ttl = 0
    cdef int flags
    cdef Py_ssize_t p
    if end - pos < 2 or buf[pos] != KIND_STORE:
        return None
    flags = buf[pos + 1]
    if flags & ~0x3F or (flags & ROLLUP_SUB and flags & ROLLUP_ALL):
        return None
    p = _read_uv(buf, pos + 2, end, &v)
    if p < 0:
        return None
    ts = _unzz(v)
    if flags & HAS_SEQ:
        p = _read_uv(buf, p, end, &seq)
        if p < 0 or seq == 0:
            return None
    p = _read_uv(buf, p, end, &length)
    if p < 0 or length > <uint64_t>(end - p):
        return None
    subject = data[p:p + <Py_ssize_t>length]
    p += <Py_ssize_t>length
    if flags & HAS_TTL:
        p = _read_uv(buf, p, end, &v)
        if p < 0:
            return None
        ttl = _unzz(v)
    msg_id = b""
    if flags & HAS_MSG_ID:
        p = _read_uv(buf, p, end, &length)
        if p < 0 or length > <uint64_t>(end - p):
            return None
        msg_id = data[p:p + <Py_ssize_t>length]
        p += <Py_ssize_t>length
    hdr = b""
    if flags & HAS_HDR:
        p = _read_uv(buf, p, end, &length)
        if p < 0 or length > <uint64_t>(end - p):
            return None
        hdr = data[p:p + <Py_ssize_t>length]
        p += <Py_ssize_t>length
    rollup = "sub" if flags & ROLLUP_SUB else "all" if flags & ROLLUP_ALL else ""
    return _store_cls(subject, hdr, data[p:end], ts, ttl, msg_id, rollup, seq)


def decode_batch(data):
    """`commands.decode_batch`."""
    if not PyBytes_CheckExact(data):
        return _py_decode_batch(data)
    cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos, end
    cdef uint64_t count, length, i
    if n == 0 or buf[0] != KIND_BATCH:
        return _py_decode_batch(data)
    pos = _read_uv(buf, 1, n, &count)
    if pos < 0:
        return _py_decode_batch(data)
    commands = []
    i = 0
    while i < count:
        pos = _read_uv(buf, pos, n, &length)
        if pos < 0 or length > <uint64_t>(n - pos):
            return _py_decode_batch(data)
        end = pos + <Py_ssize_t>length
        command = _decode_store(data, buf, pos, end)
        if command is None:
            return _py_decode_batch(data)
        PyList_Append(commands, command)
        pos = end
        i += 1
    if pos != n:
        return _py_decode_batch(data)
    return commands


def command_ends(data):
    """`cluster.stream._command_ends`: where each command of a batch entry ends."""
    if not PyBytes_CheckExact(data):
        return _py_command_ends(data)
    cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos
    cdef uint64_t count, length, i
    pos = _read_uv(buf, 1, n, &count)
    if pos < 0:
        return _py_command_ends(data)
    ends = []
    i = 0
    while i < count:
        pos = _read_uv(buf, pos, n, &length)
        if pos < 0 or length > <uint64_t>(n - pos):
            return _py_command_ends(data)
        pos += <Py_ssize_t>length
        PyList_Append(ends, pos)
        i += 1
    return ends
