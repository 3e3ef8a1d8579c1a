# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Client-protocol parser, compiled twin (layer 0 package, serving layer 1).

Same interface and behaviour as the reference `jsedge/protocol/_parser_py.py`; its docstring is the
contract (handler calls, framing rules learnt from nats-server 2.15.1). Never import this module
directly: use `jsedge.protocol.parser`, which honours JSEDGE_NO_EXTENSIONS.

What is compiled and why (benchmarks/bench_parser.py):
* The input is scanned through a `const char*` into the bytes object: op names by a 256-way
  transition table, control lines and PING junk by memchr, no Python object per byte or per token.
* A PUB line creates only the objects it must hand on: subject, reply (the b"" singleton when
  absent) and the payload bytes. When the whole PUB (line, payload, CRLF) is in the chunk, the
  payload is one PyBytes_FromStringAndSize from the chunk: nothing goes through the parser's
  buffers.
* With `core.fast_pub` the message goes to the cimported C `deliver()` of the compiled sublist:
  no Python-level call per message.
* A payload split across reads is copied once, straight into a fresh bytes object of its final
  size (not yet visible to anyone, so filling it in place is safe); an incomplete control line
  goes to a private C buffer of `max_control_line + 2` bytes (the limit bounds it). Nothing ever
  points into a caller's buffer after `feed()` returns.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memchr, memcmp, memcpy, memset

from jsedge._speedups.sublist cimport ClientCore, deliver, deliver_as

__all__ = ["Parser", "KEYWORDS", "ROUTE_KEYWORDS"]

# ---- parser states (same meaning as in _parser_py.py) -----------------------------------------
cdef enum:
    S_START = 0     # expecting (more of) an op name; `pfx` is the trie node reached so far
    S_SEP = 1       # op name complete, one space/TAB required
    S_SPC = 2       # skipping spaces/TABs before the argument
    S_ARG = 3       # inside an incomplete control line, bytes so far in `arg`
    S_SKIP = 4      # PING/PONG/+OK: ignoring everything up to LF
    S_PAYLOAD = 5   # filling `msg` with `size` payload bytes
    S_END_R = 6     # payload complete, CR required
    S_END_N = 7     # CR seen, LF required

# ---- ops ----------------------------------------------------------------------------------------
cdef enum:
    OP_PUB = 1
    OP_HPUB = 2
    OP_SUB = 3
    OP_UNSUB = 4
    OP_CONNECT = 5
    OP_INFO = 6
    OP_ERR = 7
    OP_HMSG = 8
    OP_PING = 9
    OP_PONG = 10
    OP_OK = 11
    # route protocol (a parser made with route=True)
    OP_RSUB = 12
    OP_RUNSUB = 13
    OP_LSUB = 14
    OP_LUNSUB = 15
    OP_RMSG = 16
    OP_LMSG = 17

#: Every op name a client may send (upper case), plus HMSG which is read then rejected.
KEYWORDS = {
    b"PUB": OP_PUB,
    b"HPUB": OP_HPUB,
    b"SUB": OP_SUB,
    b"UNSUB": OP_UNSUB,
    b"CONNECT": OP_CONNECT,
    b"INFO": OP_INFO,
    b"-ERR": OP_ERR,
    b"HMSG": OP_HMSG,
    b"PING": OP_PING,
    b"PONG": OP_PONG,
    b"+OK": OP_OK,
}

#: The ops a route speaks (nats-server's route protocol; HMSG is the routed header message).
ROUTE_KEYWORDS = {
    b"RS+": OP_RSUB,
    b"RS-": OP_RUNSUB,
    b"LS+": OP_LSUB,
    b"LS-": OP_LUNSUB,
    b"RMSG": OP_RMSG,
    b"LMSG": OP_LMSG,
    b"HMSG": OP_HMSG,
    b"CONNECT": OP_CONNECT,
    b"INFO": OP_INFO,
    b"-ERR": OP_ERR,
    b"PING": OP_PING,
    b"PONG": OP_PONG,
    b"+OK": OP_OK,
}

# Op-name tries as transition tables (one for clients, one for routes): node 0 is the empty
# prefix; TRANS[node][byte] is the next node or -1 (unknown op at this byte); TERM[node] is the op
# a complete name spells, else 0.
cdef enum:
    MAX_NODES = 64
cdef signed char _TRANS[MAX_NODES][256]
cdef unsigned char _TERM[MAX_NODES]
cdef signed char _RTRANS[MAX_NODES][256]
cdef unsigned char _RTERM[MAX_NODES]


cdef int _build_trie(dict keywords, signed char (*trans)[256], unsigned char* term) except -1:
    memset(trans, -1, sizeof(signed char) * MAX_NODES * 256)
    memset(term, 0, sizeof(unsigned char) * MAX_NODES)
    index = {b"": 0}
    for kw, op in keywords.items():
        for k in range(1, len(kw) + 1):
            pfx = kw[:k]
            if pfx not in index:
                node = len(index)
                if node >= MAX_NODES:
                    raise RuntimeError("op-name trie too large")
                index[pfx] = node
                c = kw[k - 1]
                trans[<int>index[kw[:k - 1]]][c] = node
                if 65 <= c <= 90:  # op names are case-insensitive (ASCII letters only)
                    trans[<int>index[kw[:k - 1]]][c + 32] = node
        term[<int>index[kw]] = op
    return 0


_build_trie(KEYWORDS, _TRANS, _TERM)
_build_trie(ROUTE_KEYWORDS, _RTRANS, _RTERM)

#: RS+/RS-/LS+/LS- split on space, TAB, CR and LF (nats-server's splitArg): map them all to space.
cdef bytes _SUB_WS = bytes.maketrans(b"\t\r\n", b"   ")

cdef str E_UNKNOWN = "unknown_op"
cdef str E_MCL = "max_control_line"
cdef str E_MAX_PAYLOAD = "max_payload"
cdef str E_SILENT = "silent"
cdef bytes _EMPTY = b""

cdef enum:
    MAXTOK = 5      # tokens recorded per control line (PUB/HPUB/SUB/UNSUB need at most 4)
    RMAXTOK = 32    # tokens recorded per routed message line (queue names); longer lines: Python


cdef inline Py_ssize_t _parse_size(const char* s, Py_ssize_t n) noexcept nogil:
    """nats-server's parseSize: 1 to 9 ASCII digits, else -1."""
    cdef Py_ssize_t v = 0, k
    cdef char c
    if n <= 0 or n > 9:
        return -1
    for k in range(n):
        c = s[k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


cdef inline Py_ssize_t _tokens(const char* a, Py_ssize_t n, bint split_crlf,
                               Py_ssize_t* st, Py_ssize_t* ln) noexcept nogil:
    """Split on runs of space/TAB (and CR/LF when `split_crlf`, as SUB/UNSUB do). Records the
    first MAXTOK tokens, returns how many there are in all."""
    return _tokens_n(a, n, split_crlf, st, ln, MAXTOK)


cdef inline Py_ssize_t _tokens_n(const char* a, Py_ssize_t n, bint split_crlf,
                                 Py_ssize_t* st, Py_ssize_t* ln, Py_ssize_t maxtok) noexcept nogil:
    cdef Py_ssize_t k = 0, start = -1, count = 0
    cdef char c
    cdef bint sep
    for k in range(n):
        c = a[k]
        sep = c == 32 or c == 9 or (split_crlf and (c == 13 or c == 10))
        if sep:
            if start >= 0:
                if count < maxtok:
                    st[count] = start
                    ln[count] = k - start
                count += 1
                start = -1
        elif start < 0:
            start = k
    if start >= 0:
        if count < maxtok:
            st[count] = start
            ln[count] = n - start
        count += 1
    return count


cdef inline bytes _tok(const char* a, Py_ssize_t* st, Py_ssize_t* ln, Py_ssize_t k):
    return PyBytes_FromStringAndSize(a + st[k], ln[k])


cdef Py_ssize_t _js_deliver_split(bytes reply):
    """The `@` of a routed JetStream delivery's `$JS.ACK.<8 tokens>@<subject>` reply, else -1
    (twin of jsedge.subjects.js_deliver_split)."""
    cdef const char* s = PyBytes_AS_STRING(reply)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(reply)
    cdef Py_ssize_t i, dots = 0
    if n < 8 or memcmp(s, b"$JS.ACK.", 8) != 0:
        return -1
    for i in range(n):
        if s[i] == 46:
            dots += 1
        elif s[i] == 64 and dots >= 8:
            return i
    return -1


cdef inline bint _has_prefix(const char* s, Py_ssize_t n, const char* prefix, Py_ssize_t k):
    return n >= k and memcmp(s, prefix, k) == 0


cdef inline bint _traced(bytes msg, Py_ssize_t hdr):
    """Do the headers ask for message tracing (`Nats-Trace-Dest` / `Nats-Trace-Only`)? Those
    publishes take the slow path (jsedge.routing.tracing)."""
    return hdr > 0 and msg.find(b"Nats-Trace-", 0, hdr) >= 0


cdef inline bint _tracked(bytes reply):
    """A service import's reply of a request sampled for latency tracking (`….T`): a routed
    message with one takes the handler's path (nats-server's isTrackedReply)."""
    if reply is None:
        return False
    cdef Py_ssize_t n = PyBytes_GET_SIZE(reply)
    cdef const char* s
    if n <= 4:
        return False
    s = reply
    return s[n - 2] == 46 and s[n - 1] == 84  # ".T"


cdef inline bint _reserved(bytes subject, bytes reply):
    """Reserved subjects and reply prefixes (spec/protocol.md §8.5) always take the checked path.
    One byte compare rejects the common case."""
    cdef const char* s = subject
    cdef Py_ssize_t n = len(subject)
    if n and (s[0] == 36 or s[0] == 95):  # '$' or '_'
        if _has_prefix(s, n, b"$NRG.", 5) or _has_prefix(s, n, b"_GR_.", 5):
            return True
    n = len(reply)
    if n:
        s = reply
        if s[0] == 36 or s[0] == 95:
            return _has_prefix(s, n, b"$JS.ACK.", 8) or _has_prefix(s, n, b"_R_.", 4) or _has_prefix(s, n, b"_GR_.", 5)
    return False


cdef class Parser:
    """Incremental client-protocol parser; the contract is the docstring of _parser_py.py."""

    cdef ClientCore core
    cdef object handler
    cdef Py_ssize_t mcl
    cdef bint _closed
    cdef int state
    cdef int op
    cdef int pfx
    # incomplete control line: private buffer of mcl + 2 bytes, allocated on first use
    cdef char* arg
    cdef Py_ssize_t arg_len
    cdef bint arg_cr            # a CR was seen after the line's first byte (the sticky drop)
    # PUB/HPUB being read
    cdef bytes msg              # payload split across reads: fresh bytes filled in place
    cdef Py_ssize_t msg_len
    cdef Py_ssize_t size
    cdef Py_ssize_t hdr
    cdef bytes subject
    cdef bytes reply
    # route mode
    cdef bint route
    cdef bytes account
    cdef object origin          # LMSG origin cluster, else None
    cdef object queues          # queue names of a routed message, else None
    cdef bint leaf              # a leaf connection: LMSG/HMSG without origin and account

    def __cinit__(self, ClientCore core not None, handler, Py_ssize_t max_control_line=4096, bint route=False,
                  bytes leaf_account=None):
        if max_control_line < 0:
            raise ValueError("max_control_line must be >= 0")
        self.core = core
        self.handler = handler
        self.mcl = max_control_line
        self._closed = False
        self.state = S_START
        self.op = 0
        self.pfx = 0
        self.arg = NULL
        self.arg_len = 0
        self.arg_cr = False
        self.msg = None
        self.msg_len = 0
        self.size = 0
        self.hdr = -1
        self.subject = _EMPTY
        self.reply = _EMPTY
        self.leaf = leaf_account is not None
        self.route = route or self.leaf
        self.account = leaf_account if self.leaf else _EMPTY
        self.origin = None
        self.queues = None

    def __dealloc__(self):
        if self.arg != NULL:
            PyMem_Free(self.arg)
            self.arg = NULL

    @property
    def closed(self):
        """True once a protocol error was reported; all further input is ignored."""
        return self._closed

    def feed(self, data):
        """Parse the next chunk of the client's stream (any split point is fine)."""
        cdef bytes buf
        if self._closed or self.core.closed:
            return
        if type(data) is bytes:
            buf = <bytes>data
        else:
            buf = bytes(data)
        self._feed(buf)

    # --------------------------------------------------------------------------------------------
    cdef int _fail(self, str key) except -1:
        self._closed = True
        self.msg = None
        self.arg_len = 0
        self.handler.proto_error(key)
        return 0

    cdef int _publish(self, bytes msg) except -1:
        """Hand a complete PUB/HPUB (or routed message) on; 0 when the core closed meanwhile."""
        cdef ClientCore core = self.core
        cdef object sublist = None
        cdef bytes reply, shown
        cdef Py_ssize_t at
        if self.route:
            if (core.routed_sublists is not None and self.origin is None and core.fast_pub
                    and not _traced(msg, self.hdr) and not _tracked(self.reply)):
                sublist = (<dict>core.routed_sublists).get(self.account)
            if sublist is not None:
                reply = self.reply
                shown = self.subject
                if reply is not None and PyBytes_GET_SIZE(reply) > 8:
                    at = _js_deliver_split(reply)
                    if at >= 0:  # a JetStream delivery: shown with the stored subject
                        shown = reply[at + 1:]
                        reply = reply[:at]
                deliver_as(sublist, core, self.subject, shown, reply, self.hdr, msg, self.queues)
            else:
                self.handler.proto_routed(self.origin, self.account, self.subject, self.reply, self.hdr, msg,
                                          self.queues)
            return 0 if core.closed else 1
        if core.fast_pub and not _reserved(self.subject, self.reply) and not _traced(msg, self.hdr):
            deliver(core, self.subject, self.reply, self.hdr, msg)
        else:
            self.handler.proto_pub(self.subject, self.reply, self.hdr, msg)
        return 0 if core.closed else 1

    cdef int _store_arg(self, const char* src, Py_ssize_t n, bint first) except -1:
        """Keep the tail of an incomplete control line; 0 (after reporting) if it is too long.
        `first`: `src` starts with the line's first byte, which never counts for the drop."""
        cdef bint cr = self.arg_cr
        cdef Py_ssize_t eff
        if not cr:
            if first:
                cr = n > 1 and memchr(src + 1, 13, n - 1) != NULL
            else:
                cr = memchr(src, 13, n) != NULL
        eff = self.arg_len + n - (1 if cr else 0)
        if eff > self.mcl:
            return self._fail(E_MCL)
        if self.arg == NULL:
            self.arg = <char*>PyMem_Malloc(self.mcl + 2)
            if self.arg == NULL:
                raise MemoryError()
        memcpy(self.arg + self.arg_len, src, n)
        self.arg_len += n
        self.arg_cr = cr
        return 1

    cdef int _control(self, const char* a, Py_ssize_t alen) except -1:
        """Act on a complete control line of op `op` (after the drop). 0 when parsing stops.

        PUB/HPUB: validate and record subject/reply/sizes, the caller reads the payload."""
        cdef Py_ssize_t st[MAXTOK]
        cdef Py_ssize_t ln[MAXTOK]
        cdef Py_ssize_t nt, size, hdr, mp
        cdef ClientCore core = self.core
        cdef int op = self.op
        if alen > self.mcl:
            return self._fail(E_MCL)
        if self.route:
            return self._route_control(a, alen)
        if op == OP_PUB:
            nt = _tokens(a, alen, False, st, ln)
            if nt != 2 and nt != 3:
                return self._fail(E_SILENT)
            size = _parse_size(a + st[nt - 1], ln[nt - 1])
            if size < 0:
                return self._fail(E_SILENT)
            mp = core.max_payload
            if mp >= 0 and size > mp:
                return self._fail(E_MAX_PAYLOAD)
            self.subject = _tok(a, st, ln, 0)
            self.reply = _tok(a, st, ln, 1) if nt == 3 else _EMPTY
            self.size = size
            self.hdr = -1
            self.state = S_PAYLOAD
            if not core.fast_pub:
                self.handler.proto_pub_arg(self.subject)
            return 1
        if op == OP_HPUB:
            if not core.headers:
                return self._fail(E_SILENT)
            nt = _tokens(a, alen, False, st, ln)
            if nt != 3 and nt != 4:
                return self._fail(E_SILENT)
            hdr = _parse_size(a + st[nt - 2], ln[nt - 2])
            size = _parse_size(a + st[nt - 1], ln[nt - 1])
            if hdr < 0 or size < 0 or hdr > size:
                return self._fail(E_SILENT)
            mp = core.max_payload
            if mp >= 0 and size > mp:
                return self._fail(E_MAX_PAYLOAD)
            self.subject = _tok(a, st, ln, 0)
            self.reply = _tok(a, st, ln, 1) if nt == 4 else _EMPTY
            self.size = size
            self.hdr = hdr if hdr > 0 else -1  # an empty header block is no header (nats-server: MSG)
            self.state = S_PAYLOAD
            if not core.fast_pub:
                self.handler.proto_pub_arg(self.subject)
            return 1
        self.state = S_START
        if op == OP_SUB:
            nt = _tokens(a, alen, True, st, ln)
            if nt == 2:
                self.handler.proto_sub(_tok(a, st, ln, 0), None, _tok(a, st, ln, 1))
            elif nt == 3:
                self.handler.proto_sub(_tok(a, st, ln, 0), _tok(a, st, ln, 1), _tok(a, st, ln, 2))
            else:
                return self._fail(E_SILENT)
        elif op == OP_UNSUB:
            nt = _tokens(a, alen, True, st, ln)
            if nt == 1:
                self.handler.proto_unsub(_tok(a, st, ln, 0), None)
            elif nt == 2:
                size = _parse_size(a + st[1], ln[1])
                self.handler.proto_unsub(_tok(a, st, ln, 0), size if size > 0 else 0)
            else:
                return self._fail(E_SILENT)
        elif op == OP_CONNECT:
            self.handler.proto_connect(PyBytes_FromStringAndSize(a, alen))
        elif op == OP_INFO:
            self.handler.proto_info(PyBytes_FromStringAndSize(a, alen))
        elif op == OP_ERR:
            self.handler.proto_client_err(PyBytes_FromStringAndSize(a, alen))
        else:  # OP_HMSG: a server-only op
            return self._fail(E_UNKNOWN)
        return 0 if core.closed else 1

    cdef int _route_control(self, const char* a, Py_ssize_t alen) except -1:
        """A complete route control line: see the reference twin's `_route_control`."""
        cdef Py_ssize_t st[RMAXTOK]
        cdef Py_ssize_t ln[RMAXTOK]
        cdef Py_ssize_t nt, first, count, size, hdr, qstart, qend, k, mp
        cdef int op = self.op
        cdef bint header
        cdef list args = None, queues = None
        cdef bytes reply, line
        cdef ClientCore core = self.core
        if op == OP_RMSG or op == OP_HMSG or op == OP_LMSG:
            header = op == OP_HMSG
            nt = _tokens_n(a, alen, False, st, ln, RMAXTOK)
            if nt > RMAXTOK:
                # many queue names: the rare long line goes through Python's split
                line = PyBytes_FromStringAndSize(a, alen)
                args = line.replace(b"\t", b" ").split()
            if self.leaf:
                if op == OP_RMSG:
                    return self._fail(E_SILENT)
                first = -1  # no account token: the connection's account is implicit
            else:
                first = 1 if op == OP_LMSG else 0
            count = nt - first
            if count < 3 + header:
                return self._fail(E_SILENT)
            if count == 3 + header:
                reply = _EMPTY
            elif count == 4 + header:
                reply = <bytes>args[first + 2] if args is not None else _tok(a, st, ln, first + 2)
            else:
                if args is None:
                    if ln[first + 2] != 1 or (a[st[first + 2]] != 43 and a[st[first + 2]] != 124):
                        return self._fail(E_SILENT)
                    k = a[st[first + 2]]
                else:
                    if len(<bytes>args[first + 2]) != 1 or (<bytes>args[first + 2])[0] not in (43, 124):
                        return self._fail(E_SILENT)
                    k = (<bytes>args[first + 2])[0]
                if k == 43:  # '+'
                    reply = <bytes>args[first + 3] if args is not None else _tok(a, st, ln, first + 3)
                    qstart = first + 4
                else:
                    reply = _EMPTY
                    qstart = first + 3
                qend = nt - 1 - header
                if args is not None:
                    queues = args[qstart:qend]
                else:
                    queues = [_tok(a, st, ln, k) for k in range(qstart, qend)]
            if args is not None:
                size = _parse_size(<bytes>args[nt - 1], len(<bytes>args[nt - 1]))
                hdr = _parse_size(<bytes>args[nt - 2], len(<bytes>args[nt - 2])) if header else -1
            else:
                size = _parse_size(a + st[nt - 1], ln[nt - 1])
                hdr = _parse_size(a + st[nt - 2], ln[nt - 2]) if header else -1
            if size < 0 or (header and (hdr < 0 or hdr > size)):
                return self._fail(E_SILENT)
            mp = core.max_payload
            if mp >= 0 and size > mp:
                return self._fail(E_MAX_PAYLOAD)
            if first < 0:
                self.origin = None
                self.subject = <bytes>args[0] if args is not None else _tok(a, st, ln, 0)
            elif args is not None:
                self.origin = args[0] if first else None
                self.account = <bytes>args[first]
                self.subject = <bytes>args[first + 1]
            else:
                self.origin = _tok(a, st, ln, 0) if first else None
                self.account = _tok(a, st, ln, first)
                self.subject = _tok(a, st, ln, first + 1)
            self.reply = reply
            self.queues = queues
            self.size = size
            self.hdr = hdr if hdr > 0 else -1
            self.state = S_PAYLOAD
            return 1
        self.state = S_START
        line = PyBytes_FromStringAndSize(a, alen)
        if op == OP_RSUB:
            self.handler.proto_rsub(line.translate(_SUB_WS).split())
        elif op == OP_RUNSUB:
            self.handler.proto_runsub(line.translate(_SUB_WS).split())
        elif op == OP_LSUB:
            self.handler.proto_lsub(line.translate(_SUB_WS).split())
        elif op == OP_LUNSUB:
            self.handler.proto_lunsub(line.translate(_SUB_WS).split())
        elif op == OP_CONNECT:
            self.handler.proto_connect(line)
        elif op == OP_INFO:
            self.handler.proto_info(line)
        else:  # OP_ERR
            self.handler.proto_client_err(line)
        return 0 if core.closed else 1

    cdef inline int _line(self, const char* a, Py_ssize_t alen) except -1:
        """A complete control line, `a` = its first byte, `alen` = bytes up to (not with) LF."""
        # Sticky drop: any CR after the first byte removes the byte before LF.
        if alen > 1 and (a[alen - 1] == 13 or memchr(a + 1, 13, alen - 1) != NULL):
            alen -= 1
        return self._control(a, alen)

    cdef Py_ssize_t _payload_fast(self, const char* p, Py_ssize_t i, Py_ssize_t n) except -2:
        """After a PUB/HPUB line ending at `i`: publish straight from the chunk when payload and
        CRLF are all there, else start filling `msg`. -1 when parsing stops."""
        cdef Py_ssize_t size = self.size
        cdef Py_ssize_t end = i + size
        cdef Py_ssize_t avail
        if end + 2 <= n:
            if p[end] != 13 or p[end + 1] != 10:
                self._fail(E_UNKNOWN)
                return -1
            self.state = S_START
            if not self._publish(PyBytes_FromStringAndSize(p + i, size)):
                return -1
            return end + 2
        avail = (end if end < n else n) - i
        self.msg = PyBytes_FromStringAndSize(NULL, size)
        if avail > 0:
            memcpy(PyBytes_AS_STRING(self.msg), p + i, avail)
        self.msg_len = avail
        if avail == size:
            self.state = S_END_R
        return i + avail

    cdef int _feed(self, bytes buf) except -1:
        cdef const char* p = PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t i = 0, start, nl, take
        cdef const char* q
        cdef int st, node, op
        cdef char c
        cdef ClientCore core = self.core
        cdef bytes msg
        cdef signed char (*trans)[256]
        cdef unsigned char* term
        while i < n:
            st = self.state
            if st == S_START:
                # Fast path for the hot op: "PUB " / "pub\t" ... in one go.
                if (self.pfx == 0 and not self.route and i + 4 <= n and (p[i] | 0x20) == 112
                        and (p[i + 1] | 0x20) == 117 and (p[i + 2] | 0x20) == 98 and (p[i + 3] == 32 or p[i + 3] == 9)):
                    self.op = OP_PUB
                    self.state = S_SPC
                    i += 4
                    continue
                # Trie walk: the error comes at the first byte that cannot continue a name.
                node = self.pfx
                op = 0
                if self.route:
                    trans = &_RTRANS[0]
                    term = &_RTERM[0]
                else:
                    trans = &_TRANS[0]
                    term = &_TERM[0]
                while i < n:
                    node = trans[node][<unsigned char>p[i]]
                    i += 1
                    if node < 0:
                        self.pfx = 0
                        self._fail(E_UNKNOWN)
                        return 0
                    op = term[node]
                    if op:
                        break
                if not op:
                    self.pfx = node
                    return 0
                self.pfx = 0
                self.op = op
                if op == OP_PING or op == OP_PONG or op == OP_OK:
                    self.state = S_SKIP
                elif op == OP_CONNECT or op == OP_INFO:
                    self.state = S_SPC
                else:
                    self.state = S_SEP
            elif st == S_SEP:
                c = p[i]
                if c != 32 and c != 9:
                    self._fail(E_UNKNOWN)
                    return 0
                i += 1
                self.state = S_SPC
            elif st == S_SPC:
                c = p[i]
                while c == 32 or c == 9:
                    i += 1
                    if i == n:
                        return 0
                    c = p[i]
                # The first argument byte is taken whatever it is (nats-server does the same).
                start = i
                q = <const char*>memchr(p + start + 1, 10, n - start - 1) if n - start > 1 else NULL
                if q == NULL:
                    self.state = S_ARG
                    self.arg_len = 0
                    self.arg_cr = False
                    self._store_arg(p + start, n - start, True)
                    return 0
                nl = q - p
                i = nl + 1
                if not self._line(p + start, nl - start):
                    return 0
                if self.state == S_PAYLOAD:
                    i = self._payload_fast(p, i, n)
                    if i < 0:
                        return 0
            elif st == S_ARG:
                q = <const char*>memchr(p + i, 10, n - i)
                if q == NULL:
                    self._store_arg(p + i, n - i, False)
                    return 0
                nl = q - p
                # Check the length before copying, so the private buffer never overflows.
                take = nl - i
                if (self.arg_len + take - (1 if (self.arg_cr or memchr(p + i, 13, take) != NULL) else 0)
                        > self.mcl):
                    self._fail(E_MCL)
                    return 0
                if take:
                    memcpy(self.arg + self.arg_len, p + i, take)
                take += self.arg_len
                self.arg_len = 0
                self.arg_cr = False
                i = nl + 1
                if not self._line(self.arg, take):
                    return 0
                if self.state == S_PAYLOAD:
                    i = self._payload_fast(p, i, n)
                    if i < 0:
                        return 0
            elif st == S_SKIP:
                q = <const char*>memchr(p + i, 10, n - i)
                if q == NULL:
                    return 0  # junk before LF is ignored and never buffered
                i = (q - p) + 1
                self.state = S_START
                op = self.op
                if op == OP_PING:
                    self.handler.proto_ping()
                elif op == OP_PONG:
                    self.handler.proto_pong()
                else:  # +OK from a client is ignored
                    continue
                if core.closed:
                    return 0
            elif st == S_PAYLOAD:
                take = self.size - self.msg_len
                if take > n - i:
                    take = n - i
                memcpy(PyBytes_AS_STRING(self.msg) + self.msg_len, p + i, take)
                self.msg_len += take
                i += take
                if self.msg_len == self.size:
                    self.state = S_END_R
            elif st == S_END_R:
                if p[i] != 13:
                    self._fail(E_UNKNOWN)
                    return 0
                i += 1
                self.state = S_END_N
            else:  # S_END_N
                if p[i] != 10:
                    self._fail(E_UNKNOWN)
                    return 0
                i += 1
                msg = self.msg
                self.msg = None
                self.state = S_START
                if not self._publish(msg):
                    return 0
        return 0
