"""Start-up failures word for word as nats-server's (scripts and supervisors match them): the client
port already taken, a JetStream store directory that is a file. Both servers must exit with status 1
and the same `[FTL]` text (after the pid and time prefix)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
_PREFIX = re.compile(r"^\[\d+\] \S+ \S+ ")


def _run(kind: str, args: list[str]) -> tuple[int, str]:
    argv = ["nats-server", *args] if kind == "nats" else [sys.executable, "-m", "jsedge", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
    fatal = [_PREFIX.sub("", line) for line in (done.stdout + done.stderr).splitlines() if "[FTL]" in line]
    return done.returncode, fatal[-1] if fatal else ""


@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_client_port_in_use(kind: str) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", port))
        taken.listen()
        code, line = _run(kind, ["-p", str(port)])
    assert code == 1
    assert line == (
        f'[FTL] Error listening on port: 0.0.0.0:{port}, "listen tcp 0.0.0.0:{port}: bind: address already in use"'
    )


@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_store_dir_that_is_a_file(kind: str, tmp_path: Path) -> None:
    store = tmp_path / "not-a-dir"
    store.write_text("")
    for where in (store, store / "below"):
        code, line = _run(kind, ["-js", "-p", "-1", "-sd", str(where)])
        assert code == 1
        assert line == "[FTL] Can't start JetStream: storage directory is not a directory"


def _info_via(host: str, port: int, deadline: float = 10.0) -> dict:
    import json
    import time

    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                line = conn.recv(4096).split(b"\r\n", 1)[0]
                return dict(json.loads(line[5:]))
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this host")
@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_default_host_serves_ipv4_and_ipv6(kind: str) -> None:
    """With no `-a`, nats-server listens on one dual-stack socket: clients of ::1 and 127.0.0.1
    both get in, and an IPv4 client's `client_ip` is its plain IPv4 address."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = free_port()
    argv = ["nats-server", "-p", str(port)] if kind == "nats" else [sys.executable, "-m", "jsedge", "-p", str(port)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _info_via("127.0.0.1", port)["client_ip"] == "127.0.0.1"
        assert _info_via("::1", port)["client_ip"] == "::1"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_url_resolver_with_nobody_home(kind: str, tmp_path: Path) -> None:
    """`resolver: URL(...)` whose account server answers 404 at start: the server does not start."""
    import http.server
    import threading

    import nkeys

    from tests.natsjwt import encode, new_key

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    operator_jwt = encode({"sub": operator.public, "name": "O", "nats": {"type": "operator", "version": 2}}, operator)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/jwt/v1/accounts/"
    conf = tmp_path / "url.conf"
    conf.write_text(f'operator: {operator_jwt}\nresolver: URL("{url}")\n')
    try:
        argv = ["nats-server"] if kind == "nats" else [sys.executable, "-m", "jsedge"]
        done = subprocess.run(
            [*argv, "-c", str(conf), "-p", "-1"], capture_output=True, text=True, timeout=30, cwd=ROOT
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    name = "nats-server" if kind == "nats" else "jsedge"
    assert done.returncode == 1
    assert f'{name}: could not fetch <"{url}">: 404 Not Found' in done.stdout + done.stderr
