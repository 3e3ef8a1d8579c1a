"""Pull requests (layer 4): the `CONSUMER.MSG.NEXT` body, the status messages of consumers.md §7,
and the waiting queue of a pull consumer (which request gets the next message, expiry, heartbeats).

A body is empty (batch 1), a decimal integer (batch N; anything unparsable is batch 1, as in
nats-server), or JSON whose unknown fields are ignored and whose type errors become
`400 Bad Request - json: cannot unmarshal … Go struct field .<name> of type …`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_FIELDS = {
    "batch": ("int", -(1 << 63), (1 << 63) - 1),
    "expires": ("time.Duration", -(1 << 63), (1 << 63) - 1),
    "max_bytes": ("int", -(1 << 63), (1 << 63) - 1),
    "no_wait": ("bool", 0, 0),
    "idle_heartbeat": ("time.Duration", -(1 << 63), (1 << 63) - 1),
    "group": ("string", 0, 0),
    "min_pending": ("int64", -(1 << 63), (1 << 63) - 1),
    "min_ack_pending": ("int64", -(1 << 63), (1 << 63) - 1),
    "id": ("string", 0, 0),
    "priority": ("int", -(1 << 63), (1 << 63) - 1),
}


#: The priority of a request that names none (nats-server's math.MaxInt32).
PRIORITY_LAST = (1 << 31) - 1


def status(code: int, text: str) -> bytes:
    return f"NATS/1.0 {code} {text}\r\n\r\n".encode()


class PullRequest:
    __slots__ = (
        "reply",
        "n",
        "b",
        "no_wait",
        "expires",
        "ttl",
        "hb",
        "hb_next",
        "d",
        "received",
        "group",
        "grouped",
        "min_pending",
        "min_ack_pending",
        "priority",
        "pin_id",
    )

    def __init__(self, reply: bytes, batch: int, max_bytes: int, no_wait: bool, ttl: int, hb: int, now: int) -> None:
        self.reply = reply
        self.n = batch
        self.b = max_bytes
        self.no_wait = no_wait
        self.ttl = ttl
        self.expires = now + ttl if ttl > 0 else 0
        self.hb = hb
        self.hb_next = now + hb if hb > 0 else 0
        self.d = 0
        self.received = now
        self.group = ""
        #: a JSON request: it carries priority-group fields (nats-server's non-nil PriorityGroup)
        self.grouped = False
        self.min_pending = 0
        self.min_ack_pending = 0
        #: a request without priority-group fields comes after every prioritized one
        self.priority = PRIORITY_LAST
        self.pin_id = ""

    def pending_status(self, status: bytes) -> bytes:
        """A status that ends this request, with what it still wanted (`408 Request Timeout`...)."""
        return b"NATS/1.0 %s\r\nNats-Pending-Messages: %d\r\nNats-Pending-Bytes: %d\r\n\r\n" % (
            status,
            self.n,
            self.b,
        )

    def timeout_status(self) -> bytes:
        return self.pending_status(b"408 Request Timeout")


# ------------------------------------------------------------------------------------------------
# the waiting queue of a pull consumer (nats-server's waitQueue): requests in arrival order, a
# request with batch left goes to the back after each delivery (round robin between requesters)

SendStatus = Callable[[bytes, bytes], None]


def take_next(
    waiting: list[PullRequest],
    size: int,
    now: int,
    has_interest: Callable[[bytes], bool],
    send_status: SendStatus,
    policy: str = "",
    overflowing: Callable[[PullRequest], bool] | None = None,
    pinned: str | None = None,
) -> PullRequest | None:
    """The request that gets the next message of `size` bytes (its batch and byte budget counted
    down), dropping expired requests (408), requests whose requester is gone, and requests the
    message does not fit (409 Message Size Exceeds MaxBytes). An `overflow` consumer passes over
    a request whose `min_pending`/`min_ack_pending` the consumer does not reach (`overflowing`);
    a `prioritized` one puts a served request back behind the others of its priority. A
    `pinned_client` one (`pinned`: the current pin id, "" when nobody is pinned) serves the pinned
    request only: one without an id waits, one with another id ends with 423; with nobody pinned,
    the first request without an id is served (the caller pins it)."""
    cycled = 0
    while waiting:
        request = waiting[0]
        passed_over = False
        if pinned is not None and (not request.expires or now < request.expires):
            if request.pin_id != pinned:
                if request.pin_id:
                    send_status(request.reply, request.pending_status(b"423 Nats-Wrong-Pin-Id"))
                    waiting.pop(0)
                    continue
                passed_over = bool(pinned)
        elif policy == "overflow" and overflowing is not None:
            thresholds = request.min_pending > 0 or request.min_ack_pending > 0
            passed_over = thresholds and not overflowing(request)
        if passed_over:  # it waits behind the others
            waiting.append(waiting.pop(0))
            cycled += 1
            if cycled >= len(waiting):
                return None
            continue
        if request.b > 0:
            if size <= request.b:
                request.b -= size
                if request.b == 0:
                    request.n = 1
            else:
                send_status(request.reply, request.pending_status(b"409 Message Size Exceeds MaxBytes"))
                waiting.pop(0)
                continue
        if request.expires and now >= request.expires:
            send_status(request.reply, request.timeout_status())
            waiting.pop(0)
            continue
        if not has_interest(request.reply):
            waiting.pop(0)
            continue
        request.d += 1
        request.n -= 1
        request.hb_next = now + request.hb if request.hb else 0
        waiting.pop(0)
        if request.n > 0:
            if policy == "prioritized":
                add_prioritized(waiting, request)
            else:
                waiting.append(request)
        return request
    return None


def end_of_stream(waiting: list[PullRequest], send_status: SendStatus) -> list[PullRequest]:
    """Nothing more to deliver: no-wait requests that got something (or never wait) end with 404."""
    kept = []
    for request in waiting:
        if request.no_wait and (request.d > 0 or not request.expires):
            send_status(request.reply, b"NATS/1.0 404 No Messages\r\n\r\n")
        else:
            kept.append(request)
    return kept


def expire_waiting(
    waiting: list[PullRequest],
    now: int,
    has_interest: Callable[[bytes], bool],
    send_status: SendStatus,
    heartbeat: Callable[[], bytes],
) -> list[PullRequest]:
    """Expire requests (408), drop those whose requester is gone, send due idle heartbeats."""
    kept = []
    for request in waiting:
        if request.expires and now >= request.expires:
            send_status(request.reply, request.timeout_status())
            continue
        if not has_interest(request.reply):
            continue
        if request.hb and now >= request.hb_next:
            send_status(request.reply, heartbeat())
            request.hb_next = now + request.hb
        kept.append(request)
    return kept


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def parse_pull_request(body: bytes, reply: bytes, now: int) -> PullRequest:
    """Raises ValueError with the text that follows `Bad Request - `."""
    text = body.strip()
    if not text:
        return PullRequest(reply, 1, 0, False, 0, 0, now)
    if text[:1] != b"{":
        try:
            batch = int(text)
        except ValueError:
            batch = 1
        return PullRequest(reply, batch if batch > 0 else 1, 0, False, 0, 0, now)
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid character in JSON: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in document.items():
        name = key.lower()
        spec = _FIELDS.get(name)
        if spec is None or value is None:
            continue
        go_type, lo, hi = spec
        kind = _kind(value)
        if go_type == "bool":
            ok = kind == "bool"
        elif go_type == "string":
            ok = kind == "string"
        else:
            ok = kind == "number" and isinstance(value, int) and lo <= value <= hi
        if not ok:
            shown = kind if kind != "number" else f"number {json.dumps(value)}"
            raise ValueError(f"json: cannot unmarshal {shown} into Go struct field .{name} of type {go_type}")
        values[name] = value
    batch = values.get("batch", 0)
    expires = max(values.get("expires", 0), 0)
    hb = max(values.get("idle_heartbeat", 0), 0)
    if hb > 0 and hb * 2 > expires:
        raise ValueError("heartbeat value too large")
    request = PullRequest(
        reply,
        batch if batch > 0 else 1,
        max(values.get("max_bytes", 0), 0),
        bool(values.get("no_wait")),
        expires,
        hb,
        now,
    )
    request.group = values.get("group", "")
    request.grouped = True
    request.min_pending = values.get("min_pending", 0)
    request.min_ack_pending = values.get("min_ack_pending", 0)
    request.priority = values.get("priority", 0)
    request.pin_id = values.get("id", "")
    return request


def priority_error(request: PullRequest, policy: str, groups: list[str]) -> str:
    """What nats-server answers (400 `Bad Request - ...`) to a request's priority-group fields on
    a consumer with `policy`; "" when they are fine."""
    if not request.grouped:
        return ""
    if (request.min_pending or request.min_ack_pending) and policy != "overflow":
        return "Not a Overflow Priority consumer"
    if request.pin_id and policy != "pinned_client":
        return "Not a Pinned Client Priority consumer"
    if request.priority < 0 or request.priority > 9:
        return "Priority must be between 0 and 9"
    if policy not in ("", "none"):
        if not request.group:
            return "Priority Group missing"
        if request.group not in groups:
            return "Invalid Priority Group"
    return ""


def add_prioritized(waiting: list[PullRequest], request: PullRequest) -> None:
    """A `prioritized` consumer's queue: by priority (0 first), arrival order within one."""
    index = len(waiting)
    while index > 0 and waiting[index - 1].priority > request.priority:
        index -= 1
    waiting.insert(index, request)
