"""What a route and a leaf node connection share (layer 2): server-to-server links.

Both speak a CONNECT without `lang` (a client on their port is refused), PING/PONG without
suppression, messages that carry their queue groups and, for a JetStream delivery, the subject to
show after an `@` in the ack reply. The protocols proper are in jsedge.routing.route and
jsedge.routing.leaf.
"""

from __future__ import annotations

import time
from typing import Any

from jsedge import errors, gojson
from jsedge.errors import ClosedReason
from jsedge.routing.connection import PONG, Connection


class ServerLink(Connection):
    """A route or a leaf connection. Subclasses have `auth_handle`, `connect_seen` and `trace`,
    and name themselves in log lines with `LINK_NAME`."""

    __slots__ = ()

    # kept by the subclasses (in their own __slots__)
    auth_handle: Any
    connect_seen: bool
    trace: bool

    #: "Route" or "Leafnode": nats-server's word in "<name> parser ERROR" lines.
    LINK_NAME = "Route"

    def ping_suppressed(self, now: float) -> bool:
        return False  # nats-server never skips a server link's PING

    def _auth_timeout(self) -> None:
        self.auth_handle = None
        if not self.closed and not self.connect_seen:
            self.log_error("Authentication Timeout")
            self.send_now(errors.AUTH_TIMEOUT.line())
            self.close(ClosedReason.AUTHENTICATION_TIMEOUT)

    def proto_error(self, key: str) -> None:
        err, reason = errors.PARSER_ERRORS[key]
        if err is not None:
            self.log_error(f"{self.LINK_NAME} parser ERROR: '{err.text}'")
            self.send_err(err)
        self.close(reason)

    def proto_ping(self) -> None:
        self.last_in_seen = time.monotonic()
        self.send(PONG)

    def proto_pong(self) -> None:
        self.record_pong()

    def connect_options(self, arg: bytes, wrong_port: errors.ProtoErr, port_name: str) -> dict[str, Any] | None:
        """The CONNECT's options, or None after closing: not a JSON object (protocol violation), a
        client (`lang`: the port's `-ERR`) or a gateway on this port (nats-server's texts)."""
        if self.trace:
            self.log_trace(f"<<- [CONNECT {arg.decode(errors='replace')}]")
        try:
            opts = gojson.loads(arg)
        except ValueError:
            opts = None
        if not isinstance(opts, dict):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return None
        if self.auth_handle is not None:
            self.auth_handle.cancel()
            self.auth_handle = None
        if opts.get("lang"):
            self.send_err(wrong_port)
            self.close(ClosedReason.WRONG_PORT)
            return None
        gateway = opts.get("gateway")
        if isinstance(gateway, str) and gateway:
            text = f'Rejecting connection from gateway "{gateway}" on the {port_name} port'
            self.log_error(text)
            self.send(b"-ERR '" + text.encode() + b"'\r\n")
            self.close(ClosedReason.WRONG_GATEWAY)
            return None
        return opts

    def deliver_routed(
        self, sublist: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes, queues: list[bytes] | None
    ) -> None:
        """A message from the link that the compiled parser did not deliver (log tracing on, or
        message tracing asked for in its headers)."""
        from jsedge.routing.sublist import deliver_as
        from jsedge.subjects import js_deliver_split

        if hdr_len > 0 and msg.find(b"Nats-Trace-", 0, hdr_len) >= 0 and not (reply and js_deliver_split(reply) >= 0):
            from jsedge.routing.tracing import trace_routed

            if trace_routed(self, sublist, subject, reply, hdr_len, msg, queues):
                return

        shown = subject
        at = js_deliver_split(reply) if reply else -1
        if at >= 0:  # a JetStream delivery: shown with the stored subject
            shown, reply = reply[at + 1 :], reply[:at]
        deliver_as(sublist, self, subject, shown, reply, hdr_len, msg, queues)
