# Contract of the compiled sublist twin (see docs/design.md, "Fast path").
# The compiled parser cimports ClientCore and deliver() from here, so the fields and signatures
# below are shared between two modules: change them only together with parser.pyx and the
# pure-Python twin jsedge/routing/_sublist_py.py.

cdef class ClientCore:
    cdef public bytearray outbuf          # framed bytes not yet handed to the transport
    cdef public bint flush_scheduled      # already on a `pending` list
    cdef public list pending              # shared (per server) list of cores with output to flush
    cdef public object sublist            # the Sublist of the account this client is bound to
    cdef public bint headers              # client negotiated headers (HMSG) support
    cdef public bint echo                 # deliver own publishes to own subscriptions
    cdef public bint no_responders        # wants 503 status when nobody receives a request
    cdef public bint fast_pub             # PUBs may skip Python (authenticated, no verbose/pedantic/
                                          # trace, no publish permissions)
    cdef public bint track_replies        # allow_responses: tell Python about replies delivered
    cdef public object deny_filter        # None, or callable(subject, queue) -> bool: subscribe
                                          # deny entries checked at delivery
    cdef public int kind                  # KIND_CLIENT, KIND_ROUTER or KIND_LEAF
    cdef public object routed_sublists    # a route's dict: account name -> Sublist; None for clients
    cdef public bint closed
    cdef public Py_ssize_t max_payload
    cdef public Py_ssize_t max_pending
    cdef public long long in_msgs
    cdef public long long in_bytes
    cdef public long long out_msgs
    cdef public long long out_bytes
    cdef public bint spoke                # a leaf connection this server dialled (to a hub)

cdef class Subscription:
    cdef public ClientCore client         # None for internal subscriptions
    cdef public bytes subject
    cdef public object queue              # bytes or None
    cdef public bytes sid
    cdef public long long max_msgs        # 0 = unlimited (auto-unsubscribe after max_msgs)
    cdef public long long delivered
    cdef public object internal           # None, or callable(sub, src, subject, reply, hdr_len, msg)
    cdef public bint closed
    cdef public long long weight          # a remote queue sub stands for `weight` members (RS+)
    cdef public bytes matched             # internal: the subject its current delivery was routed on

cdef class SublistResult:
    cdef public list psubs                # plain subscriptions
    cdef public list qsubs                # one list of Subscription per queue name

cpdef Py_ssize_t deliver(ClientCore src, bytes subject, bytes reply, Py_ssize_t hdr_len, bytes msg) except -1
cpdef flush_pending(list pending)

# ---- additions beyond the shared contract (private to the sublist twin unless noted) ----------

cdef class _Node:
    # One trie position. Every list/dict here is replaced, never mutated, once published, so
    # SublistResult lists built from it stay valid while the sublist changes.
    cdef list psubs                       # plain subscriptions ending here
    cdef dict qsubs                       # queue name -> list of members ending here
    cdef dict literal                     # literal token -> _Node
    cdef _Node pwc                        # the `*` child
    cdef _Node fwc                        # the `>` child

cdef class Sublist:
    cdef public bytes account             # the account's name, as routed messages carry it
    cdef _Node _root
    cdef dict _cache                      # published subject -> SublistResult (insertion ordered)
    cdef bint _cache_enabled
    cdef Py_ssize_t _count
    cdef long long _inserts
    cdef long long _removes
    cdef long long _matches
    cdef long long _cache_hits
    cdef SublistResult _match(self, bytes subject)
    cdef int _invalidate(self, bytes filter_subject) except -1

# Route through an explicit sublist; `src` may be None (server-originated messages, which have no
# client to take the account's sublist from). deliver(src, ...) == deliver_to(src.sublist, src, ...).
cpdef Py_ssize_t deliver_to(object sublist, ClientCore src, bytes subject, bytes reply,
                            Py_ssize_t hdr_len, bytes msg) except -1
# Routed on `subject`, framed with `shown` (JetStream deliveries: deliver subject vs stored subject).
# `queues`: for a message from a route, the queue groups the sending server chose (None = none).
cpdef Py_ssize_t deliver_as(object sublist, ClientCore src, bytes subject, bytes shown, bytes reply,
                            Py_ssize_t hdr_len, bytes msg, object queues=*) except -1
