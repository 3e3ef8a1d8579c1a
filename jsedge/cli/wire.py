"""A blocking NATS client for the CLI's one-shot commands: connect, request, publish, flush, close.

Why not nats-py here: a command such as `jsedge stream ls` is called in loops by scripts, and
importing asyncio and nats-py costs ~65 ms of a ~110 ms call on the reference machine; this
module needs only `socket` and `json` (~3 ms). It covers what those commands need and nothing
else: one server at a time from the URL list, user/password or token authentication, requests
with a wildcard reply inbox, headers, and no-responders statuses. Anything else (TLS, credentials
files, WebSocket URLs, subscriptions) raises `NeedsFullClient` before the command runs, and the
CLI runs it with nats-py as before.

Its methods are coroutines that never suspend, so a command handler written for nats-py's
`ctx.nc` (`await ctx.nc.request(...)`, `await ctx.nc.publish(...)`) runs on either client, and
`drive()` runs such a handler to completion without an event loop.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import unquote, urlsplit

from jsedge import __version__


class NeedsFullClient(Exception):
    """This connection needs something only nats-py does (TLS, credentials, WebSocket, ...)."""


class WireError(Exception):
    """The server refused us (`-ERR`) or the connection failed."""


class WireTimeout(WireError, TimeoutError):
    """No answer within the timeout."""


class NoResponders(WireError):
    """A request nobody listens to (status 503)."""


class Msg:
    """A received message, with the attributes of nats-py's `Msg` the CLI reads."""

    __slots__ = ("subject", "reply", "data", "headers")

    def __init__(self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data
        self.headers = headers


def parse_headers(block: bytes) -> tuple[int, dict[str, str]]:
    """`NATS/1.0 503\\r\\nKey: value\\r\\n\\r\\n` -> (status or 0, headers)."""
    lines = block.decode("utf-8", "replace").split("\r\n")
    status = 0
    first = lines[0].split(None, 2)
    if len(first) > 1 and first[1].isdigit():
        status = int(first[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep and key:
            headers[key.strip()] = value.strip()
    return status, headers


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (one that awaits only this client) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a fast CLI command awaited something other than the blocking client")


class WireClient:
    """One blocking connection; see the module's docstring."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._inbox = f"_INBOX.{os.urandom(8).hex()}"
        self._next = 0
        self._subscribed = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.timeout = timeout
        self.is_closed = False

    # -- connecting

    @classmethod
    def connect(
        cls,
        servers: list[str],
        *,
        user: str | None,
        password: str | None,
        name: str,
        timeout: float,
    ) -> WireClient:
        """Connect to the first server of `servers` that answers; NeedsFullClient for what only
        nats-py does, WireError with the last failure when none answers."""
        last: Exception | None = None
        for url in servers:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            if parts.scheme != "nats":
                raise NeedsFullClient(parts.scheme)
            url_user = unquote(parts.username) if parts.username else None
            url_password = unquote(parts.password) if parts.password is not None else None
            try:
                sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout)
            except OSError as exc:
                last = exc
                continue
            client = cls(sock, timeout)
            try:
                client._handshake(url_user or user, url_password if url_user else password, name)
            except BaseException:
                client.close_now()
                raise
            return client
        raise WireError(str(last) if last else "no servers")

    def _handshake(self, user: str | None, password: str | None, name: str) -> None:
        line = self._line(time.monotonic() + self.timeout)
        if not line.startswith(b"INFO "):
            raise WireError(f"unexpected greeting {line[:60]!r}")
        info = json.loads(line[5:])
        if info.get("tls_required") or info.get("tls_available") and info.get("tls_first"):
            raise NeedsFullClient("tls")
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "lang": "python",
            "version": __version__,
            "protocol": 1,
            "headers": True,
            "no_responders": True,
            "name": name,
        }
        if user and password is None:
            options["auth_token"] = user
        elif user:
            options["user"], options["pass"] = user, password
        self._sock.sendall(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        deadline = time.monotonic() + self.timeout
        while True:
            line = self._line(deadline)
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise WireError(line[4:].strip().strip(b"'").decode("utf-8", "replace"))
            if line == b"PING":
                self._sock.sendall(b"PONG\r\n")

    # -- reading

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WireTimeout("timeout")
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise WireTimeout("timeout") from None
        except OSError as exc:
            raise WireError(str(exc)) from None
        if not chunk:
            raise WireError("connection closed by the server")
        self._buf += chunk

    def _line(self, deadline: float) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            self._fill(deadline)

    def _exact(self, size: int, deadline: float) -> bytes:
        while len(self._buf) < size + 2:
            self._fill(deadline)
        data = bytes(self._buf[:size])
        del self._buf[: size + 2]
        return data

    def _next_msg(self, deadline: float) -> Msg | None:
        """The next message, answering PINGs and skipping PONGs; None for a PONG."""
        while True:
            line = self._line(deadline)
            if line.startswith((b"MSG ", b"HMSG ")):
                parts = line.split()
                head = parts[0] == b"HMSG"
                total = int(parts[-1])
                reply = parts[3].decode() if len(parts) == (6 if head else 5) else ""
                raw = self._exact(total, deadline)
                headers = None
                if head:
                    split = int(parts[-2])
                    status, headers = parse_headers(raw[:split])
                    raw = raw[split:]
                    if status:
                        headers["Status"] = str(status)
                return Msg(parts[1].decode(), reply, raw, headers)
            if line == b"PING":
                self._sock.sendall(b"PONG\r\n")
            elif line == b"PONG":
                return None
            elif line.startswith(b"-ERR"):
                raise WireError(line[4:].strip().strip(b"'").decode("utf-8", "replace"))

    # -- the nats-py subset the handlers use

    def _frame(self, subject: str, data: bytes, reply: str, headers: dict[str, str] | None) -> bytes:
        reply_part = f" {reply}" if reply else ""
        if headers:
            block = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            head = block.encode()
            total = len(head) + len(data)
            return f"HPUB {subject}{reply_part} {len(head)} {total}\r\n".encode() + head + data + b"\r\n"
        return f"PUB {subject}{reply_part} {len(data)}\r\n".encode() + data + b"\r\n"

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        frame = self._frame(subject, payload, reply, headers)
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes > 65536:
            self._send_pending()

    def _send_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise WireError(str(exc)) from None

    async def flush(self, timeout: float | None = None) -> None:
        self._pending.append(b"PING\r\n")
        self._send_pending()
        deadline = time.monotonic() + (timeout or self.timeout)
        while self._next_msg(deadline) is not None:
            pass  # a late answer to an abandoned request

    async def request(
        self, subject: str, payload: bytes = b"", timeout: float | None = None, headers: dict[str, str] | None = None
    ) -> Msg:
        if not self._subscribed:
            self._pending.append(f"SUB {self._inbox}.* 1\r\n".encode())
            self._subscribed = True
        self._next += 1
        reply = f"{self._inbox}.{self._next}"
        self._pending.append(self._frame(subject, payload, reply, headers))
        self._send_pending()
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._next_msg(deadline)
            if msg is None or msg.subject != reply:
                continue
            if msg.headers and msg.headers.get("Status") == "503" and not msg.data:
                raise NoResponders(subject)
            return msg

    def close_now(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            try:
                self._send_pending()
            except WireError:
                pass
            self._sock.close()

    async def close(self) -> None:
        self.close_now()

    async def drain(self) -> None:
        if not self.is_closed:
            try:
                await self.flush(min(self.timeout, 2.0))
            except WireError:
                pass
            self.close_now()
