"""Message tracing (nats-server 2.11): a publish carrying `Nats-Trace-Dest: <subject>` makes the
server publish, to that subject in the publisher's account, one JSON event describing what became
of the message: `{"server", "request": {"header", "msgsize"}, "events": [...]}` with an ingress
event (`in`: the publishing connection), one egress event per delivery (`eg`: the subscribing
connection, its subscription and queue; `kind` 1 for a route to another server) and a JetStream
event (`js`: the stream that took it). With `Nats-Trace-Only: true` (or `1`, `on`) the message is
traced but not delivered (a trace-only message without a destination is an ordinary publish, as
nats-server 2.15.1 treats it). An invalid destination is logged and the message handled as if untraced (or dropped, when
trace-only); a destination the publisher may not publish to is a publish permissions violation.

Only HPUB messages whose headers mention `Nats-Trace-` come here (the parsers divert them from
the fast path), so untraced traffic pays nothing. Not traced yet: hops across routes (the remote
server traces its part itself when it is a nats-server) and account imports.

Layer 2: imports routing siblings, gojson and the subject rules.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from jsedge import gojson
from jsedge.subjects import valid_literal_subject

TRACE_DEST = b"Nats-Trace-Dest"
TRACE_ONLY = b"Nats-Trace-Only"
#: what a server writes over `Nats-Trace-Dest` to switch tracing off for the hops after it
TRACE_DISABLED = b"trace disabled"
KIND_CLIENT = 0
KIND_ROUTER = 1
KIND_LEAF = 4
KIND_JETSTREAM = 5


def _timestamp() -> str:
    ns = time.time_ns()
    text = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = ns % 1_000_000_000
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def header_map(hdr: bytes) -> tuple[dict[str, list[str]], bool]:
    """Every header of the block (names as written, values in order) and whether it names a
    trace destination (nats-server's genHeaderMapIfTraceHeadersPresent)."""
    headers: dict[str, list[str]] = {}
    found = False
    for line in hdr.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        value = value.strip(b" \t")
        if not name or not value:
            continue
        if name == TRACE_DEST and not found:
            if value == TRACE_DISABLED:
                return {}, False
            found = True
        headers.setdefault(name.decode("utf-8", "replace"), []).append(value.decode("utf-8", "replace"))
    return headers, found


def trace_publish(
    client: Any, subject: bytes, mapped: bytes, reply: bytes, hdr_len: int, msg: bytes, deliver: Any
) -> bool:
    """Handle a publish whose headers mention tracing (`mapped`: its subject after the account's
    subject mappings). True when it is done with (traced, and delivered unless trace-only; or
    dropped); False when it is an ordinary publish after all."""
    headers, found = header_map(msg[:hdr_len])
    if not found:
        return False  # (nats-server 2.15.1 delivers a trace-only message that names no destination)
    only = headers.get(TRACE_ONLY.decode(), [""])[0].lower() in ("1", "true", "on")
    dest = headers[TRACE_DEST.decode()][0].encode()
    if not valid_literal_subject(dest):
        client.log_error(f'Destination "{dest.decode(errors="replace")}" is not valid, won\'t be able to trace events')
        return only
    perms = client.perms
    if perms is not None and perms.restricts_publish and not perms.can_publish(dest):
        client.publish_violation(dest)
        return True
    name = client.opts.get("name", "") if isinstance(getattr(client, "opts", None), dict) else ""
    ingress: dict[str, Any] = {"type": "in", "ts": _timestamp(), "kind": KIND_CLIENT, "cid": client.cid}
    if name:
        ingress["name"] = name
    ingress["acc"] = client.account.name
    ingress["subj"] = subject.decode("utf-8", "replace")
    events: list[dict[str, Any]] = [ingress]
    if mapped != subject:
        events.append({"type": "sm", "ts": _timestamp(), "to": mapped.decode("utf-8", "replace")})
    streams: list[dict[str, Any]] = []
    result = client.sublist.match(mapped)
    for sub in result.psubs:
        _egress(client, sub, mapped, events, streams)
    for group in result.qsubs:
        members = [sub for sub in group if not sub.closed]
        if members:
            _egress(client, random.choice(members), mapped, events, streams)
    if not only:
        deliver(client, mapped, reply, hdr_len, msg)
    events.extend(streams)
    server = client.server
    info = server.events.server_info() if getattr(server, "events", None) is not None else _server_info(server)
    document = {"server": info, "request": {"header": headers, "msgsize": len(msg)}, "events": events}
    server.send_internal(client.account, dest, b"", b"", gojson.dumpb(document))
    return True


def _egress(client: Any, sub: Any, subject: bytes, events: list[dict[str, Any]], streams: list[dict[str, Any]]) -> None:
    owner = getattr(sub.internal, "__self__", None) if sub.internal is not None else None
    stream = getattr(owner, "trace_stream", None)
    if stream is not None:
        streams.append(
            {"type": "js", "ts": _timestamp(), "stream": stream, "subject": subject.decode("utf-8", "replace")}
        )
        return
    target = sub.client
    if target is None or sub.internal is not None:
        return  # the server's own subscriptions are not egress (nats-server traces none of them)
    if target is client and not getattr(client, "echo", True):
        return
    kind = getattr(target, "kind", KIND_CLIENT)
    event: dict[str, Any] = {"type": "eg", "ts": _timestamp(), "kind": KIND_ROUTER if kind == 1 else kind}
    event["cid"] = target.cid
    opts = getattr(target, "opts", None)
    name = opts.get("name", "") if isinstance(opts, dict) else ""
    if kind == 1:
        name = getattr(target, "remote_name", "") or name
    if name:
        event["name"] = name
    if kind == KIND_CLIENT:
        event["sub"] = sub.subject.decode("utf-8", "replace")
        if sub.queue:
            event["queue"] = sub.queue.decode("utf-8", "replace")
    events.append(event)


def _server_info(server: Any) -> dict[str, Any]:
    return {
        "name": server.server_name,
        "host": server.config.listen.host or "0.0.0.0",
        "id": server.server_id,
        "jetstream": server.jetstream is not None,
        "time": _timestamp(),
    }
