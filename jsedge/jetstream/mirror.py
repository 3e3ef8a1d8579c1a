"""Mirrors and sources (spec/streams.md §15, ADR-59), single server, same account.

nats-server copies through internal consumers; jsedge copies straight from the origin stream's store
(the origin is a `Stream` of the same account) and reproduces the observable results:

* **mirror** — every origin message (optionally from `opt_start_seq` / `opt_start_time`, optionally
  filtered / transformed) is stored under the **origin's sequence number and timestamp**, with its
  headers minus `Nats-Expected-*` (nats-server drops those from copies too, verified):
  gaps in the origin become gaps (skipped sequences) in the mirror; an empty mirror is moved to the
  first copied sequence. No dedup, no `Nats-Stream-Source` header. The mirror's own `last_seq` is its
  cursor, so it survives restarts by construction. A re-created origin whose sequences restart below
  the mirror's `last_seq` is copied from `last_seq + 1` on (the mirror's history is kept).
* **sources** — each origin message matching the source's filter/transforms goes through the normal
  publish path (`Stream._check_and_store(..., sourced=True)`: dedup, limits, TTL rules) as a new
  message with a `Nats-Stream-Source: <name> <origin seq> <filter> <dest> <origin subject> <id>` header
  (an existing one is replaced). `<id>` is nats-server's 8-char identity of the origin (base62 of the
  sha256 of its creation time); when it changes (origin deleted and re-created) the source starts
  over from the new origin's beginning.
* **cursors** (sources) are kept per source in the store's metadata (`save_meta`, JSON, written
  shortly after changes and at stop) together with the destination's `last_seq` at that moment; on
  recovery the destination's messages newer than that are scanned for `Nats-Stream-Source` headers,
  so a crash between two metadata writes neither duplicates nor loses messages.
* copying is triggered by the origin's `stored_listeners` (a new message) and by a 0.5 s retry tick
  (origin created later, re-created, or back after an error); each run copies at most `BATCH`
  messages per source before yielding to the event loop.
* `external` origins (`external.api` = another JetStream domain's `$JS.<domain>.API`, reached over
  a leaf node link) are read through a feed, as a cluster reads (below), on one server too: the
  consumer is created on the other side with that API prefix and delivers across the link; a link
  that is down stalls the feed, which is created again from the cursor (durable: the copying goes
  on after reconnects and restarts, each origin message once). Another account's API is reached
  the same way through the account's imports (`external.api` its imported prefix, `external.deliver`
  the prefix of a deliver subject it imports as a stream). The origin's identity comes with the
  consumer create answer (`Nats-Stream-Identity`), as from nats-server.
* `mirror_direct`: the mirror also answers `$JS.API.DIRECT.GET.<origin>` (queue `_sys_`).
* **durable sourcing** (ADR-60, 2.14): a work-queue or interest origin is read through a feed on one
  server too, since its messages may only go once the copy is stored: the consumer asked for is
  `sourcing` under a stable name (`JS_MIRROR_<hash>` / `JS_SRC_<hash>`), which such an origin makes
  a durable acknowledged by the replies to its flow control (`Nats-Last-Stream` /
  `Nats-Last-Consumer`, sent once what they cover is durable here). A durable the user made
  (`consumer: {name, deliver_subject}` in the source) is reset instead of created and must have
  the `flow_control` ack policy (10214/10217). A server-made durable is deleted with its source.

Layer 4 (jetstream): imported lazily by manager.py (`JetStream.mirror_module()`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from typing import Any

from jsedge.errors import JS_ERRORS_BY_CODE, JSError, js_error
from jsedge.jetstream import headers as H
from jsedge.jetstream.commands import PurgeMsgs, SkipMsg, StoreMsg
from jsedge.jetstream.host import ServerHandle
from jsedge.jetstream.models import StreamConfig, StreamSource, encode, format_time_ns
from jsedge.store.base import DiscardNewError
from jsedge.subjects import subject_matches, subjects_overlap
from jsedge.transform import SubjectTransform

RETRY_INTERVAL = 0.5  # seconds between retries / origin look-ups
BATCH = 512  # messages per source per loop turn
SAVE_DELAY = 0.2  # seconds: cursor metadata is written this long after a change
FWC = ">"
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Errors that mean "try again later" (the message is not skipped).
_RETRY_CODES = {10023, 10028, 10047, 10077}
#: The internal consumer of a clustered mirror/source (nats-server's sourceHealthHB and
#: sourceHealthCheckInterval): heartbeat, how long without contact before it is re-created, and
#: how long the origin keeps a consumer nobody listens to.
FEED_HEARTBEAT = 1.0
FEED_STALL = 3.0
FEED_INACTIVE = 10.0
FEED_CREATE_TIMEOUT = 5.0
#: Copies in flight (proposed, not yet applied) per mirror/source on a replicated stream.
COPY_WINDOW = 1024


def hash8(text: str) -> str:
    """nats-server's getHashSize(text, 8): sha256, first 8 bytes mapped onto base62 digits."""
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_DIGITS[b % 62] for b in digest[:8])


def stream_identity(created_ns: int) -> str:
    """The 8-char identity nats-server 2.15 appends to `Nats-Stream-Source` (hash of the creation time)."""
    return hash8(format_time_ns(created_ns))


def compose_iname(source: StreamSource) -> str:
    """`<name>[:<hash(api)>][:C=<hash(consumer)>] <filter> <dest>`: the source's identity (and the
    header minus seq/subject)."""
    name = source.name
    if source.external is not None:
        name += ":" + hash8(source.external.api)
    if source.consumer is not None:
        name += ":C=" + hash8(source.consumer.name)
    if not source.subject_transforms:
        src, dest = source.filter_subject or FWC, FWC
    else:
        src = "\f".join(t.src or FWC for t in source.subject_transforms)
        dest = "\f".join(t.dest or FWC for t in source.subject_transforms)
    return f"{name} {src} {dest}"


def _over_leaf(source: StreamSource) -> bool:
    """An external origin reached through an API prefix: another JetStream domain's
    (`$JS.<domain>.API`, over a leaf node link) or another account's (a service import of its
    `$JS.API.>`, with its deliver subject imported as a stream)."""
    external = source.external
    return external is not None and bool(external.api)


def _local(source: StreamSource, domain: str) -> bool:
    if source.external is None:
        return True
    api = source.external.api
    return api == "$JS.API" or (bool(domain) and api == f"$JS.{domain}.API")


# ------------------------------------------------------------------------------------------------
# create/update checks (called by manager.py)


def check_origins(jsa: Any, config: StreamConfig) -> None:
    """Checks that need the other streams: max_msg_size (10030/10046), mirror_direct, cycles."""
    streams = jsa.streams
    domain = jsa.domain
    mirror = config.mirror
    if mirror is not None and _local(mirror, domain):
        origin = streams.get(mirror.name)
        if origin is not None:
            limit = origin.config.max_msg_size
            if limit > 0 and 0 < config.max_msg_size < limit:
                raise js_error("JSMirrorMaxMessageSizeTooBigErr")
            config.mirror_direct = bool(origin.config.allow_direct)
    for source in config.sources or []:
        if not _local(source, domain):
            continue
        origin = streams.get(source.name)
        if origin is not None:
            limit = origin.config.max_msg_size
            if limit > 0 and 0 < config.max_msg_size < limit:
                raise js_error("JSSourceMaxMessageSizeTooBigErr")
    # cycles, by nats-server's rule: walking the sources and mirrors from the new config, a source
    # already visited is a cycle only when its filter overlaps the subjects of the stream that
    # sources it (no filter overlaps everything); a mirror already visited always is
    pending: list[StreamConfig] = [config]
    visited: set[str] = set()
    while pending:
        current = pending.pop(0)
        visited.add(current.name)
        for source in current.sources or []:
            if source.external is not None:
                continue
            if source.name in visited:
                if _overlaps(current.subjects or [], source.filter_subject):
                    raise js_error("JSStreamInvalidConfigF", err="detected cycle")
            else:
                other = streams.get(source.name)
                if other is not None:
                    pending.append(other.config)
        mirror = current.mirror
        if mirror is not None and mirror.external is None:
            if mirror.name in visited:
                raise js_error("JSStreamInvalidConfigF", err="detected cycle")
            other = streams.get(mirror.name)
            if other is not None:
                pending.append(other.config)


def _overlaps(subjects: list[str], filter_subject: str) -> bool:
    if not filter_subject:
        return True
    return any(subjects_overlap(subject.encode(), filter_subject.encode()) for subject in subjects)


def attach(stream: Any) -> None:
    """Start (or reconfigure after an update) the copy loops of `stream`."""
    replicator = stream._mirror
    if replicator is None or replicator.stopped:
        replicator = Replicator(stream)
        stream._mirror = replicator
    replicator.configure(stream.config)


# ------------------------------------------------------------------------------------------------


class _Cursor:
    """One mirror or source: where it is in its origin, and what it last saw."""

    def __init__(self, source: StreamSource, mirror: bool, local: bool) -> None:
        self.source = source
        self.mirror = mirror
        self.local = local
        self.iname = compose_iname(source)
        name_token, self.src_token, self.dest_token = self.iname.split(" ", 2)
        self.name_token = name_token
        self.transforms: list[SubjectTransform] = []
        self.filters: list[bytes] = []
        if source.subject_transforms:
            for t in source.subject_transforms:
                self.transforms.append(SubjectTransform(t.src or FWC, t.dest or ""))
                self.filters.append((t.src or FWC).encode())
        elif source.filter_subject:
            self.filters.append(source.filter_subject.encode())
        #: filter handed to the store (one filter, or `>` and a check in Python)
        self.load_filter = self.filters[0] if len(self.filters) == 1 else b">"
        self.seq = 0  # sources: last origin seq copied (0 = none yet)
        self.started = False  # sources: `seq` is meaningful (start position decided)
        self.next = 0  # next origin seq to look at (0 = derive)
        self.identity = ""
        self.last_contact = 0  # time_ns of the last contact with the origin (0 = never)
        self.error: JSError | None = None
        self.origin: Any = None  # the origin Stream we listen to
        # a clustered stream reads through an internal consumer (`_Feed`) and, when replicated,
        # writes through proposals: copies in flight, the last origin seq proposed (mirror), and
        # whether one failed (the feed restarts from the applied state once the rest settled)
        self.feed: _Feed | None = None
        self.inflight = 0
        self.proposed = 0
        self.failed = False
        self.restart_from = 0  # sources: restart the feed here after a retryable failure
        self.retry_at = 0.0

    def map_subject(self, subject: bytes) -> bytes | None:
        """The destination subject, or None when the message is not selected."""
        if self.transforms:
            for transform in self.transforms:
                mapped = transform.apply(subject)
                if mapped is not None:
                    return mapped
            return None
        if self.filters and not subject_matches(self.filters[0], subject):
            return None
        return subject

    def pending(self, store: Any, start: int) -> int:
        if not self.filters:
            return store.num_pending(start, b">")
        return sum(store.num_pending(start, f) for f in self.filters)


class _FeedMsg:
    """One message delivered by a feed: the origin's sequence and timestamp with the message."""

    __slots__ = ("seq", "subject", "hdr", "data", "ts")

    def __init__(self, seq: int, subject: bytes, hdr: bytes, data: bytes, ts: int) -> None:
        self.seq = seq
        self.subject = subject
        self.hdr = hdr
        self.data = data
        self.ts = ts


def _remote_error(document: Any) -> JSError:
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return js_error("JSStreamNotFoundErr")
    entry = JS_ERRORS_BY_CODE.get(int(error.get("err_code") or 0))
    description = str(error.get("description") or "")
    if entry is None:
        from jsedge.errors import JSApiError

        entry = JSApiError(int(error.get("code") or 500), int(error.get("err_code") or 0), description)
    return JSError(entry, description or None)


class _Feed:
    """An origin read through an internal push consumer, the way nats-server's mirrors and sources
    read (`JS_MIRROR_<id>` / `JS_SRC_<id>`): created with `$JS.API.CONSUMER.CREATE` as a `direct`
    consumer (not replicated; the origin's leader runs it), ack none, flow control, 1 s idle
    heartbeats, deleted by the origin 10 s after nobody listens. Works wherever the origin runs
    (another node of the cluster). Messages carry the origin's sequence and time in their
    `$JS.ACK` reply; a consumer sequence that skips, a heartbeat that disagrees or 3 s of silence
    make the replicator start a new feed from where its stream is."""

    def __init__(self, replicator: Replicator, cursor: _Cursor, start_seq: int, start_time: int = 0) -> None:
        from jsedge.jetstream.advisory import random_name

        self.replicator = replicator
        self.cursor = cursor
        self.server = replicator.server
        self.account = replicator.stream.account
        token = random_name(10)
        source = cursor.source
        #: the user's durable (`consumer` in the source): reset, never created or deleted here
        self.user_durable = source.consumer is not None
        if source.consumer is not None:
            self.name = source.consumer.name
            self.deliver = source.consumer.deliver_subject.encode()
        else:
            self.name = replicator.consumer_name(cursor)
            self.deliver = (b"$JS.M." if cursor.mirror else b"$JS.S.") + token.encode()
            deliver_prefix = source.external.deliver if source.external is not None else ""
            if deliver_prefix:
                # another account's origin delivers on a subject it exports to this one
                self.deliver = deliver_prefix.encode() + b"." + self.deliver[4:]
        self._name = self.name.encode()
        self.inbox = b"$JSE.SRC." + token.encode()
        self.buffer: deque[_FeedMsg] = deque()
        self.dseq = 0
        self.sseq = 0  # the last origin sequence delivered
        self.lag = 0
        self.fc_reply = b""
        #: the origin's identity as its consumer create answer gives it (an origin elsewhere)
        self.identity = ""
        self.created = False
        #: the origin made it a durable acked by flow control (or the user did)
        self.durable = self.user_durable
        self.closed = False
        self.contact = time.monotonic()
        self.api = source.external.api if source.external is not None and source.external.api else "$JS.API"
        self.subs = [
            self.server.subscribe_internal(self.account, self.deliver, self._on_message),
            self.server.subscribe_internal(self.account, self.inbox, self._on_created),
        ]
        self.requested = time.monotonic()
        if self.user_durable:
            subject = f"{self.api}.CONSUMER.RESET.{source.name}.{self.name}".encode()
            self.server.send_internal(self.account, subject, self.inbox, b"", b"")
            return
        stream = replicator.stream
        kind = "mirror" if cursor.mirror else "src"
        metadata = {f"_nats.{kind}.stream": stream.name, f"_nats.{kind}.acc": stream.account.name}
        if replicator.host.domain:
            metadata[f"_nats.{kind}.domain"] = replicator.host.domain
        config: dict[str, Any] = {
            "name": self.name,
            "deliver_subject": self.deliver.decode(),
            "ack_policy": "none",
            "ack_wait": 22 * 3600 * 1_000_000_000,
            "max_deliver": 1,
            "idle_heartbeat": int(FEED_HEARTBEAT * 1e9),
            "flow_control": True,
            "direct": True,
            "sourcing": True,
            "inactive_threshold": int(FEED_INACTIVE * 1e9),
            "metadata": metadata,
        }
        if start_time:
            config["deliver_policy"] = "by_start_time"
            config["opt_start_time"] = format_time_ns(start_time)
        elif start_seq > 1:
            config["deliver_policy"] = "by_start_sequence"
            config["opt_start_seq"] = start_seq
        else:
            config["deliver_policy"] = "all"
        filters = [f.decode() for f in cursor.filters]
        if len(filters) == 1 and filters[0] != FWC:
            config["filter_subject"] = filters[0]
        elif len(filters) > 1:
            config["filter_subjects"] = filters
        request = json.dumps({"stream_name": source.name, "config": config}).encode()
        subject = f"{self.api}.CONSUMER.CREATE.{source.name}.{self.name}".encode()
        self.server.send_internal(self.account, subject, self.inbox, b"", request)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sub in self.subs:
            self.server.unsubscribe_internal(self.account, sub)
        self.subs = []
        self.buffer.clear()
        if self.created and not self.durable:
            # the origin would drop it after FEED_INACTIVE anyway: sooner is kinder (a durable
            # stays: it keeps the interest, and what is not acknowledged, until the next feed)
            subject = f"{self.api}.CONSUMER.DELETE.{self.cursor.source.name}.{self.name}".encode()
            self.server.send_internal(self.account, subject, self.inbox + b".gone", b"", b"")

    def stalled(self, now: float) -> bool:
        if self.created:
            return now - self.contact > FEED_STALL
        return now - self.requested > FEED_CREATE_TIMEOUT

    def _on_created(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if self.closed:
            return
        try:
            document = json.loads(msg[hdr_len:] if hdr_len > 0 else msg)
        except ValueError:
            return
        cursor = self.cursor
        if isinstance(document, dict) and document.get("error") is not None:
            cursor.error = _remote_error(document)
            cursor.retry_at = time.monotonic() + RETRY_INTERVAL
            self.close()
            return
        if not isinstance(document, dict):
            return
        config = document.get("config")
        config = config if isinstance(config, dict) else {}
        if self.user_durable and config.get("ack_policy") != "flow_control":
            # a durable feeding a stream must be acknowledged by its flow control (ADR-60)
            code = "JSMirrorConsumerRequiresAckFCErr" if cursor.mirror else "JSSourceConsumerRequiresAckFCErr"
            cursor.error = js_error(code)
            cursor.retry_at = time.monotonic() + RETRY_INTERVAL
            self.close()
            return
        if isinstance(document.get("name"), str) and document["name"]:
            self.name = document["name"]  # a limits origin makes the stable name unique
            self._name = self.name.encode()
        self.durable = self.durable or config.get("ack_policy") == "flow_control"
        if hdr_len > 0:
            from jsedge.jetstream.headers import get_header

            identity = get_header(msg[:hdr_len], b"Nats-Stream-Identity")
            if identity:
                self.identity = identity.decode(errors="replace")
        self.created = True
        self.contact = time.monotonic()
        cursor.error = None
        cursor.last_contact = time.time_ns()

    def _on_message(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if self.closed:
            return
        self.contact = time.monotonic()
        self.cursor.last_contact = time.time_ns()
        if hdr_len > 0:
            hdr, data = msg[:hdr_len], msg[hdr_len:]
        else:
            hdr, data = b"", msg
        if hdr.startswith(b"NATS/1.0 100"):
            if b"FlowControl" in hdr[:40]:
                self.fc_reply = reply
            else:
                last = H.get_header(hdr, b"Nats-Last-Consumer")
                stalled = H.get_header(hdr, b"Nats-Consumer-Stalled")
                if stalled:
                    self.fc_reply = stalled
                if last is not None and last.isdigit() and int(last) != self.dseq:
                    self.replicator._restart(self.cursor)  # missed a message
                    return
            self.replicator._kick()
            return
        tokens = reply.split(b".")
        if len(tokens) == 9:
            name, fields = tokens[3], tokens[4:9]
        elif len(tokens) >= 11:
            name, fields = tokens[5], tokens[6:11]
        else:
            return
        if tokens[0] != b"$JS" or tokens[1] != b"ACK":
            return
        if name != self._name and not (not self.created and name.startswith(self._name + b"-")):
            return  # another consumer's (an earlier feed of the same durable after a reset: gone)
        try:
            sseq, dseq, ts, pending = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4])
        except ValueError:
            return
        if dseq != self.dseq + 1:
            self.replicator._restart(self.cursor)  # a gap in the consumer's sequence
            return
        self.dseq = dseq
        self.sseq = sseq
        self.lag = pending
        self.buffer.append(_FeedMsg(sseq, subject, hdr, data, ts))
        self.replicator._kick()

    def next(self, start: int) -> _FeedMsg | None:
        """The next buffered message at or after origin sequence `start`."""
        buffer = self.buffer
        while buffer:
            msg = buffer.popleft()
            if msg.seq >= start:
                return msg
        return None


class Replicator:
    """The copy loops of one stream (its mirror or its sources). `stream._mirror` points here."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.host = stream.host
        self.server: ServerHandle = stream.server
        self.loop = stream.server.loop
        self.cursors: list[_Cursor] = []
        self.stopped = False
        self._scheduled = False
        self._timer: Any = None
        self._save_handle: Any = None
        self._direct_subs: list[Any] = []
        self._loaded = False
        self._warned_external: set[str] = set()
        #: a clustered stream copies only while it leads (R1: always); None = not decided yet
        self._leading: bool | None = None

    # ------------------------------------------------------------------ configuration

    def configure(self, config: StreamConfig) -> None:
        domain = self.host.domain
        old = {c.iname: c for c in self.cursors}
        cursors: list[_Cursor] = []
        if config.mirror is not None:
            cursor = _Cursor(config.mirror, True, _local(config.mirror, domain))
            previous = old.get(cursor.iname)
            if previous is not None and previous.mirror:
                cursor = previous
            cursors.append(cursor)
        for source in config.sources or []:
            cursor = _Cursor(source, False, _local(source, domain))
            previous = old.get(cursor.iname)
            if previous is not None and not previous.mirror:
                cursor = previous
            cursors.append(cursor)
        for cursor in old.values():
            if cursor not in cursors:
                self._unlisten(cursor)
                self._delete_durable(cursor)  # (while its feed still knows the durable's name)
                self._close_feed(cursor)
        self.cursors = cursors
        for cursor in cursors:
            if not cursor.local and not _over_leaf(cursor.source) and cursor.iname not in self._warned_external:
                self._warned_external.add(cursor.iname)
                self.server.logger.warn(
                    f"JetStream stream '{self.stream.account.name} > {self.stream.name}': external "
                    f"{'mirror' if cursor.mirror else 'source'} '{cursor.source.name}' is not supported by jsedge"
                )
        if not self._loaded:
            self._loaded = True
            self._recover_cursors()
        self._subscribe_direct(config)
        if self._timer is None:
            self._timer = self.loop.call_later(RETRY_INTERVAL, self._tick)
        self._kick()

    def _subscribe_direct(self, config: StreamConfig) -> None:
        for sub in self._direct_subs:
            self.server.unsubscribe_internal(self.stream.account, sub)
        self._direct_subs = []
        if self.stopped or config.mirror is None or not config.mirror_direct:
            return
        prefix = b"$JS.API.DIRECT.GET." + config.mirror.name.encode()
        callback = self.host.direct_get_callback(self.stream)
        routed = self.stream.replicated is not None  # a cluster: every replica, one queue group
        for subject in (prefix, prefix + b".>"):
            self._direct_subs.append(
                self.server.subscribe_internal(self.stream.account, subject, callback, queue=b"_sys_", routed=routed)
            )

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sub in self._direct_subs:
            self.server.unsubscribe_internal(self.stream.account, sub)
        self._direct_subs = []
        for cursor in self.cursors:
            self._unlisten(cursor)
            self._close_feed(cursor)
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
            self._save()

    def forget(self) -> None:
        """The stream is deleted: the durables made for its sources go too (best effort, as
        nats-server's tryDeleteSourcingConsumer; the user's own are left alone)."""
        if self._leading is False:
            return  # a replica that does not lead: its leader does it
        for cursor in self.cursors:
            self._delete_durable(cursor)

    def _delete_durable(self, cursor: _Cursor) -> None:
        source = cursor.source
        if source.consumer is not None or not self._uses_consumer(cursor, durable_only=True):
            return
        feed = cursor.feed
        name = self.consumer_name(cursor)
        if feed is not None and feed.durable:
            name = feed.name
        api = source.external.api if source.external is not None and source.external.api else "$JS.API"
        subject = f"{api}.CONSUMER.DELETE.{source.name}.{name}".encode()
        self.server.send_internal(self.stream.account, subject, b"$JSE.SRC.gone", b"", b"")

    def consumer_name(self, cursor: _Cursor) -> str:
        """nats-server's stable name of the consumer a mirror or source asks for: a hash of the
        stream, its account (and domain); a source whose origin appears twice adds its identity."""
        stream = self.stream
        ident = f"{stream.name} {stream.account.name}"
        if self.host.domain:
            ident += f" {self.host.domain}"
        stable = hash8(ident)
        if cursor.mirror:
            return "JS_MIRROR_" + stable
        name = cursor.source.name
        if sum(1 for s in stream.config.sources or () if s.name == name) > 1:
            stable = f"{stable} {cursor.iname}"
        return "JS_SRC_" + hash8(stable)

    def _uses_consumer(self, cursor: _Cursor, durable_only: bool = False) -> bool:
        """Read through a consumer of the origin although it is on this server: the user's
        durable, or a work-queue/interest origin (its messages go only once acknowledged)."""
        if cursor.source.consumer is not None:
            return True
        origin = self.host.streams.get(cursor.source.name) if cursor.local else None
        if origin is not None:
            return bool(origin.config.retention != "limits")
        feed = cursor.feed
        return durable_only and feed is not None and feed.durable

    # ------------------------------------------------------------------ cursor persistence

    def _recover_cursors(self) -> None:
        sources = [c for c in self.cursors if not c.mirror]
        if not sources:
            return
        by_name = {c.iname: c for c in sources}
        floor = 0
        try:
            raw = self.stream.store.load_meta()
            document = json.loads(raw) if raw else {}
        except (ValueError, OSError):
            document = {}
        saved = document.get("sources") if isinstance(document, dict) else None
        if isinstance(saved, dict):
            floor = int(document.get("dest_last_seq", 0) or 0)
            for iname, entry in saved.items():
                cursor = by_name.get(iname)
                if cursor is not None and isinstance(entry, dict):
                    cursor.seq = int(entry.get("seq", 0))
                    cursor.identity = str(entry.get("id", ""))
                    cursor.started = True
        # messages stored after the last metadata write carry their cursor in the header
        store = self.stream.store
        state = store.state()
        missing = set(by_name)
        seq = state.last_seq
        while seq > floor and seq >= max(state.first_seq, 1) and missing:
            msg = store.load_prev_msg(seq)
            if msg is None or msg.seq <= floor:
                break
            value = H.get_header(msg.hdr, H.STREAM_SOURCE)
            if value is not None:
                parsed = _parse_source_header(value)
                if parsed is not None:
                    iname, origin_seq, identity = parsed
                    cursor = by_name.get(iname)
                    if cursor is not None and iname in missing:
                        missing.discard(iname)
                        if origin_seq > cursor.seq or not cursor.started:
                            cursor.seq = origin_seq
                            cursor.identity = identity or cursor.identity
                        cursor.started = True
            seq = msg.seq - 1

    def _mark_dirty(self) -> None:
        if self._save_handle is None and not self.stopped:
            self._save_handle = self.loop.call_later(SAVE_DELAY, self._save_now)

    def _save_now(self) -> None:
        self._save_handle = None
        self._save()

    def _save(self) -> None:
        if self._group() is not None and any(c.inflight for c in self.cursors):
            # a replicated stream saves only when every proposed copy is applied, so the saved
            # cursors never claim a copy that a leader change could still lose
            self._mark_dirty()
            return
        sources = {c.iname: {"seq": c.seq, "id": c.identity} for c in self.cursors if not c.mirror and c.started}
        if not sources:
            return
        store = self.stream.store
        try:
            raw = store.load_meta()
            document = json.loads(raw) if raw else {}
            if not isinstance(document, dict):
                document = {}
        except (ValueError, OSError):
            document = {}
        document["sources"] = sources
        document["dest_last_seq"] = store.state().last_seq
        try:
            store.save_meta(json.dumps(document).encode())
        except Exception as exc:
            if not self.stopped:
                self.server.logger.warn(f"JetStream could not save source cursors of '{self.stream.name}': {exc}")

    # ------------------------------------------------------------------ scheduling

    def _on_origin_stored(self, seq: int, subject: bytes) -> None:
        self._kick()

    def _kick(self) -> None:
        if not self._scheduled and not self.stopped:
            self._scheduled = True
            self.loop.call_soon(self._run)

    def _tick(self) -> None:
        self._timer = None
        if self.stopped:
            return
        self._run()
        if not self.stopped:
            self._timer = self.loop.call_later(RETRY_INTERVAL, self._tick)

    def _listen(self, cursor: _Cursor, origin: Any) -> None:
        if cursor.origin is origin:
            return
        self._unlisten(cursor)
        listeners = getattr(origin, "stored_listeners", None)
        if listeners is not None and self._on_origin_stored not in listeners:
            listeners.append(self._on_origin_stored)
        cursor.origin = origin

    def _unlisten(self, cursor: _Cursor) -> None:
        origin = cursor.origin
        cursor.origin = None
        if origin is None:
            return
        if any(c.origin is origin for c in self.cursors if c is not cursor):
            return
        listeners = getattr(origin, "stored_listeners", None)
        if listeners is not None:
            try:
                listeners.remove(self._on_origin_stored)
            except ValueError:
                pass

    # ------------------------------------------------------------------ clustered streams

    def _clustered(self) -> bool:
        return self.stream.replicated is not None

    def _group(self) -> Any:
        """The stream's replication when it has a Raft group (R>1), else None (writes are local)."""
        replicated = self.stream.replicated
        return replicated if replicated is not None and replicated.group is not None else None

    def _is_leading(self) -> bool:
        replicated = self.stream.replicated
        if replicated is None:
            return True
        if replicated.group is None:
            return bool(replicated.publishing)
        return bool(replicated.publishing and replicated._caught_up and not replicated.sealed)

    def _follow_leadership(self) -> bool:
        """Start copying when this replica became the leader (cursors recovered from the store, as
        every replica holds the same copies), stop when it no longer is. True while leading."""
        leading = self._is_leading()
        if leading == self._leading:
            return leading
        self._leading = leading
        for cursor in self.cursors:
            self._close_feed(cursor)
        # fresh cursors: callbacks of copies proposed under an earlier leadership find old objects
        self.cursors = [_Cursor(c.source, c.mirror, c.local) for c in self.cursors]
        if leading:
            self._recover_cursors()
        return leading

    def _close_feed(self, cursor: _Cursor) -> None:
        feed = cursor.feed
        if feed is not None:
            cursor.feed = None
            feed.close()

    def _restart(self, cursor: _Cursor) -> None:
        """The feed missed something: start a new one from the stream's state once copies settle."""
        self._close_feed(cursor)
        self._kick()

    def _origin_created(self, name: str) -> int:
        origin = self.host.streams.get(name)
        if origin is not None:
            return int(origin.created)
        replicated = self.stream.replicated
        coordinator = getattr(replicated, "coordinator", None)
        if coordinator is not None:
            sa = coordinator.state.stream(self.stream.account.name, name)
            if sa is not None:
                return int(sa.created or 0)
        return 0

    def _copy_feed(self, cursor: _Cursor) -> bool:
        """Copy what the feed delivered (clustered streams); True when there may be more now."""
        now = time.monotonic()
        feed = cursor.feed
        if feed is not None and not feed.closed and feed.stalled(now):
            self._close_feed(cursor)
            feed = None
        if feed is None or feed.closed:
            cursor.feed = None
            if cursor.inflight or now < cursor.retry_at:
                return False
            if cursor.failed:
                cursor.failed = False
                cursor.proposed = 0
                if cursor.restart_from:
                    cursor.seq = cursor.restart_from - 1
                    cursor.next = cursor.restart_from
                    cursor.restart_from = 0
            cursor.retry_at = now + RETRY_INTERVAL
            cursor.feed = self._open_feed(cursor)
            return False
        if cursor.failed:
            if not cursor.inflight:
                self._close_feed(cursor)
                cursor.retry_at = now + RETRY_INTERVAL
            return False
        if cursor.mirror:
            more = self._copy_mirror(cursor, feed.next)
        else:
            created = self._origin_created(cursor.source.name) if cursor.local else 0
            identity = stream_identity(created) if created else (feed.identity or cursor.identity)
            if cursor.identity and identity and cursor.identity != identity:
                cursor.seq, cursor.started, cursor.next = 0, False, 0  # a new origin: start over
                cursor.identity = identity
                self._mark_dirty()
                self._close_feed(cursor)
                return True
            if identity and cursor.identity != identity:
                cursor.identity = identity
                self._mark_dirty()
            more = self._copy_source(cursor, feed.next, identity)
        if feed.fc_reply and not feed.buffer and not cursor.inflight and not feed.closed:
            self._answer_flow_control(feed)
        return more and bool(feed.buffer)

    def _answer_flow_control(self, feed: _Feed) -> None:
        """Reply to the origin's flow control once everything it delivered before is copied, with
        how far that is (`Nats-Last-Consumer`/`Nats-Last-Stream`: a flow_control durable takes it
        as the ack). A replicated stream's copies are committed once applied; one server's wait
        for the store's sync, so an origin never removes a message that a power cut here loses."""
        reply, feed.fc_reply = feed.fc_reply, b""
        hdr = b"NATS/1.0\r\nNats-Last-Consumer: %d\r\nNats-Last-Stream: %d\r\n\r\n" % (feed.dseq, feed.sseq)
        if not feed.sseq:
            hdr = b""
        account = self.stream.account
        if not feed.durable or self._group() is not None:
            self.server.send_internal(account, reply, b"", hdr, b"")
            return
        synced = asyncio.ensure_future(self.stream.store.sync())

        def send(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled() and fut.exception() is None and not feed.closed:
                self.server.send_internal(account, reply, b"", hdr, b"")

        synced.add_done_callback(send)

    def _open_feed(self, cursor: _Cursor) -> _Feed:
        source = cursor.source
        if cursor.mirror:
            state = self.stream.store.state()
            if state.last_seq == 0 and state.messages == 0:
                if source.opt_start_time and not source.opt_start_seq:
                    return _Feed(self, cursor, 0, source.opt_start_time)
                return _Feed(self, cursor, source.opt_start_seq or 1)
            return _Feed(self, cursor, state.last_seq + 1)
        if not cursor.started:
            if source.opt_start_time and not source.opt_start_seq:
                cursor.seq = 0
                cursor.started = True
                cursor.next = 0
                return _Feed(self, cursor, 0, source.opt_start_time)
            cursor.seq = (source.opt_start_seq or 1) - 1
            cursor.started = True
            self._mark_dirty()
        return _Feed(self, cursor, max(cursor.next, cursor.seq + 1))

    def _copied(self, cursor: _Cursor, origin_seq: int, result: Any) -> None:
        """A replicated copy settled (`result`: the sequence, or the exception)."""
        cursor.inflight -= 1
        if isinstance(result, asyncio.Future):
            if result.cancelled():
                result = asyncio.CancelledError()
            else:
                result = result.exception()
        if isinstance(result, BaseException):
            stream = self.stream
            retry = isinstance(result, JSError) and result.entry.err_code in _RETRY_CODES
            if cursor.mirror or retry:
                if isinstance(result, JSError):
                    cursor.error = result
                elif isinstance(result, DiscardNewError):
                    cursor.error = js_error("JSStreamStoreFailedF", err=result.reason)
                if not cursor.failed and not cursor.mirror:
                    cursor.restart_from = origin_seq
                cursor.failed = True
            elif isinstance(result, JSError):
                self.server.logger.warn(
                    f"JetStream stream '{stream.account.name} > {stream.name}' skipped sourced message "
                    f"'{cursor.source.name}' seq {origin_seq}: {result.description}"
                )
            else:
                cursor.failed = True  # leadership moved: the next leader carries on
        if not cursor.inflight:
            cursor.proposed = 0
            self._kick()

    # ------------------------------------------------------------------ running

    def _run(self) -> None:
        self._scheduled = False
        if self.stopped or self.stream.closed:
            return
        clustered = self._clustered()
        if clustered and not self._follow_leadership():
            return
        more = False
        for cursor in list(self.cursors):
            feed = clustered or self._uses_consumer(cursor)
            if not cursor.local:
                if not _over_leaf(cursor.source):
                    continue
                feed = True  # another domain: a consumer over there, delivering across the link
            try:
                more = (self._copy_feed(cursor) if feed else self._copy(cursor)) or more
            except Exception:
                import traceback

                self.server.logger.error(traceback.format_exc())
        if more:
            self._kick()

    # ------------------------------------------------------------------ copying

    def _copy(self, cursor: _Cursor) -> bool:
        """Copy up to BATCH messages; True when there may be more right away."""
        origin = self.host.streams.get(cursor.source.name)
        if origin is None or origin.closed or origin is self.stream:
            cursor.error = js_error("JSStreamNotFoundErr")
            self._unlisten(cursor)
            return False
        self._listen(cursor, origin)
        cursor.error = None
        cursor.last_contact = time.time_ns()
        identity = stream_identity(origin.created)
        store = origin.store
        reader = lambda start: store.load_next_msg(cursor.load_filter, start)  # noqa: E731
        if cursor.mirror:
            cursor.identity = identity
            if cursor.next == 0 and self.stream.store.state().last_seq == 0 and not self.stream.store.state().messages:
                cursor.next = self._start_seq(cursor, origin)
            return self._copy_mirror(cursor, reader)
        if cursor.identity and cursor.identity != identity:
            # the origin was deleted and re-created: a new stream, start over
            cursor.seq = 0
            cursor.started = False
            cursor.next = 0
        if cursor.identity != identity:
            cursor.identity = identity
            self._mark_dirty()
        if not cursor.started:
            cursor.seq = self._start_seq(cursor, origin) - 1
            cursor.started = True
            self._mark_dirty()
        return self._copy_source(cursor, reader, identity)

    def _start_seq(self, cursor: _Cursor, origin: Any) -> int:
        """First origin sequence to copy for a cursor with no history."""
        source = cursor.source
        if source.opt_start_seq:
            return source.opt_start_seq
        if source.opt_start_time:
            return _seq_for_time(origin.store, source.opt_start_time)
        return 1

    def _copy_source(self, cursor: _Cursor, reader: Any, identity: str) -> bool:
        """Copy up to BATCH messages from `reader(start)` (the origin's store, or a feed) through
        the stream's publish path; a replicated stream proposes them (COPY_WINDOW in flight)."""
        stream = self.stream
        group = self._group()
        start = max(cursor.next, cursor.seq + 1)
        header_head = cursor.name_token
        header_tail = f"{cursor.src_token} {cursor.dest_token}"
        for _ in range(BATCH):
            if group is not None and cursor.inflight >= COPY_WINDOW:
                return False
            msg = reader(start)
            if msg is None:
                cursor.next = start
                return False
            start = msg.seq + 1
            subject = cursor.map_subject(msg.subject)
            if subject is None:
                cursor.next = start
                continue
            hdr = _strip(msg.hdr, _DROPPED + (H.STREAM_SOURCE,))
            value = f"{header_head} {msg.seq} {header_tail} {msg.subject.decode('utf-8', 'replace')} {identity}"
            hdr = H.append_headers(hdr, [(H.STREAM_SOURCE, value.encode())])
            if group is not None:
                cursor.inflight += 1
                group.publish(subject, b"", hdr, msg.data, True, lambda r, c=cursor, q=msg.seq: self._copied(c, q, r))
                if cursor.failed:
                    return False
            else:
                try:
                    stream._check_and_store(subject, hdr, msg.data, True)
                except JSError as exc:
                    if exc.entry.err_code in _RETRY_CODES:
                        cursor.error = exc
                        if cursor.feed is not None:  # the feed moved on: restart it from here
                            cursor.next = msg.seq
                            self._close_feed(cursor)
                            cursor.retry_at = time.monotonic() + RETRY_INTERVAL
                        return False  # retried at the next tick
                    self.server.logger.warn(
                        f"JetStream stream '{stream.account.name} > {stream.name}' skipped sourced message "
                        f"'{cursor.source.name}' seq {msg.seq}: {exc.description}"
                    )
            cursor.seq = msg.seq
            cursor.next = start
            self._mark_dirty()
        return True

    def _copy_mirror(self, cursor: _Cursor, reader: Any) -> bool:
        """Copy up to BATCH messages from `reader(start)` under the origin's sequences."""
        stream = self.stream
        mine = stream.store
        group = self._group()
        state = mine.state()
        start = max(state.last_seq + 1, cursor.next, cursor.proposed + 1)
        allow_ttl = stream.config.allow_msg_ttl
        for _ in range(BATCH):
            if group is not None and (cursor.inflight >= COPY_WINDOW or cursor.failed):
                return False
            msg = reader(start)
            if msg is None:
                cursor.next = start
                return False
            start = msg.seq + 1
            subject = cursor.map_subject(msg.subject)
            if subject is None:
                cursor.next = start
                continue
            hdr = _strip(msg.hdr, _DROPPED)
            state = mine.state()
            last = max(state.last_seq, cursor.proposed)
            if msg.seq <= last:
                cursor.next = last + 1
                start = cursor.next
                continue
            ttl = H.stored_ttl(hdr) if allow_ttl else 0
            try:
                self.host.check_resources(stream, mine.msg_size(subject, hdr, msg.data))
                if group is not None:
                    commands: list[Any] = []
                    if msg.seq > last + 1:
                        if state.messages == 0 and not cursor.inflight:
                            commands.append(PurgeMsgs(None, seq=msg.seq))
                        else:
                            commands.extend(SkipMsg(msg.ts, b"", gap) for gap in range(last + 1, msg.seq))
                    commands.append(StoreMsg(subject, hdr, msg.data, msg.ts, ttl, b"", "", msg.seq))
                    for command in commands:
                        cursor.inflight += 1
                        group.copy(command).add_done_callback(lambda f, c=cursor, q=msg.seq: self._copied(c, q, f))
                    cursor.proposed = msg.seq
                else:
                    if msg.seq > state.last_seq + 1:
                        if state.messages == 0:
                            stream.execute(PurgeMsgs(None, seq=msg.seq))
                        else:
                            for _gap in range(msg.seq - state.last_seq - 1):
                                stream.execute(SkipMsg(msg.ts))
                    stream.execute(StoreMsg(subject, hdr, msg.data, msg.ts, ttl))
            except (JSError, DiscardNewError) as exc:
                cursor.error = exc if isinstance(exc, JSError) else js_error("JSStreamStoreFailedF", err=exc.reason)
                cursor.next = msg.seq
                if cursor.feed is not None:
                    cursor.failed = group is not None and cursor.inflight > 0
                    self._close_feed(cursor)  # restarted from the stream's state
                    cursor.retry_at = time.monotonic() + RETRY_INTERVAL
                return False
            cursor.next = start  # execute() reacted: expiry timer, consumers and listeners
        return True

    # ------------------------------------------------------------------ info

    def add_info(self, out: dict[str, Any]) -> None:
        config = self.stream.config
        if config.mirror is not None:
            cursor = next((c for c in self.cursors if c.mirror), None)
            if cursor is not None:
                out["mirror"] = self._info(cursor)
        if config.sources:
            out["sources"] = [self._info(c) for c in self.cursors if not c.mirror]

    def _info(self, cursor: _Cursor) -> dict[str, Any]:
        source = cursor.source
        info: dict[str, Any] = {"name": source.name}
        if source.external is not None:
            info["external"] = encode(source.external)
        origin = self.host.streams.get(source.name) if cursor.local and not self._clustered() else None
        lag = 0
        if cursor.feed is not None:
            lag = cursor.feed.lag
        elif origin is not None and cursor.last_contact:
            try:
                if cursor.mirror:
                    lag = cursor.pending(origin.store, self.stream.store.state().last_seq + 1)
                elif cursor.started:
                    lag = cursor.pending(origin.store, cursor.seq + 1)
            except Exception:
                lag = 0
        info["lag"] = lag
        if not cursor.mirror and cursor.seq:
            info["seq"] = cursor.seq
        info["active"] = time.time_ns() - cursor.last_contact if cursor.last_contact else -1
        if cursor.error is not None:
            info["error"] = cursor.error.to_json()
        if cursor.mirror and not cursor.last_contact:
            return info  # nats-server shows a mirror's filter / transforms only once it is connected
        if source.filter_subject:
            info["filter_subject"] = source.filter_subject
        if source.subject_transforms:
            info["subject_transforms"] = [encode(t) for t in source.subject_transforms]
        return info


#: nats-server drops these from mirrored and sourced copies (verified against 2.15.1).
_DROPPED = (
    H.EXPECTED_STREAM,
    H.EXPECTED_LAST_SEQ,
    H.EXPECTED_LAST_SUBJ_SEQ,
    H.EXPECTED_LAST_SUBJ_SEQ_SUBJ,
    H.EXPECTED_LAST_MSG_ID,
)


def _strip(hdr: bytes, names: tuple[bytes, ...]) -> bytes:
    if not hdr:
        return hdr
    for name in names:
        if b"\r\n" + name + b":" in hdr:
            hdr = H.remove_header(hdr, name)
    return b"" if hdr == H.EMPTY_BLOCK else hdr


def _parse_source_header(value: bytes) -> tuple[str, int, str] | None:
    """`Nats-Stream-Source` -> (iname, origin seq, identity)."""
    parts = value.decode("utf-8", "replace").split(" ")
    if len(parts) < 4:
        return None
    try:
        seq = int(parts[1])
    except ValueError:
        return None
    iname = f"{parts[0]} {parts[2]} {parts[3]}"
    identity = parts[5] if len(parts) > 5 else ""
    return iname, seq, identity


def _seq_for_time(store: Any, ts: int) -> int:
    """First stored sequence with a timestamp >= ts (timestamps grow with sequences)."""
    state = store.state()
    if state.messages == 0:
        return state.last_seq + 1
    lo, hi = max(state.first_seq, 1), state.last_seq + 1
    while lo < hi:
        mid = (lo + hi) // 2
        msg = store.load_next_msg(b">", mid)
        if msg is None:
            hi = mid
        elif msg.ts >= ts:
            hi = mid
        else:
            lo = msg.seq + 1
    return lo


__all__ = ["attach", "check_origins", "compose_iname", "stream_identity", "Replicator"]
