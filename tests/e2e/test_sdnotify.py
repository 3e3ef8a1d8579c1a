"""sd_notify end to end: jsedge run with a fake NOTIFY_SOCKET (pytest plays systemd).

READY=1 after the listeners are up, STATUS lines, WATCHDOG=1 at half of WATCHDOG_USEC while the event
loop runs (and not while it is blocked), RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO_ROOT, RawClient


class FakeSystemd:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path
        self.seen: list[tuple[float, list[str]]] = []

    def recv_until(self, key: str, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                lines = self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                break
            self.seen.append((time.monotonic(), lines))
            if key in lines or any(line.startswith(key) for line in lines):
                return lines
        raise AssertionError(f"{key} not received; got {self.seen}")

    def close(self) -> None:
        self.sock.close()


def _start(
    tmp_path: Path, extra_env: dict[str, str], args: list[str] | None = None
) -> tuple[subprocess.Popen, FakeSystemd]:
    systemd = FakeSystemd(tmp_path / "notify.sock")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), NOTIFY_SOCKET=str(systemd.path), **extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jsedge", "-a", "127.0.0.1", "-p", "-1", *(args or [])],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, systemd


def _port_from(proc: subprocess.Popen) -> int:
    assert proc.stderr is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "Listening for client connections on" in line:
            return int(line.rsplit(":", 1)[1])
    raise AssertionError("no listening line")


def test_ready_status_watchdog_reload_stopping(tmp_path: Path) -> None:
    conf = tmp_path / "j.conf"
    conf.write_text("server_name: sd\n")
    proc, systemd = _start(tmp_path, {"WATCHDOG_USEC": "400000"}, ["-c", str(conf)])
    try:
        ready = systemd.recv_until("READY=1")
        assert any(line.startswith("STATUS=") for line in ready)
        port = _port_from(proc)
        # READY came after the listener: a connection succeeds at once.
        client = RawClient(port)
        client.read_info()
        first = systemd.recv_until("WATCHDOG=1")
        systemd.recv_until("WATCHDOG=1")
        assert first
        proc.send_signal(signal.SIGHUP)
        systemd.recv_until("RELOADING=1")
        systemd.recv_until("READY=1")
        proc.send_signal(signal.SIGTERM)
        systemd.recv_until("STOPPING=1")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        systemd.close()


def test_blocked_event_loop_stops_watchdog_pings(tmp_path: Path) -> None:
    proc, systemd = _start(tmp_path, {"WATCHDOG_USEC": "200000", "JSEDGE_TEST_HOOKS": "1"})
    try:
        systemd.recv_until("READY=1")
        port = _port_from(proc)
        systemd.recv_until("WATCHDOG=1")
        client = RawClient(port)
        client.read_info()
        # The test hook blocks the event loop for 1.5 s (as a stuck handler would).
        client.send(b'CONNECT {"verbose":false,"pedantic":false}\r\nPUB $JSEDGE.TEST.block 3\r\n1.5\r\n')
        blocked_at = time.monotonic()
        systemd.sock.settimeout(0.05)
        # Drain pings already in flight, then expect silence while the loop is blocked.
        pings = []
        while time.monotonic() - blocked_at < 1.2:
            try:
                data = systemd.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in data:
                pings.append(time.monotonic() - blocked_at)
        assert all(at < 0.3 for at in pings), pings
        # And they come back once the loop runs again.
        systemd.recv_until("WATCHDOG=1", timeout=5)
    finally:
        proc.kill()
        proc.wait(5)
        systemd.close()


def test_without_notify_socket_nothing_breaks() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jsedge", "-a", "127.0.0.1", "-p", "-1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _port_from(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("level", ["INF", "ERR"])
def test_journald_priority_prefixes(level: str) -> None:
    import io

    from jsedge.log import Logger

    out = io.StringIO()
    logger = Logger(stream=out, journald=True)
    logger.log(level, "hello")
    assert out.getvalue() == f"<{6 if level == 'INF' else 3}>[{level}] hello\n"
