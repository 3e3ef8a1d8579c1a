"""The route table (layer 2): this server's place in a cluster (nats-server's route.go, server side).

* Listens on the cluster port and dials the configured routes, retrying every second for as long as
  they stay configured (nats-server's timing and `Error trying to connect to route` log lines: the
  first failure and every 3600th are errors for a route never connected, every one for a route
  that was). A route that turns out to be this server is dropped for good.
* Registers a route once the handshake is complete, one per peer: of two connections between the
  same servers, the one dialled by the server with the smaller id is kept, so both sides choose the
  same one (nats-server peers may choose otherwise; the loser reconnects after a second, as in
  nats-server).
* Gossip: a newly registered peer's INFO is forwarded to the other peers, which dial it (implicit
  routes, retried `connect_retries` times), so a node that lists one seed joins the full mesh.
* Interest: listens to every account (jsedge.routing.account) and sends `RS+`/`RS-` for local
  interest only; on registration it sends the whole local interest.
* Client URLs: the peers' `connect_urls` join this server's, and protocol-1 clients get an async
  INFO when the set changes (the server builds it).
"""

from __future__ import annotations

import asyncio
import errno
import random
import secrets
import time
import urllib.parse
from typing import Any

from jsedge import __version__, gojson
from jsedge.errors import ClosedReason
from jsedge.routing.route import RouteConnection, join_host_port

#: Seconds between attempts to (re)connect a configured route (nats-server's DEFAULT_ROUTE_CONNECT).
CONNECT_DELAY = 1.0
#: Dial timeout (DEFAULT_ROUTE_DIAL).
DIAL_TIMEOUT = 1.0
#: A route never connected logs its first failure and then every this many (connect_error_reports).
CONNECT_ERROR_REPORTS = 3600
#: Route protocol version in the route INFO.
ROUTE_PROTO = 3
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class RouteURL:
    """A route URL: `nats-route://[user[:password]@]host:port` (nats:// and tls:// work too)."""

    __slots__ = ("raw", "host", "port", "user", "password")

    def __init__(self, raw: str) -> None:
        text = raw if "://" in raw else "nats-route://" + raw
        parsed = urllib.parse.urlsplit(text)
        self.raw = raw
        self.host = parsed.hostname or ""
        self.port = parsed.port or 6222
        self.user = urllib.parse.unquote(parsed.username) if parsed.username else ""
        self.password = urllib.parse.unquote(parsed.password) if parsed.password else ""

    @property
    def key(self) -> str:
        return join_host_port(self.host.lower(), self.port)

    def redacted(self) -> str:
        return f"nats-route://{join_host_port(self.host, self.port)}"

    def __repr__(self) -> str:
        return f"RouteURL({self.redacted()!r})"


def go_dial_error(host: str, port: int, exc: BaseException) -> str:
    """How Go words a failed dial (the text nats-server logs)."""
    target = f"dial tcp {join_host_port(host, port)}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"{target}: i/o timeout"
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return f"{target}: connect: connection refused"
    if code == errno.EHOSTUNREACH:
        return f"{target}: connect: no route to host"
    if code == errno.ENETUNREACH:
        return f"{target}: connect: network is unreachable"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{target}: connect: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return f"{target}: {exc}"


class RouteTable:
    """The routes of this server and everything about cluster membership."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        cluster = server.config.cluster
        self.config = cluster
        self.dynamic = not cluster.name
        self.cluster_name = cluster.name or "".join(secrets.choice(_BASE62) for _ in range(22))
        #: Registered routes by peer server id.
        self.routes: dict[str, RouteConnection] = {}
        #: Connections still in the handshake.
        self.pending: set[RouteConnection] = set()
        #: Accounts by name, and their sublists (what the compiled parser routes RMSG into).
        self.accounts: dict[bytes, Any] = {}
        self.routed_sublists: dict[bytes, Any] = {}
        self.listener: asyncio.Server | None = None
        self.port = 0
        self.host = cluster.host or "0.0.0.0"
        #: TLS for routes: the accepting side's context and the dialling side's.
        self.tls_context: Any = None
        self.tls_client_context: Any = None
        if cluster.tls is not None:
            from jsedge.routing.tls import build_tls_client_context, build_tls_context

            self.tls_context = build_tls_context(cluster.tls)
            self.tls_client_context = build_tls_client_context(cluster.tls)
        self.auth_required = bool(cluster.user)
        self.auth_timeout = cluster.auth_timeout if cluster.auth_timeout is not None else 2.0
        #: Route URLs that turned out to be this server.
        self.self_urls: set[str] = set()
        #: Configured route URLs and their dial tasks.
        self.configured: dict[str, RouteURL] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: Connections whose end a dial task awaits.
        self.done: dict[RouteConnection, asyncio.Future[None]] = {}
        self.next_rid = 0
        self.running = False
        self.log = server.logger

    # ---------------------------------------------------------------- accounts

    def add_account(self, account: Any) -> None:
        name = account.name.encode()
        account.sublist.account = name
        if name in self.accounts:
            return
        self.accounts[name] = account
        self.routed_sublists[name] = account.sublist
        account.add_interest_listener(self._interest_changed)

    def _interest_changed(self, account: Any, subject: bytes, queue: bytes | None, count: int, delta: int) -> None:
        if count < 0 or not self.routes:
            return  # a remote server's interest: it crossed its one route already
        if queue is None:
            if (delta > 0 and count != 1) or (delta < 0 and count != 0):
                return
            line = (b"RS+ " if delta > 0 else b"RS- ") + account.sublist.account + b" " + subject + b"\r\n"
        elif count > 0:
            line = b"RS+ %b %b %b %d\r\n" % (account.sublist.account, subject, queue, count)
        else:
            line = b"RS- %b %b %b\r\n" % (account.sublist.account, subject, queue)
        for route in self.routes.values():
            route.send(line)

    def interest_lines(self) -> bytes:
        """`RS+` for every local subscription of every account (sent to a new route)."""
        parts: list[bytes] = []
        for name, account in self.accounts.items():
            for (subject, queue), count in account.interest.items():
                if queue is None:
                    parts.append(b"RS+ " + name + b" " + subject + b"\r\n")
                else:
                    parts.append(b"RS+ %b %b %b %d\r\n" % (name, subject, queue, count))
        return b"".join(parts)

    # ---------------------------------------------------------------- protocol pieces

    def info_dict(self) -> dict[str, Any]:
        server = self.server
        config = server.config
        info: dict[str, Any] = {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "version": server.version_text,
            "proto": ROUTE_PROTO,
            "go": server.go_text,
            "host": self.advertise_host(),
            "port": self.advertise_port(),
            "headers": not config.limits.no_header_support,
        }
        if self.auth_required:
            info["auth_required"] = True
        if self.tls_context is not None:
            info["tls_required"] = True
            info["tls_verify"] = True
        info["max_payload"] = config.limits.max_payload
        if config.jetstream.enabled:
            info["jetstream"] = True
        info["nonce"] = secrets.token_urlsafe(11)[:15]
        info["cluster"] = self.cluster_name
        if self.dynamic:
            info["cluster_dynamic"] = True
        urls = [] if self.config.no_advertise else server.own_client_urls()
        if urls:
            info["connect_urls"] = urls
        ws_urls = [] if self.config.no_advertise else server.own_ws_urls()
        if ws_urls:
            info["ws_connect_urls"] = ws_urls
        leafnodes = server.leafnodes
        if leafnodes is not None and leafnodes.port and not leafnodes.config.no_advertise:
            info["leafnode_urls"] = [leafnodes.advertise()]  # handed to leaves as another hub member
        # jsedge's own key (nats-server ignores keys it does not know): tells a jsedge peer from a
        # nats-server one, for features only jsedge nodes share (clustered JetStream)
        info["jsedge"] = __version__
        return info

    def info_line(self) -> bytes:
        return b"INFO " + gojson.dumpb(self.info_dict()) + b" \r\n"

    def connect_line(self, url: RouteURL) -> bytes:
        user = url.user or (self.config.user if url.user == "" and self.config.user else "")
        password = url.password or (self.config.password if user and not url.password else "")
        connect: dict[str, Any] = {"echo": True, "verbose": False, "pedantic": False}
        if user:
            connect["user"] = user
        if password:
            connect["pass"] = password
        connect["tls_required"] = self.tls_context is not None
        connect["headers"] = not self.server.config.limits.no_header_support
        connect["name"] = self.server.server_id
        connect["cluster"] = self.cluster_name
        if self.dynamic:
            connect["cluster_dynamic"] = True
        return b"CONNECT " + gojson.dumpb(connect) + b"\r\n"

    def advertise_host(self) -> str:
        advertise = self.config.advertise
        if advertise:
            return advertise.rsplit(":", 1)[0] if ":" in advertise and not advertise.startswith("[") else advertise
        return self.host

    def advertise_port(self) -> int:
        advertise = self.config.advertise
        if advertise and ":" in advertise:
            tail = advertise.rsplit(":", 1)[1]
            if tail.isdigit():
                return int(tail)
        return self.port

    def check_credentials(self, opts: dict[str, Any]) -> bool:
        if not self.auth_required:
            return True
        from jsedge.routing.auth import secret_matches

        user = opts.get("user") if isinstance(opts.get("user"), str) else ""
        password = opts.get("pass") if isinstance(opts.get("pass"), str) else ""
        return user == self.config.user and secret_matches(self.config.password, password)

    def accept_cluster_name(self, name: str, dynamic: bool) -> bool:
        """True when `name` is our cluster's; a dynamic name of ours yields to a configured one or
        to a greater dynamic one (nats-server's rule), dropping the routes made under the old one."""
        if name == self.cluster_name:
            return True
        if self.dynamic and (not dynamic or self.cluster_name < name):
            self.cluster_name = name
            if not dynamic:
                self.dynamic = False
            self.server.cluster_changed()
            return True
        return False

    # ---------------------------------------------------------------- start / stop

    async def start(self) -> None:
        self.running = True
        self.log.info(f"Cluster name is {self.cluster_name}")
        if self.dynamic:
            self.log.warn("Cluster name was dynamically generated, consider setting one")
        self.listener = await self.loop.create_server(
            self._accepted,
            host=self.host,
            port=self.config.port if self.config.port > 0 else 0,
            reuse_address=True,
            backlog=128,
        )
        self.port = self.listener.sockets[0].getsockname()[1]
        self.log.info(f"Listening for route connections on {join_host_port(self.host, self.port)}")
        for raw in self.config.routes:
            self.add_route_url(raw)

    def add_route_url(self, raw: str) -> None:
        url = RouteURL(raw)
        if url.key in self.configured:
            return
        self.configured[url.key] = url
        self.tasks[url.key] = self.loop.create_task(self._dial(url, implicit=False))

    def remove_route_url(self, raw: str) -> None:
        url = RouteURL(raw)
        self.configured.pop(url.key, None)
        task = self.tasks.pop(url.key, None)
        if task is not None:
            task.cancel()
        for route in list(self.routes.values()):
            if route.url is not None and route.url.key == url.key and not route.implicit:
                route.close(ClosedReason.ROUTE_REMOVED)

    def reload(self, cluster: Any) -> None:
        """SIGHUP: the routes list (dial new ones, drop removed ones), the route credentials
        (accepted routes that no longer pass them are closed) and `no_advertise`."""
        old = self.config
        self.config = cluster
        self.auth_required = bool(cluster.user)
        if cluster.auth_timeout is not None:
            self.auth_timeout = cluster.auth_timeout
        old_keys = {RouteURL(raw).key: raw for raw in old.routes}
        new_keys = {RouteURL(raw).key: raw for raw in cluster.routes}
        for key, raw in old_keys.items():
            if key not in new_keys:
                self.remove_route_url(raw)
        for key, raw in new_keys.items():
            if key not in old_keys:
                self.add_route_url(raw)
        if (old.user, old.password) != (cluster.user, cluster.password):
            for route in list(self.routes.values()) + list(self.pending):
                if not route.solicited and route.connect_seen and not self.check_credentials(route.connect_opts):
                    route.log_error("authentication error (credentials changed by a reload)")
                    route.close(ClosedReason.AUTHENTICATION_VIOLATION)
        if old.no_advertise != cluster.no_advertise:
            self.server.cluster_changed()

    async def stop(self) -> None:
        self.running = False
        if self.listener is not None:
            self.listener.close()
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()
        for route in list(self.routes.values()) + list(self.pending):
            route.close(ClosedReason.SERVER_SHUTDOWN)

    def send_lame_duck(self) -> None:
        """Tell the peers we are leaving: their clients drop our URLs (an INFO with `ldm`)."""
        info = self.info_dict()
        info["ldm"] = True
        line = b"INFO " + gojson.dumpb(info) + b" \r\n"
        for route in self.routes.values():
            route.send_now(line)

    # ---------------------------------------------------------------- connections

    def _new(self, url: RouteURL | None = None, implicit: bool = False) -> RouteConnection:
        self.next_rid += 1
        conn = RouteConnection(self.server, self.server.next_connection_id(), self, url, implicit)
        return conn

    def _accepted(self) -> RouteConnection:
        return self._new()

    def adopt(self, conn: RouteConnection) -> bool:
        if not self.running:
            conn.transport.abort()
            conn.closed = True
            return False
        self.pending.add(conn)
        return True

    async def _dial(self, url: RouteURL, implicit: bool, gossip_retries: int | None = None) -> None:
        """Connect `url` and keep it connected (configured routes), or try it `connect_retries`
        times (implicit routes)."""
        attempts = 0
        ever_connected = False
        retries = self.config.connect_retries if gossip_retries is None else gossip_retries
        try:
            while self.running:
                if url.key in self.self_urls or (not implicit and url.key not in self.configured):
                    return
                try:
                    self.log.debug(f"Trying to connect to route on {join_host_port(url.host, url.port)}")
                    _, conn = await asyncio.wait_for(
                        self.loop.create_connection(lambda: self._new(url, implicit), url.host, url.port),
                        DIAL_TIMEOUT,
                    )
                except (TimeoutError, OSError) as exc:
                    attempts += 1
                    text = f"Error trying to connect to route (attempt {attempts}): {go_dial_error(url.host, url.port, exc)}"
                    if ever_connected or attempts == 1 or attempts % CONNECT_ERROR_REPORTS == 0:
                        self.log.error(text)
                    else:
                        self.log.debug(text)
                    if implicit and attempts > retries:
                        return
                    await asyncio.sleep(CONNECT_DELAY)
                    continue
                attempts = 0
                ever_connected = True
                finished = self.done.setdefault(conn, self.loop.create_future())
                if conn.closed and not finished.done():
                    # it was refused and closed before we got here (a busy loop): its close could
                    # not resolve a future that did not exist yet, and waiting would never end
                    finished.set_result(None)
                await finished
                self.done.pop(conn, None)
                winner = conn.duplicate_of
                while winner is not None and not winner.closed:
                    # a duplicate of an existing route: reconnect only when that one goes away
                    waiter = self.done.setdefault(winner, self.loop.create_future())
                    await waiter
                    winner = winner.duplicate_of
                # nats-server reconnects a route it dialled, implicit ones too (with
                # `connect_retries` dial attempts); explicit ones after a second
                await asyncio.sleep((0.0 if implicit else CONNECT_DELAY) + random.random() * 0.1)
        except asyncio.CancelledError:
            pass

    def self_route(self, conn: RouteConnection) -> None:
        """The route leads back to this server: forget its URL (nats-server drops it silently)."""
        if conn.url is not None:
            self.self_urls.add(conn.url.key)

    # ---------------------------------------------------------------- registration

    def register(self, conn: RouteConnection) -> None:
        """The handshake is complete: keep this route (or close it as a duplicate)."""
        server = self.server
        self.pending.discard(conn)
        if conn.closed:
            return
        remote = conn.remote_id
        existing = self.routes.get(remote)
        if existing is not None and existing is not conn:
            if self._preferred(conn, existing) is existing:
                conn.log_debug(f'Detected duplicate remote route "{remote}"')
                conn.duplicate_of = existing
                if conn.solicited and not existing.solicited and conn.url is not None:
                    existing.url = conn.url  # keep reconnecting to the configured URL
                conn.close(ClosedReason.DUPLICATE_ROUTE)
                return
            existing.log_debug(f'Detected duplicate remote route "{remote}"')
            existing.duplicate_of = conn
            del self.routes[remote]
            existing.close(ClosedReason.DUPLICATE_ROUTE)
        conn.registered = True
        first_seen = remote not in self.routes
        self.routes[remote] = conn
        conn.log_debug(f'Registering remote route "{remote}"')
        conn.send(self.interest_lines())
        if first_seen:
            self._gossip(conn)
            server.cluster_changed()
            if server.config.jetstream.enabled and conn.remote_jetstream and "jsedge" not in conn.remote_info:
                conn.log_warn(
                    f'JetStream is not clustered with "{conn.remote_name or remote}": it is a nats-server '
                    "node, and jsedge clusters JetStream with jsedge nodes only (core NATS is routed as usual)"
                )
        if server.pending:
            from jsedge.routing.sublist import flush_pending

            flush_pending(server.pending)

    def _preferred(self, a: RouteConnection, b: RouteConnection) -> RouteConnection:
        """Of two connections to one peer, the one dialled by the server with the smaller id."""
        me = self.server.server_id

        def dialer(conn: RouteConnection) -> str:
            return me if conn.solicited else conn.remote_id

        da, db = dialer(a), dialer(b)
        if da == db:
            return b  # keep the one we have
        smaller = min(me, a.remote_id)
        return a if da == smaller else b

    def route_closed(self, conn: RouteConnection, reason: ClosedReason) -> None:
        self.pending.discard(conn)
        if conn.registered and self.routes.get(conn.remote_id) is conn:
            del self.routes[conn.remote_id]
            self.server.cluster_changed()
        future = self.done.pop(conn, None)
        if future is not None and not future.done():
            future.set_result(None)

    # ---------------------------------------------------------------- gossip

    def _gossip(self, conn: RouteConnection) -> None:
        """Forward a new peer's INFO to the other peers, which connect to it."""
        info = conn.remote_info
        if (conn.solicited and conn.implicit) or info.get("gossip_mode") == 1:
            return
        forward = dict(info)
        forward.pop("nonce", None)
        forward["ip"] = conn.ip_url
        line = b"INFO " + gojson.dumpb(forward) + b" \r\n"
        for remote_id, route in self.routes.items():
            if remote_id != conn.remote_id:
                route.send(line)

    def gossiped(self, conn: RouteConnection, info: dict[str, Any]) -> None:
        """An INFO about another server arrived on a route: connect to it unless we know it."""
        remote_id = info.get("server_id")
        if not isinstance(remote_id, str) or remote_id == self.server.server_id or remote_id in self.routes:
            return
        ip = info.get("ip")
        if not isinstance(ip, str) or not ip:
            host = info.get("host") if isinstance(info.get("host"), str) else ""
            port = info.get("port") if isinstance(info.get("port"), int) else 0
            ip = f"nats-route://{join_host_port(host, port)}/"
        url = RouteURL(ip)
        port = info.get("port")
        if url.key in self.configured or (isinstance(port, int) and self._configured_port(url.host, port)):
            return
        if info.get("auth_required") and self.config.user:
            url.user, url.password = self.config.user, self.config.password
        key = "implicit " + url.key
        if key in self.tasks and not self.tasks[key].done():
            return
        self.tasks[key] = self.loop.create_task(self._dial(url, implicit=True))

    def _configured_port(self, host: str, port: int) -> bool:
        return any(u.port == port and u.host.lower() == host.lower() for u in self.configured.values())

    def route_info_update(self, conn: RouteConnection, info: dict[str, Any]) -> None:
        """An async INFO from the peer itself: lame-duck mode, or new client URLs."""
        if info.get("ldm"):
            conn.connect_urls = []
            conn.ws_connect_urls = []
            self.server.cluster_changed()
            return
        leaf_urls = info.get("leafnode_urls")
        if isinstance(leaf_urls, list):
            conn.leafnode_urls = [u for u in leaf_urls if isinstance(u, str)]
        changed = False
        for field in ("ws_connect_urls", "connect_urls"):
            urls = info.get(field)
            if isinstance(urls, list):
                new = [u for u in urls if isinstance(u, str)]
                if new != getattr(conn, field):
                    setattr(conn, field, new)
                    changed = True
        if changed:
            self.server.cluster_changed()

    # ---------------------------------------------------------------- views

    def peer_leafnode_urls(self) -> list[str]:
        return self._peer_urls("leafnode_urls")

    def peer_client_urls(self) -> list[str]:
        return self._peer_urls("connect_urls")

    def peer_ws_urls(self) -> list[str]:
        return self._peer_urls("ws_connect_urls")

    def _peer_urls(self, field: str) -> list[str]:
        """The peers' URLs of one kind (their route INFO's `field`), each once, in route order."""
        urls: list[str] = []
        for route in self.routes.values():
            for url in getattr(route, field):
                if url not in urls:
                    urls.append(url)
        return urls

    def statistics(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for route in self.routes.values():
            stats = route.statistics()
            stats["now"] = now
            out.append(stats)
        return out
