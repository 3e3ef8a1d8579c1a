"""Client authentication and permissions (layer 2).

Token, single user, users list and accounts' users, with plain or bcrypt secrets compared in constant
time; `no_auth_user`; per-user publish/subscribe allow/deny lists (entries `"subject queue"` restrict
queue groups), and `allow_responses`. The rules follow nats-server's `canSubscribe` and
`pubAllowedFullCheck`: a list entry is a *filter*, and the client's subject is matched against it
token by token with wildcards in the client's subject taken literally.
"""

from __future__ import annotations

import re
import time
from typing import Any

from jsedge.subjects import is_literal, subject_is_subset, subject_matches, subjects_overlap

_BCRYPT = re.compile(r"^\$2[abxy]\$\d{2}\$")


def is_bcrypt(secret: str) -> bool:
    return bool(_BCRYPT.match(secret))


# bcrypt costs ~0.1-0.3 s per check at the usual cost factors, and jsedge checks on the event loop,
# so a successful (hash, secret) pair is remembered: reconnect storms then cost one check per user.
_BCRYPT_OK: set[tuple[str, str]] = set()


def secret_matches(configured: str, given: str) -> bool:
    if is_bcrypt(configured):
        if (configured, given) in _BCRYPT_OK:
            return True
        import bcrypt

        try:
            ok = bcrypt.checkpw(given.encode(), configured.encode())
        except ValueError:
            return False
        if ok:
            _BCRYPT_OK.add((configured, given))
        return ok
    import hmac  # with hashlib and _hashlib: ~2 ms of startup a server without auth never needs

    return hmac.compare_digest(configured.encode(), given.encode())


def _split_entry(entry: str) -> tuple[bytes, bytes | None]:
    parts = entry.split()
    if len(parts) >= 2:
        return parts[0].encode(), parts[1].encode()
    return entry.strip().encode(), None


def _has_wildcard(token: bytes) -> bool:
    return token in (b"*", b">") or b".*" in token or b".>" in token or token.startswith((b"*.", b">."))


def _queue_matches(queue: bytes, patterns: list[bytes]) -> bool:
    for pattern in patterns:
        if _has_wildcard(pattern):
            if subject_matches(pattern, queue):
                return True
        elif pattern == queue:
            return True
    return False


class SubjectList:
    """One allow or deny list: plain filters and filters restricted to a queue group."""

    __slots__ = ("plain", "queued")

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.plain: list[bytes] = []
        self.queued: list[tuple[bytes, bytes]] = []
        for entry in entries:
            subject, queue = _split_entry(entry)
            if queue is None:
                self.plain.append(subject)
            else:
                self.queued.append((subject, queue))

    def matches_plain(self, subject: bytes) -> bool:
        return any(subject_matches(f, subject) for f in self.plain)

    def matching_queues(self, subject: bytes) -> list[bytes]:
        return [q for f, q in self.queued if subject_matches(f, subject)]


# Plain slotted classes rather than @dataclass: each dataclass compiles its generated methods from
# source at import time (~0.45 ms apiece, on the start -> first PONG path), and nothing here needs
# the generated __eq__.


class ResponseGrant:
    """What an `allow_responses` grant still allows: messages left (-1 = any) until `expires_at`."""

    __slots__ = ("remaining", "expires_at")

    def __init__(self, remaining: int, expires_at: float) -> None:
        self.remaining = remaining
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"ResponseGrant(remaining={self.remaining!r}, expires_at={self.expires_at!r})"


class Permissions:
    """Compiled permissions of one user, with a publish decision cache."""

    __slots__ = ("pub_allow", "pub_deny", "sub_allow", "sub_deny", "resp_max", "resp_expires", "_pub_cache")

    def __init__(self, config: Any) -> None:
        publish = config.publish
        subscribe = config.subscribe
        self.pub_allow = SubjectList(publish.allow) if publish is not None and publish.allow else None
        if config.allow_responses is not None and self.pub_allow is None:
            # nats-server turns a missing publish allow list into "nothing but responses".
            self.pub_allow = SubjectList(())
        self.pub_deny = SubjectList(publish.deny) if publish is not None and publish.deny else None
        self.sub_allow = SubjectList(subscribe.allow) if subscribe is not None and subscribe.allow else None
        self.sub_deny = SubjectList(subscribe.deny) if subscribe is not None and subscribe.deny else None
        responses = config.allow_responses
        self.resp_max = responses.max_msgs if responses is not None else 0
        self.resp_expires = responses.expires if responses is not None else 0.0
        self._pub_cache: dict[bytes, bool] = {}

    @property
    def restricts_publish(self) -> bool:
        return self.pub_allow is not None or self.pub_deny is not None

    @property
    def tracks_responses(self) -> bool:
        return self.resp_max != 0 and self.restricts_publish

    def can_publish(self, subject: bytes) -> bool:
        cached = self._pub_cache.get(subject)
        if cached is not None:
            return cached
        allowed = self.pub_allow is None or self.pub_allow.matches_plain(subject)
        if allowed and self.pub_deny is not None:
            allowed = not self.pub_deny.matches_plain(subject)
        if len(self._pub_cache) > 1024:
            self._pub_cache.clear()
        self._pub_cache[subject] = allowed
        return allowed

    def needs_deny_filter(self, subject: bytes, queue: bytes | None) -> bool:
        """Can an accepted SUB on `subject` receive a denied subject? A wildcard SUB (or a queue
        SUB) that overlaps a deny entry can; the connection then filters at delivery
        (`DenyFilter`), as nats-server's `loadMsgDenyFilterIfNeeded`."""
        deny = self.sub_deny
        if deny is None or (queue is None and is_literal(subject)):
            return False
        entries = deny.plain + [entry for entry, _ in deny.queued]
        return any(subjects_overlap(entry, subject) for entry in entries)

    def can_subscribe(self, subject: bytes, queue: bytes | None) -> bool:
        allowed = True
        if self.sub_allow is not None:
            allowed = self.sub_allow.matches_plain(subject)
            if queue is not None:
                queues = self.sub_allow.matching_queues(subject)
                if queues:
                    allowed = _queue_matches(queue, queues)
        if allowed and self.sub_deny is not None:
            allowed = not self.sub_deny.matches_plain(subject)
            if allowed and queue is not None:
                queues = self.sub_deny.matching_queues(subject)
                if queues:
                    allowed = not _queue_matches(queue, queues)
        return allowed


class DenyFilter:
    """A connection's delivery-time subscribe deny check: `filter(subject, queue) -> denied`.

    Plain deny entries refuse the subject to every subscription; `"subject queue"` entries only to
    members of a matching queue group. Answers are cached per (subject, queue), bounded like
    nats-server's deny cache.
    """

    __slots__ = ("plain", "queued", "cache")

    CACHE_MAX = 4096

    def __init__(self, deny: SubjectList) -> None:
        self.plain = deny.plain
        self.queued = deny.queued
        self.cache: dict[tuple[bytes, bytes | None], bool] = {}

    def __call__(self, subject: bytes, queue: bytes | None) -> bool:
        key = (subject, queue)
        denied = self.cache.get(key)
        if denied is None:
            denied = any(subject_matches(entry, subject) for entry in self.plain)
            if not denied and queue is not None:
                denied = any(
                    subject_matches(entry, subject) and _queue_in_deny(queue, pattern) for entry, pattern in self.queued
                )
            if len(self.cache) >= self.CACHE_MAX:
                self.cache.clear()
            self.cache[key] = denied
        return denied


def _queue_in_deny(queue: bytes, pattern: bytes) -> bool:
    # nats-server's queueMatches: the literal name, or a wildcard queue pattern covering it
    return queue == pattern or (_has_wildcard(pattern) and subject_is_subset(queue, pattern))


class User:
    """A configured identity: name (or token holder), secret, account, permissions."""

    __slots__ = (
        "name",
        "secret",
        "account",
        "permissions",
        "allowed_connection_types",
        "raw_permissions",
        "expires",
        "jwt",
    )

    def __init__(
        self,
        name: str,
        secret: str,
        account: str,
        permissions: Permissions | None = None,
        allowed_connection_types: tuple[str, ...] = (),
        raw_permissions: Any = None,
    ) -> None:
        self.name = name
        self.secret = secret
        self.account = account
        self.permissions = permissions
        self.allowed_connection_types = allowed_connection_types
        self.raw_permissions = raw_permissions
        #: Operator mode: when the user's JWT expires (epoch seconds; 0 = never), and its claims.
        self.expires = 0.0
        self.jwt: dict[str, Any] | None = None

    def __repr__(self) -> str:  # never the secret
        return f"User(name={self.name!r}, account={self.account!r})"


class AuthResult:
    """Who a CONNECT is: the user (None for token or anonymous) and the account to bind."""

    __slots__ = ("user", "account")

    def __init__(self, user: User | None, account: str) -> None:
        self.user = user
        self.account = account

    def __repr__(self) -> str:
        return f"AuthResult(user={self.user!r}, account={self.account!r})"


class Authenticator:
    """Decides who a CONNECT is. Built from the config tree; rebuilt on reload.

    The decision follows nats-server's `processClientOrLeafAuthentication` step by step:
    nkey users are looked up by the CONNECT's `nkey` only, users by a non-empty `user` only (an entry
    without a name can never match), `no_auth_user` fills in the credentials of a CONNECT that has
    none, and only then do the token and the single user apply. A CONNECT that matches none of these
    is refused.
    """

    __slots__ = ("token", "single_user", "users", "nkeys", "no_auth_user", "trust")

    def __init__(
        self,
        token: str = "",
        single_user: User | None = None,
        users: dict[str, User] | None = None,
        no_auth_user: str = "",
        nkeys: dict[str, User] | None = None,
    ) -> None:
        self.token = token
        self.single_user = single_user
        self.users: dict[str, User] = {} if users is None else users
        #: nkey users by public key: a CONNECT names the key and signs the INFO nonce with it
        #: (`sig`, base64url; ed25519 checked by `verify_nkey_signature`)
        self.nkeys: dict[str, User] = {} if nkeys is None else nkeys
        self.no_auth_user = no_auth_user
        #: Operator mode (jsedge.routing.jwtauth.Trust): every client presents a user JWT.
        self.trust: Any = None

    @property
    def required(self) -> bool:
        return bool(self.token or self.single_user or self.users or self.nkeys or self.trust)

    @property
    def wants_nonce(self) -> bool:
        """The INFO carries a nonce to sign (nkey users or operator mode)."""
        return bool(self.nkeys or self.trust)

    @property
    def info_auth_required(self) -> bool:
        """INFO's `auth_required`: auth is configured and no `no_auth_user` lets anonymous clients in."""
        return self.required and not self.no_auth_user

    @classmethod
    def from_config(cls, config: Any) -> Authenticator:
        auth = config.auth
        default_perms = auth.default_permissions
        auth_obj = cls(token=auth.token, no_auth_user=config.no_auth_user)
        if auth.user:
            perms = default_perms
            auth_obj.single_user = User(auth.user, auth.password, "$G", Permissions(perms) if perms else None)
        for user in auth.users:
            auth_obj._add(user, user.account or "$G", default_perms)
        for account in config.accounts:
            for user in account.users:
                auth_obj._add(user, account.name, default_perms)
        if getattr(config, "operators", ()) or getattr(config, "trusted_keys", ()):
            from jsedge.jwt import JWTError, decode
            from jsedge.routing.jwtauth import Trust

            operators = []
            for token in config.operators:
                try:
                    operators.append(decode(token, "operator"))
                except JWTError:
                    continue
            accounts = {}
            for key, token in config.resolver_preload:
                try:
                    accounts[key] = decode(token, "account")
                except JWTError:
                    continue
            auth_obj.trust = Trust(operators, accounts)
            auth_obj.trust.operator_keys |= set(getattr(config, "trusted_keys", ()))
            auth_obj.trust.pinned = frozenset(getattr(config, "resolver_pinned_accounts", ()))
            auth_obj.trust.sentinel = getattr(config, "default_sentinel", "")
        return auth_obj

    def _add(self, user: Any, account: str, default_perms: Any) -> None:
        perms = user.permissions or default_perms
        entry = User(
            user.nkey or user.user,
            user.password,
            account,
            Permissions(perms) if perms else None,
            tuple(user.allowed_connection_types),
            perms,
        )
        if user.nkey:
            self.nkeys[user.nkey] = entry
        else:
            self.users[user.user] = entry

    def authenticate(
        self, opts: dict[str, Any], connection_type: str = "STANDARD", nonce: str = "", host: str = ""
    ) -> AuthResult | None:
        """The identity for a CONNECT's options (`nonce`: the one its INFO carried, which an nkey
        or JWT user signs; `host`: the client's address, for a JWT's `src`), or None
        (Authorization Violation)."""
        if not self.required:
            return AuthResult(None, "$G")
        if self.trust is not None:
            return self._authenticate_jwt(opts, connection_type, nonce, host)
        given_user = _text(opts.get("user"))
        given_pass = _text(opts.get("pass"))
        given_token = _text(opts.get("auth_token"))
        given_nkey = _text(opts.get("nkey"))
        no_auth = self.no_auth_user
        if self.nkeys:
            if no_auth and not (given_user or given_pass or given_token or given_nkey) and no_auth in self.nkeys:
                given_nkey = no_auth
            if given_nkey:
                nkey_user = self.nkeys.get(given_nkey)
                if nkey_user is None or not _type_allowed(nkey_user, connection_type):
                    return None
                if given_nkey == no_auth or (
                    nonce and verify_nkey_signature(given_nkey, nonce.encode(), _text(opts.get("sig")))
                ):
                    return AuthResult(nkey_user, nkey_user.account)
                return None
        if self.users:
            if no_auth and not (given_user or given_pass or given_token):
                filled = self.users.get(no_auth)
                if filled is not None:
                    # nats-server copies the user's configured secret into the CONNECT and then
                    # compares as usual (so a bcrypt-hashed no_auth_user never matches).
                    given_user, given_pass = filled.name, filled.secret
            if given_user:
                user = self.users.get(given_user)
                if user is None or not _type_allowed(user, connection_type):
                    return None
                if not secret_matches(user.secret, given_pass):
                    return None
                return AuthResult(user, user.account)
        if self.token:
            if secret_matches(self.token, given_token):
                return AuthResult(None, "$G")
            return None
        if self.single_user is not None:
            if given_user == self.single_user.name and secret_matches(self.single_user.secret, given_pass):
                return AuthResult(self.single_user, "$G")
        return None

    def _authenticate_jwt(self, opts: dict[str, Any], connection_type: str, nonce: str, host: str) -> AuthResult | None:
        from jsedge.routing.jwtauth import user_permissions

        found = self.trust.authenticate(opts, nonce, connection_type, host)
        if found is None:
            return None
        claims, account = found
        perms = user_permissions(claims, account)
        user = User(claims["sub"], "", account["sub"], Permissions(perms) if perms else None, (), perms)
        expires = claims.get("exp")
        user.expires = float(expires) if isinstance(expires, (int, float)) and expires > 0 else 0.0
        user.jwt = claims
        return AuthResult(user, account["sub"])


def _text(value: Any) -> str:
    """A CONNECT credential as Go sees it: the client already checked the JSON types."""
    return value if isinstance(value, str) else ""


def _type_allowed(user: User, connection_type: str) -> bool:
    allowed = user.allowed_connection_types
    return not allowed or connection_type in {t.upper() for t in allowed}


def response_grant(perms: Permissions) -> ResponseGrant:
    remaining = perms.resp_max if perms.resp_max > 0 else -1
    return ResponseGrant(remaining, time.monotonic() + perms.resp_expires)


def verify_nkey_signature(public_key: str, data: bytes, signature: str) -> bool:
    """Is `signature` (base64url without padding, or standard base64, as nats-server accepts it)
    an ed25519 signature of `data` by the user nkey `public_key` (`U…`, base32 with its prefix
    byte and CRC-16)?"""
    from jsedge.jwt import verify_signature_text

    return verify_signature_text(public_key, "U", data, signature)
