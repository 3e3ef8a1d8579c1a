"""NATS over WebSocket (`websocket {}`) against nats-server 2.15.1: nats.js's `wsconnect` (the
browser client's transport) for pub/sub, requests, headers, no responders, big messages, KV and the
object store, with and without permessage-deflate and over wss; the upgrade refusals (status and
body); malformed frames (nats-server's close frame); `/varz` and `/connz`."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, ServerProcess, free_port, http_json
from tests.kv.test_nats_js import node_js  # noqa: F401 - the fixture that installs nats.js

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]

JS_DIR = REPO_ROOT / "tests" / "js"


def _config(port: int, store: Path, extra: str = "") -> str:
    return f'websocket {{ port: {port}, no_tls: true{extra} }}\njetstream {{ store_dir: "{store}" }}\n'


def _run_js(node: str, url: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [node, "--experimental-websocket", str(JS_DIR / "ws.mjs"), url],
        capture_output=True,
        text=True,
        timeout=40,
        cwd=str(JS_DIR),
        env=dict(os.environ, **(env or {})),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    return dict(json.loads(lines[-1]))


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
def test_nats_js_over_websocket_as_nats_server(
    request: pytest.FixtureRequest, compression: bool, tmp_path: Path
) -> None:
    node = request.getfixturevalue("node_js")
    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        extra = ", compression: true" if compression else ""
        with ServerProcess(kind, config=_config(port, tmp_path / kind, extra)):
            results.append(_run_js(node, f"ws://127.0.0.1:{port}"))
    assert results[0] == results[1]
    assert results[1].get("closed") is True and results[1]["kv"] == ["v2", 2], results[1]


def test_nats_js_over_wss_as_nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from tests.helpers import make_tls_files

    node = request.getfixturevalue("node_js")
    tls = make_tls_files(tmp_path / "tls")
    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        config = (
            f'websocket {{ port: {port}, tls {{ cert_file: "{tls.server_cert}", key_file: "{tls.server_key}" }} }}\n'
            f'jetstream {{ store_dir: "{tmp_path / kind}" }}\n'
        )
        with ServerProcess(kind, config=config):
            results.append(_run_js(node, f"wss://localhost:{port}", {"NODE_EXTRA_CA_CERTS": str(tls.ca_cert)}))
    assert results[0] == results[1]
    assert results[1].get("closed") is True, results[1]


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def _upgrade_request(port: int, **overrides: str | None) -> bytes:
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": _key(),
        "Sec-WebSocket-Version": "13",
    }
    method = overrides.pop("method", None) or "GET"
    for name, value in overrides.items():
        header = name.replace("_", "-")
        if value is None:
            headers.pop(header, None)
        else:
            headers[header] = value
    lines = [f"{method} / HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_all(sock: socket.socket, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data and data.startswith(b"HTTP/1.1 4"):
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    return data


REFUSALS = [
    ("post", {"method": "POST"}),
    ("no-upgrade", {"Upgrade": None}),
    ("bad-upgrade", {"Upgrade": "h2c"}),
    ("no-connection", {"Connection": "keep-alive"}),
    ("no-key", {"Sec-WebSocket-Key": None}),
    ("bad-key", {"Sec-WebSocket-Key": "c2hvcnQ="}),
    ("bad-version", {"Sec-WebSocket-Version": "8"}),
    ("other-origin", {"Origin": "http://evil.example:80"}),
]


def test_upgrade_refusals_as_nats_server(tmp_path: Path) -> None:
    """Each bad upgrade request gets nats-server's status line and body (Go's text), then nothing."""
    results: dict[str, list[str]] = {}
    for kind in ("nats", "jsedge"):
        port = free_port()
        config = f"websocket {{ port: {port}, no_tls: true, same_origin: true }}\n"
        with ServerProcess(kind, config=config):
            lines = []
            for name, overrides in REFUSALS:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(_upgrade_request(port, **dict(overrides)))
                    answer = _read_all(sock)
                head, _, body = answer.partition(b"\r\n\r\n")
                status = head.split(b"\r\n")[0].decode()
                version = [line for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-version")]
                lines.append(f"{name}: {status} {body.decode().strip()!r} {version}")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(_upgrade_request(port) + b"early")
                answer = _read_all(sock)
            first_line = answer.split(b"\r\n")[0].decode()
            lines.append(f"early data: {first_line}")
            results[kind] = lines
    assert results["nats"] == results["jsedge"]


def _mask(payload: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def _frame(first: int, payload: bytes, masked: bool = True, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    key = os.urandom(4)
    head = bytes((first, (0x80 if masked else 0) | size))
    return head + (key + _mask(payload, key) if masked else payload)


def _open(port: int, extensions: str | None = None) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    overrides = {"Sec-WebSocket-Extensions": extensions} if extensions else {}
    sock.sendall(_upgrade_request(port, **overrides))
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head + b"\r\n\r\n" + rest


def _server_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """(opcode, rsv1, payload) of the server's (unmasked) frames in `data`."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        size, head = b1 & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        if pos + head + size > len(data):
            break
        frames.append((b0 & 0x0F, bool(b0 & 0x40), data[pos + head : pos + head + size]))
        pos += head + size
    return frames


BAD_FRAMES = [
    ("unmasked", _frame(0x82, b"PING\r\n", masked=False)),
    ("unknown-opcode", _frame(0x83, b"x")),
    ("rsv2", _frame(0xA2, b"x")),
    ("compressed-without-deflate", _frame(0xC2, b"x")),
    ("fragmented-ping", _frame(0x09, b"x")),
    ("lone-continuation", _frame(0x80, b"x")),
    ("close-one-byte", _frame(0x88, b"x")),
    ("close-bad-status", _frame(0x88, (999).to_bytes(2, "big"))),
    ("close-normal", _frame(0x88, (1000).to_bytes(2, "big") + b"bye")),
]


#: nats-server's close frame for each (websocket.go): it sends it, then closes the socket, and
#: under load the close can win, so nats-server is checked to send this or nothing; jsedge always
#: sends it
EXPECTED_CLOSE = {
    "unmasked": "close 1002 'mask bit missing'",
    "unknown-opcode": "close 1002 'unknown opcode 3'",
    "rsv2": "close 1002 'RSV2 and RSV3 must be clear'",
    "compressed-without-deflate": "close 1002 'compressed frame received without negotiated permessage-deflate'",
    "fragmented-ping": "close 1002 'control frame does not have final bit set'",
    "lone-continuation": "close 1002 'invalid continuation frame'",
    "close-one-byte": "close 1002 'close frame payload cannot be 1 byte'",
    "close-bad-status": "close 1002 'invalid close status code 999'",
    "close-normal": "close 1000 'bye'",
}


def test_bad_frames_get_nats_servers_close(tmp_path: Path) -> None:
    for kind in ("nats", "jsedge"):
        port = free_port()
        with ServerProcess(kind, config=f"websocket {{ port: {port}, no_tls: true }}\n"):
            for name, frame in BAD_FRAMES:
                sock, _greeting = _open(port)
                with sock:
                    _read_all(sock, 0.3)  # the INFO frame
                    sock.sendall(frame)
                    answer = _read_all(sock, 3.0)  # (until the server closes the socket)
                frames = [(op, payload) for op, _rsv, payload in _server_frames(answer) if op == 8]
                if not frames:
                    assert kind == "nats", f"jsedge sent no close frame for {name}"
                    continue
                status = int.from_bytes(frames[0][1][:2], "big")
                assert f"close {status} {frames[0][1][2:].decode()!r}" == EXPECTED_CLOSE[name], (kind, name)


def test_deflate_negotiated_and_used(tmp_path: Path) -> None:
    """With `compression: true` and a client that offers permessage-deflate, both servers answer
    the extension with no context takeover, send compressed frames, and read compressed ones."""
    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        with ServerProcess(kind, config=f"websocket {{ port: {port}, no_tls: true, compression: true }}\n"):
            sock, greeting = _open(port, "permessage-deflate; client_max_window_bits")
            with sock:
                extension = [line for line in greeting.split(b"\r\n") if line.lower().startswith(b"sec-websocket-ext")]
                deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
                body = deflater.compress(b"CONNECT {}\r\nSUB z 1\r\nPUB z 5\r\nhello\r\nPING\r\n")
                body += deflater.flush(zlib.Z_SYNC_FLUSH)
                sock.sendall(_frame(0xC2, body[:-4]) if len(body) < 126 else b"")
                answer = greeting.partition(b"\r\n\r\n")[2] + _read_all(sock, 1.5)
            texts = []
            for opcode, rsv1, payload in _server_frames(answer):
                data = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") if rsv1 else payload
                texts.append((opcode, rsv1, data.split(b" ", 1)[0] if data.startswith(b"INFO") else data))
            results.append((extension, texts))
    assert results[0] == results[1]
    assert results[1][0] == [
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    ]


def test_varz_and_connz_show_websocket(tmp_path: Path) -> None:
    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        config = (
            f"websocket {{ port: {port}, no_tls: true, compression: true, "
            f'same_origin: true, allowed_origins: ["http://localhost:8080"], handshake_timeout: "3s" }}\n'
        )
        with ServerProcess(kind, config=config, http=True) as server:
            sock, _ = _open(port)
            with sock:
                sock.sendall(_frame(0x82, b'CONNECT {"name":"wsclient"}\r\nPING\r\n'))
                _read_all(sock, 0.5)
                varz = http_json(server, "/varz")["websocket"]
                conns = http_json(server, "/connz")["connections"]
            varz["port"] = "port" in varz
            results.append((varz, [(c.get("type"), c.get("name")) for c in conns]))
    assert results[0] == results[1]
    assert results[1][1] == [("websocket", "wsclient")]


def _ws_connect_answer(port: int, connect: dict[str, Any], cookie: str | None = None) -> str:
    """What a WebSocket client's CONNECT + PING gets back: PONG or the -ERR line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with sock:
        overrides = {"Cookie": cookie} if cookie else {}
        sock.sendall(_upgrade_request(port, **overrides))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        info_frames = _server_frames(data.partition(b"\r\n\r\n")[2] + _read_all(sock, 0.3))
        info = json.loads(info_frames[0][2][5:].strip()) if info_frames else {}
        sock.sendall(_frame(0x82, b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n"))
        answer = b"".join(payload for op, _rsv, payload in _server_frames(_read_all(sock, 1.0)) if op == 2)
    line = answer.decode().split("\r\n")[0]
    return f"auth_required={info.get('auth_required')} -> {line}"


WS_AUTH_CASES = [
    (
        "override user",
        "authorization { token: secret }\nwebsocket { port: %d, no_tls: true, authorization { username: wsu, password: wsp } }\n",
        [({"user": "wsu", "pass": "wsp"}, None), ({"auth_token": "secret"}, None), ({}, None)],
    ),
    (
        "override token",
        "authorization { user: u, password: p }\nwebsocket { port: %d, no_tls: true, authorization { token: wst } }\n",
        [({"auth_token": "wst"}, None), ({"user": "u", "pass": "p"}, None)],
    ),
    (
        "cookies",
        "websocket { port: %d, no_tls: true, user_cookie: u, pass_cookie: p, "
        "authorization { username: wsu, password: wsp } }\n",
        [({}, "u=wsu; p=wsp"), ({}, "u=wsu; p=nope"), ({"user": "wsu", "pass": "wsp"}, "u=x; p=y")],
    ),
    (
        "no_auth_user",
        "accounts { A { users: [{user: a, password: a}] } }\nwebsocket { port: %d, no_tls: true, no_auth_user: a }\n",
        [({}, None), ({"user": "a", "pass": "b"}, None)],
    ),
]


@pytest.mark.parametrize(("name", "template", "attempts"), WS_AUTH_CASES, ids=[case[0] for case in WS_AUTH_CASES])
def test_websocket_authorization_override_as_nats_server(
    name: str, template: str, attempts: list[tuple[dict[str, Any], str | None]]
) -> None:
    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        with ServerProcess(kind, config=template % port):
            results.append([_ws_connect_answer(port, connect, cookie) for connect, cookie in attempts])
    assert results[0] == results[1]


def _ws_info(port: int) -> dict[str, Any]:
    sock, greeting = _open(port)
    with sock:
        data = greeting.partition(b"\r\n\r\n")[2]
        deadline = time.monotonic() + 5
        while not _server_frames(data) and time.monotonic() < deadline:
            data += _read_all(sock, 0.2)
    payload = _server_frames(data)[0][2]
    return dict(json.loads(payload[5:].strip()))


@pytest.mark.parametrize("kinds", [["nats", "nats"], ["jsedge", "jsedge"], ["nats", "jsedge"]])
def test_websocket_urls_cross_the_cluster(kinds: list[str]) -> None:
    """Each member's WebSocket client INFO names the websocket listener and, as `connect_urls`, the
    websocket URLs of every member (learned from the route INFO's `ws_connect_urls`, across
    nats-server and jsedge members); the client port's INFO does not carry them."""
    from tests.helpers import Cluster, RawClient, check_for

    ws_ports = [free_port() for _ in kinds]
    with Cluster(kinds, config=lambda i: f"websocket {{ port: {ws_ports[i]}, no_tls: true }}\n") as cluster:
        cluster.wait_mesh()

        def listed(index: int) -> set[int]:
            urls = _ws_info(ws_ports[index]).get("connect_urls") or []
            return {int(url.rsplit(":", 1)[1]) for url in urls}

        for index in range(len(kinds)):
            check_for(15, lambda index=index: listed(index) == set(ws_ports), interval=0.3)
            info = _ws_info(ws_ports[index])
            assert (info["host"], info["port"]) == ("0.0.0.0", ws_ports[index])
            with RawClient(cluster[index]) as client:
                plain = client.read_info()
            assert "ws_connect_urls" not in plain
            assert {int(u.rsplit(":", 1)[1]) for u in plain.get("connect_urls", [])} & set(ws_ports) == set()


# nats-py hands aiohttp a float time-out, which aiohttp 3.10+ deprecates (the suite turns warnings
# into errors)
@pytest.mark.filterwarnings("ignore:parameter 'timeout' of type 'float' is deprecated:DeprecationWarning")
def test_nats_py_over_websocket_as_nats_server(tmp_path: Path) -> None:
    """nats-py's WebSocket transport (aiohttp): pub/sub with headers, JetStream, KV."""
    pytest.importorskip("aiohttp")
    import asyncio

    import nats

    async def use(url: str) -> list[Any]:
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
        try:
            sub = await nc.subscribe("a")
            await nc.publish("a", b"hi", headers={"X": "1"})
            msg = await sub.next_msg(2)
            js = nc.jetstream()
            await js.add_stream(name="S", subjects=["s.>"])
            ack = await js.publish("s.1", b"x")
            kv = await js.create_key_value(bucket="B")
            await kv.put("k", b"v")
            entry = await kv.get("k")
            return [msg.data, msg.headers, ack.seq, entry.value]
        finally:
            await nc.close()

    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        with ServerProcess(kind, config=_config(port, tmp_path / kind, ", compression: true")):
            results.append(asyncio.run(use(f"ws://127.0.0.1:{port}")))
    assert results[0] == results[1] == [b"hi", {"X": "1"}, 1, b"v"]


def test_max_connections_counts_upgraded_websocket_clients(tmp_path: Path) -> None:
    """`max_connections: 1`: a second WebSocket client is refused after its upgrade, with the
    INFO and `-ERR 'maximum connections exceeded'` in a frame; a refused upgrade is no connection."""
    results = []
    for kind in ("nats", "jsedge"):
        port = free_port()
        with ServerProcess(
            kind, config=f"max_connections: 1\nwebsocket {{ port: {port}, no_tls: true }}\n", http=True
        ) as server:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
                bad.sendall(_upgrade_request(port, method="POST"))
                _read_all(bad, 1.0)
            first, _ = _open(port)
            with first:
                _read_all(first, 0.3)
                second, greeting = _open(port)
                with second:
                    data = greeting.partition(b"\r\n\r\n")[2] + _read_all(second, 1.0)
                texts = b"".join(payload for op, _rsv, payload in _server_frames(data) if op == 2)
                lines = [
                    line.split(b" ")[0] if line.startswith(b"INFO") else line for line in texts.split(b"\r\n") if line
                ]
                connz = http_json(server, "/connz")
                results.append((lines, connz["num_connections"]))
    assert results[0] == results[1]
    assert results[1] == ([b"INFO", b"-ERR 'maximum connections exceeded'"], 1)
