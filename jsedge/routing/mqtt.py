"""MQTT 3.1.1 clients (layer 2): the `mqtt {}` listener, sessions and QoS on JetStream.

An MQTT connection is a client of the server (`MQTTConnection`, a `ClientConnection` whose parser is
the MQTT packet reader of jsedge.protocol.mqtt): it authenticates like a NATS client, has an account,
permissions, subscriptions in `/connz` (type `mqtt`, `mqtt_client`), and its PUBLISH packets are
NATS messages on the converted subject (`a/b` -> `a.b`) with the header `Nmqtt-Pub:<qos>`, so MQTT
and NATS clients exchange messages both ways. It gets no INFO and no PING (keep-alive instead).

State lives in JetStream, in the account's streams, as nats-server keeps it (so a session survives a
restart, and with replicas a node's loss, and a jsedge node can share the streams with nats-server
nodes):

  `$MQTT_sess`   `$MQTT.sess.[<domain>.]<hash of client id>`  one JSON record per session: its subscriptions
                 (`subs`: NATS filter -> QoS) and the durable consumers behind them (`cons`)
  `$MQTT_msgs`   `$MQTT.msgs.<subject>`  QoS 1/2 messages (interest retention): each QoS 1/2
                 subscription is a durable push consumer (`<hash>_<id>`, deliver `$MQTT.sub.<id>`,
                 filter `$MQTT.msgs.<filter>`, explicit ack, deliver new); PUBACK acks the message
  `$MQTT_rmsgs`  `$MQTT.rmsgs.<subject>`  retained messages, one per subject, headers
                 `Nmqtt-RTopic`/`Nmqtt-RFlags`/`Nmqtt-ROrigin`/`Nmqtt-RSource`; an empty body (flags
                 prefixed `-`) deletes. Every server follows the stream with an ephemeral consumer
                 into an in-memory index, which SUBSCRIBE matches its filter against.
  `$MQTT_qos2in` `$MQTT.qos2.in.<client id>.<packet id>`  a QoS 2 PUBLISH waits here for PUBREL
  `$MQTT_out`    `$MQTT.out.pubrel.<hash>`  a QoS 2 delivery past PUBREC: the session's PUBREL
                 consumer (`$MQTT_PUBREL_<hash>`) sends PUBREL until the client's PUBCOMP

The server talks to JetStream through JetStream API requests in the account (replies on
`$MQTT.JSA.<server hash>.<kind>.<n>`), as nats-server does, so the same code works on one server
and on a cluster (where the meta leader places the streams). A session save's reply
(`...SP.<session hash>.<n>`) reaches every server: one that holds the same session drops its copy
and closes its client (the device moved to another server).

Packets are handled in order: a packet that needs JetStream (CONNECT, QoS 2 PUBLISH, SUBSCRIBE,
PUBREL, UNSUBSCRIBE) runs as a task, and the packets read meanwhile wait behind it (reading pauses).
QoS 1 publishes are pipelined instead (PUBACKs in order as their stores complete). MQTT over
WebSocket is `WebSocketMQTTConnection` in jsedge.routing.websocket.

Not done (nats-server has them): Sparkplug B; JWT users over MQTT.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any

from jsedge.errors import ClosedReason
from jsedge.protocol import mqtt as P
from jsedge.routing.auth import DenyFilter
from jsedge.routing.client import ClientConnection
from jsedge.routing.sublist import Subscription, deliver, flush_pending
from jsedge.subjects import subject_matches, valid_sublist_subject

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

MSGS_STREAM = "$MQTT_msgs"
RMSGS_STREAM = "$MQTT_rmsgs"
SESS_STREAM = "$MQTT_sess"
QOS2IN_STREAM = "$MQTT_qos2in"
OUT_STREAM = "$MQTT_out"
MSGS_PREFIX = b"$MQTT.msgs."
RMSGS_PREFIX = b"$MQTT.rmsgs."
SUB_PREFIX = b"$MQTT.sub."
QOS2IN_PREFIX = b"$MQTT.qos2.in."

DEFAULT_ACK_WAIT = 30.0
DEFAULT_MAX_ACK_PENDING = 1024
MAX_ACK_TOTAL = 0xFFFF
DEFAULT_API_TIMEOUT = 5.0
#: a client id that took a connection over less than this long ago is held, then closed
FLAPPER_JAIL = 1.0
FWC_SUFFIX = " fwc"
#: QoS 1 publishes waiting for their store: reading pauses above the high mark, resumes below the low
_ACKS_HIGH = 1024
_ACKS_LOW = 256
#: not a packet type: the reader's stream error, handled in order after the packets before it
_ERROR = -1


def name_hash(name: str) -> str:
    """nats-server's 8-letter hash (getHash): the session subject of a client id, the server's id."""
    digest = hashlib.sha256(name.encode()).digest()
    return "".join(_ALPHABET[byte % 62] for byte in digest[:8])


def _nuid() -> str:
    return "".join(_ALPHABET[byte % 62] for byte in os.urandom(22))


def _header(hdr: bytes, name: bytes) -> bytes | None:
    """A header's value in a NATS header block (first occurrence), or None."""
    for line in hdr.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def _pub_header(qos: int, flags: int | None = None, subject: bytes = b"") -> bytes:
    value = b"%d" % qos + (b"0123456789abcdef"[flags & 0x0F : (flags & 0x0F) + 1] if flags is not None else b"")
    head = b"NATS/1.0\r\nNmqtt-Pub:" + value + b"\r\n"
    if subject:
        head += b"Nmqtt-Subject:" + subject + b"\r\n"
    return head + b"\r\n"


def _msg_qos(hdr: bytes) -> int:
    """The QoS an `Nmqtt-Pub` header names (0 when there is none)."""
    if not hdr or b"Nmqtt-Pub" not in hdr:
        return 0
    value = _header(hdr, b"Nmqtt-Pub")
    if not value or not 0x30 <= value[0] <= 0x32:
        return 0
    return value[0] - 0x30


def _is_reserved_filter(subject: bytes) -> bool:
    """`#`, `+` and `+/...`: such filters never match topics starting with `$` [MQTT-4.7.2-1]."""
    return subject in (b">", b"*") or subject.startswith(b"*.")


def _needs_parent(subject: bytes) -> bool:
    """`foo/#` also matches `foo` itself: a second subscription on the parent level."""
    return len(subject) > 2 and subject.endswith(b".>")


class JSAPIError(Exception):
    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} ({err_code})")
        self.code = code
        self.err_code = err_code


class MQTTConnectError(Exception):
    """A CONNECT that fails after authentication (logged `unable to connect: ...`, no CONNACK)."""


# ---------------------------------------------------------------------------- JetStream access


class _JSA:
    """JetStream API requests (and stream publishes) of one account, as the MQTT layer makes them."""

    def __init__(self, server: Any, account: Any, timeout: float, domain: str) -> None:
        self.server = server
        self.account = account
        self.timeout = timeout
        self.api = f"$JS.{domain}.API" if domain else "$JS.API"
        self.server_id = name_hash(server.server_name)
        self.prefix = f"$MQTT.JSA.{self.server_id}.".encode()
        self.count = 0
        self.waiting: dict[bytes, asyncio.Future[tuple[bytes, bytes]]] = {}
        self.sub = server.subscribe_internal(account, self.prefix + b">", self._reply)

    def close(self) -> None:
        self.server.unsubscribe_internal(self.account, self.sub)
        for future in self.waiting.values():
            if not future.done():
                future.cancel()
        self.waiting.clear()

    def _reply(self, _sub: Any, _src: Any, subject: bytes, _reply: bytes, hdr_len: int, msg: bytes) -> None:
        future = self.waiting.pop(subject, None)
        if future is None or future.done():
            return
        if hdr_len >= 0:
            future.set_result((bytes(msg[:hdr_len]), bytes(msg[hdr_len:])))
        else:
            future.set_result((b"", bytes(msg)))

    def start(
        self, kind: str, subject: str | bytes, body: bytes, hdr: bytes = b""
    ) -> asyncio.Future[tuple[bytes, bytes]]:
        """Send a request; its future has the reply (header, data) or fails after the timeout."""
        self.count += 1
        reply = self.prefix + f"{kind}.{self.count}".encode()
        loop = self.server.loop
        future: asyncio.Future[tuple[bytes, bytes]] = loop.create_future()
        self.waiting[reply] = future
        target = subject.encode() if isinstance(subject, str) else subject
        timeout = self.timeout

        def expire() -> None:
            if self.waiting.pop(reply, None) is future and not future.done():
                shown = target.decode(errors="replace")
                future.set_exception(
                    MQTTConnectError(
                        f'timeout after {timeout:.1f}s: request type "{kind}" on "{shown}" (reply="{reply.decode()}")'
                    )
                )

        handle = loop.call_later(timeout, expire)
        future.add_done_callback(lambda _f: handle.cancel())
        self.server.send_internal(self.account, target, reply, hdr, body)
        return future

    async def request(self, kind: str, subject: str | bytes, body: bytes, hdr: bytes = b"") -> tuple[bytes, bytes]:
        return await self.start(kind, subject, body, hdr)

    async def api_call(self, kind: str, op: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(request, separators=(",", ":")).encode() if request is not None else b""
        _hdr, data = await self.request(kind, f"{self.api}.{op}", body)
        answer: dict[str, Any] = json.loads(data or b"{}")
        error = answer.get("error")
        if isinstance(error, dict):
            raise JSAPIError(
                int(error.get("code", 0)), int(error.get("err_code", 0)), str(error.get("description", ""))
            )
        return answer

    async def store(self, subject: bytes, hdr: bytes, data: bytes, kind: str = "MS") -> dict[str, Any]:
        """Publish into a stream and wait for its PubAck."""
        _h, answer_raw = await self.request(kind, subject, data, hdr)
        return self.pub_ack(answer_raw)

    @staticmethod
    def pub_ack(answer_raw: bytes) -> dict[str, Any]:
        """A stream's answer to a publish: the PubAck, or `JSAPIError`."""
        if not answer_raw:
            raise JSAPIError(503, 0, "no responders")
        answer: dict[str, Any] = json.loads(answer_raw)
        error = answer.get("error")
        if isinstance(error, dict):
            raise JSAPIError(
                int(error.get("code", 0)), int(error.get("err_code", 0)), str(error.get("description", ""))
            )
        return answer

    def ack(self, subject: bytes) -> None:
        self.server.send_internal(self.account, subject, b"", b"", b"")

    async def last_msg(self, stream: str, subject: bytes) -> dict[str, Any] | None:
        try:
            answer = await self.api_call("ML", f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject.decode()})
        except JSAPIError as problem:
            if problem.err_code in (10037, 10014):  # no message found / not found
                return None
            raise
        message = answer.get("message")
        return message if isinstance(message, dict) else None

    async def delete_msg(self, stream: str, seq: int) -> None:
        try:
            await self.api_call("MD", f"STREAM.MSG.DELETE.{stream}", {"seq": seq, "no_erase": True})
        except JSAPIError:
            pass  # already gone (a cluster may race)

    async def delete_consumer(self, stream: str, name: str) -> None:
        try:
            await self.api_call("CD", f"CONSUMER.DELETE.{stream}.{name}")
        except JSAPIError:
            pass


# ---------------------------------------------------------------------------- per account


class _Retained:
    __slots__ = ("seq", "flags", "payload", "topic")

    def __init__(self, seq: int, flags: int, payload: bytes, topic: bytes) -> None:
        self.seq = seq
        self.flags = flags
        self.payload = payload
        self.topic = topic


class _Session:
    """One MQTT session (by client id): what is persisted in `$MQTT_sess`, plus the packet ids in
    flight on its current connection."""

    def __init__(self, client_id: str, seq: int = 0) -> None:
        self.id = client_id
        self.hash = name_hash(client_id)
        self.seq = seq
        self.clean = False
        #: NATS filter -> granted QoS
        self.subs: dict[str, int] = {}
        #: sid (filter, or "<parent> fwc") -> consumer config JSON
        self.cons: dict[str, dict[str, Any]] = {}
        self.conn: MQTTConnection | None = None
        self.last_pid = 0
        #: packet id -> (JS ack subject or b"" for a retained message, durable, stream sequence)
        self.pending: dict[int, tuple[bytes, str, int]] = {}
        #: (durable, stream seq) -> packet id: a JetStream redelivery reuses the id (DUP)
        self.by_seq: dict[tuple[str, int], int] = {}
        #: packet ids of QoS 2 deliveries past PUBREC -> the ack subject of their PUBREL record
        #: (b"" until `$MQTT_out`'s consumer delivered it)
        self.pubrel: dict[int, bytes] = {}
        #: the durable consumer (on `$MQTT_out`) that delivers the session's PUBREL records
        self.pubrel_consumer: dict[str, Any] | None = None
        self.max_pending = DEFAULT_MAX_ACK_PENDING
        self.total_max_ack = 0

    def record(self, origin: str) -> bytes:
        persisted: dict[str, Any] = {"origin": origin, "id": self.id}
        if self.clean:
            persisted["clean"] = True
        if self.subs:
            persisted["subs"] = self.subs
        if self.cons:
            persisted["cons"] = self.cons
        if self.pubrel_consumer is not None:
            persisted["pubrel"] = self.pubrel_consumer
        return json.dumps(persisted, separators=(",", ":")).encode()

    def next_pid(self) -> int:
        for _ in range(0xFFFF):
            self.last_pid = self.last_pid % 0xFFFF + 1
            if self.last_pid not in self.pending and self.last_pid not in self.pubrel:
                return self.last_pid
        return 0

    def forget_durable(self, durable: str) -> None:
        for pid, (_ack, dur, _seq) in list(self.pending.items()):
            if dur == durable:
                del self.pending[pid]
        for key in [key for key in self.by_seq if key[0] == durable]:
            del self.by_seq[key]


class AccountManager:
    """The MQTT state of one account on this server: its streams, sessions and retained index."""

    def __init__(self, server: Any, account: Any) -> None:
        self.server = server
        self.account = account
        options = server.config.mqtt
        self.options = options
        self.jsa = _JSA(server, account, options.js_api_timeout or DEFAULT_API_TIMEOUT, options.js_domain)
        #: the JetStream domain in session subjects (`$MQTT.sess.<domain>.<hash>`): the block's
        #: `js_domain`, else the server's own (nats-server's domainTk)
        self.domain = options.js_domain or server.config.jetstream.domain
        self.sessions: dict[str, _Session] = {}
        self.retained: dict[bytes, _Retained] = {}
        self.ready: asyncio.Future[None] | None = None
        self.retained_sub: Any = None
        self.retained_seen = 0
        self.retained_wait: tuple[int, asyncio.Future[None]] | None = None
        #: client id -> when it last took a connection over (the flapper jail)
        self.flappers: dict[str, float] = {}
        self.persist_sub = server.subscribe_internal(account, b"$MQTT.JSA.*.SP.*.*", self._session_persisted)

    def close(self) -> None:
        if self.retained_sub is not None:
            self.server.unsubscribe_internal(self.account, self.retained_sub)
            self.retained_sub = None
        self.server.unsubscribe_internal(self.account, self.persist_sub)
        self.jsa.close()

    def _session_persisted(self, _sub: Any, _src: Any, subject: bytes, _reply: bytes, hdr_len: int, msg: bytes) -> None:
        """Another server saved a session (nats-server's processSessionPersist): if this one holds
        it, its copy is stale and its client, if connected here, is replaced there: closed, with
        no will and no cleanup of the session."""
        tokens = subject.split(b".")
        if len(tokens) != 6 or tokens[2].decode(errors="replace") == self.jsa.server_id:
            return
        try:
            ack = json.loads(bytes(msg[hdr_len:] if hdr_len > 0 else msg))
        except ValueError:
            return
        if not isinstance(ack, dict) or "error" in ack or str(ack.get("domain") or "") != self.domain:
            return
        digest = tokens[4].decode(errors="replace")
        session = next((s for s in self.sessions.values() if s.hash == digest), None)
        if session is None or int(ack.get("seq") or 0) < session.seq:
            return
        self.sessions.pop(session.id, None)
        conn, session.conn = session.conn, None
        if conn is not None and not conn.closed:
            self.flappers[session.id] = time.monotonic()
            conn.will = None
            conn.log_warn(f"Closing because a remote connection has started with the same client ID: {_q(session.id)}")
            conn.close(ClosedReason.DUPLICATE_CLIENT_ID)

    async def replicas(self) -> int:
        """`stream_replicas`, else nats-server's guess: one per address the routes name (a host
        name counts its addresses), between 1 and 3; 1 without a cluster."""
        if self.options.stream_replicas > 0:
            return int(self.options.stream_replicas)
        cluster = self.server.config.cluster
        if not cluster.port:
            return 1
        import ipaddress
        from urllib.parse import urlsplit

        count = 0
        for url in cluster.routes:
            host = urlsplit(url if "://" in url else f"nats://{url}").hostname or ""
            try:
                ipaddress.ip_address(host)
                count += 1
            except ValueError:
                try:
                    infos = await self.server.loop.getaddrinfo(host, None, proto=6)
                except OSError:
                    continue
                count += len({info[4][0] for info in infos})
        return max(1, min(3, count))

    def prepare(self) -> asyncio.Future[None]:
        if self.ready is None:
            self.ready = asyncio.ensure_future(self._create())
        return self.ready

    async def _create(self) -> None:
        replicas = await self.replicas()
        server = self.server
        domain = f" in domain {_q(self.options.js_domain)}" if self.options.js_domain else ""
        server.logger.info(
            f"Creating MQTT streams/consumers with replicas {replicas} for account {_q(self.account.name)}{domain}"
        )
        streams = (
            ("sessions", {"name": SESS_STREAM, "subjects": [self.session_prefix() + ">"], "max_msgs_per_subject": 1}),
            ("messages", {"name": MSGS_STREAM, "subjects": ["$MQTT.msgs.>"], "retention": "interest"}),
            (
                "QoS2 incoming messages",
                {
                    "name": QOS2IN_STREAM,
                    "subjects": ["$MQTT.qos2.in.>"],
                    "max_msgs_per_subject": 1,
                    "discard": "new",
                    "discard_new_per_subject": True,
                },
            ),
            ("QoS2 outgoing PUBREL", {"name": OUT_STREAM, "subjects": ["$MQTT.out.>"], "retention": "interest"}),
            ("retained messages", {"name": RMSGS_STREAM, "subjects": ["$MQTT.rmsgs.>"], "max_msgs_per_subject": 1}),
        )
        account = self.account.name
        for what, config in streams:
            name = config["name"]
            try:
                await self.jsa.api_call("SL", f"STREAM.INFO.{name}")
                continue
            except JSAPIError as problem:
                if problem.err_code != 10059:  # stream not found
                    raise MQTTConnectError(f"lookup {what} stream for account {_q(account)}: {problem}") from None
            full = {"storage": "file", "retention": "limits", "num_replicas": replicas, **config}
            try:
                await self.jsa.api_call("SC", f"STREAM.CREATE.{name}", full)
            except JSAPIError as problem:
                if problem.err_code != 10058:  # created meanwhile by another server
                    raise MQTTConnectError(f"create {what} stream for account {_q(account)}: {problem}") from None
        # every server follows the retained messages into its own index
        inbox = SUB_PREFIX + _nuid().encode()
        self.retained_sub = server.subscribe_internal(self.account, inbox, self._retained_msg)
        name = f"{RMSGS_STREAM}_{_nuid()}"
        try:
            answer = await self.jsa.api_call(
                "CC",
                f"CONSUMER.CREATE.{RMSGS_STREAM}.{name}",
                {
                    "stream_name": RMSGS_STREAM,
                    "config": {
                        "name": name,
                        "filter_subject": "$MQTT.rmsgs.>",
                        "deliver_subject": inbox.decode(),
                        "deliver_policy": "all",
                        "ack_policy": "none",
                        "replay_policy": "instant",
                        "inactive_threshold": 300_000_000_000,
                    },
                },
            )
        except JSAPIError as problem:
            raise MQTTConnectError(f"create retained messages consumer for account {_q(account)}: {problem}") from None
        pending = int(answer.get("num_pending") or 0)
        if pending > self.retained_seen:
            # wait until the index holds what the stream held when the consumer started
            waiter: asyncio.Future[None] = server.loop.create_future()
            self.retained_wait = (pending, waiter)
            try:
                await asyncio.wait_for(waiter, self.jsa.timeout)
            except TimeoutError:
                pass
            self.retained_wait = None

    # ---- retained messages

    def _retained_msg(self, _sub: Any, _src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if not subject.startswith(RMSGS_PREFIX):
            return
        self.retained_seen += 1
        waiting = self.retained_wait
        if waiting is not None and self.retained_seen >= waiting[0] and not waiting[1].done():
            waiting[1].set_result(None)
        tokens = reply.split(b".")
        seq = int(tokens[-4]) if len(tokens) >= 9 and tokens[-4].isdigit() else 0
        hdr = bytes(msg[:hdr_len]) if hdr_len > 0 else b""
        body = bytes(msg[hdr_len:]) if hdr_len > 0 else bytes(msg)
        self.apply_retained(subject[len(RMSGS_PREFIX) :], seq, hdr, body)

    def apply_retained(self, key: bytes, seq: int, hdr: bytes, body: bytes) -> None:
        current = self.retained.get(key)
        if current is not None and seq and current.seq > seq:
            return  # an older record than the one known
        flags_raw = _header(hdr, b"Nmqtt-RFlags") if hdr else None
        if not body:
            self.retained.pop(key, None)
            return
        if flags_raw is None:
            return
        try:
            flags = int(flags_raw.lstrip(b"-"), 16)
        except ValueError:
            return
        if flags >= 0x0F or (flags >> 1) & 3 == 3:
            return
        self.retained[key] = _Retained(seq, flags, body, P.subject_to_topic(key))

    def retained_matching(self, filter_subject: bytes) -> list[tuple[bytes, _Retained]]:
        return [(key, rm) for key, rm in self.retained.items() if subject_matches(filter_subject, key)]

    async def store_retained(self, conn: MQTTConnection, pub: P.Publish, subject: bytes) -> None:
        flags = (pub.qos << 1) | 1
        head = b"NATS/1.0\r\nNmqtt-RTopic:" + pub.topic + b"\r\nNmqtt-RFlags:"
        head += (b"-" if not pub.payload else b"") + b"%x" % flags + b"\r\n"
        head += b"Nmqtt-ROrigin:" + self.jsa.server_id.encode() + b"\r\n"
        if conn.mqtt_username:
            head += b"Nmqtt-RSource:" + conn.mqtt_username.encode() + b"\r\n"
        head += b"\r\n"
        try:
            ack = await self.jsa.store(RMSGS_PREFIX + subject, head, pub.payload)
        except (JSAPIError, MQTTConnectError) as problem:
            conn.log_error(
                f"unable to store retained message for account {_q(self.account.name)}, subject "
                f"{_q(subject.decode(errors='replace'))}: {problem}"
            )
            return
        seq = int(ack.get("seq") or 0)
        self.apply_retained(subject, seq, head, pub.payload)
        if not pub.payload and seq:
            await self.jsa.delete_msg(RMSGS_STREAM, seq)

    # ---- sessions

    def session_prefix(self) -> str:
        return f"$MQTT.sess.{self.domain}." if self.domain else "$MQTT.sess."

    def session_subject(self, session: _Session) -> bytes:
        return f"{self.session_prefix()}{session.hash}".encode()

    async def load_session(self, client_id: str) -> tuple[_Session, bool]:
        session = self.sessions.get(client_id)
        if session is not None:
            return session, True
        probe = _Session(client_id)
        message = await self.jsa.last_msg(SESS_STREAM, self.session_subject(probe))
        if message is None:
            return probe, False
        try:
            record = json.loads(base64.b64decode(message.get("data") or ""))
        except ValueError as problem:
            raise MQTTConnectError(f"unmarshal of session record at sequence {message.get('seq')}: {problem}") from None
        if record.get("id") != client_id:
            raise ConnectRejected("stored session does not match client ID")
        session = _Session(client_id, int(message.get("seq") or 0))
        session.clean = bool(record.get("clean"))
        session.subs = {str(k): int(v) for k, v in (record.get("subs") or {}).items()}
        session.cons = {str(k): v for k, v in (record.get("cons") or {}).items() if isinstance(v, dict)}
        pubrel = record.get("pubrel")
        session.pubrel_consumer = pubrel if isinstance(pubrel, dict) else None
        consumers = list(session.cons.values()) + ([session.pubrel_consumer] if session.pubrel_consumer else [])
        session.total_max_ack = sum(int(c.get("max_ack_pending") or 0) for c in consumers)
        self.sessions[client_id] = session
        return session, True

    async def save_session(self, session: _Session) -> None:
        hdr = b""
        if session.seq:
            hdr = b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence:%d\r\n\r\n" % session.seq
        try:
            # (the reply `$MQTT.JSA.<server>.SP.<session hash>.<n>` tells every server of the
            # account that this one now holds the session: `_session_persisted`)
            ack = await self.jsa.store(
                self.session_subject(session), hdr, session.record(self.jsa.server_id), kind=f"SP.{session.hash}"
            )
        except JSAPIError as problem:
            raise MQTTConnectError(
                f"unable to persist session {_q(session.id)} (seq={session.seq}): {problem}"
            ) from None
        session.seq = int(ack.get("seq") or 0)

    async def clear_session(self, session: _Session) -> None:
        durables = [str(config.get("durable_name") or "") for config in session.cons.values()]
        pubrel = session.pubrel_consumer
        session.pubrel_consumer = None
        seq = session.seq
        session.cons.clear()
        session.subs.clear()
        session.pending.clear()
        session.by_seq.clear()
        session.pubrel.clear()
        session.seq = 0
        session.total_max_ack = 0
        session.last_pid = 0
        for durable in durables:
            if durable:
                await self.jsa.delete_consumer(MSGS_STREAM, durable)
        if pubrel is not None:
            await self.jsa.delete_consumer(OUT_STREAM, str(pubrel.get("durable_name") or ""))
        if seq:
            await self.jsa.delete_msg(SESS_STREAM, seq)


class ConnectRejected(Exception):
    """CONNACK 0x02 (identifier rejected) and close."""


# ---------------------------------------------------------------------------- the connection


class _Reader:
    """Stands in for the client's parser: MQTT packets, handled in order."""

    __slots__ = ("conn", "packets", "closed")

    def __init__(self, conn: MQTTConnection, max_size: int) -> None:
        self.conn = conn
        # until CONNECT is accepted, a packet may not be larger than max_payload
        self.packets = P.Reader(max_size if max_size > 0 else P.MAX_REMAINING)
        self.closed = False

    def feed(self, data: bytes) -> None:
        conn = self.conn
        if conn.closed or conn.disconnected:
            return
        if not conn.connected and not self.packets.buf and data.startswith(b"GET "):
            conn.protocol_error("MQTT clients over websocket must connect to the Websocket port, not the MQTT port")
            return
        reader = self.packets
        packets = reader.feed(data)
        if reader.error is not None:
            packets.append((_ERROR, 0, str(reader.error).encode()))
        for packet in packets:
            if conn.gone():
                return
            if conn.busy is not None:
                conn.backlog.append(packet)
            else:
                conn.handle(packet)


class MQTTConnection(ClientConnection):
    """A client of the `mqtt {}` port (see the module docstring)."""

    __slots__ = (
        "options",
        "mqtt_tls",
        "client_id",
        "mqtt_username",
        "connected",
        "disconnected",
        "session",
        "manager",
        "will",
        "keepalive",
        "last_packet",
        "busy",
        "backlog",
        "publish_qos",
        "acks",
        "acks_paused",
        "sub_qos",
        "inboxes",
    )

    #: `/connz` `type` and the events' `client_type`
    CLIENT_TYPE = "mqtt"

    def __init__(self, server: Any, cid: int, options: Any, tls_context: Any) -> None:
        super().__init__(server, cid)
        self.options = options
        self.mqtt_tls = tls_context
        self.client_id = ""
        self.mqtt_username = ""
        self.connected = False
        self.disconnected = False
        self.session: _Session | None = None
        self.manager: AccountManager | None = None
        self.will: P.Publish | None = None
        self.keepalive = 0.0
        self.last_packet = time.monotonic()
        self.busy: asyncio.Task[None] | None = None
        self.backlog: list[tuple[int, int, bytes]] = []
        #: the QoS of the PUBLISH being delivered (the QoS 0 callback skips QoS 1/2 subscriptions)
        self.publish_qos = 0
        #: pipelined QoS 1 publishes: (packet id, store future), PUBACKed in this order
        self.acks: deque[tuple[int, asyncio.Future[tuple[bytes, bytes]]]] = deque()
        self.acks_paused = False
        #: sid of a filter's NATS subscription -> its granted QoS
        self.sub_qos: dict[bytes, int] = {}
        #: deliver subject of a QoS 1/2 filter's consumer -> (filter, durable, QoS)
        self.inboxes: dict[bytes, tuple[bytes, str, int]] = {}
        self.echo = True
        self.verbose = False
        self.pedantic = False
        self.headers = True
        self.ping_interval = 1.0  # the keep-alive check (MQTT clients get no PING)
        self.parser = _Reader(self, server.config.limits.max_payload)

    def waiting(self) -> bool:
        """A packet's JetStream work is running: later packets wait behind it."""
        return self.busy is not None

    def gone(self) -> bool:
        """Closed, or past DISCONNECT (a call, so a check after an await is not narrowed away)."""
        return bool(self.closed or self.disconnected)

    @property
    def mqtt_client(self) -> str:
        return self.client_id

    def authenticator(self) -> Any:
        return self.server.mqtt_authenticator()

    def log_prefix(self) -> str:
        prefix = f"{self.remote_host}:{self.remote_port} - mid:{self.cid} - "
        if self.client_id:
            prefix += f'"{self.client_id}" - '
        return prefix

    def greet(self) -> None:
        self.log_debug("Client connection created")
        if self.mqtt_tls is not None:
            self.start_tls(self.mqtt_tls, timeout=self.options.tls.timeout if self.options.tls else 2.0)
        if self.authenticator().required:
            timeout = self.options.auth_timeout or self.server.auth_timeout
            self.auth_handle = self.loop.call_later(timeout, self._auth_timeout)

    def _auth_timeout(self) -> None:
        self.auth_handle = None
        if not self.connected and not self.closed:
            self.log_error("Authentication Timeout")
            self.close(ClosedReason.AUTHENTICATION_TIMEOUT)

    def ping_suppressed(self, now: float) -> bool:
        return True

    def _ping_timer(self) -> None:
        """The keep-alive: a client silent for 1.5 times its keep-alive is closed (its will is sent)."""
        self.ping_handle = None
        if self.closed:
            return
        if self.keepalive and time.monotonic() - self.last_packet > self.keepalive:
            self.log_error("read error: i/o timeout (keep-alive)")
            self.close(ClosedReason.READ_ERROR)
            return
        self.ping_handle = self.loop.call_later(self.ping_interval, self._ping_timer)

    def restart_pings(self, first: float) -> None:
        pass

    def send_err(self, err: Any, *args: object) -> None:
        pass  # MQTT has no -ERR: nats-server logs and, where it must, closes

    def auth_violation(self) -> None:
        self.send(P.encode_connack(False, P.NOT_AUTHORIZED))
        self.close(ClosedReason.AUTHENTICATION_VIOLATION)

    def protocol_error(self, text: str) -> None:
        self.log_error(text)
        self.close(ClosedReason.PROTOCOL_VIOLATION)

    def out(self, data: bytes) -> None:
        """Queue MQTT output (flushed after the current callback chain)."""
        if self.closed:
            return
        self.send(data)
        self.server.schedule_flush()

    # ---- packets, in order

    def handle(self, packet: tuple[int, int, bytes]) -> None:
        kind, flags, body = packet
        if kind == _ERROR:
            self.protocol_error(body.decode())
            return
        self.last_packet = time.monotonic()
        try:
            work = self._dispatch(kind, flags, body)
        except P.MQTTError as problem:
            self.protocol_error(str(problem))
            return
        except P.ConnectRefused as refused:
            self.send(P.encode_connack(False, refused.code))
            self.protocol_error(str(refused))
            return
        if work is not None:
            self.busy = asyncio.ensure_future(self._run(work))
            if self.transport is not None:
                try:
                    self.transport.pause_reading()
                except (RuntimeError, AttributeError):
                    pass

    async def _run(self, work: Awaitable[None]) -> None:
        try:
            await work
        except P.MQTTError as problem:
            self.protocol_error(str(problem))
        except (MQTTConnectError, JSAPIError) as problem:
            self.protocol_error(f"unable to connect: {problem}" if not self.connected else str(problem))
        except Exception as problem:  # never a traceback on the loop: log and close, as any error
            self.protocol_error(f"internal error: {problem!r}")
        finally:
            if self.pending:
                flush_pending(self.pending)
        self.busy = None
        while self.backlog and not self.waiting() and not self.gone():
            self.handle(self.backlog.pop(0))
        if self.pending:
            flush_pending(self.pending)
        if not self.waiting() and not self.acks_paused and not self.gone() and self.transport is not None:
            try:
                self.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    def _dispatch(self, kind: int, flags: int, body: bytes) -> Awaitable[None] | None:
        if not self.connected and kind != P.CONNECT:
            raise P.MQTTError(f"the first packet should be a CONNECT (16), got {kind << 4}")
        _check_fixed_header(kind, flags, len(body))
        if kind == P.PUBLISH:
            return self._publish(P.decode_publish(flags, body))
        if kind == P.PUBACK:
            pid = P.decode_pid(kind, flags, body)
            self._bound()
            self._puback(pid)
            return None
        if kind == P.PUBREC:
            pid = P.decode_pid(kind, flags, body)
            self._bound()
            self._pubrec(pid)
            return None
        if kind == P.PUBREL:
            return self._pubrel(P.decode_pid(kind, flags, body))
        if kind == P.PUBCOMP:
            pid = P.decode_pid(kind, flags, body)
            session = self.session
            if session is not None and session.conn is self:
                ack = session.pubrel.pop(pid, None)
                if ack and self.manager is not None:
                    self.manager.jsa.ack(ack)
            return None
        if kind == P.SUBSCRIBE:
            pid, filters = P.decode_subscribe(flags, body)
            return self._subscribe(pid, filters)
        if kind == P.UNSUBSCRIBE:
            pid, topics = P.decode_unsubscribe(flags, body)
            return self._unsubscribe(pid, topics)
        if kind == P.PINGREQ:
            self.send(P.PINGRESP_PACKET)
            return None
        if kind == P.CONNECT:
            if self.connected:
                raise P.MQTTError("received a second CONNECT packet")
            return self._connect(P.decode_connect(flags, body))
        if kind == P.DISCONNECT:
            self.will = None
            self.disconnected = True
            self.close(ClosedReason.CLIENT_CLOSED)
            return None
        raise P.MQTTError(f"received unknown packet type {kind}")

    # ---- CONNECT

    async def _connect(self, connect: P.Connect) -> None:
        if connect.will_topic is not None and self.options.reject_qos2_publish and connect.will_qos == 2:
            self.send(P.encode_connack(False, 0x10))
            raise P.MQTTError("server does not accept QoS2 for Will messages")
        client_id = connect.client_id
        if not client_id:
            if not connect.clean:
                self.send(P.encode_connack(False, P.IDENTIFIER_REJECTED))
                raise P.MQTTError("when client ID is empty, clean session flag must be set to 1")
            client_id = _nuid()
        if any(char in client_id for char in " \t\r\n\f.*>"):
            self.client_id = client_id
            self.send(P.encode_connack(False, P.IDENTIFIER_REJECTED))
            raise P.MQTTError(f'invalid character in client ID "{client_id}"')
        self.client_id = client_id
        if connect.will_topic is not None:
            if not connect.will_topic:
                raise P.MQTTError("empty Will topic not allowed")
            try:
                subject = P.topic_to_subject(connect.will_topic)
            except P.TopicError as problem:
                raise P.MQTTError(str(problem)) from None
            self.will = P.Publish(
                connect.will_topic, subject, connect.will_qos, connect.will_retain, False, 0, connect.will_message
            )
        if connect.username is not None:
            if not connect.username:
                self.send(P.encode_connack(False, P.BAD_CREDENTIALS))
                raise P.MQTTError("empty user name not allowed")
            self.mqtt_username = connect.username
        if connect.keepalive:
            self.keepalive = float(int(connect.keepalive * 1.5))
        if self.auth_handle is not None:
            self.auth_handle.cancel()
            self.auth_handle = None
        # authenticate as nats-server does: the password is also the token
        opts: dict[str, Any] = {"verbose": False, "pedantic": False, "echo": True, "headers": True}
        if connect.username is not None:
            opts["user"] = connect.username
        if connect.password is not None:
            password = connect.password.decode(errors="replace")
            opts["pass"] = password
            opts["auth_token"] = password
        self.opts = opts
        auth = self.authenticator()
        result = auth.authenticate(opts, nonce="", host=self.remote_host or "")
        if result is None:
            user = f' - User "{connect.username}"' if connect.username else ""
            self.log_error(f"authentication error{user}")
            self.auth_violation()
            return
        if result.account != self.account.name or not self.authorized:
            self._rebind_account(result)
        else:
            self._bind(result)
        self.authorized = True
        self.connect_seen = True
        self._update_fast_pub()
        manager = self.server.mqtt_manager(self.account)
        await manager.prepare()
        if self.closed:
            return
        jailed = manager.flappers.get(client_id)
        if jailed is not None:
            if time.monotonic() - jailed < FLAPPER_JAIL:
                # two devices keep taking one client id from each other: hold this one for a
                # second, then close it without a CONNACK (nats-server's flapper jail)
                await asyncio.sleep(FLAPPER_JAIL)
                self.close(ClosedReason.DUPLICATE_CLIENT_ID)
                return
            del manager.flappers[client_id]
        try:
            session, exists = await manager.load_session(client_id)
        except ConnectRejected as problem:
            self.send(P.encode_connack(False, P.IDENTIFIER_REJECTED))
            raise MQTTConnectError(f"{problem} for account {_q(self.account.name)}, session {_q(client_id)}") from None
        present = False
        if exists:
            if connect.clean or session.clean:
                await manager.clear_session(session)
            else:
                present = True
            previous = session.conn
            if previous is not None and previous is not self and not previous.closed:
                manager.flappers[client_id] = time.monotonic()
                previous.will = None
                self.log_warn(
                    f"Replacing old client {_q(previous.log_prefix())} since both have the same client ID {_q(client_id)}"
                )
                previous.close(ClosedReason.DUPLICATE_CLIENT_ID)
        if self.gone():
            return
        session.conn = self
        session.clean = connect.clean
        session.max_pending = self.options.max_ack_pending or DEFAULT_MAX_ACK_PENDING
        session.pending.clear()
        session.by_seq.clear()
        session.pubrel.clear()  # (the PUBREL records come again from their consumer)
        manager.sessions[client_id] = session
        self.session = session
        self.manager = manager
        await manager.save_session(session)
        if self.gone():
            return
        self.connected = True
        reader = getattr(self.parser, "parser", self.parser)  # (under a WebSocket frame reader)
        if isinstance(reader, _Reader):
            reader.packets.max_size = P.MAX_REMAINING
        if not self.announced and self.server.events is not None:
            self.announced = True
            self.server.events.client_connected(self)
        self.send(P.encode_connack(present, P.ACCEPTED))
        self.log_debug("Client connected")
        if session.subs:
            await self._restore_subscriptions(session)

    # ---- PUBLISH (from the client)

    def _publish(self, pub: P.Publish) -> Awaitable[None] | None:
        if pub.qos == 2 and self.options.reject_qos2_publish:
            raise P.MQTTError("QoS=2 is disabled for PUBLISH messages")
        subject = pub.subject
        if self.account.mappings:
            mapped = self.account.map_subject(subject)
            if mapped != subject:
                subject = mapped
                pub.topic = P.subject_to_topic(mapped)
        pub.subject = subject
        size = len(pub.payload) + 25
        if pub.qos == 2:
            size += 1 + len(b"Nmqtt-Subject:") + len(subject) + 2
        if self.max_payload > 0 and size > self.max_payload:
            self.log_error(f"maximum payload exceeded: {size} vs {self.max_payload}")
            self.close(ClosedReason.MAX_PAYLOAD_EXCEEDED)
            return None
        if pub.qos == 0 and not pub.retain:
            self._deliver(pub)
            return None
        if pub.qos == 1 and not pub.retain:
            # pipelined: delivered now, stored in `$MQTT_msgs` without waiting, PUBACKs sent in
            # order as the stores are acknowledged (MQTT-4.6.0-2)
            manager = self.manager
            assert manager is not None
            if self._deliver(pub):
                hdr = _pub_header(1)
                future = manager.jsa.start("MS", MSGS_PREFIX + pub.subject, pub.payload, hdr)
            else:
                future = self.loop.create_future()
                future.set_result((b"", b"{}"))
            self.acks.append((pub.pid, future))
            future.add_done_callback(self._acks_ready)
            if len(self.acks) > _ACKS_HIGH and not self.acks_paused and self.transport is not None:
                self.acks_paused = True
                self.transport.pause_reading()
            return None
        return self._publish_async(pub)

    def _acks_ready(self, _future: Any) -> None:
        acks = self.acks
        while acks and acks[0][1].done():
            pid, future = acks.popleft()
            if self.closed:
                continue
            try:
                _hdr, answer = future.result()
                _JSA.pub_ack(answer)
            except (JSAPIError, MQTTConnectError, asyncio.CancelledError) as problem:
                acks.clear()
                self.protocol_error(str(problem))
                return
            self.out(P.encode_pid(P.PUBACK, pid))
        if self.acks_paused and len(acks) < _ACKS_LOW and not self.closed:
            self.acks_paused = False
            if not self.waiting() and self.transport is not None:
                self.transport.resume_reading()

    def _allowed(self, subject: bytes) -> bool:
        perms = self.perms
        if perms is not None and perms.restricts_publish and not perms.can_publish(subject):
            self.log_error(f'Publish Violation - {self._user_desc()}, Subject "{subject.decode(errors="replace")}"')
            return False
        return True

    def _deliver(self, pub: P.Publish) -> bool:
        """The NATS side of a PUBLISH, if the client may publish there: to every subscriber (NATS,
        MQTT, routes, leaf nodes)."""
        if not self._allowed(pub.subject):
            return False
        self._fan_out(pub)
        return True

    def _fan_out(self, pub: P.Publish) -> None:
        subject = pub.subject
        hdr = _pub_header(pub.qos)
        msg = hdr + pub.payload
        self.in_msgs += 1
        self.in_bytes += len(pub.payload)
        self.publish_qos = pub.qos
        try:
            deliver(self, subject, b"", len(hdr), msg)
        finally:
            self.publish_qos = 0

    async def _publish_async(self, pub: P.Publish) -> None:
        if pub.qos == 2:
            await self._stage_qos2(pub)
            return
        await self._initiate(pub)
        if pub.qos == 1:
            self.out(P.encode_pid(P.PUBACK, pub.pid))

    async def _initiate(self, pub: P.Publish) -> None:
        """A message's way in (nats-server's mqttInitiateMsgDelivery), for a retained or QoS 1/2
        PUBLISH, a released QoS 2 one and a will: if the client may publish there, the retained
        copy first, then every subscriber, then for QoS 1/2 `$MQTT_msgs`."""
        manager = self.manager
        assert manager is not None
        if not self._allowed(pub.subject):
            return
        if pub.retain:
            await manager.store_retained(self, pub, pub.subject)
        self._fan_out(pub)
        self.server.schedule_flush()  # (a task, not a read: nobody else flushes the deliveries)
        if pub.qos:
            await manager.jsa.store(MSGS_PREFIX + pub.subject, _pub_header(pub.qos), pub.payload)

    async def _stage_qos2(self, pub: P.Publish) -> None:
        manager = self.manager
        assert manager is not None
        flags = (2 << 1) | (1 if pub.retain else 0) | (0x08 if pub.dup else 0)
        hdr = _pub_header(2, flags, pub.subject)
        subject = QOS2IN_PREFIX + f"{self.client_id}.{pub.pid}".encode()
        try:
            await manager.jsa.store(subject, hdr, pub.payload)
        except JSAPIError as problem:
            if problem.err_code != 10077:  # the same packet id again: already staged
                raise
        self.out(P.encode_pid(P.PUBREC, pub.pid))

    async def _pubrel(self, pid: int) -> None:
        manager = self.manager
        assert manager is not None
        try:
            subject = QOS2IN_PREFIX + f"{self.client_id}.{pid}".encode()
            stored = await manager.jsa.last_msg(QOS2IN_STREAM, subject)
            if stored is None:
                return
            await manager.jsa.delete_msg(QOS2IN_STREAM, int(stored.get("seq") or 0))
            hdr = base64.b64decode(stored.get("hdrs") or "")
            value = _header(hdr, b"Nmqtt-Pub") or b""
            original = _header(hdr, b"Nmqtt-Subject") or b""
            if not value.startswith(b"2") or not original:
                raise P.MQTTError("invalid message in QoS2 PUBREL stream")
            # (a flags character that is not hex reads as no flags, as nats-server reads it)
            retain = len(value) > 1 and value[1:2] in b"13579bdf"
            payload = base64.b64decode(stored.get("data") or "")
            await self._initiate(P.Publish(P.subject_to_topic(original), original, 2, retain, False, pid, payload))
        finally:
            self.out(P.encode_pid(P.PUBCOMP, pid))

    # ---- deliveries (to the client)

    def _deliver_qos0(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if src is None and reply.startswith(b"$JS.ACK."):
            return  # a JetStream push delivery onto a subject this filter matches: not for MQTT
        if subject[:1] == b"$" and _is_reserved_filter(sub.subject):
            return
        if self.sub_qos.get(sub.sid, 0):
            # a QoS 1/2 message reaches a QoS 1/2 subscription through its consumer instead
            if isinstance(src, MQTTConnection):
                if src.publish_qos:
                    return
            elif hdr_len > 0 and _msg_qos(bytes(msg[:hdr_len])):
                return
        payload = msg[hdr_len:] if hdr_len > 0 else msg
        self._send_publish(P.subject_to_topic(subject), bytes(payload), 0, 0, False)

    def _deliver_qos12(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        session = self.session
        inbox = self.inboxes.get(sub.subject)
        if session is None or inbox is None or session.conn is not self or not subject.startswith(MSGS_PREFIX):
            return
        filter_subject, durable, sub_qos = inbox
        hdr = bytes(msg[:hdr_len]) if hdr_len > 0 else b""
        qos = min(_msg_qos(hdr), sub_qos)
        if qos == 0:
            return
        stripped = subject[len(MSGS_PREFIX) :]
        manager = self.manager
        assert manager is not None
        if stripped[:1] == b"$" and _is_reserved_filter(filter_subject):
            manager.jsa.ack(reply)
            return
        tokens = reply.split(b".")
        seq = int(tokens[-4]) if len(tokens) >= 9 and tokens[-4].isdigit() else 0
        deliveries = int(tokens[-5]) if len(tokens) >= 9 and tokens[-5].isdigit() else 1
        pid = session.by_seq.get((durable, seq))
        dup = False
        if pid is not None:
            if pid in session.pubrel:
                return
            dup = deliveries > 1
        else:
            if len(session.pending) >= session.max_pending:
                return  # JetStream redelivers it after ack_wait
            pid = session.next_pid()
            if not pid:
                return
            session.by_seq[(durable, seq)] = pid
        session.pending[pid] = (reply, durable, seq)
        payload = msg[hdr_len:] if hdr_len > 0 else msg
        self._send_publish(P.subject_to_topic(stripped), bytes(payload), qos, pid, dup)

    def _send_publish(self, topic: bytes, payload: bytes, qos: int, pid: int, dup: bool, retain: bool = False) -> None:
        if self.closed:
            return
        self.out_msgs += 1
        self.out_bytes += len(payload)
        self.out(P.encode_publish(topic, payload, qos, pid, retain, dup))

    def _puback(self, pid: int) -> None:
        session = self.session
        if session is None:
            return
        entry = session.pending.pop(pid, None)
        if entry is None:
            return
        ack, durable, seq = entry
        if session.by_seq.get((durable, seq)) == pid:
            del session.by_seq[(durable, seq)]
        if ack and self.manager is not None:
            self.manager.jsa.ack(ack)

    def _bound(self) -> None:
        """PUBACK and PUBREC need the session bound to this connection (nats-server's check)."""
        session = self.session
        if session is None or session.conn is not self:
            raise P.MQTTError("invalid MQTT session")

    def _pubrec(self, pid: int) -> None:
        """A QoS 2 delivery received (nats-server's way): a PUBREL record goes to `$MQTT_out`
        (`$MQTT.out.pubrel.<hash>`, header `Nmqtt-PubRel: <pid>`), whose consumer delivers it
        (`_deliver_pubrel`: PUBREL to the client, again after ack_wait until PUBCOMP); once it is
        stored the message is acknowledged to its consumer (a failed store closes the connection).
        Not awaited: the acknowledgement must happen even if the client leaves right after."""
        session = self.session
        manager = self.manager
        assert session is not None and manager is not None
        if session.pubrel_consumer is not None:
            session.pubrel.setdefault(pid, b"")
        entry = session.pending.pop(pid, None)
        if entry is not None and session.by_seq.get(entry[1:]) == pid:
            del session.by_seq[entry[1:]]
        hdr = b"NATS/1.0\r\nNmqtt-PubRel:%d\r\n\r\n" % pid
        future = manager.jsa.start("MS", f"$MQTT.out.pubrel.{session.hash}".encode(), b"", hdr)

        def stored(done: asyncio.Future[tuple[bytes, bytes]]) -> None:
            try:
                _JSA.pub_ack(done.result()[1])
            except (JSAPIError, MQTTConnectError, asyncio.CancelledError) as problem:
                if not self.closed:
                    self.protocol_error(str(problem))
                return
            if entry is not None and entry[0]:
                manager.jsa.ack(entry[0])

        future.add_done_callback(stored)

    def _deliver_pubrel(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        session = self.session
        if session is None or session.conn is not self or not reply or hdr_len <= 0:
            return
        value = _header(bytes(msg[:hdr_len]), b"Nmqtt-PubRel")
        if not value or not value.isdigit() or not 0 < int(value) <= 0xFFFF:
            return
        pid = int(value)
        session.pubrel[pid] = reply
        self.out(P.encode_pid(P.PUBREL, pid))

    def _consumer_config(self, durable: str, filter_subject: str, inbox: str, max_ack: int) -> dict[str, Any]:
        """A durable push consumer of the MQTT layer, as nats-server configures them (and stores
        them in the session record)."""
        options = self.options
        config: dict[str, Any] = {
            "durable_name": durable,
            "deliver_policy": "new",
            "ack_policy": "explicit",
            "ack_wait": int((options.ack_wait or DEFAULT_ACK_WAIT) * 1e9),
            "filter_subject": filter_subject,
            "replay_policy": "instant",
            "max_ack_pending": max_ack,
            "deliver_subject": inbox,
            "num_replicas": 0,
        }
        if options.consumer_memory_storage:
            config["mem_storage"] = True
        if options.consumer_inactive_threshold:
            config["inactive_threshold"] = int(options.consumer_inactive_threshold * 1e9)
        return config

    async def _ensure_pubrel(self) -> None:
        """The session's PUBREL consumer and this connection's subscription to it (before its
        first QoS 2 subscription)."""
        session = self.session
        manager = self.manager
        assert session is not None and manager is not None
        inbox = f"$MQTT.deliver.pubrel.{session.hash}".encode()
        if inbox not in self.subs:
            sub = Subscription(self, inbox, inbox, None, 0, self._deliver_pubrel)
            self.subs[inbox] = sub
            self.account.subscribe(sub)
        if session.pubrel_consumer is not None:
            return
        options = self.options
        max_ack = options.max_ack_pending or DEFAULT_MAX_ACK_PENDING
        if session.total_max_ack + max_ack > MAX_ACK_TOTAL:
            raise MQTTConnectError(
                f"max_ack_pending for all consumers would be {session.total_max_ack + max_ack} which exceeds the "
                f"limit of {MAX_ACK_TOTAL}"
            )
        durable = f"$MQTT_PUBREL_{session.hash}"
        config = self._consumer_config(durable, f"$MQTT.out.pubrel.{session.hash}", inbox.decode(), max_ack)
        try:
            await manager.jsa.api_call(
                "CC", f"CONSUMER.DURABLE.CREATE.{OUT_STREAM}.{durable}", {"stream_name": OUT_STREAM, "config": config}
            )
        except JSAPIError as problem:
            self.log_error(f"Unable to add JetStream consumer for PUBREL for client {_q(session.id)}: err={problem}")
            raise MQTTConnectError(str(problem)) from None
        session.pubrel_consumer = config
        session.total_max_ack += max_ack

    # ---- SUBSCRIBE / UNSUBSCRIBE

    def _subscribe_one(self, subject: bytes, sid: bytes, qos: int) -> bool:
        """The NATS subscription of a filter (QoS 0 deliveries); False when refused."""
        if not valid_sublist_subject(subject):
            return False
        existing = self.subs.get(sid)
        if existing is not None:
            return True
        perms = self.perms
        if perms is not None and not perms.can_subscribe(subject, None):
            self.log_error(
                f'Subscription Violation - {self._user_desc()}, Subject "{subject.decode(errors="replace")}", '
                f"SID {sid.decode(errors='replace')}"
            )
            return False
        limits = self.server.config.limits
        if limits.max_subscriptions and len(self.subs) >= limits.max_subscriptions:
            self.log_error(f"Maximum Subscriptions Exceeded (max={limits.max_subscriptions})")
            return False
        deny = perms.sub_deny if perms is not None else None
        if (
            perms is not None
            and deny is not None
            and self.deny_filter is None
            and perms.needs_deny_filter(subject, None)
        ):
            self.deny_filter = DenyFilter(deny)
        sub = Subscription(self, subject, sid, None, 0, self._deliver_qos0)
        self.subs[sid] = sub
        self.account.subscribe(sub)
        return True

    def _unsubscribe_one(self, sid: bytes) -> None:
        self.sub_qos.pop(sid, None)
        self.inboxes.pop(sid, None)
        sub = self.subs.pop(sid, None)
        if sub is not None:
            self.account.unsubscribe(sub)

    async def _consumer(self, subject: bytes, sid: str, qos: int, from_packet: bool) -> bool:
        """The durable consumer behind a QoS 1/2 filter (or its removal for QoS 0)."""
        session = self.session
        manager = self.manager
        assert session is not None and manager is not None
        existing = session.cons.get(sid)
        if existing is not None:
            if qos == 0:
                session.cons.pop(sid, None)
                durable = str(existing.get("durable_name") or "")
                session.total_max_ack -= int(existing.get("max_ack_pending") or 0)
                session.forget_durable(durable)
                self._unsubscribe_one(str(existing.get("deliver_subject") or "").encode())
                await manager.jsa.delete_consumer(MSGS_STREAM, durable)
                return True
            if from_packet:
                return True
        if qos == 0:
            return True
        if existing is None:
            options = self.options
            max_ack = options.max_ack_pending or DEFAULT_MAX_ACK_PENDING
            if session.total_max_ack + max_ack > MAX_ACK_TOTAL:
                self.log_error(
                    f"max_ack_pending for all consumers would be {session.total_max_ack + max_ack} which exceeds "
                    f"the limit of {MAX_ACK_TOTAL}"
                )
                return False
            inbox = (SUB_PREFIX + _nuid().encode()).decode()
            durable = f"{session.hash}_{_nuid()}"
            config = self._consumer_config(durable, (MSGS_PREFIX + subject).decode(), inbox, max_ack)
            try:
                await manager.jsa.api_call(
                    "CC",
                    f"CONSUMER.DURABLE.CREATE.{MSGS_STREAM}.{durable}",
                    {"stream_name": MSGS_STREAM, "config": config},
                )
            except (JSAPIError, MQTTConnectError) as problem:
                self.log_error(
                    f"Unable to add JetStream consumer for subscription on {_q(subject.decode())}: err={problem}"
                )
                return False
            session.cons[sid] = config
            session.total_max_ack += max_ack
            existing = config
        inbox_b = str(existing.get("deliver_subject") or "").encode()
        if inbox_b and inbox_b not in self.inboxes:
            self.inboxes[inbox_b] = (subject, str(existing.get("durable_name") or ""), qos)
        if inbox_b and inbox_b not in self.subs:
            sub = Subscription(self, inbox_b, inbox_b, None, 0, self._deliver_qos12)
            self.subs[inbox_b] = sub
            self.account.subscribe(sub)
        return True

    async def _subscribe(self, pid: int, filters: list[tuple[bytes, int]]) -> None:
        session = self.session
        manager = self.manager
        assert session is not None and manager is not None
        codes: list[int] = []
        retained: list[tuple[bytes, int, _Retained]] = []
        changed = False
        for topic, requested in filters:
            qos = requested
            if qos == 2 and self.options.downgrade_qos2_subscribe:
                self.log_warn(
                    f"Downgrading subscription QoS2 to QoS1 for {_q(topic.decode(errors='replace'))}, as configured"
                )
                qos = 1
            try:
                subject = P.topic_to_subject(topic, wildcards=True)
            except P.TopicError as problem:
                self.log_error(f"invalid topic {_q(topic.decode(errors='replace'))}: {problem}")
                codes.append(P.SUBACK_FAILURE)
                continue
            if subject.startswith(b"$MQTT."):
                codes.append(P.SUBACK_FAILURE)
                continue
            if qos == 2:
                try:
                    await self._ensure_pubrel()
                except MQTTConnectError as problem:
                    self.log_error(f"failed to initialize PUBREL processing: {problem}")
                    codes.append(P.SUBACK_FAILURE)
                    continue
            ok = await self._add_filter(subject, qos, True)
            if not ok:
                codes.append(P.SUBACK_FAILURE)
                continue
            codes.append(qos)
            key = subject.decode()
            if session.subs.get(key) != qos:
                session.subs[key] = qos
                changed = True
            matches = manager.retained_matching(subject)
            if _needs_parent(subject):
                matches += manager.retained_matching(subject[:-2])
            for retained_key, rm in matches:
                retained.append((retained_key, qos, rm))
        if changed:
            await manager.save_session(session)
        self.out(P.encode_suback(pid, codes))
        for _key, sub_qos, rm in retained:
            qos = min((rm.flags >> 1) & 3, sub_qos)
            rpid = 0
            if qos:
                rpid = session.next_pid()
                if rpid:
                    session.pending[rpid] = (b"", "", 0)
                else:
                    qos = 0
            self._send_publish(rm.topic, rm.payload, qos, rpid, False, True)

    async def _add_filter(self, subject: bytes, qos: int, from_packet: bool) -> bool:
        session = self.session
        assert session is not None
        sid = subject.decode()
        if not self._subscribe_one(subject, subject, qos):
            return False
        self.sub_qos[subject] = qos
        if not await self._consumer(subject, sid, qos, from_packet):
            self._unsubscribe_one(subject)
            return False
        if _needs_parent(subject):
            parent = subject[:-2]
            parent_sid = (parent.decode() + FWC_SUFFIX).encode()
            if not self._subscribe_one(parent, parent_sid, qos):
                return False
            self.sub_qos[parent_sid] = qos
            if not await self._consumer(parent, parent_sid.decode(), qos, from_packet):
                self._unsubscribe_one(parent_sid)
                return False
        return True

    async def _restore_subscriptions(self, session: _Session) -> None:
        if session.pubrel_consumer is not None:
            await self._ensure_pubrel()
        for subject, qos in list(session.subs.items()):
            await self._add_filter(subject.encode(), qos, False)

    async def _unsubscribe(self, pid: int, topics: list[bytes]) -> None:
        session = self.session
        manager = self.manager
        assert session is not None and manager is not None
        changed = False
        for topic in topics:
            try:
                subject = P.topic_to_subject(topic, wildcards=True)
            except P.TopicError as problem:
                self.log_error(f"invalid topic {_q(topic.decode(errors='replace'))}: {problem}")
                continue
            sids = [subject.decode()]
            if _needs_parent(subject):
                sids.append(subject[:-2].decode() + FWC_SUFFIX)
            for sid in sids:
                config = session.cons.pop(sid, None)
                if config is not None:
                    durable = str(config.get("durable_name") or "")
                    session.total_max_ack -= int(config.get("max_ack_pending") or 0)
                    session.forget_durable(durable)
                    self._unsubscribe_one(str(config.get("deliver_subject") or "").encode())
                    await manager.jsa.delete_consumer(MSGS_STREAM, durable)
                self._unsubscribe_one(sid.encode())
            if session.subs.pop(subject.decode(), None) is not None:
                changed = True
        if changed:
            await manager.save_session(session)
        self.out(P.encode_unsuback(pid))

    # ---- close

    def closed_hook(self, reason: ClosedReason) -> None:
        will, self.will = self.will, None
        session = self.session
        manager = self.manager
        if will is not None and self.connected and not self.disconnected and manager is not None:
            self._send_will(will, manager)
        super().closed_hook(reason)
        if session is not None and session.conn is self:
            session.conn = None
            session.pending.clear()
            session.by_seq.clear()
            if session.clean and manager is not None:
                manager.sessions.pop(session.id, None)
                task = asyncio.ensure_future(manager.clear_session(session))
                task.add_done_callback(_quiet)
        if self.busy is not None and not self.busy.done():
            self.busy.cancel()

    def _send_will(self, will: P.Publish, manager: AccountManager) -> None:
        """The will, published as the client would have (nats-server's mqttHandleWill)."""
        if self.account.mappings:
            will.subject = self.account.map_subject(will.subject)
            will.topic = P.subject_to_topic(will.subject)
        if will.retain or will.qos:
            task = asyncio.ensure_future(self._initiate(will))
            task.add_done_callback(_quiet)
        else:
            self._deliver(will)
            self.server.schedule_flush()


def _q(text: str) -> str:
    """Go's %q of a string (what nats-server's log lines quote with)."""
    return json.dumps(text, ensure_ascii=False)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


_HEADER_FLAGS = {
    P.CONNECT: 0,
    P.PUBACK: 0,
    P.PUBREC: 0,
    P.PUBCOMP: 0,
    P.PINGREQ: 0,
    P.DISCONNECT: 0,
    P.PUBREL: 2,
    P.SUBSCRIBE: 2,
    P.UNSUBSCRIBE: 2,
}
_REMAINING = {P.PUBACK: 2, P.PUBREC: 2, P.PUBREL: 2, P.PUBCOMP: 2, P.PINGREQ: 0, P.DISCONNECT: 0}


def _check_fixed_header(kind: int, flags: int, length: int) -> None:
    """nats-server's checks of the fixed header before a packet is read."""
    expected = _HEADER_FLAGS.get(kind)
    if expected is not None and flags != expected:
        raise P.MQTTError(f"invalid fixed header flags {flags:x} for packet type {kind << 4:x}")
    size = _REMAINING.get(kind)
    if size is not None and length != size:
        raise P.MQTTError(f"invalid remaining length {length} for packet type {kind << 4:x}")


__all__ = ["AccountManager", "MQTTConnection", "name_hash"]
