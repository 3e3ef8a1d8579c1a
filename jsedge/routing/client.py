"""A client connection (layer 2): the asyncio protocol, the parser's handler, the fast path's hooks.

The class subclasses the selected `ClientCore` twin so the compiled parser and `deliver()` reach its
fields directly. Python runs here only for control ops, checked publishes (verbose, pedantic, trace,
permissions, reserved prefixes, not yet authenticated), and rare events (slow consumer, auto-unsubscribe,
no-responders, reply tracking). Every close carries a `ClosedReason`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import TYPE_CHECKING, Any

from jsedge import errors, gojson
from jsedge.errors import ClosedReason, go_quote
from jsedge.protocol.parser import Parser
from jsedge.routing.auth import DenyFilter, ResponseGrant, response_grant
from jsedge.routing.connection import PONG as _PONG
from jsedge.routing.connection import RTT_REFRESH, Connection
from jsedge.routing.sublist import Subscription, deliver, flush_pending
from jsedge.routing.tracing import trace_publish
from jsedge.subjects import valid_pedantic_publish_subject

if TYPE_CHECKING:
    from jsedge.routing.account import Account
    from jsedge.routing.auth import Permissions, User

_OK = b"+OK\r\n"

# CONNECT defaults when keys are absent (spec/protocol.md §5): verbose and pedantic are ON.
_CONNECT_DEFAULTS = {"verbose": True, "pedantic": True, "echo": True}

# CONNECT fields of nats-server's ClientOpts with their Go types. Go's json.Unmarshal matches keys
# case-insensitively (an exact match first), leaves a field alone for null, ignores unknown keys, and
# fails on a value of the wrong type; nats-server then closes the connection without a word.
_CONNECT_FIELDS: dict[str, str] = {
    **dict.fromkeys(("echo", "verbose", "pedantic", "tls_required", "new_account", "headers", "no_responders"), "bool"),
    **dict.fromkeys(
        (
            "nkey",
            "jwt",
            "sig",
            "auth_token",
            "user",
            "pass",
            "name",
            "lang",
            "version",
            "account",
            "remote_account",
            "proxy_sig",
        ),
        "str",
    ),
    "protocol": "int",
    "import": "perm",
    "export": "perm",
}
_INT64 = 1 << 63
# Go folds keys by Unicode simple folding: besides ASCII case, KELVIN SIGN folds to k and LONG S to s.
_FOLD = str.maketrans({"\u212a": "k", "\u017f": "s"})


def _fold(key: str) -> str:
    return key.translate(_FOLD).lower() if not key.isascii() else key.lower()


_FOLDED_FIELDS = {name: name for name in _CONNECT_FIELDS}


def _go_type_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        # an integer literal within Go's int: `1e3` and `1.0` are floats to Go's decoder too
        return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64
    # *SubjectPermission {allow, deny []string}
    if not isinstance(value, dict):
        return False
    for key, item in value.items():
        if _fold(key) in ("allow", "deny") and item is not None:
            if not isinstance(item, list) or not all(entry is None or isinstance(entry, str) for entry in item):
                return False
    return True


def decode_connect(arg: bytes) -> dict[str, Any] | None:
    """A CONNECT argument as Go's json.Unmarshal into ClientOpts sees it: the known fields under
    their canonical names (null leaves the default), or None when Go would fail."""
    try:
        given = gojson.loads(arg)
    except ValueError:
        return None
    if given is None:
        return {}  # `null` decodes into a struct as a no-op
    if not isinstance(given, dict):
        return None
    opts: dict[str, Any] = {}
    for key, value in given.items():
        name = key if key in _CONNECT_FIELDS else _FOLDED_FIELDS.get(_fold(key))
        if name is None or value is None:
            continue
        if not _go_type_ok(_CONNECT_FIELDS[name], value):
            return None
        opts[name] = value
    return opts


def _auth_error_text(opts: dict[str, Any]) -> str:
    """nats-server's log line for a refused CONNECT, naming the identity it tried (getAuthUser)."""
    nkey, user, token = opts.get("nkey"), opts.get("user"), opts.get("auth_token")
    if nkey:
        return f'authentication error - Nkey "{nkey}"'
    if user:
        return f'authentication error - User "{user}"'
    if opts.get("jwt"):
        return 'authentication error - JWT User ""'
    if token:
        return 'authentication error - Token "[REDACTED]"'
    return "authentication error"


def _make_nonce() -> str:
    """11 random bytes in unpadded URL-safe base64 (15 characters), as nats-server's nonce."""
    import base64
    import os

    return base64.urlsafe_b64encode(os.urandom(11)).rstrip(b"=").decode()


def _reserved_reply(reply: bytes) -> bool:
    return reply.startswith((b"$JS.ACK.", b"_R_.", b"_GR_."))


class ClientConnection(Connection):
    """One client on the client port: the client protocol on top of the shared transport."""

    __slots__ = (
        "opts",
        "verbose",
        "pedantic",
        "trace",
        "protocol",
        "authorized",
        "connect_seen",
        "user",
        "account",
        "perms",
        "subs",
        "first_pong_pending",
        "connect_info_sent",
        "auth_handle",
        "responses",
        "info_sent_at",
        "nonce",
        "announced",
        "deferred",
        "account_fetched",
    )

    def __init__(self, server: Any, cid: int) -> None:
        super().__init__(server, cid)
        self.parser = Parser(self, self, server.config.limits.max_control_line)
        self.opts: dict[str, Any] = {}
        self.verbose = True
        self.pedantic = True
        self.trace = server.logger.trace_enabled
        self.protocol = 0
        auth = self.authenticator()
        self.authorized = not auth.required or bool(auth.no_auth_user)
        self.connect_seen = False
        #: its account's CONNECT event was published (so its DISCONNECT will be)
        self.announced = False
        #: While an account JWT is fetched for its CONNECT: the protocol calls that came after it,
        #: replayed in order once the CONNECT is decided (`_fetch_account`)
        self.deferred: list[tuple[str, tuple[Any, ...]]] | None = None
        self.account_fetched = False
        self.user: User | None = None
        self.account: Account = server.global_account
        self.sublist = self.account.sublist
        self.perms: Permissions | None = None
        self.subs: dict[bytes, Subscription] = {}
        self.first_pong_pending = False
        self.connect_info_sent = False
        self.auth_handle: asyncio.TimerHandle | None = None
        self.responses: dict[bytes, ResponseGrant] = {}
        self.info_sent_at = time.monotonic()
        #: The INFO nonce an nkey user signs (nats-server sends one whenever nkey users exist).
        self.nonce = _make_nonce() if auth.wants_nonce else ""
        if self.authorized and auth.no_auth_user:
            anonymous = auth.authenticate({})
            if anonymous is not None:
                self._bind(anonymous)
        self._update_fast_pub()

    # ---------------------------------------------------------------- transport hooks

    def log_prefix(self) -> str:
        prefix = f"{self.remote_host}:{self.remote_port} - cid:{self.cid} - "
        if self.connect_seen:
            lang = self.opts.get("lang", "")
            version = self.opts.get("version", "")
            name = self.opts.get("name", "")
            ident = f'"v{version}:{lang}' + (f":{name}" if name else "") + '"'
            user = f"/user:{self.user.name}" if self.user is not None and self.user.name else ""
            prefix += f'{ident} - "{self.account.name}{user}" - '
        return prefix

    def register(self) -> bool:
        return bool(self.server.register_client(self))

    def greet(self) -> None:
        server = self.server
        self.log_debug("Client connection created")
        tls = server.tls_context
        if tls is not None and not server.config.tls.handshake_first:
            # INFO in the clear, then the client starts the handshake on this socket; the TLS layer
            # runs on memory BIOs inside data_received (see jsedge.routing.tls for why).
            self.send_now(server.info_line(self, greeting=True))  # still plain
            self.start_tls(tls, timeout=server.config.tls.timeout or 2.0, sniff=server.config.allow_non_tls)
        else:
            if tls is not None:
                self.record_tls(self.transport)
            self.send_now(server.info_line(self, greeting=True))
        if server.auth.required:
            self.auth_handle = self.loop.call_later(server.auth_timeout, self._auth_timeout)

    def authenticator(self) -> Any:
        """Who decides this client's CONNECT: the server's authenticator (a WebSocket client's
        may override the single user, token and no_auth_user: jsedge.routing.websocket)."""
        return self.server.auth

    def ping_suppressed(self, now: float) -> bool:
        """nats-server skips a client's PING while it sends data, unless the RTT is stale."""
        need_rtt = self.rtt == 0.0 or now - self.rtt_measured_at > RTT_REFRESH
        active = self.in_msgs != self.last_in_msgs or now - self.last_in_seen < self.ping_interval
        self.last_in_msgs = self.in_msgs
        return active and not need_rtt

    def closed_hook(self, reason: ClosedReason) -> None:
        if self.auth_handle is not None:
            self.auth_handle.cancel()
            self.auth_handle = None
        for sub in self.subs.values():
            self.account.unsubscribe(sub)
        self.log_debug(f"Client connection closed: {reason.value}")
        self.server.unregister_client(self)

    # ---------------------------------------------------------------- ClientCore hooks

    def on_auto_unsub(self, sub: Subscription) -> None:
        if self.subs.get(sub.sid) is sub:
            del self.subs[sub.sid]
        self.account.unsubscribe(sub)

    def on_no_responders(self, subject: bytes, reply: bytes) -> None:
        # Only when the reply is covered by one of this connection's own subscriptions.
        result = self.sublist.match(reply)
        for sub in result.psubs:
            if sub.client is self and not sub.closed:
                break
        else:
            return
        header = errors.STATUS_NO_RESPONDERS + b"Nats-Subject: " + subject + b"\r\n\r\n"
        size = str(len(header)).encode()
        self.send(b"HMSG " + reply + b" " + sub.sid + b" " + size + b" " + size + b"\r\n" + header + b"\r\n")

    def on_reply_delivered(self, reply: bytes) -> None:
        if self.perms is not None and self.perms.tracks_responses:
            self.responses[reply] = response_grant(self.perms)
            if len(self.responses) > 4096:
                now = time.monotonic()
                for key in [k for k, g in self.responses.items() if g.expires_at < now]:
                    del self.responses[key]

    # ---------------------------------------------------------------- parser handler

    def proto_error(self, key: str) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_error", (key,)))
            return
        err, reason = errors.PARSER_ERRORS[key]
        if err is not None:
            self.log_error(f"Client parser ERROR, state=?: '{err.text}'" if key != "max_payload" else err.text)
            self.send_err(err)
        self.close(reason)

    def proto_client_err(self, arg: bytes) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_client_err", (arg,)))
            return
        self.log_error(f"Client Error {arg.decode(errors='replace')}")
        self.close(ClosedReason.PARSE_ERROR)

    def _require_auth(self) -> bool:
        """The first op must be CONNECT when auth is on: anything else is a violation."""
        if self.authorized:
            return True
        self.auth_violation()
        return False

    def _auth_expired(self) -> None:
        self.auth_handle = None
        self.send_err(errors.AUTH_EXPIRED)
        self.close(ClosedReason.AUTHENTICATION_EXPIRED)

    def auth_violation(self) -> None:
        self.send_err(errors.AUTH_VIOLATION)
        self.close(ClosedReason.AUTHENTICATION_VIOLATION)

    def proto_info(self, arg: bytes) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_info", (arg,)))
            return
        try:
            gojson.loads(arg)
        except ValueError:
            self.close(ClosedReason.PROTOCOL_VIOLATION)

    def proto_connect(self, arg: bytes) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_connect", (arg,)))
            return
        if self.trace:
            self.log_trace(f"<<- [CONNECT {self._redacted(arg)}]")
        given = decode_connect(arg)
        if given is None:
            self.close(ClosedReason.PROTOCOL_VIOLATION)
            return
        # Go decodes a CONNECT into the connection's existing options: a second CONNECT changes
        # only the fields it names (`CONNECT null` changes nothing).
        first = not self.connect_seen
        previous = self.opts
        opts = dict(self.opts) if self.connect_seen else dict(_CONNECT_DEFAULTS)
        opts.update(given)
        self.opts = opts
        self.connect_seen = True
        if self.rtt == 0.0:
            # Like nats-server, the first RTT is INFO sent -> CONNECT received.
            now = time.monotonic()
            self.rtt = max(now - self.info_sent_at, 1e-6)
            self.rtt_measured_at = now
        server = self.server
        if self.auth_handle is not None:
            self.auth_handle.cancel()
            self.auth_handle = None
        if opts.get("account") or opts.get("new_account"):
            self.auth_violation()
            return
        auth = self.authenticator()
        result = auth.authenticate(opts, nonce=self.nonce, host=self.remote_host or "")
        if result is None and not self.account_fetched:
            # operator mode: a user of an account this server has no JWT for yet, and a resolver
            # that can look it up (nats-server's fetch): the CONNECT is decided once it answers
            fetch = getattr(server.resolver, "fetch", None)
            trust = auth.trust
            missing = trust.missing_account(opts) if fetch is not None and trust is not None else None
            if missing is not None:
                self.opts, self.connect_seen = previous, not first
                self._fetch_account(fetch, missing, arg)
                return
        self.account_fetched = False
        if result is None:
            if first:
                self.connect_seen = False  # (nats-server names a client's version and account once it is in)
            self.log_error(_auth_error_text(opts))
            self.auth_violation()
            return
        protocol = int(opts.get("protocol", 0))
        if protocol < 0 or protocol > 1:
            self.send_err(errors.BAD_CLIENT_PROTOCOL)
            self.close(ClosedReason.BAD_CLIENT_PROTOCOL_VERSION)
            return
        self.protocol = protocol
        self.headers = bool(opts.get("headers")) and not server.config.limits.no_header_support
        self.no_responders = bool(opts.get("no_responders"))
        if self.no_responders and not self.headers:
            self.send_err(errors.NO_RESPONDERS_NEEDS_HEADERS)
            self.close(ClosedReason.NO_RESPONDERS_REQUIRES_HEADERS)
            return
        self.verbose = bool(opts.get("verbose"))
        self.pedantic = bool(opts.get("pedantic"))
        self.echo = bool(opts.get("echo"))
        if result.account != self.account.name or not self.authorized:
            self._rebind_account(result)
        else:
            self._bind(result)
        expires = result.user.expires if result.user is not None else 0.0
        if expires:
            # a JWT user is disconnected when its JWT expires, as nats-server does
            self.auth_handle = self.loop.call_later(max(0.0, expires - time.time()), self._auth_expired)
        if not self.announced and server.events is not None:
            self.announced = True
            server.events.client_connected(self)
        self.authorized = True
        if self.verbose:
            self.send(_OK)
        self._update_fast_pub()
        # Ping schedule restarts from CONNECT: first PING after min(interval, 2 s) + 0-20 %.
        interval = min(self.ping_interval, 2.0)
        self.restart_pings(interval * (1 + random.random() * 0.2))

    def _fetch_account(self, fetch: Any, key: str, arg: bytes) -> None:
        """Hold this client's protocol (what the parser reads meanwhile is kept in order, and
        reading pauses) until the resolver has looked up account `key`, then decide the CONNECT
        again and replay the rest."""
        self.deferred = []
        self.fast_pub = False
        self.account_fetched = True
        transport = self.transport
        if transport is not None:
            try:
                transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass

        def closed() -> bool:  # (a call: what each replayed call did is seen)
            return bool(self.closed)

        def done(_future: Any) -> None:
            deferred, self.deferred = self.deferred or [], None
            if closed():
                return
            if self.transport is not None:
                try:
                    self.transport.resume_reading()
                except (RuntimeError, AttributeError):
                    pass
            self.proto_connect(arg)
            self.account_fetched = False
            for name, args in deferred:
                if closed():
                    break
                getattr(self, name)(*args)
            if self.pending:
                flush_pending(self.pending)

        fetch(key).add_done_callback(done)

    def _redacted(self, arg: bytes) -> str:
        text = arg.decode(errors="replace")
        try:
            obj = json.loads(text)
        except ValueError:
            return text
        if isinstance(obj, dict):
            for key in ("pass", "auth_token", "sig", "jwt"):
                if key in obj:
                    obj[key] = "[REDACTED]"
            return json.dumps(obj, separators=(",", ":"))
        return text

    def _bind(self, result: Any) -> None:
        self.user = result.user
        self.perms = result.user.permissions if result.user is not None else None
        # Rebuilt from the (possibly reloaded) permissions when a SUB needs it again.
        self.deny_filter = None
        if self.perms is not None and self.perms.sub_deny is not None:
            for sub in self.subs.values():
                if self.perms.needs_deny_filter(sub.subject, sub.queue):
                    self.deny_filter = DenyFilter(self.perms.sub_deny)
                    break
        self.track_replies = self.perms is not None and self.perms.tracks_responses

    def _rebind_account(self, result: Any) -> None:
        """(Re)authenticate into an account: subscriptions of the old account are dropped first."""
        for sub in list(self.subs.values()):
            self.account.unsubscribe(sub)
        self.subs.clear()
        old = self.account
        old.remove_client(self)
        account = self.server.lookup_account(result.account)
        self.account = account
        self.sublist = account.sublist
        account.add_client(self)
        self._bind(result)
        self._update_fast_pub()

    def _update_fast_pub(self) -> None:
        self.fast_pub = (
            self.authorized
            and not self.verbose
            and not self.pedantic
            and not self.trace
            and (self.perms is None or not self.perms.restricts_publish)
            and not self.account.mappings
        )

    def proto_pub_arg(self, subject: bytes) -> None:
        """A PUB/HPUB control line was accepted; its payload follows."""
        if self.deferred is not None:
            self.deferred.append(("proto_pub_arg", (subject,)))
            return
        if self.pedantic and self.authorized and not valid_pedantic_publish_subject(subject):
            self.send_err(errors.INVALID_PUBLISH_SUBJECT)

    def proto_pub(self, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_pub", (subject, reply, hdr_len, bytes(msg))))
            return
        if not self._require_auth():
            return
        self.last_in_seen = time.monotonic()
        if self.trace:
            size = len(msg)
            args = [subject.decode(errors="replace")]
            if reply:
                args.append(reply.decode(errors="replace"))
            if hdr_len >= 0:
                args.append(str(hdr_len))
            args.append(str(size))
            self.log_trace(f"<<- [{'HPUB' if hdr_len >= 0 else 'PUB'} {' '.join(args)}]")
            self.log_trace(f"<<- MSG_PAYLOAD: [{json.dumps(msg[max(hdr_len, 0) :].decode(errors='replace'))}]")
        if subject.startswith((b"$NRG.", b"_GR_.")) and not (
            subject.startswith(b"$NRG.") and self.account.name == self.server.config.system_account
        ):
            self.send_err(errors.PERM_PUBLISH, go_quote(subject.decode(errors="replace")))
            return
        perms = self.perms
        if perms is not None and perms.restricts_publish and not perms.can_publish(subject):
            if not self._response_allowed(subject):
                self.log_error(f'Publish Violation - {self._user_desc()}, Subject "{subject.decode(errors="replace")}"')
                self.send_err(errors.PERM_PUBLISH, go_quote(subject.decode(errors="replace")))
                return
        if reply and _reserved_reply(reply):
            self.send_err(errors.PERM_PUBLISH_REPLY, go_quote(reply.decode(errors="replace")))
            return
        if self.verbose:
            self.send(_OK)
        mapped = self.account.map_subject(subject) if self.account.mappings else subject
        if (
            hdr_len > 0
            and msg.find(b"Nats-Trace-", 0, hdr_len) >= 0
            and trace_publish(self, subject, mapped, reply, hdr_len, msg)
        ):
            return
        deliver(self, mapped, reply, hdr_len, msg)

    def publish_violation(self, subject: bytes) -> None:
        """nats-server's pubPermissionViolation: logged, and `-ERR` to the client."""
        text = subject.decode(errors="replace")
        self.log_error(f'Publish Violation - {self._user_desc()}, Subject "{text}"')
        self.send_err(errors.PERM_PUBLISH, go_quote(text))

    def _user_desc(self) -> str:
        return f'User "{self.user.name}"' if self.user is not None else "User"

    def _response_allowed(self, subject: bytes) -> bool:
        grant = self.responses.get(subject)
        if grant is None:
            return False
        if grant.expires_at < time.monotonic():
            del self.responses[subject]
            return False
        if grant.remaining > 0:
            grant.remaining -= 1
            if grant.remaining == 0:
                del self.responses[subject]
        return True

    def proto_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_sub", (subject, queue, sid)))
            return
        if not self._require_auth():
            return
        self.last_in_seen = time.monotonic()
        if self.trace:
            self.log_trace(
                f"<<- [SUB {subject.decode(errors='replace')}{' ' + queue.decode() if queue else ''} {sid.decode(errors='replace')}]"
            )
        perms = self.perms
        if perms is not None and not perms.can_subscribe(subject, queue):
            subj = go_quote(subject.decode(errors="replace"))
            if queue is not None:
                self.log_error(
                    f'Subscription Violation - {self._user_desc()}, Subject "{subject.decode(errors="replace")}", '
                    f'Queue: "{queue.decode(errors="replace")}", SID {sid.decode(errors="replace")}'
                )
                self.send_err(errors.PERM_SUBSCRIBE_QUEUE, subj, go_quote(queue.decode(errors="replace")))
            else:
                self.log_error(
                    f'Subscription Violation - {self._user_desc()}, Subject "{subject.decode(errors="replace")}", '
                    f"SID {sid.decode(errors='replace')}"
                )
                self.send_err(errors.PERM_SUBSCRIBE, subj)
            return
        limits = self.server.config.limits
        if limits.max_sub_tokens and subject.count(b".") + 1 > limits.max_sub_tokens:
            self.send_err(errors.PERM_SUBSCRIBE_TOKENS, go_quote(subject.decode(errors="replace")))
            return
        if limits.max_subscriptions and len(self.subs) >= limits.max_subscriptions:
            self.log_error(f"Maximum Subscriptions Exceeded (max={limits.max_subscriptions})")
            self.send_err(errors.MAX_SUBSCRIPTIONS)
            return
        if sid not in self.subs:
            if not self.server.valid_subscribe_subject(subject):
                self.send_err(errors.INVALID_SUBJECT)
                return
            if perms is not None and self.deny_filter is None and perms.needs_deny_filter(subject, queue):
                self.deny_filter = DenyFilter(perms.sub_deny)
            sub = Subscription(self, subject, sid, queue)
            self.subs[sid] = sub
            self.account.subscribe(sub)
        if self.verbose:
            self.send(_OK)

    def proto_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_unsub", (sid, max_msgs)))
            return
        if not self._require_auth():
            return
        self.last_in_seen = time.monotonic()
        if self.trace:
            self.log_trace(
                f"<<- [UNSUB {sid.decode(errors='replace')}{'' if max_msgs is None else ' ' + str(max_msgs)}]"
            )
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs is not None and max_msgs > sub.delivered:
                sub.max_msgs = max_msgs
            else:
                del self.subs[sid]
                self.account.unsubscribe(sub)
        if self.verbose:
            self.send(_OK)

    def proto_ping(self) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_ping", ()))
            return
        if not self._require_auth():
            return
        self.last_in_seen = time.monotonic()
        self.send(_PONG)
        # Protocol-1 clients learn their account in an async INFO after the first PING.
        if self.connect_seen and not self.connect_info_sent and self.protocol >= 1:
            self.connect_info_sent = True
            self.send(self.server.info_line(self, connect_info=True))

    def proto_pong(self) -> None:
        if self.deferred is not None:
            self.deferred.append(("proto_pong", ()))
            return
        self.record_pong()

    # ---------------------------------------------------------------- timers

    def _auth_timeout(self) -> None:
        self.auth_handle = None
        if not self.closed and not self.connect_seen:
            self.log_error("Authentication Timeout")
            self.send_now(errors.AUTH_TIMEOUT.line())
            self.close(ClosedReason.AUTHENTICATION_TIMEOUT)
