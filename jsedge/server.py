"""The server (layer 7): composition root and lifecycle.

Builds accounts, auth and TLS from the config tree, runs the client listener and the monitoring
listener, keeps the client registry and server-wide counters, and handles signals: TERM/INT shut down,
HUP reloads, USR1 reopens the log, USR2 enters lame-duck mode.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from jsedge import NATS_COMPAT_VERSION, __version__, _ext, gojson
from jsedge.errors import MAX_CONNECTIONS, ClosedReason
from jsedge.log import Logger
from jsedge.routing.account import Account
from jsedge.routing.auth import Authenticator, is_bcrypt
from jsedge.routing.client import ClientConnection
from jsedge.routing.listener import bind_listener, listen_address
from jsedge.routing.sublist import KIND_LEAF, KIND_ROUTER, Subscription, deliver_as, flush_pending
from jsedge.subjects import valid_sublist_subject

if TYPE_CHECKING:
    pass

# Startup cost matters (start -> first PONG): `platform` (~1.4 ms to import) only for this string,
# and `secrets` is os.urandom. The version text is what platform.python_version() returns.
GO_FIELD = f"python{sys.version.split()[0]}"


def make_server_id() -> str:
    """A 56-character upper-case base32 id starting with N, shaped like nats-server's public nkey."""
    raw = base64.b32encode(os.urandom(35)).decode().rstrip("=")
    return ("N" + raw)[:56]


class Server:
    def __init__(self, config: Any, logger: Logger, argv: list[str] | None = None) -> None:
        self.config = config
        #: The command line, re-read on reload (flags keep overriding the file).
        self.argv = list(argv or [])
        self.logger = logger
        self.server_id = make_server_id()
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.pending: list[Any] = []
        self.clients: dict[int, ClientConnection] = {}
        self.closed_clients: deque[dict[str, Any]] = deque(maxlen=max(config.limits.max_closed_clients, 0))
        self.next_cid = 0
        self.start_time = time.time()
        self.config_load_time = self.start_time
        self.total_connections = 0
        self.slow_consumers = 0
        self.stale_connections = 0
        #: A route has brought peers' client URLs at least once (see _build_info_base).
        self.peer_urls_seen = False
        #: /varz slow_consumer_stats and stale_connection_stats, by connection kind.
        self.slow_consumer_stats = {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}
        self.stale_connection_stats = {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}
        self.closed_counters = [0, 0, 0, 0]  # in_msgs, in_bytes, out_msgs, out_bytes of closed clients
        self.http_req_stats: dict[str, int] = {}
        self.accepting = False
        self.lame_duck = False
        self.shutting_down = False
        self.listener: asyncio.Server | None = None
        #: A client listening socket bound before the server started (see `serve`), else None.
        self.listen_socket: Any = None
        self.monitor: Any = None
        self.port = 0
        self.http_port = 0
        self.stopped = asyncio.Event()
        #: Background tasks the server started (kept referenced until they finish).
        self.tasks: set[asyncio.Task[Any]] = set()
        self.accounts: dict[str, Account] = {}
        #: The JetStream engine (jsedge.jetstream.manager.JetStream) when enabled, else None.
        self.jetstream: Any = None
        #: The system account's `$SYS.REQ` services (jsedge.events.Events), when it exists.
        self.events: Any = None
        self.imports: Any = None
        self.resolver: Any = None
        #: the `websocket {}` listener and its port, when configured
        self.ws_listener: Any = None
        self.ws_port = 0
        self._ws_auth: tuple[Any, Any] | None = None
        #: the `mqtt {}` listener, its port, its authenticator and the MQTT state per account
        self.mqtt_listener: Any = None
        self.mqtt_port = 0
        self._mqtt_auth: tuple[Any, Any] | None = None
        self.mqtt_managers: dict[str, Any] = {}
        self._ws_peer_urls: list[str] = []
        self._flush_scheduled = False
        from jsedge.sdnotify import Notifier

        #: systemd readiness/watchdog notifications (no-ops unless run by systemd, Type=notify).
        self.notifier = Notifier()
        self._status_handle: asyncio.TimerHandle | None = None
        #: The cluster's route table (jsedge.routing.routes) when a cluster port is configured.
        self.routes: Any = None
        if config.cluster.port:
            from jsedge.routing.routes import RouteTable

            self.routes = RouteTable(self)
        #: Leaf node connections (jsedge.routing.leafnodes), when a leafnodes port or remote is set.
        self.leafnodes: Any = None
        if config.leafnodes.port or config.leafnodes.remotes:
            from jsedge.routing.leafnodes import LeafTable

            self.leafnodes = LeafTable(self)
        self._setup_from_config(config)

    # ---------------------------------------------------------------- config-derived state

    @property
    def server_name(self) -> str:
        return self.config.server_name or self.server_id

    def _setup_from_config(self, config: Any) -> None:
        cache = not config.disable_sublist_cache
        if not self.accounts:
            self.accounts["$G"] = Account("$G", cache=cache)
        for account_config in config.accounts:
            if account_config.name not in self.accounts:
                self.accounts[account_config.name] = Account(account_config.name, cache=cache, config=account_config)
            else:
                self.accounts[account_config.name].config = account_config
        system = config.system_account or "$SYS"
        if not config.no_system_account and system not in self.accounts:
            self.accounts[system] = Account(system, cache=cache)
        if system in self.accounts:
            self.accounts[system].is_system = True
        self.global_account = self.accounts["$G"]
        from jsedge.transform import compile_mapping

        for account in self.accounts.values():
            raw = config.mappings if account.name == "$G" else getattr(account.config, "mappings", ())
            account.mappings = [compile_mapping(src, value, config.cluster.name) for src, value in raw] or None
        if self.routes is not None:
            for account in self.accounts.values():
                self.routes.add_account(account)
        if self.leafnodes is not None:
            for account in self.accounts.values():
                self.leafnodes.add_account(account)
        self.auth = Authenticator.from_config(config)
        self.tls_context = None
        if config.tls is not None:
            from jsedge.routing.tls import build_tls_context  # ssl only when TLS is configured

            self.tls_context = build_tls_context(config.tls)
        if config.tls is not None:
            self.auth_timeout = config.auth.timeout if config.auth.timeout is not None else config.tls.timeout + 1.0
        else:
            self.auth_timeout = config.auth.timeout if config.auth.timeout is not None else 2.0
        self._info_base = self._build_info_base()

    def lookup_account(self, name: str) -> Account:
        account = self.accounts.get(name)
        if account is None:
            account = self.accounts[name] = Account(name, cache=not self.config.disable_sublist_cache)
            if self.routes is not None:
                self.routes.add_account(account)
            if self.leafnodes is not None:
                self.leafnodes.add_account(account)
        return account

    def _build_info_base(self) -> dict[str, Any]:
        config = self.config
        info: dict[str, Any] = {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": NATS_COMPAT_VERSION,
            "proto": 1,
            "go": GO_FIELD,
            "host": config.listen.host,
            "port": self.port or config.listen.port,
            "headers": not config.limits.no_header_support,
        }
        if self.auth.required:
            info["auth_required"] = True
        if config.tls is not None:
            if config.allow_non_tls:
                info["tls_available"] = True
            else:
                info["tls_required"] = True
            if config.tls.verify or config.tls.verify_and_map:
                info["tls_verify"] = True
        info["max_payload"] = config.limits.max_payload
        if config.jetstream.enabled:
            info["jetstream"] = True  # nats-server's greeting says so (tools read it)
        routes = self.routes
        if routes is not None:
            info["cluster"] = routes.cluster_name
            if routes.dynamic:
                info["cluster_dynamic"] = True
            # nats-server fills `connect_urls` the first time a peer brings client URLs (a lone
            # node has none), then keeps this server's own first; never with no_advertise
            peers = routes.peer_client_urls()
            if peers:
                self.peer_urls_seen = True
            if not config.cluster.no_advertise and self.port and self.peer_urls_seen:
                urls = self.own_client_urls()
                urls += [url for url in peers if url not in urls]
                if urls:
                    info["connect_urls"] = urls
        return info

    version_text = NATS_COMPAT_VERSION
    go_text = GO_FIELD

    def own_client_urls(self) -> list[str]:
        """This server's client URLs as peers and clients should use them: `client_advertise`,
        else the listen address (every non-loopback IPv4 address for 0.0.0.0, as nats-server)."""
        config = self.config
        if config.listen.client_advertise:
            return [config.listen.client_advertise]
        host = config.listen.host or "0.0.0.0"
        if host in ("0.0.0.0", "::", ""):
            from jsedge.routing.listener import local_addresses

            return [self._hostport(ip, self.port) for ip in local_addresses()]
        return [self._hostport(host, self.port)]

    def cluster_changed(self) -> None:
        """Cluster membership or the peers' client URLs changed: protocol-1 clients get an async
        INFO with the new `connect_urls` (nats-server's sendAsyncInfoToClients)."""
        jetstream = self.jetstream
        if jetstream is not None and jetstream.cluster is not None:
            jetstream.cluster.routes_changed()
        ws_urls = self.routes.peer_ws_urls() if self.routes is not None else []
        old = self._info_base.get("connect_urls"), self._info_base.get("cluster"), self._ws_peer_urls
        self._info_base = self._build_info_base()
        self._ws_peer_urls = ws_urls
        if (self._info_base.get("connect_urls"), self._info_base.get("cluster"), ws_urls) == old or self.lame_duck:
            return
        for client in list(self.clients.values()):
            if client.protocol >= 1 and client.connect_seen and not client.closed:
                client.send_now(self.info_line(client))

    @staticmethod
    def _kind_key(kind: int) -> str:
        return {KIND_ROUTER: "routes", KIND_LEAF: "leafs"}.get(kind, "clients")

    def count_slow_consumer(self, kind: int) -> None:
        self.slow_consumers += 1
        self.slow_consumer_stats[self._kind_key(kind)] += 1

    def count_stale_connection(self, kind: int) -> None:
        self.stale_connections += 1
        self.stale_connection_stats[self._kind_key(kind)] += 1

    def next_connection_id(self) -> int:
        """Clients and routes share one id counter (`cid` / `rid`), as in nats-server."""
        self.next_cid += 1
        return self.next_cid

    #: JetStream API level; nats-server 2.15 advertises it in INFO even with JetStream off.
    API_LEVEL = 5

    def info_line(
        self, client: ClientConnection, *, connect_info: bool = False, ldm: bool = False, greeting: bool = False
    ) -> bytes:
        """An INFO for `client`: the greeting (with the nonce, and without `auth_required` when a
        `no_auth_user` lets anonymous clients in), or a later async INFO (connect_info, ldm)."""
        info = dict(self._info_base)
        auth = client.authenticator()
        if auth is not self.auth:
            info["auth_required"] = True  # a websocket authorization override (nats-server's)
        elif greeting and not auth.info_auth_required:
            info.pop("auth_required", None)
        info["client_id"] = client.cid
        if client.remote_host:
            info["client_ip"] = client.remote_host
        if greeting and client.nonce:
            info["nonce"] = client.nonce
        jetstream = self.config.jetstream
        if jetstream.enabled and jetstream.domain:
            info["domain"] = jetstream.domain
        if ldm:
            info["ldm"] = True
            # only the other members: clients should move away from this one
            info.pop("connect_urls", None)
            if self.routes is not None and not self.config.cluster.no_advertise:
                peers = self.routes.peer_client_urls()
                if peers:
                    info["connect_urls"] = peers
        if getattr(client, "CLIENT_TYPE", "nats") == "websocket":
            self._websocket_info(info, ldm)
        if connect_info:
            info["connect_info"] = True
            info["remote_account"] = client.account.name
            if client.account.is_system:
                info["acc_is_sys"] = True
        info["api_lvl"] = self.API_LEVEL
        return b"INFO " + gojson.dumpb(info) + b" \r\n"

    # ---------------------------------------------------------------- internal clients

    def subscribe_internal(
        self, account: Account, subject: bytes, callback: Any, queue: bytes | None = None, *, routed: bool = True
    ) -> Subscription:
        """A server-side subscription: `callback(sub, src, subject, reply, hdr_len, msg)` runs on
        the event loop for every matching message (src is the publishing ClientCore or None).
        `routed=False` keeps it to this server (no `RS+` to the cluster)."""
        sub = Subscription(None, subject, b"", queue, 0, callback)
        account.subscribe(sub, routed=routed)
        return sub

    def unsubscribe_internal(self, account: Account, sub: Subscription) -> None:
        account.unsubscribe(sub)

    def send_internal(self, account: Account, subject: bytes, reply: bytes, hdr: bytes, data: bytes) -> int:
        """Publish a server-originated message into `account` (hdr b"" = plain MSG). Output is
        flushed right after the current callback chain (once per loop turn)."""
        return self.send_internal_as(account, subject, subject, reply, hdr, data)

    def send_internal_as(
        self, account: Account, subject: bytes, shown: bytes, reply: bytes, hdr: bytes, data: bytes
    ) -> int:
        """`send_internal` routed on `subject` but showing `shown` as the MSG subject (JetStream
        deliveries: routed on the deliver subject, shown with the stored subject)."""
        if hdr:
            count = deliver_as(account.sublist, None, subject, shown, reply, len(hdr), hdr + data)
        else:
            count = deliver_as(account.sublist, None, subject, shown, reply, -1, data)
        if self.pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_internal)
        return count

    def send_internal_many(self, account: Account, messages: list[tuple[bytes, bytes]], flush: bool = False) -> None:
        """`send_internal(account, subject, b"", b"", data)` for each (subject, data), in order
        (JetStream PubAcks released by one fsync). `flush`: hand them to the sockets now rather than
        after the current callback chain: PubAcks released by an fsync or a commit arrive in a
        callback of their own, and a publisher waiting for them to refill its window should not also
        wait for the loop to read and process whatever else came in meanwhile."""
        sublist = account.sublist
        for subject, data in messages:
            deliver_as(sublist, None, subject, subject, b"", -1, data)
        if flush:
            self._flush_internal()
            return
        if self.pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_internal)

    def schedule_flush(self) -> None:
        """Flush what internal deliveries left pending, once, after the current callback chain."""
        if self.pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_internal)

    def wire_imports(self) -> None:
        """(Re)wire the accounts' exports and imports (jsedge.routing.imports)."""
        # (an account exporting a latency-tracked service measures requests that other servers
        # forward to its responders: imports.RemoteLatency)
        wanted = any(
            account.imports or any(e.kind == "service" and e.latency_subject for e in account.exports)
            for account in self.config.accounts
        )
        if self.imports is None and not wanted:
            return
        if self.imports is None:
            from jsedge.routing.imports import Imports

            self.imports = Imports(self)
        if wanted:
            self.imports.wire()
        else:
            self.imports.unwire()

    def _flush_internal(self) -> None:
        self._flush_scheduled = False
        if self.pending:
            flush_pending(self.pending)

    def valid_subscribe_subject(self, subject: bytes) -> bool:
        return valid_sublist_subject(subject)

    # ---------------------------------------------------------------- client registry

    def register_client(self, client: ClientConnection) -> bool:
        limits = self.config.limits
        if not self.accepting:
            client.transport.abort()
            client.closed = True
            return False
        if limits.max_connections < 0 or len(self.clients) >= limits.max_connections:
            # (send_now: a WebSocket client gets these in a frame)
            client.send_now(self.info_line(client, greeting=True) + MAX_CONNECTIONS.line())
            self.logger.error(
                f"{client.remote_host}:{client.remote_port} - cid:{client.cid} - "
                f"Maximum Connections Exceeded (max={limits.max_connections})"
            )
            client.transport.close()
            client.closed = True
            client.closed_reason = ClosedReason.MAX_CONNECTIONS_EXCEEDED
            return False
        self.clients[client.cid] = client
        client.account.add_client(client)
        self.total_connections += 1
        return True

    def unregister_client(self, client: ClientConnection) -> None:
        if self.clients.pop(client.cid, None) is None:
            return
        client.account.remove_client(client)
        if client.announced and self.events is not None:
            reason = client.closed_reason.value if client.closed_reason is not None else "Client Closed"
            self.events.client_disconnected(client, reason)
        counters = self.closed_counters
        counters[0] += client.in_msgs
        counters[1] += client.in_bytes
        counters[2] += client.out_msgs
        counters[3] += client.out_bytes
        # Closed-connection snapshots are only ever read by /connz, and the monitoring port cannot be
        # added by a reload: without a monitor, keeping them would cost memory, and importing the
        # monitor module for them ~15 ms and ~0.6 MiB at the first close.
        if self.closed_clients.maxlen and self.monitor is not None:
            from jsedge.monitor import connection_info

            self.closed_clients.append(connection_info(self, client, subs=True, closed=True))

    def new_connection(self) -> ClientConnection:
        return ClientConnection(self, self.next_connection_id())

    def _websocket_info(self, info: dict[str, Any], ldm: bool) -> None:
        """A WebSocket client's INFO names the websocket listener (host, port, TLS) and, in a
        cluster, the websocket URLs of every member as its `connect_urls` (nats-server's)."""
        ws = self.config.websocket
        wss = ws.tls is not None and not ws.no_tls
        info["host"] = ws.host or "0.0.0.0"
        info["port"] = self.ws_port
        info.pop("tls_required", None)
        info.pop("tls_verify", None)
        info.pop("tls_available", None)
        if wss:
            info["tls_required"] = info["tls_available"] = True
        info.pop("connect_urls", None)
        routes = self.routes
        if routes is None or self.config.cluster.no_advertise:
            return
        peers = routes.peer_ws_urls()
        if ldm:
            urls = peers
        elif peers:
            urls = self.own_ws_urls()
            urls += [url for url in peers if url not in urls]
        else:
            urls = []
        if urls:
            info["connect_urls"] = urls

    def own_ws_urls(self) -> list[str]:
        """This server's websocket URLs (`advertise`, else the listen address; every non-loopback
        address for 0.0.0.0), as its route INFO's `ws_connect_urls` carries them."""
        ws = self.config.websocket
        if not ws.port or not self.ws_port:
            return []
        if ws.advertise:
            return [ws.advertise]
        host = ws.host or "0.0.0.0"
        if host in ("0.0.0.0", "::"):
            from jsedge.routing.listener import local_addresses

            return [self._hostport(ip, self.ws_port) for ip in local_addresses()]
        return [self._hostport(host, self.ws_port)]

    def ws_authenticator(self) -> Any:
        """The authenticator of WebSocket clients: the server's, or with the `websocket` block's
        `authorization` (single user or token) and `no_auth_user` in place of the server's when
        it sets any of them (nats-server's authOverride); rebuilt after a reload."""
        return self._auth_override(self.config.websocket, "_ws_auth")

    def mqtt_authenticator(self) -> Any:
        """The authenticator of MQTT clients, the same way from the `mqtt` block."""
        return self._auth_override(self.config.mqtt, "_mqtt_auth")

    def _auth_override(self, block: Any, cache: str) -> Any:
        base = self.auth
        if not (block.username or block.token or block.no_auth_user):
            return base
        cached = getattr(self, cache)
        if cached is not None and cached[0] is base:
            return cached[1]
        import copy

        from jsedge.routing.auth import User

        override = copy.copy(base)
        override.token = block.token
        override.no_auth_user = block.no_auth_user
        override.single_user = User(block.username, block.password, "$G", None) if block.username else None
        setattr(self, cache, (base, override))
        return override

    def mqtt_manager(self, account: Account) -> Any:
        """The MQTT state of `account` on this server (created on its first MQTT client)."""
        manager = self.mqtt_managers.get(account.name)
        if manager is None:
            from jsedge.routing.mqtt import AccountManager

            manager = AccountManager(self, account)
            self.mqtt_managers[account.name] = manager
        return manager

    async def _start_mqtt(self) -> None:
        """The `mqtt {}` listener (jsedge.routing.mqtt), as nats-server logs it."""
        from jsedge.routing.mqtt import MQTTConnection

        options = self.config.mqtt
        context = None
        if options.tls is not None:
            from jsedge.routing.tls import build_tls_context

            context = build_tls_context(options.tls)
        host = options.host or "0.0.0.0"
        port = 0 if options.port == -1 else options.port

        def factory() -> Any:  # (a ClientCore subclass: typeshed wants a BaseProtocol)
            return MQTTConnection(self, self.next_connection_id(), options, context)

        try:
            self.mqtt_listener = await self.loop.create_server(
                factory, host=host, port=port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            raise ListenError(host, port, exc) from None
        self.mqtt_port = self.mqtt_listener.sockets[0].getsockname()[1]
        scheme = "tls" if context is not None else "mqtt"
        self.logger.info(f"Listening for MQTT clients on {scheme}://{host}:{self.mqtt_port}")

    async def _start_websocket(self) -> None:
        """The `websocket {}` listener (jsedge.routing.websocket), as nats-server logs it."""
        from jsedge.routing.websocket import WebSocketConnection

        options = self.config.websocket
        context = None
        if options.tls is not None and not options.no_tls:
            from jsedge.routing.tls import build_tls_context

            context = build_tls_context(options.tls)
        host = options.host or "0.0.0.0"
        port = 0 if options.port == -1 else options.port

        def factory() -> Any:  # (a ClientCore subclass: typeshed wants a BaseProtocol)
            return WebSocketConnection(self, self.next_connection_id(), options, context)

        try:
            self.ws_listener = await self.loop.create_server(
                factory, host=host, port=port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            raise ListenError(host, port, exc) from None
        self.ws_port = self.ws_listener.sockets[0].getsockname()[1]
        scheme = "wss" if context is not None else "ws"
        self.logger.info(f"Listening for websocket clients on {scheme}://{host}:{self.ws_port}")
        if context is None:
            self.logger.warn("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!")

    def totals(self) -> tuple[int, int, int, int]:
        in_msgs, in_bytes, out_msgs, out_bytes = self.closed_counters
        for client in self.clients.values():
            in_msgs += client.in_msgs
            in_bytes += client.in_bytes
            out_msgs += client.out_msgs
            out_bytes += client.out_bytes
        return in_msgs, in_bytes, out_msgs, out_bytes

    def subscription_count(self) -> int:
        return sum(account.sublist.count for account in self.accounts.values())

    # ---------------------------------------------------------------- start / stop

    def log_banner(self) -> None:
        log = self.logger
        log.info("Starting nats-server")
        log.info(f"  Version:  {NATS_COMPAT_VERSION} (jsedge {__version__})")
        log.info(f"  Git:      [jsedge-{__version__}]")
        log.debug(f"  Go build: {GO_FIELD}")
        if self.config.cluster.name:
            log.info(f"  Cluster:  {self.config.cluster.name}")
        log.info(f"  Name:     {self.server_name}")
        log.info(f"  ID:       {self.server_id}")
        if self.config.jetstream.enabled:
            import jsedge.store.codec  # noqa: F401 - so the line below names the store's twin too
        log.info(f"  Twins:    {_ext.describe()}")
        for name, why in sorted(_ext.MISSING.items()):
            log.error(f"Compiled twin {name!r} is missing ({why}); running the pure-Python twin")
        if self.config.config_file:
            log.info(f"Using configuration file: {self.config.config_file} ({self.config.config_digest})")
        if self.config.operators and self.config.no_system_account:
            log.warn("Trusted Operators should utilize a System Account")
        else:
            log.debug(f'Created system account: "{self.config.system_account or "$SYS"}"')
        plain = [self.config.auth.password, *(u.password for u in self.config.auth.users)]
        plain += [u.password for account in self.config.accounts for u in account.users]
        if any(p and not is_bcrypt(p) for p in plain):
            log.warn("Plaintext passwords detected, use nkeys or bcrypt")

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.log_banner()
        config = self.config
        if config.monitor.port:
            from jsedge.monitor import Monitor

            self.monitor = Monitor(self)
            self.http_port = await self.monitor.start()
        if config.jetstream.enabled:
            self.notifier.status("recovering JetStream streams")
            from jsedge.api import JetStreamAPI
            from jsedge.jetstream.manager import JetStream

            self.jetstream = JetStream(self)
            api = JetStreamAPI(self, self.jetstream)
            if self.routes is not None:
                # a cluster: the meta group decides which streams this server holds
                from jsedge.cluster.jetstream import JetStreamCluster

                self.jetstream.clustered = True
                self.jetstream.cluster = JetStreamCluster(self, self.jetstream, api)
            self.jetstream.attach_api(api)
            await self.jetstream.start()  # recovers stored streams before clients are accepted
            if self.jetstream.cluster is not None:
                await self.jetstream.cluster.start()
        system = self.accounts.get(config.system_account or "$SYS")
        if system is not None and system.is_system:
            from jsedge.events import Events

            self.events = Events(self, system)
            self.events.start()
            if config.resolver in ("FULL", "CACHE") and config.resolver_dir:
                from jsedge.resolver import DirResolver

                self.resolver = DirResolver(self, system)
                self.resolver.start()
        if config.resolver == "URL" and config.resolver_url:
            from jsedge.resolver import URLResolver

            self.resolver = URLResolver(self, system if system is not None and system.is_system else None)
            await self.resolver.probe()  # nats-server's "anyone home?" GET of the base URL
            self.resolver.start()
        self.wire_imports()
        ssl_context = self.tls_context if config.tls is not None and config.tls.handshake_first else None
        handshake_timeout = config.tls.timeout if ssl_context is not None else None
        host, port = listen_address(config)
        # A numeric host is bound here (or was already, by `python -m jsedge`): no getaddrinfo on the
        # loop's thread pool (jsedge.routing.listener). A host name goes through create_server.
        sock, self.listen_socket = self.listen_socket, None
        try:
            if sock is None:
                sock = bind_listener(host, port)
            self.accepting = True
            if sock is not None:
                self.listener = await self.loop.create_server(
                    self.new_connection,
                    sock=sock,
                    ssl=ssl_context,
                    backlog=1024,
                    ssl_handshake_timeout=handshake_timeout,
                )
            else:
                self.listener = await self.loop.create_server(
                    self.new_connection,
                    host=host,
                    port=port,
                    ssl=ssl_context,
                    reuse_address=True,
                    backlog=1024,
                    ssl_handshake_timeout=handshake_timeout,
                )
        except OSError as exc:
            raise ListenError(host, port, exc) from None
        self.port = self.listener.sockets[0].getsockname()[1]
        self._info_base = self._build_info_base()
        if config.websocket.port:
            await self._start_websocket()
        if config.mqtt.port:
            await self._start_mqtt()
        if self.leafnodes is not None:
            # before the routes: peers learn this server's leaf node URL from the route INFO
            await self.leafnodes.start()
        if self.routes is not None:
            # after the client listener: peers learn this server's client URLs from the route INFO
            await self.routes.start()
        if config.tls is not None:
            self.logger.info(
                "TLS available for client connections"
                if config.allow_non_tls
                else "TLS required for client connections"
            )
        self.logger.info(f"Listening for client connections on {self._hostport(config.listen.host, self.port)}")
        self._write_pidfile()
        self._write_ports_file()
        if os.environ.get("JSEDGE_TEST_HOOKS", "") == "1":
            self._install_test_hooks()
        self.logger.info("Server is ready")
        # READY=1 only now: listeners are up and JetStream recovery has finished.
        self.notifier.ready(self._status_text())
        self.notifier.start_watchdog(self.loop)
        if self.notifier.enabled:
            self._status_handle = self.loop.call_later(5.0, self._status_tick)

    def _status_text(self) -> str:
        return f"serving {len(self.clients)} clients"

    def _status_tick(self) -> None:
        self.notifier.status(self._status_text())
        self._status_handle = self.loop.call_later(5.0, self._status_tick)

    def _install_test_hooks(self) -> None:
        """JSEDGE_TEST_HOOKS=1 only: `$JSEDGE.TEST.block` with a payload of N seconds blocks the event
        loop, as a stuck handler would (the watchdog test)."""
        import time as _time

        def block(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            _time.sleep(float(msg[max(hdr_len, 0) :] or b"0"))

        self.subscribe_internal(self.global_account, b"$JSEDGE.TEST.block", block)
        self.logger.warn("Test hooks are enabled (JSEDGE_TEST_HOOKS=1): never in production")

    @staticmethod
    def _hostport(host: str, port: int) -> str:
        host = host or "0.0.0.0"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _write_pidfile(self) -> None:
        if self.config.pidfile:
            with open(self.config.pidfile, "w", encoding="ascii") as handle:
                handle.write(str(os.getpid()))

    def _write_ports_file(self) -> None:
        directory = self.config.ports_file_dir
        if not directory:
            return
        host = self.config.listen.host or "0.0.0.0"
        ports: dict[str, list[str]] = {"nats": [f"nats://{self._hostport(host, self.port)}"]}
        if self.http_port:
            ports["monitoring"] = [f"http://{self._hostport(self.config.monitor.host or host, self.http_port)}"]
        name = os.path.basename(sys.argv[0]) or "jsedge"
        with open(os.path.join(directory, f"{name}_{os.getpid()}.ports"), "w", encoding="utf-8") as handle:
            handle.write(gojson.dumps(ports))

    def install_signal_handlers(self) -> None:
        loop = self.loop
        loop.add_signal_handler(signal.SIGTERM, self._on_signal, "terminated")
        loop.add_signal_handler(signal.SIGINT, self._on_signal, "interrupt")
        loop.add_signal_handler(signal.SIGHUP, self._on_signal, "hangup")
        loop.add_signal_handler(signal.SIGUSR1, self._on_signal, "user defined signal 1")
        loop.add_signal_handler(signal.SIGUSR2, self._on_signal, "user defined signal 2")

    def _keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference until the task ends (the loop keeps only a weak one)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_signal(self, name: str) -> None:
        self.logger.debug(f'Trapped "{name}" signal')
        if name in ("terminated", "interrupt"):
            if self.lame_duck and name == "terminated":
                return
            self._keep(self.loop.create_task(self.shutdown()))
        elif name == "hangup":
            self.reload()
        elif name == "user defined signal 1":
            self.logger.reopen()
            self.logger.info("File log re-opened")
        elif name == "user defined signal 2":
            self._keep(self.loop.create_task(self.enter_lame_duck()))

    async def shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        self.accepting = False
        self.notifier.stopping()
        if self._status_handle is not None:
            self._status_handle.cancel()
        self.logger.info("Initiating Shutdown...")
        if self.listener is not None:
            self.listener.close()
        if self.ws_listener is not None:
            self.ws_listener.close()
        if self.mqtt_listener is not None:
            self.mqtt_listener.close()
        if self.jetstream is not None and self.jetstream.started:
            self.jetstream.notify_shutdown()  # 409 Server Shutdown to waiting pulls, then flushed
            self._flush_internal()
        for client in list(self.clients.values()):
            client.close(ClosedReason.SERVER_SHUTDOWN)
        for manager in self.mqtt_managers.values():
            manager.close()
        if self.resolver is not None:
            self.resolver.stop()  # (timers, pending account lookups)
        if self.jetstream is not None and self.jetstream.cluster is not None:
            await self.jetstream.cluster.hand_over()  # while the routes still carry the transfer
        if self.routes is not None:
            await self.routes.stop()
        if self.leafnodes is not None:
            await self.leafnodes.stop()
        if self.jetstream is not None:
            self.logger.info("Initiating JetStream Shutdown...")
            if self.jetstream.cluster is not None:
                self.jetstream.cluster.stop()
            await self.jetstream.stop()
            self.logger.info("JetStream Shutdown")
        if self.monitor is not None:
            await self.monitor.stop()
        if self.config.pidfile:
            try:
                os.unlink(self.config.pidfile)
            except OSError:
                pass
        self.logger.info("Server Exiting..")
        self.notifier.close()
        self.stopped.set()

    async def enter_lame_duck(self) -> None:
        if self.lame_duck or self.shutting_down:
            return
        self.lame_duck = True
        self.accepting = False
        self.notifier.stopping()
        self.notifier.status("lame duck: closing clients")
        self.logger.info("Entering lame duck mode, stop accepting new clients")
        if self.listener is not None:
            self.listener.close()
        if self.jetstream is not None and self.jetstream.cluster is not None:
            await self.jetstream.cluster.hand_over()
        clients = list(self.clients.values())
        if not clients:
            # nothing to hand over: nats-server shuts down at once
            await self.shutdown()
            return
        if self.routes is not None:
            self.routes.send_lame_duck()
        for client in clients:
            if client.protocol >= 1:
                client.send_now(self.info_line(client, ldm=True))
        grace = self.config.lame_duck_grace_period
        # nats-server spreads the closes over (duration - grace), at most 1 s apart, each gap a
        # random length between half and all of that interval, and shuts down after the last one
        spread = self.config.lame_duck_duration - grace
        if spread <= 0:
            spread = 1.0
        interval = min(spread / len(clients), 1.0)
        await asyncio.sleep(grace)
        self.logger.info("Closing existing clients")
        for index, client in enumerate(clients):
            client.close(ClosedReason.SERVER_SHUTDOWN)
            if index == len(clients) - 1:
                break
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
        await self.shutdown()

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            self.notifier.ready(self._status_text())

    def _reload(self) -> None:
        from jsedge.config import ConfigError, diff_for_reload, load_config

        try:
            new = load_config(self.argv).config
        except ConfigError as exc:
            self.logger.error(f"Failed to reload server configuration: {exc}")
            return
        changed, needs_restart = diff_for_reload(self.config, new)
        if needs_restart:
            for line in needs_restart:
                self.logger.error(line)
            self.logger.error("Failed to reload server configuration: changes need a restart")
            return
        self.apply_config(new)
        for line in changed:
            self.logger.info(f"Reloaded: {line}")
        self.logger.info(f"Reloaded server configuration ({new.config_digest})")

    def apply_config(self, new: Any) -> None:
        """Take a changed configuration (a reload, or an account JWT a resolver was sent): accounts,
        auth, imports, JetStream for accounts that gain it; every client checked again."""
        self.config = new
        self.config_load_time = time.time()
        logging = new.logging
        self.logger.configure(
            debug=logging.debug,
            trace=logging.trace,
            logtime=logging.logtime,
            utc=logging.logtime_utc,
            logfile=logging.logfile,
        )
        self._setup_from_config(new)
        if self.routes is not None:
            self.routes.reload(new.cluster)
        if self.events is not None:
            self.events.sync_accounts()  # accounts added by the reload get the system imports
        self.wire_imports()
        for client in list(self.clients.values()):
            client.max_payload = new.limits.max_payload
            client.max_pending = new.limits.max_pending
            client.trace = logging.trace
            if client.connect_seen and getattr(client, "deferred", None) is None:
                result = client.authenticator().authenticate(
                    client.opts, nonce=client.nonce, host=client.remote_host or ""
                )
                if result is None:
                    client.auth_violation()
                    continue
                if result.account != client.account.name:
                    client._rebind_account(result)
                else:
                    client._bind(result)
            client._update_fast_pub()
        if self.pending:
            flush_pending(self.pending)
        if self.jetstream is not None and not self.jetstream.clustered:
            self.jetstream.enable_new_accounts()


def install_event_loop_policy() -> str:
    """uvloop when importable, the stdlib loop otherwise; returns which one."""
    if os.environ.get("JSEDGE_LOOP", "") == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


class ListenError(OSError):
    """The client port could not be bound; str() is nats-server's text after "Error listening on
    port: " (Go's `listen tcp host:port: bind: reason`)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        address = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
        reason = os.strerror(cause.errno).lower() if cause.errno else str(cause)
        super().__init__(cause.errno, f'{address}, "listen tcp {address}: bind: {reason}"')

    def __str__(self) -> str:
        return str(self.strerror)


async def serve(config: Any, logger: Logger, argv: list[str] | None = None, listen_socket: Any = None) -> int:
    """Run until shutdown; `listen_socket`, when given, is the already bound client listener."""
    server = Server(config, logger, argv)
    server.listen_socket = listen_socket
    # Handlers first: supervisors may signal as soon as they read "Server is ready".
    server.install_signal_handlers()
    from jsedge.jetstream.manager import JetStreamStartError
    from jsedge.resolver import ResolverStartError

    try:
        await server.start()
    except JetStreamStartError as exc:
        logger.fatal(f"Can't start JetStream: {exc}")
        return 1
    except ResolverStartError as exc:
        print(f"jsedge: {exc}", file=sys.stderr)  # (nats-server: "nats-server: could not fetch ...")
        return 1
    except OSError as exc:
        logger.fatal(f"Error listening on port: {exc}")
        return 1
    await server.stopped.wait()
    return 0
