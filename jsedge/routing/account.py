"""Accounts (layer 2): isolated subject spaces, each with its own sublist and clients.

`$G` (the global account) and the system account (`$SYS` by default) always exist. Exports and
imports between accounts are wired by jsedge.routing.imports with internal subscriptions.

Every subscription enters and leaves an account through `subscribe()` / `unsubscribe()`, the one
place that knows about interest: the account counts the local subscriptions (clients and the
server's internal ones, not those standing for a remote server's interest) per subject and queue
group, and tells its interest listeners each time a count changes. Routes turn that into `RS+`/`RS-`
(only local interest crosses a route), push consumers into "someone listens on my deliver subject".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jsedge.routing.sublist import KIND_ROUTER, Sublist, Subscription
from jsedge.transform import SubjectMapping

#: `listener(account, subject, queue, count, delta)` after every subscribe (`delta` +1) and
#: unsubscribe (-1); queue is None for plain subscriptions. For a local subscription `count` is the
#: number of local subscriptions left on (subject, queue); for a remote server's, it is -1 (routes
#: ignore those: interest crosses one route at most).
InterestListener = Callable[["Account", bytes, "bytes | None", int, int], None]


def is_local(sub: Subscription) -> bool:
    """A subscription of this server (a client's or an internal one), not a remote server's."""
    client = sub.client
    return client is None or client.kind != KIND_ROUTER


class Account:
    __slots__ = (
        "name",
        "sublist",
        "clients",
        "is_system",
        "created",
        "config",
        "interest",
        "listeners",
        "sub_listeners",
        "unrouted",
        "mappings",
        "service_imports",
    )

    def __init__(self, name: str, *, cache: bool = True, is_system: bool = False, config: Any = None) -> None:
        self.name = name
        self.sublist = Sublist(cache)
        self.sublist.account = name.encode()
        self.clients: set[Any] = set()
        self.is_system = is_system
        self.created = time.time()
        self.config = config
        #: Local subscriptions per (subject, queue).
        self.interest: dict[tuple[bytes, bytes | None], int] = {}
        self.listeners: list[InterestListener] = []
        #: `listener(account, sub, delta)` for every announced subscription that comes or goes,
        #: whoever it belongs to (leaf connections keep their own counts: jsedge.routing.leaf).
        self.sub_listeners: list[Callable[[Account, Subscription, int], None]] = []
        #: Internal subscriptions that serve this server only (standalone JetStream): they are
        #: neither counted nor announced.
        self.unrouted: set[Subscription] = set()
        #: Core subject mappings (jsedge.transform.SubjectMapping), first match wins; None = none.
        self.mappings: list[SubjectMapping] | None = None
        #: Local subjects of the services this account imports (jsedge.routing.imports).
        self.service_imports: list[bytes] = []

    def map_subject(self, subject: bytes) -> bytes:
        """The subject a client's publish is delivered on after the account's mappings."""
        for mapping in self.mappings or ():
            mapped = mapping.map(subject)
            if mapped is not None:
                return mapped
        return subject

    def add_client(self, client: Any) -> None:
        self.clients.add(client)

    def remove_client(self, client: Any) -> None:
        self.clients.discard(client)

    # ---------------------------------------------------------------- subscriptions

    def subscribe(self, sub: Subscription, *, routed: bool = True) -> None:
        """Insert `sub` (ValueError for an invalid subject, nothing changed then). `routed=False`:
        an internal subscription other servers must not learn about."""
        self.sublist.insert(sub)
        if routed:
            self._changed(sub, 1)
        else:
            self.unrouted.add(sub)

    def unsubscribe(self, sub: Subscription) -> bool:
        """Remove `sub`; False when it was not subscribed (nothing is announced then)."""
        sub.closed = True
        if not self.sublist.remove(sub):
            return False
        if self.unrouted and sub in self.unrouted:
            self.unrouted.discard(sub)
        else:
            self._changed(sub, -1)
        return True

    def _changed(self, sub: Subscription, delta: int) -> None:
        if is_local(sub):
            key = (sub.subject, sub.queue)
            count = self.interest.get(key, 0) + delta
            if count > 0:
                self.interest[key] = count
            else:
                self.interest.pop(key, None)
        else:
            count = -1
        for listener in list(self.listeners):
            listener(self, sub.subject, sub.queue, count, delta)
        for sub_listener in self.sub_listeners:
            sub_listener(self, sub, delta)

    def add_interest_listener(self, listener: InterestListener) -> None:
        self.listeners.append(listener)

    def add_sub_listener(self, listener: Callable[[Account, Subscription, int], None]) -> None:
        self.sub_listeners.append(listener)

    def remove_interest_listener(self, listener: InterestListener) -> None:
        try:
            self.listeners.remove(listener)
        except ValueError:
            pass

    def statistics(self) -> dict[str, Any]:
        return {"name": self.name, "connections": len(self.clients), "subscriptions": self.sublist.count}
