"""Pull requests (layer 4): the `CONSUMER.MSG.NEXT` body and the status messages of consumers.md §7.

A body is empty (batch 1), a decimal integer (batch N; anything unparsable is batch 1, as in
nats-server), or JSON whose unknown fields are ignored and whose type errors become
`400 Bad Request - json: cannot unmarshal … Go struct field .<name> of type …`.
"""

from __future__ import annotations

import json
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


def status(code: int, text: str) -> bytes:
    return f"NATS/1.0 {code} {text}\r\n\r\n".encode()


class PullRequest:
    __slots__ = ("reply", "n", "b", "no_wait", "expires", "ttl", "hb", "hb_next", "d", "received", "group")

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

    def timeout_status(self) -> bytes:
        return b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: %d\r\nNats-Pending-Bytes: %d\r\n\r\n" % (
            self.n,
            self.b,
        )


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
    return request
