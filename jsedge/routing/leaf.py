"""A leaf node connection (layer 2): nats-server's leaf protocol, both roles.

A leaf connection is bound to one account on each side. The side that dialled (the *spoke*, this
server as a leaf of a hub: `leafnodes { remotes [...] }`) waits for the hub's INFO, answers with a
CONNECT that has no `lang` (credentials from the URL), and finishes when the hub's second INFO
(`connect_info`) arrives, or at once when the first INFO did not promise one (`info_on_connect`).
The accepting side (the *hub*: `leafnodes { port }`) sends its INFO at once (with `client_id` and
`leafnode_urls`, which a nats-server leaf requires, and no `compression`, so none is negotiated),
checks the CONNECT's credentials and binds the account, then answers with an INFO carrying
`connect_info` and `remote_account`. Both sides then send their interest as `LS+`
(spec/clustering.md §3).

Interest (`smap`, nats-server's rules): the counts per `subject` or `subject queue` this side has
announced. A hub announces every subscription of the account but the connection's own (clients,
internal ones that are routed, other leaf connections', other servers' through routes); a spoke
announces only its clients' and internal ones and those of leaf connections it accepts (never a
hub's to another hub). A plain subject is announced when its count leaves or reaches zero; a queue
group each time its count changes (`LS+ subject queue weight`). Subscriptions that serve this server
only (standalone JetStream's API) are never announced.

Loop detection: each account has a `$LDS.<id>` subject announced on every leaf connection; if a
connection announces our own back, the leaf topology is a loop: `-ERR 'Loop detected ...'`, close,
and a spoke waits 30 s before dialling again.

Messages: `LMSG`/`HMSG` without the account (the compiled parser's leaf mode delivers them into the
bound account); the sublist twins frame our messages for the link (`LMSG`, one per link with the
queue groups it must serve, never back to the link a message came from).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from jsedge import errors, gojson
from jsedge.errors import ClosedReason
from jsedge.protocol.parser import Parser
from jsedge.routing.link import ServerLink
from jsedge.routing.sublist import KIND_CLIENT, KIND_LEAF, Subscription

if TYPE_CHECKING:
    from jsedge.routing.account import Account

#: nats-server's prefix of the loop detection subject.
LDS_PREFIX = b"$LDS."
#: After a loop error, a spoke waits this long before dialling again (nats-server's).
LOOP_DELAY = 30.0
#: The parser's name for the connection's account (see `LeafConnection.__init__`).
_LABEL = b"$LEAF"


class LeafConnection(ServerLink):
    """One leaf node connection: accepted (`remote` None, we are the hub) or dialled (`remote` =
    the `leafnodes.remotes` entry, we are the spoke)."""

    __slots__ = (
        "table",
        "remote",
        "url",
        "account",
        "remote_name",
        "remote_id",
        "remote_cluster",
        "remote_account",
        "info_seen",
        "connect_seen",
        "registered",
        "smap",
        "remote_subs",
        "auth_handle",
        "trace",
        "info_on_connect",
        "loop_detected",
        "deny_in",
        "nonce",
    )

    KIND_NAME = "Leafnode"
    LINK_NAME = "Leafnode"

    def __init__(self, server: Any, cid: int, table: Any, remote: Any = None, url: Any = None) -> None:
        super().__init__(server, cid)
        self.kind = KIND_LEAF
        self.table = table
        self.remote = remote
        self.url = url
        # the side that dialled is the spoke, unless its remote says `hub: true` (then the side
        # that accepted is, told by the CONNECT's `is_hub`)
        self.spoke = remote is not None and not remote.hub
        self.account: Account | None = None
        self.remote_name = ""
        self.remote_id = ""
        self.remote_cluster = ""
        self.remote_account = ""
        self.info_seen = False
        self.connect_seen = False
        self.registered = False
        self.info_on_connect = False
        self.loop_detected = False
        #: the nonce of the INFO this accepting side sent (an nkey user's CONNECT signs it)
        self.nonce = ""
        #: None, or callable(subject, queue) -> True for subjects not taken from this link
        self.deny_in: Any = None
        #: What we announced: `subject` or `subject queue` -> count.
        self.smap: dict[bytes, int] = {}
        #: The other side's interest: (subject, queue) -> the subscription standing for it.
        self.remote_subs: dict[tuple[bytes, bytes | None], Subscription] = {}
        self.auth_handle: Any = None
        self.trace = server.logger.trace_enabled
        self.echo = False
        self.max_payload = -1  # between servers the payload limit is the publishing side's
        self.ping_interval = min(self.ping_interval, 30.0)
        self.write_retry = True
        self.max_pending = 1 << 62
        limits = server.config.limits
        self.headers = not limits.no_header_support
        # One parser for the connection's life (a hub learns the account only from the CONNECT,
        # and bytes after it may already sit in the parser): leaf mode under a fixed label that
        # `bind` maps to the bound account's sublist.
        self.parser = Parser(self, self, limits.max_control_line * 16, False, _LABEL)
        if remote is not None:
            self.bind(remote.account)

    def bind(self, account_name: str) -> bool:
        account = self.server.accounts.get(account_name)
        if account is None:
            return False
        self.account = account
        self.sublist = account.sublist
        self.routed_sublists = {_LABEL: account.sublist}
        self.fast_pub = not self.trace
        return True

    # ---------------------------------------------------------------- transport hooks

    def log_prefix(self) -> str:
        return f"{self.remote_host}:{self.remote_port} - lid:{self.cid} - "

    def register(self) -> bool:
        return bool(self.table.adopt(self))

    def greet(self) -> None:
        if self.remote is not None:
            # nats-server gives a hub a second to send its INFO
            self.auth_handle = self.loop.call_later(self.table.first_info_timeout, self._no_info)
            return
        self.nonce = self.table.new_nonce()  # an nkey user among the server's users signs it
        self.send_now(self.table.info_line(self.cid, self.nonce))
        tls = self.table.tls_context
        if tls is not None:
            # the INFO went in the clear; everything after it is TLS (nats-server's leaf port)
            config = self.table.config.tls
            self.start_tls(tls, timeout=config.timeout if config is not None and config.timeout else 2.0)
        self.auth_handle = self.loop.call_later(self.table.auth_timeout, self._auth_timeout)

    def closed_hook(self, reason: ClosedReason) -> None:
        if self.auth_handle is not None:
            self.auth_handle.cancel()
            self.auth_handle = None
        account = self.account
        if account is not None:
            for sub in list(self.remote_subs.values()):
                account.unsubscribe(sub)
        self.remote_subs.clear()
        if self.registered:
            remote = f" - Remote: {self.remote_name}" if self.remote_name else ""
            self.log_info(f"Leafnode connection closed: {reason.value}{remote}")
        self.table.leaf_closed(self, reason)

    def _no_info(self) -> None:
        self.auth_handle = None
        if not self.closed and not self.info_seen:
            self.log_error("Did not receive the INFO protocol of the remote in time")
            self.close(ClosedReason.STALE_CONNECTION)

    # ---------------------------------------------------------------- parser handler

    def proto_client_err(self, arg: bytes) -> None:
        text = arg.decode(errors="replace")
        self.log_error(f"Leafnode Error {text}")
        if "Loop detected" in text:
            self.loop_detected = True
            self.close(ClosedReason.PROTOCOL_VIOLATION)

    def proto_connect(self, arg: bytes) -> None:
        if self.remote is not None or self.connect_seen:
            return  # the side that accepted never sends CONNECT; a second one changes nothing
        opts = self.connect_options(arg, errors.LEAF_PORT, "leafnode")
        if opts is None:
            return
        if self.table.same_domain(opts.get("domain")):
            self.refuse_same_domain(str(opts.get("domain")))
            return
        found = self.table.authenticate(opts, self.nonce, getattr(self, "remote_host", "") or "")
        account_name, perms = found if found is not None else (None, None)
        if account_name is None or not self.bind(account_name):
            self.log_error("authentication error")
            self.send_err(errors.AUTH_VIOLATION)
            self.close(ClosedReason.AUTHENTICATION_VIOLATION)
            return
        self.connect_seen = True
        self.headers = bool(opts.get("headers")) and not self.server.config.limits.no_header_support
        self.remote_name = _text(opts.get("name"))
        self.remote_id = _text(opts.get("server_id"))
        self.remote_cluster = _text(opts.get("cluster"))
        self.remote_account = _text(opts.get("remote_account"))
        if opts.get("is_hub"):
            self.spoke = True  # the other side declared itself the hub
        if perms is not None:
            # a user's permissions are the leaf's view of the link: `subscribe` is what it may
            # receive (what we deliver to it), `publish` what it may send us (nats-server swaps)
            self.add_filters(
                lambda subject, queue: not perms.can_subscribe(subject, None),
                lambda subject, queue: not perms.can_publish(subject),
            )
        deny_pub = opts.get("deny_pub")
        if isinstance(deny_pub, list):
            # the leaf's deny_imports: never sent to it (what the leaf sends is its own business)
            self.set_denies(tuple(d for d in deny_pub if isinstance(d, str) and d), ())
        # the INFO a nats-server leaf finishes its handshake on (and learns our account from)
        info = self.table.info_dict(self.cid)
        info["remote_account"] = account_name
        info["connect_info"] = True
        self.send(b"INFO " + gojson.dumpb(info) + b" \r\n")
        self.table.register(self)

    def proto_info(self, arg: bytes) -> None:
        try:
            info = gojson.loads(arg)
        except ValueError:
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        if not isinstance(info, dict):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        if self.remote is None:
            return  # an accepted leaf's INFO (compression negotiation) changes nothing here
        if not self.info_seen:
            if self.auth_handle is not None:
                self.auth_handle.cancel()
                self.auth_handle = None
            if not info.get("client_id") or not isinstance(info.get("leafnode_urls"), list):
                # nats-server's check: a client, route or gateway port answered
                self.log_error("Attempted to connect to leafnode port, not a leaf node port")  # pragma: no cover
                self.close(ClosedReason.WRONG_PORT)
                return
            self.info_seen = True
            if self.table.same_domain(info.get("domain")):
                self.refuse_same_domain(str(info.get("domain")))
                return
            self.remote_name = _text(info.get("server_name")) or _text(info.get("server_id"))
            self.remote_id = _text(info.get("server_id"))
            self.remote_cluster = _text(info.get("cluster"))
            self.headers = bool(info.get("headers")) and not self.server.config.limits.no_header_support
            self.info_on_connect = bool(info.get("info_on_connect"))
            self.table.learn_urls(self, info)
            remote = self.remote
            if remote is not None:
                # nats-server's spoke: its subscribe deny (deny_imports) also filters what it
                # delivers to the hub, besides its publish deny (deny_exports)
                self.set_denies(remote.deny_exports + remote.deny_imports, remote.deny_imports)
            scheme = self.url.scheme if self.url is not None else ""
            if remote is not None and (remote.tls is not None or scheme == "tls" or info.get("tls_required")):
                # the CONNECT (and all after it) goes over TLS, buffered until the handshake is done
                hostname = self.url.hostname if self.url is not None else None
                self.start_tls(remote.tls_context(), server_side=False, timeout=remote.tls_timeout(), hostname=hostname)
            self.send_now(self.table.connect_line(self, _text(info.get("nonce"))))
            if not self.info_on_connect:
                self.table.register(self)
            return
        self.table.learn_urls(self, info)
        if info.get("remote_account"):
            self.remote_account = _text(info.get("remote_account"))
        if info.get("connect_info") and not self.registered:
            self.table.register(self)

    # ---------------------------------------------------------------- interest

    def send_initial_interest(self) -> None:
        """Announce the account's interest (see the module docstring) and our loop detection
        subject, once the handshake is complete."""
        account = self.account
        assert account is not None
        self.smap = {}
        unrouted = account.unrouted
        for sub in account.sublist.subscriptions():
            if sub.closed or (unrouted and sub in unrouted) or not self._wants(sub):
                continue
            key = sub.subject if sub.queue is None else sub.subject + b" " + sub.queue
            self.smap[key] = self.smap.get(key, 0) + (sub.weight if sub.queue is not None else 1)
        self.smap[self.table.lds(account)] = 1
        lines = []
        for key, count in self.smap.items():
            if b" " in key:
                lines.append(b"LS+ %b %d\r\n" % (key, count))
            else:
                lines.append(b"LS+ " + key + b"\r\n")
        self.send(b"".join(lines))

    def refuse_same_domain(self, domain: str) -> None:
        self.log_error(
            f"Leafnode connection refused: both sides use JetStream domain {domain!r}; jsedge does "
            "not extend a JetStream domain across a leaf link, give each side its own domain"
        )
        self.loop_detected = True  # the dialling side waits as after a loop before trying again
        self.close(ClosedReason.PROTOCOL_VIOLATION)

    def set_denies(self, outbound: tuple[str, ...], inbound: tuple[str, ...]) -> None:
        """Subjects never delivered to this link and subjects not taken from it, as lists."""
        from jsedge.routing.auth import DenyFilter, SubjectList

        self.add_filters(
            DenyFilter(SubjectList(outbound)) if outbound else None,
            DenyFilter(SubjectList(inbound)) if inbound else None,
        )

    def add_filters(self, outbound: Any, inbound: Any) -> None:
        """`callable(subject, queue) -> denied` for what is never delivered to this link (checked
        by the sublist twins, `_link_ok`) and for what is not taken from it (no interest announced
        for it, its messages dropped: such a link's messages take the Python path,
        `deliver_routed`). Filters added later apply together with the earlier ones."""
        self.deny_filter = _either(self.deny_filter, outbound)
        self.deny_in = _either(self.deny_in, inbound)
        if self.deny_in is not None:
            self.fast_pub = False

    def deliver_routed(
        self, sublist: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes, queues: list[bytes] | None
    ) -> None:
        if self.deny_in is not None and self.deny_in(subject, None):
            if self.trace:
                self.log_trace(f'Not permitted to receive "{subject.decode(errors="replace")}" from the link')
            return
        super().deliver_routed(sublist, subject, reply, hdr_len, msg, queues)

    def _wants(self, sub: Subscription) -> bool:
        """Does `sub` belong in this connection's announced interest?"""
        client = sub.client
        if client is self:
            return False
        if not self.table.announceable(sub.subject, self.account):
            return False
        if self.deny_in is not None and self.deny_in(sub.subject, None):
            return False  # a subject we do not take from the link: no interest in it there
        if self.spoke:
            # a spoke tells its hub about its own clients and the leaves it accepts only
            return client is None or client.kind == KIND_CLIENT or (client.kind == KIND_LEAF and not client.spoke)
        return True

    def update_smap(self, sub: Subscription, delta: int) -> None:
        """nats-server's updateSmap: one subscription came or went."""
        if not self.registered or self.closed or not self._wants(sub):
            return
        queue = sub.queue
        key = sub.subject if queue is None else sub.subject + b" " + queue
        n = self.smap.get(key, 0)
        if delta < 0 and key not in self.smap:
            return
        step = delta * (sub.weight if queue is not None else 1)
        update = queue is not None or (n <= 0 < n + step) or (n > 0 >= n + step)
        n += step
        if n > 0:
            self.smap[key] = n
        else:
            self.smap.pop(key, None)
        if not update:
            return
        if n > 0:
            self.send(b"LS+ %b %d\r\n" % (key, n) if queue is not None else b"LS+ " + key + b"\r\n")
        else:
            self.send(b"LS- " + key + b"\r\n")

    def proto_lsub(self, args: list[bytes]) -> None:
        """`LS+ <subject>[ <queue> <weight>]`."""
        if self.trace:
            self.log_trace(f"<<- [LS+ {b' '.join(args).decode(errors='replace')}]")
        if len(args) not in (1, 3) or self.account is None:
            self.log_error(f"processLeafSub Parse Error: '{b' '.join(args).decode(errors='replace')}'")
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        subject = args[0]
        if subject == self.table.lds(self.account):
            self.loop_found()
            return
        if not self.table.announceable(subject, self.account):
            # JetStream's domain-less API and system subjects stay on their side of the link
            # (nats-server: "Not permitted to subscribe to $JS.API.> on behalf of ...")
            self.log_debug(f'Not permitted to subscribe to "{subject.decode(errors="replace")}" across the link')
            return
        queue = args[1] if len(args) == 3 else None
        weight = int(args[2]) if len(args) == 3 and args[2].isdigit() else 1
        key = (subject, queue)
        existing = self.remote_subs.get(key)
        if existing is not None:
            if queue is None or existing.weight == weight:
                return
            self.account.unsubscribe(existing)  # a new queue weight: enter again with it
        sub = Subscription(self, subject, b"", queue)
        sub.weight = max(weight, 1)
        try:
            self.account.subscribe(sub)
        except ValueError:
            self.log_debug(f'Invalid leafnode subject "{subject.decode(errors="replace")}"')
            return
        self.remote_subs[key] = sub

    def proto_lunsub(self, args: list[bytes]) -> None:
        """`LS- <subject>[ <queue>]`."""
        if self.trace:
            self.log_trace(f"<<- [LS- {b' '.join(args).decode(errors='replace')}]")
        if len(args) not in (1, 2):
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        sub = self.remote_subs.pop((args[0], args[1] if len(args) == 2 else None), None)
        if sub is not None and self.account is not None:
            self.account.unsubscribe(sub)

    def proto_rsub(self, args: list[bytes]) -> None:
        self.close(ClosedReason.PROTOCOL_VIOLATION)

    proto_runsub = proto_rsub

    def loop_found(self) -> None:
        account = self.account.name if self.account is not None else ""
        text = f'Loop detected for leafnode account="{account}". Delaying attempt to reconnect for {int(LOOP_DELAY)}s'
        self.log_error(text)
        self.send_now(b"-ERR '" + text.encode() + b"'\r\n")
        self.loop_detected = True
        self.close(ClosedReason.PROTOCOL_VIOLATION)

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
        """A leaf message the compiled path did not take (tracing on)."""
        if self.trace:
            self.log_trace(f"<<- [{'HMSG' if hdr_len >= 0 else 'LMSG'} {subject.decode(errors='replace')} {len(msg)}]")
        if self.account is not None:
            self.deliver_routed(self.account.sublist, subject, reply, hdr_len, msg, queues)

    # ---------------------------------------------------------------- statistics

    def statistics(self) -> dict[str, Any]:
        """One `/leafz` entry."""
        return {
            "id": self.cid,
            "name": self.remote_name,
            "is_spoke": self.spoke,
            "account": self.account.name if self.account is not None else "",
            "ip": self.remote_host,
            "port": self.remote_port,
            "rtt": self.rtt,
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
            "subscriptions": len(self.remote_subs),
            "start": self.start,
            "last_activity": self.last_activity,
        }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def jitter(delay: float) -> float:
    return delay + random.random() * 0.1


def _either(first: Any, second: Any) -> Any:
    """A deny check that denies what either one denies (None: nothing to check)."""
    if first is None:
        return second
    if second is None:
        return first
    return lambda subject, queue: first(subject, queue) or second(subject, queue)
