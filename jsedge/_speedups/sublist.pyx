# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Subject matching and message delivery, compiled twin (layer 0 package, serving layer 2).

Same public API and behaviour as the reference `jsedge/routing/_sublist_py.py`; read that module's
docstring for the concepts (trie, bounded selectively invalidated cache, immutability rule). Never
import this module directly: use `jsedge.routing.sublist`, which honours JSEDGE_NO_EXTENSIONS.

What is compiled and why (measured with benchmarks/bench_sublist.py, see the report in the PR):
* `deliver()` frames MSG/HMSG straight into the receiver's bytearray: one PyByteArray_Resize (which
  over-allocates by 1/8 like list growth, so appends are amortised O(1)) and memcpy of each piece;
  integers are formatted by a small C routine. No Python object is created per delivery on the
  common path (cache hit, plain subscriber); Python runs only for hooks and internal callbacks.
* `Sublist._match()` is a cdef call: a cache hit is one dict lookup. A miss walks the trie with
  C-level loops; the literal children are still a dict keyed by token bytes.
* Cache invalidation after a wildcard insert/remove runs a C matcher over the cached subjects'
  raw bytes (no tokenising into Python objects).
* Queue member choice uses a xorshift64* PRNG (a few ns) instead of Python's random module.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy

import os

from jsedge.subjects import valid_sublist_subject

#: Most cached match results (nats-server: slCacheMax = 1024).
CACHE_MAX = 1024
#: Sweep target when the cache grows past CACHE_MAX (oldest entries first).
CACHE_SWEEP_TO = 768

#: Connection kinds (nats-server's CLIENT, ROUTER, LEAF): `ClientCore.kind`.
cdef enum:
    _KIND_CLIENT = 0
    _KIND_ROUTER = 1
    _KIND_LEAF = 2

KIND_CLIENT = _KIND_CLIENT
KIND_ROUTER = _KIND_ROUTER
KIND_LEAF = _KIND_LEAF

cdef Py_ssize_t _CACHE_MAX = CACHE_MAX
cdef Py_ssize_t _CACHE_SWEEP_TO = CACHE_SWEEP_TO


# ---- tiny C helpers ------------------------------------------------------------------------------

cdef uint64_t _rng_state = 0


cdef inline uint64_t _next_random() noexcept nogil:
    # xorshift64*: good enough spread for picking a queue member, ~2 ns per draw.
    global _rng_state
    cdef uint64_t x = _rng_state
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    _rng_state = x
    return x * <uint64_t>2685821657736338717ULL


cdef inline Py_ssize_t _random_below(Py_ssize_t n) noexcept nogil:
    # Lemire's multiply-shift: uniform enough for n << 2**32 and avoids a division.
    return <Py_ssize_t>(((_next_random() >> 32) * <uint64_t>n) >> 32)


def _seed(seed=None):
    """Reseed the queue-member PRNG (tests); a random seed from os.urandom by default."""
    global _rng_state
    cdef uint64_t value
    if seed is None:
        value = int.from_bytes(os.urandom(8), "little")
    else:
        value = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    if value == 0:
        value = 0x9E3779B97F4A7C15ULL
    _rng_state = value


_seed()


cdef inline Py_ssize_t _digits(Py_ssize_t value) noexcept nogil:
    cdef Py_ssize_t count = 1
    while value >= 10:
        value //= 10
        count += 1
    return count


cdef inline char* _put_int(char* out, Py_ssize_t value, Py_ssize_t ndigits) noexcept nogil:
    # Writes exactly `ndigits` decimal digits of a non-negative value; returns the end pointer.
    cdef char* end = out + ndigits
    cdef char* p = end
    while True:
        p -= 1
        p[0] = <char>(48 + value % 10)
        value //= 10
        if value == 0:
            break
    return end


cdef inline char* _put(char* out, const char* data, Py_ssize_t length) noexcept nogil:
    memcpy(out, data, length)
    return out + length


cdef inline Py_ssize_t _token_end(const char* s, Py_ssize_t start, Py_ssize_t length) noexcept nogil:
    cdef const char* found = <const char*>memchr(s + start, 46, length - start)  # '.'
    if found == NULL:
        return length
    return found - s


cdef bint _c_matches(const char* f, Py_ssize_t flen, const char* s, Py_ssize_t slen) noexcept nogil:
    """Does valid filter f match subject s (non-empty tokens only)? Mirrors subjects.subject_matches."""
    cdef Py_ssize_t fi = 0, si = 0, fe, se
    while True:
        fe = _token_end(f, fi, flen)
        se = _token_end(s, si, slen)
        if fe - fi == 1 and f[fi] == 62:  # '>' matches this and every further token
            return True
        if not (fe - fi == 1 and f[fi] == 42):  # not '*': literal compare
            if fe - fi != se - si or memcmp(f + fi, s + si, fe - fi) != 0:
                return False
        if fe >= flen or se >= slen:
            return fe >= flen and se >= slen
        fi = fe + 1
        si = se + 1


cdef bint _c_is_literal(const char* f, Py_ssize_t flen) noexcept nogil:
    cdef Py_ssize_t fi = 0, fe
    while True:
        fe = _token_end(f, fi, flen)
        if fe - fi == 1 and (f[fi] == 42 or f[fi] == 62):
            return False
        if fe >= flen:
            return True
        fi = fe + 1


# ---- data types -----------------------------------------------------------------------------------

cdef int _client_defaults(ClientCore core) except -1:
    core.outbuf = bytearray()
    core.flush_scheduled = False
    core.pending = []
    core.sublist = None
    core.headers = False
    core.echo = True
    core.no_responders = False
    core.fast_pub = False
    core.track_replies = False
    core.deny_filter = None
    core.kind = KIND_CLIENT
    core.routed_sublists = None
    core.closed = False
    core.max_payload = 1048576
    core.max_pending = 67108864
    core.in_msgs = 0
    core.in_bytes = 0
    core.out_msgs = 0
    core.out_bytes = 0
    core.spoke = False
    return 0


cdef class ClientCore:
    """The part of a client connection the fast path touches; the server's connection subclasses it."""

    def __cinit__(self, *args, **kwargs):
        # Defaults live in __cinit__ so a subclass that forgets super().__init__() still has a
        # usable outbuf/pending (a None bytearray would be a crash in deliver, not an exception).
        _client_defaults(self)

    def __init__(self):
        _client_defaults(self)

    def flush(self):
        """Hand `outbuf` to the transport. Default: drop it (swap in a fresh buffer)."""
        self.outbuf = bytearray()

    def on_slow_consumer(self):
        """Called instead of appending when the frame would push `outbuf` past `max_pending`."""

    def on_auto_unsub(self, sub):
        """`sub.delivered` reached `sub.max_msgs`; the sub is already marked closed."""

    def on_no_responders(self, subject, reply):
        """A publish of this client with a reply reached nobody and `no_responders` is set."""

    def on_reply_delivered(self, reply):
        """A message with `reply` was delivered to this client (only when `track_replies`)."""


cdef class Subscription:
    """One subscription: `sid` is echoed verbatim in MSG; `queue` is bytes or None."""

    def __init__(self, ClientCore client, bytes subject, bytes sid, queue=None, long long max_msgs=0,
                 internal=None):
        self.client = client
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.max_msgs = max_msgs
        self.delivered = 0
        self.internal = internal
        self.closed = False
        self.weight = 1
        self.matched = b""

    def __repr__(self):
        queue = f" queue={self.queue!r}" if self.queue is not None else ""
        return f"<Subscription {self.subject!r} sid={self.sid!r}{queue}>"


cdef class SublistResult:
    """Subscriptions matching one subject: plain ones and one list per queue name. Never mutated."""

    def __init__(self, list psubs=None, list qsubs=None):
        self.psubs = psubs if psubs is not None else []
        self.qsubs = qsubs if qsubs is not None else []

    def __repr__(self):
        return f"<SublistResult psubs={len(self.psubs)} qsubs={[len(g) for g in self.qsubs]}>"


cdef class _Node:
    def __cinit__(self):
        self.psubs = []
        self.qsubs = {}
        self.literal = {}
        self.pwc = None
        self.fwc = None


cdef inline bint _node_is_empty(_Node node):
    return (not node.psubs and not node.qsubs and not node.literal
            and node.pwc is None and node.fwc is None)


cdef inline int _add_node(_Node node, list psubs, dict groups) except -1:
    cdef object queue
    cdef list members, target
    cdef PyObject* group
    cdef Subscription sub
    cdef long long k
    if node.psubs:
        psubs.extend(node.psubs)
    if node.qsubs:
        for queue, members in node.qsubs.items():
            group = PyDict_GetItem(groups, queue)
            if group == NULL:
                target = []
                groups[queue] = target
            else:
                target = <list>group
            for sub in members:
                # a remote queue sub stands for `weight` members (nats-server shadows it so)
                if sub.weight > 1:
                    for k in range(sub.weight):
                        target.append(sub)
                else:
                    target.append(sub)
    return 0


cdef int _collect(_Node node, list tokens, Py_ssize_t index, list psubs, dict groups) except -1:
    # Iterative along the literal path, recursive only into `*` children (as nats-server).
    cdef Py_ssize_t count = len(tokens)
    cdef PyObject* child
    while True:
        if index == count:
            _add_node(node, psubs, groups)
            return 0
        if node.fwc is not None:
            _add_node(node.fwc, psubs, groups)
        if node.pwc is not None:
            _collect(node.pwc, tokens, index + 1, psubs, groups)
        child = PyDict_GetItem(node.literal, tokens[index])
        if child == NULL:
            return 0
        node = <_Node>child
        index += 1


cdef int _any_match(_Node node, list tokens, Py_ssize_t index) except -1:
    cdef Py_ssize_t count = len(tokens)
    cdef PyObject* child
    cdef _Node fwc
    while True:
        if index == count:
            return 1 if (node.psubs or node.qsubs) else 0
        fwc = node.fwc
        if fwc is not None and (fwc.psubs or fwc.qsubs):
            return 1
        if node.pwc is not None and _any_match(node.pwc, tokens, index + 1):
            return 1
        child = PyDict_GetItem(node.literal, tokens[index])
        if child == NULL:
            return 0
        node = <_Node>child
        index += 1


cdef int _sweep(dict cache) except -1:
    # dicts keep insertion order: the first keys are the oldest entries
    cdef Py_ssize_t excess = len(cache) - _CACHE_SWEEP_TO
    for subject in list(cache)[:excess]:
        del cache[subject]
    return 0


cdef list _split(bytes subject):
    """Tokens of a published subject, or None when it has an empty token (matches nothing)."""
    cdef list tokens
    cdef Py_ssize_t i
    if subject is None or PyBytes_GET_SIZE(subject) == 0:
        return None
    tokens = subject.split(b".")
    for i in range(len(tokens)):
        if PyBytes_GET_SIZE(<bytes>tokens[i]) == 0:
            return None
    return tokens


cdef class Sublist:
    """Subscription trie of one account, with a bounded, selectively invalidated match cache."""

    def __cinit__(self, cache=True):
        self.account = b"$G"
        self._root = _Node()
        self._cache = {}
        self._cache_enabled = bool(cache)
        self._count = 0
        self._inserts = 0
        self._removes = 0
        self._matches = 0
        self._cache_hits = 0

    @property
    def count(self):
        """Number of subscriptions."""
        return self._count

    def __len__(self):
        return self._count

    # -- changes ------------------------------------------------------------------------------
    def insert(self, Subscription sub not None):
        """Add `sub`; raises ValueError for an invalid subject (§8.2)."""
        cdef bytes subject = sub.subject
        cdef bytes token
        cdef _Node node, child
        cdef PyObject* found
        cdef dict qsubs
        cdef list members
        if subject is None or not valid_sublist_subject(subject):
            raise ValueError(f"invalid subject {subject!r}")
        node = self._root
        for token in subject.split(b"."):
            if PyBytes_GET_SIZE(token) == 1 and PyBytes_AS_STRING(token)[0] == 42:
                if node.pwc is None:
                    node.pwc = _Node()
                node = node.pwc
            elif PyBytes_GET_SIZE(token) == 1 and PyBytes_AS_STRING(token)[0] == 62:
                if node.fwc is None:
                    node.fwc = _Node()
                node = node.fwc
            else:
                found = PyDict_GetItem(node.literal, token)
                if found == NULL:
                    child = _Node()
                    node.literal[token] = child
                    node = child
                else:
                    node = <_Node>found
        queue = sub.queue
        if queue is None:
            members = list(node.psubs)
            members.append(sub)
            node.psubs = members
        else:
            qsubs = dict(node.qsubs)
            members = list(qsubs.get(queue, ()))
            members.append(sub)
            qsubs[queue] = members
            node.qsubs = qsubs
        self._count += 1
        self._inserts += 1
        self._invalidate(subject)

    def remove(self, Subscription sub not None):
        """Remove `sub` (by identity); False when it was not in the sublist."""
        cdef bytes subject = sub.subject
        cdef bytes token
        cdef list path = []
        cdef list members, kept
        cdef dict qsubs
        cdef _Node node = self._root, parent
        cdef PyObject* found
        cdef Py_ssize_t i
        if subject is None or PyBytes_GET_SIZE(subject) == 0:
            return False
        for token in subject.split(b"."):
            path.append((node, token))
            if PyBytes_GET_SIZE(token) == 1 and PyBytes_AS_STRING(token)[0] == 42:
                node = node.pwc
            elif PyBytes_GET_SIZE(token) == 1 and PyBytes_AS_STRING(token)[0] == 62:
                node = node.fwc
            else:
                found = PyDict_GetItem(node.literal, token)
                node = <_Node>found if found != NULL else None
            if node is None:
                return False
        queue = sub.queue
        if queue is None:
            members = node.psubs
            kept = [s for s in members if s is not sub]
            if len(kept) == len(members):
                return False
            node.psubs = kept
        else:
            members = node.qsubs.get(queue, [])
            kept = [s for s in members if s is not sub]
            if len(kept) == len(members):
                return False
            qsubs = dict(node.qsubs)
            if kept:
                qsubs[queue] = kept
            else:
                del qsubs[queue]
            node.qsubs = qsubs
        for i in range(len(path) - 1, -1, -1):
            if not _node_is_empty(node):
                break
            parent, token = path[i]
            if PyBytes_GET_SIZE(token) == 1 and PyBytes_AS_STRING(token)[0] == 42:
                parent.pwc = None
            elif PyBytes_GET_SIZE(token) == 1 and PyBytes_AS_STRING(token)[0] == 62:
                parent.fwc = None
            else:
                del parent.literal[token]
            node = parent
        self._count -= 1
        self._removes += 1
        self._invalidate(subject)
        return True

    cdef int _invalidate(self, bytes filter_subject) except -1:
        cdef dict cache = self._cache
        cdef const char* f = PyBytes_AS_STRING(filter_subject)
        cdef Py_ssize_t flen = PyBytes_GET_SIZE(filter_subject)
        cdef Py_ssize_t pos = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef list stale
        if not cache:
            return 0
        if _c_is_literal(f, flen):
            # a literal filter matches exactly one published subject: itself
            cache.pop(filter_subject, None)
            return 0
        stale = []
        while PyDict_Next(cache, &pos, &key, &value):
            if _c_matches(f, flen, PyBytes_AS_STRING(<object>key), PyBytes_GET_SIZE(<object>key)):
                stale.append(<object>key)
        for subject in stale:
            del cache[subject]
        return 0

    # -- queries ------------------------------------------------------------------------------
    cdef SublistResult _match(self, bytes subject):
        cdef PyObject* cached
        cdef list tokens, psubs
        cdef dict groups
        cdef SublistResult result
        self._matches += 1
        if subject is None:
            raise TypeError("subject must be bytes")
        cached = PyDict_GetItem(self._cache, subject)
        if cached != NULL:
            self._cache_hits += 1
            return <SublistResult>cached
        tokens = _split(subject)
        if tokens is None:
            return SublistResult()
        psubs = []
        groups = {}
        _collect(self._root, tokens, 0, psubs, groups)
        result = SublistResult.__new__(SublistResult)
        result.psubs = psubs
        result.qsubs = list(groups.values())
        if self._cache_enabled:
            self._cache[subject] = result
            if len(self._cache) > _CACHE_MAX:
                _sweep(self._cache)
        return result

    def match(self, bytes subject):
        """All subscriptions matching the published `subject` (cached; never mutate the result)."""
        return self._match(subject)

    def has_interest(self, bytes subject):
        """Does any subscription match `subject`? Does not fill the cache."""
        cdef PyObject* cached
        cdef list tokens
        if subject is None:
            return False
        cached = PyDict_GetItem(self._cache, subject)
        if cached != NULL:
            return bool((<SublistResult>cached).psubs or (<SublistResult>cached).qsubs)
        tokens = _split(subject)
        if tokens is None:
            return False
        return _any_match(self._root, tokens, 0) == 1

    def subscriptions(self):
        """Every subscription, in trie order."""
        cdef list stack = [self._root]
        cdef _Node node
        while stack:
            node = stack.pop()
            yield from node.psubs
            for members in node.qsubs.values():
                yield from members
            stack.extend(node.literal.values())
            if node.pwc is not None:
                stack.append(node.pwc)
            if node.fwc is not None:
                stack.append(node.fwc)

    def clear_cache(self):
        self._cache.clear()

    def statistics(self):
        """Snapshot with nats-server's /subsz names; fan-out is computed over the cached results."""
        cdef SublistResult result
        cdef Py_ssize_t fanout, max_fanout = 0, total_fanout = 0
        for result in self._cache.values():
            fanout = len(result.psubs) + len(result.qsubs)
            total_fanout += fanout
            if fanout > max_fanout:
                max_fanout = fanout
        return {
            "num_subscriptions": self._count,
            "num_cache": len(self._cache),
            "num_inserts": self._inserts,
            "num_removes": self._removes,
            "num_matches": self._matches,
            "cache_hit_rate": (<double>self._cache_hits) / self._matches if self._matches else 0.0,
            "max_fanout": max_fanout,
            "avg_fanout": (<double>total_fanout) / len(self._cache) if self._cache else 0.0,
        }


# ---- delivery -------------------------------------------------------------------------------------

cdef int _deliver_one(ClientCore src, Subscription sub, bytes routed, bytes subject, bytes reply,
                      Py_ssize_t hdr_len, bytes msg) except -1:
    """Deliver to one subscription: 1 when it took the message, else 0. `routed` is the subject the
    subscription matched; `subject` is the one shown in MSG/HMSG and passed to internal callbacks
    (normally the same)."""
    cdef ClientCore client
    cdef bint limit_reached, hmsg
    cdef Py_ssize_t subj_len, sid_len, reply_len, msg_len, body_len, offset
    cdef Py_ssize_t hdr_digits = 0, body_digits, frame_len, old_len
    cdef const char* body
    cdef char* p
    cdef bytearray outbuf
    if sub.closed:
        return 0
    client = sub.client
    if client is not None:
        if client.closed:
            return 0
        if client is src and not src.echo:
            return 0
        if client.deny_filter is not None and client.deny_filter(routed, sub.queue):
            return 0
    if sub.internal is not None:
        sub.delivered += 1
        limit_reached = sub.max_msgs > 0 and sub.delivered >= sub.max_msgs
        if limit_reached:
            sub.closed = True  # before the callback: a reentrant deliver must not reach it again
        sub.matched = routed
        sub.internal(sub, src, subject, reply, hdr_len, msg)
        if limit_reached and client is not None:
            client.on_auto_unsub(sub)
        return 1
    if client is None:
        return 0  # neither a client nor a callback: nowhere to deliver

    subj_len = PyBytes_GET_SIZE(subject)
    sid_len = PyBytes_GET_SIZE(sub.sid)
    reply_len = PyBytes_GET_SIZE(reply) if reply is not None else 0
    msg_len = PyBytes_GET_SIZE(msg)
    hmsg = hdr_len >= 0 and client.headers
    if hmsg:
        body = PyBytes_AS_STRING(msg)
        body_len = msg_len
        hdr_digits = _digits(hdr_len)
        # "HMSG " subject " " sid " " [reply " "] hdr " " total "\r\n"
        frame_len = 5 + subj_len + 1 + sid_len + 1 + hdr_digits + 1
    else:
        offset = hdr_len if hdr_len > 0 else 0
        if offset > msg_len:
            offset = msg_len
        body = PyBytes_AS_STRING(msg) + offset
        body_len = msg_len - offset
        # "MSG " subject " " sid " " [reply " "] size "\r\n"
        frame_len = 4 + subj_len + 1 + sid_len + 1
    if reply_len:
        frame_len += reply_len + 1
    body_digits = _digits(body_len)
    frame_len += body_digits + 2 + body_len + 2

    outbuf = client.outbuf
    if outbuf is None:
        raise TypeError("ClientCore.outbuf is None")
    old_len = PyByteArray_GET_SIZE(outbuf)
    if old_len + frame_len > client.max_pending:
        client.on_slow_consumer()
        return 0
    sub.delivered += 1
    limit_reached = sub.max_msgs > 0 and sub.delivered >= sub.max_msgs
    if limit_reached:
        sub.closed = True

    PyByteArray_Resize(outbuf, old_len + frame_len)
    p = PyByteArray_AS_STRING(outbuf) + old_len
    if hmsg:
        p = _put(p, b"HMSG ", 5)
    else:
        p = _put(p, b"MSG ", 4)
    p = _put(p, PyBytes_AS_STRING(subject), subj_len)
    p[0] = 32
    p = _put(p + 1, PyBytes_AS_STRING(sub.sid), sid_len)
    p[0] = 32
    p += 1
    if reply_len:
        p = _put(p, PyBytes_AS_STRING(reply), reply_len)
        p[0] = 32
        p += 1
    if hmsg:
        p = _put_int(p, hdr_len, hdr_digits)
        p[0] = 32
        p += 1
    p = _put_int(p, body_len, body_digits)
    p[0] = 13
    p[1] = 10
    p = _put(p + 2, body, body_len)
    p[0] = 13
    p[1] = 10

    client.out_msgs += 1
    client.out_bytes += body_len
    if not client.flush_scheduled:
        client.flush_scheduled = True
        if src is not None:
            src.pending.append(client)
        else:
            client.pending.append(client)
    if reply_len and client.track_replies:
        client.on_reply_delivered(reply)
    if limit_reached:
        client.on_auto_unsub(sub)
    return 1


cpdef Py_ssize_t deliver_to(object sublist, ClientCore src, bytes subject, bytes reply,
                            Py_ssize_t hdr_len, bytes msg) except -1:
    """Route one message through `sublist` (see `deliver`); `src` may be None (server-originated)."""
    return deliver_as(sublist, src, subject, subject, reply, hdr_len, msg)


cdef list _route_target(list routes, ClientCore route, object queue):
    """Add `route` (once) to the routes a message goes to, with `queue` among its queue groups."""
    cdef list entry
    cdef Py_ssize_t i
    if routes is None:
        routes = []
    for i in range(len(routes)):
        entry = <list>routes[i]
        if entry[0] is route:
            if queue is not None:
                (<list>entry[1]).append(queue)
            return routes
    routes.append([route, [queue] if queue is not None else []])
    return routes


cdef int _frame_routed(ClientCore src, ClientCore route, bytes account, bytes subject, bytes reply,
                       list queues, Py_ssize_t hdr_len, bytes msg) except -1:
    """Append `RMSG <account> <subject> [+ <reply> <queues>… | | <queues>… | <reply>] <size>` (or
    `HMSG ... <hdr> <total>`) to the route's buffer: 1 when appended, 0 on a slow route. `account`
    None: a leaf connection's `LMSG <subject> ...` (its `HMSG` has no account either)."""
    cdef bint hmsg = hdr_len > 0 and route.headers
    cdef Py_ssize_t msg_len = PyBytes_GET_SIZE(msg)
    cdef Py_ssize_t offset, body_len, frame_len, old_len, body_digits, hdr_digits = 0
    cdef Py_ssize_t acc_len = PyBytes_GET_SIZE(account) if account is not None else -1
    cdef Py_ssize_t subj_len = PyBytes_GET_SIZE(subject)
    cdef Py_ssize_t reply_len = PyBytes_GET_SIZE(reply) if reply is not None else 0
    cdef Py_ssize_t nq = len(queues)
    cdef Py_ssize_t i, qlen
    cdef bytes q
    cdef const char* body
    cdef char* p
    cdef bytearray outbuf
    if hmsg:
        body = PyBytes_AS_STRING(msg)
        body_len = msg_len
        hdr_digits = _digits(hdr_len)
    else:
        offset = hdr_len if hdr_len > 0 else 0
        if offset > msg_len:
            offset = msg_len
        body = PyBytes_AS_STRING(msg) + offset
        body_len = msg_len - offset
    body_digits = _digits(body_len)
    # "RMSG "/"HMSG "/"LMSG " [account " "] subject " "
    frame_len = 5 + acc_len + 1 + subj_len + 1
    if nq:
        frame_len += 2  # "+ " or "| "
        if reply_len:
            frame_len += reply_len + 1
        for i in range(nq):
            frame_len += PyBytes_GET_SIZE(<bytes>queues[i]) + 1
    elif reply_len:
        frame_len += reply_len + 1
    if hmsg:
        frame_len += hdr_digits + 1
    frame_len += body_digits + 2 + body_len + 2
    outbuf = route.outbuf
    old_len = PyByteArray_GET_SIZE(outbuf)
    if old_len + frame_len > route.max_pending:
        route.on_slow_consumer()
        return 0
    PyByteArray_Resize(outbuf, old_len + frame_len)
    p = PyByteArray_AS_STRING(outbuf) + old_len
    p = _put(p, b"HMSG " if hmsg else (b"RMSG " if acc_len >= 0 else b"LMSG "), 5)
    if acc_len >= 0:
        p = _put(p, PyBytes_AS_STRING(account), acc_len)
        p[0] = 32
        p += 1
    p = _put(p, PyBytes_AS_STRING(subject), subj_len)
    p[0] = 32
    p += 1
    if nq:
        p[0] = 43 if reply_len else 124  # '+' or '|'
        p[1] = 32
        p += 2
        if reply_len:
            p = _put(p, PyBytes_AS_STRING(reply), reply_len)
            p[0] = 32
            p += 1
        for i in range(nq):
            q = <bytes>queues[i]
            qlen = PyBytes_GET_SIZE(q)
            p = _put(p, PyBytes_AS_STRING(q), qlen)
            p[0] = 32
            p += 1
    elif reply_len:
        p = _put(p, PyBytes_AS_STRING(reply), reply_len)
        p[0] = 32
        p += 1
    if hmsg:
        p = _put_int(p, hdr_len, hdr_digits)
        p[0] = 32
        p += 1
    p = _put_int(p, body_len, body_digits)
    p[0] = 13
    p[1] = 10
    p = _put(p + 2, body, body_len)
    p[0] = 13
    p[1] = 10
    route.out_msgs += 1
    route.out_bytes += body_len
    if not route.flush_scheduled:
        route.flush_scheduled = True
        if src is not None:
            src.pending.append(route)
        else:
            route.pending.append(route)
    return 1


cdef inline bint _is_link(Subscription sub) noexcept:
    """A subscription standing for a route's or a leaf connection's interest."""
    return sub.client is not None and sub.client.kind != _KIND_CLIENT


cdef tuple _LEAF_DENY = (b"$JS.API.", b"$KV.", b"$OBJ.")


cdef inline bint _link_ok(ClientCore src, ClientCore link, bint from_route, bytes subject) except -1:
    """May a message on `subject` from `src` cross `link` (see the reference twin's `_link_ok`
    and `LEAF_DENY`)?"""
    if link.closed or link is src:
        return False
    if link.kind == _KIND_ROUTER:
        return not from_route
    if src is not None and src.spoke and link.spoke:
        return False
    if len(subject) > 0 and subject[0] == 36 and subject.startswith(_LEAF_DENY):  # 36: '$'
        return False
    return link.deny_filter is None or not link.deny_filter(subject, None)


cpdef Py_ssize_t deliver_as(object sublist, ClientCore src, bytes subject, bytes shown, bytes reply,
                            Py_ssize_t hdr_len, bytes msg, object queues=None) except -1:
    """`deliver_to`, routed on `subject` but framed with `shown` as the MSG/HMSG subject: how
    JetStream delivers a stored message to a consumer's deliver subject (consumers.md §3).

    Routes: see the reference twin's docstring (one RMSG per route that needs the message, queue
    members chosen over the whole cluster, one hop only, `queues` = the groups a routed message
    may reach)."""
    cdef SublistResult result
    cdef list psubs, qsubs, group, routes = None, entry
    cdef Py_ssize_t i, k, n, size, start, index
    cdef Py_ssize_t delivered = 0
    cdef bint from_route, from_link
    cdef Subscription sub
    cdef ClientCore link
    cdef bytes account
    if subject is None or shown is None or msg is None:
        raise TypeError("subject, shown and msg must be bytes")
    if src is not None:
        src.in_msgs += 1
        src.in_bytes += PyBytes_GET_SIZE(msg)
    if sublist is not None:
        from_route = src is not None and src.kind == _KIND_ROUTER
        from_link = from_route or (src is not None and src.kind == _KIND_LEAF)
        if isinstance(sublist, Sublist):
            result = (<Sublist>sublist)._match(subject)
        else:
            result = sublist.match(subject)
        # The lists are never mutated once handed out (immutability rule), so their length and
        # items stay valid even if a hook or callback below changes the sublist.
        psubs = result.psubs
        n = len(psubs)
        for i in range(n):
            sub = <Subscription>psubs[i]
            if _is_link(sub):
                if not sub.closed and _link_ok(src, sub.client, from_route, subject):
                    routes = _route_target(routes, sub.client, None)
                continue
            delivered += _deliver_one(src, sub, subject, shown, reply, hdr_len, msg)
        qsubs = result.qsubs
        n = len(qsubs)
        for i in range(n):
            group = <list>qsubs[i]
            size = len(group)
            if from_link:
                if queues is None or (<Subscription>group[0]).queue not in queues:
                    continue
            start = _random_below(size) if size > 1 else 0
            for k in range(size):
                index = start + k
                if index >= size:
                    index -= size
                sub = <Subscription>group[index]
                if _is_link(sub):
                    # a member on another server, chosen as a local one would be
                    if sub.closed or not _link_ok(src, sub.client, from_route, subject):
                        continue
                    routes = _route_target(routes, sub.client, sub.queue)
                    break
                if _deliver_one(src, sub, subject, shown, reply, hdr_len, msg):
                    delivered += 1
                    break
        if routes is not None:
            account = (<Sublist>sublist).account if isinstance(sublist, Sublist) else sublist.account
            # routed on the deliver subject; a JetStream delivery carries the subject to show after
            # an `@` in its ack reply (nats-server's form)
            routed_reply = reply
            if shown is not subject and reply is not None and PyBytes_GET_SIZE(reply) > 0 and shown != subject:
                routed_reply = reply + b"@" + shown
            for i in range(len(routes)):
                entry = <list>routes[i]
                link = <ClientCore>entry[0]
                delivered += _frame_routed(src, link, account if link.kind == _KIND_ROUTER else None, subject,
                                           routed_reply, <list>entry[1], hdr_len, msg)
    if delivered == 0 and src is not None and src.no_responders and reply is not None \
            and PyBytes_GET_SIZE(reply) > 0:
        src.on_no_responders(subject, reply)
    return delivered


cpdef Py_ssize_t deliver(ClientCore src, bytes subject, bytes reply, Py_ssize_t hdr_len, bytes msg) except -1:
    """Route one message published by `src` through `src.sublist` (docs/design.md, "Fast path").

    `reply` is b"" when absent; `hdr_len` is -1 for PUB, else the header length inside `msg`.
    Returns the number of deliveries. Server-originated messages (no publishing client) use
    `deliver_to(sublist, None, ...)`, since without a client there is no account to route in.
    """
    if src is None:
        raise TypeError("deliver() needs a publishing ClientCore; use deliver_to(sublist, None, ...)")
    return deliver_to(src.sublist, src, subject, reply, hdr_len, msg)


cpdef flush_pending(list pending):
    """Flush every core on `pending` once, clearing its `flush_scheduled` flag, and empty the list.

    Cores appended while flushing (a flush hook that publishes) are flushed in the same call.
    """
    cdef Py_ssize_t index = 0
    cdef ClientCore core
    try:
        while index < len(pending):
            core = <ClientCore>pending[index]
            index += 1
            core.flush_scheduled = False
            core.flush()
    finally:
        del pending[:index]
