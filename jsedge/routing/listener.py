"""The client listening socket (layer 2, stdlib `socket` only).

`bind_listener(host, port)` binds and listens the way `loop.create_server(host=..., port=...)` does for
one numeric address (SO_REUSEADDR, IPV6_V6ONLY on IPv6, the same bind error text; a wildcard host
gets one dual-stack socket, as nats-server listens), but without the
event loop's getaddrinfo, which uvloop runs on libuv's thread pool: four threads and their malloc
arenas (~0.3 MiB of idle RSS) and a millisecond of startup, for an address that needs no lookup.
`python -m jsedge` binds before importing the server and asyncio, so a client connecting during
startup waits in the kernel's backlog for its INFO instead of being refused and retrying.

Host names (not numeric addresses) return None here: the server then uses `create_server(host=...)`,
which may bind several addresses.
"""

from __future__ import annotations

import errno
import socket
from typing import Any


def listen_address(config: Any) -> tuple[str, int]:
    """(host, port) of the client listener in a ServerConfig; port 0 (random) for -1."""
    port = config.listen.port
    return config.listen.host or "0.0.0.0", 0 if port == -1 else port


def numeric_family(host: str) -> int | None:
    """AF_INET / AF_INET6 for a numeric address, else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family
    return None


def bind_listener(host: str, port: int, backlog: int = 1024) -> socket.socket | None:
    """A listening, non-blocking socket on a numeric `host`; None for a host name.

    Raises OSError with create_server's message (`error while attempting to bind on address ...`).
    """
    family = numeric_family(host)
    if family is None:
        return None
    if host in ("0.0.0.0", "::") and socket.has_ipv6:
        # nats-server (Go's "tcp" listener) serves a wildcard host on one dual-stack socket: a
        # client reaching ::1 or any IPv6 address gets in as well as an IPv4 one
        try:
            return _bind(socket.AF_INET6, ("::", port, 0, 0), backlog, dual=True)
        except OSError as err:
            if host == "::" or err.errno not in _NO_IPV6:
                raise
    address: tuple[str, int] | tuple[str, int, int, int] = (
        (host, port) if family == socket.AF_INET else (host, port, 0, 0)
    )
    return _bind(family, address, backlog, dual=False)


#: errno values that mean "this host has no IPv6": fall back to an IPv4 socket.
_NO_IPV6 = {errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL}


def _bind(family: int, address: Any, backlog: int, *, dual: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
        try:
            sock.bind(address)
        except OSError as err:
            raise OSError(
                err.errno, f"error while attempting to bind on address {address!r}: {(err.strerror or '').lower()}"
            ) from None
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def local_addresses() -> list[str]:
    """This host's global unicast addresses, interface by interface, IPv4 then IPv6 (what
    nats-server advertises for a 0.0.0.0 listener: Go's IsGlobalUnicast, so private and ULA
    addresses too, not loopback or link-local): IPv4 from SIOCGIFADDR, IPv6 from
    /proc/net/if_inet6; ["127.0.0.1"] when there are none."""
    import fcntl
    import struct

    ipv6: dict[str, list[str]] = {}
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) < 6:
                    continue
                raw, scope, name = fields[0], fields[3], fields[5]
                packed = bytes.fromhex(raw)
                if scope != "00" or packed[:2] == b"\xff\x00" or packed == bytes(15) + b"\x01":
                    continue  # only global scope: no link-local, loopback or multicast
                ipv6.setdefault(name, []).append(socket.inet_ntop(socket.AF_INET6, packed))
    except OSError:
        pass
    addresses: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:
                answer = b""  # no IPv4 address on this interface
            if answer:
                address = socket.inet_ntoa(answer[20:24])
                if not address.startswith("127.") and address not in addresses:
                    addresses.append(address)
            for address in ipv6.get(name, ()):
                if address not in addresses:
                    addresses.append(address)
    return addresses or ["127.0.0.1"]
