"""TLS on a connection after the plain INFO (layer 2), on memory BIOs: the server side for clients
(and accepted routes), the client side for routes this server connects to.

nats-server sends INFO in the clear and the client then starts the handshake on the same socket.
asyncio's `start_tls()` has two faults for that: under uvloop the client's ClientHello can reach the
plain protocol before the TLS protocol is installed (measured: 1 handshake in 3 failed), and on a
handshake failure it resets the socket without sending the TLS alert, so nats-py connects
"successfully" to a server that refused its certificate. Driving `ssl.SSLObject` ourselves from
`data_received` has neither problem, and makes `allow_non_tls` (sniffing the first byte) trivial.
"""

from __future__ import annotations

import ssl
from typing import Any

#: First byte of a TLS record carrying a handshake (the ClientHello).
TLS_HANDSHAKE_BYTE = 0x16
_READ_CHUNK = 256 * 1024


class TLSShim:
    __slots__ = ("ssl_object", "incoming", "outgoing", "handshaking", "peer_closed")

    def __init__(self, context: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.handshaking = True
        if not server_side:  # the client speaks first: queue the ClientHello
            try:
                self.ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                pass
        #: The client sent close_notify: answer it (clients wait for ours) and close.
        self.peer_closed = False

    def receive(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Feed ciphertext; returns (plaintext chunks, ciphertext to send back). Raises ssl.SSLError
        when the handshake or a record fails; `pending_output()` then holds the alert to send."""
        self.incoming.write(data)
        chunks: list[bytes] = []
        if self.handshaking:
            try:
                self.ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                return chunks, self.outgoing.read()
            self.handshaking = False
        while True:
            try:
                chunk = self.ssl_object.read(_READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify from the client
                chunk = b""
            if not chunk:  # SSLObject.read() gives b"" (or raises) on the client's close_notify
                self.peer_closed = True
                try:
                    self.ssl_object.unwrap()  # queues our close_notify in `outgoing`
                except ssl.SSLError:
                    pass
                break
            chunks.append(chunk)
        return chunks, self.outgoing.read()

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        self.ssl_object.write(data)
        return self.outgoing.read()

    def pending_output(self) -> bytes:
        return self.outgoing.read()

    def describe(self) -> tuple[str, str]:
        """(version as nats-server shows it, e.g. "1.3"; cipher name)."""
        version = (self.ssl_object.version() or "").replace("TLSv", "")
        cipher = self.ssl_object.cipher()
        return version, cipher[0] if cipher else ""

    def peer_certificate(self) -> Any:
        return self.ssl_object.getpeercert()


def build_tls_context(tls: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file:
        context.load_verify_locations(tls.ca_file)
    if tls.verify or tls.verify_and_map:
        context.verify_mode = ssl.CERT_REQUIRED
    if tls.min_version == "1.3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def build_tls_client_context(tls: Any) -> ssl.SSLContext:
    """The dialling side of a TLS route: our certificate, the peer's checked against `ca_file`
    (and its name against the route URL's host unless `insecure`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file:
        context.load_verify_locations(tls.ca_file)
    else:
        context.load_default_certs()
    if getattr(tls, "insecure", False):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    return context
