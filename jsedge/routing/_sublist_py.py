"""Subject matching and message delivery, pure-Python reference twin (layer 2).

The sublist is nats-server's subscription trie: one level per token, each node holding the plain
subscriptions and the queue groups whose subject ends there, plus its children (literal tokens in a
dict, the `*` child and the `>` child apart, so matching never scans siblings). `match()` results are
cached per published subject (bounded, like nats-server's 1024-entry cache) and the cache is
invalidated selectively: a change drops only the cached subjects the changed subscription matches.

`deliver()` is the per-message fast path of docs/design.md ("Fast path"): match, frame MSG/HMSG into
each receiver's `outbuf`, schedule one flush per receiver. The compiled twin
`jsedge/_speedups/sublist.pyx` must behave identically; the differential tests in
tests/property/test_sublist_property.py hold both to that. Import through `jsedge.routing.sublist`.

Immutability rule: every list reachable from a `SublistResult` or a trie node is replaced, never
mutated, once created, so a result handed out stays valid while the sublist changes (deliver() may
run callbacks that subscribe or unsubscribe in the middle of a fan-out).

Imports: layer 0 only (`jsedge.subjects`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from jsedge.subjects import FWC, PWC, SEP, is_literal, subject_matches, valid_sublist_subject

__all__ = [
    "CACHE_MAX",
    "KIND_CLIENT",
    "KIND_ROUTER",
    "KIND_LEAF",
    "CACHE_SWEEP_TO",
    "ClientCore",
    "Subscription",
    "SublistResult",
    "Sublist",
    "deliver",
    "deliver_to",
    "deliver_as",
    "flush_pending",
]

#: Most cached match results (nats-server: slCacheMax = 1024).
CACHE_MAX = 1024
#: When the cache grows past CACHE_MAX the oldest entries are dropped down to this size; sweeping a
#: quarter at once keeps eviction amortised O(1) per insert instead of one eviction per miss.
CACHE_SWEEP_TO = 768

_CRLF = b"\r\n"

#: Connection kinds (nats-server's CLIENT, ROUTER, LEAF): `ClientCore.kind`.
KIND_CLIENT = 0
KIND_ROUTER = 1
KIND_LEAF = 2

InternalCallback = Callable[..., Any]


class ClientCore:
    """The part of a client connection the fast path touches (fields: jsedge/_speedups/sublist.pxd).

    The server's connection class subclasses this and overrides the hooks, which run rarely.
    """

    __slots__ = (
        "outbuf",
        "flush_scheduled",
        "pending",
        "sublist",
        "headers",
        "echo",
        "no_responders",
        "fast_pub",
        "track_replies",
        "deny_filter",
        "kind",
        "routed_sublists",
        "closed",
        "max_payload",
        "max_pending",
        "in_msgs",
        "in_bytes",
        "out_msgs",
        "out_bytes",
        "spoke",
    )  # a subclass without __slots__ (the server's connection) gets its own __dict__

    def __init__(self) -> None:
        self.outbuf: bytearray = bytearray()
        self.flush_scheduled: bool = False
        self.pending: list[ClientCore] = []
        self.sublist: Sublist | None = None
        self.headers: bool = False
        self.echo: bool = True
        self.no_responders: bool = False
        self.fast_pub: bool = False
        self.track_replies: bool = False
        #: None, or `deny_filter(subject, queue) -> bool`: subscribe deny entries checked at
        #: delivery (a wildcard SUB that overlaps a deny entry is accepted, as in nats-server, and
        #: the denied subjects are filtered out here). None costs one test per delivery.
        self.deny_filter: Callable[[bytes, bytes | None], bool] | None = None
        #: KIND_CLIENT, KIND_ROUTER or KIND_LEAF.
        self.kind: int = KIND_CLIENT
        #: A leaf connection this server dialled (to a hub): messages from one are never passed
        #: on to another (two hubs would loop them).
        self.spoke: bool = False
        #: A route's map of account name -> Sublist (the server's accounts), for routed messages;
        #: None for clients.
        self.routed_sublists: dict[bytes, Sublist] | None = None
        self.closed: bool = False
        self.max_payload: int = 1048576
        self.max_pending: int = 67108864
        self.in_msgs: int = 0
        self.in_bytes: int = 0
        self.out_msgs: int = 0
        self.out_bytes: int = 0

    # -- hooks, overridden by the server's connection ---------------------------------------------
    def flush(self) -> None:
        """Hand `outbuf` to the transport. Default: drop it (swap in a fresh buffer)."""
        self.outbuf = bytearray()

    def on_slow_consumer(self) -> None:
        """Called instead of appending when the frame would push `outbuf` past `max_pending`."""

    def on_auto_unsub(self, sub: Subscription) -> None:
        """`sub.delivered` reached `sub.max_msgs`; the sub is already marked closed."""

    def on_no_responders(self, subject: bytes, reply: bytes) -> None:
        """A publish of this client with a reply reached nobody and `no_responders` is set."""

    def on_reply_delivered(self, reply: bytes) -> None:
        """A message with `reply` was delivered to this client (only when `track_replies`)."""


class Subscription:
    """One subscription: `sid` is echoed verbatim in MSG; `queue` is bytes or None."""

    __slots__ = (
        "client",
        "subject",
        "queue",
        "sid",
        "max_msgs",
        "delivered",
        "internal",
        "closed",
        "weight",
        "matched",
    )

    def __init__(
        self,
        client: ClientCore | None,
        subject: bytes,
        sid: bytes,
        queue: bytes | None = None,
        max_msgs: int = 0,
        internal: InternalCallback | None = None,
    ) -> None:
        self.client = client
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.max_msgs = max_msgs
        self.delivered = 0
        self.internal = internal
        self.closed = False
        #: A remote server's queue subscription stands for `weight` members (RS+ queue weight):
        #: it appears that many times in match results, as nats-server shadows it.
        self.weight = 1
        #: For an internal callback: the subject its current delivery was routed on (the callback
        #: is given the subject shown, which differs for JetStream deliveries; account imports
        #: need both).
        self.matched = b""

    def __repr__(self) -> str:
        queue = f" queue={self.queue!r}" if self.queue is not None else ""
        return f"<Subscription {self.subject!r} sid={self.sid!r}{queue}>"


class SublistResult:
    """Subscriptions matching one subject: plain ones and one list per queue name. Never mutated."""

    __slots__ = ("psubs", "qsubs")

    def __init__(self, psubs: list[Subscription] | None = None, qsubs: list[list[Subscription]] | None = None) -> None:
        self.psubs: list[Subscription] = psubs if psubs is not None else []
        self.qsubs: list[list[Subscription]] = qsubs if qsubs is not None else []

    def __repr__(self) -> str:
        return f"<SublistResult psubs={len(self.psubs)} qsubs={[len(g) for g in self.qsubs]}>"


class _Node:
    """One trie position: subs whose subject ends here, and the next level's children."""

    __slots__ = ("psubs", "qsubs", "literal", "pwc", "fwc")

    def __init__(self) -> None:
        self.psubs: list[Subscription] = []
        # queue name -> members; both the dict and its lists are copied on change (immutability rule)
        self.qsubs: dict[bytes, list[Subscription]] = {}
        self.literal: dict[bytes, _Node] = {}
        self.pwc: _Node | None = None
        self.fwc: _Node | None = None

    def is_empty(self) -> bool:
        return not self.psubs and not self.qsubs and not self.literal and self.pwc is None and self.fwc is None


def _split(subject: bytes) -> list[bytes] | None:
    """Tokens of a published subject, or None when it has an empty token (matches nothing)."""
    if not subject:
        return None
    tokens = subject.split(SEP)
    for token in tokens:
        if not token:
            return None
    return tokens


class Sublist:
    """Subscription trie of one account, with a bounded, selectively invalidated match cache."""

    __slots__ = (
        "_root",
        "_cache",
        "_cache_enabled",
        "_count",
        "_inserts",
        "_removes",
        "_matches",
        "_cache_hits",
        "account",
    )

    def __init__(self, cache: bool = True) -> None:
        #: The account's name, as routed messages carry it (`RMSG <account> ...`).
        self.account = b"$G"
        self._root = _Node()
        self._cache: dict[bytes, SublistResult] = {}
        self._cache_enabled = bool(cache)
        self._count = 0
        self._inserts = 0
        self._removes = 0
        self._matches = 0
        self._cache_hits = 0

    @property
    def count(self) -> int:
        """Number of subscriptions."""
        return self._count

    def __len__(self) -> int:
        return self._count

    # -- changes ------------------------------------------------------------------------------
    def insert(self, sub: Subscription) -> None:
        """Add `sub`; raises ValueError for an invalid subject (§8.2)."""
        subject = sub.subject
        if not valid_sublist_subject(subject):
            raise ValueError(f"invalid subject {subject!r}")
        node = self._root
        for token in subject.split(SEP):
            if token == PWC:
                if node.pwc is None:
                    node.pwc = _Node()
                node = node.pwc
            elif token == FWC:
                if node.fwc is None:
                    node.fwc = _Node()
                node = node.fwc
            else:
                child = node.literal.get(token)
                if child is None:
                    child = node.literal[token] = _Node()
                node = child
        queue = sub.queue
        if queue is None:
            node.psubs = [*node.psubs, sub]
        else:
            qsubs = dict(node.qsubs)
            qsubs[queue] = [*qsubs.get(queue, ()), sub]
            node.qsubs = qsubs
        self._count += 1
        self._inserts += 1
        self._invalidate(subject)

    def remove(self, sub: Subscription) -> bool:
        """Remove `sub` (by identity); False when it was not in the sublist."""
        subject = sub.subject
        if not subject:
            return False
        path: list[tuple[_Node, bytes]] = []
        node: _Node | None = self._root
        for token in subject.split(SEP):
            assert node is not None
            path.append((node, token))
            if token == PWC:
                node = node.pwc
            elif token == FWC:
                node = node.fwc
            else:
                node = node.literal.get(token)
            if node is None:
                return False
        assert node is not None
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
        # prune nodes left empty, deepest first
        for parent, token in reversed(path):
            if not node.is_empty():
                break
            if token == PWC:
                parent.pwc = None
            elif token == FWC:
                parent.fwc = None
            else:
                del parent.literal[token]
            node = parent
        self._count -= 1
        self._removes += 1
        self._invalidate(subject)
        return True

    def _invalidate(self, filter_subject: bytes) -> None:
        """Drop the cached results that a subscription on `filter_subject` takes part in."""
        cache = self._cache
        if not cache:
            return
        if is_literal(filter_subject):
            # a literal filter matches exactly one published subject: itself
            cache.pop(filter_subject, None)
            return
        stale = [subject for subject in cache if subject_matches(filter_subject, subject)]
        for subject in stale:
            del cache[subject]

    # -- queries ------------------------------------------------------------------------------
    def match(self, subject: bytes) -> SublistResult:
        """All subscriptions matching the published `subject` (cached; never mutate the result)."""
        self._matches += 1
        cache = self._cache
        result = cache.get(subject)
        if result is not None:
            self._cache_hits += 1
            return result
        tokens = _split(subject)
        if tokens is None:
            return SublistResult()
        psubs: list[Subscription] = []
        groups: dict[bytes, list[Subscription]] = {}
        _collect(self._root, tokens, 0, psubs, groups)
        result = SublistResult(psubs, list(groups.values()))
        if self._cache_enabled:
            cache[subject] = result
            if len(cache) > CACHE_MAX:
                self._sweep()
        return result

    def _sweep(self) -> None:
        # dicts keep insertion order: the first keys are the oldest entries
        cache = self._cache
        excess = len(cache) - CACHE_SWEEP_TO
        for subject in list(cache)[:excess]:
            del cache[subject]

    def has_interest(self, subject: bytes) -> bool:
        """Does any subscription match `subject`? Does not fill the cache."""
        result = self._cache.get(subject)
        if result is not None:
            return bool(result.psubs or result.qsubs)
        tokens = _split(subject)
        if tokens is None:
            return False
        return _any_match(self._root, tokens, 0)

    def subscriptions(self) -> Iterator[Subscription]:
        """Every subscription, in trie order."""
        stack = [self._root]
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

    def clear_cache(self) -> None:
        self._cache.clear()

    def statistics(self) -> dict[str, int | float]:
        """Snapshot with nats-server's /subsz names; fan-out is computed over the cached results."""
        cache = self._cache
        max_fanout = 0
        total_fanout = 0
        for result in cache.values():
            fanout = len(result.psubs) + len(result.qsubs)
            total_fanout += fanout
            if fanout > max_fanout:
                max_fanout = fanout
        return {
            "num_subscriptions": self._count,
            "num_cache": len(cache),
            "num_inserts": self._inserts,
            "num_removes": self._removes,
            "num_matches": self._matches,
            "cache_hit_rate": self._cache_hits / self._matches if self._matches else 0.0,
            "max_fanout": max_fanout,
            "avg_fanout": total_fanout / len(cache) if cache else 0.0,
        }


def _add_node(node: _Node, psubs: list[Subscription], groups: dict[bytes, list[Subscription]]) -> None:
    if node.psubs:
        psubs.extend(node.psubs)
    for queue, members in node.qsubs.items():
        group = groups.get(queue)
        if group is None:
            group = groups[queue] = []
        for sub in members:
            if sub.weight > 1:
                group.extend([sub] * sub.weight)
            else:
                group.append(sub)


def _collect(
    node: _Node,
    tokens: list[bytes],
    index: int,
    psubs: list[Subscription],
    groups: dict[bytes, list[Subscription]],
) -> None:
    """Walk the literal path iteratively, recursing only into `*` children."""
    count = len(tokens)
    while True:
        if index == count:
            _add_node(node, psubs, groups)
            return
        if node.fwc is not None:
            _add_node(node.fwc, psubs, groups)
        if node.pwc is not None:
            _collect(node.pwc, tokens, index + 1, psubs, groups)
        child = node.literal.get(tokens[index])
        if child is None:
            return
        node = child
        index += 1


def _any_match(node: _Node, tokens: list[bytes], index: int) -> bool:
    count = len(tokens)
    while True:
        if index == count:
            return bool(node.psubs or node.qsubs)
        fwc = node.fwc
        if fwc is not None and (fwc.psubs or fwc.qsubs):
            return True
        if node.pwc is not None and _any_match(node.pwc, tokens, index + 1):
            return True
        child = node.literal.get(tokens[index])
        if child is None:
            return False
        node = child
        index += 1


# -- delivery ---------------------------------------------------------------------------------------

_random = random.random


def _deliver_one(
    src: ClientCore | None,
    sub: Subscription,
    routed: bytes,
    subject: bytes,
    reply: bytes,
    hdr_len: int,
    msg: bytes,
) -> bool:
    """Deliver to one subscription; False when it did not take the message. `routed` is the
    subject the subscription matched, `subject` the one shown in MSG/HMSG (normally the same)."""
    if sub.closed:
        return False
    client = sub.client
    if client is not None:
        if client.closed:
            return False
        if client is src and not src.echo:
            return False
        deny = client.deny_filter
        if deny is not None and deny(routed, sub.queue):
            return False
    internal = sub.internal
    if internal is not None:
        sub.delivered += 1
        limit_reached = sub.max_msgs > 0 and sub.delivered >= sub.max_msgs
        if limit_reached:
            sub.closed = True  # before the callback: a reentrant deliver must not reach it again
        sub.matched = routed
        internal(sub, src, subject, reply, hdr_len, msg)
        if limit_reached and client is not None:
            client.on_auto_unsub(sub)
        return True
    if client is None:
        return False  # neither a client nor a callback: nowhere to deliver
    if hdr_len >= 0 and client.headers:
        head = b"HMSG %b %b %b%d %d\r\n" % (
            subject,
            sub.sid,
            reply + b" " if reply else b"",
            hdr_len,
            len(msg),
        )
        body = msg
    else:
        body = msg[hdr_len:] if hdr_len > 0 else msg
        head = b"MSG %b %b %b%d\r\n" % (subject, sub.sid, reply + b" " if reply else b"", len(body))
    outbuf = client.outbuf
    if len(outbuf) + len(head) + len(body) + 2 > client.max_pending:
        client.on_slow_consumer()
        return False
    sub.delivered += 1
    limit_reached = sub.max_msgs > 0 and sub.delivered >= sub.max_msgs
    if limit_reached:
        sub.closed = True
    outbuf += head
    outbuf += body
    outbuf += _CRLF
    client.out_msgs += 1
    client.out_bytes += len(body)
    if not client.flush_scheduled:
        client.flush_scheduled = True
        (src.pending if src is not None else client.pending).append(client)
    if reply and client.track_replies:
        client.on_reply_delivered(reply)
    if limit_reached:
        client.on_auto_unsub(sub)
    return True


def deliver_to(
    sublist: Sublist | None,
    src: ClientCore | None,
    subject: bytes,
    reply: bytes,
    hdr_len: int,
    msg: bytes,
) -> int:
    """Route one message through `sublist` (see `deliver`); `src` may be None (server-originated)."""
    return deliver_as(sublist, src, subject, subject, reply, hdr_len, msg)


def deliver_as(
    sublist: Sublist | None,
    src: ClientCore | None,
    subject: bytes,
    shown: bytes,
    reply: bytes,
    hdr_len: int,
    msg: bytes,
    queues: list[bytes] | None = None,
) -> int:
    """`deliver_to`, routed on `subject` but framed with `shown` as the MSG/HMSG subject: how
    JetStream delivers a stored message to a consumer's deliver subject (consumers.md §3).

    Routes (subscriptions of KIND_ROUTER connections stand for a remote server's interest): each
    route that needs the message gets it once, as `RMSG`/`HMSG` with the queue groups it must
    deliver to; a queue group's member is chosen at random among all members, here and on other
    servers (a remote member counts `weight` times), as nats-server does. A message that came from
    a route (`src.kind == KIND_ROUTER`) never goes back to a route (one hop), and reaches only the
    queue groups named in `queues` (what the sending server chose), one local member each.

    Leaf connections (KIND_LEAF) are links too: each gets the message once, as `LMSG`/`HMSG`
    without the account (a leaf connection is bound to one), with the queue groups it must serve.
    A message from a route may go to leaf connections; one from a leaf connection may go to routes
    and to the other leaf connections, never back to its own, nor from a hub to another hub (both
    `spoke`); like a routed one, it reaches only the queue groups it names.
    """
    if src is not None:
        src.in_msgs += 1
        src.in_bytes += len(msg)
    delivered = 0
    if sublist is not None:
        src_kind = src.kind if src is not None else KIND_CLIENT
        from_route = src_kind == KIND_ROUTER
        from_link = from_route or src_kind == KIND_LEAF
        routes: list[list[Any]] | None = None  # [link core, queue names] in first-seen order
        result = sublist.match(subject)
        for sub in result.psubs:
            client = sub.client
            if client is not None and client.kind != KIND_CLIENT:
                if not sub.closed and _link_ok(src, client, from_route, subject):
                    routes = _route_target(routes, client, None)
                continue
            if _deliver_one(src, sub, subject, shown, reply, hdr_len, msg):
                delivered += 1
        for group in result.qsubs:
            if from_link and (not queues or group[0].queue not in queues):
                continue
            size = len(group)
            start = int(_random() * size) if size > 1 else 0
            for offset in range(size):
                index = start + offset
                if index >= size:
                    index -= size
                sub = group[index]
                client = sub.client
                if client is not None and client.kind != KIND_CLIENT:
                    # a member on another server (shadowed `weight` times): it is chosen as any
                    # local one would be (nats-server spreads a group over the whole cluster)
                    if sub.closed or not _link_ok(src, client, from_route, subject):
                        continue
                    routes = _route_target(routes, client, sub.queue)
                    break
                if _deliver_one(src, sub, subject, shown, reply, hdr_len, msg):
                    delivered += 1
                    break
        if routes is not None:
            account = sublist.account
            # routed on the deliver subject; a JetStream delivery carries the subject to show after
            # an `@` in its ack reply (nats-server's form), as the receiving server needs both
            routed_reply = reply + b"@" + shown if shown is not subject and reply and shown != subject else reply
            for route, names in routes:
                link_account = account if route.kind == KIND_ROUTER else None
                if _frame_routed(src, route, link_account, subject, routed_reply, names, hdr_len, msg):
                    delivered += 1
    if delivered == 0 and reply and src is not None and src.no_responders:
        src.on_no_responders(subject, reply)
    return delivered


#: Subjects that never cross a leaf link (nats-server's deny on every leaf connection of a client
#: account: each side's JetStream API, KV and object store subjects stay on that side; the other
#: side's JetStream is reached by its domain, `$JS.<domain>.API`). Interest in a wildcard such as
#: `>` still crosses; the messages on these subjects are what is held back.
LEAF_DENY = (b"$JS.API.", b"$KV.", b"$OBJ.")


def _link_ok(src: ClientCore | None, link: ClientCore, from_route: bool, subject: bytes) -> bool:
    """May a message on `subject` from `src` cross `link` (a route or leaf connection)?"""
    if link.closed or link is src:
        return False
    if link.kind == KIND_ROUTER:
        return not from_route  # one hop inside a cluster
    if src is not None and src.spoke and link.spoke:
        return False
    if subject.startswith(LEAF_DENY):
        return False
    # a leaf link's deny (a remote's deny_exports, a leaf's deny_pub): never delivered to it
    return link.deny_filter is None or not link.deny_filter(subject, None)


def _route_target(routes: list[list[Any]] | None, route: ClientCore, queue: bytes | None) -> list[list[Any]]:
    if routes is None:
        routes = []
    for entry in routes:
        if entry[0] is route:
            if queue is not None:
                entry[1].append(queue)
            return routes
    routes.append([route, [queue] if queue is not None else []])
    return routes


def _frame_routed(
    src: ClientCore | None,
    route: ClientCore,
    account: bytes | None,
    subject: bytes,
    reply: bytes,
    queues: list[bytes],
    hdr_len: int,
    msg: bytes,
) -> bool:
    """Append one `RMSG <account> <subject> [+ <reply> <queues>… | | <queues>… | <reply>] <size>`
    (or `HMSG ... <hdr> <total>`) frame to the route's buffer; `account` None: a leaf connection's
    `LMSG <subject> ...` (its `HMSG` has no account either)."""
    if queues:
        middle = (b"+ " + reply + b" " if reply else b"| ") + b" ".join(queues) + b" "
    elif reply:
        middle = reply + b" "
    else:
        middle = b""
    target = subject if account is None else account + b" " + subject
    if hdr_len > 0 and route.headers:
        head = b"HMSG %b %b%d %d\r\n" % (target, middle, hdr_len, len(msg))
        body = msg
    else:
        body = msg[hdr_len:] if hdr_len > 0 else msg
        head = b"%b %b %b%d\r\n" % (b"RMSG" if account is not None else b"LMSG", target, middle, len(body))
    outbuf = route.outbuf
    if len(outbuf) + len(head) + len(body) + 2 > route.max_pending:
        route.on_slow_consumer()
        return False
    outbuf += head
    outbuf += body
    outbuf += _CRLF
    route.out_msgs += 1
    route.out_bytes += len(body)
    if not route.flush_scheduled:
        route.flush_scheduled = True
        (src.pending if src is not None else route.pending).append(route)
    return True


def deliver(src: ClientCore, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> int:
    """Route one message published by `src` through `src.sublist` (docs/design.md, "Fast path").

    `reply` is b"" when absent; `hdr_len` is -1 for PUB, else the header length inside `msg`.
    Returns the number of deliveries. Server-originated messages (no publishing client) use
    `deliver_to(sublist, None, ...)`, since without a client there is no account to route in.
    """
    if src is None:
        raise TypeError("deliver() needs a publishing ClientCore; use deliver_to(sublist, None, ...)")
    return deliver_to(src.sublist, src, subject, reply, hdr_len, msg)


def flush_pending(pending: list[ClientCore]) -> None:
    """Flush every core on `pending` once, clearing its `flush_scheduled` flag, and empty the list.

    Cores appended while flushing (a flush hook that publishes) are flushed in the same call.
    """
    index = 0
    try:
        while index < len(pending):
            core = pending[index]
            index += 1
            core.flush_scheduled = False
            core.flush()
    finally:
        del pending[:index]
