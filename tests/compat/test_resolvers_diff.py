"""Account resolvers that look accounts up on demand, against nats-server 2.15.1: the cache resolver
(`resolver { type: cache }`) asking full resolvers in its cluster, and the URL resolver
(`resolver: URL(...)`) asking an account server over HTTP. A client whose account the server does
not hold yet waits while it is looked up; what it sent meanwhile runs afterwards, in order."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest

from tests.compat.test_operator_mode_diff import World, write_creds
from tests.helpers import Cluster, RawClient, ServerProcess, check_for
from tests.natsjwt import UNLIMITED_ACCOUNT, Key, encode, new_key

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]


def _connects(url: str, creds: str) -> str:
    async def attempt() -> str:
        try:
            nc = await nats.connect(url, user_credentials=creds, allow_reconnect=False, connect_timeout=5)
        except Exception as exc:
            return f"refused: {str(exc).lower()}"
        try:
            sub = await nc.subscribe("hello")
            await nc.publish("hello", b"world")
            msg = await sub.next_msg(timeout=2)
            return f"in: {msg.data.decode()}"
        finally:
            await nc.close()

    return asyncio.run(attempt())


def _pipelined(server: ServerProcess, token: str, key: Key) -> list[str]:
    """CONNECT, SUB, PUB and PING in one write: the lines the server answers (in order)."""
    with RawClient(server) as client:
        info = client.read_info()
        signature = base64.urlsafe_b64encode(key.sign(info.get("nonce", "").encode())).rstrip(b"=").decode()
        connect = {"verbose": False, "pedantic": False, "protocol": 1, "jwt": token, "sig": signature}
        client.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\nSUB early 1\r\nPUB early 5\r\nfirst\r\nPING\r\n")
        lines = [client.read_line(timeout=5).decode().strip() for _ in range(3)]
        return [line for line in lines if not line.startswith("INFO")]


def _account_jwt(world: World, key: Key, name: str) -> str:
    body = {"type": "account", "version": 2, "limits": dict(UNLIMITED_ACCOUNT)}
    return encode({"sub": key.public, "name": name, "nats": body}, world.operator)


@pytest.mark.parametrize("kinds", [["nats", "nats"], ["jsedge", "jsedge"], ["nats", "jsedge"]])
def test_cache_resolver_looks_accounts_up_from_a_full_resolver(kinds: list[str], tmp_path: Path) -> None:
    """n1 holds the accounts (full resolver); n2 (cache resolver, only the system account
    preloaded) looks A up when A's user connects, keeps the JWT in its directory, and refuses an
    account nobody holds. The lines seen must be nats-server's (two nats-servers are the reference)."""
    world = World()
    system = f"  {world.system.public}: {world.accounts[world.system.public]}"
    full = "\n".join(f"  {key}: {world.accounts[key]}" for key in (world.system.public, world.a.public))

    def config(index: int) -> str:
        directory = tmp_path / kinds[index] / f"jwt{index}"
        if index == 0:
            resolver = f'resolver: {{ type: full, dir: "{directory}" }}\nresolver_preload: {{\n{full}\n}}\n'
        else:
            resolver = f'resolver: {{ type: cache, dir: "{directory}" }}\nresolver_preload: {{\n{system}\n}}\n'
        return f"operator: {world.operator_jwt}\n" + resolver

    good = write_creds(tmp_path, *world.user(world.a))
    stranger = write_creds(tmp_path, *world.user(world.unknown))
    with Cluster(kinds, config=config) as cluster:
        cluster.wait_mesh()
        results = []
        # the first CONNECT of A's user on n2 waits for the lookup (which needs n1 known to n2's
        # system account: until then it is refused, on nats-server too)
        check_for(20, lambda: _connects(cluster[1].url, good).startswith("in"), interval=0.5)
        results.append(_connects(cluster[1].url, good))
        results.append(_connects(cluster[1].url, stranger))
        results.append(_connects(cluster[0].url, good))
        cached = tmp_path / kinds[1] / "jwt1" / f"{world.a.public}.jwt"
        results.append(f"cached: {cached.exists()}")
    assert results == ["in: world", "refused: nats: 'authorization violation'", "in: world", "cached: True"]


@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_cache_resolver_alone(kind: str, tmp_path: Path) -> None:
    """A cache resolver with nobody to ask: a lookup times out (its `timeout`) and the client is
    refused; an update for an account it does not hold is skipped; one for an account it holds
    is taken."""
    world = World()
    held = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    held_jwt = _account_jwt(world, held, "H")
    preload = f"  {world.system.public}: {world.accounts[world.system.public]}\n  {held.public}: {held_jwt}"
    config = (
        f"operator: {world.operator_jwt}\n"
        f'resolver: {{ type: cache, dir: "{tmp_path / "jwt"}", timeout: "500ms" }}\n'
        f"resolver_preload: {{\n{preload}\n}}\n"
    )
    good = write_creds(tmp_path, *world.user(world.a))
    system_creds = write_creds(tmp_path, *world.user(world.system))

    async def update(token: str) -> str:
        nc = await nats.connect(server.url, user_credentials=system_creds)
        try:
            reply = await nc.request("$SYS.REQ.CLAIMS.UPDATE", token.encode(), timeout=2)
            answer = json.loads(reply.data)
            return json.dumps(answer.get("data") or answer.get("error"), sort_keys=True)
        finally:
            await nc.close()

    held_user = write_creds(tmp_path, *world.user(held))
    with ServerProcess(kind, config=config) as server:
        refused = _connects(server.url, good)
        # (nats-server holds an account once a client used it: H's user comes first)
        assert _connects(server.url, held_user) == "in: world"
        skipped = asyncio.run(update(world.accounts[world.a.public]))
        newer = encode(
            {"sub": held.public, "name": "H2", "nats": {"type": "account", "version": 2, "limits": UNLIMITED_ACCOUNT}},
            world.operator,
        )
        taken = asyncio.run(update(newer))
    assert refused == "refused: nats: 'authorization violation'"
    assert json.loads(skipped)["message"] == "jwt update cache skipped"
    assert json.loads(taken)["message"] == "jwt updated cache"


class _AccountServer:
    """An account server for the URL resolver: GET <base>/<public key> answers the JWT, or 404."""

    def __init__(self, accounts: dict[str, str], tls: Any = None) -> None:
        self.accounts = accounts
        self.asked: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.path.rsplit("/", 1)[-1]
                owner.asked.append(key)
                if not key:  # the servers' start-up check of the base URL
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                token = owner.accounts.get(key)
                if token is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = token.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:  # https, with the test CA's server certificate
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/jwt/v1/accounts/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _AccountServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def world() -> Iterator[World]:
    yield World()


@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_url_resolver(kind: str, world: World, tmp_path: Path) -> None:
    """The URL resolver fetches an account when its first user connects; an account the account
    server does not know (404) is refused; a client's SUB, PUB and PING sent with its CONNECT run
    after the lookup, in order."""
    late = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    served = {
        world.system.public: world.accounts[world.system.public],
        world.a.public: world.accounts[world.a.public],
        late.public: _account_jwt(world, late, "L"),
    }
    with _AccountServer(served) as accounts:
        config = f'operator: {world.operator_jwt}\nresolver: URL("{accounts.url}")\n'
        good = write_creds(tmp_path, *world.user(world.a))
        stranger = write_creds(tmp_path, *world.user(world.unknown))
        late_token, late_key = world.user(late)
        with ServerProcess(kind, config=config) as server:
            results = [_connects(server.url, good), _connects(server.url, stranger)]
            results.append(" | ".join(_pipelined(server, late_token, late_key)))
        assert world.a.public in accounts.asked and late.public in accounts.asked
    assert results == [
        "in: world",
        "refused: nats: 'authorization violation'",
        "MSG early 1 5 | first | PONG",
    ]


@pytest.mark.parametrize("hard", [False, True])
def test_deleted_jwts_renamed_or_removed_as_nats_server(hard: bool, tmp_path: Path) -> None:
    """`$SYS.REQ.CLAIMS.DELETE` on a full resolver with `allow_delete`: the JWT file is renamed
    `.jwt.deleted`, or with `hard_delete: true` removed; the directory ends the same on both."""
    world = World()
    preload = "\n".join(f"  {key}: {world.accounts[key]}" for key in (world.system.public, world.b.public))
    seen = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        config = (
            f"operator: {world.operator_jwt}\n"
            f'resolver: {{ type: full, dir: "{directory}", allow_delete: true, hard_delete: {str(hard).lower()} }}\n'
            f"resolver_preload: {{\n{preload}\n}}\n"
        )

        async def delete(url: str, system_creds: str) -> str:
            nc = await nats.connect(url, user_credentials=system_creds)
            try:
                request = encode({"sub": world.operator.public, "nats": {"accounts": [world.b.public]}}, world.operator)
                reply = await nc.request("$SYS.REQ.CLAIMS.DELETE", request.encode(), timeout=2)
                return str((json.loads(reply.data).get("data") or {}).get("message"))
            finally:
                await nc.close()

        with ServerProcess(kind, config=config) as server:
            message = asyncio.run(delete(server.url, write_creds(tmp_path, *world.user(world.system))))
        names = sorted(
            p.name.replace(world.b.public, "B").replace(world.system.public, "SYS") for p in directory.iterdir()
        )
        seen.append((message, [n for n in names if not n.startswith(".")]))
    assert seen[0] == seen[1]
    assert seen[1][0] == "deleted 1 accounts"
    assert ("B.jwt.deleted" in seen[1][1]) is not hard and "B.jwt" not in seen[1][1]


@pytest.mark.parametrize("kinds", [["nats", "nats"], ["nats", "jsedge"]])
def test_cache_ttl_and_limit(kinds: list[str], tmp_path: Path) -> None:
    """A cache resolver (`limit: 2`, `ttl: 2s`) behind a full resolver: a newly looked-up account
    pushes the oldest JWT out of the directory; after the ttl every cached JWT is gone, and a new
    client of such an account still gets in."""
    world = World()
    other = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    accounts = {**world.accounts, other.public: _account_jwt(world, other, "C")}
    system = f"  {world.system.public}: {world.accounts[world.system.public]}"
    full = "\n".join(f"  {key}: {accounts[key]}" for key in (world.system.public, world.a.public, other.public))

    def config(index: int) -> str:
        directory = tmp_path / kinds[index] / f"jwt{index}"
        if index == 0:
            resolver = f'resolver: {{ type: full, dir: "{directory}" }}\nresolver_preload: {{\n{full}\n}}\n'
        else:
            resolver = (
                f'resolver: {{ type: cache, dir: "{directory}", limit: 2, ttl: "2s" }}\n'
                f"resolver_preload: {{\n{system}\n}}\n"
            )
        return f"operator: {world.operator_jwt}\n" + resolver

    a_user = write_creds(tmp_path, *world.user(world.a))
    c_user = write_creds(tmp_path, *world.user(other))
    cache = tmp_path / kinds[1] / "jwt1"

    def held() -> list[str]:
        names = {world.a.public: "A", other.public: "C", world.system.public: "SYS"}
        return sorted(names.get(p.name.removesuffix(".jwt"), p.name) for p in cache.glob("*.jwt"))

    observed = []
    with Cluster(kinds, config=config) as cluster:
        cluster.wait_mesh()
        check_for(20, lambda: _connects(cluster[1].url, a_user).startswith("in"), interval=0.5)
        observed.append(f"after A: {held()}")
        observed.append(_connects(cluster[1].url, c_user))
        observed.append(f"after C: {held()}")
        check_for(10, lambda: held() == [], interval=0.2)
        observed.append(_connects(cluster[1].url, a_user))
    # (after the ttl nats-server lets A's next client in without writing A's JWT to the directory
    # again; jsedge looks it up again and keeps it: the directory is not compared there)
    assert observed == ["after A: ['A', 'SYS']", "in: world", "after C: ['A', 'C']", "in: world"]


def test_cache_keeps_the_system_account_when_its_file_goes(tmp_path: Path) -> None:
    """jsedge: a cache resolver whose directory lost the system account's JWT (ttl) still serves
    the system account (`$SYS.REQ.USER.INFO` answers), as nats-server keeps it in memory."""
    world = World()
    system = f"  {world.system.public}: {world.accounts[world.system.public]}"
    config = (
        f"operator: {world.operator_jwt}\n"
        f'resolver: {{ type: cache, dir: "{tmp_path / "jwt"}", ttl: "1s", timeout: "300ms" }}\n'
        f"resolver_preload: {{\n{system}\n}}\n"
    )
    system_creds = write_creds(tmp_path, *world.user(world.system))

    async def who() -> str:
        nc = await nats.connect(server.url, user_credentials=system_creds, allow_reconnect=False)
        try:
            reply = await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)
            return str(json.loads(reply.data)["data"]["account"])
        finally:
            await nc.close()

    with ServerProcess("jsedge", config=config) as server:
        check_for(10, lambda: not (tmp_path / "jwt" / f"{world.system.public}.jwt").exists(), interval=0.2)
        assert asyncio.run(who()) == world.system.public


@pytest.mark.parametrize("pinned", [False, True])
def test_trusted_keys_and_pinned_accounts_as_nats_server(pinned: bool, tmp_path: Path) -> None:
    """`trusted_keys` (an operator's public key instead of its JWT) with a MEMORY resolver, and
    `resolver_pinned_accounts`: only the pinned accounts' users get in."""
    world = World()
    keys = (world.system.public, world.a.public, world.b.public)
    preload = "\n".join(f"  {key}: {world.accounts[key]}" for key in keys)
    config = (
        f"trusted_keys: [{world.operator.public}]\nsystem_account: {world.system.public}\n"
        f"resolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
    )
    if pinned:
        config += f"resolver_pinned_accounts: [{world.system.public}, {world.a.public}]\n"
    a_user = write_creds(tmp_path, *world.user(world.a))
    b_user = write_creds(tmp_path, *world.user(world.b))
    results = []
    for kind in ("nats", "jsedge"):
        with ServerProcess(kind, config=config) as server:
            results.append([_connects(server.url, a_user), _connects(server.url, b_user)])
    assert results[0] == results[1]
    assert results[1][1] == ("refused: nats: 'authorization violation'" if pinned else "in: world")


@pytest.mark.parametrize("kind", ["nats", "jsedge"])
def test_url_resolver_over_tls(kind: str, world: World, tmp_path: Path) -> None:
    """An https account server whose certificate the server checks against `resolver_tls`'s CA."""
    from tests.helpers import make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    served = {key: world.accounts[key] for key in (world.system.public, world.a.public)}
    with _AccountServer(served, tls) as accounts:
        config = (
            f'operator: {world.operator_jwt}\nresolver: URL("{accounts.url}")\n'
            f'resolver_tls {{ ca_file: "{tls.ca_cert}" }}\n'
        )
        good = write_creds(tmp_path, *world.user(world.a))
        with ServerProcess(kind, config=config) as server:
            assert _connects(server.url, good) == "in: world"


def test_default_sentinel_as_nats_server(tmp_path: Path) -> None:
    """`default_sentinel`: a client that presents no user JWT is the sentinel's (bearer) user; one
    with its own credentials is itself."""
    world = World()
    keys = (world.system.public, world.a.public)
    preload = "\n".join(f"  {key}: {world.accounts[key]}" for key in keys)
    sentinel, _key = world.user(
        world.a, nats={"bearer_token": True, "pub": {"allow": ["hello"]}, "sub": {"allow": ["hello"]}}
    )
    config = (
        f"operator: {world.operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
        f"default_sentinel: {sentinel}\n"
    )
    own = write_creds(tmp_path, *world.user(world.a))

    async def anonymous(url: str) -> str:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
        except Exception as exc:
            return f"refused: {exc}"
        try:
            sub = await nc.subscribe("hello")
            await nc.publish("hello", b"world")
            return f"in: {(await sub.next_msg(timeout=2)).data.decode()}"
        finally:
            await nc.close()

    results = []
    for kind in ("nats", "jsedge"):
        with ServerProcess(kind, config=config) as server:
            results.append([asyncio.run(anonymous(server.url)), _connects(server.url, own)])
    assert results[0] == results[1] == [["in: world", "in: world"]][0]
