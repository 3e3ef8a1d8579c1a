"""The one table of wire errors (layer 0).

* Core protocol `-ERR` texts, and whether each closes the connection.
* Connection close reasons, as `/connz?state=closed` shows them.
* Status lines of header-only messages (no-responders, JetStream pull answers...).

Numbers and texts are nats-server 2.15's; clients pattern-match them, so never reword an entry.
JetStream API errors (`{code, err_code, description}`) join this table when JetStream lands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProtoErr:
    """A core protocol error: the exact `-ERR` text and whether the connection is closed after it."""

    text: str
    closes: bool

    def line(self, *args: object) -> bytes:
        """The full wire line, `-ERR '<text>'\\r\\n`, with `%`-style arguments filled in."""
        text = self.text % args if args else self.text
        return b"-ERR '" + text.encode() + b"'\r\n"


class ClosedReason(enum.Enum):
    """Why a connection was closed (`/connz` `reason`)."""

    CLIENT_CLOSED = "Client Closed"
    AUTHENTICATION_TIMEOUT = "Authentication Timeout"
    AUTHENTICATION_VIOLATION = "Authentication Failure"
    TLS_HANDSHAKE_ERROR = "TLS Handshake Failure"
    SLOW_CONSUMER_PENDING_BYTES = "Slow Consumer (Pending Bytes)"
    SLOW_CONSUMER_WRITE_DEADLINE = "Slow Consumer (Write Deadline)"
    WRITE_ERROR = "Write Error"
    READ_ERROR = "Read Error"
    PARSE_ERROR = "Parse Error"
    STALE_CONNECTION = "Stale Connection"
    PROTOCOL_VIOLATION = "Protocol Violation"
    BAD_CLIENT_PROTOCOL_VERSION = "Bad Client Protocol Version"
    WRONG_PORT = "Incorrect Port"
    MAX_CONNECTIONS_EXCEEDED = "Maximum Connections Exceeded"
    MAX_ACCOUNT_CONNECTIONS_EXCEEDED = "Maximum Account Connections Exceeded"
    MAX_PAYLOAD_EXCEEDED = "Maximum Message Payload Exceeded"
    MAX_CONTROL_LINE_EXCEEDED = "Maximum Control Line Exceeded"
    MAX_SUBSCRIPTIONS_EXCEEDED = "Maximum Subscriptions Exceeded"
    SERVER_SHUTDOWN = "Server Shutdown"
    AUTHENTICATION_EXPIRED = "Authentication Expired"
    NO_RESPONDERS_REQUIRES_HEADERS = "No Responders Requires Headers"
    KICKED = "Kicked"


# Core -ERR table (spec/protocol.md §13.1).
UNKNOWN_OP = ProtoErr("Unknown Protocol Operation", True)
MAX_CONTROL_LINE = ProtoErr("maximum control line exceeded", True)
MAX_PAYLOAD = ProtoErr("Maximum Payload Violation", True)
AUTH_VIOLATION = ProtoErr("Authorization Violation", True)
AUTH_TIMEOUT = ProtoErr("Authentication Timeout", True)
AUTH_EXPIRED = ProtoErr("User Authentication Expired", True)
BAD_CLIENT_PROTOCOL = ProtoErr("invalid client protocol", True)
NO_RESPONDERS_NEEDS_HEADERS = ProtoErr("no responders requires headers support", True)
MAX_CONNECTIONS = ProtoErr("maximum connections exceeded", True)
MAX_ACCOUNT_CONNECTIONS = ProtoErr("maximum account active connections exceeded", True)
STALE_CONNECTION = ProtoErr("Stale Connection", True)
TLS_REQUIRED = ProtoErr("Secure Connection - TLS Required", True)
ROUTE_PORT = ProtoErr("attempted to connect to route port", True)
LEAF_PORT = ProtoErr("attempted to connect to leaf node port", True)
INVALID_SUBJECT = ProtoErr("Invalid Subject", False)
INVALID_PUBLISH_SUBJECT = ProtoErr("Invalid Publish Subject", False)
PERM_PUBLISH = ProtoErr("Permissions Violation for Publish to %s", False)
PERM_PUBLISH_REPLY = ProtoErr("Permissions Violation for Publish with Reply of %s", False)
PERM_SUBSCRIBE = ProtoErr("Permissions Violation for Subscription to %s", False)
PERM_SUBSCRIBE_QUEUE = ProtoErr("Permissions Violation for Subscription to %s using queue %s", False)
PERM_SUBSCRIBE_TOKENS = ProtoErr("Permissions Violation for Subscription to %s, too many tokens", False)
MAX_SUBSCRIPTIONS = ProtoErr("maximum subscriptions exceeded", False)

#: Parser error keys (reported by both parser twins) -> (error or None for a silent close, reason).
PARSER_ERRORS: dict[str, tuple[ProtoErr | None, ClosedReason]] = {
    "unknown_op": (UNKNOWN_OP, ClosedReason.PROTOCOL_VIOLATION),
    "max_control_line": (MAX_CONTROL_LINE, ClosedReason.MAX_CONTROL_LINE_EXCEEDED),
    "max_payload": (MAX_PAYLOAD, ClosedReason.MAX_PAYLOAD_EXCEEDED),
    "silent": (None, ClosedReason.PROTOCOL_VIOLATION),
}


def go_quote(text: str) -> str:
    """Go's `%q` of a string: double quotes, Go escapes for quotes, backslashes and non-printables."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch == "\ufffd" or not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# Status lines of header-only messages (spec/protocol.md §7.2).
STATUS_NO_RESPONDERS = b"NATS/1.0 503\r\n"
