"""Operator mode against nats-server 2.15.1: `operator`, `resolver: MEMORY`, `resolver_preload` and
a system account named by the operator; user JWTs accepted and refused for the same reasons (wrong
signature, no signature, expired, not yet valid, revoked, bearer, unknown or untrusted account,
signing keys), the user's permissions, its disconnection when its JWT expires, JetStream enabled
by the account JWT, and exports/imports between JWT accounts. Raw sockets for the CONNECT
outcomes (byte-exact answers), nats-py for the rest."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.helpers import REPO_ROOT, RawClient, ServerProcess, assert_same_lines
from tests.kv.test_nats_js import node_js  # noqa: F401 - the fixture that installs nats.js
from tests.natsjwt import UNLIMITED_ACCOUNT, Key, creds_text, encode, new_key

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]

JS_DIR = REPO_ROOT / "tests" / "js"
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


class World:
    """An operator, its system account, accounts A (JetStream, a signing key, a revocation,
    exports) and B (imports), an account nobody preloaded, and users of every kind."""

    def __init__(self) -> None:
        now = int(time.time())
        self.operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
        self.stranger = new_key(nkeys.PREFIX_BYTE_OPERATOR)
        self.system = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.a = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.b = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.unknown = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.untrusted = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.signer = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.revoked = new_key(nkeys.PREFIX_BYTE_USER)
        self.scoped = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.bad_template = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.operator_jwt = encode(
            {
                "sub": self.operator.public,
                "name": "O",
                "nats": {"type": "operator", "version": 2, "system_account": self.system.public},
            },
            self.operator,
        )

        def account(key: Key, name: str, signer: Key | None = None, **nats: Any) -> str:
            body = {"type": "account", "version": 2, "limits": dict(UNLIMITED_ACCOUNT), **nats}
            return encode({"sub": key.public, "name": name, "nats": body}, signer or self.operator)

        self.accounts = {
            self.system.public: account(self.system, "SYS"),
            self.a.public: account(
                self.a,
                "A",
                limits={**UNLIMITED_ACCOUNT, **JETSTREAM},
                signing_keys=[
                    self.signer.public,
                    {
                        "kind": "user_scope",
                        "key": self.bad_template.public,
                        "role": "broken",
                        "template": {"pub": {"allow": ["x.{{nope()}}"]}, "subs": -1, "data": -1, "payload": -1},
                    },
                    {
                        "kind": "user_scope",
                        "key": self.scoped.public,
                        "role": "scoped",
                        "template": {
                            "pub": {"allow": ["scoped.{{name()}}.>", "team.{{tag(team)}}.>"]},
                            "sub": {"allow": ["scoped.>", "_INBOX.>"]},
                            "subs": -1,
                            "data": -1,
                            "payload": -1,
                        },
                    },
                ],
                revocations={self.revoked.public: now},
                exports=[
                    {"name": "ev", "subject": "ev.>", "type": "stream"},
                    {"name": "svc", "subject": "svc.>", "type": "service"},
                    {"name": "private", "subject": "private.>", "type": "stream", "token_req": True},
                    {"name": "per-account", "subject": "req.*.svc", "type": "service", "account_token_position": 2},
                ],
            ),
            self.b.public: account(
                self.b,
                "B",
                imports=[
                    {
                        "name": "ev",
                        "subject": "ev.>",
                        "account": self.a.public,
                        "local_subject": "a.ev.>",
                        "type": "stream",
                    },
                    {
                        "name": "svc",
                        "subject": "svc.>",
                        "account": self.a.public,
                        "local_subject": "a.svc.>",
                        "type": "service",
                    },
                    {"name": "private", "subject": "private.>", "account": self.a.public, "type": "stream"},
                    {
                        "name": "activated",
                        "subject": "private.b",
                        "account": self.a.public,
                        "local_subject": "act.private.b",
                        "type": "stream",
                        "token": encode(
                            {
                                "sub": self.b.public,
                                "name": "private.b",
                                "nats": {"type": "activation", "version": 2, "subject": "private.b", "kind": "stream"},
                            },
                            self.a,
                        ),
                    },
                    {
                        "name": "mine",
                        "subject": f"req.{self.b.public}.svc",
                        "account": self.a.public,
                        "local_subject": "mine.svc",
                        "type": "service",
                    },
                    {
                        "name": "not mine",
                        "subject": f"req.{self.a.public}.svc",
                        "account": self.a.public,
                        "local_subject": "other.svc",
                        "type": "service",
                    },
                ],
            ),
            self.untrusted.public: account(self.untrusted, "U", signer=self.stranger),
        }
        self.now = now

    def config(self) -> str:
        preload = "\n".join(f"  {key}: {token}" for key, token in self.accounts.items())
        return f"operator: {self.operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"

    def scoped_user(self, signer: Key, **nats: Any) -> tuple[str, Key]:
        """A user of A issued by one of A's scoped signing keys: no permissions or limits of its
        own (the key's template gives them)."""
        key = new_key(nkeys.PREFIX_BYTE_USER)
        claims = {"type": "user", "version": 2, "issuer_account": self.a.public, **nats}
        return encode({"sub": key.public, "name": "u", "nats": claims}, signer), key

    def user(self, account: Key, signer: Key | None = None, key: Key | None = None, **claims: Any) -> tuple[str, Key]:
        """(user JWT, user key) of `account`, issued by `signer` (a signing key) or the account."""
        key = key or new_key(nkeys.PREFIX_BYTE_USER)
        nats_claims: dict[str, Any] = {"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}
        nats_claims.update(claims.pop("nats", {}))
        if signer is not None:
            nats_claims["issuer_account"] = account.public
        body = {"sub": key.public, "name": "u", "nats": nats_claims, **claims}
        return encode(body, signer or account), key


def write_creds(directory: Path, token: str, key: Key) -> str:
    """A `.creds` file for this user JWT and key in `directory`; its path."""
    path = directory / f"{key.public[:8]}.creds"
    path.write_text(creds_text(token, key.seed))
    return str(path)


def _sign(key: Key, nonce: str) -> str:
    return base64.urlsafe_b64encode(key.sign(nonce.encode())).rstrip(b"=").decode()


def _attempt(server: ServerProcess, token: str | None, key: Key | None, sign: bool = True) -> str:
    """The server's answer to a CONNECT with this JWT (signed with `key` unless not `sign`)."""
    with RawClient(server) as client:
        info = client.read_info()
        opts: dict[str, Any] = {"verbose": False, "pedantic": False, "protocol": 1, "headers": True}
        if token is not None:
            opts["jwt"] = token
        if sign and key is not None:
            opts["sig"] = _sign(key, info.get("nonce", ""))
        client.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        answer = client.read_line().decode().strip()
        return f"nonce={bool(info.get('nonce'))} auth_required={info.get('auth_required')} -> {answer}"


def _script(server: ServerProcess, world: World) -> list[str]:
    out = []
    good, good_key = world.user(world.a)
    cases: list[tuple[str, str | None, Key | None, bool]] = [
        ("good", good, good_key, True),
        ("no jwt", None, None, True),
        ("no signature", good, good_key, False),
        ("wrong key", good, new_key(nkeys.PREFIX_BYTE_USER), True),
        ("garbage jwt", "eyJhbGciOi.not.a-jwt", good_key, True),
    ]
    expired, key = world.user(world.a, exp=world.now - 10)
    cases.append(("expired", expired, key, True))
    early, key = world.user(world.a, nbf=world.now + 3600)
    cases.append(("not yet valid", early, key, True))
    revoked, key = world.user(world.a, key=world.revoked, iat=world.now - 60)
    cases.append(("revoked", revoked, key, True))
    reissued, key = world.user(world.a, key=world.revoked, iat=world.now + 5)
    cases.append(("issued after its revocation", reissued, key, True))
    bearer, key = world.user(world.a, nats={"bearer_token": True})
    cases.append(("bearer without signature", bearer, key, False))
    signed, key = world.user(world.a, signer=world.signer)
    cases.append(("by a signing key", signed, key, True))
    stranger_signed, key = world.user(world.a, signer=new_key(nkeys.PREFIX_BYTE_ACCOUNT))
    cases.append(("by an unknown signing key", stranger_signed, key, True))
    unknown, key = world.user(world.unknown)
    cases.append(("account not preloaded", unknown, key, True))
    untrusted, key = world.user(world.untrusted)
    cases.append(("account of another operator", untrusted, key, True))
    leaf_only, key = world.user(world.a, nats={"allowed_connection_types": ["LEAFNODE"]})
    cases.append(("leaf connections only", leaf_only, key, True))
    elsewhere, key = world.user(world.a, nats={"src": ["10.99.0.0/16"]})
    cases.append(("from another network", elsewhere, key, True))
    here, key = world.user(world.a, nats={"src": ["127.0.0.0/8"]})
    cases.append(("from this network", here, key, True))
    scoped, scoped_key = world.scoped_user(world.scoped)
    cases.append(("by a scoped signing key", scoped, scoped_key, True))
    overreach, key = world.user(world.a, signer=world.scoped, nats={"pub": {"allow": [">"]}})
    cases.append(("scoped user with its own permissions", overreach, key, True))
    broken, broken_key = world.scoped_user(world.bad_template)
    cases.append(("scoped key whose template is broken", broken, broken_key, True))
    hour = 3600
    utc = time.gmtime()
    seconds = utc.tm_hour * hour + utc.tm_min * 60 + utc.tm_sec

    def clock(offset: int) -> str:
        value = (seconds + offset) % (24 * hour)
        return f"{value // hour:02d}:{value // 60 % 60:02d}:{value % 60:02d}"

    inside, key = world.user(
        world.a, nats={"times": [{"start": clock(-hour), "end": clock(hour)}], "times_location": "UTC"}
    )
    cases.append(("inside its time window", inside, key, True))
    outside, key = world.user(
        world.a, nats={"times": [{"start": clock(-3 * hour), "end": clock(-2 * hour)}], "times_location": "UTC"}
    )
    cases.append(("outside its time window", outside, key, True))
    for name, token, user_key, sign in cases:
        out.append(f"{name}: {_attempt(server, token, user_key, sign)}")
    # a JWT that expires while connected: the server says so and closes the connection
    token, key = world.user(world.a, exp=int(time.time()) + 2)
    with RawClient(server, timeout=10) as client:
        info = client.read_info()
        opts = {"verbose": False, "protocol": 1, "jwt": token, "sig": _sign(key, info["nonce"])}
        client.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        lines = [client.read_line().decode().strip()]
        while not lines[-1].startswith("-ERR"):
            line = client.read_line().decode().strip()
            if line == "PING":
                client.send(b"PONG\r\n")
            elif line.startswith("INFO "):  # the connect_info INFO (ids, and nats-server's xkey, differ)
                document = json.loads(line[5:])
                lines.append(f"INFO connect_info {document.get('remote_account') == world.a.public}")
            else:
                lines.append(line)
        out.append(f"at expiry: {lines}")
    return out


async def _behaviour(server: ServerProcess, world: World, directory: Path) -> list[str]:
    out: list[str] = []

    def creds(token: str, key: Key) -> str:
        return write_creds(directory, token, key)

    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    a = await nats.connect(server.url, user_credentials=creds(*world.user(world.a)))
    b = await nats.connect(server.url, user_credentials=creds(*world.user(world.b)))
    limited_jwt = world.user(
        world.a, nats={"pub": {"allow": ["allowed.>"]}, "sub": {"allow": ["allowed.>", "_INBOX.>"]}}
    )
    limited = await nats.connect(server.url, user_credentials=creds(*limited_jwt), error_cb=on_error)
    scoped_jwt, scoped_key = world.scoped_user(world.scoped, tags=["team:red", "team:blue"])
    scoped = await nats.connect(server.url, user_credentials=creds(scoped_jwt, scoped_key), error_cb=on_error)
    soon = world.user(world.a, exp=int(time.time()) + 5)
    closing = await nats.connect(server.url, user_credentials=creds(*soon), error_cb=on_error, allow_reconnect=False)
    try:
        info = await a.request("$SYS.REQ.USER.INFO", b"", timeout=2)
        data = json.loads(info.data)["data"]
        out.append(f"user info: account is A {data['account'] == world.a.public}, user {data['user'][:1]}")
        account_info = json.loads((await a.request("$JS.API.INFO", b"", timeout=2)).data)
        out.append(f"A's JetStream: {account_info.get('error') or 'enabled'}")
        account_info = json.loads((await b.request("$JS.API.INFO", b"", timeout=2)).data)
        out.append(f"B's JetStream: {account_info.get('error') or 'enabled'}")
        js = a.jetstream()
        await js.add_stream(name="S", subjects=["s.>"])
        ack = await js.publish("s.1", b"x")
        out.append(f"A publishes to its stream: seq {ack.seq}")
        # exports and imports between JWT accounts
        imported = await b.subscribe("a.ev.>")
        private = await b.subscribe("private.>")
        activated = await b.subscribe("act.>")

        async def echo(msg: Any) -> None:
            await a.publish(msg.reply, b"from A " + msg.subject.encode())

        await a.subscribe("svc.>", cb=echo)
        await a.flush()
        await b.flush()
        await a.publish("ev.1", b"event")
        await a.publish("private.1", b"secret")
        await a.publish("private.b", b"for B")
        await a.flush()
        for name, sub in (
            ("imported", imported),
            ("private (token required)", private),
            ("activated", activated),
        ):
            try:
                msg = await sub.next_msg(0.5)
                out.append(f"{name}: {msg.subject} {msg.data.decode()}")
            except NatsTimeout:
                out.append(f"{name}: nothing")
        reply = await b.request("a.svc.x", b"", timeout=2)
        out.append(f"service import: {reply.data.decode()}")

        async def per_account(msg: Any) -> None:
            await a.publish(msg.reply, b"for " + (b"B" if world.b.public.encode() in msg.subject.encode() else b"?"))

        await a.subscribe("req.*.svc", cb=per_account)
        await a.flush()
        for local in ("mine.svc", "other.svc"):
            # (nats-server's interest in a subscription made just before can lag a request through
            # the import: a no-responders answer is asked again, for a second at most; a refusal
            # stays a refusal)
            for attempt in range(5):
                try:
                    reply = await b.request(local, b"", timeout=1)
                    out.append(f"{local}: {reply.data.decode()}")
                    break
                except NoRespondersError as exc:
                    if attempt == 4:
                        out.append(f"{local}: {type(exc).__name__}")
                    else:
                        await asyncio.sleep(0.2)
                except Exception as exc:  # the refusal is what is compared
                    out.append(f"{local}: {type(exc).__name__}")
                    break
        # the limited user's permissions
        await limited.subscribe("allowed.x")
        await limited.publish("allowed.x", b"")
        await limited.publish("forbidden", b"")
        await limited.subscribe("forbidden")
        await limited.flush()
        # the scoped user's permissions come from its key's template ({{name()}} is "u")
        await scoped.publish("scoped.u.1", b"")
        await scoped.publish("scoped.v.1", b"")
        await scoped.publish("team.red.1", b"")
        await scoped.publish("team.blue.1", b"")
        await scoped.publish("team.green.1", b"")
        await scoped.flush()
        await asyncio.sleep(0.3)
        out += sorted(errors)
        errors.clear()
        # the JWT that expires: the connection is closed with nats-server's error
        deadline = time.monotonic() + 10
        while not closing.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        out.append(f"expiring user closed: {closing.is_closed}, errors {errors}")
    finally:
        for conn in (a, b, limited, closing, scoped):
            await conn.close()
    return out


def test_operator_mode_as_nats_server(tmp_path: Path) -> None:
    world = World()
    results = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        config = world.config() + f'jetstream {{ store_dir: "{directory}" }}\n'
        with ServerProcess(kind, config=config) as server:
            lines = _script(server, world)
            lines += asyncio.run(_behaviour(server, world, directory))
            results.append(lines)
    assert_same_lines(results[0], results[1])
    assert len(results[0]) == len(results[1])


async def _full_resolver_script(server: ServerProcess, world: World, directory: Path) -> list[str]:
    """Account JWTs pushed at run time to a full resolver: a new account (with JetStream) becomes
    usable, a revocation disconnects a connected user, lookups and lists show the directory."""
    out: list[str] = []

    def creds(token: str, key: Key) -> str:
        return write_creds(directory, token, key)

    def answer(msg: Any) -> str:
        document = json.loads(msg.data)
        return json.dumps(document.get("data") or document.get("error"), sort_keys=True)

    system = await nats.connect(server.url, user_credentials=creds(*world.user(world.system)))
    victim_jwt, victim_key = world.user(world.a, iat=world.now - 30)
    victim = await nats.connect(server.url, user_credentials=creds(victim_jwt, victim_key), allow_reconnect=False)
    try:
        keys = json.loads((await system.request("$SYS.REQ.CLAIMS.LIST", b"", timeout=2)).data)["data"]
        out.append(f"listed at start: {sorted(k == world.a.public or k == world.system.public for k in keys)}")
        newcomer = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        newcomer_jwt = encode(
            {
                "sub": newcomer.public,
                "name": "N",
                "nats": {"type": "account", "version": 2, "limits": {**UNLIMITED_ACCOUNT, **JETSTREAM}},
            },
            world.operator,
        )
        user_jwt, user_key = world.user(newcomer)
        try:
            await nats.connect(server.url, user_credentials=creds(user_jwt, user_key), allow_reconnect=False)
            out.append("newcomer before push: connected")
        except Exception as exc:  # the refusal is what is compared
            out.append(f"newcomer before push: {exc}")
        reply = await system.request("$SYS.REQ.CLAIMS.UPDATE", newcomer_jwt.encode(), timeout=2)
        out.append(f"push: {answer(reply)}".replace(newcomer.public, "NEW"))
        user = await nats.connect(server.url, user_credentials=creds(user_jwt, user_key))
        info = json.loads((await user.request("$JS.API.INFO", b"", timeout=2)).data)
        out.append(f"newcomer's JetStream: {info.get('error') or 'enabled'}")
        await user.close()
        looked_up = await system.request(f"$SYS.REQ.ACCOUNT.{newcomer.public}.CLAIMS.LOOKUP", b"", timeout=2)
        out.append(f"lookup returns the pushed JWT: {looked_up.data.decode() == newcomer_jwt}")
        for subject, body in (
            ("$SYS.REQ.CLAIMS.UPDATE", b"garbage"),
            (f"$SYS.REQ.ACCOUNT.{world.b.public}.CLAIMS.UPDATE", newcomer_jwt.encode()),
        ):
            reply = await system.request(subject, body, timeout=2)
            text = answer(reply).replace(newcomer.public, "NEW").replace(world.b.public, "B")
            out.append(f"{subject.split('.')[2]} refused: {text}")
        # A revokes the connected user: it is disconnected
        revoked = dict(json.loads(base64.urlsafe_b64decode(world.accounts[world.a.public].split(".")[1] + "==")))
        revoked.pop("jti", None)
        revoked.pop("iat", None)
        revoked["nats"]["revocations"] = {victim_key.public: world.now}
        token = encode({k: v for k, v in revoked.items() if k != "iss"}, world.operator)
        reply = await system.request(f"$SYS.REQ.ACCOUNT.{world.a.public}.CLAIMS.UPDATE", token.encode(), timeout=2)
        out.append(f"revocation: {answer(reply)}".replace(world.a.public, "A"))
        deadline = time.monotonic() + 5
        while not victim.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        out.append(f"revoked user disconnected: {victim.is_closed}")
        # deleting accounts: only the operator, only when allowed, never the system account
        doomed = await nats.connect(server.url, user_credentials=creds(*world.user(world.b)), allow_reconnect=False)
        for signer, accounts in (
            (world.a, [world.b.public]),
            (world.operator, [world.system.public]),
            (world.operator, ["nonsense"]),
            (world.operator, [world.b.public]),
        ):
            request = encode({"sub": signer.public, "nats": {"accounts": accounts}}, signer)
            reply = await system.request("$SYS.REQ.CLAIMS.DELETE", request.encode(), timeout=2)
            text = answer(reply).replace(signer.public, "SIGNER")
            out.append(f"delete {accounts[0][:1]}: {text}")
        deadline = time.monotonic() + 5
        while not doomed.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        out.append(f"deleted account's user disconnected: {doomed.is_closed}")
        keys = json.loads((await system.request("$SYS.REQ.CLAIMS.LIST", b"", timeout=2)).data)["data"]
        out.append(f"B listed after delete: {world.b.public in keys}")
    finally:
        await system.close()
        await victim.close()
    return out


def test_full_resolver_updates_as_nats_server(tmp_path: Path) -> None:
    world = World()
    results = []
    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        preload = "\n".join(
            f"  {key}: {world.accounts[key]}" for key in (world.system.public, world.a.public, world.b.public)
        )
        config = (
            f"operator: {world.operator_jwt}\n"
            f'resolver: {{ type: full, dir: "{directory / "jwt"}", allow_delete: true }}\n'
            f"resolver_preload: {{\n{preload}\n}}\n"
            f'jetstream {{ store_dir: "{directory / "js"}" }}\n'
        )
        with ServerProcess(kind, config=config) as server:
            results.append(asyncio.run(_full_resolver_script(server, world, directory)))
    assert_same_lines(results[0], results[1])
    assert len(results[0]) == len(results[1])


async def _nats_js_run(node: str, server: ServerProcess, responder: Path, good: Path, bad: Path) -> dict[str, Any]:
    """A responder of A (nats-py) while auth.mjs (nats.js) logs in as a user of B and requests."""
    import subprocess

    nc = await nats.connect(server.url, user_credentials=str(responder))

    async def echo(msg: Any) -> None:
        await msg.respond(b"A answers " + msg.subject.encode())

    await nc.subscribe("svc.>", cb=echo)
    await nc.flush()
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "auth.mjs"),
        server.url,
        str(good),
        str(bad),
        "a.svc.js",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(JS_DIR),
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    await nc.close()
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    assert lines, stderr.decode()
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_nats_js_with_creds_as_nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The official nats.js client logs in with a `.creds` file (credsAuthenticator), talks, and
    requests a service another JWT account exports; wrong credentials are refused alike."""
    node = request.getfixturevalue("node_js")  # (tests.kv.test_nats_js installs nats.js)
    world = World()
    results = []

    for kind in ("nats", "jsedge"):
        directory = tmp_path / kind
        directory.mkdir()
        token, key = world.user(world.b)
        good, bad, responder = directory / "good.creds", directory / "bad.creds", directory / "a.creds"
        good.write_text(creds_text(token, key.seed))
        bad.write_text(creds_text(token, new_key(nkeys.PREFIX_BYTE_USER).seed))
        responder_jwt, responder_key = world.user(world.a)
        responder.write_text(creds_text(responder_jwt, responder_key.seed))
        with ServerProcess(kind, config=world.config()) as server:
            results.append(asyncio.run(_nats_js_run(node, server, responder, good, bad)))
    assert results[0] == results[1]
    assert results[1]["roundtrip"] == "hi" and results[1]["request"] == "A answers svc.js"


@pytest.mark.parametrize("kinds", [["jsedge", "jsedge"], ["nats", "jsedge"]])
def test_a_server_that_missed_an_update_catches_up(kinds: list[str], tmp_path: Path) -> None:
    """Full resolvers in a cluster: an account pushed while the second server was down reaches it
    through `$SYS.REQ.CLAIMS.PACK` once it is back (from a jsedge or a nats-server peer)."""
    from tests.helpers import Cluster, check_for

    world = World()
    preload = "\n".join(f"  {key}: {world.accounts[key]}" for key in (world.system.public, world.a.public))

    def config(index: int) -> str:
        return (
            f"operator: {world.operator_jwt}\n"
            f'resolver: {{ type: full, dir: "{tmp_path / f"jwt{index}"}", interval: "1s" }}\n'
            f"resolver_preload: {{\n{preload}\n}}\n"
        )

    newcomer = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    newcomer_jwt = encode(
        {"sub": newcomer.public, "name": "N", "nats": {"type": "account", "version": 2, "limits": UNLIMITED_ACCOUNT}},
        world.operator,
    )
    user_creds = write_creds(tmp_path, *world.user(newcomer))
    system_creds = write_creds(tmp_path, *world.user(world.system))

    async def push(url: str) -> str:
        nc = await nats.connect(url, user_credentials=system_creds)
        try:
            reply = await nc.request("$SYS.REQ.CLAIMS.UPDATE", newcomer_jwt.encode(), timeout=2)
            return str(json.loads(reply.data).get("data", {}).get("message"))
        finally:
            await nc.close()

    async def logs_in(url: str) -> bool:
        try:
            nc = await nats.connect(url, user_credentials=user_creds, allow_reconnect=False, connect_timeout=2)
        except Exception:  # refused until the account arrives
            return False
        await nc.close()
        return True

    with Cluster(kinds, config=config, start=False) as cluster:
        cluster.start(0)
        assert asyncio.run(push(cluster[0].url)) == "jwt updated"
        cluster.start(1)
        check_for(20, lambda: asyncio.run(logs_in(cluster[1].url)), interval=0.5)
