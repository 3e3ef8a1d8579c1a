"""HTTP monitoring (layer 7): nats-server's `/varz`, `/connz`, `/subsz`, ... on a small asyncio server.

May import every layer below (it only reads server state and serializes snapshots). The JSON shapes,
key order, omission rules, error texts and status codes are nats-server 2.15.1's (spec/monitoring.md):
Go consumers (prometheus-nats-exporter, the `nats` CLI) decode these documents into typed structs, so a
key's JSON type matters as much as its name.

The HTTP side is deliberately minimal (no dependency): HTTP/1.1 with keep-alive, any method served
(HEAD without a body, as Go's net/http does), bounded request heads and bodies, read timeouts, and a
`307` to the cleaned path for `//`-style paths like Go's ServeMux. Responses always carry
`Content-Length`.

Formatting rules shared with nats-server (each a small tested function below):
* times: RFC 3339 in UTC with fractional seconds trimmed of trailing zeros; zero time `0001-01-01T00:00:00Z`;
* `uptime`/`idle`: nats-server's `myUptime` (`0s`, `4m51s`, `2d0h0m5s`, `1y3d4h0m0s`);
* `rtt`: Go `Duration.String()` after truncation to microseconds when between 1µs and 1ms;
* durations as integer nanoseconds; floats with an integral value as JSON integers (Go writes `2`,
  never `2.0`).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import email.utils
import json
import os
import posixpath
import re
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote_plus, unquote

from jsedge import NATS_COMPAT_VERSION, __version__, _ext, gojson
from jsedge.errors import go_quote
from jsedge.subjects import subject_matches, subjects_overlap, valid_literal_subject

# ------------------------------------------------------------------------------------------------
# formatting helpers

ZERO_TIME = "0001-01-01T00:00:00Z"

_NS = 1_000_000_000


def format_time_ns(ns: int | None) -> str:
    """RFC 3339 with up to 9 fractional digits, trailing zeros trimmed (Go's `time.RFC3339Nano`), UTC."""
    if not ns or ns <= 0:
        return ZERO_TIME
    seconds, frac = divmod(int(ns), _NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def format_time(ts: float | None) -> str:
    """`format_time_ns` for a `time.time()` float; 0/None is Go's zero time.

    A float epoch only carries ~0.2 µs of precision, so it is rounded to whole microseconds first
    rather than printing noise digits.
    """
    if not ts or ts <= 0:
        return ZERO_TIME
    return format_time_ns(round(ts * 1_000_000) * 1000)


def format_uptime(seconds: float) -> str:
    """nats-server's `myUptime`: whole seconds as `[Ny][Nd][Nh][Nm]Ns`, leading zero units omitted."""
    total = int(seconds) if seconds > 0 else 0
    mins, secs = divmod(total, 60)
    hours, mins = divmod(mins, 60)
    days, hours = divmod(hours, 24)
    years, days = divmod(days, 365)
    if years:
        return f"{years}y{days}d{hours}h{mins}m{secs}s"
    if days:
        return f"{days}d{hours}h{mins}m{secs}s"
    if hours:
        return f"{hours}h{mins}m{secs}s"
    if mins:
        return f"{mins}m{secs}s"
    return f"{secs}s"


def _fmt_frac(value: int, precision: int) -> str:
    """`value` / 10**precision with the fraction's trailing zeros (and a bare dot) removed."""
    whole, frac = divmod(value, 10**precision)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{precision}d}".rstrip("0")


def go_duration(ns: int) -> str:
    """Go's `time.Duration.String()` for an integer number of nanoseconds (`941µs`, `1.5s`, `1h0m0s`)."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = -ns if ns < 0 else ns
    if u < 1000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fmt_frac(u, 3)}\u00b5s"
    if u < _NS:
        return f"{sign}{_fmt_frac(u, 6)}ms"
    hours, rest = divmod(u, 3600 * _NS)
    mins, rest = divmod(rest, 60 * _NS)
    text = _fmt_frac(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{mins}m{text}"
    if mins:
        return f"{sign}{mins}m{text}"
    return sign + text


def format_rtt(seconds: float) -> str:
    """A client's RTT as nats-server shows it: truncated to µs when between 1 µs and 1 ms."""
    ns = int(seconds * _NS)
    if 1000 < ns < 1_000_000:
        ns -= ns % 1000
    return go_duration(ns)


def duration_ns(seconds: float | None) -> int:
    """Seconds (float) as Go `time.Duration` nanoseconds."""
    return int(round((seconds or 0) * _NS))


def go_number(value: float | int) -> float | int:
    """A float as Go's encoding/json writes it: an integral value is written without a fraction."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


# ------------------------------------------------------------------------------------------------
# query parameter decoding (nats-server's decodeBool/decodeInt/decodeUint64/decodeState)


class BadRequest(Exception):
    """A 400 with a plain-text body (nats-server writes these without a Content-Type; Go sniffs text)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_UINT_RE = re.compile(r"[0-9]+\Z")
_INT64_MAX = (1 << 63) - 1


class Query:
    """The first value of each query parameter, as Go's `r.URL.Query().Get`."""

    __slots__ = ("values",)

    def __init__(self, raw: str) -> None:
        parsed = parse_qs(raw, keep_blank_values=True) if raw else {}
        self.values = {key: vals[0] for key, vals in parsed.items()}

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def bool(self, name: str) -> bool:
        text = self.get(name)
        if text == "":
            return False
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise BadRequest(
            f"Error decoding boolean for '{name}': strconv.ParseBool: parsing {go_quote(text)}: invalid syntax"
        )

    def int(self, name: str) -> int:
        text = self.get(name)
        if text == "":
            return 0
        if not _INT_RE.match(text):
            raise BadRequest(f"Error decoding int for '{name}': strconv.Atoi: parsing {go_quote(text)}: invalid syntax")
        value = int(text)
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise BadRequest(
                f"Error decoding int for '{name}': strconv.Atoi: parsing {go_quote(text)}: value out of range"
            )
        return value

    def uint64(self, name: str) -> builtins.int:
        text = self.get(name)
        if text == "":
            return 0
        if not _UINT_RE.match(text):
            raise BadRequest(
                f"Error decoding uint64 for '{name}': strconv.ParseUint: parsing {go_quote(text)}: invalid syntax"
            )
        value = int(text)
        if value >= 1 << 64:
            raise BadRequest(
                f"Error decoding uint64 for '{name}': strconv.ParseUint: parsing {go_quote(text)}: value out of range"
            )
        return value

    def subs(self) -> tuple[builtins.bool, builtins.bool]:
        """`subs=detail` or a bool: (subs, subs_detail)."""
        if self.get("subs").lower() == "detail":
            return False, True
        return self.bool("subs"), False


STATE_OPEN, STATE_CLOSED, STATE_ALL = 0, 1, 2


def decode_state(query: Query) -> int:
    text = query.get("state")
    if text == "":
        return STATE_OPEN
    lowered = text.lower()
    if lowered == "open":
        return STATE_OPEN
    if lowered == "closed":
        return STATE_CLOSED
    if lowered in ("any", "all"):
        return STATE_ALL
    raise BadRequest(f"Error decoding state for {text}")


# ------------------------------------------------------------------------------------------------
# connection snapshots

#: ConnInfo keys in nats-server's struct order (private `_` keys hold raw values for sorting/filtering).
_CONN_KEYS = (
    "cid", "kind", "type", "ip", "port", "start", "last_activity", "stop", "reason", "rtt", "uptime",
    "idle", "pending_bytes", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "stalls", "subscriptions",
    "name", "lang", "version", "tls_version", "tls_cipher_suite", "tls_peer_certs", "tls_first",
    "authorized_user", "account", "subscriptions_list", "subscriptions_list_detail", "jwt", "issuer_key",
    "name_tag", "tags", "mqtt_client", "proxy",
)  # fmt: skip
_AUTH_KEYS = frozenset(("authorized_user", "account", "tls_peer_certs", "jwt", "issuer_key", "name_tag", "tags"))


def _text(value: Any) -> str:
    """CONNECT strings as strings: the exporter panics on a non-string `name`/`lang`/`version`."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _decode(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def sub_detail(sub: Any, account: str | None = None) -> dict[str, Any]:
    """SubDetail: `account`/`account_tag` only in /subsz listings."""
    detail: dict[str, Any] = {}
    if account:
        detail["account"] = account
        detail["account_tag"] = account
    detail["subject"] = _decode(sub.subject)
    if sub.queue:
        detail["qgroup"] = _decode(sub.queue)
    detail["sid"] = _decode(sub.sid)
    detail["msgs"] = int(sub.delivered)
    if sub.max_msgs:
        detail["max"] = int(sub.max_msgs)
    client = sub.client
    detail["cid"] = int(getattr(client, "cid", 0) or 0)
    return detail


def _last_activity(client: Any) -> float:
    """Wall-clock time of the last inbound activity (the connection keeps a monotonic stamp)."""
    start = float(getattr(client, "start", 0.0) or 0.0)
    last = float(getattr(client, "last_activity", 0.0) or 0.0)
    seen = getattr(client, "last_in_seen", None)
    if seen is not None:
        last = max(last, time.time() - (time.monotonic() - seen))
    return max(last, start)


def _pending_bytes(client: Any) -> int:
    pending = len(getattr(client, "outbuf", b"") or b"")
    transport = getattr(client, "transport", None)
    if transport is not None and not getattr(client, "closed", False):
        try:
            pending += transport.get_write_buffer_size()
        except Exception:
            pass
    return pending


def connection_info(
    server: Any, client: Any, subs: bool = False, closed: bool = False, *, auth: bool = True
) -> dict[str, Any]:
    """One connection's ConnInfo as a dict in nats-server's key order.

    `subs` adds `subscriptions_list_detail` (rendering turns it into the plain list when asked);
    `closed` adds `stop`/`reason` and freezes `uptime`/`idle` at the close time (and, like nats-server's
    closed snapshots, account-qualified subscription details and no `name_tag`). With `auth` the
    auth-only keys are included; `render_conn` drops them unless `/connz?auth=true`. The private
    `_start`, `_last`, `_stop`, `_rtt`, `_user`, `_account` keys carry raw values for sorting and
    filtering; `render_conn` strips them. `Server.unregister_client` stores `closed=True, subs=True`
    snapshots in `server.closed_clients`.
    """
    start = float(client.start)
    last = _last_activity(client)
    stop = float(getattr(client, "stop", 0.0) or 0.0) if closed else 0.0
    if closed and not stop:
        stop = time.time()
    now = stop if closed else time.time()
    opts = getattr(client, "opts", None) or {}
    account = getattr(getattr(client, "account", None), "name", "") or ""
    user = getattr(client, "user", None)
    user_name = _text(getattr(user, "name", "")) if user is not None else ""
    if not user_name:
        user_name = _text(opts.get("user", "")) if isinstance(opts, dict) else ""
    rtt = float(getattr(client, "rtt", 0.0) or 0.0)
    info: dict[str, Any] = {
        "cid": int(client.cid),
        "kind": "Client",
        "type": getattr(client, "CLIENT_TYPE", "nats"),
        "ip": _text(getattr(client, "remote_host", "")),
        "port": int(getattr(client, "remote_port", 0) or 0),
        "start": format_time(start),
        "last_activity": format_time(last),
    }
    if closed:
        info["stop"] = format_time(stop)
        reason = getattr(client, "closed_reason", None)
        reason_text = _text(getattr(reason, "value", reason)) if reason is not None else ""
        if reason_text:
            info["reason"] = reason_text
    if rtt > 0:
        info["rtt"] = format_rtt(rtt)
    info["uptime"] = format_uptime(now - start)
    info["idle"] = format_uptime(now - last)
    info["pending_bytes"] = 0 if closed else _pending_bytes(client)
    info["in_msgs"] = int(client.in_msgs)
    info["out_msgs"] = int(client.out_msgs)
    info["in_bytes"] = int(client.in_bytes)
    info["out_bytes"] = int(client.out_bytes)
    client_subs = getattr(client, "subs", None) or {}
    info["subscriptions"] = len(client_subs)
    mqtt_id = _text(getattr(client, "mqtt_client", "") or "")
    if mqtt_id:
        info["mqtt_client"] = mqtt_id
    if isinstance(opts, dict):
        for key in ("name", "lang", "version"):
            value = _text(opts.get(key, ""))
            if value:
                info[key] = value
    tls_version = _text(getattr(client, "tls_version", ""))
    if tls_version:
        info["tls_version"] = tls_version
    tls_cipher = _text(getattr(client, "tls_cipher", ""))
    if tls_cipher:
        info["tls_cipher_suite"] = tls_cipher
    tls = getattr(getattr(server, "config", None), "tls", None)
    if tls is not None and getattr(tls, "handshake_first", False):
        info["tls_first"] = True
    if auth:
        if user_name:
            info["authorized_user"] = user_name
        if account and account != "$G":
            info["account"] = account
    if subs and client_subs:
        # nats-server's closed snapshots keep account-qualified details (its newSubDetail).
        detail_account = account if closed else None
        info["subscriptions_list_detail"] = [sub_detail(sub, detail_account) for sub in list(client_subs.values())]
    if auth and account and not closed:
        info["name_tag"] = account
    info["_start"] = start
    info["_last"] = last
    info["_stop"] = stop
    info["_rtt"] = rtt
    info["_user"] = _text(opts.get("user", "")) if isinstance(opts, dict) and not closed else user_name
    # nats-server remembers a closed connection's account only when it is not the global account, so
    # `/connz?state=closed&acc=$G` matches nothing there (verified on 2.15.1).
    info["_account"] = "" if closed and account == "$G" else account
    return info


def _mqtt_varz(server: Any) -> dict[str, Any]:
    """nats-server's MQTTOptsVarz: the configured values (every field omitted when empty)."""
    mqtt = server.config.mqtt
    if not mqtt.port:
        return {}
    out: dict[str, Any] = {}
    host = mqtt.host or "0.0.0.0"
    out["host"] = host
    out["port"] = int(getattr(server, "mqtt_port", 0) or mqtt.port)
    if mqtt.no_auth_user:
        out["no_auth_user"] = mqtt.no_auth_user
    if mqtt.auth_timeout:
        out["auth_timeout"] = go_number(float(mqtt.auth_timeout))
    out["tls_timeout"] = go_number(float(mqtt.tls.timeout or 2.0) if mqtt.tls is not None else 2.0)
    if mqtt.js_domain:
        out["js_domain"] = mqtt.js_domain
    if mqtt.ack_wait:
        out["ack_wait"] = int(mqtt.ack_wait * 1e9)
    if mqtt.max_ack_pending:
        out["max_ack_pending"] = mqtt.max_ack_pending
    return out


def render_conn(info: dict[str, Any], subs: bool, subs_detail: bool, auth: bool) -> dict[str, Any]:
    """The public ConnInfo: private keys dropped, auth and subscription keys only when asked for."""
    out: dict[str, Any] = {}
    details = info.get("subscriptions_list_detail")
    for key in _CONN_KEYS:
        if key == "subscriptions_list":
            if subs and not subs_detail and details:
                out[key] = [d["subject"] for d in details]
            continue
        if key == "subscriptions_list_detail":
            if subs_detail and details:
                out[key] = details
            continue
        if key not in info:
            continue
        if key in _AUTH_KEYS and not auth:
            continue
        out[key] = info[key]
    return out


# Sort keys: (key function, descending). Ties keep cid order (Python's sort is stable; Go's is not
# stable at all, so any tie order is compatible).
_SORTS: dict[str, tuple[Callable[[dict[str, Any], float], Any], bool]] = {
    "cid": (lambda c, now: c["cid"], False),
    "start": (lambda c, now: c["cid"], False),
    "subs": (lambda c, now: c["subscriptions"], True),
    "pending": (lambda c, now: c["pending_bytes"], True),
    "msgs_to": (lambda c, now: c["out_msgs"], True),
    "msgs_from": (lambda c, now: c["in_msgs"], True),
    "bytes_to": (lambda c, now: c["out_bytes"], True),
    "bytes_from": (lambda c, now: c["in_bytes"], True),
    "last": (lambda c, now: c["_last"], True),
    "idle": (lambda c, now: (c["_stop"] or now) - c["_last"], True),
    # Verified on 2.15.1: uptime sorts ascending (shortest-lived first), unlike the other counters.
    "uptime": (lambda c, now: (c["_stop"] or now) - c["_start"], False),
    "stop": (lambda c, now: c["_stop"], True),
    "reason": (lambda c, now: c.get("reason", ""), False),
    "rtt": (lambda c, now: c["_rtt"], True),
}

DEFAULT_LIST_SIZE = 1024


# ------------------------------------------------------------------------------------------------
# process usage


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _cert_not_after(cert_file: str) -> float | None:
    try:
        decoded = ssl._ssl._test_decode_cert(cert_file)  # type: ignore[attr-defined]
        return float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except Exception:
        return None


# ------------------------------------------------------------------------------------------------
# the HTTP server

_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024
_HEAD_TIMEOUT = 10.0
_IDLE_TIMEOUT = 60.0
_MAX_REQUESTS_PER_CONNECTION = 10_000

_REASONS = {
    200: "OK",
    307: "Temporary Redirect",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_JSON_HEADERS = (("Access-Control-Allow-Origin", "*"), ("Content-Type", "application/json"))
_TEXT_HEADERS = (("Content-Type", "text/plain; charset=utf-8"),)

_INDEX_LINKS = (
    ("varz", "General"),
    ("jsz", "JetStream"),
    ("connz", "Connections"),
    ("accountz", "Accounts"),
    ("accstatz", "Account Stats"),
    ("subsz", "Subscriptions"),
    ("routez", "Routes"),
    ("leafz", "LeafNodes"),
    ("gatewayz", "Gateways"),
    ("healthz", "Health Probe"),
)


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = list(headers)
        self.body = body


def _json(obj: Any, status: int = 200, compact: bool = False) -> Response:
    body = gojson.dumpb(obj) if compact else gojson.dumpb(obj, indent=2)
    return Response(status, _JSON_HEADERS, body)


def _text_response(status: int, text: str) -> Response:
    return Response(status, _TEXT_HEADERS, text.encode())


def _not_found() -> Response:
    return Response(404, (*_TEXT_HEADERS, ("X-Content-Type-Options", "nosniff")), b"404 page not found\n")


class Monitor:
    """The monitoring listener of one `Server`."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.listener: asyncio.Server | None = None
        self.host = ""
        self.port = 0
        self._connections: set[asyncio.Task[Any]] = set()
        self._cpu_wall = time.monotonic()
        self._cpu_time = _cpu_seconds()
        self._cpu_percent = 0.0
        self._routes: dict[str, tuple[str, Callable[[Query], Response]]] = {}
        self._base = ""
        self._build_routes()

    # -- lifecycle -------------------------------------------------------------------------
    def _build_routes(self) -> None:
        base = _text(getattr(self.server.config.monitor, "base_path", "") or "")
        if base and not base.startswith("/"):
            base = "/" + base
        base = posixpath.normpath(base) if base else ""
        self._base = "" if base in ("", "/", ".") else base
        table: dict[str, tuple[str, Callable[[Query], Response]]] = {
            "/varz": ("/varz", self.handle_varz),
            "/connz": ("/connz", self.handle_connz),
            "/subsz": ("/subsz", self.handle_subsz),
            "/subscriptionsz": ("/subsz", self.handle_subsz),
            "/routez": ("/routez", self.handle_routez),
            "/leafz": ("/leafz", self.handle_leafz),
            "/gatewayz": ("/gatewayz", self.handle_gatewayz),
            "/accountz": ("/accountz", self.handle_accountz),
            "/accstatz": ("/accstatz", self.handle_accstatz),
            "/jsz": ("/jsz", self.handle_jsz),
            "/healthz": ("/healthz", self.handle_healthz),
            "/metrics": ("/metrics", self.handle_metrics),
            # the web console (jsedge.console): HTML over the same snapshots
            "/console": ("/console", self.handle_console),
            "/console/streams": ("/console/streams", self.handle_console_streams),
            "/console/stream": ("/console/stream", self.handle_console_stream),
            "/console/connections": ("/console/connections", self.handle_console_connections),
            "/console/kv": ("/console/kv", self.handle_console_kv),
            "/console/objects": ("/console/objects", self.handle_console_objects),
            "/console/accounts": ("/console/accounts", self.handle_console_accounts),
            "/console/cluster": ("/console/cluster", self.handle_console_cluster),
            "/console/leafs": ("/console/leafs", self.handle_console_leafs),
        }
        routes = {self._base + path: entry for path, entry in table.items()}
        routes[self._base or "/"] = ("/", self.handle_root)
        self._routes = routes

    async def start(self) -> int:
        config = self.server.config
        host = config.monitor.host or config.listen.host or "0.0.0.0"
        port = config.monitor.port
        if port is None or port < 0:
            port = 0
        self.listener = await asyncio.start_server(
            self._serve_connection, host=host, port=port, limit=_MAX_HEAD, reuse_address=True
        )
        self.host = host
        self.port = self.listener.sockets[0].getsockname()[1]
        shown = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.server.logger.info(f"Starting http monitor on {shown}")
        return self.port

    async def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if listener is not None:
            try:
                await asyncio.wait_for(listener.wait_closed(), 2.0)
            except (TimeoutError, Exception):
                pass

    # -- HTTP ------------------------------------------------------------------------------
    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            for count in range(_MAX_REQUESTS_PER_CONNECTION):
                timeout = _HEAD_TIMEOUT if count == 0 else _IDLE_TIMEOUT
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                except asyncio.LimitOverrunError:
                    await self._write(writer, _text_response(431, "431 Request Header Fields Too Large"), False, False)
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                keep_alive = await self._handle_head(head, reader, writer)
                if not keep_alive:
                    return
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self.server.logger.error(f"http monitor: {exc!r}")
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _handle_head(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._write(writer, _text_response(400, "400 Bad Request"), False, False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                await self._write(writer, _text_response(400, "400 Bad Request"), False, False)
                return False
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = ("close" not in connection) if version == "HTTP/1.1" else ("keep-alive" in connection)
        if "transfer-encoding" in headers:
            # Monitoring requests carry no body; a chunked one is not worth parsing: answer and close.
            keep_alive = False
        length_text = headers.get("content-length", "0") or "0"
        if not length_text.isdigit():
            await self._write(writer, _text_response(400, "400 Bad Request"), False, False)
            return False
        length = int(length_text)
        if length > _MAX_BODY:
            await self._write(writer, _text_response(413, "413 Request Entity Too Large"), False, False)
            return False
        body = b""
        if length:
            try:
                body = await asyncio.wait_for(reader.readexactly(length), _HEAD_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return False
        if not self._authorized(target, headers):
            response = Response(
                401,
                (
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("WWW-Authenticate", 'Basic realm="jsedge monitoring"'),
                ),
                b"401 Unauthorized\n",
            )
        elif method.upper() == "POST" and target.split("?", 1)[0] == self._base + "/console/action":
            response = await self.console_action(body, headers)
        else:
            response = self.dispatch(target)
        await self._write(writer, response, method.upper() != "HEAD", keep_alive)
        return keep_alive

    # -- console actions -------------------------------------------------------------------
    def _actions(self, query: Query) -> dict[str, str] | None:
        """What the console's action forms need (None: actions are off), and the outcome of the
        last action (`done=`)."""
        if not self.server.config.monitor.console_actions:
            return None
        return {"csrf": self.console_token(), "done": query.get("done")}

    def console_token(self) -> str:
        """The token the console's forms carry (a cross-site form cannot know it)."""
        token = getattr(self, "_console_token", None)
        if token is None:
            token = os.urandom(16).hex()
            self._console_token = token
        return token

    async def console_action(self, body: bytes, headers: dict[str, str]) -> Response:
        """One console action (`http: { console: { actions: true } }`), through the same
        JetStream API and publish path a client uses, and logged; then back to the page."""
        monitor = self.server.config.monitor
        if not monitor.console_actions:
            return _text_response(403, "403 Forbidden: console actions are off (http: { console: { actions: true } })")
        form = {
            key: values[0] for key, values in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()
        }
        if form.get("csrf") != self.console_token():
            return _text_response(403, "403 Forbidden: stale or missing form token")
        action, acc, stream = form.get("action", ""), form.get("acc", "$G"), form.get("stream", "")
        account = self.server.accounts.get(acc)
        if account is None:
            return _text_response(400, "400 Bad Request: no such account")
        who = monitor.auth_user or "token"
        logger = self.server.logger
        if action == "publish":
            subject = form.get("subject", "")
            if not subject or not valid_literal_subject(subject.encode()):
                return _text_response(400, "400 Bad Request: invalid subject")
            self.server.send_internal(account, subject.encode(), b"", b"", form.get("payload", "").encode())
            logger.info(f"Console action by {who}: published to {subject!r} in account {acc!r}")
            outcome = f"published to {subject}"
        elif action in ("purge", "delete", "stepdown"):
            api = {
                "purge": (f"STREAM.PURGE.{stream}", {}),
                "delete": (f"STREAM.MSG.DELETE.{stream}", {"seq": int(form.get("seq") or 0) or -1}),
                "stepdown": (f"STREAM.LEADER.STEPDOWN.{stream}", None),
            }[action]
            answer = await self._js_request(account, f"$JS.API.{api[0]}", api[1])
            error = answer.get("error") if isinstance(answer, dict) else {"description": "no answer"}
            described = f"{action} {stream!r} in account {acc!r}" + (
                f" seq {form.get('seq')}" if action == "delete" else ""
            )
            if error:
                logger.warn(f"Console action by {who}: {described} failed: {error.get('description')}")
                outcome = f"{action} failed: {error.get('description')}"
            else:
                logger.info(f"Console action by {who}: {described}")
                outcome = f"{action} done"
        else:
            return _text_response(400, "400 Bad Request: unknown action")
        back = form.get("back") or f"{self._base}/console"
        if not back.startswith(f"{self._base}/console"):
            back = f"{self._base}/console"
        separator = "&" if "?" in back else "?"
        location = f"{back}{separator}done={quote_plus(outcome)}"
        return Response(303, (("Location", location), ("Content-Type", "text/plain; charset=utf-8")), b"")

    async def _js_request(self, account: Any, subject: str, request: dict[str, Any] | None) -> Any:
        server = self.server
        inbox = b"_INBOX.console." + os.urandom(8).hex().encode()
        future: asyncio.Future[bytes] = server.loop.create_future()

        def reply(_sub: Any, _src: Any, _subject: bytes, _reply: bytes, hdr_len: int, msg: bytes) -> None:
            if not future.done():
                future.set_result(bytes(msg[hdr_len:] if hdr_len > 0 else msg))

        sub = server.subscribe_internal(account, inbox, reply, routed=True)
        try:
            payload = json.dumps(request).encode() if request is not None else b""
            server.send_internal(account, subject.encode(), inbox, b"", payload)
            try:
                data = await asyncio.wait_for(future, 5.0)
            except TimeoutError:
                return {"error": {"description": "timeout"}}
            return json.loads(data) if data else {"error": {"description": "no responders"}}
        finally:
            server.unsubscribe_internal(account, sub)

    def _authorized(self, target: str, headers: dict[str, str]) -> bool:
        """The monitoring port's opt-in authentication (`http: { auth: ... }`): HTTP Basic with the
        user and password, or the token as a bearer token (or as the Basic password); /healthz
        stays open for health checks (it shows no data)."""
        monitor = self.server.config.monitor
        user, password, token = monitor.auth_user, monitor.auth_password, monitor.auth_token
        if not (user or token):
            return True
        path = target.split("?", 1)[0]
        if path == self._base + "/healthz":
            return True
        from jsedge.routing.auth import secret_matches

        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and token:
            return secret_matches(token, credentials.strip())
        if scheme != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        given_user, _, given_password = decoded.partition(":")
        if token:
            return secret_matches(token, given_password)
        return secret_matches(user, given_user) and secret_matches(password, given_password)

    async def _write(self, writer: asyncio.StreamWriter, response: Response, body: bool, keep_alive: bool) -> None:
        reason = _REASONS.get(response.status, "")
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        for name, value in response.headers:
            lines.append(f"{name}: {value}")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        lines.append(f"Content-Length: {len(response.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        if body:
            data += response.body
        writer.write(data)
        await writer.drain()

    def dispatch(self, target: str) -> Response:
        """Route one request target (path and query) to its handler."""
        if target.startswith(("http://", "https://")):  # absolute-form: keep the path only
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        raw_path, _, query = target.partition("#")[0].partition("?")
        path = unquote(raw_path) or "/"
        if not path.startswith("/"):
            return _text_response(400, "400 Bad Request")
        cleaned = posixpath.normpath(path)
        if cleaned.startswith("//"):
            cleaned = "/" + cleaned.lstrip("/")
        if path.endswith("/") and cleaned != "/":
            cleaned += "/"
        if cleaned != path:
            location = cleaned + (f"?{query}" if query else "")
            return Response(307, (("Content-Type", "text/html; charset=utf-8"), ("Location", location)), b"")
        entry = self._routes.get(path)
        if entry is None:
            return _not_found()
        stat_key, handler = entry
        stats = self.server.http_req_stats
        stats[stat_key] = stats.get(stat_key, 0) + 1
        try:
            return handler(Query(query))
        except BadRequest as exc:
            return _text_response(400, exc.text)

    # -- shared pieces -----------------------------------------------------------------------
    @staticmethod
    def _now() -> str:
        return format_time_ns(time.time_ns())

    def _system_account(self) -> str:
        config = self.server.config
        if getattr(config, "no_system_account", False):
            return ""
        return config.system_account or "$SYS"

    # -- / ---------------------------------------------------------------------------------
    def handle_root(self, query: Query) -> Response:
        links = "\n".join(
            f'\t<a href=./{path}>{title}<span class="endpoint"> /{path}</span></a>' for path, title in _INDEX_LINKS
        )
        page = (
            '<html lang="en">\n\t<head>\n\t<title>jsedge monitoring</title>\n'
            '\t<style type="text/css">\n'
            "\t\tbody { font-family: ui-sans-serif,system-ui,sans-serif; margin-left: 32px }\n"
            "\t\ta { display:block; margin-left: 7px; padding-bottom: 6px; color: rgb(72 72 92); "
            "text-decoration: none }\n"
            "\t\ta:hover { font-weight: 600; color: rgb(59 50 202) }\n"
            "\t\t.endpoint { font-size: 12px; color: #999; font-family: monospace; display: none }\n"
            "\t\ta:hover .endpoint { display: inline }\n"
            "\t</style>\n\t</head>\n\t<body>\n"
            f"\t<h2>jsedge {__version__} (nats-server {NATS_COMPAT_VERSION} compatible)</h2>\n"
            '\t<a href=./console><b>Console</b><span class="endpoint"> /console</span></a>\n'
            f"{links}\n"
            '    <a href=https://docs.nats.io/running-a-nats-service/nats_admin/monitoring class="help">Help</a>\n'
            "  </body>\n</html>\n"
        )
        return Response(200, (("Content-Type", "text/html; charset=utf-8"),), page.encode())

    # -- the web console (jsedge.console) ---------------------------------------------------
    def _html(self, body: bytes) -> Response:
        return Response(200, (("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")), body)

    def handle_console(self, query: Query) -> Response:
        from jsedge import console

        varz = self.varz()
        jsz = self.jsz(streams=True, config=True)
        store_dir = str((jsz.get("config") or {}).get("store_dir") or "")
        actions = self._actions(query)
        return self._html(console.overview(self._base, varz, jsz, console.system_figures(store_dir), actions))

    def handle_console_streams(self, query: Query) -> Response:
        from jsedge import console

        jsz = self.jsz(streams=True, config=True)
        return self._html(console.streams_page(self._base, self.server.server_name, jsz))

    def handle_console_stream(self, query: Query) -> Response:
        from jsedge import console

        acc, name = query.get("acc"), query.get("name")
        page_size = 20
        jsz = self.jsz(streams=True, consumers=True, config=True, account_filter=acc) if acc else {}
        detail = None
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                if stream.get("name") == name:
                    detail = stream
        messages: list[Any] = []
        first = query.int("seq")
        store = self._console_store(acc, name)
        if detail is not None and store is not None:
            state = detail.get("state") or {}
            first = max(first, int(state.get("first_seq", 0) or 0), 1)
            last = int(state.get("last_seq", 0) or 0)
            seq = first
            while seq <= last and len(messages) < page_size:
                msg = store.load_msg(seq)
                if msg is not None:
                    messages.append(msg)
                seq += 1
        body = console.stream_page(
            self._base, self.server.server_name, acc, detail, messages, first, page_size, self._actions(query)
        )
        return self._html(body)

    def _console_store(self, acc: str, stream: str) -> Any:
        js = self.server.jetstream
        jsa = js.accounts.get(acc) if js is not None else None
        found = jsa.streams.get(stream) if jsa is not None else None
        return found.store if found is not None else None

    def handle_console_kv(self, query: Query) -> Response:
        from jsedge import console

        acc, bucket = query.get("acc"), query.get("bucket")
        store = self._console_store(acc, f"KV_{bucket}")
        keys: list[tuple[str, Any, int]] = []
        if store is not None:
            prefix = f"$KV.{bucket}."
            states = store.subjects_state(f"{prefix}>".encode())
            for subject in sorted(states)[:500]:
                msg = store.load_last_msg(subject)
                if msg is not None:
                    keys.append((subject.decode(errors="replace")[len(prefix) :], msg, states[subject].msgs))
        return self._html(console.kv_page(self._base, self.server.server_name, acc, bucket, keys))

    def handle_console_objects(self, query: Query) -> Response:
        from jsedge import console

        acc, bucket = query.get("acc"), query.get("bucket")
        store = self._console_store(acc, f"OBJ_{bucket}")
        objects: list[dict[str, Any]] = []
        if store is not None:
            states = store.subjects_state(f"$O.{bucket}.M.>".encode())
            for subject in sorted(states)[:500]:
                msg = store.load_last_msg(subject)
                try:
                    info = json.loads(msg.data) if msg is not None else None
                except ValueError:
                    info = None
                if isinstance(info, dict):
                    objects.append(info)
        return self._html(console.objects_page(self._base, self.server.server_name, acc, bucket, objects))

    def handle_console_connections(self, query: Query) -> Response:
        from jsedge import console

        connz = self.connz(limit=1024, subs=True)
        return self._html(console.connections_page(self._base, self.server.server_name, connz))

    def handle_console_accounts(self, query: Query) -> Response:
        from jsedge import console

        jsz = self.jsz(streams=True)
        return self._html(
            console.accounts_page(self._base, self.server.server_name, self.accstatz(include_unused=True), jsz)
        )

    def handle_console_cluster(self, query: Query) -> Response:
        from jsedge import console

        jsz = self.jsz(streams=True, config=True)
        return self._html(console.cluster_page(self._base, self.server.server_name, self.varz(), self.routez(), jsz))

    def handle_console_leafs(self, query: Query) -> Response:
        from jsedge import console

        return self._html(console.leafs_page(self._base, self.server.server_name, self.varz(), self.leafz()))

    # -- /varz -----------------------------------------------------------------------------
    def _cpu(self) -> float:
        """Process CPU percent over the interval since the previous sample (at most once a second)."""
        now = time.monotonic()
        elapsed = now - self._cpu_wall
        if elapsed >= 1.0 or self._cpu_percent == 0.0 and elapsed > 0.05:
            cpu = _cpu_seconds()
            self._cpu_percent = round(max(cpu - self._cpu_time, 0.0) / elapsed * 100.0, 1)
            self._cpu_wall, self._cpu_time = now, cpu
        return self._cpu_percent

    def varz(self) -> dict[str, Any]:
        server = self.server
        config = server.config
        limits = config.limits
        info_base = getattr(server, "_info_base", {}) or {}
        tls = config.tls
        varz: dict[str, Any] = {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "version": NATS_COMPAT_VERSION,
            "proto": 1,
            "git_commit": f"jsedge-{__version__}",
            "go": info_base.get("go", "python"),
            "host": config.listen.host or "0.0.0.0",
            "port": server.port or config.listen.port,
        }
        for key in ("auth_required", "tls_required", "tls_verify"):
            if info_base.get(key):
                varz[key] = True
        if info_base.get("connect_urls"):
            varz["connect_urls"] = list(info_base["connect_urls"])
        varz["max_connections"] = limits.max_connections
        if limits.max_subscriptions:
            varz["max_subscriptions"] = limits.max_subscriptions
        varz["ping_interval"] = duration_ns(limits.ping_interval)
        varz["ping_max"] = limits.ping_max
        varz["http_host"] = config.monitor.host or config.listen.host or "0.0.0.0"
        varz["http_port"] = server.http_port or self.port
        varz["http_base_path"] = _text(getattr(config.monitor, "base_path", "") or "")
        varz["https_port"] = getattr(config.monitor, "https_port", 0) or 0
        varz["auth_timeout"] = go_number(float(getattr(server, "auth_timeout", None) or config.auth.timeout or 2.0))
        varz["max_control_line"] = limits.max_control_line
        varz["max_payload"] = limits.max_payload
        varz["max_pending"] = limits.max_pending
        # Gateways do not exist in jsedge: nats-server's shape for "not configured".
        varz["cluster"] = self.cluster_varz()
        varz["gateway"] = {}
        varz["leaf"] = self.leaf_varz()
        varz["mqtt"] = _mqtt_varz(server)
        varz["websocket"] = _websocket_varz(server)
        varz["jetstream"] = self.jetstream_varz()
        varz["tls_timeout"] = go_number(float(tls.timeout if tls is not None and tls.timeout else 2.0))
        varz["write_deadline"] = duration_ns(limits.write_deadline)
        start = server.start_time
        varz["start"] = format_time(start)
        varz["now"] = self._now()
        varz["uptime"] = format_uptime(time.time() - start)
        varz["mem"] = _rss_bytes()
        varz["cores"] = os.cpu_count() or 1
        # One event loop runs everything: jsedge uses one core, the honest GOMAXPROCS equivalent.
        varz["gomaxprocs"] = 1
        varz["cpu"] = go_number(self._cpu())
        varz["connections"] = len(server.clients)
        varz["total_connections"] = server.total_connections
        routes = server.routes
        varz["routes"] = len(routes.routes) if routes is not None else 0
        varz["remotes"] = len(routes.routes) if routes is not None else 0
        varz["leafnodes"] = len(server.leafnodes.leafs) if server.leafnodes is not None else 0
        in_msgs, in_bytes, out_msgs, out_bytes = server.totals()
        varz["in_msgs"] = in_msgs
        varz["in_bytes"] = in_bytes
        varz["in_client_msgs"] = in_msgs
        varz["in_client_bytes"] = in_bytes
        varz["out_msgs"] = out_msgs
        varz["out_bytes"] = out_bytes
        varz["out_client_msgs"] = out_msgs
        varz["out_client_bytes"] = out_bytes
        varz["slow_consumers"] = server.slow_consumers
        varz["stale_connections"] = server.stale_connections
        varz["stalled_clients"] = int(getattr(server, "stalled_clients", 0) or 0)
        varz["subscriptions"] = server.subscription_count()
        # Go marshals a map with sorted keys.
        varz["http_req_stats"] = dict(sorted(server.http_req_stats.items()))
        varz["config_load_time"] = format_time(server.config_load_time)
        varz["config_digest"] = _text(getattr(config, "config_digest", "") or "")
        tags = list(getattr(config, "server_tags", None) or ())
        if tags:
            varz["tags"] = [_text(tag) for tag in tags]
        metadata = getattr(config, "server_metadata", None)
        if metadata:
            varz["metadata"] = dict(sorted(metadata.items()))
        system_account = self._system_account()
        if system_account:
            varz["system_account"] = system_account
        varz["slow_consumer_stats"] = dict(server.slow_consumer_stats)
        varz["stale_connection_stats"] = dict(server.stale_connection_stats)
        varz["disk_io_wait_stats"] = {"waiters": 0, "waits": 0, "wait_time": 0, "max_wait_time": 0}
        if tls is not None and getattr(tls, "cert_file", None):
            not_after = _cert_not_after(tls.cert_file)
            if not_after is not None:
                varz["tls_cert_not_after"] = format_time(not_after)
        # jsedge extra (unknown keys are harmless to Go decoders): which compiled twins are loaded.
        varz["jsedge_twins"] = dict(sorted(_ext.LOADED.items()))
        return varz

    def handle_varz(self, query: Query) -> Response:
        return _json(self.varz())

    # -- /connz ----------------------------------------------------------------------------
    def connz(
        self,
        *,
        sort: str = "",
        auth: bool = False,
        subs: bool = False,
        subs_detail: bool = False,
        offset: int = 0,
        limit: int = 0,
        cid: int = 0,
        state: int = STATE_OPEN,
        user: str = "",
        acc: str = "",
        mqtt_client: str = "",
        filter_subject: str = "",
    ) -> dict[str, Any]:
        """`filter_subject` (only over `$SYS`, with `acc`): open connections with a subscription
        that collides with it."""
        server = self.server
        sort = sort or "cid"
        if sort not in _SORTS:
            raise BadRequest(f"invalid sorting option: {sort}")
        offset = max(offset, 0)
        if limit <= 0:
            limit = DEFAULT_LIST_SIZE
        if sort == "stop" and state != STATE_CLOSED:
            raise BadRequest("sort by stop only valid on closed connections")
        if sort == "reason" and state != STATE_CLOSED:
            raise BadRequest("sort by reason only valid on closed connections")
        if cid > 0:
            limit = 1
        if filter_subject == ">":
            filter_subject = ""
        if filter_subject and not acc:
            raise BadRequest("filter by subject only valid with account filtering")
        now_text = self._now()
        if acc:
            account = server.accounts.get(acc)
            if account is None:
                # nats-server returns its barely-filled struct here (verified on 2.15.1).
                return {
                    "server_id": "",
                    "now": now_text,
                    "num_connections": 0,
                    "total": 0,
                    "offset": offset,
                    "limit": limit,
                    "connections": None,
                }
            open_list = sorted(account.clients, key=lambda c: c.cid)
        else:
            open_list = [server.clients[k] for k in sorted(server.clients)]
        closed_list: list[dict[str, Any]] = []
        total = 0
        if state in (STATE_OPEN, STATE_ALL):
            total += len(open_list)
        if state in (STATE_CLOSED, STATE_ALL):
            closed_list = list(server.closed_clients)
            if acc:
                closed_list = [c for c in closed_list if c.get("_account") == acc]
            total += len(closed_list)

        infos: list[dict[str, Any]] = []
        if cid > 0:
            if state in (STATE_CLOSED, STATE_ALL):
                closed_list = [c for c in closed_list if c["cid"] == cid][:1]
            if state in (STATE_OPEN, STATE_ALL):
                client = server.clients.get(cid)
                if client is not None and _interested(client, filter_subject):
                    infos.append(connection_info(server, client, subs=subs or subs_detail))
        elif state in (STATE_OPEN, STATE_ALL):
            for client in open_list:
                if acc and client.account.name != acc:
                    continue
                if user and _text((client.opts or {}).get("user", "")) != user:
                    continue
                if mqtt_client and getattr(client, "mqtt_client", "") != mqtt_client:
                    continue
                if not _interested(client, filter_subject):
                    continue
                infos.append(connection_info(server, client, subs=subs or subs_detail))
        for snapshot in closed_list:
            if acc and snapshot.get("_account") != acc:
                continue
            if user and snapshot.get("_user") != user:
                continue
            if mqtt_client and snapshot.get("mqtt_client") != mqtt_client:
                continue
            infos.append(snapshot)

        key, descending = _SORTS[sort]
        wall = time.time()
        infos.sort(key=lambda c: c["cid"])
        if sort not in ("cid", "start"):
            infos.sort(key=lambda c: key(c, wall), reverse=descending)
        page = infos[offset : offset + limit]
        return {
            "server_id": server.server_id,
            "now": now_text,
            "num_connections": len(page),
            "total": total,
            "offset": offset,
            "limit": limit,
            "connections": [render_conn(info, subs, subs_detail, auth) for info in page],
        }

    def handle_connz(self, query: Query) -> Response:
        sort = query.get("sort")
        auth = query.bool("auth")
        subs, subs_detail = query.subs()
        offset = query.int("offset")
        limit = query.int("limit")
        cid = query.uint64("cid")
        state = decode_state(query)
        return _json(
            self.connz(
                sort=sort,
                auth=auth,
                subs=subs,
                subs_detail=subs_detail,
                offset=offset,
                limit=limit,
                cid=cid,
                state=state,
                user=query.get("user"),
                acc=query.get("acc"),
                mqtt_client=query.get("mqtt_client"),
            )
        )

    # -- /subsz ----------------------------------------------------------------------------
    @staticmethod
    def sublist_stats(accounts: Iterable[Any]) -> dict[str, Any]:
        """Sum of the accounts' sublist statistics, rates and averages recomputed as nats-server does."""
        num_subs = num_cache = inserts = removes = matches = max_fanout = 0
        hits = 0.0
        total_fanout = 0.0
        for account in accounts:
            stats = account.sublist.statistics()
            num_subs += int(stats["num_subscriptions"])
            cache = int(stats["num_cache"])
            num_cache += cache
            inserts += int(stats["num_inserts"])
            removes += int(stats["num_removes"])
            account_matches = int(stats["num_matches"])
            matches += account_matches
            hits += float(stats["cache_hit_rate"]) * account_matches
            max_fanout = max(max_fanout, int(stats["max_fanout"]))
            total_fanout += float(stats["avg_fanout"]) * cache
        return {
            "num_subscriptions": num_subs,
            "num_cache": num_cache,
            "num_inserts": inserts,
            "num_removes": removes,
            "num_matches": matches,
            "cache_hit_rate": go_number(hits / matches if matches else 0.0),
            "max_fanout": max_fanout,
            "avg_fanout": go_number(total_fanout / num_cache if num_cache else 0.0),
        }

    def subsz(
        self, *, subs: bool = False, offset: int = 0, limit: int = 0, acc: str = "", test: str = ""
    ) -> dict[str, Any]:
        server = self.server
        offset = max(offset, 0)
        if limit <= 0:
            limit = DEFAULT_LIST_SIZE
        test_subject = test.encode() if test else b""
        if test and not valid_literal_subject(test_subject):
            raise BadRequest(f"invalid test subject, must be valid publish subject: {test}")
        accounts = [a for name, a in list(server.accounts.items()) if not acc or name == acc]
        result: dict[str, Any] = {"server_id": server.server_id, "now": self._now()}
        result.update(self.sublist_stats(accounts))
        details: list[dict[str, Any]] = []
        if subs:
            for account in accounts:
                for sub in account.sublist.subscriptions():
                    if sub.client is None or getattr(sub, "closed", False):
                        continue
                    if test and not subject_matches(sub.subject, test_subject):
                        continue
                    details.append(sub_detail(sub, account.name))
        page = details[offset : offset + limit]
        result["total"] = len(details)
        result["offset"] = offset
        result["limit"] = limit
        if page:
            result["subscriptions_list"] = page
        return result

    def handle_subsz(self, query: Query) -> Response:
        subs = query.bool("subs")
        offset = query.int("offset")
        limit = query.int("limit")
        return _json(self.subsz(subs=subs, offset=offset, limit=limit, acc=query.get("acc"), test=query.get("test")))

    # -- /routez, /leafz, /gatewayz (no clustering yet: nats-server's empty shapes) -------------
    def cluster_varz(self) -> dict[str, Any]:
        """/varz `cluster`: nats-server's ClusterOptsVarz, or {} without a cluster."""
        server = self.server
        routes = server.routes
        if routes is None:
            return {}
        config = server.config.cluster
        out: dict[str, Any] = {"name": routes.cluster_name, "addr": routes.host, "cluster_port": routes.port}
        out["auth_timeout"] = go_number(float(routes.auth_timeout))
        urls = [url.key for url in routes.configured.values()]
        if urls:
            out["urls"] = urls
        out["tls_timeout"] = go_number(
            float(config.tls.timeout if config.tls is not None and config.tls.timeout else 2.0)
        )
        if config.tls is not None:
            out["tls_required"] = True
            out["tls_verify"] = True
        # jsedge keeps one connection per peer (nats-server's un-pooled routes)
        out["pool_size"] = -1
        return out

    def routez(self, subs: bool = False, subs_detail: bool = False) -> dict[str, Any]:
        server = self.server
        routes = server.routes
        entries: list[dict[str, Any]] = []
        now = time.time()
        for route in list(routes.routes.values()) if routes is not None else []:
            entry: dict[str, Any] = {
                "rid": route.cid,
                "remote_id": route.remote_id,
                "remote_name": route.remote_name,
                "did_solicit": route.solicited,
                "is_configured": route.solicited and not route.implicit,
                "ip": route.remote_host,
                "port": route.remote_port,
                "start": format_time(route.start),
                "last_activity": format_time(max(route.last_activity, route.start)),
                "rtt": format_rtt(route.rtt),
                "uptime": format_uptime(now - route.start),
                "idle": format_uptime(now - max(route.last_activity, route.start)),
                "pending_size": len(route.outbuf)
                + (route.transport.get_write_buffer_size() if route.transport is not None else 0),
                "in_msgs": route.in_msgs,
                "out_msgs": route.out_msgs,
                "in_bytes": route.in_bytes,
                "out_bytes": route.out_bytes,
                "subscriptions": len(route.remote_subs),
            }
            if subs and route.remote_subs:
                entry["subscriptions_list"] = [
                    sub.subject.decode(errors="replace") for sub in route.remote_subs.values()
                ]
            if subs_detail and route.remote_subs:
                entry["subscriptions_list_detail"] = [
                    sub_detail(sub, account.decode(errors="replace"))
                    for (account, _subject, _queue), sub in route.remote_subs.items()
                ]
            entry["compression"] = "off"
            entries.append(entry)
        return {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "now": self._now(),
            "num_routes": len(entries),
            "routes": entries,
        }

    def handle_routez(self, query: Query) -> Response:
        subs, subs_detail = query.subs()
        return _json(self.routez(subs, subs_detail))

    def leaf_varz(self) -> dict[str, Any]:
        """/varz `leaf`: nats-server's LeafNodeOptsVarz, or {} without leaf nodes."""
        table = self.server.leafnodes
        if table is None:
            return {}
        out: dict[str, Any] = {}
        if table.port:
            out["host"] = table.host
            out["port"] = table.port
            out["auth_timeout"] = go_number(float(table.auth_timeout))
            # (nats-server: with no leaf listener the TLS timeout is unset, and omitted)
            tls = table.config.tls
            out["tls_timeout"] = go_number(float(tls.timeout if tls is not None and tls.timeout else 2.0))
            if tls is not None:
                out["tls_required"] = True
                if tls.verify:
                    out["tls_verify"] = True
        remotes = [{"local_account": r.account, "urls": r.redacted()} for r in table.remotes]
        if remotes:
            out["remotes"] = remotes
        return out

    def leafz(self, subs: bool = False) -> dict[str, Any]:
        table = self.server.leafnodes
        leafs: list[dict[str, Any]] = []
        for conn in list(table.leafs.values()) if table is not None else []:
            entry: dict[str, Any] = {
                "id": conn.cid,
                "name": conn.remote_name,
                "is_spoke": conn.spoke,
                "account": conn.account.name if conn.account is not None else "",
                "ip": conn.remote_host,
                "port": conn.remote_port,
                "rtt": format_rtt(conn.rtt),
                "in_msgs": conn.in_msgs,
                "out_msgs": conn.out_msgs,
                "in_bytes": conn.in_bytes,
                "out_bytes": conn.out_bytes,
                "subscriptions": len(conn.remote_subs),
            }
            if subs and conn.remote_subs:
                entry["subscriptions_list"] = sorted(
                    (subject if queue is None else subject + b" " + queue).decode(errors="replace")
                    for subject, queue in conn.remote_subs
                )
            entry["compression"] = "off"
            leafs.append(entry)
        return {"server_id": self.server.server_id, "now": self._now(), "leafnodes": len(leafs), "leafs": leafs}

    def handle_leafz(self, query: Query) -> Response:
        return _json(self.leafz(query.bool("subs")))

    def gatewayz(self) -> dict[str, Any]:
        return {"server_id": self.server.server_id, "now": self._now(), "outbound_gateways": {}, "inbound_gateways": {}}

    def handle_gatewayz(self, query: Query) -> Response:
        query.bool("accs")
        query.bool("subs")
        return _json(self.gatewayz())

    # -- /accountz, /accstatz ----------------------------------------------------------------
    def accountz(self, acc: str = "") -> dict[str, Any]:
        server = self.server
        result: dict[str, Any] = {"server_id": server.server_id, "now": self._now()}
        system_account = self._system_account()
        if system_account:
            result["system_account"] = system_account
        if not acc:
            result["accounts"] = list(server.accounts)
            return result
        account = server.accounts.get(acc)
        if account is None:
            raise BadRequest(f"Account {acc} does not exist")
        detail: dict[str, Any] = {
            "account_name": account.name,
            "update_time": format_time(getattr(account, "created", 0.0)),
        }
        if getattr(account, "is_system", False):
            detail["is_system"] = True
        detail["expired"] = False
        detail["complete"] = True
        jetstream = getattr(server, "jetstream", None)
        detail["jetstream_enabled"] = jetstream is not None and account.name in jetstream.accounts
        detail["leafnode_connections"] = 0
        detail["client_connections"] = len(account.clients)
        detail["subscriptions"] = account.sublist.count
        exports, imports = self._exchanges(account)
        if exports:
            detail["exports"] = exports
        if imports:
            detail["imports"] = imports
        detail["name_tag"] = account.name
        detail["sublist_stats"] = self.sublist_stats([account])
        result["account_detail"] = detail
        return result

    def _exchanges(self, account: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """An account's exports and imports as nats-server's `/accountz` lists them: the
        configured ones and the system account's automatic ones (jsedge.events answers those)."""
        exports: list[dict[str, Any]] = []
        imports: list[dict[str, Any]] = []
        config = getattr(account, "config", None)
        response_names = {"singleton": "Singleton", "stream": "Streamed", "chunked": "Chunked"}
        for export in getattr(config, "exports", ()):
            entry: dict[str, Any] = {"subject": export.subject, "type": export.kind}
            if export.kind == "service":
                entry["response_type"] = response_names[export.response_type]
                if export.latency_subject:
                    sampling: Any = export.latency_sampling or "headers"
                    entry["service_latency"] = {"sampling": sampling, "results": export.latency_subject}
            if export.accounts:
                entry["approved_accounts"] = list(export.accounts)
            exports.append(entry)
        system = self._system_account()
        jetstream = getattr(self.server, "jetstream", None) is not None
        if system and self.server.accounts.get(system) is not None:
            name = account.name
            if account.name == system:
                for subject, kind in (
                    ("$SYS.DEBUG.SUBSCRIBERS", "Singleton"),
                    ("$SYS.REQ.ACCOUNT.*.CONNZ", "Streamed"),
                    ("$SYS.REQ.ACCOUNT.*.STATZ", "Streamed"),
                    ("$SYS.REQ.USER.*.INFO", "Singleton"),
                ) + ((("$JS.API.>", "Singleton"),) if jetstream else ()):
                    exports.append({"subject": subject, "type": "service", "response_type": kind})
                automatic = [(f"$SYS.REQ.USER.{name}.INFO", "$SYS.REQ.USER.INFO", True)]
            else:
                # with JetStream on, every account reaches `$JS.API.>` through the system account
                automatic = [("$JS.API.>", "$JS.API.>", True)] if jetstream else []
                automatic += [
                    (f"$SYS.REQ.ACCOUNT.{name}.CONNZ", "$SYS.REQ.ACCOUNT.PING.CONNZ", False),
                    (f"$SYS.REQ.ACCOUNT.{name}.CONNZ", "$SYS.REQ.SERVER.PING.CONNZ", False),
                    (f"$SYS.REQ.ACCOUNT.{name}.STATZ", "$SYS.REQ.ACCOUNT.PING.STATZ", False),
                    (f"$SYS.REQ.USER.{name}.INFO", "$SYS.REQ.USER.INFO", True),
                ]
            for subject, local, share in automatic:
                imports.append(_ext_import(subject, system, local, local, "service", share))
        for imported in getattr(config, "imports", ()):
            if imported.kind == "stream":
                local = (
                    f"{imported.prefix}.{imported.subject}" if imported.prefix else (imported.to or imported.subject)
                )
                imports.append(_ext_import(imported.subject, imported.account, None, local, "stream", False))
            else:
                local = imported.to or imported.subject
                imports.append(_ext_import(imported.subject, imported.account, local, local, "service", imported.share))
        return exports, imports

    def handle_accountz(self, query: Query) -> Response:
        return _json(self.accountz(query.get("acc")))

    def accstatz(self, include_unused: bool = False, accounts: Iterable[str] = ()) -> dict[str, Any]:
        server = self.server
        wanted = set(accounts)
        statz = []
        for name, account in list(server.accounts.items()):
            if wanted and name not in wanted:
                continue
            clients = list(account.clients)
            if not clients and not include_unused:
                continue
            # Per-account message counters are the live connections' (jsedge keeps no per-account
            # totals of closed connections yet).
            sent_msgs = sum(c.out_msgs for c in clients)
            sent_bytes = sum(c.out_bytes for c in clients)
            recv_msgs = sum(c.in_msgs for c in clients)
            recv_bytes = sum(c.in_bytes for c in clients)
            statz.append(
                {
                    "acc": name,
                    "name": name,
                    "conns": len(clients),
                    "leafnodes": 0,
                    "total_conns": len(clients),
                    "num_subscriptions": account.sublist.count,
                    "sent": _msg_bytes(sent_msgs, sent_bytes),
                    "received": _msg_bytes(recv_msgs, recv_bytes),
                    "slow_consumers": 0,
                }
            )
        return {"server_id": server.server_id, "now": self._now(), "account_statz": statz}

    def handle_accstatz(self, query: Query) -> Response:
        # Over HTTP nats-server reads only `unused`; an `acc` parameter is ignored (verified on 2.15.1).
        return _json(self.accstatz(include_unused=query.bool("unused")))

    # -- /jsz ----------------------------------------------------------------------------------
    def jsz(
        self,
        *,
        accounts: bool = False,
        streams: bool = False,
        config: bool = False,
        account_filter: str = "",
        offset: int = 0,
        limit: int = 0,
        consumers: bool = False,
        raft: bool = False,
        stream_leader_only: bool = False,
    ) -> dict[str, Any]:
        """nats-server's JSInfo. With JetStream off: its "disabled" document."""
        js = self.server.jetstream
        if js is None:
            return {
                "memory": 0,
                "storage": 0,
                "reserved_memory": 0,
                "reserved_storage": 0,
                "accounts": 0,
                "ha_assets": 0,
                "api": {"level": 0, "total": 0, "errors": 0},
                "server_id": self.server.server_id,
                "now": self._now(),
                "disabled": True,
                "config": {"max_memory": 0, "max_storage": 0},
                "streams": 0,
                "consumers": 0,
                "messages": 0,
                "bytes": 0,
                "total": 0,
            }
        stats = js.statistics()
        cluster = getattr(js, "cluster", None)
        report = _cluster_report() if cluster is not None else None
        out: dict[str, Any] = self._js_stats(stats, cluster)  # JetStreamStats first, flattened as in Go
        out["server_id"] = self.server.server_id
        out["now"] = self._now()
        out["config"] = self._js_config(js)
        out["limits"] = {"default_max_consumers": 1000}
        out["streams"] = stats["streams"]
        if raft and report is not None:
            streams_leader, consumers_leader = report.leader_counts(cluster)
        else:
            # standalone: every stream and consumer is led here
            streams_leader, consumers_leader = stats["streams"], stats["consumers"]
        if raft and streams_leader:
            out["streams_leader"] = streams_leader
        out["consumers"] = stats["consumers"]
        if raft and consumers_leader:
            out["consumers_leader"] = consumers_leader
        out["messages"] = stats["messages"]
        out["bytes"] = stats["bytes"]
        if report is not None:
            meta = report.meta_cluster_info(cluster)
            if meta is not None:
                out["meta_cluster"] = meta
        names = sorted(js.accounts)
        if account_filter:
            names = [name for name in names if name == account_filter]
        if accounts or streams or account_filter:
            details = []
            for name in names:
                details.append(
                    self.jsz_account_detail(
                        js.accounts[name],
                        streams=streams,
                        consumers=consumers,
                        config=config,
                        raft=raft,
                        stream_leader_only=stream_leader_only,
                        cluster=cluster,
                        server_name=self.server.server_name,
                    )
                )
            if limit > 0:
                details = details[offset : offset + limit]
            elif offset > 0:
                details = details[offset:]
            if details:
                out["account_details"] = details
        out["total"] = len(names)
        return out

    @staticmethod
    def jsz_account_detail(
        jsa: Any,
        *,
        streams: bool = False,
        consumers: bool = False,
        config: bool = False,
        raft: bool = False,
        stream_leader_only: bool = False,
        cluster: Any = None,
        server_name: str = "",
    ) -> dict[str, Any]:
        """One JetStream account's AccountDetail (`/jsz` account_details[], `$SYS.REQ.ACCOUNT.<a>.JSZ`)."""
        name = jsa.name
        # The account's memory/storage limits; unlimited is uint64 max (-1 as nats-server's uint64).
        max_memory, max_storage = jsa.limit("max_memory"), jsa.limit("max_store")
        detail: dict[str, Any] = {
            "name": name,
            "id": name,
            "memory": jsa.usage(True),
            "storage": jsa.usage(False),
            "reserved_memory": max_memory if isinstance(max_memory, int) and max_memory >= 0 else 18446744073709551615,
            "reserved_storage": max_storage
            if isinstance(max_storage, int) and max_storage >= 0
            else 18446744073709551615,
            "accounts": 0,
            "ha_assets": 0,
            "api": {"level": 0, "total": jsa.api_total, "errors": jsa.api_errors},
        }
        if streams:
            report = _cluster_report() if cluster is not None else None
            stream_details = []
            for stream_name in sorted(jsa.streams):
                stream = jsa.streams[stream_name]
                info = stream.info(cluster=True)
                cluster_info = info["cluster"]
                raft_group = ""
                if report is not None:
                    cluster_info = report.stream_cluster_info(cluster, name, stream_name) or cluster_info
                    raft_group = report.stream_raft_group(cluster, name, stream_name)
                if stream_leader_only and cluster_info.get("leader") != server_name:
                    continue
                entry: dict[str, Any] = {"name": stream_name, "created": info["created"], "cluster": cluster_info}
                if config:
                    entry["config"] = stream.config_json(dynamic=False)
                entry["state"] = info["state"]
                # a cluster: replicated consumers are listed by every member of their group (the
                # leader runs the consumer; a follower reports its replica of the state)
                members = getattr(getattr(stream, "replicated", None), "consumer_groups", None) or {}
                names = sorted(set(stream.consumers) | set(members))
                if consumers and names:
                    entry["consumer_detail"] = [
                        stream.consumers[c].info(dynamic=False, with_config=config)
                        if c in stream.consumers
                        else members[c].info(with_config=config)
                        for c in names
                    ]
                if raft and raft_group:
                    entry["stream_raft_group"] = raft_group
                    groups = [{"name": c, "raft_group": members[c].group_name} for c in names if c in members]
                    if consumers and groups:
                        entry["consumer_raft_groups"] = groups
                stream_details.append(entry)
            if stream_details:
                detail["stream_detail"] = stream_details
        return detail

    @staticmethod
    def _js_config(js: Any, store_dir: bool = True) -> dict[str, Any]:
        """JetStreamConfig (`/jsz` config, `/varz` jetstream.config; statsz leaves out the store dir)."""
        js_config = js.config
        doc: dict[str, Any] = {"max_memory": js.max_memory, "max_storage": js.max_store}
        if store_dir:
            doc["store_dir"] = js.store_root
        doc["sync_interval"] = int((js_config.sync_interval or 120.0) * 1_000_000_000)
        if js_config.sync_always:
            doc["sync_always"] = True
        if js.domain:
            doc["domain"] = js.domain
        if js_config.strict:
            doc["strict"] = True
        return doc

    @staticmethod
    def _js_stats(stats: dict[str, Any], cluster: Any = None) -> dict[str, Any]:
        """JetStreamStats from `JetStream.statistics()` (`ha_assets`: the Raft groups run here)."""
        return {
            "memory": stats["memory"],
            "storage": stats["storage"],
            "reserved_memory": stats["reserved_memory"],
            "reserved_storage": stats["reserved_storage"],
            "accounts": stats["accounts"],
            "ha_assets": _cluster_report().ha_assets(cluster) if cluster is not None else 0,
            "api": {"level": 5, "total": stats["api_total"], "errors": stats["api_errors"]},
        }

    def jetstream_varz(self, store_dir: bool = True) -> dict[str, Any]:
        """`/varz` jetstream (JetStreamVarz; also statsz's jetstream without the store dir): `{}` when off."""
        js = self.server.jetstream
        if js is None:
            return {}
        cluster = getattr(js, "cluster", None)
        out: dict[str, Any] = {
            "config": self._js_config(js, store_dir),
            "stats": self._js_stats(js.statistics(), cluster),
        }
        if cluster is not None:
            meta = _cluster_report().meta_cluster_info(cluster, statsz=not store_dir)
            if meta is not None:
                out["meta"] = meta
        out["limits"] = {"default_max_consumers": 1000}
        return out

    def handle_jsz(self, query: Query) -> Response:
        accounts = query.bool("accounts")
        streams = query.bool("streams")
        consumers = query.bool("consumers")
        config = query.bool("config")
        offset = query.int("offset")
        limit = query.int("limit")
        leader_only = query.bool("leader-only")
        raft = query.bool("raft")
        stream_leader_only = query.bool("stream-leader-only")
        query.bool("direct-consumers")
        js = self.server.jetstream
        cluster = getattr(js, "cluster", None)
        if leader_only and (js is None or (cluster is not None and not cluster.is_meta_leader)):
            # Without JetStream there is no meta leader, so this server is never it (standalone
            # JetStream is its own leader).
            raise BadRequest("filtered response: not leader")
        return _json(
            self.jsz(
                accounts=accounts or streams or consumers,
                streams=streams or consumers,
                config=config,
                account_filter=query.get("acc"),
                offset=offset or 0,
                limit=limit or 0,
                consumers=consumers,
                raft=raft,
                stream_leader_only=stream_leader_only,
            )
        )

    # -- /metrics (jsedge: Prometheus text, prometheus-nats-exporter names) ----------------
    def handle_metrics(self, query: Query) -> Response:
        from jsedge import _ext, metrics

        jsz = None
        if self.server.jetstream is not None:
            jsz = self.jsz(accounts=True, streams=True, config=True, consumers=True)
        extra = []
        sync = getattr(self.server.jetstream, "sync_latency", None)
        if callable(sync):
            for quantile, seconds in sync():
                extra.append(("jsedge_store_sync_seconds", seconds, {"quantile": quantile}, "store fsync latency"))
        cluster = getattr(self.server.jetstream, "cluster", None)
        if cluster is not None:
            extra.extend(_cluster_report().raft_metrics(cluster))
        text = metrics.render(
            self.varz(),
            subsz=self.sublist_stats(self.server.accounts.values()),
            jsz=jsz,
            routez=self.routez() if self.server.routes is not None else None,
            leafz=self.leafz() if getattr(self.server, "leafnodes", None) is not None else None,
            twins=dict(_ext.LOADED),
            extra=extra,
        )
        return Response(200, (("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),), text.encode())

    # -- /healthz --------------------------------------------------------------------------
    def healthz(
        self,
        *,
        js_enabled_only: bool = False,
        js_server_only: bool = False,
        js_meta_only: bool = False,
        details: bool = False,
        account: str = "",
        stream: str = "",
        consumer: str = "",
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body without `status_code`)."""
        status = 200
        error = ""
        error_type = ""
        if stream and not account:
            status, error, error_type = 400, '"account" must not be empty when checking stream health', "BAD_REQUEST"
        elif consumer and not stream:
            status, error, error_type = 400, '"stream" must not be empty when checking consumer health', "BAD_REQUEST"
        elif not self.server.accepting:
            status, error_type = 500, "CONNECTION"
            error = "failed to be ready for connections after 1ms: client"
        js = self.server.jetstream
        if status == 200 and not js_server_only and js is not None:
            cluster = getattr(js, "cluster", None)
            if not js.started:
                status, error_type, error = 503, "JETSTREAM", "JetStream not enabled"
            elif js_enabled_only:
                pass
            elif cluster is not None:
                status, errors = _cluster_report().health(
                    cluster, meta_only=js_meta_only, account=account, stream=stream, consumer=consumer
                )
                if errors and details:
                    return status, {"status": "error", "errors": errors}
                if errors:
                    label = "unavailable" if status in (503, 404) else "error"
                    return status, {"status": label, "error": errors[0]["error"]}
            else:
                status, error_type, error = self._jetstream_health(js, account, stream, consumer)
        if status == 200:
            return 200, {"status": "ok"}
        label = "unavailable" if status in (503, 404) else "error"
        if details:
            return status, {"status": "error", "errors": [{"type": error_type, "error": error}]}
        return status, {"status": label, "error": error}

    @staticmethod
    def _jetstream_health(js: Any, account: str, stream: str, consumer: str) -> tuple[int, str, str]:
        """Standalone JetStream: the requested account/stream/consumer must exist."""
        if not account:
            return 200, "", ""
        jsa = js.accounts.get(account)
        if jsa is None:
            return 404, "ACCOUNT", f"JetStream account {go_quote(account)} not found"
        if not stream:
            return 200, "", ""
        found = jsa.streams.get(stream)
        if found is None:
            return 404, "STREAM", f"JetStream stream {go_quote(stream)} not found on account {go_quote(account)}"
        if consumer and consumer not in found.consumers:
            return (
                404,
                "CONSUMER",
                f"JetStream consumer {go_quote(consumer)} not found for stream {go_quote(stream)} on account {go_quote(account)}",
            )
        return 200, "", ""

    def handle_healthz(self, query: Query) -> Response:
        js_enabled_only = query.bool("js-enabled-only")
        js_enabled = query.bool("js-enabled")
        if js_enabled:
            self.server.logger.warn("Healthcheck: js-enabled deprecated, use js-enabled-only instead")
        js_server_only = query.bool("js-server-only")
        js_meta_only = query.bool("js-meta-only")
        details = query.bool("details")
        status, body = self.healthz(
            js_enabled_only=js_enabled_only or js_enabled,
            js_server_only=js_server_only,
            js_meta_only=js_meta_only,
            details=details,
            account=query.get("account"),
            stream=query.get("stream"),
            consumer=query.get("consumer"),
        )
        return _json(body, status, compact=True)


def _cluster_report() -> Any:
    """jsedge.cluster.report, imported on first use (only clustered JetStream needs it)."""
    from jsedge.cluster import report

    return report


def _interested(client: Any, filter_subject: str) -> bool:
    """No filter, or one of the client's subscriptions collides with it (nats-server's Connz)."""
    if not filter_subject:
        return True
    wanted = filter_subject.encode()
    return any(subjects_overlap(wanted, sub.subject) for sub in list((getattr(client, "subs", None) or {}).values()))


def _msg_bytes(msgs: int, nbytes: int) -> dict[str, Any]:
    zero = {"msgs": 0, "bytes": 0}
    return {"msgs": msgs, "bytes": nbytes, "gateways": dict(zero), "routes": dict(zero), "leafs": dict(zero)}


def _ext_import(subject: str, account: str, to: str | None, local: str, kind: str, share: bool) -> dict[str, Any]:
    """One entry of `/accountz` `imports` (nats-server's ExtImport)."""
    entry: dict[str, Any] = {"subject": subject, "account": account}
    if to is not None:
        entry["to"] = to
    entry.update({"local_subject": local, "type": kind, "invalid": False, "share": share, "tracking": False})
    return entry


def _websocket_varz(server: Any) -> dict[str, Any]:
    """nats-server's WebsocketOptsVarz (empty fields left out)."""
    ws = server.config.websocket
    if not ws.port:
        return {}
    out: dict[str, Any] = {"host": ws.host or "0.0.0.0", "port": getattr(server, "ws_port", 0) or ws.port}
    if ws.advertise:
        out["advertise"] = ws.advertise
    if ws.handshake_timeout:
        out["handshake_timeout"] = int(ws.handshake_timeout * 1e9)
    for key in ("no_tls", "same_origin", "compression"):
        if getattr(ws, key):
            out[key] = True
    if ws.allowed_origins:
        out["allowed_origins"] = list(ws.allowed_origins)
    return out
