"""Operator mode (layer 2): NATS JWTs, trusted operators, accounts from a resolver, JWT users.

The JWTs themselves are decoded and verified by jsedge.jwt (layer 0).

The trust chain, checked as nats-server checks it when a client CONNECTs with `jwt` and `sig`:
the user JWT decodes, its signature is its issuer's, it is not expired nor not yet valid; its
account (`nats.issuer_account` when a signing key issued it, else `iss`) is one the resolver knows,
whose JWT a trusted operator (or one of the operator's `signing_keys`) issued and which has not
expired; the user's issuer is the account or one of its `signing_keys`; bearer tokens skip the
nonce signature unless the account forbids them (`disallow_bearer`); allowed connection types;
the CONNECT's `sig` is the user key's signature of the INFO nonce; the account has not revoked
the user (`revocations`: issued at or before the revocation time, or `*` for all); `src` networks;
the connect time windows (`times`, `times_location`: outside them the CONNECT is refused, inside
the connection ends with the window).
Any failure is an Authorization Violation. The user's `pub`/`sub`/`resp` become its permissions
(else the account's `default_permissions`); the connection closes when the JWT expires.

The accounts a Trust knows are the resolver's: `resolver_preload` (MEMORY) and, for the full
resolver, the JWTs of its directory, updated at run time by jsedge.resolver. A user issued by a
scoped signing key gets the key's template (permissions and limits, its `{{name()}}`, `{{tag(x)}}`...
functions filled in as nats-server fills them) instead of its own, which must be empty.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import time
from typing import Any

from jsedge.jwt import JWTError, decode, time_valid, verify_signature_text


def _signing_keys(nats: dict[str, Any]) -> tuple[set[str], dict[str, dict[str, Any]]]:
    """(plain signing keys, scoped ones with their user template) of an operator's or account's
    claims."""
    plain: set[str] = set()
    scoped: dict[str, dict[str, Any]] = {}
    for entry in nats.get("signing_keys") or ():
        if isinstance(entry, str):
            plain.add(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("key"), str):
            template = entry.get("template")
            scoped[entry["key"]] = template if isinstance(template, dict) else {}
    return plain, scoped


#: The user claims a scoped signing key's template decides (the user JWT must leave them empty).
_SCOPED_FIELDS = (
    "pub", "sub", "resp", "src", "times", "times_location", "subs", "data", "payload",
    "bearer_token", "allowed_connection_types",
)  # fmt: skip


_MUSTACHE = re.compile(r"\{\{([^}]+)\}\}")


class _TemplateError(ValueError):
    pass


def _expand(subjects: list[str], user: dict[str, Any], account: dict[str, Any], strict: bool) -> list[str]:
    """nats-server's applyTemplate: each `{{...}}` of each subject filled in (`name()`,
    `subject()`, `account-name()`, `account-subject()`, `tag(x)` and `account-tag(x)`, a tag
    giving one subject per value); subjects that come out invalid are dropped, or with `strict`
    (the deny lists) refuse the user."""
    from jsedge.subjects import valid_subject

    if not any(_MUSTACHE.search(subject) for subject in subjects):
        return subjects
    user_tags = [str(t) for t in (user.get("nats") or {}).get("tags") or ()]
    account_tags = [str(t) for t in (account.get("nats") or {}).get("tags") or ()]
    out: list[str] = []
    for subject in subjects:
        sources = [match.group(0) for match in _MUSTACHE.finditer(subject)]
        values: list[list[str]] = []
        for source in sources:
            op = source[2:-2].strip()
            lowered = op.lower()
            if lowered == "name()":
                values.append([str(user.get("name") or "")])
            elif lowered == "subject()":
                values.append([str(user.get("sub") or "")])
            elif lowered == "account-name()":
                values.append([str(account.get("name") or "")])
            elif lowered == "account-subject()":
                values.append([str((user.get("nats") or {}).get("issuer_account") or "")])
            elif lowered.startswith(("tag(", "account-tag(")) and op.endswith(")"):
                name = op[op.index("(") + 1 : -1]
                prefix = name.lower() + ":"
                tags = account_tags if lowered.startswith("account-tag(") else user_tags
                found = [tag[len(prefix) :] for tag in tags if tag.startswith(prefix)]
                if not found and strict:
                    raise _TemplateError(f"generated invalid subject {subject!r}: {name!r} is not defined")
                values.append(found or [" "])
            else:
                raise _TemplateError(f"template operation in {subject!r}: {op!r} is not defined")
        for combination in itertools.product(*values):
            text = subject
            for source, value in zip(sources, combination):
                text = text.replace(source, value)
            if valid_subject(text.encode()):
                out.append(text)
            elif strict:
                raise _TemplateError("generated invalid subject")
    return out


def _apply_template(template: dict[str, Any], user: dict[str, Any], account: dict[str, Any]) -> dict[str, Any] | None:
    """The user's `nats` claims with a scoped key's template in place of its (empty) permissions
    and limits, the template's functions filled in (`_expand`); None when the user JWT set any of
    them (nats-server: "scoped users require no permissions or limits set") or a function fails."""
    nats = dict(user.get("nats") or {})
    if any(nats.get(name) for name in _SCOPED_FIELDS):
        return None
    for name in _SCOPED_FIELDS:
        if name in template:
            nats[name] = template[name]
        else:
            nats.pop(name, None)
    try:
        for side in ("pub", "sub"):
            block = nats.get(side)
            if not isinstance(block, dict):
                continue
            allow = [str(s) for s in block.get("allow") or ()]
            deny = [str(s) for s in block.get("deny") or ()]
            expanded_allow = _expand(allow, user, account, strict=False)
            expanded_deny = _expand(deny, user, account, strict=True)
            if allow and not expanded_allow:
                expanded_deny.append(">")  # nothing left to allow: allow nothing
            nats[side] = {"allow": expanded_allow, "deny": expanded_deny}
    except _TemplateError:
        return None
    return nats


def connect_window(nats: dict[str, Any], now: float | None = None) -> float | None:
    """nats-server's validateTimes: None when outside every `times` window (in `times_location`,
    else local time); else the seconds the window still lasts (0 = no windows, no end)."""
    import datetime

    windows = nats.get("times") or ()
    if not windows:
        return 0.0
    zone: datetime.tzinfo | None = None
    location = nats.get("times_location")
    if location:
        try:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(str(location))
        except (ImportError, ValueError, KeyError, OSError):
            return None
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, zone or None).astimezone(zone)
    for window in windows:
        try:
            start_t = datetime.datetime.strptime(str(window.get("start")), "%H:%M:%S").time()
            end_t = datetime.datetime.strptime(str(window.get("end")), "%H:%M:%S").time()
        except (ValueError, AttributeError):
            return None
        today = moment.date()
        start = datetime.datetime.combine(today, start_t, moment.tzinfo)
        end_day = today + datetime.timedelta(days=1) if start_t > end_t else today
        end = datetime.datetime.combine(end_day, end_t, moment.tzinfo)
        if start < moment < end:
            return (end - moment).total_seconds()
    return None


class Trust:
    """The trusted operators and the accounts the resolver knows (public key -> claims)."""

    def __init__(self, operators: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]) -> None:
        self.operator_keys: set[str] = set()
        for claims in operators:
            self.operator_keys.add(claims["sub"])
            self.operator_keys |= _signing_keys(claims.get("nats") or {})[0]
        self.accounts = accounts
        #: `resolver_pinned_accounts`: when set, only these accounts' users get in
        self.pinned: frozenset[str] = frozenset()
        #: `default_sentinel`: the user JWT of a client whose CONNECT has no valid one
        self.sentinel = ""

    def account(self, key: str) -> dict[str, Any] | None:
        claims = self.accounts.get(key)
        if claims is None or claims.get("iss") not in self.operator_keys:
            return None
        return claims

    def missing_account(self, opts: dict[str, Any]) -> str | None:
        """The account a CONNECT's user JWT belongs to when this server has no JWT for it (a
        resolver may look it up), else None."""
        token = opts.get("jwt")
        if not isinstance(token, str) or not token:
            return None
        try:
            user = decode(token, "user")
        except JWTError:
            return None
        if not time_valid(user):
            return None
        issuer = (user.get("nats") or {}).get("issuer_account") or user.get("iss")
        if not isinstance(issuer, str) or not issuer.startswith("A") or issuer in self.accounts:
            return None
        if self.pinned and issuer not in self.pinned:
            return None
        return issuer

    def authenticate(
        self, opts: dict[str, Any], nonce: str, connection_type: str, host: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(user claims, account claims) for a CONNECT, or None (Authorization Violation)."""
        token = opts.get("jwt")
        user: dict[str, Any] | None = None
        if isinstance(token, str) and token:
            try:
                user = decode(token, "user")
            except JWTError:
                user = None
        if user is None and self.sentinel:
            # no NATS user JWT in the CONNECT: the default sentinel's (nats-server's order)
            try:
                user = decode(self.sentinel, "user")
            except JWTError:
                return None
        if user is None:
            return None
        if not time_valid(user):
            return None
        nats = user.get("nats") or {}
        issuer = nats.get("issuer_account") or user["iss"]
        if self.pinned and issuer not in self.pinned:
            return None  # nats-server: "Account ... not listed as operator pinned account"
        account = self.account(issuer)
        if account is None or not time_valid(account):
            return None
        account_nats = account.get("nats") or {}
        plain, scoped = _signing_keys(account_nats)
        if user["iss"] in scoped:
            templated = _apply_template(scoped[user["iss"]], user, account)
            if templated is None:
                return None
            user = {**user, "nats": templated}
            nats = templated
        elif user["iss"] != account["sub"] and user["iss"] not in plain:
            return None
        bearer = bool(nats.get("bearer_token"))
        if bearer and (account_nats.get("limits") or {}).get("disallow_bearer"):
            return None
        allowed = {str(t).upper() for t in nats.get("allowed_connection_types") or ()}
        if allowed and connection_type not in allowed:
            return None
        if not bearer:
            signature = opts.get("sig")
            if not isinstance(signature, str) or not nonce:
                return None
            if not verify_signature_text(user["sub"], "U", nonce.encode(), signature):
                return None
        revocations = account_nats.get("revocations") or {}
        issued = user.get("iat") or 0
        for key in (user["sub"], "*"):
            revoked_at = revocations.get(key)
            if isinstance(revoked_at, (int, float)) and issued <= revoked_at:
                return None
        if not _source_allowed(nats.get("src"), host):
            return None
        window = connect_window(nats)
        if window is None:
            return None
        if window:
            # the connection ends with the window (or the JWT, if that expires first)
            ends = time.time() + window
            expires = user.get("exp")
            if not (isinstance(expires, (int, float)) and 0 < expires < ends):
                user = {**user, "exp": ends}
        return user, account


def _source_allowed(src: Any, host: str) -> bool:
    if not src:
        return True
    entries = src if isinstance(src, list) else str(src).split(",")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in entries:
        try:
            if address in ipaddress.ip_network(str(entry).strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def user_permissions(user: dict[str, Any], account: dict[str, Any]) -> Any:
    """The config-shaped Permissions of a JWT user (None: unrestricted), as nats-server's
    buildInternalNkeyUser makes them, else the account's `default_permissions`."""
    from jsedge.config import Permissions, ResponsePermission, SubjectPermission

    def side(claims: dict[str, Any], name: str) -> SubjectPermission | None:
        block = claims.get(name) or {}
        allow = tuple(str(s) for s in block.get("allow") or ())
        deny = tuple(str(s) for s in block.get("deny") or ())
        return SubjectPermission(allow=allow, deny=deny) if allow or deny else None

    def build(claims: dict[str, Any]) -> Any:
        publish, subscribe = side(claims, "pub"), side(claims, "sub")
        resp = claims.get("resp")
        responses = None
        if isinstance(resp, dict):
            max_msgs = int(resp.get("max") or 0)
            ttl = float(resp.get("ttl") or 0) / 1e9
            responses = ResponsePermission(max_msgs=max_msgs or 1, expires=ttl or 120.0)
        if publish is None and subscribe is None and responses is None:
            return None
        return Permissions(publish=publish, subscribe=subscribe, allow_responses=responses)

    own = build(user.get("nats") or {})
    if own is not None:
        return own
    return build((account.get("nats") or {}).get("default_permissions") or {})
