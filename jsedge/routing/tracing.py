"""Message tracing (nats-server 2.11): a publish carrying `Nats-Trace-Dest: <subject>` makes the
server publish, to that subject in the publisher's account, one JSON event describing what became
of the message: `{"server", "request": {"header", "msgsize"}, "events": [...]}` with an ingress
event (`in`: the publishing connection), one egress event per delivery (`eg`: the subscribing
connection, its subscription and queue; `kind` 1 for a route to another server) and a JetStream
event (`js`: the stream that took it). With `Nats-Trace-Only: true` (or `1`, `on`) the message is
traced but not delivered (a trace-only message without a destination is an ordinary publish, as
nats-server 2.15.1 treats it). An invalid destination is logged and the message handled as if untraced (or dropped, when
trace-only); a destination the publisher may not publish to is a publish permissions violation.

Across a cluster (and leaf links) each server traces its own part: the message goes to each
route with a `Nats-Trace-Hop` header naming that hop (`1`, `2`... and `1.1` for a hop of a hop),
its egress event carries the same `hop`, the origin's event counts them (`hops`), and the server
at the other end publishes its event (ingress `kind` 1 from the route) to the same destination.
A trace-only message still crosses, to be traced (not delivered) there too.

Only messages whose headers mention `Nats-Trace-` come here (the parsers divert them from the
fast path, routed ones included), so untraced traffic pays nothing. Not traced yet: account imports.

Layer 2: imports routing siblings, gojson and the subject rules.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from jsedge import gojson
from jsedge.routing import sublist as _sublist
from jsedge.subjects import valid_literal_subject

TRACE_DEST = b"Nats-Trace-Dest"
TRACE_ONLY = b"Nats-Trace-Only"
TRACE_HOP = b"Nats-Trace-Hop"
#: what a server writes over `Nats-Trace-Dest` to switch tracing off for the hops after it
TRACE_DISABLED = b"trace disabled"
#: connection kinds as trace events show them (nats-server's numbers, not the sublist's)
KIND_CLIENT = 0
KIND_ROUTER = 1
KIND_LEAF = 4
KIND_JETSTREAM = 5


def _wire_kind(kind: int) -> int:
    """The trace event's `kind` of a connection of sublist kind `kind`."""
    if kind == _sublist.KIND_ROUTER:
        return KIND_ROUTER
    if kind == _sublist.KIND_LEAF:
        return KIND_LEAF
    return KIND_CLIENT


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


def trace_publish(client: Any, subject: bytes, mapped: bytes, reply: bytes, hdr_len: int, msg: bytes) -> bool:
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
    hops = _deliver_traced(client, client.sublist, mapped, reply, hdr_len, msg, only, "", None, events)
    _publish_event(client.server, client.account, dest, headers, len(msg), hops, events)
    return True


def trace_routed(
    link: Any, sublist: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes, queues: list[bytes] | None
) -> bool:
    """A message from a route or leaf link whose headers mention tracing: this server's part of
    the trace (its ingress from the link, its deliveries, its own hops further on). False when
    it is not traced after all (the caller delivers it as usual)."""
    headers, found = header_map(msg[:hdr_len])
    if not found:
        return False
    server = link.server
    account = server.accounts.get(sublist.account.decode("utf-8", "replace")) if sublist.account else None
    if account is None:
        account = getattr(link, "account", None)
    if account is None:
        return False
    only = headers.get(TRACE_ONLY.decode(), [""])[0].lower() in ("1", "true", "on")
    dest = headers[TRACE_DEST.decode()][0].encode()
    if not valid_literal_subject(dest):
        link.log_error(f'Destination "{dest.decode(errors="replace")}" is not valid, won\'t be able to trace events')
        return only
    hop = headers.get(TRACE_HOP.decode(), [""])[0]
    ingress: dict[str, Any] = {"type": "in", "ts": _timestamp(), "kind": _wire_kind(link.kind), "cid": link.cid}
    name = getattr(link, "remote_name", "")
    if name:
        ingress["name"] = name
    ingress["acc"] = account.name
    ingress["subj"] = subject.decode("utf-8", "replace")
    events: list[dict[str, Any]] = [ingress]
    hops = _deliver_traced(link, sublist, subject, reply, hdr_len, msg, only, hop, queues, events)
    _publish_event(server, account, dest, headers, len(msg), hops, events)
    return True


def _publish_event(
    server: Any, account: Any, dest: bytes, headers: dict[str, list[str]], size: int, hops: int, events: list[Any]
) -> None:
    info = server.events.server_info() if getattr(server, "events", None) is not None else _server_info(server)
    document: dict[str, Any] = {"server": info, "request": {"header": headers, "msgsize": size}}
    if hops:
        document["hops"] = hops
    document["events"] = events
    server.send_internal(account, dest, b"", b"", gojson.dumpb(document))


def _deliver_traced(
    src: Any,
    sublist: Any,
    subject: bytes,
    reply: bytes,
    hdr_len: int,
    msg: bytes,
    only: bool,
    hop: str,
    queues: list[bytes] | None,
    events: list[dict[str, Any]],
) -> int:
    """Deliver a traced message as `deliver_as` would (unless trace-only: then only the events),
    each link getting its own copy with its `Nats-Trace-Hop`; the events go into `events`.
    Returns the number of hops. Uses the pure-Python twin's per-subscription helpers, which
    work on either twin's objects (their fields are public): tracing is never a hot path."""
    from jsedge.routing import _sublist_py as twin

    src_kind = getattr(src, "kind", _sublist.KIND_CLIENT)
    from_route = src_kind == _sublist.KIND_ROUTER
    from_link = from_route or src_kind == _sublist.KIND_LEAF
    streams: list[dict[str, Any]] = []
    links: list[list[Any]] = []  # [link, queue names] in first-seen order

    def link_target(link: Any, queue: bytes | None) -> None:
        for entry in links:
            if entry[0] is link:
                if queue is not None:
                    entry[1].append(queue)
                return
        links.append([link, [queue] if queue is not None else []])

    delivered = 0
    result = sublist.match(subject)
    for sub in result.psubs:
        target = sub.client
        if target is not None and target.kind != _sublist.KIND_CLIENT:
            if not sub.closed and twin._link_ok(src, target, from_route, subject):
                link_target(target, None)
            continue
        _egress(src, sub, subject, events, streams)
        if not only and twin._deliver_one(src, sub, subject, subject, reply, hdr_len, msg):
            delivered += 1
    for group in result.qsubs:
        if from_link and (not queues or group[0].queue not in queues):
            continue
        members = [sub for sub in group if not sub.closed]
        start = random.randrange(len(members)) if members else 0
        for offset in range(len(members)):
            sub = members[(start + offset) % len(members)]
            target = sub.client
            if target is not None and target.kind != _sublist.KIND_CLIENT:
                if not twin._link_ok(src, target, from_route, subject):
                    continue
                link_target(target, sub.queue)
                break
            _egress(src, sub, subject, events, streams)
            if only:
                break
            if twin._deliver_one(src, sub, subject, subject, reply, hdr_len, msg):
                delivered += 1
                break
    hops = 0
    for link, names in links:
        hops += 1
        label = f"{hop}.{hops}" if hop else str(hops)
        event: dict[str, Any] = {"type": "eg", "ts": _timestamp(), "kind": _wire_kind(link.kind), "cid": link.cid}
        name = getattr(link, "remote_name", "")
        if name:
            event["name"] = name
        event["hop"] = label
        events.append(event)
        copy, copy_hdr = set_header(msg, hdr_len, TRACE_HOP, label.encode())
        account = sublist.account if link.kind == _sublist.KIND_ROUTER else None
        twin._frame_routed(src, link, account, subject, reply, names, copy_hdr, copy)
    events.extend(streams)
    if not only and not delivered and not links and reply and getattr(src, "no_responders", False):
        src.on_no_responders(subject, reply)
    return hops


def set_header(msg: bytes, hdr_len: int, name: bytes, value: bytes) -> tuple[bytes, int]:
    """`msg` with header `name` set to `value` (an earlier one of that name dropped, the new one
    last, as nats-server's setHeader writes it); returns the message and its header length."""
    if hdr_len > 4:
        lines = msg[: hdr_len - 2].split(b"\r\n")[:-1]
        prefix = name.lower() + b":"
        kept = [lines[0]] + [line for line in lines[1:] if not line.lower().startswith(prefix)]
    else:
        kept = [b"NATS/1.0"]
    head = b"\r\n".join(kept) + b"\r\n" + name + b": " + value + b"\r\n\r\n"
    return head + msg[max(hdr_len, 0) :], len(head)


def _egress(client: Any, sub: Any, subject: bytes, events: list[dict[str, Any]], streams: list[dict[str, Any]]) -> None:
    """The event of one delivery on this server: a stream's (`js`, kept for the end) or a client's."""
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
    event: dict[str, Any] = {"type": "eg", "ts": _timestamp(), "kind": KIND_CLIENT, "cid": target.cid}
    opts = getattr(target, "opts", None)
    name = opts.get("name", "") if isinstance(opts, dict) else ""
    if name:
        event["name"] = name
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
