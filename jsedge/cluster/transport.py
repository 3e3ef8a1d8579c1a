"""Messages between the JetStream servers of a cluster (layer 6): Raft traffic and the coordinator's
control messages, carried over the routes as ordinary internal messages of the system account.

Each server subscribes to `$NRG.<its peer id>` in the system account (the subscription is announced
to the routes like any other), and a message for peer P is an internal publish to `$NRG.P`: the route
layer carries it one hop to P's server. Clients outside the system account can never reach these
subjects (accounts are isolated), and the system account's users are the operators. The subject is
nats-server's reserved `$NRG.` prefix; the payload is ours:

    byte 0 = 1   a Raft message for a group: codec.encode(group, message)
    byte 0 = 2   a control message: JSON {"t": type, ...} (hello, forwarded proposals, catch-up
                 requests and their answers are small or infrequent)
    byte 0 = 3   a stream catch-up batch: uvarint len(group) group, then records (see stream.py)

Messages are fire-and-forget, as Raft assumes: a lost one is retried by the protocol that sent it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jsedge.cluster import codec

RAFT = 1
CONTROL = 2
CATCHUP = 3

SUBJECT_PREFIX = b"$NRG."


class Transport:
    def __init__(self, server: Any, account: Any, me: str) -> None:
        self.server = server
        self.account = account
        self.me = me
        #: group name -> handler(message) for Raft traffic
        self.groups: dict[str, Callable[[Any], None]] = {}
        #: control message type -> handler(sender peer, document)
        self.control: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        #: group name -> handler(payload) for catch-up batches
        self.catchup: dict[str, Callable[[bytes], None]] = {}
        self.sub: Any = None
        self.sent = 0
        self.received = 0
        self.dropped = 0

    def start(self) -> None:
        self.sub = self.server.subscribe_internal(self.account, SUBJECT_PREFIX + self.me.encode(), self._on_message)

    def stop(self) -> None:
        if self.sub is not None:
            self.server.unsubscribe_internal(self.account, self.sub)
            self.sub = None

    # ------------------------------------------------------------------ sending

    def _send(self, peer: str, payload: bytes) -> None:
        self.sent += 1
        self.server.send_internal(self.account, SUBJECT_PREFIX + peer.encode(), b"", b"", payload)

    def send_raft(self, peer: str, group: str, message: Any) -> None:
        self._send(peer, bytes((RAFT,)) + codec.encode(group, message))

    def send_control(self, peer: str, kind: str, document: dict[str, Any]) -> None:
        body = dict(document)
        body["t"] = kind
        body["from"] = self.me
        self._send(peer, bytes((CONTROL,)) + json.dumps(body, separators=(",", ":")).encode())

    def send_catchup(self, peer: str, group: str, payload: bytes) -> None:
        name = group.encode()
        self._send(peer, bytes((CATCHUP, len(name))) + name + payload)

    # ------------------------------------------------------------------ receiving

    def _on_message(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        data = bytes(msg[hdr_len:]) if hdr_len >= 0 else bytes(msg)
        if not data:
            return
        self.received += 1
        kind = data[0]
        try:
            if kind == RAFT:
                group, message = codec.decode(data[1:])
                handler = self.groups.get(group)
                if handler is None:
                    self.dropped += 1
                    return
                handler(message)
            elif kind == CONTROL:
                document = json.loads(data[1:])
                if not isinstance(document, dict):
                    return
                control = self.control.get(str(document.get("t")))
                if control is not None:
                    control(str(document.get("from", "")), document)
            elif kind == CATCHUP:
                size = data[1]
                group = data[2 : 2 + size].decode()
                catchup = self.catchup.get(group)
                if catchup is not None:
                    catchup(data[2 + size :])
        except Exception as exc:  # a malformed payload (a peer's or a system user's): drop it, never crash
            self.dropped += 1
            self.server.logger.warn(f"JetStream cluster dropped a malformed message: {type(exc).__name__}: {exc}")


__all__ = ["CATCHUP", "CONTROL", "RAFT", "SUBJECT_PREFIX", "Transport"]
