"""NATS over WebSocket (layer 2): the `websocket {}` listener's clients, as nats-server serves them
(browsers with nats.ws / nats.js `wsconnect`, dashboards, tools behind HTTP proxies).

A WebSocket client is a `ClientConnection` whose bytes go through this module both ways:

* **Handshake** (RFC 6455 §4.2): the HTTP/1.1 upgrade request is read (TLS first on a `wss` port),
  checked in nats-server's order with its reasons (405 `request method must be GET`, 400 `'Host'
  missing in request`, `invalid value for header 'Upgrade'` / `'Connection'`, `key missing`,
  `invalid websocket key`, `invalid version`, 403 `origin not allowed: …` for `same_origin` /
  `allowed_origins`, 400 `client sent data before handshake is complete`) and answered `101
  Switching Protocols` with the accept key, `permessage-deflate` when `compression` is on and the
  client offers it (no context takeover either way, as nats-server), and `Nats-No-Masking: true`
  when the client asks for it. A refusal is Go's plain-text error response; the socket then closes.
  Then the server's INFO goes out as the first frame, as on the client port.
* **Frames in** (`FrameReader`, sans-IO): masked client frames (a missing mask is a protocol
  error), text or binary messages in any fragmentation, their payloads handed to the NATS parser as
  they arrive; PING answered with PONG; CLOSE echoed and the connection closed (`Client Closed`);
  compressed messages inflated. Every malformed frame gets nats-server's close frame: status 1002
  and its words (`mask bit missing`, `unknown opcode N`, `invalid continuation frame`, ...).
* **Frames out**: each flush of the connection's output is one binary frame (unmasked, deflated
  when negotiated); closing sends a CLOSE with nats-server's status for the reason (1000 client
  closed, 1008 auth and limits, 1002 protocol errors, 1009 max payload, 1001 shutdown/stale, 1011).

Leaf nodes use WebSocket too (nats-server's `/leafnode` path): `WebSocketLeafConnection` dials a hub's
websocket port for a `ws://` / `wss://` remote (masked frames, unless the hub accepts
`Nats-No-Masking`), and an upgrade to `/leafnode` on this server's websocket port turns the socket
over to a `WebSocketHubLeafConnection` (the client object that read the request steps aside).

Layer 2; imports the client and leaf connections and the stdlib.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from jsedge.errors import ClosedReason
from jsedge.routing.client import ClientConnection
from jsedge.routing.connection import Connection
from jsedge.routing.leaf import LeafConnection
from jsedge.routing.mqtt import MQTTConnection

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
FINAL, RSV1, RSV23, MASK = 0x80, 0x40, 0x30, 0x80
MAX_CONTROL = 125
#: the longest upgrade request read (Go's http server default is 1 MiB; a browser's is ~1 KiB)
MAX_REQUEST = 64 * 1024
PMC_RESPONSE = (
    b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
)
NO_MASKING_RESPONSE = b"Nats-No-Masking: true\r\n"
_DEFLATE_TAIL = b"\x00\x00\xff\xff"

_STATUS_TEXT = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 404: "Not Found"}

#: nats-server's close status for a connection's closing reason (wsEnqueueCloseMessage)
_POLICY = {
    ClosedReason.AUTHENTICATION_TIMEOUT,
    ClosedReason.AUTHENTICATION_VIOLATION,
    ClosedReason.SLOW_CONSUMER_PENDING_BYTES,
    ClosedReason.SLOW_CONSUMER_WRITE_DEADLINE,
    ClosedReason.MAX_ACCOUNT_CONNECTIONS_EXCEEDED,
    ClosedReason.MAX_CONNECTIONS_EXCEEDED,
    ClosedReason.MAX_CONTROL_LINE_EXCEEDED,
    ClosedReason.MAX_SUBSCRIPTIONS_EXCEEDED,
    ClosedReason.AUTHENTICATION_EXPIRED,
}


def _close_status(reason: ClosedReason) -> int:
    if reason == ClosedReason.CLIENT_CLOSED:
        return 1000
    if reason in _POLICY:
        return 1008
    if reason == ClosedReason.TLS_HANDSHAKE_ERROR:
        return 1015
    if reason in (ClosedReason.PARSE_ERROR, ClosedReason.PROTOCOL_VIOLATION, ClosedReason.BAD_CLIENT_PROTOCOL_VERSION):
        return 1002
    if reason == ClosedReason.MAX_PAYLOAD_EXCEEDED:
        return 1009
    if reason in (ClosedReason.WRITE_ERROR, ClosedReason.READ_ERROR, ClosedReason.STALE_CONNECTION):
        return 1001
    if reason == ClosedReason.SERVER_SHUTDOWN:
        return 1001
    return 1011


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def close_payload(status: int, body: str) -> bytes:
    """A CLOSE frame's payload: the status, then the reason cut to fit a control frame."""
    text = body.encode()
    if len(text) > MAX_CONTROL - 2:
        text = text[: MAX_CONTROL - 5] + b"..."
    return status.to_bytes(2, "big") + text


#: output this small is never deflated (nats-server's wsCompressThreshold)
COMPRESS_THRESHOLD = 64
#: the largest frame sent to a browser (nats-server's wsFrameSizeForBrowsers)
BROWSER_FRAME = 4096


def _header(first: int, size: int) -> bytes:
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


def encode_frame(
    opcode: int, payload: bytes | bytearray, compress: bool = False, max_frame: int = 0, masked: bool = False
) -> bytes:
    """A message: one final frame, or frames of at most `max_frame` bytes; `compress`: deflated
    (fast, no context takeover) with RSV1 on its first frame, unless it is too small to be worth
    it; `masked`: a client's frames (a leaf node dialling a hub's websocket port)."""
    if masked:
        return _masked_frame(opcode, payload, compress)
    first = opcode
    if compress and len(payload) > COMPRESS_THRESHOLD:
        deflater = zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -15)
        payload = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if payload.endswith(_DEFLATE_TAIL):
            payload = payload[:-4]
        first |= RSV1
    size = len(payload)
    if not max_frame or size <= max_frame:
        return _header(first | FINAL, size) + bytes(payload)
    parts = []
    for start in range(0, size, max_frame):
        chunk = payload[start : start + max_frame]
        final = FINAL if start + max_frame >= size else 0
        parts.append(_header((first if start == 0 else OP_CONTINUATION) | final, len(chunk)) + bytes(chunk))
    return b"".join(parts)


def _masked_frame(opcode: int, payload: bytes | bytearray, compress: bool) -> bytes:
    first = FINAL | opcode
    if compress and len(payload) > COMPRESS_THRESHOLD:
        deflater = zlib.compressobj(zlib.Z_BEST_SPEED, zlib.DEFLATED, -15)
        payload = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if payload.endswith(_DEFLATE_TAIL):
            payload = payload[:-4]
        first |= RSV1
    head = bytearray(_header(first, len(payload)))
    head[1] |= MASK
    key = os.urandom(4)
    return bytes(head) + key + _unmask(bytes(payload), key)


class ProtocolError(Exception):
    """A malformed frame: nats-server answers a CLOSE with status 1002 and this text."""


class FrameReader:
    """Incremental decoder of a client's frames. `feed(data)` returns the events in order:
    ("data", bytes) for message payload, ("ping", payload), ("close", (status, body)); a
    ProtocolError for a malformed stream (the caller closes)."""

    def __init__(self, masked: bool = True, compress: bool = False) -> None:
        self.masked = masked
        self.compress = compress
        self.buf = bytearray()
        #: inside a message (text/binary not yet final), and whether it is compressed
        self.in_message = False
        self.message_final = True
        self.compressed = False
        self.deflated = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        buf = self.buf
        buf += data
        events: list[tuple[str, Any]] = []
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            opcode = b0 & 0x0F
            final = bool(b0 & FINAL)
            rsv1 = bool(b0 & RSV1)
            if b0 & RSV23:
                raise ProtocolError("RSV2 and RSV3 must be clear")
            if rsv1 and not self.compress:
                raise ProtocolError("compressed frame received without negotiated permessage-deflate")
            if self.masked and not b1 & MASK:
                raise ProtocolError("mask bit missing")
            length = b1 & 0x7F
            if opcode in (OP_CLOSE, OP_PING, OP_PONG):
                if length > MAX_CONTROL:
                    raise ProtocolError(f"control frame length bigger than maximum allowed of {MAX_CONTROL} bytes")
                if not final:
                    raise ProtocolError("control frame does not have final bit set")
                if rsv1:
                    raise ProtocolError("control frame must not be compressed")
            elif opcode in (OP_TEXT, OP_BINARY):
                if not self.message_final:
                    raise ProtocolError("new message started before final frame for previous message was received")
            elif opcode == OP_CONTINUATION:
                if self.message_final or rsv1:
                    raise ProtocolError("invalid continuation frame")
            else:
                raise ProtocolError(f"unknown opcode {opcode}")
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise ProtocolError("invalid 64-bit payload length")
                head = 10
            key = b""
            if b1 & MASK:
                if len(buf) - pos < head + 4:
                    break
                key = bytes(buf[pos + head : pos + head + 4])
                head += 4
            if len(buf) - pos < head + length:
                break  # (a frame is handed on whole: NATS parsing is incremental anyway)
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if key:
                payload = _unmask(payload, key)
            if opcode == OP_CLOSE:
                events.append(("close", self._close(payload)))
                break
            if opcode == OP_PING:
                events.append(("ping", payload))
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONTINUATION:
                self.compressed = rsv1
            self.message_final = final
            if self.compressed:
                self.deflated += payload
                if final:
                    inflater = zlib.decompressobj(-15)
                    try:
                        data_out = inflater.decompress(bytes(self.deflated) + _DEFLATE_TAIL)
                    except zlib.error as exc:
                        raise ProtocolError(f"decompression error: {exc}") from None
                    self.deflated = bytearray()
                    events.append(("data", data_out))
            elif payload:
                events.append(("data", payload))
        del buf[:pos]
        return events

    @staticmethod
    def _close(payload: bytes) -> tuple[int, str]:
        if len(payload) == 1:
            raise ProtocolError("close frame payload cannot be 1 byte")
        if not payload:
            return 1005, ""
        status = int.from_bytes(payload[:2], "big")
        if status in (1005, 1004, 1006, 1015) or status < 1000 or status >= 5000 or 1016 <= status <= 2999:
            raise ProtocolError(f"invalid close status code {status}")
        try:
            return status, payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return 1007, "invalid utf8 body in close frame"


def _unmask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key, a machine word at a time."""
    size = len(payload)
    if not size:
        return payload
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(size, "little")


class HandshakeRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _header_has(headers: dict[str, list[str]], name: str, value: str) -> bool:
    for line in headers.get(name.lower(), ()):
        if any(token.strip(" \t").lower() == value.lower() for token in line.split(",")):
            return True
    return False


def _host_port(tls: bool, hostport: str) -> tuple[str, str]:
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return hostport.lower(), "443" if tls else "80"
    return host.strip("[]").lower(), port


def upgrade(request: bytes, options: Any, tls: bool, *, mqtt: bool = False) -> tuple[bytes, bool, bool, bool]:
    """The 101 response for an upgrade request, whether it compresses, whether the client masks
    its frames and whether it is a browser (frames of 4 KiB at most); HandshakeRefused in
    nats-server's order."""
    first, headers = _parse_head(request.partition(b"\r\n\r\n")[0])
    method = first.split(" ", 1)[0]
    if method != "GET":
        raise HandshakeRefused(405, "request method must be GET")
    host = (headers.get("host") or [""])[0]
    if not host:
        raise HandshakeRefused(400, "'Host' missing in request")
    if not _header_has(headers, "Upgrade", "websocket"):
        raise HandshakeRefused(400, "invalid value for header 'Upgrade'")
    if not _header_has(headers, "Connection", "Upgrade"):
        raise HandshakeRefused(400, "invalid value for header 'Connection'")
    key = (headers.get("sec-websocket-key") or [""])[0]
    if not key:
        raise HandshakeRefused(400, "key missing")
    try:
        decoded = base64.b64decode(key, validate=True)
    except ValueError:
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeRefused(400, "invalid websocket key")
    if not _header_has(headers, "Sec-Websocket-Version", "13"):
        raise HandshakeRefused(400, "invalid version")
    problem = _origin_problem(headers, options, host, tls)
    if problem:
        raise HandshakeRefused(403, f"origin not allowed: {problem}")
    compress = bool(options.compression) and any(
        "permessage-deflate" in (part.strip(" \t").lower() for part in line.replace(",", ";").split(";"))
        for line in headers.get("sec-websocket-extensions", ())
    )
    no_masking = (headers.get("nats-no-masking") or [""])[0] == "true"
    browser = (headers.get("user-agent") or [""])[0].startswith("Mozilla/")
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
        + accept_key(key).encode()
        + b"\r\n"
    )
    if compress:
        response += PMC_RESPONSE
    if no_masking:
        response += NO_MASKING_RESPONSE
    if mqtt:
        response += b"Sec-Websocket-Protocol: mqtt\r\n"  # (nats-server's spelling)
    for name, value in getattr(options, "headers", ()) or ():
        response += f"{name}: {value}\r\n".encode()
    return response + b"\r\n", compress, not no_masking, browser


def request_cookies(request: bytes) -> dict[str, str]:
    """The cookies of an upgrade request (`Cookie: a=1; b=2`)."""
    cookies: dict[str, str] = {}
    _first, headers = _parse_head(request.partition(b"\r\n\r\n")[0])
    for value in headers.get("cookie", ()):
        for pair in value.split(";"):
            key, eq, item = pair.strip().partition("=")
            if eq and key:
                cookies.setdefault(key, item.strip().strip('"'))
    return cookies


def _origin_problem(headers: dict[str, list[str]], options: Any, host: str, tls: bool) -> str:
    allowed = tuple(options.allowed_origins or ())
    if not options.same_origin and not allowed:
        return ""
    origin = (headers.get("origin") or headers.get("sec-websocket-origin") or [""])[0]
    if not origin:
        return ""
    try:
        parts = urlsplit(origin)
    except ValueError as exc:
        return str(exc)
    if not parts.scheme or not parts.netloc:
        return f'parse "{origin}": invalid URI for request'
    origin_host, origin_port = _host_port(parts.scheme == "https", parts.netloc)
    if options.same_origin:
        request_host, request_port = _host_port(tls, host)
        scheme = "https" if tls else "http"
        if origin_host != request_host or origin_port != request_port or parts.scheme.lower() != scheme:
            return "not same origin"
    if allowed:
        for entry in allowed:
            allowed_parts = urlsplit(entry)
            allowed_host, allowed_port = _host_port(allowed_parts.scheme == "https", allowed_parts.netloc)
            if allowed_host == origin_host and allowed_parts.scheme == parts.scheme and allowed_port == origin_port:
                return ""
        return "not in the allowed list"
    return ""


def http_error(status: int) -> bytes:
    """Go's `http.Error` response (plain text: the status text), with nats-server's
    `Sec-Websocket-Version: 13` header."""
    text = _STATUS_TEXT.get(status, "Bad Request")
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status} {text}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Sec-Websocket-Version: 13\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Date: {formatdate(time.time(), usegmt=True)}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def _dispatch(conn: Any, parser: Any, events: list[tuple[str, Any]]) -> None:
    """Hand decoded frames on: payloads to the NATS (or leaf) parser, PING answered, CLOSE echoed
    and the connection closed. `conn` has `ws_control(opcode, payload)`."""
    for kind, value in events:
        if conn.closed:
            return
        if kind == "data":
            parser.feed(value)
        elif kind == "ping":
            conn.ws_control(OP_PONG, value)
        elif kind == "close":
            status, body = value
            conn.ws_control(OP_CLOSE, close_payload(status, body) if status != 1005 else b"")
            conn.close(ClosedReason.CLIENT_CLOSED)
            return


def _parse_head(head: bytes) -> tuple[str, dict[str, list[str]]]:
    """An HTTP request's or response's first line and its headers (lower-case names)."""
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0] if lines else "", headers


class _Reader:
    """Stands in for the client's parser: the upgrade request first, then frames whose payloads
    go to the real parser."""

    __slots__ = ("conn", "parser", "request", "frames")

    def __init__(self, conn: WebSocketConnection, parser: Any) -> None:
        self.conn = conn
        self.parser = parser
        self.request = bytearray()
        self.frames: FrameReader | None = None

    @property
    def closed(self) -> bool:
        return bool(self.parser.closed)

    def feed(self, data: bytes) -> None:
        conn = self.conn
        if self.frames is None:
            self.request += data
            end = self.request.find(b"\r\n\r\n")
            if end < 0:
                if len(self.request) > MAX_REQUEST:
                    conn.refuse(400, "request header too large")
                return
            rest = bytes(self.request[end + 4 :])
            if rest:
                # nats-server has hijacked the socket by then: it closes it without an answer
                conn.refuse(400, "client sent data before handshake is complete", answer=False)
                return
            request = bytes(self.request[: end + 4])
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            route = path.split(b"?", 1)[0]
            mqtt = route.endswith(b"/mqtt") and not route.endswith(b"/leafnode")
            if mqtt and not conn.server.config.mqtt.port:
                conn.refuse(404, "mqtt websocket endpoint not enabled")
                return
            try:
                response, compress, masked, browser = upgrade(request, conn.options, conn.tls is not None, mqtt=mqtt)
            except HandshakeRefused as refused:
                conn.refuse(refused.status, refused.reason)
                return
            conn.cookies = request_cookies(request)
            self.request = bytearray()
            if route.endswith(b"/leafnode"):
                conn.become_leaf(response, compress, masked)  # a leaf node dialled this port
                return
            if mqtt:
                conn.become_mqtt(response, compress, masked, browser)  # an MQTT client (nats-server's /mqtt)
                return
            self.frames = FrameReader(masked=masked, compress=compress)
            conn.upgraded(response, compress, BROWSER_FRAME if browser else 0)
            return
        try:
            events = self.frames.feed(data)
        except ProtocolError as exc:
            conn.protocol_error(str(exc))
            return
        _dispatch(conn, self.parser, events)


class WebSocketConnection(ClientConnection):
    """A client of the `websocket {}` port (see the module docstring)."""

    __slots__ = (
        "options",
        "ws_ready",
        "ws_compress",
        "ws_max_frame",
        "closing_sent",
        "handshake_handle",
        "ws_tls",
        "cookies",
    )

    #: `/connz` `type` and the events' `client_type`
    CLIENT_TYPE = "websocket"

    def __init__(self, server: Any, cid: int, options: Any, tls_context: Any) -> None:
        super().__init__(server, cid)
        self.options = options
        self.ws_ready = False
        self.ws_compress = False
        self.ws_max_frame = 0
        self.closing_sent = False
        self.handshake_handle: Any = None
        self.ws_tls = tls_context
        self.cookies: dict[str, str] = {}
        self.parser = _Reader(self, self.parser)
        if options.ping_interval:
            self.ping_interval = options.ping_interval

    def proto_connect(self, arg: bytes) -> None:
        """CONNECT, with the credentials a browser sent as cookies where CONNECT has none (the
        `jwt_cookie`, `user_cookie`, `pass_cookie` and `token_cookie` of the block)."""
        options = self.options
        names = (
            ("jwt", options.jwt_cookie),
            ("user", options.user_cookie),
            ("pass", options.pass_cookie),
            ("auth_token", options.token_cookie),
        )
        if self.deferred is None and self.cookies and any(cookie in self.cookies for _field, cookie in names if cookie):
            import json

            try:
                opts = json.loads(arg)
            except ValueError:
                opts = None
            if isinstance(opts, dict):
                for field, cookie in names:
                    if cookie and not opts.get(field) and cookie in self.cookies:
                        opts[field] = self.cookies[cookie]
                arg = json.dumps(opts).encode()
        super().proto_connect(arg)

    def authenticator(self) -> Any:
        return self.server.ws_authenticator()

    def register(self) -> bool:
        """Not a client yet: it becomes one once upgraded (nats-server creates the client after
        the upgrade: a refused upgrade is no connection in `/connz`, and a leaf node that came
        this way never was one)."""
        if not self.server.accepting:
            self.transport.abort()
            self.closed = True
            return False
        return True

    # ---- the upgrade

    def greet(self) -> None:
        if self.ws_tls is not None:
            self.start_tls(self.ws_tls, timeout=self.options.tls.timeout if self.options.tls else 2.0)
        timeout = self.options.handshake_timeout or 2.0
        self.handshake_handle = self.loop.call_later(timeout, self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        self.handshake_handle = None
        if not self.ws_ready and not self.closed:
            self.log_error("websocket handshake error: i/o timeout")
            self.close(ClosedReason.AUTHENTICATION_TIMEOUT, abort=True)

    def refuse(self, status: int, reason: str, answer: bool = True) -> None:
        self.log_error(f"{self.remote_host}:{self.remote_port} - websocket handshake error: {reason}")
        if answer:
            Connection._write_raw(self, http_error(status))
        self.outbuf = bytearray()
        self.closing_sent = True
        self.close(ClosedReason.PROTOCOL_VIOLATION)

    def upgraded(self, response: bytes, compress: bool, max_frame: int = 0) -> None:
        if self.handshake_handle is not None:
            self.handshake_handle.cancel()
            self.handshake_handle = None
        Connection._write_raw(self, response)
        self.ws_ready = True
        self.ws_compress = compress
        self.ws_max_frame = max_frame
        if not self.server.register_client(self):
            return  # (refused: its INFO and -ERR went out in a frame)
        # the INFO as the first frame (the client port's TLS has no say here: a wss port does its
        # TLS before the upgrade)
        server = self.server
        self.log_debug("Client connection created")
        self.send_now(server.info_line(self, greeting=True))
        if self.authenticator().required:
            timeout = self.options.auth_timeout or server.auth_timeout
            self.auth_handle = self.loop.call_later(timeout, self._auth_timeout)

    def become_leaf(self, response: bytes, compress: bool, masked: bool) -> None:
        """The upgrade asked for `/leafnode`: this socket carries a leaf node connection from
        now on (nats-server's websocket leaf). This client object hands the transport to a
        leaf connection and leaves without a trace (it was never a client)."""
        server = self.server
        table = server.leafnodes
        Connection._write_raw(self, response)
        if table is None:
            server.logger.error("Not configured to accept leaf node connections")
            self.closing_sent = True
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        leaf = table.websocket_leaf(self, compress, masked)
        for handle in (self.ping_handle, self.handshake_handle, self.auth_handle):
            if handle is not None:
                handle.cancel()
        self.ping_handle = self.handshake_handle = self.auth_handle = None
        self.closed = True
        self.closed_reason = ClosedReason.CLIENT_CLOSED
        leaf.connection_made_over_websocket()

    def become_mqtt(self, response: bytes, compress: bool, masked: bool, browser: bool) -> None:
        """The upgrade asked for `/mqtt`: an MQTT client in WebSocket frames from now on (as
        nats-server's, it authenticates as the `mqtt {}` block says). This client object hands
        the transport to it and leaves without a trace."""
        if self.handshake_handle is not None:
            self.handshake_handle.cancel()
            self.handshake_handle = None
        Connection._write_raw(self, response)
        client = WebSocketMQTTConnection(self.server, self.cid, self.server.config.mqtt, None)
        client.adopt_websocket(self, compress, masked, BROWSER_FRAME if browser else 0)
        for handle in (self.ping_handle, self.auth_handle):
            if handle is not None:
                handle.cancel()
        self.ping_handle = self.auth_handle = None
        self.closed = True
        self.closed_reason = ClosedReason.CLIENT_CLOSED
        client.connection_made_over_websocket()

    # ---- frames out

    def _write_raw(self, data: bytes | bytearray) -> None:
        if not self.ws_ready:
            return  # nothing of the NATS protocol (a PING timer) before the upgrade
        Connection._write_raw(self, encode_frame(OP_BINARY, data, self.ws_compress, self.ws_max_frame))

    def ws_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE:
            self.closing_sent = True
        if self.outbuf:
            self.flush()
        if self.transport is not None and not self.closed:
            Connection._write_raw(self, encode_frame(opcode, payload))

    def protocol_error(self, text: str) -> None:
        self.ws_control(OP_CLOSE, close_payload(1002, text))
        self.log_error(f"websocket protocol error: {text}")
        self.close(ClosedReason.PROTOCOL_VIOLATION)

    def close(self, reason: ClosedReason, abort: bool = False) -> None:
        if not self.closed and self.ws_ready and not self.closing_sent and not abort and self.transport is not None:
            self.closing_sent = True
            if self.outbuf and not self.tls_pending:
                self._write_raw(bytes(self.outbuf))
                self.outbuf = bytearray()
            Connection._write_raw(self, encode_frame(OP_CLOSE, close_payload(_close_status(reason), reason.value)))
        if self.handshake_handle is not None:
            self.handshake_handle.cancel()
            self.handshake_handle = None
        super().close(reason, abort)


class WebSocketMQTTConnection(MQTTConnection):
    """An MQTT client on the websocket port (`/mqtt`, nats-server's MQTT over WebSocket): MQTT
    packets in binary frames, otherwise jsedge.routing.mqtt's client."""

    __slots__ = ("ws_compress", "ws_max_frame", "closing_sent")

    def adopt_websocket(self, client: Any, compress: bool, masked: bool, max_frame: int) -> None:
        self.transport = client.transport
        self.remote_host, self.remote_port = client.remote_host, client.remote_port
        self.tls, self.tls_version, self.tls_cipher = client.tls, client.tls_version, client.tls_cipher
        self.ws_compress = compress
        self.ws_max_frame = max_frame
        self.closing_sent = False
        self.parser = _FramedParser(self, self.parser, FrameReader(masked=masked, compress=compress))

    def connection_made_over_websocket(self) -> None:
        self.transport.set_protocol(self)
        if not self.register():
            return
        self.greet()
        if not self.closed and self.ping_handle is None:
            self.ping_handle = self.loop.call_later(self.ping_interval, self._ping_timer)

    def log_prefix(self) -> str:
        prefix = f"{self.remote_host}:{self.remote_port} - mid_ws:{self.cid} - "
        if self.client_id:
            prefix += f'"{self.client_id}" - '
        return prefix

    def ws_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE:
            self.closing_sent = True
        if self.outbuf:
            self.flush()
        if self.transport is not None and not self.closed:
            Connection._write_raw(self, encode_frame(opcode, payload))

    def _write_raw(self, data: bytes | bytearray) -> None:
        Connection._write_raw(self, encode_frame(OP_BINARY, data, self.ws_compress, self.ws_max_frame))

    def close(self, reason: ClosedReason, abort: bool = False) -> None:
        if not self.closed and not self.closing_sent and not abort and self.transport is not None:
            self.closing_sent = True
            if self.outbuf and not self.tls_pending:
                self._write_raw(bytes(self.outbuf))
                self.outbuf = bytearray()
            Connection._write_raw(self, encode_frame(OP_CLOSE, close_payload(_close_status(reason), reason.value)))
        super().close(reason, abort)


class _LeafReader:
    """The dialling leaf's side: the hub's 101 answer first, then its frames to the leaf parser."""

    __slots__ = ("conn", "parser", "response", "frames", "key")

    def __init__(self, conn: Any, parser: Any, key: str) -> None:
        self.conn = conn
        self.parser = parser
        self.key = key
        self.response = bytearray()
        self.frames: FrameReader | None = None

    @property
    def closed(self) -> bool:
        return bool(self.parser.closed)

    def feed(self, data: bytes) -> None:
        conn = self.conn
        if self.frames is None:
            self.response += data
            end = self.response.find(b"\r\n\r\n")
            if end < 0:
                if len(self.response) > MAX_REQUEST:
                    conn.ws_failed("invalid websocket connection")
                return
            first, headers = _parse_head(bytes(self.response[:end]))
            rest = bytes(self.response[end + 4 :])
            status = first.split(" ")
            ok = (
                len(status) > 1
                and status[1] == "101"
                and (headers.get("upgrade") or [""])[0].lower() == "websocket"
                and (headers.get("connection") or [""])[0].lower() == "upgrade"
                and (headers.get("sec-websocket-accept") or [""])[0] == accept_key(self.key)
            )
            if not ok:
                conn.ws_failed("invalid websocket connection")
                return
            extensions = ";".join(headers.get("sec-websocket-extensions", ())).lower()
            compress = conn.ws_compress and "permessage-deflate" in extensions
            if compress and not (
                "server_no_context_takeover" in extensions and "client_no_context_takeover" in extensions
            ):
                conn.ws_failed("compression negotiation error")
                return
            no_masking = conn.ws_no_masking and (headers.get("nats-no-masking") or [""])[0] == "true"
            self.response = bytearray()
            self.frames = FrameReader(masked=False, compress=compress)
            conn.ws_upgraded(compress, not no_masking)
            if rest:
                self.feed(rest)
            return
        try:
            events = self.frames.feed(data)
        except ProtocolError as exc:
            conn.ws_failed(str(exc))
            return
        _dispatch(conn, self.parser, events)


class _FramedParser:
    """A connection that took over a socket after the upgrade (a leaf node on the hub's websocket
    port, an MQTT client at `/mqtt`): frames in, their payloads to its own parser."""

    __slots__ = ("conn", "parser", "frames")

    def __init__(self, conn: Any, parser: Any, frames: FrameReader) -> None:
        self.conn = conn
        self.parser = parser
        self.frames = frames

    @property
    def closed(self) -> bool:
        return bool(self.parser.closed)

    def feed(self, data: bytes) -> None:
        conn = self.conn
        try:
            events = self.frames.feed(data)
        except ProtocolError as exc:
            conn.ws_control(OP_CLOSE, close_payload(1002, str(exc)))
            conn.log_error(f"websocket protocol error: {exc}")
            conn.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        _dispatch(conn, self.parser, events)


class WebSocketHubLeafConnection(LeafConnection):
    """A leaf node that dialled this server's websocket port (`/leafnode`): the leaf protocol in
    unmasked frames (the leaf's are masked unless it asked for `Nats-No-Masking`), TLS (wss)
    already under it; otherwise the accepting side of jsedge.routing.leaf.LeafConnection."""

    __slots__ = ("ws_compress",)

    def adopt_websocket(self, client: Any, compress: bool, masked: bool) -> None:
        self.transport = client.transport
        self.remote_host, self.remote_port = client.remote_host, client.remote_port
        self.tls, self.tls_version, self.tls_cipher = client.tls, client.tls_version, client.tls_cipher
        self.ws_compress = compress
        self.parser = _FramedParser(self, self.parser, FrameReader(masked=masked, compress=compress))

    def connection_made_over_websocket(self) -> None:
        self.transport.set_protocol(self)
        if not self.register():
            return
        self.greet()
        if not self.closed and self.ping_handle is None:
            self.ping_handle = self.loop.call_later(self.ping_interval, self._ping_timer)

    def greet(self) -> None:
        table = self.table
        self.nonce = table.new_nonce()
        self.send_now(table.info_line(self.cid, self.nonce))
        self.auth_handle = self.loop.call_later(table.auth_timeout, self._auth_timeout)

    def ws_control(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            Connection._write_raw(self, encode_frame(opcode, payload))

    def _write_raw(self, data: bytes | bytearray) -> None:
        Connection._write_raw(self, encode_frame(OP_BINARY, data, self.ws_compress))


class WebSocketLeafConnection(LeafConnection):
    """A leaf connection that dials a hub's websocket port (`ws://` / `wss://` remotes): the
    upgrade request to `/leafnode` (with permessage-deflate and `Nats-No-Masking` when the remote
    asks: `ws_compression`, `ws_no_masking`), then the leaf protocol in masked frames, as
    nats-server's leaf does."""

    __slots__ = ("ws_ready", "ws_compress", "ws_no_masking", "ws_mask", "ws_key")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ws_ready = False
        remote = self.remote
        self.ws_compress = bool(getattr(remote, "ws_compression", False))
        self.ws_no_masking = bool(getattr(remote, "ws_no_masking", False))
        self.ws_mask = True
        self.ws_key = base64.b64encode(os.urandom(16)).decode()
        self.parser = _LeafReader(self, self.parser, self.ws_key)

    def greet(self) -> None:
        url = self.url
        if url is not None and url.scheme == "wss":
            self.start_tls(
                self.remote.tls_context(),
                server_side=False,
                timeout=self.remote.tls_timeout(),
                hostname=url.hostname,
            )
        path = (url.path or "").rstrip("/") + "/leafnode" if url is not None else "/leafnode"
        host = url.netloc.rpartition("@")[2] if url is not None else ""
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "User-Agent: Go-http-client/1.1",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.ws_key}",
            "Sec-WebSocket-Version: 13",
            "Upgrade: websocket",
        ]
        if self.ws_compress:
            lines.append(
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            )
        if self.ws_no_masking:
            lines.append("Nats-No-Masking: true")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if self.tls_pending:
            self.outbuf += request  # sent when the TLS handshake is done (raw: not upgraded yet)
        else:
            Connection._write_raw(self, request)
        super().greet()  # the hub's INFO is awaited (as a frame)

    def start_tls(self, *args: Any, **kwargs: Any) -> None:
        if self.ws_ready:
            return  # a `wss://` hub: TLS runs under the websocket already
        super().start_tls(*args, **kwargs)

    def ws_upgraded(self, compress: bool, mask: bool) -> None:
        self.ws_ready = True
        self.ws_compress = compress
        self.ws_mask = mask
        self.log_debug(f"Leafnode compression={compress} masking={mask}")

    def ws_failed(self, text: str) -> None:
        self.log_error(f"Error soliciting leafnode over websocket: {text}")
        self.close(ClosedReason.READ_ERROR)

    def ws_control(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            Connection._write_raw(self, encode_frame(opcode, payload, masked=self.ws_mask))

    def _write_raw(self, data: bytes | bytearray) -> None:
        if not self.ws_ready:
            Connection._write_raw(self, data)  # the upgrade request
            return
        Connection._write_raw(self, encode_frame(OP_BINARY, data, self.ws_compress, masked=self.ws_mask))


__all__ = [
    "FrameReader",
    "HandshakeRefused",
    "ProtocolError",
    "WebSocketConnection",
    "WebSocketHubLeafConnection",
    "WebSocketLeafConnection",
    "accept_key",
    "close_payload",
    "encode_frame",
    "upgrade",
]
