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

import json
import os
from typing import Any

from jsedge.jwt import JWTError, decode, time_valid

UPDATE = b"$SYS.REQ.CLAIMS.UPDATE"
UPDATE_NEW = b"$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"
UPDATE_OLD = b"$SYS.ACCOUNT.*.CLAIMS.UPDATE"
LOOKUP = b"$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"
LIST = b"$SYS.REQ.CLAIMS.LIST"
DELETE = b"$SYS.REQ.CLAIMS.DELETE"
PACK = b"$SYS.REQ.CLAIMS.PACK"


class DirResolver:
    def __init__(self, server: Any, system: Any) -> None:
        self.server = server
        self.system = system
        self.directory = server.config.resolver_dir
        self.subs: list[Any] = []
        self._digest: bytes | None = None

    def start(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self.server.logger.info(f"Managing all jwt in exclusive directory {self.directory}")
        for key, token in self.server.config.resolver_preload:
            self._save_if_newer(key, token)
        self.pack_inbox = b"$SYS._INBOX." + os.urandom(8).hex().encode() + b".pack"
        self.subs.append(self.server.subscribe_internal(self.system, PACK, self._on_pack_request, queue=b"responder"))
        self.subs.append(self.server.subscribe_internal(self.system, self.pack_inbox, self._on_pack))
        self._merged = False
        self._timer = self.server.loop.call_soon(self._sync)
        for subject, callback in (
            (UPDATE, self._on_update),
            (UPDATE_NEW, self._on_update),
            (UPDATE_OLD, self._on_update),
            (LOOKUP, self._on_lookup),
            (LIST, self._on_list),
            (DELETE, self._on_delete),
        ):
            self.subs.append(self.server.subscribe_internal(self.system, subject, callback))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sub in self.subs:
            self.server.unsubscribe_internal(self.system, sub)
        self.subs = []

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
        try:
            claims = decode(body, "account")
        except JWTError as exc:
            self._respond(reply, "n/a", "jwt update resulted in error", str(exc))
            return
        account = str(claims.get("sub"))
        trusted = self.server.auth.trust
        if trusted is None or claims.get("iss") not in trusted.operator_keys or not time_valid(claims):
            self._respond(reply, account, "jwt validation failed", "not signed by a trusted operator or expired")
            return
        if key and key != account:
            self._respond(reply, key, "jwt update resulted in error", "subject does not match jwt content")
            return
        try:
            written = self._save_if_newer(account, body)
        except (OSError, ValueError) as exc:
            self._respond(reply, account, "jwt update resulted in error", str(exc))
            return
        if written:
            self.refresh()
        self._respond(reply, account, "jwt updated", None)

    def refresh(self) -> None:
        """Rebuild the accounts from the directory and apply them."""
        from jsedge.config import accounts_from_jwts, config_with, resolver_jwts

        config = self.server.config
        jwts = resolver_jwts((), self.directory)
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
            if not self.server.config.resolver_allow_delete:
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
                os.replace(path, path + ".deleted")
            except FileNotFoundError:
                pass
        self.refresh()
        self._respond(reply, "", f"deleted {len(keys)} accounts", None)

    def _on_lookup(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if not reply:
            return
        tokens = subject.split(b".")
        token = self.load(tokens[3].decode()) if len(tokens) == 6 else None
        if token is not None:
            self.server.send_internal(self.system, reply, b"", b"", token.encode())

    def _on_list(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if not reply:
            return
        keys = self._keys()
        events = self.server.events
        body = {"data": keys, "server": events.server_info() if events is not None else {}}
        self.server.send_internal(self.system, reply, b"", b"", json.dumps(body, separators=(",", ":")).encode())
