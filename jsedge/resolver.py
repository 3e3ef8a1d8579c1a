"""The full account resolver (layer 7): account JWTs kept in a directory and updated at run time.

`resolver { type: full, dir: "./jwt", allow_delete: bool }` in operator mode. The directory holds one
`<account public key>.jwt` per account; the server starts with them and with `resolver_preload`
(which it writes there too, as nats-server does). In the system account it answers, as
nats-server's DirAccResolver:

* `$SYS.REQ.CLAIMS.UPDATE` (body: an account JWT) and `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (also
  the older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`): the JWT is checked (decodes, signed by a trusted
  operator key, not expired, its subject the key of the subject), stored unless the stored one is
  newer (`iat`), and the accounts are rebuilt from the directory: an account added, its limits,
  JetStream, exports, imports and revocations changed; connected clients are checked again (a
  revoked user is disconnected). Answer: `{"data": {"account", "code": 200, "message": "jwt
  updated"}}` or `{"error": {"account", "code": 500, "description"}}`, with the server block.
* `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`: the stored JWT (nothing when unknown).
* `$SYS.REQ.CLAIMS.LIST`: `{"data": [keys...]}`.

* `$SYS.REQ.CLAIMS.DELETE` (with `allow_delete`): a JWT the operator signed for itself, listing
  `accounts`; their JWTs are renamed `<key>.jwt.deleted` and their clients disconnected.

`nsc push` and `nats server request` use these. Every server of a cluster subscribes, so an update
sent to one reaches all (each answers). A server that missed updates catches up with
`$SYS.REQ.CLAIMS.PACK`, as nats-server's do (and with them): at start and every `interval` (1 min) it
sends the hash of its directory (the XOR of the JWTs' SHA-256) to the `responder` queue group; a
server whose hash differs answers with every JWT it holds, one `key|jwt` per message, then an empty
message, and the newer ones are kept. Not done: `hard_delete`, the cache resolver.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from jsedge.jwt import JWTError, decode, time_valid

UPDATE = b"$SYS.REQ.CLAIMS.UPDATE"
UPDATE_NEW = b"$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"
UPDATE_OLD = b"$SYS.ACCOUNT.*.CLAIMS.UPDATE"
LOOKUP = b"$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"
LIST = b"$SYS.REQ.CLAIMS.LIST"
DELETE = b"$SYS.REQ.CLAIMS.DELETE"
PACK = b"$SYS.REQ.CLAIMS.PACK"


class Lookups:
    """Account JWTs looked up from the other servers (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`), as
    nats-server's fetch: the first JWT answered wins; empty answers (a full resolver without it)
    count down the servers known, and when all of them (this one's own answer included) said
    nothing, the account is not found; no answer within `resolver_timeout` is a time-out."""

    def __init__(self, server: Any, system: Any, store: Callable[[str, str], str | None]) -> None:
        self.server = server
        self.system = system
        #: checks and keeps a JWT that came (None when kept, else why not)
        self.store = store
        self.prefix = b"$SYS._INBOX." + os.urandom(8).hex().encode() + b".lookup."
        self.sub: Any = None
        self.next_id = 0
        #: reply inbox -> (key, future, answers still expected, timer)
        self.waiting: dict[bytes, list[Any]] = {}
        self.by_key: dict[str, asyncio.Future[bool]] = {}

    def start(self) -> None:
        self.sub = self.server.subscribe_internal(self.system, self.prefix + b"*", self._on_reply)

    def stop(self) -> None:
        if self.sub is not None:
            self.server.unsubscribe_internal(self.system, self.sub)
            self.sub = None
        for entry in list(self.waiting.values()):
            self._finish(entry, False, "fetching jwt failed due to shutdown")

    def fetch(self, key: str) -> asyncio.Future[bool]:
        """A future resolving to True once account `key`'s JWT is kept, False when it could not be."""
        pending = self.by_key.get(key)
        if pending is not None:
            return pending
        loop = self.server.loop
        future: asyncio.Future[bool] = loop.create_future()
        self.next_id += 1
        inbox = self.prefix + str(self.next_id).encode()
        routes = self.server.routes
        expected = len(routes.routes) if routes is not None else 0
        entry = [key, future, expected, None, inbox]
        entry[3] = loop.call_later(
            self.server.config.resolver_timeout, self._finish, entry, False, "fetching jwt timed out"
        )
        self.waiting[inbox] = entry
        self.by_key[key] = future
        self.server.send_internal(self.system, b"$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP" % key.encode(), inbox, b"", b"")
        return future

    def _on_reply(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        entry = self.waiting.get(subject)
        if entry is None:
            return
        body = bytes(msg[hdr_len:] if hdr_len > 0 else msg).decode("utf-8", "replace").strip()
        entry[2] -= 1
        if not body:
            if entry[2] > 0:
                return
            self._finish(entry, False, "account jwt not found")
            return
        problem = self.store(entry[0], body)
        self._finish(entry, problem is None, problem or "")

    def _finish(self, entry: list[Any], found: bool, problem: str) -> None:
        key, future, _expected, timer, inbox = entry
        if self.waiting.pop(inbox, None) is None:
            return
        self.by_key.pop(key, None)
        if timer is not None:
            timer.cancel()
        if not found:
            self.server.logger.debug(f"Account fetch failed: {problem}")
        if not future.done():
            future.set_result(found)


class DirResolver:
    """The full resolver (`type: full`) and the cache resolver (`type: cache`, `self.cache`): the
    cache keeps the JWTs it looked up, at most `limit` of them (the oldest are dropped) and for
    `ttl`; it takes updates only for accounts it holds, and neither answers lookups nor syncs."""

    def __init__(self, server: Any, system: Any) -> None:
        self.server = server
        self.system = system
        self.directory = server.config.resolver_dir
        self.cache = server.config.resolver == "CACHE"
        self.subs: list[Any] = []
        self._digest: bytes | None = None
        self._timer: Any = None
        self._expiry: Any = None
        self._pinned: list[tuple[str, str]] = []
        self.lookups = Lookups(server, system, self._store_fetched)

    def start(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        # the cache may drop the system account's JWT file (limit, ttl) but, as nats-server,
        # never the account itself
        system_key = self.server.config.system_account
        for key, token in self.server.config.resolver_preload:
            if key == system_key:
                self._pinned = [(key, token)]
        which = "some" if self.cache else "all"
        self.server.logger.info(f"Managing {which} jwt in exclusive directory {self.directory}")
        for key, token in self.server.config.resolver_preload:
            self._save_if_newer(key, token)
        self.lookups.start()
        if self.cache:
            self._arm_expiry()
            handlers: tuple[tuple[bytes, Any], ...] = (
                (UPDATE, self._on_update),
                (UPDATE_NEW, self._on_update),
                (UPDATE_OLD, self._on_update),
                (LIST, self._on_list),
                (DELETE, self._on_delete),
            )
        else:
            self.pack_inbox = b"$SYS._INBOX." + os.urandom(8).hex().encode() + b".pack"
            self.subs.append(
                self.server.subscribe_internal(self.system, PACK, self._on_pack_request, queue=b"responder")
            )
            self.subs.append(self.server.subscribe_internal(self.system, self.pack_inbox, self._on_pack))
            self._merged = False
            self._timer = self.server.loop.call_soon(self._sync)
            handlers = (
                (UPDATE, self._on_update),
                (UPDATE_NEW, self._on_update),
                (UPDATE_OLD, self._on_update),
                (LOOKUP, self._on_lookup),
                (LIST, self._on_list),
                (DELETE, self._on_delete),
            )
        for subject, callback in handlers:
            self.subs.append(self.server.subscribe_internal(self.system, subject, callback))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.lookups.stop()
        for sub in self.subs:
            self.server.unsubscribe_internal(self.system, sub)
        self.subs = []

    def fetch(self, key: str) -> asyncio.Future[bool]:
        """Look account `key` up from the other servers (a client's CONNECT needs it)."""
        return self.lookups.fetch(key)

    def _store_fetched(self, key: str, token: str) -> str | None:
        problem = _check_account_jwt(self.server, key, token)
        if problem is not None:
            return problem
        try:
            written = self._save_if_newer(key, token)
        except (OSError, ValueError) as exc:
            return str(exc)
        if self.cache:
            self._evict_over_limit(keep=key)
        if written:
            self.refresh()
        return None

    # ------------------------------------------------------------------ the cache's ttl and limit

    def _cached(self) -> list[tuple[float, str]]:
        """(stored at, key) of the cached JWTs, oldest first (the files' modification times)."""
        found = []
        for key in self._keys():
            path = self._path(key)
            if path is None:
                continue
            try:
                found.append((os.stat(path).st_mtime, key))
            except OSError:
                continue
        return sorted(found)

    def _drop(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            if path is None:
                continue
            self._digest = None
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        if keys:
            self.refresh()

    def _evict_over_limit(self, keep: str) -> None:
        limit = self.server.config.resolver_limit or 1000
        cached = self._cached()
        extra = len(cached) - limit
        if extra > 0:
            self._drop([key for _at, key in cached if key != keep][:extra])

    def _arm_expiry(self) -> None:
        ttl = self.server.config.resolver_ttl
        if ttl <= 0:
            return
        self._expiry = self.server.loop.call_later(min(ttl, 1.0), self._expire)

    def _expire(self) -> None:
        """Drop the cached JWTs older than `ttl` (their accounts' clients are disconnected, and a
        new client of such an account has it looked up again, as nats-server's cache does)."""
        self._expiry = None
        ttl = self.server.config.resolver_ttl
        now = time.time()
        self._drop([key for at, key in self._cached() if now - at >= ttl])
        self._arm_expiry()

    # ------------------------------------------------------------------ the directory

    def _path(self, key: str) -> str | None:
        if not key or not key.isalnum() or not key.startswith("A"):
            return None
        return os.path.join(self.directory, key + ".jwt")

    def load(self, key: str) -> str | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return None

    def _save_if_newer(self, key: str, token: str) -> bool:
        """Store `token` for `key` unless the stored JWT is the same or newer; True when written."""
        path = self._path(key)
        if path is None:
            raise ValueError("invalid public key")
        existing = self.load(key)
        if existing is not None:
            try:
                old = decode(existing, "account")
                new = decode(token, "account")
            except JWTError:
                old = new = {}
            if old and (old.get("jti") == new.get("jti") or int(old.get("iat") or 0) > int(new.get("iat") or 0)):
                return False
        self._digest = None
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(token)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return True

    # ------------------------------------------------------------------ directory sync (PACK)

    def _keys(self) -> list[str]:
        try:
            return sorted(name[:-4] for name in os.listdir(self.directory) if name.endswith(".jwt"))
        except OSError:
            return []

    def digest(self) -> bytes:
        """nats-server's store hash: the XOR of the SHA-256 of every stored JWT (kept until the
        directory changes: peers ask for it every `interval`)."""
        if self._digest is not None:
            return self._digest
        import hashlib

        value = bytearray(32)
        for key in self._keys():
            token = self.load(key)
            if token:
                for index, byte in enumerate(hashlib.sha256(token.encode()).digest()):
                    value[index] ^= byte
        self._digest = bytes(value)
        return self._digest

    def _sync(self) -> None:
        """Ask the other servers for what this directory lacks (at start, then every `interval`)."""
        self._timer = self.server.loop.call_later(self.server.config.resolver_interval, self._sync)
        self.server.send_internal(self.system, PACK, self.pack_inbox, b"", self.digest())

    def _on_pack_request(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        """Another server's PACK request: nothing when its hash is ours, else every JWT as a
        `key|jwt` message, then an empty one."""
        if not reply:
            return
        theirs = bytes(msg[hdr_len:] if hdr_len > 0 else msg)
        if theirs != self.digest():
            for key in self._keys():
                token = self.load(key)
                if token:
                    self.server.send_internal(self.system, reply, b"", b"", f"{key}|{token}".encode())
        self.server.send_internal(self.system, reply, b"", b"", b"")

    def _on_pack(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        body = bytes(msg[hdr_len:] if hdr_len > 0 else msg).decode("utf-8", "replace")
        if not body:
            if self._merged:  # end of the answer: apply what came
                self._merged = False
                self.refresh()
            return
        trust = self.server.auth.trust
        for line in body.split("\n"):
            if not line:
                continue
            key, _, token = line.partition("|")
            try:
                claims = decode(token, "account")
            except JWTError:
                continue
            if claims.get("sub") != key or trust is None or claims.get("iss") not in trust.operator_keys:
                continue
            try:
                self._merged = self._save_if_newer(key, token) or self._merged
            except (OSError, ValueError):
                continue

    # ------------------------------------------------------------------ requests

    def _respond(self, reply: bytes, account: str, message: str, error: str | None) -> None:
        log = self.server.logger
        if error is None:
            log.debug(f"{message} - {account}" if account else message)
        else:
            log.error(f"{message} - {account} - {error}" if account else f"{message} - {error}")
        if not reply:
            return
        events = self.server.events
        body: dict[str, Any] = {"server": events.server_info() if events is not None else {}}
        outcome: dict[str, Any] = {"account": account} if account else {}  # (omitempty)
        if error is None:
            body["data"] = {**outcome, "code": 200, "message": message}
        else:
            body["error"] = {**outcome, "code": 500, "description": f"{message} - {error}"}
        self.server.send_internal(self.system, reply, b"", b"", json.dumps(body, separators=(",", ":")).encode())

    def _on_update(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        body = bytes(msg[hdr_len:] if hdr_len > 0 else msg).decode("utf-8", "replace").strip()
        tokens = subject.split(b".")
        # $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE, or the older $SYS.ACCOUNT.<key>.CLAIMS.UPDATE
        key = tokens[3].decode() if len(tokens) == 6 else tokens[2].decode() if len(tokens) == 5 else ""
        # the cache's answers name it (nats-server's "jwt update cache ...")
        what = "jwt update cache" if self.cache else "jwt update"
        try:
            claims = decode(body, "account")
        except JWTError as exc:
            self._respond(reply, "n/a", f"{what} resulted in error", str(exc))
            return
        account = str(claims.get("sub"))
        if key and key != account:
            self._respond(reply, key, f"{what} resulted in error", "subject does not match jwt content")
            return
        if self.cache and self.load(account) is None:
            self._respond(reply, account, "jwt update cache skipped", None)
            return
        trusted = self.server.auth.trust
        if trusted is None or claims.get("iss") not in trusted.operator_keys or not time_valid(claims):
            failed = "jwt update cache validation failed" if self.cache else "jwt validation failed"
            self._respond(reply, account, failed, "not signed by a trusted operator or expired")
            return
        try:
            written = self._save_if_newer(account, body)
        except (OSError, ValueError) as exc:
            self._respond(reply, account, f"{what} resulted in error", str(exc))
            return
        if written:
            self.refresh()
        self._respond(reply, account, "jwt updated cache" if self.cache else "jwt updated", None)

    def refresh(self) -> None:
        """Rebuild the accounts from the directory and apply them."""
        from jsedge.config import accounts_from_jwts, config_with, resolver_jwts

        config = self.server.config
        jwts = resolver_jwts(self._pinned if self.cache else (), self.directory)
        self.server.apply_config(
            config_with(config, accounts=tuple(accounts_from_jwts(jwts)), resolver_preload=tuple(jwts))
        )

    def _on_delete(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        """`$SYS.REQ.CLAIMS.DELETE`: a JWT the operator signed for itself listing `accounts` in its
        `nats` claims; with `allow_delete` their JWTs are removed (renamed `.jwt.deleted`, as
        nats-server's default) and their clients disconnected."""
        from jsedge.jwt import JWTError, decode_generic

        body = bytes(msg[hdr_len:] if hdr_len > 0 else msg).decode("utf-8", "replace").strip()
        issuer = ""
        error = None
        keys: list[str] = []
        try:
            claims = decode_generic(body)
        except JWTError as exc:
            error = str(exc)
            claims = {}
        if error is None:
            issuer = str(claims.get("sub") or "")
            trust = self.server.auth.trust
            listed = (claims.get("nats") or {}).get("accounts")
            system = self.server.config.system_account
            if not self.server.config.resolver_allow_delete and not self.cache:
                error = "delete must be enabled in server config"
            elif claims.get("sub") != claims.get("iss"):
                error = "not self signed"
            elif trust is None or claims.get("iss") not in trust.operator_keys:
                error = "not trusted"
            elif not isinstance(listed, list) or not all(
                isinstance(key, str) and self._path(key) is not None for key in listed
            ):
                error = "malformed request"
            elif system in listed:
                error = "not allowed to delete system account"
            else:
                keys = list(listed)
        if error is not None:
            self._respond(reply, "", f"delete accounts request by {issuer} failed", error)
            return
        for key in keys:
            path = self._path(key)
            assert path is not None
            self._digest = None
            try:
                if self.cache or self.server.config.resolver_hard_delete:
                    os.remove(path)
                else:
                    os.replace(path, path + ".deleted")
            except FileNotFoundError:
                pass
        self.refresh()
        self._respond(reply, "", f"deleted {len(keys)} accounts", None)

    def _on_lookup(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if not reply:
            return
        tokens = subject.split(b".")
        if len(tokens) != 6:
            return
        token = self.load(tokens[3].decode("utf-8", "replace"))
        # an empty answer tells the asking server this one does not have it (nats-server's)
        self.server.send_internal(self.system, reply, b"", b"", token.encode() if token is not None else b"")

    def _on_list(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if not reply:
            return
        keys = self._keys()
        events = self.server.events
        body = {"data": keys, "server": events.server_info() if events is not None else {}}
        self.server.send_internal(self.system, reply, b"", b"", json.dumps(body, separators=(",", ":")).encode())


def _check_account_jwt(server: Any, key: str, token: str) -> str | None:
    """Why a looked-up account JWT is not taken (None: it is): it must decode, be account `key`'s,
    be signed by a trusted operator key and be valid now."""
    try:
        claims = decode(token, "account")
    except JWTError as exc:
        return str(exc)
    if claims.get("sub") != key:
        return "subject does not match jwt content"
    trust = server.auth.trust
    if trust is None or claims.get("iss") not in trust.operator_keys or not time_valid(claims):
        return "not signed by a trusted operator or expired"
    return None


class ResolverStartError(Exception):
    """The URL resolver's account server did not answer at start (nats-server then exits)."""


class URLResolver:
    """`resolver: URL("http://host/jwt/v1/accounts/")`: an account JWT nobody preloaded is fetched
    with an HTTP GET of the URL plus its public key (nats-server's URL resolver, 1.9 s time-out) and
    kept in memory; account updates sent to `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` replace the JWT
    of an account it holds."""

    def __init__(self, server: Any, system: Any) -> None:
        self.server = server
        self.system = system
        self.url = server.config.resolver_url
        self.fetched: dict[str, str] = {}
        self.by_key: dict[str, asyncio.Future[bool]] = {}
        self.subs: list[Any] = []

    async def probe(self) -> None:
        """GET the base URL once, as nats-server does at start: no answer, or not 200, and the
        server does not start."""
        try:
            await self.server.loop.run_in_executor(None, self._get, self.url)
        except OSError as exc:
            raise ResolverStartError(str(exc)) from None

    def start(self) -> None:
        if self.system is None:
            return
        for subject in (UPDATE, UPDATE_NEW, UPDATE_OLD):
            self.subs.append(self.server.subscribe_internal(self.system, subject, self._on_update))

    def stop(self) -> None:
        for sub in self.subs:
            self.server.unsubscribe_internal(self.system, sub)
        self.subs = []

    def fetch(self, key: str) -> asyncio.Future[bool]:
        pending = self.by_key.get(key)
        if pending is not None:
            return pending
        loop = self.server.loop
        future: asyncio.Future[bool] = loop.create_future()
        self.by_key[key] = future
        work = loop.run_in_executor(None, self._get, self.url + key)

        def done(got: asyncio.Future[str]) -> None:
            self.by_key.pop(key, None)
            problem: str | None
            try:
                token = got.result()
            except Exception as exc:
                problem = str(exc)
            else:
                if self.server.shutting_down:  # (answered after the server stopped: nothing to apply)
                    token = ""
                problem = _check_account_jwt(self.server, key, token)
                if problem is None:
                    self._keep(key, token)
            if problem is not None:
                self.server.logger.debug(f"Account fetch failed: {problem}")
            if not future.done():
                future.set_result(problem is None)

        work.add_done_callback(done)
        return future

    def _get(self, url: str) -> str:
        import urllib.error
        import urllib.request

        context = None
        tls = self.server.config.resolver_tls
        if tls is not None and url.startswith("https:"):
            from jsedge.routing.tls import build_tls_client_context

            context = build_tls_client_context(tls)
        try:
            with urllib.request.urlopen(url, timeout=self.server.config.resolver_timeout, context=context) as response:
                return str(response.read().decode("utf-8", "replace").strip())
        except urllib.error.HTTPError as exc:
            raise OSError(f'could not fetch <"{url}">: {exc.code} {exc.reason}') from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OSError(f'could not fetch <"{url}">: {exc}') from None

    def _keep(self, key: str, token: str) -> None:
        from jsedge.config import accounts_from_jwts, config_with, resolver_jwts

        self.fetched[key] = token
        config = self.server.config
        jwts = resolver_jwts([*config.resolver_preload, (key, token)], "")
        self.server.apply_config(
            config_with(config, accounts=tuple(accounts_from_jwts(jwts)), resolver_preload=tuple(jwts))
        )

    def _on_update(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        body = bytes(msg[hdr_len:] if hdr_len > 0 else msg).decode("utf-8", "replace").strip()
        try:
            claims = decode(body, "account")
        except JWTError:
            return
        key = str(claims.get("sub"))
        trust = self.server.auth.trust
        if trust is None or key not in trust.accounts:
            return  # nats-server updates only the accounts it has
        if _check_account_jwt(self.server, key, body) is None:
            self._keep(key, body)
