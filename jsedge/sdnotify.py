"""systemd readiness and watchdog notifications without libsystemd (layer 7: used by the server only;
its watchdog runs on the event loop, which layer 0 must not import).

A datagram to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). The watchdog pings
are scheduled on the event loop itself, at half of `$WATCHDOG_USEC`: a loop that stalls stops
pinging, and systemd kills and restarts the service, which is the point of the watchdog.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time


class Notifier:
    """Sends sd_notify messages; every method is a no-op when not run by systemd (Type=notify)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        self.watchdog_interval = 0.0
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2_000_000
        self._socket: socket.socket | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload.
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.watchdog_interval <= 0 or not self.address:
            return

        def ping() -> None:
            self.notify("WATCHDOG=1")
            self._watchdog = loop.call_later(self.watchdog_interval, ping)

        ping()

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def close(self) -> None:
        self.stop_watchdog()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
