"""What the JetStream layer needs of the server (layer 4): a `typing.Protocol`, so the layer is typed
against an interface instead of `Any`, and server.py (the composition root, layer 7) injects itself.

Everything JetStream does to the outside world goes through these members: internal subscriptions
(the stream's subjects, the API, consumer acks), internal publishes (acks, deliveries, advisories),
the event loop (timers, fsync callbacks), the logger and the configuration. Tests may pass any object
with these members.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from jsedge.config import ServerConfig
from jsedge.log import Logger
from jsedge.routing.account import Account
from jsedge.routing.sublist import Subscription

#: `callback(sub, src, subject, reply, hdr_len, msg)` of an internal subscription.
InternalCallback = Callable[[Any, Any, bytes, bytes, int, bytes], None]


class ServerHandle(Protocol):
    loop: asyncio.AbstractEventLoop
    logger: Logger
    config: ServerConfig
    accounts: dict[str, Account]

    @property
    def server_name(self) -> str: ...

    def lookup_account(self, name: str) -> Account: ...

    def subscribe_internal(
        self, account: Account, subject: bytes, callback: Any, queue: bytes | None = None, *, routed: bool = True
    ) -> Subscription: ...

    def unsubscribe_internal(self, account: Account, sub: Subscription) -> None: ...

    def send_internal(self, account: Account, subject: bytes, reply: bytes, hdr: bytes, data: bytes) -> int: ...

    def send_internal_as(
        self, account: Account, subject: bytes, shown: bytes, reply: bytes, hdr: bytes, data: bytes
    ) -> int: ...

    def send_internal_many(
        self, account: Account, messages: list[tuple[bytes, bytes]], flush: bool = False
    ) -> None: ...


__all__ = ["InternalCallback", "ServerHandle"]
