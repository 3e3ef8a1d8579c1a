"""Type stub of the compiled sublist twin; the reference is jsedge/routing/_sublist_py.py."""

from collections.abc import Callable, Iterator
from typing import Any

CACHE_MAX: int
CACHE_SWEEP_TO: int
KIND_CLIENT: int
KIND_ROUTER: int
KIND_LEAF: int

class ClientCore:
    outbuf: bytearray
    flush_scheduled: bool
    pending: list[ClientCore]
    sublist: Sublist | None
    headers: bool
    echo: bool
    no_responders: bool
    fast_pub: bool
    track_replies: bool
    deny_filter: Callable[[bytes, bytes | None], bool] | None
    kind: int
    routed_sublists: dict[bytes, Sublist] | None
    closed: bool
    max_payload: int
    max_pending: int
    in_msgs: int
    in_bytes: int
    out_msgs: int
    out_bytes: int
    spoke: bool
    def __init__(self) -> None: ...
    def flush(self) -> None: ...
    def on_slow_consumer(self) -> None: ...
    def on_auto_unsub(self, sub: Subscription) -> None: ...
    def on_no_responders(self, subject: bytes, reply: bytes) -> None: ...
    def on_reply_delivered(self, reply: bytes) -> None: ...

class Subscription:
    client: ClientCore | None
    subject: bytes
    queue: bytes | None
    sid: bytes
    max_msgs: int
    delivered: int
    internal: Callable[..., Any] | None
    closed: bool
    weight: int
    matched: bytes
    def __init__(
        self,
        client: ClientCore | None,
        subject: bytes,
        sid: bytes,
        queue: bytes | None = None,
        max_msgs: int = 0,
        internal: Callable[..., Any] | None = None,
    ) -> None: ...

class SublistResult:
    psubs: list[Subscription]
    qsubs: list[list[Subscription]]
    def __init__(
        self, psubs: list[Subscription] | None = None, qsubs: list[list[Subscription]] | None = None
    ) -> None: ...

class Sublist:
    account: bytes
    def __init__(self, cache: bool = True) -> None: ...
    @property
    def count(self) -> int: ...
    def __len__(self) -> int: ...
    def insert(self, sub: Subscription) -> None: ...
    def remove(self, sub: Subscription) -> bool: ...
    def match(self, subject: bytes) -> SublistResult: ...
    def has_interest(self, subject: bytes) -> bool: ...
    def subscriptions(self) -> Iterator[Subscription]: ...
    def clear_cache(self) -> None: ...
    def statistics(self) -> dict[str, int | float]: ...

def deliver(src: ClientCore, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> int: ...
def deliver_to(
    sublist: Sublist | None, src: ClientCore | None, subject: bytes, reply: bytes, hdr_len: int, msg: bytes
) -> int: ...
def deliver_as(
    sublist: Sublist | None,
    src: ClientCore | None,
    subject: bytes,
    shown: bytes,
    reply: bytes,
    hdr_len: int,
    msg: bytes,
    queues: list[bytes] | None = None,
) -> int: ...
def flush_pending(pending: list[ClientCore]) -> None: ...
def _seed(seed: int | None = None) -> None: ...
