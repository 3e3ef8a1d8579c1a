"""The `jsedge` server command line, config checks, log lines and signals, end to end (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, RawClient, ServerProcess, check_for


def run_jsedge(*args: str, cwd: Path | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "jsedge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_version_prints_and_exits_zero() -> None:
    done = run_jsedge("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("jsedge: v")
    assert run_jsedge("-v").returncode == 0


def test_help_lists_nats_server_flags() -> None:
    done = run_jsedge("-h")
    assert done.returncode == 0
    for flag in ("--port", "--jetstream", "--store_dir", "--tlscert", "--http_port", "--config"):
        assert flag in done.stdout + done.stderr


def test_unknown_flag_is_a_clear_error() -> None:
    done = run_jsedge("--no-such-flag")
    assert done.returncode == 1
    assert "no-such-flag" in done.stderr


def test_check_config_valid_and_invalid(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text("server_name: home1\nport: 4333\n")
    done = run_jsedge("-t", "-c", str(good))
    assert done.returncode == 0, done.stderr
    assert "is valid (sha256:" in done.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("port: 4333\nunknown_key: 1\n")
    done = run_jsedge("-t", "-c", str(bad))
    assert done.returncode == 1
    assert f'{bad}:2:1: unknown field "unknown_key"' in done.stderr


def test_seed_config_loads_unchanged(tmp_path: Path) -> None:
    seed = REPO_ROOT / "tests" / "data" / "seed_nats.conf"
    done = run_jsedge("-t", "-c", str(seed))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
def test_cluster_flags_start_a_route_listener(kind: str) -> None:
    with ServerProcess(kind, ["--cluster_name", "homelab", "--cluster_listen", "nats://127.0.0.1:-1"]) as server:
        server.wait_for_log(r"Cluster name is homelab", 5)
        server.wait_for_log(r"Listening for route connections on 127\.0\.0\.1:\d+", 5)
        assert any(line.endswith("  Cluster:  homelab") for line in server.log_lines())


def test_random_port_key_lines_pidfile_and_ports_file(tmp_path: Path) -> None:
    pidfile = tmp_path / "jsedge.pid"
    with ServerProcess("jsedge", ["-P", str(pidfile), "--ports_file_dir", str(tmp_path)], http=True) as server:
        assert server.port and server.port > 0
        lines = "\n".join(server.log_lines())
        assert f"Listening for client connections on 127.0.0.1:{server.port}" in lines
        assert "Server is ready" in lines
        assert "Starting http monitor on 127.0.0.1:" in lines
        assert pidfile.read_text() == str(server.pid)  # no trailing newline, like nats-server
        ports = check_for(5, lambda: list(tmp_path.glob("*.ports")))
        data = json.loads(ports[0].read_text())
        assert data["nats"] == [f"nats://127.0.0.1:{server.port}"]
        assert data["monitoring"] == [f"http://127.0.0.1:{server.http_port}"]


def test_log_line_format_and_logtime_flag() -> None:
    with ServerProcess("jsedge") as server:
        first = server.log_lines()[0]
        # [pid] YYYY/MM/DD HH:MM:SS.uuuuuu [INF] Starting nats-server
        assert first.startswith(f"[{server.pid}] ")
        assert "[INF] Starting nats-server" in first
    with ServerProcess("jsedge", ["-T=false"]) as server:
        assert server.log_lines()[0] == f"[{server.pid}] [INF] Starting nats-server"


def test_sigterm_is_graceful() -> None:
    server = ServerProcess("jsedge")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert any("Server Exiting.." in line for line in server.log_lines())


def test_sighup_reloads_auth(tmp_path: Path) -> None:
    config = "authorization { user: a, password: one }\n"
    with ServerProcess("jsedge", config=config) as server:
        client = RawClient(server)
        client.read_info()
        client.send(b'CONNECT {"verbose":false,"user":"a","pass":"one"}\r\nPING\r\n')
        assert client.read_line() == b"PONG\r\n"
        assert server.config_path is not None
        server.config_path.write_text("authorization { user: a, password: two }\n")
        mark = server.log_mark()
        server.signal(signal.SIGHUP)
        server.wait_for_log("Reloaded server configuration", 10, since=mark)
        # Existing clients are re-checked: the old password no longer holds.
        assert client.expect_closed(5)
        fresh = RawClient(server)
        fresh.read_info()
        fresh.send(b'CONNECT {"verbose":false,"user":"a","pass":"two"}\r\nPING\r\n')
        assert fresh.read_line() == b"PONG\r\n"


def test_sighup_with_restart_only_change_is_refused(tmp_path: Path) -> None:
    with ServerProcess("jsedge", config="server_name: one\n") as server:
        assert server.config_path is not None
        server.config_path.write_text("server_name: two\n")
        mark = server.log_mark()
        server.signal(signal.SIGHUP)
        server.wait_for_log("config reload not supported for", 10, since=mark)
        client = RawClient(server)
        assert client.read_info()["server_name"] == "one"


def test_sigusr1_reopens_log_file(tmp_path: Path) -> None:
    logfile = tmp_path / "jsedge.log"
    server = ServerProcess("jsedge", ["-l", str(logfile)], ready_timeout=0.5, start=False)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jsedge", "-a", "127.0.0.1", "-p", "-1", "-l", str(logfile)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        check_for(10, lambda: logfile.exists() and "Server is ready" in logfile.read_text())
        rotated = tmp_path / "jsedge.log.1"
        logfile.rename(rotated)
        proc.send_signal(signal.SIGUSR1)
        check_for(10, lambda: logfile.exists() and "File log re-opened" in logfile.read_text())
    finally:
        proc.terminate()
        proc.wait(10)
    del server


@pytest.mark.parametrize("flag", ["-DV", "-V"])
def test_trace_shows_protocol(flag: str) -> None:
    with ServerProcess("jsedge", [flag]) as server:
        client = RawClient(server)
        client.read_info()
        client.send(
            b'CONNECT {"verbose":false,"pedantic":false,"pass":"x"}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n'
        )
        client.read_until(b"PONG\r\n")
        server.wait_for_log(r"<<- \[SUB foo 1\]", 5)
        server.wait_for_log(r"<<- \[PUB foo 5\]", 5)
        server.wait_for_log(r'<<- MSG_PAYLOAD: \["hello"\]', 5)
