# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: libraries = z
"""Segment record codec, compiled twin (layer 0 package, serving layer 3).

Same API, bytes and scan results as the reference `jsedge/store/_codec_py.py`, whose docstring
documents the on-disk format. Never import this module directly: use `jsedge.store.codec`.

What is compiled and why (benchmarks/bench_codec.py): encoding writes the varint head into a stack
buffer and appends head + parts to the bytearray with one PyByteArray_Resize and memcpy each, CRC from
zlib's C `crc32` (linked with -lz, the same routine Python's zlib module calls, so the twins agree);
`scan` walks the buffer with C varint readers and fills the result array without creating a Python
object per record, which is what makes restart time with a million messages reasonable.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from array import array


cdef extern from "zlib.h":
    unsigned long zlib_crc32 "crc32"(unsigned long crc, const unsigned char *buf, unsigned int len) nogil


TAG_BASE = 0xE0
KIND_MSG = 0
KIND_MSG_TTL = 1
KIND_SKIP = 2
KIND_TOMBSTONE = 3
KIND_ERASED = 4
KIND_STATE = 5
KIND_BLOB = 6
KIND_MSG_REF = 7
NUM_KINDS = 8
MAX_BODY = 64 * 1024 * 1024
MAX_VARINT = 9
MAX_UVARINT = (1 << 63) - 1
FIELDS = 10
F_KIND, F_OFFSET, F_LEN, F_SEQ, F_TS, F_AUX, F_SUBJ_OFF, F_SUBJ_LEN, F_HDR_LEN, F_DATA_LEN = range(FIELDS)

cdef int _NUM_KINDS = 8
cdef int64_t _MAX_BODY = MAX_BODY
cdef uint64_t _MAX_UV = <uint64_t>INT64_MAX


class CorruptRecordError(ValueError):
    """The bytes at this offset are not one valid record."""


cdef inline uint32_t _crc(uint32_t crc, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    # zlib takes an unsigned int length; feed huge buffers in 1 GiB pieces
    while n > 0x40000000:
        crc = <uint32_t>zlib_crc32(crc, p, 0x40000000)
        p += 0x40000000
        n -= 0x40000000
    return <uint32_t>zlib_crc32(crc, p, <unsigned int>n)


def crc32(data, unsigned long value=0):
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _crc(<uint32_t>value, <const unsigned char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


# ---- encoding ------------------------------------------------------------------------------------


cdef inline int _put_uv(unsigned char *out, uint64_t v) noexcept:
    cdef int n = 0
    while v >= 0x80:
        out[n] = <unsigned char>((v & 0x7F) | 0x80)
        v >>= 7
        n += 1
    out[n] = <unsigned char>v
    return n + 1


cdef inline uint64_t _check_uv(object value) except? 0xFFFFFFFFFFFFFFFF:
    if value < 0:
        raise ValueError("uvarint of a negative value")
    if value > MAX_UVARINT:
        raise ValueError("uvarint value too large")
    return <uint64_t>value


cdef inline uint64_t _zigzag(object value) except? 0xFFFFFFFFFFFFFFFF:
    if value < -(1 << 63) or value > (1 << 63) - 1:
        raise ValueError("svarint value out of int64 range")
    cdef int64_t v = value
    cdef uint64_t zz
    if v >= 0:
        zz = (<uint64_t>v) << 1
    else:
        zz = ((<uint64_t>(-(v + 1))) << 1) + 1
    if zz > _MAX_UV:
        raise ValueError("uvarint value too large")
    return zz


cdef int _varint_len(uint64_t v) noexcept:
    cdef int n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def varint_len(value):
    return _varint_len(_check_uv(value))


cdef Py_ssize_t _frame(bytearray out, int kind, const unsigned char *head, Py_ssize_t head_len,
                       list parts) except -1:
    """Append tag + body_len + head + parts + crc to out (head: the already encoded varints)."""
    cdef Py_buffer views[4]
    cdef int count = len(parts)
    cdef int taken = 0
    if count > 4:
        raise ValueError("too many record parts")
    try:
        while taken < count:
            PyObject_GetBuffer(parts[taken], &views[taken], PyBUF_SIMPLE)
            taken += 1
        return _frame_bufs(out, kind, head, head_len, views, count)
    finally:
        while taken > 0:
            taken -= 1
            PyBuffer_Release(&views[taken])


cdef Py_ssize_t _frame_bufs(bytearray out, int kind, const unsigned char *head, Py_ssize_t head_len,
                            Py_buffer *views, int count) except -1:
    """`_frame` for callers holding C buffers: head + views[0..count), then the crc."""
    cdef Py_ssize_t body_len = head_len
    cdef int i
    for i in range(count):
        body_len += views[i].len
    if body_len > _MAX_BODY:
        raise ValueError("record too large")
    cdef unsigned char pre[16]
    pre[0] = <unsigned char>(0xE0 | kind)
    cdef int pre_len = 1 + _put_uv(pre + 1, <uint64_t>body_len)
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(out)
    cdef Py_ssize_t total = pre_len + body_len + 4
    PyByteArray_Resize(out, old + total)
    cdef unsigned char *dst = <unsigned char *>PyByteArray_AS_STRING(out) + old
    cdef unsigned char *start = dst
    memcpy(dst, pre, pre_len)
    dst += pre_len
    memcpy(dst, head, head_len)
    dst += head_len
    for i in range(count):
        memcpy(dst, views[i].buf, views[i].len)
        dst += views[i].len
    cdef uint32_t crc = _crc(0, start, dst - start)
    dst[0] = crc & 0xFF
    dst[1] = (crc >> 8) & 0xFF
    dst[2] = (crc >> 16) & 0xFF
    dst[3] = (crc >> 24) & 0xFF
    return total


cdef int _msg_head(unsigned char *head, int64_t base_seq, int64_t base_ts, int64_t seq, int64_t ts,
                   Py_ssize_t subj_len) except -1:
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    if ts < 0 or base_ts < 0:
        raise OverflowError("negative timestamp")  # the callers fall back to the generic encoder
    cdef int n = _put_uv(head, <uint64_t>(seq - base_seq))
    cdef int64_t delta = ts - base_ts
    cdef uint64_t zz = (<uint64_t>delta) << 1 if delta >= 0 else ((<uint64_t>(-(delta + 1))) << 1) + 1
    if zz > _MAX_UV:
        raise ValueError("uvarint value too large")
    n += _put_uv(head + n, zz)
    n += _put_uv(head + n, <uint64_t>subj_len)
    return n


cdef Py_ssize_t encode_msg_c(bytearray out, int64_t base_seq, int64_t base_ts, int64_t seq, int64_t ts,
                             object subject, object hdr, object data) except -1:
    """`encode_msg(out, base_seq, base_ts, seq, ts, subject, hdr, data)` (no TTL) for compiled callers
    (jsedge/_speedups/ingest.pyx): the same bytes, without Python arguments or a list of parts."""
    cdef Py_buffer views[3]
    cdef unsigned char head[48]
    cdef int n, m
    PyObject_GetBuffer(subject, &views[0], PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(hdr, &views[1], PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(data, &views[2], PyBUF_SIMPLE)
            try:
                n = _msg_head(head, base_seq, base_ts, seq, ts, views[0].len)
                m = _put_uv(head + n, <uint64_t>views[1].len)
                return _frame_split(out, 0, head, n, m, views)
            finally:
                PyBuffer_Release(&views[2])
        finally:
            PyBuffer_Release(&views[1])
    finally:
        PyBuffer_Release(&views[0])


cdef Py_ssize_t _frame_split(bytearray out, int kind, unsigned char *head, int n, int m, Py_buffer *views) except -1:
    # the record body is head[:n] + subject + head[n:n+m] (the header length) + hdr + data: frame the
    # subject between the two varint runs
    cdef Py_buffer parts[4]
    parts[0] = views[0]
    parts[1].buf = head + n
    parts[1].len = m
    parts[2] = views[1]
    parts[3] = views[2]
    return _frame_bufs(out, kind, head, n, parts, 4)


cdef Py_ssize_t encode_msg_ref_c(bytearray out, int64_t base_seq, int64_t base_ts, int64_t seq, int64_t ts,
                                 object subject, object hdr, int64_t data_len, int64_t file, int64_t offset,
                                 uint32_t crc) except -1:
    """`encode_msg_ref(...)` for compiled callers: the same bytes."""
    if not 0 <= data_len <= _MAX_BODY:
        raise ValueError("referenced data too large")
    if file < 0 or offset < 0:
        raise ValueError("uvarint of a negative value")
    cdef Py_buffer views[3]
    cdef unsigned char head[48]
    cdef unsigned char ref[40]
    cdef int n, m, r
    PyObject_GetBuffer(subject, &views[0], PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(hdr, &views[1], PyBUF_SIMPLE)
        try:
            n = _msg_head(head, base_seq, base_ts, seq, ts, views[0].len)
            m = _put_uv(head + n, <uint64_t>views[1].len)
            r = _put_uv(ref, <uint64_t>data_len)
            r += _put_uv(ref + r, <uint64_t>file)
            r += _put_uv(ref + r, <uint64_t>offset)
            ref[r] = crc & 0xFF
            ref[r + 1] = (crc >> 8) & 0xFF
            ref[r + 2] = (crc >> 16) & 0xFF
            ref[r + 3] = (crc >> 24) & 0xFF
            views[2].buf = ref
            views[2].len = r + 4
            return _frame_split(out, 7, head, n, m, views)
        finally:
            PyBuffer_Release(&views[1])
    finally:
        PyBuffer_Release(&views[0])


cdef uint32_t crc_of(object data) except? 0xFFFFFFFF:
    """zlib.crc32(data) for compiled callers."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _crc(0, <const unsigned char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def encode_msg(bytearray out, base_seq, base_ts, seq, ts, subject, hdr, data, ttl=0):
    """Append a MSG (or MSG_TTL when ttl != 0) record to `out`; returns its length."""
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    cdef unsigned char head[48]
    cdef int n = _put_uv(head, _check_uv(seq - base_seq))
    n += _put_uv(head + n, _zigzag(ts - base_ts))
    cdef int kind = 0
    if ttl:
        n += _put_uv(head + n, _zigzag(ttl))
        kind = 1
    cdef Py_ssize_t subj_len = len(subject)
    n += _put_uv(head + n, _check_uv(subj_len))
    cdef unsigned char mid[16]
    cdef int m = _put_uv(mid, _check_uv(len(hdr)))
    return _frame(out, kind, head, n, [subject, (<char *>mid)[:m], hdr, data])


def encode_msg_ref(bytearray out, base_seq, base_ts, seq, ts, subject, hdr, data_len, file, offset, crc):
    """Append a MSG_REF record; returns its length (the reference twin documents the format)."""
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    if not 0 <= data_len <= MAX_BODY:
        raise ValueError("referenced data too large")
    cdef unsigned char head[48]
    cdef int n = _put_uv(head, _check_uv(seq - base_seq))
    n += _put_uv(head + n, _zigzag(ts - base_ts))
    n += _put_uv(head + n, _check_uv(len(subject)))
    cdef unsigned char mid[16]
    cdef int m = _put_uv(mid, _check_uv(len(hdr)))
    cdef unsigned char ref[40]
    cdef int r = _put_uv(ref, _check_uv(data_len))
    r += _put_uv(ref + r, _check_uv(file))
    r += _put_uv(ref + r, _check_uv(offset))
    cdef uint32_t c = <uint32_t>(crc & 0xFFFFFFFF)
    ref[r] = c & 0xFF
    ref[r + 1] = (c >> 8) & 0xFF
    ref[r + 2] = (c >> 16) & 0xFF
    ref[r + 3] = (c >> 24) & 0xFF
    return _frame(out, 7, head, n, [subject, (<char *>mid)[:m], hdr, (<char *>ref)[:r + 4]])


def decode_ref(ref):
    """The reference of a MSG_REF record: (data_len, file, offset, crc); ValueError when malformed."""
    cdef const unsigned char[:] view = ref
    cdef Py_ssize_t n = view.shape[0]
    cdef uint64_t data_len = 0, file = 0, offset = 0
    cdef Py_ssize_t pos = -1
    if n:
        pos = _read_uv(&view[0], 0, n, &data_len)
        if pos >= 0:
            pos = _read_uv(&view[0], pos, n, &file)
        if pos >= 0:
            pos = _read_uv(&view[0], pos, n, &offset)
    if pos < 0 or pos + 4 > n:
        raise ValueError("malformed reference")
    cdef uint32_t c = (<uint32_t>view[pos] | (<uint32_t>view[pos + 1] << 8)
                       | (<uint32_t>view[pos + 2] << 16) | (<uint32_t>view[pos + 3] << 24))
    return data_len, file, offset, c


def encode_skip(bytearray out, base_seq, base_ts, seq, ts):
    if seq < base_seq:
        raise ValueError("seq below the block's base")
    cdef unsigned char head[24]
    cdef int n = _put_uv(head, _check_uv(seq - base_seq))
    n += _put_uv(head + n, _zigzag(ts - base_ts))
    return _frame(out, 2, head, n, [])


def encode_tombstone(bytearray out, seq):
    cdef unsigned char head[16]
    cdef int n = _put_uv(head, _check_uv(seq))
    return _frame(out, 3, head, n, [])


def encode_state(bytearray out, first_seq, last_seq, last_ts):
    cdef unsigned char head[32]
    cdef int n = _put_uv(head, _check_uv(first_seq))
    n += _put_uv(head + n, _check_uv(last_seq))
    n += _put_uv(head + n, _zigzag(last_ts))
    return _frame(out, 5, head, n, [])


def encode_blob(bytearray out, data):
    return _frame(out, 6, NULL, 0, [data])


def erased_record(Py_ssize_t rec_len, base_seq, seq):
    """An ERASED record of exactly `rec_len` bytes (to overwrite a MSG record of that length)."""
    cdef uint64_t dseq = _check_uv(seq - base_seq)
    cdef int dlen = _varint_len(dseq)
    cdef Py_ssize_t body_len
    cdef unsigned char head[16]
    cdef bytearray out
    for vlen in range(1, 6):
        body_len = rec_len - 5 - vlen
        if body_len >= dlen and _varint_len(<uint64_t>body_len) == vlen:
            out = bytearray()
            _put_uv(head, dseq)
            _frame(out, 4, head, dlen, [bytes(body_len - dlen)])
            return bytes(out)
    raise ValueError("record too short to erase in place")


# ---- decoding ------------------------------------------------------------------------------------


cdef inline Py_ssize_t _read_uv(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end,
                                uint64_t *value) noexcept nogil:
    """New position after the varint at pos, or -1 (runs past end / longer than 9 bytes)."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef int i
    cdef unsigned char byte
    for i in range(9):
        if pos + i >= end:
            return -1
        byte = buf[pos + i]
        v |= (<uint64_t>(byte & 0x7F)) << shift
        if byte < 0x80:
            value[0] = v
            return pos + i + 1
        shift += 7
    return -1


cdef inline int64_t _unzz(uint64_t zz) noexcept nogil:
    if zz & 1:
        return -(<int64_t>((zz + 1) >> 1))
    return <int64_t>(zz >> 1)


cdef inline bint _add_ok(int64_t a, int64_t b, int64_t *out) noexcept nogil:
    # int64 overflow check (the Python twin checks the range of the unbounded sum)
    if (b > 0 and a > INT64_MAX - b) or (b < 0 and a < INT64_MIN - b):
        return False
    out[0] = a + b
    return True


cdef bint _try(const unsigned char *buf, Py_ssize_t p, Py_ssize_t n, int64_t base_seq, int64_t base_ts,
               int64_t *f) noexcept nogil:
    """Decode the record at p into f[0:10]; False when the bytes there are not one valid record."""
    cdef int kind = buf[p] ^ 0xE0
    cdef uint64_t body_len, first, last, zz, subj_len, hdr_len
    cdef Py_ssize_t body, body_end, end, pos
    cdef int64_t seq, ts, ttl = 0
    cdef uint32_t stored
    if kind < 0 or kind >= _NUM_KINDS:
        return False
    body = _read_uv(buf, p + 1, n, &body_len)
    if body < 0 or body_len > <uint64_t>_MAX_BODY:
        return False
    body_end = body + <Py_ssize_t>body_len
    end = body_end + 4
    if end > n:
        return False
    stored = (<uint32_t>buf[body_end] | (<uint32_t>buf[body_end + 1] << 8)
              | (<uint32_t>buf[body_end + 2] << 16) | (<uint32_t>buf[body_end + 3] << 24))
    if _crc(0, buf + p, body_end - p) != stored:
        return False
    f[0] = kind
    f[1] = p
    f[2] = end - p
    f[3] = 0
    f[4] = 0
    f[5] = 0
    f[6] = 0
    f[7] = 0
    f[8] = 0
    f[9] = 0
    if kind == 6:
        f[9] = <int64_t>body_len
        return True
    pos = _read_uv(buf, body, body_end, &first)
    if pos < 0:
        return False
    if kind == 3:
        f[3] = <int64_t>first
        return True
    if kind == 5:
        pos = _read_uv(buf, pos, body_end, &last)
        if pos < 0:
            return False
        pos = _read_uv(buf, pos, body_end, &zz)
        if pos < 0:
            return False
        f[3] = <int64_t>first
        f[4] = _unzz(zz)
        f[5] = <int64_t>last
        return True
    if not _add_ok(base_seq, <int64_t>first, &seq):
        return False
    f[3] = seq
    if kind == 4:
        return True
    pos = _read_uv(buf, pos, body_end, &zz)
    if pos < 0:
        return False
    if not _add_ok(base_ts, _unzz(zz), &ts):
        return False
    f[4] = ts
    if kind == 2:
        return True
    if kind == 1:
        pos = _read_uv(buf, pos, body_end, &zz)
        if pos < 0:
            return False
        ttl = _unzz(zz)
    pos = _read_uv(buf, pos, body_end, &subj_len)
    if pos < 0 or subj_len > <uint64_t>(body_end - pos):
        return False
    f[6] = pos
    f[7] = <int64_t>subj_len
    pos = _read_uv(buf, pos + <Py_ssize_t>subj_len, body_end, &hdr_len)
    if pos < 0 or hdr_len > <uint64_t>(body_end - pos):
        return False
    if kind == 7:
        # MSG_REF: aux is the referenced data's length (the first varint of the reference)
        if _read_uv(buf, pos + <Py_ssize_t>hdr_len, body_end, &zz) < 0 or zz > <uint64_t>_MAX_BODY:
            return False
        ttl = <int64_t>zz
    f[5] = ttl
    f[8] = <int64_t>hdr_len
    f[9] = body_end - pos - <Py_ssize_t>hdr_len
    return True


def decode(buf, Py_ssize_t offset, int64_t base_seq, int64_t base_ts):
    """Decode the record at `offset`: (kind, seq, ts, aux, subject, hdr, data, rec_len).
    See the reference twin for the meaning of the fields. Raises CorruptRecordError."""
    cdef Py_buffer view
    cdef int64_t f[10]
    cdef bint ok
    cdef const char *b
    cdef Py_ssize_t data_off
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        b = <const char *>view.buf
        ok = 0 <= offset < view.len and _try(<const unsigned char *>b, offset, view.len, base_seq, base_ts, f)
        if not ok:
            raise CorruptRecordError(f"no valid record at offset {offset}")
        data_off = f[1] + f[2] - 4 - f[9]
        return (f[0], f[3], f[4], f[5], b[f[6]:f[6] + f[7]], b[data_off - f[8]:data_off],
                b[data_off:data_off + f[9]], f[2])
    finally:
        PyBuffer_Release(&view)


def scan(buf, int64_t base_seq, int64_t base_ts, Py_ssize_t start=0):
    """Decode every record from `start`: (entries array('q'), corrupt ranges, valid_end).
    Identical to the reference twin's `scan` (see its docstring)."""
    cdef Py_buffer view
    cdef int64_t f[10]
    cdef int64_t g[10]
    cdef Py_ssize_t n, p, q, r, body, skip
    cdef uint64_t body_len
    cdef const unsigned char *b
    cdef list corrupt = []
    entries = array("q")
    cdef Py_ssize_t count = 0, cap = 0
    cdef int64_t[:] out
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        b = <const unsigned char *>view.buf
        n = view.len
        # grow the result by doubling (amortised O(1) per record), trim at the end
        cap = 256
        entries = array("q", bytes(cap * 10 * 8))
        out = entries
        p = start
        while p < n:
            if _try(b, p, n, base_seq, base_ts, f):
                if count == cap:
                    del out
                    entries.frombytes(bytes(cap * 10 * 8))
                    cap *= 2
                    out = entries
                for r in range(10):
                    out[count * 10 + r] = f[r]
                count += 1
                p += f[2]
                continue
            q = -1
            if (b[p] ^ 0xE0) < _NUM_KINDS:
                body = _read_uv(b, p + 1, n, &body_len)
                if body >= 0 and body_len <= <uint64_t>_MAX_BODY:
                    skip = body + <Py_ssize_t>body_len + 4
                    if skip < n and _try(b, skip, n, base_seq, base_ts, g):
                        q = skip
            if q < 0:
                r = p + 1
                while r < n:
                    if (b[r] ^ 0xE0) < _NUM_KINDS and _try(b, r, n, base_seq, base_ts, g):
                        q = r
                        break
                    r += 1
            if q < 0:
                corrupt.append((p, n))
                break
            corrupt.append((p, q))
            p = q
    finally:
        PyBuffer_Release(&view)
    del out
    del entries[count * 10:]
    return entries, corrupt, (p if p < n else n)


def index_sid(arr, value, Py_ssize_t lo, Py_ssize_t hi):
    """`arr.index(value, lo, hi)` for the stores' `array('I')` subject-id index (same result and
    ValueError), as a C loop over the buffer: array.index boxes every slot into a Python int."""
    cdef Py_buffer view
    cdef const unsigned int *p
    cdef unsigned int v
    cdef Py_ssize_t n, i
    if not isinstance(arr, array) or arr.typecode != "I" or not (0 <= value <= <object>(<unsigned int>-1)):
        return arr.index(value, lo, hi)
    v = value
    PyObject_GetBuffer(arr, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned int *>view.buf
        n = view.len // <Py_ssize_t>sizeof(unsigned int)
        if lo < 0:
            lo += n
            if lo < 0:
                lo = 0
        if hi < 0:
            hi += n
            if hi < 0:
                hi = 0
        if hi > n:
            hi = n
        for i in range(lo, hi):
            if p[i] == v:
                return i
    finally:
        PyBuffer_Release(&view)
    raise ValueError("array.index(x): x not in array")
