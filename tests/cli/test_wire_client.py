"""The CLI's blocking client (jsedge.cli.wire): one-shot commands run without asyncio and nats-py,
against nats-server and jsedge alike, with the same results as before (the rest of tests/cli runs
the same commands through it); authentication by URL, options and token; errors; and the commands
and connections it cannot serve fall back to nats-py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest
from helpers import REPO_ROOT

from jsedge.cli.wire import NeedsFullClient, WireClient, WireError, drive, parse_headers

pytestmark = pytest.mark.timeout(120)


def _imported(cli, *args: str) -> set[str]:
    """The top-level modules `jsedge <args>` imports (python -X importtime), checked to succeed."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jsedge", *args],
        capture_output=True,
        text=True,
        timeout=10,
        env=cli.env(),
        cwd=str(REPO_ROOT),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_one_shot_commands_import_neither_asyncio_nor_nats_py(cli):
    cli("stream", "add", "A", "--subjects", "a.>", "--defaults")
    for args in (
        ("stream", "ls"),
        ("stream", "info", "A"),
        ("pub", "a.x", "hi", "-H", "X-One:1"),
        ("pub", "a.x", "{{Count}}", "--count", "3"),
        ("pub", "a.x", "acked", "-J"),
        ("req", "a.y", "as a request"),  # the stream's PubAck is the reply
        ("consumer", "add", "A", "C", "--pull", "--defaults"),
        ("consumer", "ls", "A"),
        ("stream", "get", "A", "1"),
    ):
        modules = _imported(cli, *args)
        assert "asyncio" not in modules and "nats" not in modules, args
    assert cli.state(lambda nc, js: _messages(js)) == 6
    got = cli("stream", "get", "A", "1")
    assert "X-One: 1" in got.out and "hi" in got.out
    replies = cli("req", "a.y", "again", "--raw").out
    assert json.loads(replies)["stream"] == "A"
    # what needs subscriptions still runs on nats-py
    assert "nats" in _imported(cli, "consumer", "next", "A", "C", "--count", "1")


async def _messages(js) -> int:
    return (await js.stream_info("A")).state.messages


def test_kv_commands_on_the_blocking_client(cli):
    cli("kv", "add", "cfg", "--history", "5")
    for args in (
        ("kv", "put", "cfg", "a", "1"),  # revision 1
        ("kv", "get", "cfg", "a"),
        ("kv", "del", "cfg", "a"),  # 2
        ("kv", "create", "cfg", "a", "2"),  # 3: allowed over a delete
        ("kv", "update", "cfg", "a", "3", "3"),  # 4
        ("kv", "ls"),
        ("kv", "info", "cfg"),
    ):
        modules = _imported(cli, *args)
        assert "asyncio" not in modules and "nats" not in modules, args
    history = cli("kv", "history", "cfg", "a", "--json").out  # nats-py's watcher reads it back
    assert [(e["revision"], e["operation"], e["value"]) for e in json.loads(history)] == [
        (1, "PUT", "1"),
        (2, "DEL", ""),
        (3, "PUT", "2"),
        (4, "PUT", "3"),
    ]
    r = cli("kv", "create", "cfg", "a", "again", ok=False)
    assert r.rc == 1 and "wrong last sequence: 4" in r.err
    r = cli("kv", "update", "cfg", "a", "stale", "3", ok=False)
    assert r.rc == 1 and "wrong last sequence: 4" in r.err
    r = cli("kv", "put", "cfg", ".a", "x", ok=False)
    assert r.rc == 1 and "invalid key '.a'" in r.err
    r = cli("kv", "put", "nope", "k", "v", ok=False)
    assert r.rc == 1 and "bucket nope not found" in r.err
    assert "nats" not in _imported(cli, "kv", "purge", "cfg", "a", "-f")
    r = cli("kv", "get", "cfg", "a", ok=False)
    assert r.rc == 1 and "key a not found in bucket cfg" in r.err
    assert [e["operation"] for e in json.loads(cli("kv", "history", "cfg", "a", "--json").out)] == ["PURGE"]


def test_errors_on_the_blocking_client(cli):
    r = cli("req", "nobody.home", "x", ok=False)
    assert r.rc == 1 and "no responders are available on nobody.home" in r.err
    r = cli("stream", "info", "NOPE", ok=False)
    assert r.rc == 1 and "stream not found (10059)" in r.err


@pytest.mark.parametrize("auth", ["user", "token"])
def test_authentication_on_the_blocking_client(server_factory, tmp_path, auth):
    if auth == "user":
        server = server_factory(["-js", "-sd", str(tmp_path / "js"), "--user", "ann", "--pass", "s3cret"])
        good = [["-s", server.url.replace("nats://", "nats://ann:s3cret@")], ["--user", "ann", "--password", "s3cret"]]
        bad = ["--user", "ann", "--password", "wrong"]
    else:
        server = server_factory(["-js", "-sd", str(tmp_path / "js"), "--auth", "t0ken"])
        good = [["--user", "t0ken"], ["-s", server.url.replace("nats://", "nats://t0ken@")]]
        bad = ["--user", "nope"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "jsedge", "-s", server.url, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=str(REPO_ROOT))

    for options in good:
        done = run(*options, "stream", "ls", "--json")
        assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    done = run(*bad, "stream", "ls")
    assert done.returncode == 1 and "could not connect" in done.stderr
    assert "authorization violation" in done.stderr.lower()


def _fake_server(greeting: bytes) -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(greeting)
            conn.settimeout(5)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener, int(listener.getsockname()[1])


def test_what_needs_nats_py_is_refused_before_the_command_runs():
    listener, port = _fake_server(b'INFO {"server_id":"X","tls_required":true}\r\n')
    with listener, pytest.raises(NeedsFullClient):
        WireClient.connect([f"nats://127.0.0.1:{port}"], user=None, password=None, name="t", timeout=2)
    for url in ("tls://127.0.0.1:4222", "ws://127.0.0.1:8080"):
        with pytest.raises(NeedsFullClient):
            WireClient.connect([url], user=None, password=None, name="t", timeout=2)


def test_a_server_that_never_answers_times_out():
    listener, port = _fake_server(b'INFO {"server_id":"X"}\r\n')  # never PONGs
    with listener, pytest.raises(WireError, match="timeout"):
        WireClient.connect([f"nats://127.0.0.1:{port}"], user=None, password=None, name="t", timeout=0.5)


def test_header_blocks_and_the_driver():
    assert parse_headers(b"NATS/1.0 503\r\n\r\n") == (503, {})
    assert parse_headers(b"NATS/1.0\r\nA: 1\r\nB:  two words \r\n\r\n") == (0, {"A": "1", "B": "two words"})

    async def plain() -> int:
        return 7

    assert drive(plain()) == 7

    async def suspends() -> None:
        import asyncio

        await asyncio.sleep(0)

    with pytest.raises(RuntimeError):
        drive(suspends())
