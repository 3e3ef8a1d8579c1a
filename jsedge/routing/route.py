"""A route (layer 2): one connection to another server of the cluster, nats-server's route protocol.

Handshake (spec/clustering.md §1.2): the accepting side sends its route INFO at once; the soliciting
side sends CONNECT (no `lang`: a CONNECT with `lang` on the route port is a client on the wrong port)
and its own INFO. A route is registered with the route table (jsedge.routing.routes) when the peer's
INFO arrives and, on the accepting side, its CONNECT was accepted (cluster name, route credentials).
Then both sides send their local interest as `RS+` lines and keep it current with `RS+`/`RS-`.

Messages: `RMSG`/`HMSG` for an account this server has are delivered by the compiled parser straight
into that account's sublist (`ClientCore.routed_sublists`), only to local subscribers (one hop), and
to the queue groups the sender named. Everything else here is control traffic.

jsedge speaks the un-pooled form: one connection per peer, the account in every `RS+`/`RMSG`.
nats-server accepts that from a peer whose INFO has no `route_pool_size` (it then keeps one
connection too), so jsedge and nats-server nodes can share a cluster for core NATS.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from jsedge import errors, gojson
from jsedge.errors import ClosedReason
from jsedge.protocol.parser import Parser
from jsedge.routing.link import ServerLink
from jsedge.routing.sublist import KIND_ROUTER, Subscription

if TYPE_CHECKING:
    from jsedge.routing.account import Account

#: nats-server's route control lines may be this many times `max_control_line`.
ROUTE_MCL_FACTOR = 16


class RouteConnection(ServerLink):
    """One route, accepted (`url` None) or solicited (`url` = the route URL we dialled)."""

    __slots__ = (
        "table",
        "solicited",
        "url",
        "implicit",
        "remote_id",
        "remote_name",
        "remote_info",
        "connect_seen",
        "info_seen",
        "registered",
        "remote_subs",
        "connect_urls",
        "ws_connect_urls",
        "leafnode_urls",
        "auth_handle",
        "trace",
        "duplicate_of",
        "remote_cluster",
        "ip_url",
        "remote_jetstream",
        "connect_opts",
    )

    KIND_NAME = "Route"

    def __init__(self, server: Any, cid: int, table: Any, url: Any = None, implicit: bool = False) -> None:
        super().__init__(server, cid)
        self.kind = KIND_ROUTER
        self.table = table
        self.solicited = url is not None
        #: The parsed route URL we dialled (see routes.RouteURL), None for an accepted route.
        self.url = url
        self.implicit = implicit
        self.remote_id = ""
        self.remote_name = ""
        self.remote_info: dict[str, Any] = {}
        self.remote_cluster = ""
        self.remote_jetstream = False
        #: The peer's route URL as we reached it or as it advertised it (for gossip).
        self.ip_url = ""
        self.connect_seen = False
        #: The peer's CONNECT (its credentials are checked again when a reload changes ours).
        self.connect_opts: dict[str, Any] = {}
        self.info_seen = False
        self.registered = False
        #: Remote interest: (account, subject, queue) -> the subscription standing for it.
        self.remote_subs: dict[tuple[bytes, bytes, bytes | None], Subscription] = {}
        #: The peer's client URLs (its INFO's connect_urls).
        self.connect_urls: list[str] = []
        #: The peer's leaf node URLs (its INFO's leafnode_urls) and websocket URLs (ws_connect_urls).
        self.leafnode_urls: list[str] = []
        self.ws_connect_urls: list[str] = []
        self.auth_handle: Any = None
        self.trace = server.logger.trace_enabled
        #: Closed as a duplicate of this (registered) route, if that is why it closed.
        self.duplicate_of: RouteConnection | None = None
        cluster = server.config.cluster
        limits = server.config.limits
        self.max_payload = -1  # nats-server: no payload limit between servers
        if cluster.ping_interval:
            self.ping_interval = cluster.ping_interval
        # Routes PING at least every 30 s (nats-server's cap for non-client connections).
        self.ping_interval = min(self.ping_interval, 30.0)
        if cluster.ping_max:
            self.ping_max = cluster.ping_max
        if cluster.write_deadline:
            self.write_deadline = cluster.write_deadline
        # nats-server never closes a route for pending bytes (only clients have max_pending); a
        # stuck route is closed by the write deadline, and a slow one that still takes bytes is
        # kept ("retry", the route default of `cluster.write_timeout`)
        self.write_retry = cluster.write_timeout != "close"
        self.max_pending = 1 << 62
        self.headers = not limits.no_header_support
        self.routed_sublists = table.routed_sublists
        self.fast_pub = not self.trace
        self.parser = Parser(self, self, limits.max_control_line * ROUTE_MCL_FACTOR, True)

    # ---------------------------------------------------------------- transport hooks

    def log_prefix(self) -> str:
        return f"{self.remote_host}:{self.remote_port} - rid:{self.cid} - "

    def register(self) -> bool:
        return bool(self.table.adopt(self))

    def greet(self) -> None:
        table = self.table
        if table.tls_context is not None:
            # Routes run TLS from the first byte (nats-server's route handshake).
            timeout = self.server.config.cluster.tls.timeout or 2.0
            if self.solicited:
                self.start_tls(table.tls_client_context, server_side=False, timeout=timeout, hostname=self.url.host)
            else:
                self.start_tls(table.tls_context, timeout=timeout)
        if self.solicited:
            self.send_now(table.connect_line(self.url))
            self.send_now(table.info_line())
        else:
            self.send_now(table.info_line())
            if table.auth_required:
                self.auth_handle = self.loop.call_later(table.auth_timeout, self._auth_timeout)
        self.log_info("Route connection created")
        # nats-server's short first PING for servers: after 1 s (or the interval, if shorter) plus
        # up to 20 %; then every ping_interval
        self.restart_pings(min(self.ping_interval, 1.0) * (1 + random.random() * 0.2))

    def closed_hook(self, reason: ClosedReason) -> None:
        if self.auth_handle is not None:
            self.auth_handle.cancel()
            self.auth_handle = None
        for (account_name, _subject, _queue), sub in list(self.remote_subs.items()):
            account = self.table.accounts.get(account_name)
            if account is not None:
                account.unsubscribe(sub)
        self.remote_subs.clear()
        remote = f" - Remote: {self.remote_name}" if self.remote_name else ""
        self.log_info(f"Router connection closed: {reason.value}{remote}")
        self.table.route_closed(self, reason)

    # ---------------------------------------------------------------- parser handler

    def proto_client_err(self, arg: bytes) -> None:
        # nats-server logs a route's -ERR; the route stays up unless the error closes it.
        self.log_error(f"Router Error {arg.decode(errors='replace')}")

    def proto_connect(self, arg: bytes) -> None:
        opts = self.connect_options(arg, errors.ROUTE_PORT, "Route")
        if opts is None:
            return
        table = self.table
        if not table.check_credentials(opts):
            self.log_error("authentication error")
            self.send_err(errors.AUTH_VIOLATION)
            self.close(ClosedReason.AUTHENTICATION_VIOLATION)
            return
        cluster = opts.get("cluster") if isinstance(opts.get("cluster"), str) else ""
        if not table.accept_cluster_name(cluster, bool(opts.get("cluster_dynamic"))):
            text = f"Rejecting connection, cluster name {go_str(cluster)} does not match {go_str(table.cluster_name)}"
            self.log_error(text)
            self.send(b"-ERR '" + text.encode() + b"'\r\n")
            self.close(ClosedReason.CLUSTER_NAME_CONFLICT)
            return
        self.connect_seen = True
        self.connect_opts = opts
        self.headers = bool(opts.get("headers")) and not self.server.config.limits.no_header_support
        name = opts.get("name")
        if isinstance(name, str) and name:
            self.remote_id = name
        if self.info_seen and not self.registered:
            table.register(self)

    def proto_info(self, arg: bytes) -> None:
        try:
            info = gojson.loads(arg)
        except ValueError:
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        if not isinstance(info, dict):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        if self.trace:
            self.log_trace(f"<<- [INFO {arg.decode(errors='replace')}]")
        table = self.table
        server_id = info.get("server_id") if isinstance(info.get("server_id"), str) else ""
        if self.info_seen:
            # An INFO on an established route: about another server (gossip), or an update.
            if server_id and server_id != self.remote_id:
                table.gossiped(self, info)
            else:
                table.route_info_update(self, info)
            return
        account = info.get("route_account")
        if isinstance(account, str) and account:
            # a pooled peer's dedicated connection for one account: jsedge keeps one connection per
            # peer and answers as nats-server answers from a server without pooling
            text = f'Not possible to have a dedicated route for account "{account}" between those servers'
            self.log_error(text)
            self.send(b"-ERR '" + text.encode() + b"'\r\n")
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        if server_id == self.server.server_id:
            # a route to ourselves (every node lists all nodes, itself included)
            self.remote_id = server_id
            table.self_route(self)
            self.close(ClosedReason.DUPLICATE_ROUTE)
            return
        cluster = info.get("cluster") if isinstance(info.get("cluster"), str) else ""
        if cluster and not table.accept_cluster_name(cluster, bool(info.get("cluster_dynamic"))):
            self.close(ClosedReason.CLUSTER_NAME_CONFLICT)
            return
        name = info.get("server_name") if isinstance(info.get("server_name"), str) else ""
        if not self.solicited and name and name == self.server.server_name:
            self.log_error(f'Remote server has a duplicate name: "{name}"')
            self.close(ClosedReason.DUPLICATE_SERVER_NAME)
            return
        self.info_seen = True
        self.remote_info = info
        self.remote_id = server_id
        self.remote_name = name
        self.remote_cluster = cluster
        self.remote_jetstream = bool(info.get("jetstream"))
        self.headers = bool(info.get("headers")) and not self.server.config.limits.no_header_support
        urls = info.get("connect_urls")
        self.connect_urls = [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
        leaf_urls = info.get("leafnode_urls")
        self.leafnode_urls = [u for u in leaf_urls if isinstance(u, str)] if isinstance(leaf_urls, list) else []
        ws_urls = info.get("ws_connect_urls")
        self.ws_connect_urls = [u for u in ws_urls if isinstance(u, str)] if isinstance(ws_urls, list) else []
        ip = info.get("ip")
        if isinstance(ip, str) and ip:
            self.ip_url = ip
        else:
            port = info.get("port") if isinstance(info.get("port"), int) else 0
            host = self.remote_host if not self.solicited else (self.url.host if self.url is not None else "")
            self.ip_url = f"nats-route://{join_host_port(host or self.remote_host, port)}/"
        if self.solicited or self.connect_seen:
            table.register(self)

    # ---------------------------------------------------------------- interest

    def _account(self, name: bytes) -> Account | None:
        account = self.table.accounts.get(name)
        if account is None:
            self.log_debug(f'Unknown account "{name.decode(errors="replace")}" for remote subject')
        return account

    def proto_rsub(self, args: list[bytes]) -> None:
        """`RS+ <account> <subject>[ <queue> <weight>]`."""
        if self.trace:
            self.log_trace(f"<<- [RS+ {b' '.join(args).decode(errors='replace')}]")
        if len(args) not in (2, 3, 4):
            self.log_error(f"processRemoteSub Parse Error: '{b' '.join(args).decode(errors='replace')}'")
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        self._remote_sub(args[0], args[1], args[2] if len(args) >= 3 else None, args[3] if len(args) == 4 else b"1")

    def proto_lsub(self, args: list[bytes]) -> None:
        """`LS+ <origin cluster> <account> <subject>[ <queue> <weight>]`: interest of a leaf node
        behind the peer; here it counts like `RS+` (jsedge has no leaf origins yet)."""
        if len(args) not in (3, 4, 5):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        self._remote_sub(args[1], args[2], args[3] if len(args) >= 4 else None, args[4] if len(args) == 5 else b"1")

    def _remote_sub(self, account_name: bytes, subject: bytes, queue: bytes | None, weight_text: bytes) -> None:
        account = self._account(account_name)
        if account is None:
            return
        weight = int(weight_text) if weight_text.isdigit() else 1
        key = (account_name, subject, queue)
        existing = self.remote_subs.get(key)
        if existing is not None:
            if queue is None or existing.weight == weight:
                return
            account.unsubscribe(existing)  # a new queue weight: re-enter with it
        sub = Subscription(self, subject, b"", queue)
        sub.weight = max(weight, 1)
        try:
            account.subscribe(sub)
        except ValueError:
            self.log_debug(f'Invalid remote subject "{subject.decode(errors="replace")}"')
            return
        self.remote_subs[key] = sub

    def proto_runsub(self, args: list[bytes]) -> None:
        """`RS- <account> <subject>[ <queue>]`."""
        if self.trace:
            self.log_trace(f"<<- [RS- {b' '.join(args).decode(errors='replace')}]")
        if len(args) not in (2, 3):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        self._remote_unsub(args[0], args[1], args[2] if len(args) == 3 else None)

    def proto_lunsub(self, args: list[bytes]) -> None:
        if len(args) not in (3, 4):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        self._remote_unsub(args[1], args[2], args[3] if len(args) == 4 else None)

    def _remote_unsub(self, account_name: bytes, subject: bytes, queue: bytes | None) -> None:
        sub = self.remote_subs.pop((account_name, subject, queue), None)
        if sub is not None:
            account = self.table.accounts.get(account_name)
            if account is not None:
                account.unsubscribe(sub)

    # ---------------------------------------------------------------- messages

    def proto_routed(
        self,
        origin: bytes | None,
        account_name: bytes,
        subject: bytes,
        reply: bytes,
        hdr_len: int,
        msg: bytes,
        queues: list[bytes] | None,
    ) -> None:
        """A routed message the compiled path did not take: tracing on, a tracked reply (`….T`,
        service latency), or an unknown account (nats-server drops those, with a debug line)."""
        account = self.table.accounts.get(account_name)
        if self.trace:
            self.log_trace(
                f"<<- [{'HMSG' if hdr_len >= 0 else 'RMSG'} {account_name.decode(errors='replace')} "
                f"{subject.decode(errors='replace')} {len(msg)}]"
            )
        if account is None:
            self.log_debug(
                f'Unknown account "{account_name.decode(errors="replace")}" for routed message on subject: '
                f'"{subject.decode(errors="replace")}"'
            )
            return
        if len(reply) > 4 and reply.endswith(b".T"):
            # a sampled request to a service export (service latency across routes)
            imports = self.server.imports
            if imports is not None:
                imports.latency.track(account, subject, reply)
        self.deliver_routed(account.sublist, subject, reply, hdr_len, msg, queues)

    # ---------------------------------------------------------------- statistics

    def statistics(self) -> dict[str, Any]:
        return {
            "rid": self.cid,
            "remote_id": self.remote_id,
            "remote_name": self.remote_name,
            "did_solicit": self.solicited,
            "is_configured": self.solicited and not self.implicit,
            "ip": self.remote_host,
            "port": self.remote_port,
            "start": self.start,
            "last_activity": self.last_activity,
            "rtt": self.rtt,
            "pending_size": len(self.outbuf) + (self.transport.get_write_buffer_size() if self.transport else 0),
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
            "subscriptions": len(self.remote_subs),
        }


def go_str(text: str) -> str:
    """Go's %q of a string (the -ERR texts quote cluster names so)."""
    return json.dumps(text, ensure_ascii=False)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
