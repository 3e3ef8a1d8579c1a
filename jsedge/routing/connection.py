"""The transport part of a connection (layer 2): what clients and routes share.

`Connection` subclasses the selected `ClientCore` twin (the fast path frames straight into its
`outbuf`) and owns everything about the socket: the asyncio protocol callbacks, TLS on memory BIOs
(jsedge.routing.tls), coalesced writes (one `flush` per read for every connection written to),
write pressure (`max_pending`, `write_deadline`), the PING timer and stale detection, and closing
with a `ClosedReason`. The protocol on top — the client's (jsedge.routing.client) or a route's
(jsedge.routing.route) — is the parser handler and implements the hooks below.

Subclass hooks: `register()` when the socket is up (False refuses it), `greet()` to send the first
bytes, `ping_suppressed(now)` (clients skip PINGs while data flows, routes never do),
`closed_hook(reason)` to drop the protocol's state, and `log_prefix()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from jsedge import errors
from jsedge.config import format_go_duration
from jsedge.errors import ClosedReason, ProtoErr
from jsedge.routing.sublist import ClientCore, flush_pending

PING = b"PING\r\n"
PONG = b"PONG\r\n"

#: A connection that saw no PONG for this long measures its RTT again.
RTT_REFRESH = 3600.0


class Connection(ClientCore):
    """One TCP connection of the server: transport, TLS, pings, output, close."""

    __slots__ = (
        "server",
        "cid",
        "transport",
        "parser",
        "loop",
        "remote_host",
        "remote_port",
        "start",
        "last_activity",
        "pings_out",
        "ping_sent_at",
        "rtt",
        "rtt_measured_at",
        "last_in_seen",
        "last_in_msgs",
        "ping_handle",
        "deadline_handle",
        "paused",
        "closed_reason",
        "stop",
        "tls_version",
        "tls_cipher",
        "tls_pending",
        "tls",
        "tls_sniff",
        "tls_handle",
        "on_close",
        "ping_interval",
        "ping_max",
        "write_deadline",
        "write_retry",
        "bytes_handed",
        "deadline_sent",
        "slow_marked",
    )

    #: The word in "<Kind> connection created/closed" log lines.
    KIND_NAME = "Client"

    def __init__(self, server: Any, cid: int) -> None:
        super().__init__()
        self.server = server
        self.cid = cid
        self.transport: Any = None
        self.parser: Any = None
        self.loop = server.loop
        self.pending = server.pending
        limits = server.config.limits
        self.max_payload = limits.max_payload
        self.max_pending = limits.max_pending
        self.ping_interval: float = limits.ping_interval
        self.ping_max: int = limits.ping_max
        self.write_deadline: float = limits.write_deadline
        #: nats-server's write_timeout policy: a write that misses the deadline closes the
        #: connection ("close", the client default) or, when some bytes went out, only marks it a
        #: slow consumer and keeps writing ("retry", the route default).
        self.write_retry = limits.write_timeout == "retry"
        #: Bytes handed to the transport so far; minus its buffer, what the socket took.
        self.bytes_handed = 0
        self.deadline_sent = 0
        self.slow_marked = False
        self.remote_host = ""
        self.remote_port = 0
        self.start = time.time()
        self.last_activity = self.start
        self.pings_out = 0
        self.ping_sent_at = 0.0
        self.rtt = 0.0
        self.rtt_measured_at = 0.0
        self.last_in_seen = time.monotonic()
        self.last_in_msgs = 0
        self.ping_handle: asyncio.TimerHandle | None = None
        self.deadline_handle: asyncio.TimerHandle | None = None
        self.paused = False
        self.closed_reason: ClosedReason | None = None
        self.stop = 0.0
        self.tls_version = ""
        self.tls_cipher = ""
        self.tls_pending = False
        #: The TLS layer once the connection is upgrading or upgraded (jsedge.routing.tls), else None.
        self.tls: Any = None
        #: allow_non_tls: the first byte decides between TLS and plain.
        self.tls_sniff = False
        self.tls_handle: asyncio.TimerHandle | None = None
        self.on_close: list[Callable[[Any], None]] = []

    # ---------------------------------------------------------------- hooks for the protocol

    def register(self) -> bool:
        """The socket is up: join the server's registry. False refuses the connection."""
        return True

    def greet(self) -> None:
        """Send the first protocol bytes (an INFO, a CONNECT...)."""

    def ping_suppressed(self, now: float) -> bool:
        """Skip this PING round (clients: data flowed recently and the RTT is fresh)."""
        return False

    def closed_hook(self, reason: ClosedReason) -> None:
        """The connection closed: drop the protocol's state (subscriptions, registry entries)."""

    def log_prefix(self) -> str:
        return f"{self.remote_host}:{self.remote_port} - cid:{self.cid} - "

    # ---------------------------------------------------------------- logging

    def log_debug(self, text: str) -> None:
        if self.server.logger.debug_enabled:
            self.server.logger.debug(self.log_prefix() + text)

    def log_error(self, text: str) -> None:
        self.server.logger.error(self.log_prefix() + text)

    def log_info(self, text: str) -> None:
        self.server.logger.info(self.log_prefix() + text)

    def log_warn(self, text: str) -> None:
        self.server.logger.warn(self.log_prefix() + text)

    def log_trace(self, text: str) -> None:
        self.server.logger.trace(self.log_prefix() + text)

    # ---------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            host = peer[0]
            if host.startswith("::ffff:") and "." in host:
                host = host[7:]  # an IPv4 client of a dual-stack listener, shown as nats-server does
            self.remote_host, self.remote_port = host, peer[1]
        transport.set_write_buffer_limits(high=256 * 1024)
        if not self.register():
            return
        self.greet()
        if not self.closed and self.ping_handle is None:
            self.ping_handle = self.loop.call_later(self.ping_interval, self._ping_timer)

    def start_tls(
        self,
        context: Any,
        *,
        server_side: bool = True,
        timeout: float = 2.0,
        sniff: bool = False,
        hostname: str | None = None,
    ) -> None:
        """Run TLS on this socket from now on (memory BIOs, see jsedge.routing.tls)."""
        from jsedge.routing.tls import TLSShim

        self.tls = TLSShim(context, server_side=server_side, server_hostname=None if server_side else hostname)
        self.tls_pending = True
        self.tls_sniff = sniff
        self.tls_handle = self.loop.call_later(timeout, self._tls_timeout)
        if not server_side:
            hello = self.tls.pending_output()
            if hello:
                self.transport.write(hello)

    def _tls_timeout(self) -> None:
        self.tls_handle = None
        if not self.closed and self.tls_pending:
            self.log_error("TLS handshake timeout")
            self.outbuf = bytearray()
            if self.tls_sniff:  # nothing arrived at all: say why, in the clear, as nats-server does
                self.transport.write(errors.TLS_REQUIRED.line())
            self.close(ClosedReason.TLS_HANDSHAKE_ERROR)

    def record_tls(self, transport: Any) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = (ssl_object.version() or "").replace("TLSv", "")
            cipher = ssl_object.cipher()
            self.tls_cipher = cipher[0] if cipher else ""

    def _tls_received(self, data: bytes) -> None:
        """Ciphertext in: run the handshake, then feed the plaintext to the parser."""
        import ssl

        tls = self.tls
        if self.tls_sniff:
            self.tls_sniff = False
            if data[0] != 0x16:  # not a ClientHello: allow_non_tls lets a plain client in
                self.tls = None
                self.tls_pending = False
                if self.tls_handle is not None:
                    self.tls_handle.cancel()
                    self.tls_handle = None
                self.parser.feed(data)
                return
        try:
            chunks, reply = tls.receive(data)
        except ssl.SSLError as exc:
            alert = tls.pending_output()
            if alert:
                self.transport.write(alert)  # the peer must see the alert, not a bare reset
            self.log_error(f"TLS handshake error: {exc.reason or exc}")
            self.outbuf = bytearray()
            self.tls_pending = False
            self.close(ClosedReason.TLS_HANDSHAKE_ERROR)
            return
        if reply:
            self.transport.write(reply)
        if self.tls_pending and not tls.handshaking:
            self.tls_pending = False
            self.tls_version, self.tls_cipher = tls.describe()
            if self.tls_handle is not None:
                self.tls_handle.cancel()
                self.tls_handle = None
            self.log_debug("TLS handshake complete")
            if self.outbuf:
                self.flush()
        for chunk in chunks:
            if self.closed:
                return
            self.parser.feed(chunk)
        if tls.peer_closed and not self.closed:
            self.close(ClosedReason.CLIENT_CLOSED)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.tls is None:
            self.parser.feed(data)
        else:
            self._tls_received(data)
        if self.pending:
            flush_pending(self.pending)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._finish_close(ClosedReason.CLIENT_CLOSED if exc is None else ClosedReason.READ_ERROR)

    def pause_writing(self) -> None:
        self.paused = True
        deadline = self.write_deadline
        if deadline > 0 and self.deadline_handle is None:
            self.deadline_sent = self._bytes_sent()
            self.deadline_handle = self.loop.call_later(deadline, self._write_deadline)

    def _bytes_sent(self) -> int:
        return self.bytes_handed - (self.transport.get_write_buffer_size() if self.transport is not None else 0)

    def resume_writing(self) -> None:
        self.paused = False
        self.slow_marked = False
        if self.deadline_handle is not None:
            self.deadline_handle.cancel()
            self.deadline_handle = None

    def _write_deadline(self) -> None:
        self.deadline_handle = None
        if self.paused and not self.closed:
            deadline = self.write_deadline
            pending = self.transport.get_write_buffer_size() + len(self.outbuf)
            sent = self._bytes_sent()
            progressed = sent > self.deadline_sent
            state = "State" if self.slow_marked else "Detected"
            self.log_info(
                f"Slow Consumer {state}: WriteDeadline of {format_go_duration(deadline)} exceeded "
                f"with {pending} total bytes."
            )
            if not self.slow_marked:
                # nats-server counts a route's slow-consumer episode once
                self.server.count_slow_consumer(self.kind)
            if self.write_retry and progressed:
                self.slow_marked = True
                self.deadline_sent = sent
                self.deadline_handle = self.loop.call_later(deadline, self._write_deadline)
                return
            self.close(ClosedReason.SLOW_CONSUMER_WRITE_DEADLINE, abort=True)

    # ---------------------------------------------------------------- output

    def flush(self) -> None:
        """Hand the framed output to the transport (called once per read by flush_pending)."""
        buf = self.outbuf
        if not buf or self.closed:
            return
        # A fresh buffer: the transport may keep the old one until the kernel takes it.
        self.outbuf = bytearray()
        if self.tls_pending:
            self.outbuf = buf  # held until the TLS handshake finishes
            return
        self._write_raw(buf)
        if self.paused and not self.write_retry and self.transport.get_write_buffer_size() > self.max_pending:
            self.on_slow_consumer()

    def send(self, data: bytes) -> None:
        """Queue protocol output and make sure it is flushed after the current read."""
        if self.closed:
            return
        self.outbuf += data
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.pending.append(self)

    def _write_raw(self, data: bytes | bytearray) -> None:
        """Bytes to the socket, through the TLS layer once it is up."""
        tls = self.tls
        if tls is not None and not self.tls_pending:
            data = tls.encrypt(data)
        self.bytes_handed += len(data)
        self.transport.write(data)

    def send_now(self, data: bytes) -> None:
        """Write at once (outside a read: timers, the greeting), after what is already queued."""
        if not self.closed and self.transport is not None:
            if self.outbuf:
                self.flush()
            if self.tls_pending:
                self.outbuf += data  # after the handshake
                return
            self._write_raw(data)

    def send_err(self, err: ProtoErr, *args: object) -> None:
        self.send(err.line(*args))

    # ---------------------------------------------------------------- ClientCore hooks

    def on_slow_consumer(self) -> None:
        if self.closed:
            return
        self.log_info(f"Slow Consumer Detected: MaxPending of {self.max_pending} Exceeded")
        self.server.count_slow_consumer(self.kind)
        self.close(ClosedReason.SLOW_CONSUMER_PENDING_BYTES, abort=True)

    # ---------------------------------------------------------------- pings

    def record_pong(self) -> None:
        self.pings_out = 0
        if self.ping_sent_at:
            now = time.monotonic()
            self.rtt = now - self.ping_sent_at
            self.rtt_measured_at = now
            self.ping_sent_at = 0.0

    def _ping_timer(self) -> None:
        self.ping_handle = None
        if self.closed:
            return
        now = time.monotonic()
        if not self.ping_suppressed(now):
            if self.pings_out + 1 > self.ping_max:
                self.log_debug(f"Stale {self.KIND_NAME} Connection - Closing")
                self.server.count_stale_connection(self.kind)
                self.send_now(errors.STALE_CONNECTION.line())
                self.close(ClosedReason.STALE_CONNECTION)
                return
            self.pings_out += 1
            self.ping_sent_at = now
            self.send_now(PING)
        self.ping_handle = self.loop.call_later(self.ping_interval, self._ping_timer)

    def restart_pings(self, first: float) -> None:
        """Next PING after `first` seconds (then every `ping_interval`)."""
        if self.ping_handle is not None:
            self.ping_handle.cancel()
        self.ping_handle = self.loop.call_later(first, self._ping_timer)

    # ---------------------------------------------------------------- close

    def close(self, reason: ClosedReason, abort: bool = False) -> None:
        """Close with a reason: flush what is queued (unless `abort`), then drop the socket."""
        if self.closed:
            return
        transport = self.transport
        if transport is not None:
            if abort:
                self.outbuf = bytearray()
                transport.abort()
            else:
                if self.outbuf and not self.tls_pending:
                    self._write_raw(bytes(self.outbuf))
                self.outbuf = bytearray()
                transport.close()
        self._finish_close(reason)

    def _finish_close(self, reason: ClosedReason) -> None:
        self.closed = True
        self.closed_reason = reason
        self.stop = time.time()
        for handle in (self.ping_handle, self.deadline_handle, self.tls_handle):
            if handle is not None:
                handle.cancel()
        self.ping_handle = self.deadline_handle = self.tls_handle = None
        self.closed_hook(reason)
        for callback in self.on_close:
            callback(self)
