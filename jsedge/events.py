"""System-account request services (layer 7): nats-server's `$SYS.REQ.…` subjects (its events.go).

`nats server list/report/ping`, `nats account info` and dashboards ask servers over NATS instead of
HTTP. Every subject below is an internal subscription of the system account (so a client of any other
account publishing to it gets no responders), except the four that nats-server imports into every
account (see "Other accounts").

Server subjects (system account), each answered by this server alone:

* `$SYS.REQ.SERVER.PING` (legacy) and `$SYS.REQ.SERVER.PING.STATSZ` / `$SYS.REQ.SERVER.<id>.STATSZ`:
  `{"server":ServerInfo,"statsz":ServerStats}`. Without a reply subject the statsz goes to
  `$SYS.SERVER.<id>.STATSZ` (at most once a second, as nats-server).
* `$SYS.REQ.SERVER.PING.<KIND>` and `$SYS.REQ.SERVER.<id>.<KIND>` for IDZ, VARZ, SUBSZ, CONNZ,
  ROUTEZ, GATEWAYZ, LEAFZ, ACCOUNTZ, JSZ, HEALTHZ and RAFTZ. IDZ is the bare `{"name","host","id"}`;
  the others are `{"server":ServerInfo,"data":<the HTTP endpoint's document>}` or, on failure,
  `"error":{"code","description"}` (400 for a request body Go's json.Unmarshal would refuse, no
  `data`; 500 for an endpoint error, with `"data":null` as nats-server's typed nil). RAFTZ is `{}`:
  jsedge has no Raft groups, which is what nats-server answers then.
* Left out (no responders): EXPVARZ and IPQUEUESZ (Go runtime memstats and Go internal queues: there
  is no Python equivalent worth pretending), PROFILEZ (Go pprof profiles), the admin requests
  `$SYS.REQ.SERVER.<id>.RELOAD/KICK/LDM`, `$SYS.REQ.ACCOUNT.NSUBS`, `$SYS.DEBUG.SUBSCRIBERS` and the
  JWT claim requests. Events published: an account's client CONNECT and DISCONNECT
  (`$SYS.ACCOUNT.<account>.CONNECT|DISCONNECT`); not yet the periodic `$SYS.SERVER.<id>.STATSZ`
  and SHUTDOWN.

Account subjects (system account): `$SYS.REQ.ACCOUNT.<account>.<KIND>` for CONNZ, SUBSZ (with the
subscription list), LEAFZ, JSZ (the account's AccountDetail), INFO (`/accountz` account detail),
STATZ (silent when the account has no connections, unless `include_unused`) and CONNS (the
AccountNumConns event to the reply subject, only when the account has local connections);
`$SYS.REQ.ACCOUNT.PING.STATZ` (statz of the accounts in use); `$SYS.REQ.USER.INFO` and
`$SYS.REQ.USER.<account>.INFO` (who the requester is, with its permissions).

Other accounts: nats-server's system account exports, and every other account imports,
`$SYS.REQ.SERVER.PING.CONNZ` and `$SYS.REQ.ACCOUNT.PING.CONNZ` (connz of the importing account only),
`$SYS.REQ.ACCOUNT.PING.STATZ` (its own statz) and `$SYS.REQ.USER.INFO`. jsedge has no imports, so the
same four are internal subscriptions of each account, answered for that account; they count in its
subscriptions as nats-server's import subscriptions do (`Server` calls `sync_accounts` again after a
reload, for the accounts it added). Nothing else is reachable from outside the system account.

Request bodies: empty, or JSON decoded as Go's json.Unmarshal into nats-server's `<Kind>EventOptions`
(keys matched case-insensitively, unknown keys ignored, `null` ignored, the first type error reported
in Go's words): the filter options `server_name`, `cluster`, `host` (substring match unless
`exact_match`), `tags` (all must be server tags, case-insensitive) and `domain` — a server that does
not match stays silent — plus the endpoint's own options under their JSON names (ConnzOptions `sort`,
`auth`, `subscriptions`, `subscriptions_detail`, `offset`, `limit`, `cid`, `state` (0 open, 1 closed,
2 any), `user`, `acc`, `mqtt_client`, `filter_subject`; JSzOptions `account`, `accounts`, `streams`,
`consumer`, `config`, `leader_only`, `offset`, `limit`, …; HealthzOptions `js-enabled-only`, …).

ServerInfo: `name`, `host`, `id`, `domain` (JetStream domain), `ver`, `tags`, `metadata`, `jetstream`,
`flags`, `seq` (this server's event sequence, +1 per envelope sent) and `time`. `cluster` is never
set (no clustering) and `feature_flags` is left out (they describe nats-server JetStream internals).
`flags` carries only the JetStream bit (1): jsedge's snapshots are not nats-server's binary format and
it has no Raft traffic to move, so it does not claim those capabilities (nats-server 2.15 sends 7).

`Accept-Encoding: gzip` gets a gzip body with `Content-Encoding: gzip`; any other requested encoding
(the `nats` CLI asks for snappy) gets the plain body marked `Content-Encoding: identity`, which is what
nats-server does for encodings it cannot produce and what clients decode as uncompressed.

The monitor module (the data) is imported and a `Monitor` constructed, without its HTTP listener, on
the first request that needs it; from then on the server also keeps closed-connection snapshots for
CONNZ `state`. Importing this module costs no more than its own bytecode.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from jsedge import NATS_COMPAT_VERSION, gojson

SERVER_KINDS = (
    "IDZ",
    "STATSZ",
    "VARZ",
    "SUBSZ",
    "CONNZ",
    "ROUTEZ",
    "GATEWAYZ",
    "LEAFZ",
    "ACCOUNTZ",
    "JSZ",
    "HEALTHZ",
    "RAFTZ",
)
ACCOUNT_KINDS = ("SUBSZ", "CONNZ", "LEAFZ", "JSZ", "INFO", "STATZ", "CONNS")

#: Subjects of nats-server's automatic system imports into every other account.
IMPORTED = (
    b"$SYS.REQ.SERVER.PING.CONNZ",
    b"$SYS.REQ.ACCOUNT.PING.CONNZ",
    b"$SYS.REQ.ACCOUNT.PING.STATZ",
    b"$SYS.REQ.USER.INFO",
)

_STATSZ_INTERVAL = 1.0  # nats-server's statszRateLimit for the broadcast subject

# ------------------------------------------------------------------------------------------------
# request options: Go's json.Unmarshal into nats-server's <Kind>EventOptions

#: (JSON name, Go type as Go names it in errors, kind)
_FILTER = (
    ("server_name", "string", "str"),
    ("cluster", "string", "str"),
    ("host", "string", "str"),
    ("exact_match", "bool", "bool"),
    ("tags", "[]string", "strs"),
    ("domain", "string", "str"),
)
_CONNZ = (
    ("sort", "server.SortOpt", "str"),
    ("auth", "bool", "bool"),
    ("subscriptions", "bool", "bool"),
    ("subscriptions_detail", "bool", "bool"),
    ("offset", "int", "int"),
    ("limit", "int", "int"),
    ("cid", "uint64", "uint"),
    ("mqtt_client", "string", "str"),
    ("state", "server.ConnState", "int"),
    ("user", "string", "str"),
    ("acc", "string", "str"),
    ("filter_subject", "string", "str"),
)
_SUBSZ = (
    ("offset", "int", "int"),
    ("limit", "int", "int"),
    ("subscriptions", "bool", "bool"),
    ("account", "string", "str"),
    ("test", "string", "str"),
)
_ROUTEZ = (("subscriptions", "bool", "bool"), ("subscriptions_detail", "bool", "bool"))
_GATEWAYZ = (
    ("name", "string", "str"),
    ("accounts", "bool", "bool"),
    ("account_name", "string", "str"),
    ("subscriptions", "bool", "bool"),
    ("subscriptions_detail", "bool", "bool"),
)
_LEAFZ = (("subscriptions", "bool", "bool"), ("account", "string", "str"))
_ACCOUNTZ = (("account", "string", "str"),)
_ACCSTATZ = (("accounts", "[]string", "strs"), ("include_unused", "bool", "bool"))
_JSZ = (
    ("account", "string", "str"),
    ("accounts", "bool", "bool"),
    ("streams", "bool", "bool"),
    ("consumer", "bool", "bool"),
    ("direct_consumer", "bool", "bool"),
    ("config", "bool", "bool"),
    ("leader_only", "bool", "bool"),
    ("offset", "int", "int"),
    ("limit", "int", "int"),
    ("raft", "bool", "bool"),
    ("stream_leader_only", "bool", "bool"),
)
_HEALTHZ = (
    ("js-enabled", "bool", "bool"),
    ("js-enabled-only", "bool", "bool"),
    ("js-server-only", "bool", "bool"),
    ("js-meta-only", "bool", "bool"),
    ("account", "string", "str"),
    ("stream", "string", "str"),
    ("consumer", "string", "str"),
    ("details", "bool", "bool"),
)
_RAFTZ = (("account", "string", "str"), ("group", "string", "str"))

_ZERO = {"str": "", "bool": False, "int": 0, "uint": 0, "strs": None}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)


class OptionsError(ValueError):
    """A request body json.Unmarshal refuses: answered with code 400 and this text."""


class _Skip(Exception):
    """nats-server's errSkipZreq: this server stays silent."""


class RequestError(Exception):
    """An endpoint error nats-server answers with code 500 and this text."""


class _Int(int):
    text = ""


class _Float(float):
    text = ""


def _parse_int(text: str) -> int:
    value = _Int(text)
    value.text = text
    return value


def _parse_float(text: str) -> float:
    value = _Float(text)
    value.text = text
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _clean(text: str) -> str:
    """Lone surrogate escapes as U+FFFD, as Go decodes them."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    import re

    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_text(value: Any) -> str:
    text = getattr(value, "text", "")
    return text or json.dumps(value)


def decode_options(body: bytes, root: str, *groups: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    """Go's json.Unmarshal of `body` into the struct `server.<root>` made of `groups` of fields:
    a dict of every field (zero values for absent ones). Raises OptionsError with Go's text."""
    data = bytes(body)
    try:
        doc = json.loads(
            data.decode("utf-8", "replace"), parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant
        )
    except (ValueError, RecursionError):
        raise OptionsError(gojson.unmarshal_syntax_error(data) or "invalid JSON") from None
    fields = [field for group in groups for field in group]
    out: dict[str, Any] = {name: _ZERO[kind] for name, _, kind in fields}
    if doc is None:
        return out
    if not isinstance(doc, dict):
        raise OptionsError(f"json: cannot unmarshal {_json_kind(doc)} into Go value of type server.{root}")
    exact = {name: (name, go_type, kind) for name, go_type, kind in fields}
    folded = {name.lower(): (name, go_type, kind) for name, go_type, kind in fields}
    error: str | None = None
    for key, value in doc.items():
        field = exact.get(key) or folded.get(key.lower())
        if field is None or value is None:
            continue  # unknown keys are ignored; null leaves a field as it is
        name, go_type, kind = field
        problem: str | None = None
        if kind == "str":
            if isinstance(value, str):
                out[name] = _clean(value)
            else:
                problem = _json_kind(value)
        elif kind == "bool":
            if isinstance(value, bool):
                out[name] = value
            else:
                problem = _json_kind(value)
        elif kind in ("int", "uint"):
            low, high = _INT64 if kind == "int" else _UINT64
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problem = _json_kind(value)
            elif isinstance(value, float) or not low <= value <= high:
                problem = "number " + _number_text(value)
            else:
                out[name] = int(value)
        else:  # []string
            if not isinstance(value, list):
                problem = _json_kind(value)
            else:
                items = []
                for index, item in enumerate(value):
                    if item is None or isinstance(item, str):
                        items.append(_clean(item) if item else "")
                    elif error is None:
                        # Go 1.2x names an element by its path, without "Go struct field".
                        error = f"json: cannot unmarshal {_json_kind(item)} into {root}.{name}.{index} of type string"
                out[name] = items
        if problem is not None and error is None:
            error = f"json: cannot unmarshal {problem} into Go struct field {root}.{name} of type {go_type}"
    if error is not None:
        raise OptionsError(error)
    return out


def _accept_encoding(hdr: bytes) -> str:
    """nats-server's getAcceptEncoding: "snappy", "gzip", "identity" (anything else) or ""."""
    if not hdr:
        return ""
    value = b""
    for line in bytes(hdr).split(b"\r\n")[1:]:
        name, sep, rest = line.partition(b":")
        if sep and name == b"Accept-Encoding":
            value = rest.strip()
            break
    encoding = value.decode("latin-1").lower()
    if not encoding:
        return ""
    if "snappy" in encoding or "s2" in encoding:
        return "snappy"
    if "gzip" in encoding:
        return "gzip"
    return "identity"


def _event_id() -> str:
    """A 22-character base62 id, shaped like the nuid nats-server stamps on events."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    number = int.from_bytes(os.urandom(17), "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(alphabet[digit])
    return "".join(chars)


# ------------------------------------------------------------------------------------------------
# the services

Callback = Callable[[Any, Any, bytes, bytes, int, Any], None]


class Events:
    """The system account's request services of one `Server`."""

    def __init__(self, server: Any, system_account: Any) -> None:
        self.server = server
        self.system = system_account
        #: nats-server's per-server event sequence (ServerInfo `seq`).
        self.seq = 0
        self.subs: list[tuple[Any, Any]] = []
        self._imported: set[str] = set()
        self._last_broadcast = 0.0

    # -- wiring ----------------------------------------------------------------------------
    def start(self) -> None:
        server_id = self.server.server_id.encode()
        system = self.system
        self._sub(system, b"$SYS.REQ.SERVER.PING", self._on_statsz)
        for kind in SERVER_KINDS:
            callback = self._server_callback(kind)
            self._sub(system, b"$SYS.REQ.SERVER.PING." + kind.encode(), callback)
            self._sub(system, b"$SYS.REQ.SERVER." + server_id + b"." + kind.encode(), callback)
        for kind in ACCOUNT_KINDS:
            self._sub(system, b"$SYS.REQ.ACCOUNT.*." + kind.encode(), self._account_callback(kind))
        self._sub(system, b"$SYS.REQ.ACCOUNT.PING.STATZ", self._on_ping_statz)
        self._sub(system, b"$SYS.REQ.USER.*.INFO", self._on_user_info)
        self._sub(system, b"$SYS.REQ.USER.INFO", self._on_user_info)
        self._imported.add(system.name)
        self.sync_accounts()

    def sync_accounts(self) -> None:
        """Give every account not seen yet nats-server's system imports (also after a reload)."""
        for name, account in list(self.server.accounts.items()):
            if name in self._imported or account is self.system:
                continue
            self._imported.add(name)
            connz = self._imported_connz(account)
            # imports, not subscriptions: nats-server announces none of them to its routes
            self._sub(account, IMPORTED[0], connz, routed=False)
            self._sub(account, IMPORTED[1], connz, routed=False)
            self._sub(account, IMPORTED[2], self._imported_statz(account), routed=False)
            self._sub(account, IMPORTED[3], self._on_user_info, routed=False)

    def _sub(self, account: Any, subject: bytes, callback: Callback, routed: bool = True) -> None:
        self.subs.append((account, self.server.subscribe_internal(account, subject, callback, routed=routed)))

    @property
    def monitor(self) -> Any:
        """The server's Monitor (the HTTP listener's when `http_port` is set), built on first use."""
        server = self.server
        if server.monitor is None:
            from jsedge.monitor import Monitor

            server.monitor = Monitor(server)  # data only: its listener is never started
        return server.monitor

    # -- ServerInfo and sending -------------------------------------------------------------
    def _host(self) -> str:
        return self.server.config.listen.host or "0.0.0.0"

    def _domain(self) -> str:
        jetstream = getattr(self.server.config, "jetstream", None)
        return (getattr(jetstream, "domain", "") or "") if self.server.jetstream is not None else ""

    def server_info(self) -> dict[str, Any]:
        server = self.server
        config = server.config
        self.seq += 1
        info: dict[str, Any] = {"name": server.server_name, "host": self._host(), "id": server.server_id}
        domain = self._domain()
        if domain:
            info["domain"] = domain
        info["ver"] = NATS_COMPAT_VERSION
        tags = list(getattr(config, "server_tags", None) or ())
        if tags:
            info["tags"] = tags
        metadata = getattr(config, "server_metadata", None)
        if metadata:
            info["metadata"] = dict(sorted(metadata.items()))
        enabled = server.jetstream is not None
        info["jetstream"] = enabled
        info["flags"] = 1 if enabled else 0
        info["seq"] = self.seq
        info["time"] = _now()
        return info

    # -- account connect / disconnect events ------------------------------------------------
    def _client_info(self, client: Any, stop: str = "") -> dict[str, Any]:
        """nats-server's ClientInfo of a client connection, as its connect/disconnect events carry it."""
        from jsedge.monitor import format_time

        opts = client.opts if isinstance(getattr(client, "opts", None), dict) else {}
        info: dict[str, Any] = {
            "start": format_time(client.start),
            "host": client.remote_host,
            "id": client.cid,
            "acc": client.account.name,
        }
        user = str(opts.get("nkey") or "") or (client.user.name if client.user is not None else "")
        if user:
            info["user"] = user
        for key, field in (("name", "name"), ("lang", "lang"), ("version", "ver")):
            if opts.get(key):
                info[field] = str(opts[key])
        if stop:
            rtt = int(client.rtt * 1e9)
            if rtt:
                info["rtt"] = rtt
            info["stop"] = stop
        info["name_tag"] = client.account.name
        info["kind"] = "Client"
        info["client_type"] = getattr(client, "CLIENT_TYPE", "nats")
        return info

    def client_connected(self, client: Any) -> None:
        """`$SYS.ACCOUNT.<account>.CONNECT` (io.nats.server.advisory.v1.client_connect)."""
        doc = {
            "type": "io.nats.server.advisory.v1.client_connect",
            "id": _event_id(),
            "timestamp": _now(),
            "server": self.server_info(),
            "client": self._client_info(client),
        }
        self._send(self.system, b"$SYS.ACCOUNT." + client.account.name.encode() + b".CONNECT", doc)

    def client_disconnected(self, client: Any, reason: str) -> None:
        """`$SYS.ACCOUNT.<account>.DISCONNECT` (client_disconnect, with what it sent and received)."""
        now = _now()
        doc = {
            "type": "io.nats.server.advisory.v1.client_disconnect",
            "id": _event_id(),
            "timestamp": now,
            "server": self.server_info(),
            "client": self._client_info(client, stop=now),
            "sent": {"msgs": client.in_msgs, "bytes": client.in_bytes},
            "received": {"msgs": client.out_msgs, "bytes": client.out_bytes},
            "reason": reason,
        }
        self._send(self.system, b"$SYS.ACCOUNT." + client.account.name.encode() + b".DISCONNECT", doc)

    def _send(self, account: Any, reply: bytes, doc: dict[str, Any], encoding: str = "") -> None:
        data = gojson.dumpb(doc)
        hdr = b""
        if encoding == "gzip":
            import gzip

            data = gzip.compress(data, mtime=0)
            hdr = b"NATS/1.0\r\nContent-Encoding: gzip\r\n\r\n"
        elif encoding:
            hdr = b"NATS/1.0\r\nContent-Encoding: identity\r\n\r\n"
        self.server.send_internal(account, reply, b"", hdr, data)

    def _filtered(self, opts: dict[str, Any]) -> bool:
        """nats-server's filterRequest: True when the request is not for this server."""
        name, host, cluster = self.server.server_name, self._host(), ""
        wanted_name, wanted_host, wanted_cluster = opts["server_name"], opts["host"], opts["cluster"]
        if opts["exact_match"]:
            if (
                (wanted_name and wanted_name != name)
                or (wanted_host and wanted_host != host)
                or (wanted_cluster and wanted_cluster != cluster)
            ):
                return True
        elif (
            (wanted_name and wanted_name not in name)
            or (wanted_host and wanted_host not in host)
            or (wanted_cluster and wanted_cluster not in cluster)
        ):
            return True
        if opts["tags"]:
            mine = {tag.strip().lower() for tag in getattr(self.server.config, "server_tags", None) or ()}
            if any(tag.strip().lower() not in mine for tag in opts["tags"]):
                return True
        if opts["domain"] and opts["domain"] != (getattr(self.server.config.jetstream, "domain", "") or ""):
            return True
        return False

    def zreq(
        self,
        account: Any,
        reply: bytes,
        hdr: bytes,
        body: bytes,
        root: str,
        fields: tuple[tuple[str, str, str], ...],
        respond: Callable[[dict[str, Any]], Any],
    ) -> None:
        """nats-server's zReq: decode the options, stay silent when filtered, answer the envelope."""
        if not reply:
            return
        doc: dict[str, Any] = {}
        error = ""
        code = 0
        data: Any = None
        opts: dict[str, Any] = {}
        if body:
            try:
                opts = decode_options(body, root, fields, _FILTER)
            except OptionsError as exc:
                code, error = 400, str(exc)
            else:
                if self._filtered(opts):
                    return
        else:
            opts = decode_options(b"null", root, fields, _FILTER)
        if not error:
            try:
                data = respond(opts)
            except _Skip:
                return
            except RequestError as exc:
                code, error = 500, str(exc)
            except Exception as exc:
                code, error = 500, getattr(exc, "text", "") or str(exc)
                if not hasattr(exc, "text"):
                    import traceback

                    self.server.logger.error(f"Error answering {root} over $SYS: {traceback.format_exc()}")
        doc["server"] = self.server_info()
        if code == 400:
            doc["error"] = {"code": code, "description": error}
        elif code:
            doc["data"] = None
            doc["error"] = {"code": code, "description": error}
        else:
            doc["data"] = data
        self._send(account, reply, doc, "" if code else _accept_encoding(hdr))

    # -- server requests ---------------------------------------------------------------------
    def _server_callback(self, kind: str) -> Callback:
        if kind == "IDZ":
            return self._on_idz
        if kind == "STATSZ":
            return self._on_statsz
        spec = _SERVER_SPECS[kind]
        root, fields, method_name = spec
        respond = getattr(self, method_name)
        system = self.system

        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
            hdr, body = _split(hdr_len, msg)
            self.zreq(system, reply, hdr, body, root, fields, respond)

        return callback

    def _on_idz(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
        if reply:
            server = self.server
            self._send(self.system, reply, {"name": server.server_name, "host": self._host(), "id": server.server_id})

    def _on_statsz(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
        """nats-server's statszReq (legacy PING and STATSZ): no compression, a 400 for a bad body."""
        if not reply:
            now = time.monotonic()
            if now - self._last_broadcast < _STATSZ_INTERVAL:
                return
            self._last_broadcast = now
            reply = b"$SYS.SERVER." + self.server.server_id.encode() + b".STATSZ"
        _, body = _split(hdr_len, msg)
        if body:
            try:
                opts = decode_options(body, "StatszEventOptions", _FILTER)
            except OptionsError as exc:
                self._send(
                    self.system, reply, {"server": self.server_info(), "error": {"code": 400, "description": str(exc)}}
                )
                return
            if self._filtered(opts):
                return
        statsz = self.statsz()
        self._send(self.system, reply, {"server": self.server_info(), "statsz": statsz})

    def statsz(self) -> dict[str, Any]:
        """ServerStats, from the same counters as `/varz`."""
        from jsedge.monitor import _rss_bytes, format_time, go_number

        server = self.server
        monitor = self.monitor
        in_msgs, in_bytes, out_msgs, out_bytes = server.totals()
        active = {name for name, account in server.accounts.items() if account.clients}
        active.add(self.system.name)  # it always holds the server's own internal client in nats-server
        stats: dict[str, Any] = {
            "start": format_time(server.start_time),
            "mem": _rss_bytes(),
            "cores": os.cpu_count() or 1,
            "cpu": go_number(monitor._cpu()),
            "connections": len(server.clients),
            "total_connections": server.total_connections,
            "active_accounts": len(active),
            "subscriptions": server.subscription_count(),
            "sent": {"msgs": out_msgs, "bytes": out_bytes},
            "sent_to_clients": {"msgs": out_msgs, "bytes": out_bytes},
            "received": {"msgs": in_msgs, "bytes": in_bytes},
            "received_from_clients": {"msgs": in_msgs, "bytes": in_bytes},
            "slow_consumers": server.slow_consumers,
        }
        if server.slow_consumers:
            stats["slow_consumer_stats"] = dict(server.slow_consumer_stats)
        if server.stale_connections:
            stats["stale_connections"] = server.stale_connections
            stats["stale_connection_stats"] = dict(server.stale_connection_stats)
        stalled = int(getattr(server, "stalled_clients", 0) or 0)
        if stalled:
            stats["stalled_clients"] = stalled
        routes = server.routes
        stats["active_servers"] = 1 + (len(routes.routes) if routes is not None else 0)
        jetstream = monitor.jetstream_varz(store_dir=False)
        if jetstream:
            stats["jetstream"] = jetstream
        stats["gomaxprocs"] = 1  # one event loop, as /varz says
        return stats

    def _varz(self, opts: dict[str, Any]) -> Any:
        return self.monitor.varz()

    def _subsz(self, opts: dict[str, Any]) -> Any:
        return self.monitor.subsz(
            subs=opts["subscriptions"],
            offset=opts["offset"],
            limit=opts["limit"],
            acc=opts["account"],
            test=opts["test"],
        )

    def _connz(self, opts: dict[str, Any], account: str | None = None) -> Any:
        return self.monitor.connz(
            sort=opts["sort"],
            auth=opts["auth"],
            subs=opts["subscriptions"],
            subs_detail=opts["subscriptions_detail"],
            offset=opts["offset"],
            limit=opts["limit"],
            cid=opts["cid"],
            state=opts["state"],
            user=opts["user"],
            acc=opts["acc"] if account is None else account,
            mqtt_client=opts["mqtt_client"],
            filter_subject=opts["filter_subject"],
        )

    def _routez(self, opts: dict[str, Any]) -> Any:
        return self.monitor.routez()

    def _gatewayz(self, opts: dict[str, Any]) -> Any:
        return self.monitor.gatewayz()

    def _leafz(self, opts: dict[str, Any]) -> Any:
        return self.monitor.leafz()

    def _accountz(self, opts: dict[str, Any]) -> Any:
        return self.monitor.accountz(opts["account"])

    def _jsz(self, opts: dict[str, Any]) -> Any:
        js = self.server.jetstream
        cluster = getattr(js, "cluster", None)
        if opts["leader_only"] and (js is None or (cluster is not None and not cluster.is_meta_leader)):
            # no meta leader without JetStream; standalone JetStream is its own leader; in a cluster
            # only the meta leader answers
            raise _Skip()
        consumers = opts["consumer"]
        streams = opts["streams"] or consumers
        return self.monitor.jsz(
            accounts=opts["accounts"] or streams,
            streams=streams,
            config=opts["config"],
            account_filter=opts["account"],
            offset=max(opts["offset"], 0),
            limit=opts["limit"],
            consumers=consumers,
            raft=opts["raft"],
            stream_leader_only=opts["stream_leader_only"],
        )

    def _healthz(self, opts: dict[str, Any]) -> Any:
        status, body = self.monitor.healthz(
            js_enabled_only=opts["js-enabled-only"] or opts["js-enabled"],
            js_server_only=opts["js-server-only"],
            js_meta_only=opts["js-meta-only"],
            details=opts["details"],
            account=opts["account"],
            stream=opts["stream"],
            consumer=opts["consumer"],
        )
        data: dict[str, Any] = {"status": body["status"], "status_code": status}
        data.update((key, value) for key, value in body.items() if key != "status")
        return data

    def _raftz(self, opts: dict[str, Any]) -> Any:
        return {}  # no Raft groups in jsedge

    # -- account requests --------------------------------------------------------------------
    def _account_callback(self, kind: str) -> Callback:
        if kind == "CONNS":
            return self._on_conns
        root, fields, respond = {
            "SUBSZ": ("SubszEventOptions", _SUBSZ, self._account_subsz),
            "CONNZ": ("ConnzEventOptions", _CONNZ, self._account_connz),
            "LEAFZ": ("LeafzEventOptions", _LEAFZ, self._account_leafz),
            "JSZ": ("JszEventOptions", _JSZ, self._account_jsz),
            "INFO": ("AccInfoEventOptions", (), self._account_info),
            "STATZ": ("AccountStatzEventOptions", _ACCSTATZ, self._account_statz),
        }[kind]
        system = self.system

        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
            hdr, body = _split(hdr_len, msg)
            name = subject.split(b".")[3].decode("utf-8", "replace")
            self.zreq(system, reply, hdr, body, root, fields, lambda opts: respond(opts, name))

        return callback

    def _account_subsz(self, opts: dict[str, Any], account: str) -> Any:
        opts = dict(opts, subscriptions=True, account=account)
        return self._subsz(opts)

    def _account_connz(self, opts: dict[str, Any], account: str) -> Any:
        return self._connz(opts, account)

    def _account_leafz(self, opts: dict[str, Any], account: str) -> Any:
        return self.monitor.leafz()

    def _account_jsz(self, opts: dict[str, Any], account: str) -> Any:
        from jsedge.errors import go_quote

        js = self.server.jetstream
        if js is None:
            raise RequestError("jetstream not enabled")
        if account not in self.server.accounts:
            raise RequestError(f"account {go_quote(account)} not found")
        jsa = js.accounts.get(account)
        if jsa is None:
            raise RequestError(f"account {go_quote(account)} not jetstream enabled")
        return self.monitor.jsz_account_detail(
            jsa, streams=opts["streams"], consumers=opts["consumer"], config=opts["config"]
        )

    def _account_info(self, opts: dict[str, Any], account: str) -> Any:
        return self.monitor.accountz(account)["account_detail"]

    def _account_statz(self, opts: dict[str, Any], account: str) -> Any:
        if account == "PING":
            raise _Skip()  # `$SYS.REQ.ACCOUNT.PING.STATZ` has its own subscription
        return self._statz(opts, [account])

    def _statz(self, opts: dict[str, Any], accounts: list[str]) -> Any:
        statz = self.monitor.accstatz(include_unused=opts["include_unused"], accounts=accounts)
        if not statz["account_statz"] and not opts["include_unused"]:
            raise _Skip()
        return statz

    def _on_ping_statz(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
        hdr, body = _split(hdr_len, msg)
        self.zreq(
            self.system,
            reply,
            hdr,
            body,
            "AccountStatzEventOptions",
            _ACCSTATZ,
            lambda opts: self._statz(opts, opts["accounts"] or []),
        )

    def _on_conns(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
        """nats-server's connsRequest: the account's AccountNumConns, when it has local clients."""
        name = subject.split(b".")[3].decode("utf-8", "replace")
        _, body = _split(hdr_len, msg)
        if body:
            try:
                request = gojson.loads(body)
            except ValueError as exc:
                self.server.logger.error(f"Error unmarshalling account connections request message: {exc}")
                return
            wanted = request.get("acc", name) if isinstance(request, dict) else name
            if wanted != name:
                self.server.logger.error("Error unmarshalled account does not match subject")
                return
        account = self.server.accounts.get(name)
        if account is None or not account.clients or not reply:
            return
        stat = self.monitor.accstatz(accounts=[name])["account_statz"][0]
        doc: dict[str, Any] = {
            "type": "io.nats.server.advisory.v1.account_connections",
            "id": _event_id(),
            "timestamp": _now(),
            "server": self.server_info(),
        }
        doc.update(stat)
        self._send(self.system, reply, doc)

    # -- requests imported into every account -----------------------------------------------
    def _imported_connz(self, account: Any) -> Callback:
        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
            hdr, body = _split(hdr_len, msg)
            self.zreq(
                account, reply, hdr, body, "ConnzEventOptions", _CONNZ, lambda opts: self._connz(opts, account.name)
            )

        return callback

    def _imported_statz(self, account: Any) -> Callback:
        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
            hdr, body = _split(hdr_len, msg)
            self.zreq(
                account,
                reply,
                hdr,
                body,
                "AccountStatzEventOptions",
                _ACCSTATZ,
                lambda opts: self._statz(opts, [account.name]),
            )

        return callback

    def _on_user_info(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: Any) -> None:
        """nats-server's userInfoReq: the requesting connection's user, account and permissions."""
        if not reply:
            return
        client_account = getattr(src, "account", None)
        account = client_account if client_account is not None else self._account_of(sub)
        user = getattr(src, "user", None)
        name = getattr(user, "name", "") or ""
        if not name and src is not None:
            opts = getattr(src, "opts", None) or {}
            name = opts.get("user", "") if isinstance(opts, dict) and isinstance(opts.get("user"), str) else ""
        data: dict[str, Any] = {"user": name, "account": account.name, "account_name": account.name}
        permissions = _public_permissions(getattr(user, "raw_permissions", None)) if user is not None else None
        if permissions is not None:
            data["permissions"] = permissions
        self._send(account, reply, {"server": self.server_info(), "data": data})

    def _account_of(self, sub: Any) -> Any:
        for account, mine in self.subs:
            if mine is sub:
                return account
        return self.system


def _public_permissions(perms: Any) -> dict[str, Any] | None:
    """nats-server's publicPermissions: `publish`/`subscribe` (allow/deny, empty lists omitted) and
    `responses` (`max`, `ttl` in ns)."""
    if perms is None:
        return None
    from jsedge.monitor import duration_ns

    out: dict[str, Any] = {}
    for key in ("publish", "subscribe"):
        part = getattr(perms, key, None)
        doc: dict[str, Any] = {}
        for which in ("allow", "deny"):
            entries = list(dict.fromkeys(getattr(part, which, None) or ())) if part is not None else []
            if entries:
                doc[which] = [" ".join(entry.split()) for entry in entries]
        out[key] = doc
    responses = getattr(perms, "allow_responses", None)
    if responses is not None:
        out["responses"] = {"max": responses.max_msgs, "ttl": duration_ns(responses.expires)}
    return out


def _split(hdr_len: int, msg: Any) -> tuple[bytes, bytes]:
    if hdr_len >= 0:
        return bytes(msg[:hdr_len]), bytes(msg[hdr_len:])
    return b"", bytes(msg)


def _now() -> str:
    from jsedge.monitor import format_time_ns

    return format_time_ns(time.time_ns())


#: Server kinds answered by `zreq`: (Go options type, its own fields, Events method).
_SERVER_SPECS: dict[str, tuple[str, tuple[tuple[str, str, str], ...], str]] = {
    "VARZ": ("VarzEventOptions", (), "_varz"),
    "SUBSZ": ("SubszEventOptions", _SUBSZ, "_subsz"),
    "CONNZ": ("ConnzEventOptions", _CONNZ, "_connz"),
    "ROUTEZ": ("RoutezEventOptions", _ROUTEZ, "_routez"),
    "GATEWAYZ": ("GatewayzEventOptions", _GATEWAYZ, "_gatewayz"),
    "LEAFZ": ("LeafzEventOptions", _LEAFZ, "_leafz"),
    "ACCOUNTZ": ("AccountzEventOptions", _ACCOUNTZ, "_accountz"),
    "JSZ": ("JszEventOptions", _JSZ, "_jsz"),
    "HEALTHZ": ("HealthzEventOptions", _HEALTHZ, "_healthz"),
    "RAFTZ": ("RaftzEventOptions", _RAFTZ, "_raftz"),
}
