"""Stream snapshot and restore (layer 5): `$JS.API.STREAM.SNAPSHOT.<s>` / `$JS.API.STREAM.RESTORE.<s>`.

The transport is nats-server's chunked protocol (spec/jetstream-api.md §4.11), so the nats CLI
(`nats stream backup` / `restore`) and any client following jsm.go work unchanged:

* SNAPSHOT: request `{deliver_subject, no_consumers?, chunk_size?, window_size?, jsck?}` (strict);
  reply `stream_snapshot_response` `{config, state}`; then the archive is streamed to
  `deliver_subject` in chunks. Every full chunk carries the reply subject
  `$JS.SNAPSHOT.ACK.<s>.<id>.<chunk size>.<chunk index>` (index from 1); the receiver acks by
  publishing anything there. At most `window_size` bytes are unacknowledged; 5 s without an ack ends
  the transfer with `NATS/1.0 408 No Flow Response`, nobody receiving with `408 No Interest`. A short
  (last) chunk has no reply subject. End of data: empty body with header `NATS/1.0 204`.
* RESTORE: request `{config, state}`; reply `stream_restore_response` `{deliver_subject:
  "$JS.SNAPSHOT.RESTORE.<s>.<id>"}`. The client publishes the chunks there as requests (each is
  acked with an empty message) and ends with an empty message, whose reply gets the
  `stream_create_response` (StreamInfo) or `10062 restore failed: …`. 5 s of silence aborts.

The **archive is nats-server's** (`jsedge.api.natsarchive`: the `NATSARC1` entries of
nats-server 2.10.26 and later, in a Snappy framed stream that S2 readers accept), so a jsedge
backup restores into nats-server and a nats-server backup into jsedge. The stream config is not in
the archive: the snapshot response carries it and the restore request brings it back (the nats CLI
keeps it in `backup.json`). jsedge's own extras (store metadata such as source cursors; the
creation time, recorded only: a restored stream is created anew, as before) ride in `state.json`
under a `jsedge` key that nats-server ignores. Consumers' config and
state are written back into the new store's consumer stores before the stream is opened, so the
consumer layer recovers them like after a restart.

Restore still reads the archive jsedge wrote before (a gzip tar: `stream.json` with the config,
`msgs.bin` records `>QqIII` seq, ts, subject/header/data lengths then the bytes, `meta.bin`,
`consumers/<name>.json`).

The archive is built synchronously in memory/spooled temp file (no concurrent mutation can slip in),
then sent by a task that honours the flow-control window.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import struct
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jsedge import gojson
from jsedge.api import natsarchive
from jsedge.api.request import TYPE_PREFIX, Endpoint, Request
from jsedge.errors import JSError, js_error
from jsedge.jetstream import headers as H
from jsedge.jetstream.commands import PurgeMsgs, SkipMsg, StoreMsg
from jsedge.jetstream.models import (
    decode,
    decode_stream_config_request,
    format_time_ns,
    parse_json,
    spec,
)
from jsedge.store import s2
from jsedge.store.base import ConsumerState, Pending, SequencePair
from jsedge.subjects import valid_literal_subject

FORMAT = "jsedge-snapshot"
VERSION = 1
DEFAULT_CHUNK = 128 * 1024
MIN_CHUNK, MAX_CHUNK = 1024, 1024 * 1024
DEFAULT_WINDOW = 8 * 1024 * 1024
MIN_WINDOW, MAX_WINDOW = 1024, 32 * 1024 * 1024
FLOW_TIMEOUT = 5.0
RESTORE_TIMEOUT = 5.0
_RECORD = struct.Struct(">QqIII")
_STATUS_EOF = b"NATS/1.0 204\r\n\r\n"
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(slots=True)
class SnapshotRequest:
    GO_NAME = "JSApiStreamSnapshotRequest"
    deliver_subject: str = spec("str")
    no_consumers: bool = spec("bool")
    chunk_size: int = spec("int")
    window_size: int = spec("int")
    jsck: bool = spec("bool")


def _nuid() -> str:
    return "".join(secrets.choice(_DIGITS) for _ in range(22))


# ------------------------------------------------------------------------------------------------
# archive


def _consumer_state_from_json(doc: dict[str, Any]) -> ConsumerState:
    delivered = doc.get("delivered") or [0, 0]
    ack_floor = doc.get("ack_floor") or [0, 0]
    return ConsumerState(
        delivered=SequencePair(int(delivered[0]), int(delivered[1])),
        ack_floor=SequencePair(int(ack_floor[0]), int(ack_floor[1])),
        pending={int(k): Pending(int(v[0]), int(v[1])) for k, v in (doc.get("pending") or {}).items()},
        redelivered={int(k): int(v) for k, v in (doc.get("redelivered") or {}).items()},
    )


def _consumer_names(stream: Any) -> list[str]:
    names = set(getattr(stream, "consumers", {}) or {})
    cached = getattr(stream.store, "_consumers", None)  # both stores cache their consumer stores
    if isinstance(cached, dict):
        names.update(name for name, cs in cached.items() if not getattr(cs, "deleted", False))
    return sorted(names)


def build_archive(stream: Any, *, consumers: bool = True) -> bytes:
    """The whole snapshot of `stream`: nats-server's backup archive (`natsarchive`) in an S2
    stream (see the module docstring)."""
    from jsedge.jetstream.stream import state_to_json

    store = stream.store
    state = store.state()
    docs: list[tuple[str, bytes]] = []
    if consumers:
        for name in _consumer_names(stream):
            config_json, cstate = store.consumer_store(name).load()
            stored = json.loads(config_json) if config_json else {}
            config = stored.get("config") or {"name": name}  # the consumer store keeps {config, created}
            docs.append((name, natsarchive.consumer_json(config, cstate)))
    summary = state_to_json(state, len(docs))
    summary["jsedge"] = natsarchive.jsedge_extras(format_time_ns(stream.created), store.load_meta())
    now = time.time_ns()
    with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as spool:
        spool.write(natsarchive.MAGIC)
        spool.write(natsarchive.entry(b"state.json", now, 0, b"", gojson.dumpb(summary)))
        for name, doc in docs:
            spool.write(natsarchive.entry(f"consumers/{name}".encode(), now, 0, b"", doc))
        seq = max(state.first_seq, 1)
        while state.messages:
            msg = store.load_next_msg(b">", seq)
            if msg is None:
                break
            spool.write(natsarchive.entry(msg.subject, msg.ts, msg.seq, msg.hdr, msg.data))
            seq = msg.seq + 1
        spool.write(natsarchive.END)
        spool.seek(0)
        return s2.compress_stream(spool.read())


def _read_archive(
    fileobj: Any, config: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any, bytes | None, list[dict[str, Any]]]:
    """(stream document, messages: msgs.bin file object or an iterator of records, store
    metadata, consumer docs), from nats-server's backup archive (an S2 stream, `natsarchive`:
    what jsedge writes too; its stream config is `config`, the restore request's) or from the
    gzip tar archives jsedge wrote before it wrote nats-server's."""
    fileobj.seek(0)
    if s2.is_s2_stream(fileobj.read(len(s2.S2_MAGIC))):
        fileobj.seek(0)
        return natsarchive.read_nats_archive(fileobj, config)
    fileobj.seek(0)
    tar = tarfile.open(fileobj=fileobj, mode="r:gz")
    document: dict[str, Any] | None = None
    messages: Any = None
    meta: bytes | None = None
    consumer_docs: list[dict[str, Any]] = []
    for member in tar.getmembers():
        if not member.isfile():
            continue
        handle = tar.extractfile(member)
        if handle is None:
            continue
        if member.name == "stream.json":
            document = json.loads(handle.read())
        elif member.name == "msgs.bin":
            messages = handle
        elif member.name == "meta.bin":
            meta = handle.read()
        elif member.name.startswith("consumers/") and member.name.endswith(".json"):
            consumer_docs.append(json.loads(handle.read()))
    if document is None or document.get("format") != FORMAT:
        raise ValueError("not a jsedge snapshot")
    if int(document.get("version", 0)) > VERSION:
        raise ValueError(f"unsupported snapshot version {document.get('version')}")
    return document, messages, meta, consumer_docs


def _iter_records(handle: Any) -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
    if handle is None:
        return
    if not hasattr(handle, "read"):  # already records (a nats-server archive)
        yield from handle
        return
    size = _RECORD.size
    while True:
        head = handle.read(size)
        if not head:
            return
        if len(head) < size:
            raise ValueError("truncated message record")
        seq, ts, slen, hlen, dlen = _RECORD.unpack(head)
        body = handle.read(slen + hlen + dlen)
        if len(body) < slen + hlen + dlen:
            raise ValueError("truncated message record")
        yield seq, ts, body[:slen], body[slen : slen + hlen], body[slen + hlen :]


def _move_to(stream: Any, seq: int, ts: int) -> None:
    """Make `seq` the next sequence of `stream` (gaps become deleted sequences), with commands."""
    state = stream.store.state()
    nxt = state.last_seq + 1
    if seq <= nxt:
        return
    if state.messages == 0:
        stream.apply(PurgeMsgs(None, seq=seq))
        return
    for _ in range(seq - nxt):
        stream.apply(SkipMsg(ts))


def fill_stream(stream: Any, document: dict[str, Any], messages: Any) -> None:
    """The archive's messages applied to a new, not yet started stream as StoreMsg/SkipMsg/PurgeMsgs
    commands (the same commands a replicated stream would replicate)."""
    allow_ttl = bool(stream.config.allow_msg_ttl)
    last_ts = 0
    for seq, ts, subject, hdr, data in _iter_records(messages):
        _move_to(stream, seq, ts)
        if stream.store.state().last_seq + 1 != seq:
            raise ValueError(f"message sequence {seq} out of order")
        ttl = H.stored_ttl(hdr) if allow_ttl else 0
        stream.apply(StoreMsg(subject, hdr, data, ts, ttl))
        last_ts = ts
    wanted = document.get("state") or {}
    last_seq = int(wanted.get("last_seq", 0) or 0)
    if last_seq > stream.store.state().last_seq:
        _move_to(stream, last_seq + 1, int(wanted.get("last_ts", 0) or last_ts))


# ------------------------------------------------------------------------------------------------
# SNAPSHOT


def stream_snapshot(api: Any, request: Request) -> dict[str, Any] | None:
    jsa = request.jsa
    name = request.tokens[2].decode("utf-8", "replace")
    stream = jsa.streams.get(name)
    if stream is None:
        raise js_error("JSStreamNotFoundErr")
    if not request.body.strip():
        raise js_error("JSBadRequestErr")
    options = decode(SnapshotRequest, parse_json(request.body), "JSApiStreamSnapshotRequest")
    if not options.deliver_subject:
        raise js_error("JSBadRequestErr")
    deliver = options.deliver_subject.encode()
    if not valid_literal_subject(deliver):
        raise js_error("JSSnapshotDeliverSubjectInvalidErr")
    chunk = options.chunk_size or DEFAULT_CHUNK
    chunk = min(max(chunk, MIN_CHUNK), MAX_CHUNK)
    window = options.window_size or DEFAULT_WINDOW
    window = max(min(max(window, MIN_WINDOW), MAX_WINDOW), chunk)
    state = stream.state()
    from jsedge.jetstream.stream import state_to_json

    try:
        archive = build_archive(stream, consumers=not options.no_consumers)
    except Exception as exc:
        raise js_error("JSStreamSnapshotErrF", err=str(exc)) from None
    response = {
        "type": TYPE_PREFIX + "stream_snapshot_response",
        "config": stream.config_json(dynamic=False),
        "state": state_to_json(state, len(stream.consumers)),
    }
    api.respond(request, response)
    sender = _Sender(api, jsa, name, deliver, chunk, window, archive)
    api.server.loop.create_task(sender.run())
    return None


class _Sender:
    def __init__(self, api: Any, jsa: Any, name: str, deliver: bytes, chunk: int, window: int, data: bytes) -> None:
        self.server = api.server
        self.account = jsa.account
        self.deliver = deliver
        self.chunk = chunk
        self.window = window
        self.data = data
        self.ack_prefix = f"$JS.SNAPSHOT.ACK.{name}.{_nuid()}".encode()
        self.outstanding = 0
        self.acked = asyncio.Event()

    def _on_ack(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        tokens = subject.split(b".")
        try:
            size = int(tokens[-2])
        except (ValueError, IndexError):
            return
        self.outstanding = max(self.outstanding - size, 0)
        self.acked.set()

    def _status(self, line: bytes) -> None:
        self.server.send_internal(self.account, self.deliver, b"", b"NATS/1.0 " + line + b"\r\n\r\n", b"")

    async def run(self) -> None:
        # in a cluster the client may be on another server: its acks cross the routes
        routed = bool(getattr(self.server.jetstream, "clustered", False))
        sub = self.server.subscribe_internal(self.account, self.ack_prefix + b".>", self._on_ack, routed=routed)
        try:
            data = self.data
            index = 0
            for offset in range(0, len(data), self.chunk):
                piece = data[offset : offset + self.chunk]
                index += 1
                full = len(piece) == self.chunk
                while full and self.outstanding + len(piece) > self.window:
                    self.acked.clear()
                    try:
                        await asyncio.wait_for(self.acked.wait(), FLOW_TIMEOUT)
                    except TimeoutError:
                        self._status(b"408 No Flow Response")
                        return
                reply = self.ack_prefix + b".%d.%d" % (self.chunk, index) if full else b""
                delivered = self.server.send_internal(self.account, self.deliver, reply, b"", piece)
                if not delivered:
                    self._status(b"408 No Interest")
                    return
                if full:
                    self.outstanding += len(piece)
                await asyncio.sleep(0)
            self.server.send_internal(self.account, self.deliver, b"", _STATUS_EOF, b"")
        except Exception as exc:
            self._status(b"500 " + str(exc).encode(errors="replace")[:200])
        finally:
            self.server.unsubscribe_internal(self.account, sub)


# ------------------------------------------------------------------------------------------------
# RESTORE

#: (account name, stream name) -> restore in progress
_IN_PROGRESS: dict[tuple[str, str], Any] = {}


def stream_restore(api: Any, request: Request) -> dict[str, Any] | None:
    jsa = request.jsa
    name = request.tokens[2].decode("utf-8", "replace")
    if not request.body.strip():
        raise js_error("JSBadRequestErr")
    document = parse_json(request.body)
    if not isinstance(document, dict):
        raise js_error("JSBadRequestErr")
    for key in document:
        if key not in ("config", "state"):
            raise js_error("JSInvalidJSONErr", err=f'json: unknown field "{key}"')
    raw_config = document.get("config") or {}
    if not isinstance(raw_config, dict):
        raise js_error("JSBadRequestErr")
    raw_config = dict(raw_config)
    if not raw_config.get("name"):
        raw_config["name"] = name
    if raw_config["name"] != name:
        raise js_error("JSStreamMismatchErr")
    config = decode_stream_config_request(raw_config)
    if name in jsa.streams or (jsa.name, name) in _IN_PROGRESS:
        raise js_error("JSStreamNameExistRestoreFailedErr")
    jsa.defaulted(config, False)
    deliver = f"$JS.SNAPSHOT.RESTORE.{name}.{_nuid()}"
    _Receiver(api, jsa, name, deliver.encode(), raw_config)
    return {"deliver_subject": deliver}


class _Receiver:
    def __init__(self, api: Any, jsa: Any, name: str, subject: bytes, config: dict[str, Any]) -> None:
        #: the restore request's stream config (a nats-server archive does not carry one)
        self.config = config
        self.api = api
        self.server = api.server
        self.jsa = jsa
        self.name = name
        self.spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
        routed = bool(getattr(self.server.jetstream, "clustered", False))  # chunks may come across a route
        self.sub = self.server.subscribe_internal(jsa.account, subject, self._on_chunk, routed=routed)
        self.timer = self.server.loop.call_later(RESTORE_TIMEOUT, self._expire)
        self.done = False
        _IN_PROGRESS[(jsa.name, name)] = self

    def _close(self) -> None:
        self.done = True
        self.timer.cancel()
        self.server.unsubscribe_internal(self.jsa.account, self.sub)
        _IN_PROGRESS.pop((self.jsa.name, self.name), None)

    def _expire(self) -> None:
        if not self.done:
            self.server.logger.warn(f"JetStream restore of stream '{self.jsa.name} > {self.name}' timed out")
            self._close()
            self.spool.close()

    def _on_chunk(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if self.done:
            return
        data = msg[hdr_len:] if hdr_len >= 0 else msg
        if data:
            self.spool.write(data)
            self.timer.cancel()
            self.timer = self.server.loop.call_later(RESTORE_TIMEOUT, self._expire)
            if reply:
                self.server.send_internal(self.jsa.account, reply, b"", b"", b"")
            return
        self._close()
        cluster_restore = getattr(self.api, "cluster_restore", None)
        if cluster_restore is not None:
            self._finish_in_cluster(cluster_restore, reply)
            return
        try:
            stream = restore_stream(self.jsa, self.name, self.spool, self.config)
            response: dict[str, Any] = {"type": TYPE_PREFIX + "stream_create_response"}
            response.update(stream.info())
        except JSError as exc:
            response = {"type": TYPE_PREFIX + "stream_create_response", "error": exc.to_json()}
        except Exception as exc:
            err = js_error("JSStreamRestoreErrF", err=str(exc) or type(exc).__name__)
            response = {"type": TYPE_PREFIX + "stream_create_response", "error": err.to_json()}
        finally:
            self.spool.close()
        if reply:
            self.server.send_internal(self.jsa.account, reply, b"", b"", gojson.dumpb(response))

    def _finish_in_cluster(self, cluster_restore: Any, reply: bytes) -> None:
        """A JetStream cluster: the meta group registers the restored stream (cluster/api.py)."""

        def respond(response: dict[str, Any]) -> None:
            if reply:
                self.server.send_internal(self.jsa.account, reply, b"", b"", gojson.dumpb(response))

        def error(exc: BaseException) -> dict[str, Any]:
            if not isinstance(exc, JSError):
                exc = js_error("JSStreamRestoreErrF", err=str(exc) or type(exc).__name__)
            return {"type": TYPE_PREFIX + "stream_create_response", "error": exc.to_json()}

        try:
            fut = cluster_restore(self.jsa, self.name, self.spool, self.config)
        except Exception as exc:
            respond(error(exc))
            return
        finally:
            self.spool.close()

        def finished(f: Any) -> None:
            if f.cancelled():
                return
            if f.exception() is not None:
                respond(error(f.exception()))
                return
            response: dict[str, Any] = {"type": TYPE_PREFIX + "stream_create_response"}
            response.update(f.result())
            respond(response)

        fut.add_done_callback(finished)


def restore_stream(jsa: Any, name: str, fileobj: Any, request_config: dict[str, Any] | None = None) -> Any:
    """Create stream `name` of account `jsa` from an archive; returns the opened Stream."""
    from jsedge.jetstream.streamconfig import set_static_metadata

    try:
        document, messages, meta, consumer_docs = _read_archive(fileobj, request_config)
    except (tarfile.TarError, OSError, ValueError, EOFError, KeyError) as exc:
        raise js_error("JSStreamRestoreErrF", err=str(exc) or "invalid archive") from None
    raw_config = dict(document.get("config") or {})
    raw_config["name"] = name
    raw_config.pop("pedantic", None)
    config = jsa.defaulted(decode_stream_config_request(raw_config), False)
    if name in jsa.streams:
        raise js_error("JSStreamNameExistRestoreFailedErr")
    jsa._check_overlap(config)
    jsa._check_limits(config)
    set_static_metadata(config)

    def fill(stream: Any) -> None:
        fill_stream(stream, document, messages)
        _restore_extras(stream.store, meta, consumer_docs)

    return jsa._open(config, time.time_ns(), fresh=True, fill=fill)


def _restore_extras(store: Any, meta: bytes | None, consumer_docs: list[dict[str, Any]]) -> None:
    if meta:
        store.save_meta(meta)
    for doc in consumer_docs:
        consumer = store.consumer_store(str(doc["name"]))
        if doc.get("config"):
            consumer.save_config(str(doc["config"]).encode())
        consumer.update(_consumer_state_from_json(doc.get("state") or {}))


def register(api: Any) -> None:
    api.add(Endpoint((b"STREAM", b"SNAPSHOT"), 3, "stream_snapshot_response", stream_snapshot))
    api.add(Endpoint((b"STREAM", b"RESTORE"), 3, "stream_restore_response", stream_restore, (("deliver_subject", ""),)))


__all__ = ["build_archive", "restore_stream", "register"]
