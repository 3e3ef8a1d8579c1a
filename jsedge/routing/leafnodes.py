"""Leaf nodes (layer 2): the listener a hub accepts leaves on, the remotes a leaf dials, and the
interest each leaf connection is told about (jsedge.routing.leaf has the protocol).

`leafnodes { port, host, authorization { user, password, account | users [...] } }` makes this
server a hub; `leafnodes { remotes: [{ url | urls, account }] }` makes it a leaf of each remote's
hub: every remote is dialled and kept connected (nats-server's reconnect: next URL after
`reconnect_delay`, default 1 s, 30 s after a loop was detected), credentials from the URL
(`user:pass@` or a `token@`). A remote's `account` (default `$G`) is the local account bound to it.

Interest: every account change reaches `_sub_changed` (an account subscription listener), which
updates each leaf connection of that account (`LeafConnection.update_smap`). JetStream's
`$JS.API.>` stays on its side of a link (`LEAF_DENY`, as nats-server denies it); a server with a JetStream `domain`
announces `$JS.<domain>.API.>`, which is how the other side manages its streams and sources them.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import urllib.parse
from typing import Any, cast

from jsedge import __version__, gojson
from jsedge.errors import ClosedReason
from jsedge.routing._sublist_py import LEAF_DENY
from jsedge.routing.leaf import LOOP_DELAY, LeafConnection, jitter
from jsedge.routing.sublist import Subscription

#: How long a spoke waits for the hub's first INFO (nats-server's first_info_timeout).
FIRST_INFO_TIMEOUT = 1.0
DIAL_TIMEOUT = 2.0
DEFAULT_RECONNECT = 1.0
#: In the system account, its requests and events, Raft and JetStream cluster traffic stay on this
#: side too (jsedge does not share a system account across a link; nats-server denies `$NRG.>` and
#: `$JSC.>` there when it does not extend JetStream).
_SYSTEM_LOCAL = (b"$SYS.", b"$JS.EVENT.", b"$NRG.", b"$JSC.")

#: nats-server's server-to-server protocol version, in the leaf INFO ("proto") and CONNECT
#: ("protocol"): 3 (MsgTraceProto) says this side traces its part of a traced message; with less,
#: a nats-server peer reports "remote does not support message tracing" in its trace events
LEAF_PROTO = 3


class Remote:
    """One `leafnodes.remotes` entry."""

    def __init__(self, raw: dict[str, Any], index: int) -> None:
        urls = raw.get("urls") or raw.get("url") or []
        if isinstance(urls, str):
            urls = [urls]
        self.urls: list[urllib.parse.SplitResult] = []
        for text in urls:
            if not isinstance(text, str):
                continue
            parsed = urllib.parse.urlsplit(text if "://" in text else "nats-leaf://" + text)
            self.urls.append(parsed)
        account = raw.get("account") or raw.get("local")
        self.account = account if isinstance(account, str) and account else "$G"
        seed = raw.get("nkey") or raw.get("seed")
        #: an nkey seed (`SU...`): the CONNECT carries its public key and the hub's nonce signed
        self.nkey_seed = seed.strip() if isinstance(seed, str) else ""
        creds = raw.get("credentials") or raw.get("creds")
        #: a `.creds` file (user JWT and seed, as `nsc` writes it): read at every connect; the
        #: CONNECT carries the JWT and the hub's nonce signed with the seed (operator mode hubs)
        self.credentials = creds if isinstance(creds, str) else ""
        #: `hub: true`: this server is the hub of the link it dials (the other side is the spoke)
        self.hub = raw.get("hub") is True
        #: `deny_exports`: subjects this leaf never sends to the hub; `deny_imports`: subjects it
        #: neither subscribes to across the link nor accepts (the hub is told, as `deny_pub`)
        self.deny_exports = _subject_list(raw.get("deny_exports"))
        self.deny_imports = _subject_list(raw.get("deny_imports"))
        tls = raw.get("tls")
        #: the remote's `tls {}` block (cert_file, key_file, ca_file, insecure, timeout), or None;
        #: a `tls://` URL or a hub whose INFO requires TLS also gets TLS (the default context)
        self.tls: dict[str, Any] | None = tls if isinstance(tls, dict) else None
        self._tls_context: Any = None
        #: `ws://` / `wss://` URLs: permessage-deflate and unmasked frames asked of the hub
        self.ws_compression = raw.get("ws_compression") is True
        self.ws_no_masking = raw.get("ws_no_masking") is True
        delay = raw.get("reconnect_delay") or raw.get("reconnect")
        self.reconnect = float(delay) if isinstance(delay, (int, float)) and delay > 0 else None
        self.index = index
        self.next = 0
        #: the hub's other members (`leafnode_urls` of its INFO), as host:port
        self.discovered: list[str] = []

    def candidates(self) -> list[urllib.parse.SplitResult]:
        """The URLs to dial in turn: the configured ones, then the hub's other members it
        advertised (`leafnode_urls`, with the first configured URL's scheme and credentials), as
        nats-server's leaf does when its hub is a cluster."""
        out = list(self.urls)
        known = {(u.hostname, u.port or 7422) for u in out}
        first = self.urls[0]
        userinfo = first.netloc.rpartition("@")[0] + "@" if "@" in first.netloc else ""
        for text in self.discovered:
            try:
                parsed = urllib.parse.urlsplit(f"{first.scheme}://{userinfo}{text}")
                key = (parsed.hostname, parsed.port or 7422)
            except ValueError:
                continue
            if key not in known:
                known.add(key)
                out.append(parsed)
        return out

    def tls_context(self) -> Any:
        """The client-side TLS context for this remote (built once)."""
        if self._tls_context is None:
            from jsedge.config import TLSConfig
            from jsedge.routing.tls import build_tls_client_context

            raw = self.tls or {}
            config = TLSConfig(
                cert_file=str(raw.get("cert_file") or ""),
                key_file=str(raw.get("key_file") or ""),
                ca_file=str(raw.get("ca_file") or ""),
                insecure=bool(raw.get("insecure")),
                min_version=str(raw.get("min_version") or ""),
            )
            self._tls_context = build_tls_client_context(config)
        return self._tls_context

    def tls_timeout(self) -> float:
        value = (self.tls or {}).get("timeout")
        return float(value) if isinstance(value, (int, float)) and value > 0 else 2.0

    def redacted(self) -> list[str]:
        return [f"{u.hostname}:{u.port or 7422}" for u in self.urls]


def _subject_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(v for v in value if isinstance(v, str) and v) if isinstance(value, (list, tuple)) else ()


#: A block of a `.creds` file: a dashed BEGIN line, the value, a dashed END line (nats-server's
#: pattern): the first is the user JWT, the second the seed.
_CREDS_BLOCK = re.compile(rb"\s*(?:(?:-{3,}.*-{3,}\r?\n)([\w\-.=]+)(?:\r?\n-{3,}.*-{3,}(?:\r?\n|\Z)))")


def read_credentials(path: str) -> tuple[str, str]:
    """(user JWT, seed) from a `.creds` file; ValueError with nats-server's wording when it is
    not one (OSError when it cannot be read)."""
    with open(path, "rb") as handle:
        contents = handle.read()
    items = _CREDS_BLOCK.findall(contents)
    if len(items) < 2:
        raise ValueError("Credentials file malformed")
    return items[0].decode(), items[1].decode()


def sign_nonce(seed: str, nonce: str) -> tuple[str, str] | None:
    """(public key, base64url signature of `nonce`, unpadded) for an nkey seed, as nats-server's
    leaf CONNECT carries them; None for a malformed seed (or no `nkeys` package)."""
    import base64

    try:
        import nkeys  # type: ignore[import-untyped]

        pair = nkeys.from_seed(bytearray(seed.encode()))
        signature = pair.sign(nonce.encode())
        public = pair.public_key.decode()
    except Exception:  # nkeys raises its own errors (and binascii's) for a bad seed
        return None
    return public, base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


class LeafTable:
    """This server's leaf node connections, both roles."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        config = server.config.leafnodes
        self.config = config
        self.log = server.logger
        self.host = config.host or "0.0.0.0"
        self.port = 0
        self.listener: asyncio.Server | None = None
        self.auth_timeout = config.auth_timeout if config.auth_timeout is not None else 2.0
        self.first_info_timeout = FIRST_INFO_TIMEOUT
        self.remotes = [Remote(raw, k) for k, raw in enumerate(config.remotes) if isinstance(raw, dict)]
        #: TLS on the leaf port (`leafnodes { tls {} }`): INFO in the clear, then the handshake
        self.tls_context: Any = None
        if config.tls is not None:
            from jsedge.routing.tls import build_tls_context

            self.tls_context = build_tls_context(config.tls)
        #: registered connections, and those still in the handshake
        self.leafs: dict[int, LeafConnection] = {}
        self.pending: set[LeafConnection] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.done: dict[LeafConnection, asyncio.Future[None]] = {}
        self.running = False
        #: per account: the loop detection subject
        self._lds: dict[str, bytes] = {}
        self._listening: set[str] = set()

    # ---------------------------------------------------------------- accounts and interest

    def add_account(self, account: Any) -> None:
        if account.name in self._listening:
            return
        self._listening.add(account.name)
        account.add_sub_listener(self._sub_changed)

    def _sub_changed(self, account: Any, sub: Subscription, delta: int) -> None:
        if not self.leafs:
            return
        for conn in list(self.leafs.values()):
            if conn.account is account:
                conn.update_smap(sub, delta)

    def lds(self, account: Any) -> bytes:
        subject = self._lds.get(account.name)
        if subject is None:
            subject = self._lds[account.name] = b"$LDS." + secrets.token_hex(11).encode()
        return subject

    def announceable(self, subject: bytes, account: Any) -> bool:
        """May interest in `subject` (of `account`) cross a link? Not for the subjects whose
        messages never cross (`LEAF_DENY`, nats-server's deny on leaf connections); a wildcard
        such as `>` or `$JS.>` does cross (its messages on those subjects are held back)."""
        if subject.startswith(LEAF_DENY):
            return False
        system = self.server.config.system_account or "$SYS"
        return not (subject.startswith(_SYSTEM_LOCAL) and getattr(account, "name", None) == system)

    # ---------------------------------------------------------------- protocol pieces

    def info_dict(self, cid: int, nonce: str = "") -> dict[str, Any]:
        server = self.server
        config = server.config
        info: dict[str, Any] = {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "version": server.version_text,
            "proto": LEAF_PROTO,
            "go": server.go_text,
            "host": self.host,
            "port": self.port,
            "headers": not config.limits.no_header_support,
        }
        if self.auth_required:
            info["auth_required"] = True
        if self.tls_context is not None:
            info["tls_required"] = True
            info["tls_verify"] = bool(self.config.tls.verify)
        info["max_payload"] = config.limits.max_payload
        if config.jetstream.enabled:
            info["jetstream"] = True
        if config.jetstream.enabled and config.jetstream.domain:
            info["domain"] = config.jetstream.domain
        info["client_id"] = cid
        info["nonce"] = nonce or self.new_nonce()
        routes = server.routes
        if routes is not None:
            info["cluster"] = routes.cluster_name
        # this server's leaf port, then the other cluster members' (learnt from their route INFO):
        # a leaf fails over to them (nats-server's hub lists them the same way)
        urls = [self.advertise()]
        if routes is not None:
            urls += [u for u in routes.peer_leafnode_urls() if u not in urls]
        info["leafnode_urls"] = urls
        # the leaf waits for our INFO after its CONNECT (`connect_info`): it counts itself
        # connected only once its credentials passed
        info["info_on_connect"] = True
        info["jsedge"] = __version__
        return info

    def info_line(self, cid: int, nonce: str = "") -> bytes:
        return b"INFO " + gojson.dumpb(self.info_dict(cid, nonce)) + b" \r\n"

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(11)[:15]

    def advertise(self) -> str:
        if self.config.advertise:
            return str(self.config.advertise)
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def connect_line(self, conn: LeafConnection, nonce: str) -> bytes:
        server = self.server
        url = conn.url
        connect: dict[str, Any] = {"version": server.version_text}
        if url is not None and url.username:
            user = urllib.parse.unquote(url.username)
            if url.password is not None:
                connect["user"] = user
                connect["pass"] = urllib.parse.unquote(url.password)
            else:  # a user part alone: nats-server sends it as both user and token
                connect["user"] = user
                connect["auth_token"] = user
        remote = conn.remote
        if remote is not None and remote.credentials:
            try:
                user_jwt, seed = read_credentials(remote.credentials)
            except OSError as exc:
                conn.log_error(f"open {remote.credentials}: {(exc.strerror or str(exc)).lower()}")
            except ValueError as exc:
                conn.log_error(str(exc))
            else:
                signed = sign_nonce(seed, nonce)
                if signed is None:
                    conn.log_error("Credentials file has malformed seed")
                else:
                    connect["jwt"], connect["sig"] = user_jwt, signed[1]
        elif remote is not None and remote.nkey_seed:
            signed = sign_nonce(remote.nkey_seed, nonce)
            if signed is None:
                conn.log_error("Remote nkey has malformed seed")
            else:
                connect["nkey"], connect["sig"] = signed
        if remote is not None and remote.hub:
            connect["is_hub"] = True
        if remote is not None and remote.deny_imports:
            connect["deny_pub"] = list(remote.deny_imports)  # the hub keeps these to itself
        connect["server_id"] = server.server_id
        if server.config.jetstream.domain:
            connect["domain"] = server.config.jetstream.domain
        connect["name"] = server.server_name
        routes = server.routes
        connect["cluster"] = routes.cluster_name if routes is not None else server.server_name
        connect["headers"] = not server.config.limits.no_header_support
        if server.config.jetstream.enabled:
            connect["jetstream"] = True
        connect["compress_mode"] = "off"
        connect["remote_account"] = conn.account.name if conn.account is not None else "$G"
        connect["protocol"] = LEAF_PROTO
        return b"CONNECT " + gojson.dumpb(connect) + b"\r\n"

    @property
    def auth_required(self) -> bool:
        if self.config.user or self.config.users:
            return True
        server_auth = getattr(self.server, "auth", None)
        return bool(server_auth is not None and server_auth.info_auth_required)

    def authenticate(self, opts: dict[str, Any], nonce: str = "", host: str = "") -> tuple[str, Any] | None:
        """(the account a leaf's CONNECT binds to, the user's permissions or None), or None
        (Authorization Violation). Without an authorization of its own in `leafnodes {}`, a leaf
        logs in as a client would, against the server's users (nats-server's
        `processClientOrLeafAuthentication`)."""
        from jsedge.routing.auth import secret_matches

        config = self.config
        raw_user, raw_password = opts.get("user"), opts.get("pass")
        user = raw_user if isinstance(raw_user, str) else ""
        password = raw_password if isinstance(raw_password, str) else ""
        if config.user:
            if user == config.user and secret_matches(config.password, password):
                return config.account or "$G", None
            return None
        if config.users:
            for entry in config.users:
                if entry.user == user and entry.password and secret_matches(entry.password, password):
                    return entry.account or "$G", None
            return None
        server_auth = getattr(self.server, "auth", None)
        if server_auth is not None and server_auth.required:
            result = server_auth.authenticate(opts, "LEAFNODE", nonce=nonce, host=host)
            if result is None:
                return None
            perms = result.user.permissions if result.user is not None else None
            return result.account, perms
        return config.account or "$G", None

    def same_domain(self, other: Any) -> bool:
        """Is `other` (the far side's JetStream domain) this server's own? jsedge never extends a
        hub's JetStream across a link (one Raft group over a flaky link is what domains avoid), so
        such a link is refused, with a log line saying why."""
        js = self.server.config.jetstream
        return bool(js.enabled and js.domain and isinstance(other, str) and other == js.domain)

    def learn_urls(self, conn: LeafConnection, info: dict[str, Any]) -> None:
        urls = info.get("leafnode_urls")
        if conn.remote is not None and isinstance(urls, list):
            conn.remote.discovered = [u for u in urls if isinstance(u, str)]

    # ---------------------------------------------------------------- start / stop

    async def start(self) -> None:
        self.running = True
        for account in self.server.accounts.values():
            self.add_account(account)
        if self.config.port:
            self.listener = await self.loop.create_server(
                cast(Any, self._accepted),
                host=self.host,
                port=self.config.port if self.config.port > 0 else 0,
                reuse_address=True,
                backlog=128,
            )
            self.port = self.listener.sockets[0].getsockname()[1]
            where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
            self.log.info(f"Listening for leafnode connections on {where}")
        for remote in self.remotes:
            if remote.urls:
                self.tasks.append(self.loop.create_task(self._solicit(remote)))

    async def stop(self) -> None:
        self.running = False
        if self.listener is not None:
            self.listener.close()
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        for conn in list(self.leafs.values()) + list(self.pending):
            conn.close(ClosedReason.SERVER_SHUTDOWN)

    def _new(self, remote: Remote | None = None, url: Any = None) -> LeafConnection:
        if url is not None and url.scheme in ("ws", "wss"):
            from jsedge.routing.websocket import WebSocketLeafConnection

            return WebSocketLeafConnection(self.server, self.server.next_connection_id(), self, remote, url)
        return LeafConnection(self.server, self.server.next_connection_id(), self, remote, url)

    def _accepted(self) -> LeafConnection:
        return self._new()

    def websocket_leaf(self, client: Any, compress: bool, masked: bool) -> Any:
        """The leaf connection of a leaf node that came through the websocket port (it takes
        over `client`'s socket: jsedge.routing.websocket)."""
        from jsedge.routing.websocket import WebSocketHubLeafConnection

        conn = WebSocketHubLeafConnection(self.server, self.server.next_connection_id(), self)
        conn.adopt_websocket(client, compress, masked)
        return conn

    def adopt(self, conn: LeafConnection) -> bool:
        if not self.running:
            conn.transport.abort()
            conn.closed = True
            return False
        self.pending.add(conn)
        return True

    async def _solicit(self, remote: Remote) -> None:
        """Keep one connection to `remote`'s hub: its URLs in turn, then those it advertised."""
        attempts = 0
        try:
            while self.running:
                candidates = remote.candidates()
                url = candidates[remote.next % len(candidates)]
                remote.next += 1
                default_port = {"ws": 80, "wss": 443}.get(url.scheme, 7422)
                host, port = url.hostname or "127.0.0.1", url.port or default_port
                try:
                    self.log.debug(f"Trying to connect as leafnode to remote server on {host}:{port}")
                    factory: Any = functools.partial(self._new, remote, url)
                    _, conn = await asyncio.wait_for(self.loop.create_connection(factory, host, port), DIAL_TIMEOUT)
                except (TimeoutError, OSError) as exc:
                    attempts += 1
                    text = f"Error trying to connect as leafnode to remote server {host}:{port} (attempt {attempts}): {exc}"
                    if attempts == 1 or attempts % 60 == 0:
                        self.log.error(text)
                    else:
                        self.log.debug(text)
                    await asyncio.sleep(jitter(self._delay(remote)))
                    continue
                attempts = 0
                finished = self.done.setdefault(conn, self.loop.create_future())
                if conn.closed and not finished.done():
                    finished.set_result(None)
                await finished
                self.done.pop(conn, None)
                await asyncio.sleep(LOOP_DELAY if conn.loop_detected else jitter(self._delay(remote)))
        except asyncio.CancelledError:
            pass

    def _delay(self, remote: Remote) -> float:
        if remote.reconnect is not None:
            return remote.reconnect
        if self.config.reconnect_delay:
            return float(self.config.reconnect_delay)
        return DEFAULT_RECONNECT

    # ---------------------------------------------------------------- registration

    def register(self, conn: LeafConnection) -> None:
        """The handshake is complete: announce interest both ways."""
        self.pending.discard(conn)
        if conn.closed or conn.registered or conn.account is None:
            return
        conn.registered = True
        self.leafs[conn.cid] = conn
        if conn.remote is not None:
            conn.log_info(f"Leafnode connection created for account: {conn.account.name}")
        else:
            conn.log_info(f"Leafnode connection created{' - Remote: ' + conn.remote_name if conn.remote_name else ''}")
        conn.restart_pings(min(conn.ping_interval, 1.0))
        conn.send_initial_interest()
        server = self.server
        if server.pending:
            from jsedge.routing.sublist import flush_pending

            flush_pending(server.pending)

    def leaf_closed(self, conn: LeafConnection, reason: ClosedReason) -> None:
        self.pending.discard(conn)
        if self.leafs.get(conn.cid) is conn:
            del self.leafs[conn.cid]
        future = self.done.pop(conn, None)
        if future is not None and not future.done():
            future.set_result(None)

    # ---------------------------------------------------------------- monitoring

    def statistics(self) -> list[dict[str, Any]]:
        return [conn.statistics() for conn in self.leafs.values()]
