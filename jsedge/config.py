"""The server configuration tree and its loader (layer 0: stdlib, `jsedge.conf`, `jsedge.errors`).

One frozen, slotted dataclass tree, `ServerConfig`, holds every setting; defaults live only here.
`load_config(argv)` parses nats-server's command-line flags, reads the `-c` file (syntax: `jsedge.conf`),
lets flags override the file, validates, and returns a `LoadResult` or raises one `ConfigError`
listing every problem. Option names, aliases and message texts are nats-server 2.15.1's
(spec/server-config.md), so a file that works there works here, and a bad one fails the same way.

Durations are seconds (`float`). Sizes are bytes (`int`). A key the file did not set keeps its default.
Relative TLS file paths are kept as written and resolve against the current working directory, as
nats-server's do (it hands them to `os.Open` unchanged: `open nope.pem: no such file or directory`).

`diff_for_reload(old, new)` says what a SIGHUP reload would change and what needs a restart.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from jsedge.conf import ConfValue, Position

__all__ = [
    "AccountConfig",
    "AccountJetStreamConfig",
    "AccountLimits",
    "AuthConfig",
    "ClusterConfig",
    "ConfigError",
    "JetStreamConfig",
    "LeafConfig",
    "LimitsConfig",
    "ListenConfig",
    "LoadResult",
    "LoggingConfig",
    "MonitorConfig",
    "Permissions",
    "ResponsePermission",
    "ServerConfig",
    "SubjectPermission",
    "TLSConfig",
    "UserConfig",
    "diff_for_reload",
    "format_go_duration",
    "load_config",
    "parse_go_duration",
]

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"
_BCRYPT_PATTERN = re.compile(r"^\$2[abxy]\$\d{2}\$")
_MAX_INT32 = 2**31 - 1
_PAYLOAD_WARNING_THRESHOLD = 8 * 1024 * 1024


def _plain(value: Any) -> Any:
    # jsedge.conf (the file syntax) is imported only when a config file is read: a flags-only start
    # skips it (~7 ms and ~1.3 MiB with bytecode caches, twice that without).
    from jsedge.conf import plain

    return plain(value)


class ConfigError(Exception):
    """Every problem found in the flags and the file; `str()` is one problem per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# -- the tree ---------------------------------------------------------------------------------


class _Record:
    """Base of the config tree's classes: frozen, slotted dataclasses without generated methods.

    `@dataclass(frozen=True, slots=True)` compiles six functions per class from source (__init__,
    __repr__, __eq__, __hash__, __setattr__, __delattr__): 0.65 ms per class, ~13 ms for this module,
    a tenth of start -> first PONG. `@_record` keeps real dataclasses (`dataclasses.fields`, `replace`,
    `is_dataclass` work; slots; assignment raises FrozenInstanceError) but takes those methods from
    this base, which reads each class's field names and defaults: 0.07 ms per class. The tree is
    built a handful of times per load, so the generic methods' speed does not matter.
    """

    __slots__ = ()
    #: (field names in order, {name: default}) of the concrete class; set by `_record`.
    _record_shape: tuple[tuple[str, ...], dict[str, Any]] = ((), {})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names, defaults = self._record_shape
        where = f"{type(self).__qualname__}.__init__()"
        if len(args) > len(names):
            raise TypeError(f"{where} takes {len(names) + 1} positional arguments but {len(args) + 1} were given")
        values = dict(defaults)
        values.update(zip(names, args))
        for key, value in kwargs.items():
            if key not in defaults and key not in names:
                raise TypeError(f"{where} got an unexpected keyword argument '{key}'")
            if key in names[: len(args)]:
                raise TypeError(f"{where} got multiple values for argument '{key}'")
            values[key] = value
        missing = [name for name in names if name not in values]
        if missing:
            raise TypeError(f"{where} missing {len(missing)} required argument(s): {', '.join(map(repr, missing))}")
        for name in names:
            object.__setattr__(self, name, values[name])

    def _record_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._record_shape[0])

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._record_shape[0])
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._record_values() == other._record_values()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._record_values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    # Slotted and frozen: pickle/copy by value (what dataclass(frozen=True, slots=True) adds too).
    def __getstate__(self) -> tuple[Any, ...]:
        return self._record_values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self._record_shape[0], state):
            object.__setattr__(self, name, value)


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _record(cls: type[_T]) -> type[_T]:
    """Make `cls` (a subclass of nothing) a frozen, slotted dataclass on the `_Record` base."""
    body = {key: value for key, value in cls.__dict__.items() if key not in ("__dict__", "__weakref__")}
    record = type(cls.__name__, (_Record,), body)
    record.__qualname__ = cls.__qualname__
    record = dataclass(slots=True, init=False, repr=False, eq=False)(record)
    fields = dataclasses.fields(record)
    record._record_shape = (
        tuple(item.name for item in fields),
        {item.name: item.default for item in fields if item.default is not dataclasses.MISSING},
    )
    return record  # type: ignore[return-value]


@_record
class SubjectPermission:
    """Allow and deny subject lists for publish or subscribe; deny wins."""

    #: Subjects (wildcards allowed; subscribe entries may be `"<subject> <queue>"`). Empty = all.
    allow: tuple[str, ...] = ()
    #: Subjects refused even when allowed.
    deny: tuple[str, ...] = ()


@_record
class ResponsePermission:
    """`allow_responses`: publish to reply subjects of received requests."""

    #: Responses allowed per request.
    max_msgs: int = 1
    #: Seconds the permission lasts.
    expires: float = 120.0


@_record
class Permissions:
    """A user's permissions; `None` parts are unrestricted."""

    publish: SubjectPermission | None = None
    subscribe: SubjectPermission | None = None
    allow_responses: ResponsePermission | None = None


@_record
class UserConfig:
    """One user from `authorization.users` or an account's `users`."""

    user: str = ""
    #: Plain text or a bcrypt hash (`$2a$...`).
    password: str = ""
    nkey: str = ""
    #: The account the user logs into: `$G`, or the account it is listed under.
    account: str = GLOBAL_ACCOUNT
    #: Own permissions, or the block's `default_permissions` when it has none.
    permissions: Permissions | None = None
    #: e.g. `STANDARD`, `WEBSOCKET`, `LEAFNODE`, `MQTT`; empty = all.
    allowed_connection_types: tuple[str, ...] = ()


@_record
class AuthConfig:
    """Top-level `authorization` (and `--user/--pass/--auth`)."""

    user: str = ""
    password: str = ""
    token: str = ""
    #: Seconds to wait for CONNECT; None = default (2 s, or TLS timeout + 1 s with TLS).
    timeout: float | None = None
    users: tuple[UserConfig, ...] = ()
    default_permissions: Permissions | None = None


@_record
class AccountJetStreamConfig:
    """Per-account JetStream limits; -1 = unlimited."""

    max_memory: int = -1
    max_store: int = -1
    max_streams: int = -1
    max_consumers: int = -1
    max_ack_pending: int = -1
    max_bytes_required: bool = False
    #: An account JWT's `tiered_limits` (used when it has no flat JetStream limits): one set per
    #: replica count, ("R1", limits), ("R3", limits)...; a stream's tier is R<its replicas>.
    tiers: tuple[tuple[str, AccountJetStreamConfig], ...] = ()


@_record
class AccountLimits:
    """An account's `limits` block; -1 = unlimited."""

    max_connections: int = -1
    max_subscriptions: int = -1
    max_payload: int = -1
    max_leafnodes: int = -1


@_record
class ExportConfig:
    """One entry of an account's `exports`: a stream (messages) or a service (requests)."""

    kind: str  # "stream" | "service"
    subject: str
    #: Accounts allowed to import it; empty = public.
    accounts: tuple[str, ...] = ()
    #: A service's responses: "singleton" (one), "stream" or "chunked" (many, until the threshold).
    response_type: str = "singleton"
    #: How long a service's response mapping lives without a response (seconds; nats-server: 2 min).
    response_threshold: float = 120.0
    #: `account_token_position`: this token (1-based) of an imported subject must be the
    #: importer's account name (0: no such rule).
    token_position: int = 0
    #: Service latency tracking: where the metrics go ("" = none) and the sampling percentage
    #: (1-100; 0 = only requests that carry a trace header asking for it, nats-server's "headers").
    latency_subject: str = ""
    latency_sampling: int = 100


@_record
class ImportConfig:
    """One entry of an account's `imports`: `account`'s export `subject`, seen here as `to`
    (a service's local subject, or a stream's subject after the import) or `prefix` + subject."""

    kind: str  # "stream" | "service"
    account: str
    subject: str
    to: str = ""
    prefix: str = ""
    share: bool = False


@_record
class AccountConfig:
    """One entry of `accounts`."""

    name: str
    users: tuple[UserConfig, ...] = ()
    nkey: str = ""
    #: True with `jetstream: enabled` or a `jetstream {}` map.
    jetstream: bool = False
    jetstream_limits: AccountJetStreamConfig | None = None
    limits: AccountLimits = AccountLimits()
    default_permissions: Permissions | None = None
    exports: tuple[ExportConfig, ...] = ()
    imports: tuple[ImportConfig, ...] = ()
    #: Raw subject mappings.
    mappings: tuple[tuple[str, Any], ...] = ()


@_record
class TLSConfig:
    """A `tls {}` block. Relative paths resolve against the working directory, as in nats-server."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    verify: bool = False
    verify_and_map: bool = False
    #: Handshake timeout, seconds.
    timeout: float = 2.0
    handshake_first: bool = False
    #: Fallback delay for `handshake_first: "<duration>"` / `auto`; None = none.
    handshake_first_fallback: float | None = None
    min_version: str = ""
    insecure: bool = False
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    pinned_certs: tuple[str, ...] = ()


@_record
class ListenConfig:
    """The client listener."""

    host: str = "0.0.0.0"
    #: -1 = a random free port.
    port: int = 4222
    #: `host:port` advertised in `connect_urls` instead of interface addresses.
    client_advertise: str = ""


@_record
class LimitsConfig:
    """Per-connection limits and keep-alive."""

    max_payload: int = 1048576
    max_control_line: int = 4096
    #: Per-client outbound buffer, bytes.
    max_pending: int = 67108864
    #: -1 = reject everyone (`max_connections: 0` in the file, as nats-server stores it).
    max_connections: int = 65536
    #: 0 = unlimited.
    max_subscriptions: int = 0
    #: 0 = unlimited.
    max_sub_tokens: int = 0
    ping_interval: float = 120.0
    ping_max: int = 2
    write_deadline: float = 10.0
    #: What a client write that misses `write_deadline` does: "default" (= close for clients),
    #: "close" or "retry" (nats-server's `write_timeout`).
    write_timeout: str = "default"
    max_closed_clients: int = 10000
    no_header_support: bool = False


@_record
class JetStreamConfig:
    """The `jetstream` block."""

    enabled: bool = False
    #: Parent directory; data lands in `<store_dir>/jetstream`. "" = `<tempdir>/nats`.
    store_dir: str = ""
    #: -1 = automatic (75 % of RAM); 0 = no memory storage.
    max_memory_store: int = -1
    #: -1 = automatic (75 % of free disk).
    max_file_store: int = -1
    domain: str = ""
    #: Seconds between fsyncs as the user wrote it; None = not set.
    sync_interval: float | None = None
    #: `sync_interval: always`.
    sync_always: bool = False
    strict: bool = True
    unique_tag: str = ""
    #: Raw `limits` block (max_ack_pending, max_ha_assets, ...).
    limits: tuple[tuple[str, Any], ...] = ()


@_record
class ClusterConfig:
    """The `cluster` block (route listener)."""

    name: str = ""
    host: str = ""
    #: 0 = no cluster listener.
    port: int = 0
    routes: tuple[str, ...] = ()
    advertise: str = ""
    no_advertise: bool = False
    connect_retries: int = 0
    user: str = ""
    password: str = ""
    auth_timeout: float | None = None
    pool_size: int = 3
    compression: str = "accept"
    accounts: tuple[str, ...] = ()
    ping_interval: float | None = None
    ping_max: int | None = None
    write_deadline: float | None = None
    #: "default" (= retry for routes), "close" or "retry".
    write_timeout: str = "default"
    tls: TLSConfig | None = None


@_record
class LeafConfig:
    """The `leafnodes` block, parsed and kept (not served yet)."""

    host: str = ""
    #: 0 = no leaf node listener.
    port: int = 0
    advertise: str = ""
    no_advertise: bool = False
    user: str = ""
    password: str = ""
    account: str = ""
    auth_timeout: float | None = None
    users: tuple[UserConfig, ...] = ()
    #: Raw remote entries (plain Python dicts).
    remotes: tuple[Any, ...] = ()
    reconnect_delay: float | None = None
    compression: str = ""
    tls: TLSConfig | None = None


@_record
class WebsocketConfig:
    """The `websocket` block: NATS clients over WebSocket (jsedge.routing.websocket)."""

    host: str = ""
    #: 0 = no websocket listener (-1: a random port)
    port: int = 0
    advertise: str = ""
    no_tls: bool = False
    tls: TLSConfig | None = None
    #: permessage-deflate when the client offers it
    compression: bool = False
    same_origin: bool = False
    allowed_origins: tuple[str, ...] = ()
    #: seconds for the TLS handshake and upgrade request (0: 2 s)
    handshake_timeout: float = 0.0
    #: `authorization { username, password, token, timeout }` and `no_auth_user` of the block: in
    #: place of the server's single user, token and no_auth_user for WebSocket clients
    username: str = ""
    password: str = ""
    token: str = ""
    auth_timeout: float | None = None
    no_auth_user: str = ""
    #: cookies a browser's upgrade request carries credentials in (used when CONNECT lacks them)
    jwt_cookie: str = ""
    user_cookie: str = ""
    pass_cookie: str = ""
    token_cookie: str = ""
    #: extra headers of the 101 response
    headers: tuple[tuple[str, str], ...] = ()
    #: PING interval of WebSocket clients (None: the server's)
    ping_interval: float | None = None


@_record
class MQTTConfig:
    """The `mqtt` block: MQTT 3.1.1 clients (jsedge.routing.mqtt)."""

    host: str = ""
    #: 0 = no MQTT listener (-1: a random port)
    port: int = 0
    tls: TLSConfig | None = None
    #: `authorization { username, password, token, timeout }` and `no_auth_user` of the block: in
    #: place of the server's single user, token and no_auth_user for MQTT clients
    username: str = ""
    password: str = ""
    token: str = ""
    auth_timeout: float | None = None
    no_auth_user: str = ""
    #: redelivery of an unacknowledged QoS 1/2 message (0: 30 s)
    ack_wait: float = 0.0
    #: unacknowledged QoS 1/2 messages per subscription (0: 1024)
    max_ack_pending: int = 0
    js_domain: str = ""
    #: replicas of the MQTT streams (0: up to 3, as many as the cluster has)
    stream_replicas: int = 0
    consumer_memory_storage: bool = False
    consumer_inactive_threshold: float = 0.0
    #: JetStream API requests of the MQTT layer time out after this (0: 5 s)
    js_api_timeout: float = 0.0
    reject_qos2_publish: bool = False
    downgrade_qos2_subscribe: bool = False


@_record
class MonitorConfig:
    """The HTTP monitoring listener."""

    #: "" = the client listen host.
    host: str = ""
    #: 0 = off; -1 = random.
    port: int = 0
    https_port: int = 0
    base_path: str = ""
    #: jsedge's opt-in authentication of the monitoring port (`http: { listen, auth: { user,
    #: password } | { token } }`): HTTP Basic or a bearer token on every path but /healthz
    auth_user: str = ""
    auth_password: str = ""
    auth_token: str = ""
    #: `http: { console: { actions: true } }`: the console may publish, purge, delete messages
    #: and step leaders down (needs `auth`)
    console_actions: bool = False


@_record
class LoggingConfig:
    """Log switches and destinations."""

    debug: bool = False
    trace: bool = False
    trace_verbose: bool = False
    logtime: bool = True
    logtime_utc: bool = False
    logfile: str = ""
    #: Rotate when the file exceeds this many bytes; 0 = never.
    log_size_limit: int = 0
    logfile_max_num: int = 0
    syslog: bool = False
    remote_syslog: str = ""
    #: 0 = unlimited.
    max_traced_msg_len: int = 0


@_record
class ServerConfig:
    """Everything the server is told; each component receives only its own sub-tree."""

    #: "" = the server id.
    server_name: str = ""
    server_tags: tuple[str, ...] = ()
    config_file: str = ""
    #: `sha256:<hex>` as nats-server computes it (of the parsed tree); "" with no file.
    config_digest: str = ""
    pidfile: str = ""
    ports_file_dir: str = ""
    lame_duck_duration: float = 120.0
    lame_duck_grace_period: float = 10.0
    system_account: str = SYSTEM_ACCOUNT
    #: Operator mode: the trusted operators' JWTs, the account resolver ("MEMORY") and the
    #: account JWTs it starts with (public key, JWT); accounts then come from these JWTs.
    operators: tuple[str, ...] = ()
    resolver: str = ""
    resolver_preload: tuple[tuple[str, str], ...] = ()
    #: The full resolver's directory (`<public key>.jwt` files) and whether it takes deletions.
    resolver_dir: str = ""
    resolver_allow_delete: bool = False
    #: How often the full resolver compares its directory with the other servers' (`interval`).
    resolver_interval: float = 60.0
    #: `hard_delete`: a full resolver removes deleted JWTs instead of renaming them `.jwt.deleted`.
    resolver_hard_delete: bool = False
    #: The URL resolver's base URL (`resolver: URL("...")`, ending in "/"), and its TLS.
    resolver_url: str = ""
    resolver_tls: TLSConfig | None = None
    #: `resolver_pinned_accounts`: only users of these accounts may connect (empty: any).
    resolver_pinned_accounts: tuple[str, ...] = ()
    #: `trusted_keys` (`trusted`): operator public keys trusted without an operator JWT.
    trusted_keys: tuple[str, ...] = ()
    #: `default_sentinel`: the (bearer) user JWT of a client that presents none, in operator mode.
    default_sentinel: str = ""
    #: How long a lookup of an unknown account waits for an answer (`timeout`, nats-server 1.9 s);
    #: the cache resolver's `ttl` (0: kept until evicted) and `limit` (JWTs kept; 0: its default).
    resolver_timeout: float = 1.9
    resolver_ttl: float = 0.0
    resolver_limit: int = 0
    no_system_account: bool = False
    no_auth_user: str = ""
    disable_sublist_cache: bool = False
    allow_non_tls: bool = False
    #: `-t`: check the configuration and exit.
    check_config: bool = False
    #: `--signal` value (`<cmd>[=<pid or pidfile>]`).
    signal: str = ""
    #: `--profile` port; 0 = off.
    profile_port: int = 0
    listen: ListenConfig = ListenConfig()
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()
    accounts: tuple[AccountConfig, ...] = ()
    tls: TLSConfig | None = None
    jetstream: JetStreamConfig = JetStreamConfig()
    cluster: ClusterConfig = ClusterConfig()
    leafnodes: LeafConfig = LeafConfig()
    websocket: WebsocketConfig = WebsocketConfig()
    mqtt: MQTTConfig = MQTTConfig()
    monitor: MonitorConfig = MonitorConfig()
    logging: LoggingConfig = LoggingConfig()
    #: Raw top-level subject mappings.
    mappings: tuple[tuple[str, Any], ...] = ()


@_record
class LoadResult:
    """What `load_config` found: the tree, warnings to log, and the CLI's one-shot requests."""

    config: ServerConfig
    warnings: tuple[str, ...] = ()
    show_help: bool = False
    show_version: bool = False
    show_tls_help: bool = False
    help_text: str = ""


# -- Go durations -----------------------------------------------------------------------------


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_go_duration(text: str) -> float:
    """Go's `time.ParseDuration`, in seconds; raises ValueError with Go's message."""
    from jsedge.goparse import parse_duration_ns

    return parse_duration_ns(text) / 1e9


def format_go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` for a number of seconds (`1m30s`, `500ms`, `0s`)."""
    nanoseconds = round(seconds * 1e9)
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    nanoseconds = abs(nanoseconds)

    def decimal(value: int, scale: int) -> str:
        whole, rest = divmod(value, scale)
        if not rest:
            return str(whole)
        digits = str(rest).rjust(len(str(scale)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}"

    if nanoseconds < 1000:
        return f"{sign}{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return f"{sign}{decimal(nanoseconds, 1000)}\u00b5s"
    if nanoseconds < 1_000_000_000:
        return f"{sign}{decimal(nanoseconds, 1_000_000)}ms"
    hours, rest = divmod(nanoseconds, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = f"{decimal(rest, 10**9)}s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


# -- reading the file -------------------------------------------------------------------------

_GO_TYPE_NAMES = {
    str: "string",
    bool: "bool",
    int: "int64",
    float: "float64",
    list: "[]interface {}",
    dict: "map[string]interface {}",
}

#: Options nats-server knows that jsedge does not implement; rejected with a clear message.
_UNSUPPORTED_FIELDS = {
    "gateway": "gateway",
    "ocsp": "ocsp",
    "ocsp_cache": "ocsp",
}

#: Options nats-server knows whose effect jsedge does not need; accepted and ignored.
_IGNORED_FIELDS = frozenset(
    {
        "prof_port",
        "prof_block_rate",
        "connect_error_reports",
        "reconnect_error_reports",
        "default_js_domain",
        "no_fast_producer_stall",
        "jetstream_max_memory",
        "jetstream_max_store",
    }
)


def _go_type(value: Any) -> str:
    if type(value).__name__ == "datetime":
        return "time.Time"
    return _GO_TYPE_NAMES.get(type(value), type(value).__name__)


class _FileReader:
    """Turns the parsed conf tree into section dicts, collecting errors and warnings with positions."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.top: dict[str, Any] = {}
        self.sections: dict[str, dict[str, Any]] = {
            name: {}
            for name in (
                "listen",
                "limits",
                "auth",
                "jetstream",
                "cluster",
                "leafnodes",
                "websocket",
                "mqtt",
                "monitor",
                "logging",
            )
        }
        self.tls: dict[str, Any] | None = None
        self.accounts: list[AccountConfig] = []
        self.top_store_dir_set = False
        self.jetstream_store_dir_position: Position | None = None
        self.authorization_position: Position | None = None

    # -- typed getters: on a type mismatch they record nats-server's message and return None ---

    def error(self, item: ConfValue, reason: str) -> None:
        self.errors.append(item.position.prefix() + reason)

    def expect(self, item: ConfValue, kind: type, go_name: str) -> Any:
        value = item.value
        if type(value) is kind:
            return value
        self.error(item, f"interface conversion: interface {{}} is {_go_type(value)}, not {go_name}")
        return None

    def integer(self, item: ConfValue) -> int | None:
        return self.expect(item, int, "int64")  # type: ignore[no-any-return]

    def string(self, item: ConfValue) -> str | None:
        return self.expect(item, str, "string")  # type: ignore[no-any-return]

    def boolean(self, item: ConfValue) -> bool | None:
        return self.expect(item, bool, "bool")  # type: ignore[no-any-return]

    def read_mappings(self, entries: dict[str, ConfValue]) -> tuple[tuple[str, Any], ...]:
        """Subject mappings, each checked as nats-server checks it when it adds them."""
        from jsedge.transform import TransformError, compile_mapping

        mappings = []
        for key, value in entries.items():
            plain = _plain(value)
            try:
                compile_mapping(key, plain)
            except TransformError as exc:
                self.error(value, str(exc))
                continue
            mappings.append((key, plain))
        return tuple(mappings)

    def mapping(self, item: ConfValue) -> dict[str, ConfValue] | None:
        return self.expect(item, dict, "map[string]interface {}")  # type: ignore[no-any-return]

    def array(self, item: ConfValue) -> list[ConfValue] | None:
        return self.expect(item, list, "[]interface {}")  # type: ignore[no-any-return]

    def strings(self, item: ConfValue) -> tuple[str, ...] | None:
        """A string or an array of strings."""
        if isinstance(item.value, str):
            return (item.value,)
        elements = self.array(item)
        if elements is None:
            return None
        result = [self.string(element) for element in elements]
        return None if any(text is None for text in result) else tuple(result)  # type: ignore[arg-type]

    def duration(self, name: str, item: ConfValue) -> float | None:
        """nats-server's `parseDuration`: a Go duration string, or an integer of seconds (warned)."""
        if isinstance(item.value, str):
            try:
                return parse_go_duration(item.value)
            except ValueError as problem:
                self.error(item, f"error parsing {name}: {problem}")
                return None
        self.warnings.append(
            f'{item.position.prefix()}invalid use of field "{name}": {name} should be converted to a duration'
        )
        seconds = self.integer(item)
        return None if seconds is None else float(seconds)

    def seconds(self, item: ConfValue) -> float | None:
        """A timeout: integer or float seconds, or a duration string."""
        value = item.value
        if isinstance(value, bool):
            return self.expect(item, float, "float64")  # type: ignore[no-any-return]
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return parse_go_duration(value)
            except ValueError as problem:
                self.error(item, f"error parsing timeout: {problem}")
                return None
        return self.expect(item, float, "float64")  # type: ignore[no-any-return]

    def storage_size(self, name: str, item: ConfValue) -> int | None:
        """nats-server's `getStorageSize`: an integer, or a quoted `<int><K|M|G|T>` (binary)."""
        value = item.value
        if type(value) is int:
            return value
        if not isinstance(value, str):
            self.error(item, f"{name} must be int64 or string")
            return None
        if value == "":
            return 0
        prefix, suffix = value[:-1], value[-1]
        if not re.fullmatch(r"[+-]?\d+", prefix):
            self.error(item, f'{name} strconv.ParseInt: parsing "{prefix}": invalid syntax')
            return None
        shifts = {"K": 10, "M": 20, "G": 30, "T": 40}
        if suffix not in shifts:
            self.error(item, f"{name} sizes defined as strings must end in K, M, G, T")
            return None
        return int(prefix) << shifts[suffix]

    def host_port(self, item: ConfValue) -> tuple[str | None, int] | None:
        """nats-server's `parseListen`: a port number or `host:port`."""
        value = item.value
        if type(value) is int:
            return None, value
        if not isinstance(value, str):
            self.error(item, f"expected port or host:port, got {_go_type(value)}")
            return None
        host, separator, port_text = value.rpartition(":")
        if not separator:
            self.error(item, f"could not parse address string {_go_quote(value)}")
            return None
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            return host, int(port_text)
        except ValueError:
            self.error(item, f"could not parse port {_go_quote(port_text)}")
            return None

    def unknown(self, key: str, item: ConfValue, context: str = "") -> None:
        if not item.used_as_variable:
            self.error(item, f'{context}unknown field "{key}"')

    # -- top level --------------------------------------------------------------------------

    def read(self, tree: dict[str, ConfValue]) -> None:
        for key, item in tree.items():
            self.read_top(key, item)

    def read_top(self, key: str, item: ConfValue) -> None:
        name = key.lower()
        listen, limits, logging_ = self.sections["listen"], self.sections["limits"], self.sections["logging"]
        monitor = self.sections["monitor"]
        simple_setters: dict[str, tuple[dict[str, Any], str, Callable[[ConfValue], Any]]] = {
            "host": (listen, "host", self.string),
            "net": (listen, "host", self.string),
            "port": (listen, "port", self.integer),
            "client_advertise": (listen, "client_advertise", self.string),
            "http_port": (monitor, "port", self.integer),
            "monitor_port": (monitor, "port", self.integer),
            "https_port": (monitor, "https_port", self.integer),
            "http_base_path": (monitor, "base_path", self.string),
            "max_control_line": (limits, "max_control_line", self.integer),
            "max_pending": (limits, "max_pending", self.integer),
            "max_subscriptions": (limits, "max_subscriptions", self.integer),
            "max_subs": (limits, "max_subscriptions", self.integer),
            "ping_max": (limits, "ping_max", self.integer),
            "max_closed_clients": (limits, "max_closed_clients", self.integer),
            "no_header_support": (limits, "no_header_support", self.boolean),
            "debug": (logging_, "debug", self.boolean),
            "trace": (logging_, "trace", self.boolean),
            "trace_verbose": (logging_, "trace_verbose", self.boolean),
            "logtime": (logging_, "logtime", self.boolean),
            "logtime_utc": (logging_, "logtime_utc", self.boolean),
            "logfile": (logging_, "logfile", self.string),
            "log_file": (logging_, "logfile", self.string),
            "logfile_size_limit": (logging_, "log_size_limit", self.integer),
            "log_size_limit": (logging_, "log_size_limit", self.integer),
            "logfile_max_num": (logging_, "logfile_max_num", self.integer),
            "log_max_num": (logging_, "logfile_max_num", self.integer),
            "syslog": (logging_, "syslog", self.boolean),
            "remote_syslog": (logging_, "remote_syslog", self.string),
            "max_traced_msg_len": (logging_, "max_traced_msg_len", self.integer),
            "pidfile": (self.top, "pidfile", self.string),
            "pid_file": (self.top, "pidfile", self.string),
            "ports_file_dir": (self.top, "ports_file_dir", self.string),
            "system_account": (self.top, "system_account", self.string),
            "system": (self.top, "system_account", self.string),
            "no_system_account": (self.top, "no_system_account", self.boolean),
            "no_auth_user": (self.top, "no_auth_user", self.string),
            "disable_sublist_cache": (self.top, "disable_sublist_cache", self.boolean),
            "no_sublist_cache": (self.top, "disable_sublist_cache", self.boolean),
            "allow_non_tls": (self.top, "allow_non_tls", self.boolean),
        }
        if name in simple_setters:
            target, attribute, getter = simple_setters[name]
            value = getter(item)
            if value is not None:
                target[attribute] = value
            return
        if name == "listen":
            parsed = self.host_port(item)
            if parsed is not None:
                if parsed[0] is not None:
                    listen["host"] = parsed[0]
                listen["port"] = parsed[1]
        elif name in ("http", "https") and isinstance(item.value, dict):
            self.read_http_block(name, item, monitor)
        elif name in ("http", "https"):
            parsed = self.host_port(item)
            if parsed is not None:
                if parsed[0] is not None:
                    monitor["host"] = parsed[0]
                monitor["port" if name == "http" else "https_port"] = parsed[1]
        elif name in ("max_payload", "max_sub_tokens"):
            value = self.integer(item)
            limit = _MAX_INT32 if name == "max_payload" else 255
            if value is not None:
                if value > limit:
                    self.error(item, f"{name} value is too big")
                else:
                    limits[name] = value
        elif name in ("max_connections", "max_conn"):
            value = self.integer(item)
            if value is not None:
                limits["max_connections"] = -1 if value == 0 else value
        elif name in ("ping_interval", "write_deadline"):
            value = self.duration(name, item)
            if value is not None:
                limits[name] = value
        elif name == "write_timeout":
            policy = self.write_timeout_policy(item)
            if policy is not None:
                limits["write_timeout"] = policy
        elif name in ("lame_duck_duration", "lame_duck_grace_period"):
            value = self.duration(name, item)
            if value is not None:
                if name == "lame_duck_duration" and value < 30:
                    self.error(
                        item,
                        f"invalid lame_duck_duration of {format_go_duration(value)}, minimum is 30 seconds",
                    )
                else:
                    self.top[name] = value
        elif name == "server_name":
            value = self.string(item)
            if value is not None:
                if " " in value:
                    self.error(item, "server name cannot contain spaces")
                else:
                    self.top["server_name"] = value
        elif name == "server_tags":
            tags = self.strings(item)
            if tags is not None:
                self.top["server_tags"] = tags
        elif name == "store_dir":
            value = self.string(item)
            if value is not None:
                self.top_store_dir_set = True
                self.sections["jetstream"]["store_dir"] = value
        elif name == "jetstream":
            self.read_jetstream(item)
        elif name in ("authorization", "authentication"):
            self.authorization_position = item.position
            self.read_authorization(item)
        elif name == "accounts":
            self.read_accounts(item)
        elif name == "tls":
            self.tls = self.read_tls(item)
        elif name == "cluster":
            self.read_cluster(item)
        elif name in ("leafnodes", "leaf"):
            self.read_leafnodes(item)
        elif name in ("websocket", "ws"):
            self.read_websocket(item)
        elif name == "mqtt":
            self.read_mqtt(item)
        elif name in ("mappings", "maps"):
            entries = self.mapping(item)
            if entries is not None:
                self.top["mappings"] = self.read_mappings(entries)
        elif name in ("operator", "operators", "roots", "root", "root_operators", "root_operator"):
            self.read_operators(item)
        elif name in ("resolver", "account_resolver", "accounts_resolver"):
            self.read_resolver(item)
        elif name == "resolver_preload":
            self.read_resolver_preload(item)
        elif name == "default_sentinel":
            sentinel = self.string(item)
            if sentinel is not None:
                self.top["default_sentinel"] = sentinel
        elif name in ("trusted", "trusted_keys"):
            self.top["trusted_keys"] = self.read_key_list(item, "trusted", operator_keys=True)
        elif name == "resolver_pinned_accounts":
            self.top["resolver_pinned_accounts"] = self.read_key_list(item, "resolver_pinned_accounts")
        elif name == "resolver_tls":
            self.top["resolver_tls"] = self.tls_config(self.read_tls(item))
        elif name in _UNSUPPORTED_FIELDS:
            self.error(item, f'field "{key}" is recognised by nats-server but not supported by jsedge')
        elif name in _IGNORED_FIELDS:
            return
        else:
            self.unknown(key, item)

    # -- jetstream --------------------------------------------------------------------------

    def read_jetstream(self, item: ConfValue) -> None:
        section = self.sections["jetstream"]
        value = item.value
        if isinstance(value, bool):
            section["enabled"] = value
            return
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in ("enabled", "enable"):
                section["enabled"] = True
            elif lowered in ("disabled", "disable"):
                section["enabled"] = False
            else:
                self.error(item, f"Expected 'enabled' or 'disabled' for string value, got '{value}'")
            return
        entries = self.mapping(item)
        if entries is None:
            return
        section["enabled"] = True
        ignored = {
            "key", "ek", "encryption_key", "prev_key", "prev_ek", "prev_encryption_key", "cipher",
            "max_outstanding_catchup", "max_catchup", "max_buffered_msgs", "max_buffered_size",
            "request_queue_limit", "extension_hint", "tpm", "meta_compact", "meta_compact_size",
            "meta_compact_sync",
        }  # fmt: skip
        for key, entry in entries.items():
            name = key.lower()
            if name in ("store_dir", "store", "storedir"):
                directory = self.string(entry)
                if directory is not None:
                    if self.top_store_dir_set:
                        self.error(entry, "Duplicate 'store_dir' configuration")
                    section["store_dir"] = directory
            elif name in ("max_memory_store", "max_mem_store", "max_mem"):
                size = self.storage_size(name, entry)
                if size is not None:
                    section["max_memory_store"] = size
            elif name in ("max_file_store", "max_file"):
                size = self.storage_size(name, entry)
                if size is not None:
                    section["max_file_store"] = size
            elif name == "domain":
                domain = self.string(entry)
                if domain is not None:
                    section["domain"] = domain
            elif name in ("enable", "enabled"):
                enabled = self.boolean(entry)
                if enabled is not None:
                    section["enabled"] = enabled
            elif name in ("sync_interval", "sync"):
                if isinstance(entry.value, str) and entry.value.lower() == "always":
                    section["sync_always"] = True
                else:
                    interval = self.duration(name, entry)
                    if interval is not None:
                        section["sync_interval"] = interval
            elif name == "strict":
                strict = self.boolean(entry)
                if strict is not None:
                    section["strict"] = strict
            elif name == "unique_tag":
                tag = self.string(entry)
                if tag is not None:
                    section["unique_tag"] = tag
            elif name == "limits":
                limits = self.mapping(entry)
                if limits is not None:
                    section["limits"] = tuple((key, _plain(value)) for key, value in limits.items())
            elif name not in ignored:
                self.unknown(key, entry)

    # -- authorization ------------------------------------------------------------------------

    def read_subject_permission(self, item: ConfValue) -> SubjectPermission | None:
        if isinstance(item.value, (str, list)):
            subjects = self.strings(item)
            return None if subjects is None else SubjectPermission(allow=subjects)
        entries = self.mapping(item)
        if entries is None:
            return None
        allow: tuple[str, ...] = ()
        deny: tuple[str, ...] = ()
        for key, entry in entries.items():
            name = key.lower()
            if name in ("allow", "deny"):
                subjects = self.strings(entry)
                if subjects is not None:
                    if name == "allow":
                        allow = subjects
                    else:
                        deny = subjects
            else:
                self.error(
                    entry,
                    f"Unknown field name \"{key}\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                )
        return SubjectPermission(allow=allow, deny=deny)

    def read_response_permission(self, item: ConfValue) -> ResponsePermission | None:
        if isinstance(item.value, bool):
            return ResponsePermission() if item.value else None
        entries = self.mapping(item)
        if entries is None:
            return None
        max_msgs, expires = 1, 120.0
        for key, entry in entries.items():
            name = key.lower()
            if name in ("max", "max_msgs", "max_messages", "max_responses"):
                count = self.integer(entry)
                if count is not None:
                    max_msgs = count
            elif name in ("expires", "expiration", "ttl"):
                duration = self.duration(name, entry)
                if duration is not None:
                    expires = duration
            else:
                self.error(entry, f'Unknown field "{key}" parsing permissions')
        return ResponsePermission(max_msgs=max_msgs, expires=expires)

    def read_permissions(self, item: ConfValue) -> Permissions | None:
        entries = self.mapping(item)
        if entries is None:
            return None
        publish = subscribe = None
        responses = None
        for key, entry in entries.items():
            name = key.lower()
            if name in ("pub", "publish", "import"):
                publish = self.read_subject_permission(entry)
            elif name in ("sub", "subscribe", "export"):
                subscribe = self.read_subject_permission(entry)
            elif name in ("allow_responses", "publish_allow_responses"):
                responses = self.read_response_permission(entry)
            else:
                self.error(entry, f'Unknown field "{key}" parsing permissions')
        return Permissions(publish=publish, subscribe=subscribe, allow_responses=responses)

    def read_users(
        self, item: ConfValue, account: str, default_permissions: Permissions | None
    ) -> tuple[UserConfig, ...]:
        elements = self.array(item)
        if elements is None:
            return ()
        users = []
        for element in elements:
            entries = self.mapping(element)
            if entries is None:
                continue
            fields: dict[str, Any] = {"account": account}
            for key, entry in entries.items():
                name = key.lower()
                if name in ("user", "username"):
                    fields["user"] = self.string(entry) or ""
                elif name in ("pass", "password"):
                    fields["password"] = self.string(entry) or ""
                elif name == "nkey":
                    fields["nkey"] = self.string(entry) or ""
                elif name in ("permission", "permissions", "authorization"):
                    fields["permissions"] = self.read_permissions(entry)
                elif name in ("allowed_connection_types", "connection_types", "clients"):
                    fields["allowed_connection_types"] = self.strings(entry) or ()
                elif name == "account" and account == GLOBAL_ACCOUNT:
                    fields["account"] = self.string(entry) or GLOBAL_ACCOUNT
                else:
                    self.unknown(key, entry)
            fields.setdefault("permissions", default_permissions)
            users.append(UserConfig(**fields))
        return tuple(users)

    def read_authorization(self, item: ConfValue) -> None:
        entries = self.mapping(item)
        if entries is None:
            return
        section = self.sections["auth"]
        default_permissions = None
        for key in entries:
            if key.lower() in ("default_permissions", "permissions"):
                default_permissions = self.read_permissions(entries[key])
                section["default_permissions"] = default_permissions
        for key, entry in entries.items():
            name = key.lower()
            if name in ("user", "username"):
                section["user"] = self.string(entry) or ""
            elif name in ("pass", "password"):
                section["password"] = self.string(entry) or ""
            elif name == "token":
                section["token"] = self.string(entry) or ""
            elif name == "timeout":
                timeout = self.seconds(entry)
                if timeout is not None:
                    section["timeout"] = timeout
            elif name == "users":
                section["users"] = self.read_users(entry, GLOBAL_ACCOUNT, default_permissions)
            elif name in ("default_permissions", "permissions"):
                continue
            elif name == "auth_callout":
                self.error(entry, 'field "auth_callout" is recognised by nats-server but not supported by jsedge')
            else:
                self.unknown(key, entry)
        has_user = bool(section.get("user") or section.get("password"))
        if has_user and section.get("token"):
            self.error(item, "Cannot have a user/pass and token")
            return
        if "users" in section or any(account.users for account in self.accounts):
            if section.get("user"):
                self.error(item, "Can not have a single user/pass and a users array")
            if section.get("token"):
                self.error(item, "Can not have a token and a users array")

    # -- accounts -----------------------------------------------------------------------------

    def read_account_jetstream(self, item: ConfValue) -> AccountJetStreamConfig | None | bool:
        value = item.value
        if isinstance(value, bool):
            return AccountJetStreamConfig() if value else None
        if isinstance(value, str):
            if value.lower() in ("enabled", "enable"):
                return AccountJetStreamConfig()
            if value.lower() in ("disabled", "disable"):
                return None
            self.error(item, f"Expected 'enabled' or 'disabled' for string value, got '{value}'")
            return None
        entries = self.mapping(item)
        if entries is None:
            return None
        fields: dict[str, Any] = {}
        names = {
            "max_memory": "max_memory", "max_mem": "max_memory", "mem": "max_memory", "memory": "max_memory",
            "max_store": "max_store", "max_file": "max_store", "max_disk": "max_store", "store": "max_store",
            "disk": "max_store", "max_streams": "max_streams", "streams": "max_streams",
            "max_consumers": "max_consumers", "consumers": "max_consumers",
            "max_ack_pending": "max_ack_pending",
        }  # fmt: skip
        for key, entry in entries.items():
            name = key.lower()
            if name in names:
                number = self.integer(entry)
                if number is not None:
                    fields[names[name]] = number
            elif name == "max_bytes_required":
                required = self.boolean(entry)
                if required is not None:
                    fields["max_bytes_required"] = required
            # Other per-account JetStream keys (tiers, cluster_traffic, ...) are accepted as is.
        return AccountJetStreamConfig(**fields)

    def read_accounts(self, item: ConfValue) -> None:
        if isinstance(item.value, list):
            names = self.strings(item) or ()
            self.accounts.extend(AccountConfig(name=name) for name in names)
            return
        entries = self.mapping(item)
        if entries is None:
            return
        for account_name, account_item in entries.items():
            if account_item.used_as_variable:
                continue
            account_entries = self.mapping(account_item)
            if account_entries is None:
                continue
            fields: dict[str, Any] = {"name": account_name}
            default_permissions = None
            for key, entry in account_entries.items():
                if key.lower() == "default_permissions":
                    default_permissions = self.read_permissions(entry)
                    fields["default_permissions"] = default_permissions
            for key, entry in account_entries.items():
                name = key.lower()
                if name == "users":
                    fields["users"] = self.read_users(entry, account_name, default_permissions)
                elif name == "nkey":
                    fields["nkey"] = self.string(entry) or ""
                elif name == "jetstream":
                    limits = self.read_account_jetstream(entry)
                    fields["jetstream"] = limits is not None
                    fields["jetstream_limits"] = limits
                elif name == "exports":
                    fields["exports"] = self.read_exports(entry)
                elif name == "imports":
                    fields["imports"] = self.read_imports(entry)
                elif name in ("mappings", "maps"):
                    mapping = self.mapping(entry)
                    if mapping is not None:
                        fields["mappings"] = self.read_mappings(mapping)
                elif name == "limits":
                    fields["limits"] = self.read_account_limits(entry)
                elif name in ("default_permissions", "msg_trace", "trace_dest"):
                    continue
                else:
                    self.unknown(key, entry)
            self.accounts.append(AccountConfig(**fields))
        if not self.errors:
            self.check_imports(item)

    # -- operator mode (nats-server's operator / resolver / resolver_preload)

    def read_operators(self, item: ConfValue) -> None:
        from jsedge.jwt import JWTError, decode, read_decorated

        names = self.strings(item)
        if names is None:
            return
        jwts = []
        for name in names:
            try:
                with open(name, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                if not name.startswith("eyJ"):
                    reason = exc.strerror.lower() if exc.strerror else str(exc)
                    self.error(item, f"error parsing operator JWT: open {name}: {reason}")
                    continue
                text = name
            token = read_decorated(text)
            try:
                claims = decode(token, "operator")
            except JWTError as exc:
                self.error(item, f"error parsing operator JWT: {exc}")
                continue
            jwts.append(token)
            system = (claims.get("nats") or {}).get("system_account")
            if len(names) == 1 and isinstance(system, str) and system and "system_account" not in self.top:
                self.top["system_account"] = system
        self.top["operators"] = tuple(jwts)

    def read_resolver(self, item: ConfValue) -> None:
        value = item.value
        kind = ""
        if isinstance(value, str):
            url_match = re.match(r'(?i)(?:URL)(?:\(\s*"?([^\s"]*)"?\s*\))?\s*', value)
            if re.match(r"(?i)(MEM|MEMORY)\s*", value):
                kind = "MEMORY"
            elif url_match is not None and url_match.group(1) is not None:
                url = url_match.group(1)
                from urllib.parse import urlsplit

                try:
                    parts = urlsplit(url)
                except ValueError as problem:
                    self.error(item, f"error parsing account resolver url {url!r}: {problem}")
                    return
                if not parts.scheme or not parts.netloc:
                    self.error(item, f'error parsing account resolver url "{url}": missing scheme or host')
                    return
                self.top["resolver_url"] = url if url.endswith("/") else url + "/"
                kind = "URL"
        elif isinstance(value, dict):
            entries = {k.lower(): v for k, v in value.items()}
            resolver_type = entries.get("type")
            if resolver_type is not None and isinstance(resolver_type.value, str):
                kind = resolver_type.value.upper()
            durations: dict[str, float] = {}
            for name in ("ttl", "interval", "timeout"):
                entry = entries.get(name)
                if entry is None:
                    continue
                if not isinstance(entry.value, str):
                    self.error(entry, f"interface conversion: interface {{}} is {_go_type(entry.value)}, not string")
                    return
                try:
                    durations[name] = parse_go_duration(entry.value)
                except ValueError as problem:
                    self.error(item, str(problem))
                    return
            limit = entries.get("limit")
            if limit is not None and not isinstance(limit.value, int):
                self.error(limit, f"interface conversion: interface {{}} is {_go_type(limit.value)}, not int64")
                return
            allow = entries.get("allow_delete")
            hard = entries.get("hard_delete")
            allow_delete = bool(allow is not None and allow.value is True)
            if kind in ("FULL", "CACHE"):
                directory = entries.get("dir")
                path = directory.value if directory is not None and isinstance(directory.value, str) else ""
                if not path:
                    self.error(item, "dir has no value and needs to point to a directory")
                    self.error(item, "mkdir : no such file or directory")  # (nats-server then tries "")
                    return
                if os.path.exists(path) and (not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK)):
                    self.error(item, "dir needs to point to an accessible directory")
                    return
                if kind == "CACHE":
                    problems = []
                    if durations.get("interval"):
                        problems.append("CACHE does not accept sync")
                    if allow_delete:
                        problems.append("CACHE does not accept allow_delete")
                    if hard is not None:
                        problems.append("CACHE does not accept hard_delete")
                else:
                    problems = []
                    if durations.get("ttl"):
                        problems.append("FULL does not accept ttl")
                    if hard is not None and not allow_delete:
                        problems.append("hard_delete has no effect without delete")
                for text in problems:
                    self.error(item, text)
                if problems:
                    return
                if "timeout" in durations and durations["timeout"] <= 0:
                    self.error(item, f"Fetch timeout {entries['timeout'].value} is too smal")
                    return
                self.top["resolver_dir"] = path
                self.top["resolver_allow_delete"] = allow_delete
                self.top["resolver_hard_delete"] = bool(allow_delete and hard is not None and hard.value is True)
                if "interval" in durations and durations["interval"] > 0:
                    self.top["resolver_interval"] = durations["interval"]
                if "timeout" in durations:
                    self.top["resolver_timeout"] = durations["timeout"]
                if "ttl" in durations:
                    self.top["resolver_ttl"] = durations["ttl"]
                if limit is not None:
                    self.top["resolver_limit"] = int(limit.value)
            kind = kind if kind in ("FULL", "CACHE") else ("MEMORY" if kind in ("MEM", "MEMORY") else "")
        else:
            self.error(item, f"error parsing operator resolver, wrong type {_go_type(value)}")
            return
        if not kind:
            self.error(
                item,
                'error parsing account resolver, should be MEM or  URL("url") or a map containing dir and '
                "type state=[FULL|CACHE])",
            )
            return
        self.top["resolver"] = kind

    def read_key_list(self, item: ConfValue, what: str, operator_keys: bool = False) -> tuple[str, ...]:
        """`trusted`/`trusted_keys` (operator public keys) or `resolver_pinned_accounts`: one key
        or a list of them, with nats-server's errors."""
        value = item.value
        keys: list[str] = []
        if isinstance(value, str):
            keys = [value]
        elif isinstance(value, list):
            for entry in value:
                if isinstance(entry.value, str):
                    keys.append(entry.value)
                else:
                    self.error(entry, f"error parsing {what}: unsupported type in array {_go_type(entry.value)}")
        else:
            self.error(item, f"error parsing {what}: unsupported type {_go_type(value)}")
            return ()
        if operator_keys:
            from jsedge.jwt import public_key_bytes

            for key in keys:
                if public_key_bytes(key, "O") is None:
                    self.error(item, f'trust key "{key}" required to be a valid public operator nkey')
        return tuple(keys)

    def read_resolver_preload(self, item: ConfValue) -> None:
        from jsedge.jwt import JWTError, decode

        if not isinstance(item.value, dict):
            self.error(item, "preload should be a map of account_public_key:account_jwt")
            return
        preload = []
        for key, value in item.value.items():
            if not isinstance(value.value, str):
                self.error(value, "preload map value should be a string JWT")
                continue
            try:
                decode(value.value, "account")
            except JWTError:
                self.error(value, "invalid account JWT")
                continue
            preload.append((key, value.value))
        self.top["resolver_preload"] = tuple(preload)

    # -- exports and imports (nats-server's parseExportStreamOrService / parseImportStreamOrService)

    def read_exports(self, item: ConfValue) -> tuple[ExportConfig, ...]:
        if not isinstance(item.value, list):
            self.error(item, f"Exports should be an array, got {_go_type(item.value)}")
            return ()
        exports = []
        for element in item.value:
            if not isinstance(element.value, dict):
                self.error(element, f"Export Items should be a map with type entry, got {_go_type(element.value)}")
                continue
            export = self.read_export(element.value)
            if export is not None:
                exports.append(export)
        return tuple(exports)

    def read_export(self, entries: dict[str, ConfValue]) -> ExportConfig | None:
        kind = subject = ""
        fields: dict[str, Any] = {}
        response_item: ConfValue | None = None
        latency_item: ConfValue | None = None
        for key, value in entries.items():
            name = key.lower()
            if name in ("stream", "service"):
                if kind and kind != name:
                    self.error(value, f"Detected {name} {_go_quote(str(value.value))} but already saw a {kind}")
                    continue
                if name == "stream" and response_item is not None:
                    self.error(response_item, "Detected response directive on non-service")
                    continue
                if name == "stream" and latency_item is not None:
                    self.error(latency_item, "Detected latency directive on non-service")
                    continue
                if not isinstance(value.value, str):
                    self.error(value, f"Expected {name} name to be string, got {_go_type(value.value)}")
                    continue
                kind, subject = name, value.value
            elif name in ("response", "response_type"):
                if "response_type" in fields:
                    self.error(value, "Duplicate response type definition")
                    continue
                response_item = value
                if not isinstance(value.value, str):
                    self.error(value, f"Expected response type to be string, got {_go_type(value.value)}")
                    continue
                response = {"single": "singleton", "singleton": "singleton", "stream": "stream"}.get(
                    value.value.lower(), "chunked" if value.value.lower() in ("chunk", "chunked") else ""
                )
                if not response:
                    self.error(value, f"Unknown response type: {_go_quote(value.value)}")
                    continue
                fields["response_type"] = response
                if kind == "stream":
                    self.error(value, "Detected response directive on non-service")
            elif name in ("threshold", "response_threshold", "response_max_time", "response_time"):
                if "response_threshold" in fields:
                    self.error(value, "Duplicate response threshold detected")
                    continue
                response_item = value
                if not isinstance(value.value, str):
                    self.error(
                        value,
                        f"Expected response threshold to be a parseable time duration, got {_go_type(value.value)}",
                    )
                    continue
                try:
                    fields["response_threshold"] = parse_go_duration(value.value)
                except ValueError:
                    self.error(
                        value,
                        f"Expected response threshold to be a parseable time duration, got {_go_quote(value.value)}",
                    )
                    continue
                if kind == "stream":
                    self.error(value, "Detected response directive on non-service")
            elif name == "accounts":
                names = self.strings(value)
                if names is not None:
                    fields["accounts"] = names
            elif name == "account_token_position":
                position = self.integer(value)
                if position is not None:
                    fields["token_position"] = position
            elif name == "latency":
                latency_item = value
                parsed = self.read_latency(value)
                if parsed is None:
                    continue
                if kind == "stream":
                    self.error(value, "Detected latency directive on non-service")
                    continue
                fields["latency_subject"], fields["latency_sampling"] = parsed
            elif name == "allow_trace":
                continue  # accepted
            else:
                self.unknown(key, value)
        if not kind:
            return None
        return ExportConfig(kind=kind, subject=subject, **fields)

    def read_latency(self, item: ConfValue) -> tuple[str, int] | None:
        """nats-server's parseServiceLatency: a subject, or `{sampling: 1-100 | "N%" | "headers",
        subject}`; (subject, sampling) with 0 for "headers"."""
        value = item.value
        if isinstance(value, str):
            return value, 100
        if not isinstance(value, dict):
            self.error(item, f"Expected latency entry to be a map/struct or string, got {_go_type(value)}")
            return None
        entries = {k.lower(): v for k, v in value.items()}
        sampling = 100
        sample = entries.get("sampling")
        if sample is not None:
            raw = sample.value
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                self.error(sample, f"Expected latency sample to be a string or map/struct, got {_go_type(raw)}")
                return None
            if isinstance(raw, str) and raw.strip().lower() == "headers":
                sampling = 0
            else:
                text = raw.strip().removesuffix("%") if isinstance(raw, str) else str(raw)
                if not re.fullmatch(r"[+-]?\d+", text):
                    self.error(
                        sample, f'Failed to parse latency sample: strconv.Atoi: parsing "{text}": invalid syntax'
                    )
                    return None
                sampling = int(text)
                if sampling < 1 or sampling > 100:
                    self.error(sample, "bad sampling percentage, should be 1-100")
                    return None
        subject = entries.get("subject")
        if subject is None:
            self.error(item, "Latency subject required, but missing")
            return None
        if not isinstance(subject.value, str):
            self.error(subject, f"Expected latency subject to be a string, got {_go_type(subject.value)}")
            return None
        return subject.value, sampling

    def read_imports(self, item: ConfValue) -> tuple[ImportConfig, ...]:
        if not isinstance(item.value, list):
            self.error(item, f"Imports should be an array, got {_go_type(item.value)}")
            return ()
        imports: list[ImportConfig] = []
        for element in item.value:
            if not isinstance(element.value, dict):
                self.error(element, f"Import Items should be a map with type entry, got {_go_type(element.value)}")
                continue
            entry = self.read_import(element.value)
            if entry is None:
                continue
            if entry.kind == "service":
                local = entry.to or entry.subject
                for other in imports:
                    if (
                        other.kind == "service"
                        and (other.to or other.subject) == local
                        and other.account == entry.account
                    ):
                        self.error(
                            element,
                            f"Duplicate service import subject {_go_quote(local)}, previously used in import for "
                            f"account {_go_quote(other.account)}, subject {_go_quote(other.subject)}",
                        )
                        break
                else:
                    imports.append(entry)
                continue
            imports.append(entry)
        return tuple(imports)

    def read_import(self, entries: dict[str, ConfValue]) -> ImportConfig | None:
        kind = account = subject = to = prefix = ""
        share = False
        for key, value in entries.items():
            name = key.lower()
            if name in ("stream", "service"):
                if kind and kind != name:
                    self.error(value, f"Detected {name} but already saw a {kind}")
                    continue
                if not isinstance(value.value, dict):
                    self.error(
                        value,
                        f"{name.capitalize()} entry should be an account map, got {_go_type(value.value)}",
                    )
                    continue
                account = subject = ""
                for inner_key, inner in value.value.items():
                    if inner_key.lower() == "account":
                        account = self.string(inner) or ""
                    elif inner_key.lower() == "subject":
                        subject = self.string(inner) or ""
                    else:
                        self.unknown(inner_key, inner)
                if not account or not subject:
                    self.error(value, "Expect an account name and a subject")
                    continue
                kind = name
            elif name == "prefix":
                prefix = self.string(value) or ""
            elif name == "to":
                to = self.string(value) or ""
                if kind == "stream" and prefix:
                    self.error(value, "Stream import can not have a 'prefix' and a 'to' property")
            elif name == "share":
                share = bool(self.boolean(value))
            elif name == "allow_trace":
                if kind == "service":
                    self.error(value, "Detected allow_trace directive on a non-stream")
            else:
                self.unknown(key, value)
        if not kind:
            return None
        return ImportConfig(kind=kind, account=account, subject=subject, to=to, prefix=prefix, share=share)

    def check_imports(self, item: ConfValue) -> None:
        """Every import names a defined account and is covered by one of its exports open to the
        importer (nats-server checks this once all accounts are read, reporting at `accounts`)."""
        from jsedge.subjects import valid_subject

        by_name = {account.name: account for account in self.accounts}
        for account in self.accounts:
            for export in account.exports:
                for name in export.accounts:
                    if name not in by_name:
                        self.error(item, f"{_go_quote(name)} account not defined for {export.kind} export")
        for account in self.accounts:
            for entry in account.imports:
                origin = by_name.get(entry.account)
                if origin is None:
                    self.error(item, f"{_go_quote(entry.account)} account not defined for {entry.kind} import")
                    continue
                allowed = valid_subject(entry.subject.encode()) and any(
                    export_allows(export, entry, account.name) for export in origin.exports
                )
                if not allowed:
                    self.error(
                        item,
                        f"Error adding {entry.kind} import {_go_quote(entry.subject)}: {entry.kind} import not authorized",
                    )

    def read_account_limits(self, item: ConfValue) -> AccountLimits:
        entries = self.mapping(item) or {}
        names = {
            "max_connections": "max_connections", "max_conn": "max_connections",
            "max_subscriptions": "max_subscriptions", "max_subs": "max_subscriptions",
            "max_payload": "max_payload", "max_pay": "max_payload",
            "max_leafnodes": "max_leafnodes", "max_leafs": "max_leafnodes",
        }  # fmt: skip
        fields: dict[str, int] = {}
        for key, entry in entries.items():
            if key.lower() in names:
                number = self.integer(entry)
                if number is not None:
                    fields[names[key.lower()]] = number
            else:
                self.unknown(key, entry)
        return AccountLimits(**fields)

    # -- tls ----------------------------------------------------------------------------------

    def read_tls(self, item: ConfValue) -> dict[str, Any] | None:
        entries = self.mapping(item)
        if entries is None:
            return None
        fields: dict[str, Any] = {"position": item.position}
        string_fields = {"cert_file": "cert_file", "key_file": "key_file", "ca_file": "ca_file",
                         "min_version": "min_version"}  # fmt: skip
        bool_fields = {"verify": "verify", "verify_and_map": "verify_and_map", "map_and_verify": "verify_and_map",
                       "insecure": "insecure"}  # fmt: skip
        list_fields = {"cipher_suites": "cipher_suites", "curve_preferences": "curve_preferences",
                       "pinned_certs": "pinned_certs"}  # fmt: skip
        ignored = {"verify_cert_and_check_known_urls", "cert_store", "cert_match", "cert_match_by",
                   "cert_match_skip_invalid", "ca_certs_match", "ocsp_peer", "certs", "connection_rate_limiter"}  # fmt: skip
        for key, entry in entries.items():
            name = key.lower()
            if name in string_fields:
                value = self.string(entry)
                if value is not None:
                    fields[string_fields[name]] = value
            elif name in bool_fields:
                value = self.boolean(entry)
                if value is not None:
                    fields[bool_fields[name]] = value
            elif name in list_fields:
                values = self.strings(entry)
                if values is not None:
                    fields[list_fields[name]] = values
            elif name == "timeout":
                timeout = self.seconds(entry)
                if timeout is not None:
                    fields["timeout"] = timeout
            elif name in ("handshake_first", "first", "immediate"):
                value = entry.value
                if isinstance(value, bool):
                    fields["handshake_first"] = value
                elif isinstance(value, str) and value.lower() == "auto":
                    fields["handshake_first"] = True
                    fields["handshake_first_fallback"] = 0.05
                elif isinstance(value, str):
                    try:
                        fields["handshake_first_fallback"] = parse_go_duration(value)
                        fields["handshake_first"] = True
                    except ValueError as problem:
                        self.error(entry, f"error parsing tls config, {problem}")
                else:
                    self.boolean(entry)
            elif name not in ignored:
                self.error(entry, f'error parsing tls config, unknown field "{key}"')
        return fields

    def tls_config(self, fields: dict[str, Any] | None) -> TLSConfig | None:
        """Build a TLSConfig, checking the files as nats-server does when it loads them."""
        if fields is None:
            return None
        fields = dict(fields)
        position: Position | None = fields.pop("position", None)
        prefix = position.prefix() if position else ""
        cert, key = fields.get("cert_file", ""), fields.get("key_file", "")
        if cert and not key:
            self.errors.append(prefix + "missing 'key_file' in TLS configuration")
        elif key and not cert:
            self.errors.append(prefix + "missing 'cert_file' in TLS configuration")
        elif cert:
            for path in (cert, key):
                if not os.path.isfile(path):
                    self.errors.append(
                        prefix + f"error parsing X509 certificate/key pair: open {path}: no such file or directory"
                    )
                    break
        ca_file = fields.get("ca_file", "")
        if ca_file and not os.path.isfile(ca_file):
            self.errors.append(prefix + f"open {ca_file}: no such file or directory")
        return TLSConfig(**fields)

    # -- cluster and leaf nodes ---------------------------------------------------------------

    def read_listener_entry(self, name: str, entry: ConfValue, section: dict[str, Any]) -> bool:
        """Keys shared by `cluster`, `leafnodes` (and `websocket`); True when `name` was one."""
        if name == "listen":
            parsed = self.host_port(entry)
            if parsed is not None:
                if parsed[0] is not None:
                    section["host"] = parsed[0]
                section["port"] = parsed[1]
        elif name == "port":
            port = self.integer(entry)
            if port is not None:
                section["port"] = port
        elif name in ("host", "net"):
            host = self.string(entry)
            if host is not None:
                section["host"] = host
        elif name in ("advertise", "cluster_advertise"):
            advertise = self.string(entry)
            if advertise is not None:
                section["advertise"] = advertise
        elif name == "no_advertise":
            flag = self.boolean(entry)
            if flag is not None:
                section["no_advertise"] = flag
        elif name == "tls":
            section["tls"] = self.tls_config(self.read_tls(entry))
        elif name == "compression":
            value = entry.value
            section["compression"] = ("s2_fast" if value else "off") if isinstance(value, bool) else str(_plain(value))
        else:
            return False
        return True

    def read_cluster(self, item: ConfValue) -> None:
        entries = self.mapping(item)
        if entries is None:
            return
        section = self.sections["cluster"]
        ignored = {"permissions", "connect_backoff", "pinned_certs", "route_compression"}
        for key, entry in entries.items():
            name = key.lower()
            if self.read_listener_entry(name, entry, section):
                continue
            if name == "name":
                cluster_name = self.string(entry)
                if cluster_name is not None:
                    if " " in cluster_name:
                        self.error(entry, "cluster name cannot contain spaces")
                    section["name"] = cluster_name
            elif name == "routes":
                routes = self.strings(entry)
                if routes is not None:
                    section["routes"] = routes
            elif name == "connect_retries":
                retries = self.integer(entry)
                if retries is not None:
                    section["connect_retries"] = retries
            elif name == "pool_size":
                size = self.integer(entry)
                if size is not None:
                    section["pool_size"] = size
            elif name == "accounts":
                accounts = self.strings(entry)
                if accounts is not None:
                    section["accounts"] = accounts
            elif name in ("ping_interval", "write_deadline"):
                duration = self.duration(name, entry)
                if duration is not None:
                    section[name] = duration
            elif name == "ping_max":
                section["ping_max"] = self.integer(entry)
            elif name == "write_timeout":
                policy = self.write_timeout_policy(entry)
                if policy is not None:
                    section["write_timeout"] = policy
            elif name in ("authorization", "authentication"):
                self.read_single_user_authorization(entry, section, "Cluster")
            elif name not in ignored:
                self.unknown(key, entry)

    def write_timeout_policy(self, item: ConfValue) -> str | None:
        """`write_timeout: default | close | retry` (nats-server's parseWriteDeadlinePolicy)."""
        value = self.string(item)
        if value is None:
            return None
        if value not in ("default", "close", "retry"):
            self.error(item, "write_timeout must be 'default', 'close' or 'retry'")
            return None
        return value

    def read_single_user_authorization(self, item: ConfValue, section: dict[str, Any], owner: str) -> None:
        entries = self.mapping(item)
        if entries is None:
            return
        for key, entry in entries.items():
            name = key.lower()
            if name in ("user", "username"):
                section["user"] = self.string(entry) or ""
            elif name in ("pass", "password"):
                section["password"] = self.string(entry) or ""
            elif name == "timeout":
                section["auth_timeout"] = self.seconds(entry)
            elif name == "token":
                self.error(item, f"{owner} authorization does not support tokens")
            elif name == "users":
                if owner == "Cluster":
                    self.error(item, "Cluster authorization does not allow multiple users")
                else:
                    section["users"] = self.read_users(entry, GLOBAL_ACCOUNT, None)
            elif name == "account" and owner != "Cluster":
                section["account"] = self.string(entry) or ""
            elif name in ("nkey", "permissions", "proxy_required"):
                continue
            else:
                self.unknown(key, entry)

    def read_leafnodes(self, item: ConfValue) -> None:
        entries = self.mapping(item)
        if entries is None:
            return
        section = self.sections["leafnodes"]
        ignored = {"min_version", "write_deadline", "write_timeout", "isolate_leafnode_interest", "hub"}
        for key, entry in entries.items():
            name = key.lower()
            if self.read_listener_entry(name, entry, section):
                continue
            if name == "remotes":
                elements = self.array(entry)
                if elements is not None:
                    section["remotes"] = tuple(_plain(element) for element in elements)
            elif name in ("reconnect", "reconnect_delay", "reconnect_interval"):
                section["reconnect_delay"] = self.seconds(entry)
            elif name in ("authorization", "authentication"):
                self.read_single_user_authorization(entry, section, "Leafnode")
            elif name not in ignored:
                self.unknown(key, entry)

    def read_simple_auth(self, entry: ConfValue, section: dict[str, Any]) -> None:
        """nats-server's parseSimpleAuth: the `authorization` of the websocket and mqtt blocks
        (one user or a token, and a timeout), in place of the server's for their clients."""
        auth = self.mapping(entry)
        for auth_key, auth_entry in (auth or {}).items():
            auth_name = auth_key.lower()
            if auth_name in ("user", "username"):
                section["username"] = self.string(auth_entry) or ""
            elif auth_name in ("pass", "password"):
                section["password"] = self.string(auth_entry) or ""
            elif auth_name == "token":
                section["token"] = self.string(auth_entry) or ""
            elif auth_name == "timeout":
                section["auth_timeout"] = self.seconds(auth_entry)
            else:
                self.unknown(auth_key, auth_entry)

    def read_websocket(self, item: ConfValue) -> None:
        """nats-server's `websocket` block (parseWebsocket)."""
        entries = self.mapping(item)
        if entries is None:
            return
        section = self.sections["websocket"]
        ignored = {"compression_level", "tls_map", "verify_and_map"}
        errors_before = len(self.errors)
        for key, entry in entries.items():
            name = key.lower()
            if name in ("listen", "port", "host", "net", "advertise", "tls"):
                self.read_listener_entry(name, entry, section)
            elif name in ("no_tls", "compression", "same_origin"):
                flag = self.boolean(entry)
                if flag is not None:
                    section[name] = flag
            elif name == "allowed_origins":
                value = entry.value
                if isinstance(value, str):
                    section["allowed_origins"] = (value,)
                else:
                    elements = self.array(entry)
                    if elements is not None:
                        section["allowed_origins"] = tuple(str(_plain(element)) for element in elements)
            elif name == "handshake_timeout":
                timeout = self.seconds(entry)
                if timeout is not None:
                    section["handshake_timeout"] = timeout
            elif name in ("authorization", "authentication"):
                self.read_simple_auth(entry, section)
            elif name in ("no_auth_user", "jwt_cookie", "user_cookie", "pass_cookie", "token_cookie"):
                text = self.string(entry)
                if text is not None:
                    section[name] = text
            elif name == "headers":
                headers = self.mapping(entry)
                if headers is None:
                    continue
                pairs = []
                for header, value in headers.items():
                    if not isinstance(value.value, str):
                        self.error(
                            value, f"error parsing header key {header}: unsupported type {_go_type(value.value)}"
                        )
                        continue
                    pairs.append((header, value.value))
                section["headers"] = tuple(pairs)
            elif name == "ping_interval":
                interval = self.seconds(entry)
                if interval is not None:
                    section["ping_interval"] = interval
            elif name not in ignored:
                self.unknown(key, entry)
        if len(self.errors) > errors_before:
            return
        if section.get("port") and not section.get("no_tls") and section.get("tls") is None:
            # (nats-server says so when it starts, without a position)
            self.errors.append("websocket requires TLS configuration")
        for origin in section.get("allowed_origins", ()):
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https"):
                self.errors.append(
                    f'unable to parse allowed origin "{origin}": allowed origins must be absolute URLs with '
                    "http or https scheme"
                )
            elif not parts.hostname:
                self.errors.append(f'unable to parse allowed origin "{origin}": host is required')

    def read_http_block(self, name: str, item: ConfValue, monitor: dict[str, Any]) -> None:
        """jsedge's map form of `http`/`https` (nats-server takes only `host:port` there): the
        listener and, opt-in, an `auth` block for the monitoring port (the console shows payloads)."""
        entries = self.mapping(item) or {}
        port_key = "port" if name == "http" else "https_port"
        for key, entry in entries.items():
            lowered = key.lower()
            if lowered == "listen":
                parsed = self.host_port(entry)
                if parsed is not None:
                    if parsed[0] is not None:
                        monitor["host"] = parsed[0]
                    monitor[port_key] = parsed[1]
            elif lowered == "port":
                port = self.integer(entry)
                if port is not None:
                    monitor[port_key] = port
            elif lowered in ("host", "net"):
                host = self.string(entry)
                if host is not None:
                    monitor["host"] = host
            elif lowered in ("auth", "authorization"):
                auth = self.mapping(entry) or {}
                for auth_key, auth_entry in auth.items():
                    auth_name = auth_key.lower()
                    if auth_name in ("user", "username"):
                        monitor["auth_user"] = self.string(auth_entry) or ""
                    elif auth_name in ("pass", "password"):
                        monitor["auth_password"] = self.string(auth_entry) or ""
                    elif auth_name == "token":
                        monitor["auth_token"] = self.string(auth_entry) or ""
                    else:
                        self.unknown(auth_key, auth_entry)
                if monitor.get("auth_token") and (monitor.get("auth_user") or monitor.get("auth_password")):
                    self.error(entry, "http auth: either user and password, or a token")
                elif bool(monitor.get("auth_user")) != bool(monitor.get("auth_password")):
                    self.error(entry, "http auth: a user needs a password (and a password a user)")
                elif not monitor.get("auth_token") and not monitor.get("auth_user"):
                    self.error(entry, "http auth: user and password, or a token")
            elif lowered == "console":
                console = self.mapping(entry) or {}
                for console_key, console_entry in console.items():
                    if console_key.lower() == "actions":
                        flag = self.boolean(console_entry)
                        if flag is not None:
                            monitor["console_actions"] = flag
                    else:
                        self.unknown(console_key, console_entry)
            else:
                self.unknown(key, entry)
        if monitor.get("console_actions") and not (monitor.get("auth_user") or monitor.get("auth_token")):
            self.error(item, "http console actions need http auth")

    def read_mqtt(self, item: ConfValue) -> None:
        """nats-server's `mqtt` block (parseMQTT)."""
        entries = self.mapping(item)
        if entries is None:
            return
        section = self.sections["mqtt"]
        for key, entry in entries.items():
            name = key.lower()
            if name in ("listen", "port", "host", "net", "tls"):
                self.read_listener_entry(name, entry, section)
            elif name in ("authorization", "authentication"):
                self.read_simple_auth(entry, section)
            elif name in ("no_auth_user", "js_domain"):
                text = self.string(entry)
                if text is not None:
                    section[name] = text
            elif name in ("ack_wait", "ackwait"):
                section["ack_wait"] = self.duration("ack_wait", entry) or 0.0
            elif name in ("js_api_timeout", "api_timeout"):
                section["js_api_timeout"] = self.duration("js_api_timeout", entry) or 0.0
            elif name in ("consumer_inactive_threshold", "consumer_auto_cleanup"):
                section["consumer_inactive_threshold"] = self.duration("consumer_inactive_threshold", entry) or 0.0
            elif name in ("max_ack_pending", "max_pending", "max_inflight"):
                pending = self.integer(entry)
                if pending is None:
                    continue
                if pending < 0 or pending > 0xFFFF:
                    self.error(entry, f"invalid value {pending}, should in [0..{0xFFFF}] range")
                else:
                    section["max_ack_pending"] = pending
            elif name == "stream_replicas":
                replicas = self.integer(entry)
                if replicas is not None:
                    section["stream_replicas"] = replicas
            elif name == "consumer_replicas":
                self.warnings.append(
                    f'{entry.position.prefix()}invalid use of field "{key}": '
                    "consumer replicas setting ignored in this server version"
                )
            elif name in ("consumer_memory_storage", "reject_qos2_publish", "downgrade_qos2_subscribe"):
                flag = self.boolean(entry)
                if flag is not None:
                    section[name] = flag
            else:
                self.unknown(key, entry)

    def check_websocket(self) -> None:
        """What nats-server checks of the websocket block when it starts (validateWebsocketOptions)
        and needs the whole file read first."""
        section = self.sections["websocket"]
        if section.get("username") or section.get("token"):
            auth = self.sections["auth"]
            has_users = bool(auth.get("users")) or any(account.users for account in self.accounts)
            if has_users:
                what = "username" if section.get("username") else "token"
                self.errors.append(f"websocket authentication {what} not compatible with presence of users/nkeys")
        jwt_cookie = section.get("jwt_cookie")
        if jwt_cookie and not self.top.get("operators") and not self.top.get("trusted_keys"):
            self.errors.append(
                "trusted operators or trusted keys configuration is required for JWT authentication via cookie "
                f'"{jwt_cookie}"'
            )
        for header, _value in section.get("headers", ()):
            lowered = header.lower()
            if lowered in ("host", "content-length", "connection", "upgrade", "nats-no-masking"):
                self.errors.append(f'websocket: invalid header "{header}" not allowed')
            elif lowered.startswith("sec-websocket-"):
                self.errors.append(f'websocket: invalid header "{header}", "Sec-WebSocket-" prefix not allowed')


# -- command line -----------------------------------------------------------------------------

#: flag name -> (kind, setting). kind: "bool", "int" or "string".
_FLAGS: dict[str, tuple[str, str]] = {}
for _names, _kind, _setting in (
    (("a", "addr", "net"), "string", "host"),
    (("p", "port"), "int", "port"),
    (("n", "name", "server_name"), "string", "server_name"),
    (("P", "pid"), "string", "pidfile"),
    (("m", "http_port"), "int", "http_port"),
    (("ms", "https_port"), "int", "https_port"),
    (("c", "config"), "string", "config"),
    (("t",), "bool", "check_config"),
    (("sl", "signal"), "string", "signal"),
    (("client_advertise",), "string", "client_advertise"),
    (("ports_file_dir",), "string", "ports_file_dir"),
    (("l", "log"), "string", "logfile"),
    (("T", "logtime"), "bool", "logtime"),
    (("logtime_utc",), "bool", "logtime_utc"),
    (("s", "syslog"), "bool", "syslog"),
    (("r", "remote_syslog"), "string", "remote_syslog"),
    (("D", "debug"), "bool", "debug"),
    (("V", "trace"), "bool", "trace"),
    (("VV",), "bool", "trace_verbose"),
    (("DV",), "bool", "debug_and_trace"),
    (("DVV",), "bool", "debug_and_trace_verbose"),
    (("log_size_limit",), "int", "log_size_limit"),
    (("max_traced_msg_len",), "int", "max_traced_msg_len"),
    (("js", "jetstream"), "bool", "jetstream"),
    (("sd", "store_dir"), "string", "store_dir"),
    (("user",), "string", "user"),
    (("pass",), "string", "password"),
    (("auth",), "string", "token"),
    (("tls",), "bool", "tls"),
    (("tlscert",), "string", "tls_cert"),
    (("tlskey",), "string", "tls_key"),
    (("tlscacert",), "string", "tls_ca"),
    (("tlsverify",), "bool", "tls_verify"),
    (("routes",), "string", "routes"),
    (("cluster", "cluster_listen"), "string", "cluster_listen"),
    (("cluster_name",), "string", "cluster_name"),
    (("cluster_advertise",), "string", "cluster_advertise"),
    (("no_advertise",), "bool", "no_advertise"),
    (("connect_retries",), "int", "connect_retries"),
    (("profile",), "int", "profile"),
    (("h", "help"), "bool", "help"),
    (("v", "version"), "bool", "version"),
    (("help_tls",), "bool", "help_tls"),
):
    for _name in _names:
        _FLAGS[_name] = (_kind, _setting)

HELP_TEXT = """\
Usage: jsedge [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222)
    -n, --name, --server_name <name> Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -ms,--https_port <port>          Use port for https monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to jsedge process (ldm, stop, quit, term, reopen, reload)
        --client_advertise <string>  Client URL to advertise to other servers
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
        --logtime_utc                Timestamps in UTC instead of local timezone
    -s, --syslog                     Log to syslog or windows event log
    -r, --remote_syslog <addr>       Syslog server addr (udp://localhost:514)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace (traces system account as well)
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace (traces system account as well)
        --log_size_limit <limit>     Logfile size limit (default: auto)
        --max_traced_msg_len <len>   Maximum printable length for traced messages (default: unlimited)

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster URL to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
        --help_tls                   TLS help
"""

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """Go `flag` package rules; returns setting -> value for the flags that were given."""
    settings: dict[str, Any] = {}
    index = 0
    while index < len(argv):
        argument = argv[index]
        index += 1
        if len(argument) < 2 or not argument.startswith("-"):
            raise ConfigError([f"unexpected argument {argument!r}: jsedge takes options only"])
        if argument == "--":
            if index < len(argv):
                raise ConfigError([f"unexpected argument {argv[index]!r}: jsedge takes options only"])
            break
        name = argument[2:] if argument.startswith("--") else argument[1:]
        if not name or name.startswith("-") or name.startswith("="):
            raise ConfigError([f"bad flag syntax: {argument}"])
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name not in _FLAGS:
            raise ConfigError([f"flag provided but not defined: -{name}"])
        kind, setting = _FLAGS[name]
        if kind == "bool":
            if value is None:
                settings[setting] = True
            elif value in _GO_TRUE:
                settings[setting] = True
            elif value in _GO_FALSE:
                settings[setting] = False
            else:
                raise ConfigError([f'invalid boolean value "{value}" for -{name}: parse error'])
            continue
        if value is None:
            if index >= len(argv):
                raise ConfigError([f"flag needs an argument: -{name}"])
            value = argv[index]
            index += 1
        if kind == "int":
            try:
                settings[setting] = int(value, 0) if value.lower().startswith(("0x", "0o", "0b")) else int(value)
            except ValueError:
                raise ConfigError([f'invalid value "{value}" for flag -{name}: parse error']) from None
        else:
            settings[setting] = value
    return settings


def _split_url_host_port(url: str) -> tuple[str, int, str, str]:
    """`nats://user:pass@host:port` -> (host, port, user, password)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    credentials, _, address = rest.rpartition("@")
    user, _, password = credentials.partition(":")
    address = address.split("/", 1)[0]
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError([f"could not parse cluster URL {url!r}: missing or bad port"]) from None
    return host, port, user, password


def _apply_flags(reader: _FileReader, flags: dict[str, Any]) -> None:
    """Command-line flags override the file (nats-server's `MergeOptions`)."""
    top, sections = reader.top, reader.sections
    listen, monitor, logging_ = sections["listen"], sections["monitor"], sections["logging"]
    auth, jetstream, cluster = sections["auth"], sections["jetstream"], sections["cluster"]
    direct = {
        "host": (listen, "host"), "port": (listen, "port"), "client_advertise": (listen, "client_advertise"),
        "server_name": (top, "server_name"), "pidfile": (top, "pidfile"),
        "ports_file_dir": (top, "ports_file_dir"), "http_port": (monitor, "port"),
        "https_port": (monitor, "https_port"), "logfile": (logging_, "logfile"),
        "logtime": (logging_, "logtime"), "logtime_utc": (logging_, "logtime_utc"),
        "syslog": (logging_, "syslog"), "remote_syslog": (logging_, "remote_syslog"),
        "debug": (logging_, "debug"), "trace": (logging_, "trace"),
        "log_size_limit": (logging_, "log_size_limit"), "max_traced_msg_len": (logging_, "max_traced_msg_len"),
        "jetstream": (jetstream, "enabled"), "store_dir": (jetstream, "store_dir"),
        "user": (auth, "user"), "password": (auth, "password"), "token": (auth, "token"),
        "cluster_name": (cluster, "name"), "cluster_advertise": (cluster, "advertise"),
        "no_advertise": (cluster, "no_advertise"), "connect_retries": (cluster, "connect_retries"),
        "check_config": (top, "check_config"), "signal": (top, "signal"), "profile": (top, "profile_port"),
    }  # fmt: skip
    for setting, value in flags.items():
        if setting in direct:
            target, attribute = direct[setting]
            target[attribute] = value
    if flags.get("trace_verbose"):
        logging_.update(trace=True, trace_verbose=True)
    if flags.get("debug_and_trace"):
        logging_.update(debug=True, trace=True)
    if flags.get("debug_and_trace_verbose"):
        logging_.update(debug=True, trace=True, trace_verbose=True)
    if "routes" in flags:
        cluster["routes"] = tuple(route.strip() for route in flags["routes"].split(",") if route.strip())
    if "cluster_listen" in flags:
        host, port, user, password = _split_url_host_port(flags["cluster_listen"])
        cluster.update(host=host, port=port)
        if user:
            cluster.update(user=user, password=password)
    if flags.get("tls") or flags.get("tls_verify"):
        tls = dict(reader.tls or {})
        tls.pop("position", None)
        for setting, attribute in (("tls_cert", "cert_file"), ("tls_key", "key_file"), ("tls_ca", "ca_file")):
            if setting in flags:
                tls[attribute] = flags[setting]
        if "tls_verify" in flags:
            tls["verify"] = flags["tls_verify"]
        reader.tls = tls


# -- validation -------------------------------------------------------------------------------


def _validate(config: ServerConfig, problems: list[str], warnings: list[str]) -> None:
    """nats-server's `validateOptions` and startup checks that span several options."""
    limits = config.limits
    if limits.max_payload > limits.max_pending:
        problems.append(f"max_payload ({limits.max_payload}) cannot be higher than max_pending ({limits.max_pending})")
    if limits.max_payload > _PAYLOAD_WARNING_THRESHOLD:
        warnings.append("Maximum payloads over 8.00 MB are generally discouraged and could lead to poor performance")
    if config.lame_duck_grace_period >= config.lame_duck_duration:
        problems.append(
            f"lame duck grace period ({format_go_duration(config.lame_duck_grace_period)}) should be "
            f"strictly lower than lame duck duration ({format_go_duration(config.lame_duck_duration)})"
        )
    if " " in config.server_name:
        problems.append("server name cannot contain spaces")
    if config.jetstream.enabled and config.cluster.port != 0:
        if not config.server_name:
            problems.append("jetstream cluster requires `server_name` to be set")
        if not config.cluster.name:
            problems.append("jetstream cluster requires `cluster.name` to be set")
    auth = config.auth
    if (auth.user or auth.password) and auth.token and not any("user/pass and token" in p for p in problems):
        problems.append("Cannot have a user/pass and token")
    all_users = list(auth.users) + [user for account in config.accounts for user in account.users]
    seen: set[str] = set()
    for user in all_users:
        if user.user and user.user in seen:
            problems.append(f'Duplicate user "{user.user}" detected')
        seen.add(user.user)
    nkeys = {user.nkey for user in all_users if user.nkey}
    if config.no_auth_user and config.no_auth_user not in seen and config.no_auth_user not in nkeys:
        problems.append(
            f'no_auth_user: "{config.no_auth_user}" not present as user or nkey in authorization block '
            "or account configuration"
        )
    mqtt = config.mqtt
    if mqtt.port:
        # nats-server's validateMQTTOptions, in its order
        if not config.server_name and config.cluster.port != 0:
            problems.append("mqtt requires server name to be explicitly set")
        elif mqtt.no_auth_user and not all_users:
            problems.append(f'no_auth_user: "{mqtt.no_auth_user}" present, but users/nkeys are not defined')
        elif mqtt.no_auth_user and mqtt.no_auth_user not in seen and mqtt.no_auth_user not in nkeys:
            problems.append(
                f'no_auth_user: "{mqtt.no_auth_user}" not present as user or nkey in authorization block '
                "or account configuration"
            )
        elif auth.users and mqtt.username:
            problems.append("mqtt authentication username not compatible with presence of users/nkeys")
        elif auth.users and mqtt.token:
            problems.append("mqtt authentication token not compatible with presence of users/nkeys")
        elif mqtt.ack_wait < 0:
            problems.append("ack wait must be a positive value")
        elif mqtt.js_api_timeout < 0:
            problems.append("JS API timeout must be a positive value")
        elif (
            not config.jetstream.enabled
            and config.cluster.port == 0
            and config.leafnodes.port == 0
            and not config.leafnodes.remotes
        ):
            problems.append("mqtt requires JetStream to be enabled if running in standalone mode")
    passwords = [auth.password] + [user.password for user in all_users]
    if any(password and not _BCRYPT_PATTERN.match(password) for password in passwords):
        warnings.append("Plaintext passwords detected, use nkeys or bcrypt")


def _operator_accounts(reader: _FileReader) -> list[AccountConfig]:
    """Operator mode: the checks nats-server makes of the options (validateTrustedOperators), then
    the accounts of the resolver's JWTs (`accounts_from_jwts`)."""
    top = reader.top
    if "system_account" not in top:
        # neither the config nor the operator names one: nats-server runs without a system account
        top["no_system_account"] = True  # (the server warns at start)
    if not top.get("resolver"):
        reader.errors.append("operators require an account resolver to be configured")
    if reader.accounts:
        reader.errors.append("operators do not allow Accounts to be configured directly")
    auth = reader.sections["auth"]
    if auth.get("users") or auth.get("user"):
        reader.errors.append("operators do not allow users to be configured directly")
    return accounts_from_jwts(resolver_jwts(top.get("resolver_preload", ()), top.get("resolver_dir", "")))


def _jwt_js_limits(source: dict[str, Any]) -> AccountJetStreamConfig:
    """An account JWT's JetStream limits (flat, or one tier's); absent means unlimited."""
    return AccountJetStreamConfig(
        max_memory=int(source.get("mem_storage", -1) or -1),
        max_store=int(source.get("disk_storage", -1) or -1),
        max_streams=int(source.get("streams", -1) or -1),
        max_consumers=int(source.get("consumer", -1) or -1),
        max_ack_pending=int(source.get("max_ack_pending", -1) or -1),
        max_bytes_required=bool(source.get("max_bytes_required")),
    )


def config_with(config: ServerConfig, **changes: Any) -> ServerConfig:
    """A copy of `config` with some fields changed (records are frozen)."""
    values = {item.name: getattr(config, item.name) for item in dataclasses.fields(config)}
    values.update(changes)
    return ServerConfig(**values)


def resolver_jwts(preload: Sequence[tuple[str, str]], directory: str) -> list[tuple[str, str]]:
    """The account JWTs the resolver starts with: `resolver_preload`, and for a full resolver
    the `<public key>.jwt` files of its directory (the newer by `iat` wins, as nats-server keeps)."""
    from jsedge.jwt import JWTError, decode

    found: dict[str, tuple[int, str]] = {}

    def offer(key: str, token: str) -> None:
        try:
            issued = int(decode(token, "account").get("iat") or 0)
        except (JWTError, TypeError, ValueError):
            return
        if key not in found or issued >= found[key][0]:
            found[key] = (issued, token)

    for key, token in preload:
        offer(key, token)
    if directory and os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            if name.endswith(".jwt"):
                try:
                    with open(os.path.join(directory, name), encoding="utf-8") as handle:
                        offer(name[:-4], handle.read().strip())
                except OSError:
                    continue
    return [(key, token) for key, (_issued, token) in found.items()]


def accounts_from_jwts(jwts: Sequence[tuple[str, str]]) -> list[AccountConfig]:
    """One account per account JWT (public key, JWT), named by its public key, with the JetStream
    limits, account limits, exports and imports its claims give (imports no export covers are
    dropped, as nats-server marks them invalid; exports that need an activation token stay
    private)."""
    from jsedge.jwt import JWTError, decode

    claims_by_key: dict[str, dict[str, Any]] = {}
    for key, token in jwts:
        try:
            claims = decode(token, "account")
        except JWTError:
            continue
        if claims.get("sub") == key:
            claims_by_key[key] = claims
    accounts = []
    exported: dict[str, list[ExportConfig]] = {}
    for key, claims in claims_by_key.items():
        nats = claims.get("nats") or {}
        exports = []
        for entry in nats.get("exports") or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("subject"), str):
                continue
            kind = "service" if entry.get("type") == "service" else "stream"
            response = str(entry.get("response_type") or "Singleton").lower()
            threshold = entry.get("response_threshold")
            exports.append(
                ExportConfig(
                    kind=kind,
                    subject=entry["subject"],
                    accounts=("\0",) if entry.get("token_req") else (),  # nobody without a token
                    response_type={"stream": "stream", "chunked": "chunked"}.get(response, "singleton"),
                    response_threshold=float(threshold) / 1e9
                    if isinstance(threshold, int) and threshold > 0
                    else 120.0,
                    token_position=int(entry.get("account_token_position") or 0),
                    latency_subject=str((entry.get("service_latency") or {}).get("results") or ""),
                    latency_sampling=_jwt_sampling((entry.get("service_latency") or {}).get("sampling")),
                )
            )
        exported[key] = exports
    for key, claims in claims_by_key.items():
        nats = claims.get("nats") or {}
        limits = nats.get("limits") or {}
        js_fields = ("mem_storage", "disk_storage", "streams", "consumer", "max_ack_pending")
        # JetStream limits, or tiered ones (`limits.tiered_limits: {R1: {...}, R3: {...}}`): flat
        # limits win when both are there, as nats-server selects them
        tiers = limits.get("tiered_limits")
        if not isinstance(tiers, dict):
            tiers = nats.get("tiered_limits") if isinstance(nats.get("tiered_limits"), dict) else {}
        js_limits = None
        if any(limits.get(name) for name in js_fields):
            js_limits = _jwt_js_limits(limits)
        elif tiers:
            tiered = tuple(
                (str(name), _jwt_js_limits(value))
                for name, value in tiers.items()
                if isinstance(value, dict) and any(value.get(field) for field in js_fields)
            )
            if tiered:
                js_limits = AccountJetStreamConfig(0, 0, 0, 0, 0, False, tiered)
        jetstream = js_limits is not None
        imports = []
        for entry in nats.get("imports") or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("subject"), str):
                continue
            kind = "service" if entry.get("type") == "service" else "stream"
            origin = str(entry.get("account") or "")
            local = str(entry.get("local_subject") or "")
            legacy_to = str(entry.get("to") or "")
            if kind == "stream":
                item = ImportConfig(kind=kind, account=origin, subject=entry["subject"], to=local, prefix=legacy_to)
            else:
                item = ImportConfig(kind=kind, account=origin, subject=entry["subject"], to=local or legacy_to)
            activated = _activation_ok(entry.get("token"), key, claims_by_key.get(origin), item)
            if _import_covered(item, key, exported.get(origin), activated):
                imports.append(item)
        accounts.append(
            AccountConfig(
                name=key,
                jetstream=jetstream,
                jetstream_limits=js_limits,
                limits=AccountLimits(
                    max_connections=int(limits.get("conn", -1)),
                    max_subscriptions=int(limits.get("subs", -1)),
                    max_payload=int(limits.get("payload", -1)),
                    max_leafnodes=int(limits.get("leaf", -1)),
                ),
                exports=tuple(exported[key]),
                imports=tuple(imports),
            )
        )
    return accounts


def _jwt_sampling(value: Any) -> int:
    """An account JWT's `service_latency.sampling`: a percentage, or "headers" (0)."""
    if isinstance(value, str):
        return 0 if value.strip().lower() == "headers" else int(value.strip().removesuffix("%") or 100)
    return int(value) if isinstance(value, int) and 0 < value <= 100 else 100


def export_allows(export: ExportConfig, entry: ImportConfig, importer: str, activated: bool = False) -> bool:
    """May `importer` import `entry` under `export`? The kinds match, the subject is within the
    export's, the export is public or lists the importer (or an activation token was shown),
    and an `account_token_position` token of the subject is the importer's name."""
    from jsedge.subjects import subject_is_subset

    if export.kind != entry.kind or not subject_is_subset(entry.subject.encode(), export.subject.encode()):
        return False
    if export.accounts and importer not in export.accounts and not activated:
        return False
    if export.token_position > 0:
        tokens = entry.subject.split(".")
        if len(tokens) < export.token_position or tokens[export.token_position - 1] != importer:
            return False
    return True


def _import_covered(
    entry: ImportConfig, importer: str, exports: list[ExportConfig] | None, activated: bool = False
) -> bool:
    from jsedge.subjects import valid_subject

    return valid_subject(entry.subject.encode()) and any(
        export_allows(export, entry, importer, activated) for export in exports or ()
    )


def _activation_ok(token: Any, importer: str, exporter: dict[str, Any] | None, entry: ImportConfig) -> bool:
    """An import's activation token (nats-server's): an activation JWT of the exporting account
    (or one of its signing keys) for this importer, covering the subject, not expired."""
    from jsedge.jwt import JWTError, decode, time_valid
    from jsedge.subjects import subject_is_subset

    if not isinstance(token, str) or exporter is None:
        return False
    try:
        claims = decode(token, "activation")
    except JWTError:
        return False
    nats = claims.get("nats") or {}
    exporter_key = exporter.get("sub")
    signing = set()
    for item in (exporter.get("nats") or {}).get("signing_keys") or ():
        signing.add(item if isinstance(item, str) else str((item or {}).get("key")))
    issuer = claims.get("iss")
    if issuer != exporter_key and not (issuer in signing and nats.get("issuer_account") == exporter_key):
        return False
    subject = nats.get("subject")
    kind = str(nats.get("kind") or entry.kind).lower()
    return (
        claims.get("sub") == importer
        and time_valid(claims)
        and isinstance(subject, str)
        and kind == entry.kind
        and subject_is_subset(entry.subject.encode(), subject.encode())
    )


def _check_default_sentinel(reader: _FileReader) -> None:
    """nats-server's start-up checks of `default_sentinel` (validateTrustedOperators)."""
    sentinel = reader.top.get("default_sentinel")
    if not sentinel:
        return
    if not reader.top.get("operators"):
        reader.errors.append("default sentinel requires operators and accounts")
        return
    from jsedge.jwt import JWTError, decode

    try:
        claims = decode(sentinel, "user")
    except JWTError:
        reader.errors.append("default sentinel JWT not valid")
        return
    nats = claims.get("nats") or {}
    empty = not any(nats.get(side) for side in ("pub", "sub", "resp"))
    if not nats.get("bearer_token") and not (nats.get("issuer_account") and empty):
        reader.errors.append("default sentinel must be a bearer token")


def _build(reader: _FileReader, config_file: str, digest: str) -> ServerConfig:
    sections = reader.sections
    reader.check_websocket()
    _check_default_sentinel(reader)
    if reader.top.get("operators") and reader.top.get("trusted_keys"):
        reader.errors.append("conflicting options for 'TrustedKeys' and 'TrustedOperators'")
    if reader.top.get("operators"):
        reader.accounts = reader.accounts + _operator_accounts(reader)
    elif reader.top.get("trusted_keys"):
        top = reader.top
        reader.accounts = reader.accounts + accounts_from_jwts(
            resolver_jwts(top.get("resolver_preload", ()), top.get("resolver_dir", ""))
        )
    auth = dict(sections["auth"])
    if "users" in auth:
        auth["users"] = tuple(auth["users"])
    return ServerConfig(
        **reader.top,
        config_file=config_file,
        config_digest=digest,
        listen=ListenConfig(**sections["listen"]),
        limits=LimitsConfig(**sections["limits"]),
        auth=AuthConfig(**auth),
        accounts=tuple(reader.accounts),
        tls=reader.tls_config(reader.tls),
        jetstream=JetStreamConfig(**sections["jetstream"]),
        cluster=ClusterConfig(**sections["cluster"]),
        leafnodes=LeafConfig(**sections["leafnodes"]),
        websocket=WebsocketConfig(**sections["websocket"]),
        mqtt=MQTTConfig(**sections["mqtt"]),
        monitor=MonitorConfig(**sections["monitor"]),
        logging=LoggingConfig(**sections["logging"]),
    )


def load_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> LoadResult:
    """Parse flags (`argv` without the program name), read `-c`, merge (flags win), validate.

    Raises `ConfigError` listing every problem. As in nats-server, with `-t` the file's warnings
    (an integer given for a duration) are fatal too; without it they are returned in `warnings`.
    """
    environment = os.environ if environ is None else environ
    flags = _parse_flags(argv)
    if flags.get("help") or flags.get("version") or flags.get("help_tls"):
        return LoadResult(
            config=ServerConfig(),
            show_help=bool(flags.get("help")),
            show_version=bool(flags.get("version")),
            show_tls_help=bool(flags.get("help_tls")),
            help_text=HELP_TEXT,
        )
    reader = _FileReader()
    config_file = flags.get("config", "")
    digest = ""
    if config_file:
        from jsedge.conf import ConfParseError, config_digest, parse_file

        try:
            tree = parse_file(config_file, environment)
        except ConfParseError as error:
            # nats-server's words, after the `file:line:col: ` its option errors carry (it prints a
            # parse error without the file; a user with several config files wants it)
            where = error.position.prefix() if error.position is not None and error.position.file else ""
            raise ConfigError([where + error.message]) from None
        digest = config_digest(tree)
        reader.read(tree)
        if flags.get("check_config") and reader.warnings:
            raise ConfigError(reader.warnings + reader.errors)
    _apply_flags(reader, flags)
    file_problems = list(reader.errors)
    if file_problems:
        raise ConfigError(file_problems)
    try:
        config = _build(reader, config_file, digest)
    except TypeError as error:  # a section got a value of the wrong shape from a flag
        raise ConfigError([str(error)]) from None
    problems = list(reader.errors)
    warnings = list(reader.warnings)
    _validate(config, problems, warnings)
    if problems:
        raise ConfigError(problems)
    return LoadResult(config=config, warnings=tuple(warnings), help_text=HELP_TEXT)


# -- reload -----------------------------------------------------------------------------------

#: Fields a reload cannot change: (label, getter).
_RESTART_FIELDS: tuple[tuple[str, Callable[[ServerConfig], Any]], ...] = (
    ("server_name", lambda config: config.server_name),
    ("listen.host", lambda config: config.listen.host),
    ("listen.port", lambda config: config.listen.port),
    ("cluster.host", lambda config: config.cluster.host),
    ("cluster.port", lambda config: config.cluster.port),
    ("cluster.name", lambda config: config.cluster.name),
    ("jetstream.store_dir", lambda config: config.jetstream.store_dir),
    ("jetstream.domain", lambda config: config.jetstream.domain),
    ("monitor.host", lambda config: config.monitor.host),
    ("monitor.port", lambda config: config.monitor.port),
    # the mqtt block, but for what nats-server reloads (read again when a session or consumer starts)
    (
        "MQTT",
        lambda config: dataclasses.replace(
            config.mqtt,
            ack_wait=0.0,
            max_ack_pending=0,
            stream_replicas=0,
            consumer_memory_storage=False,
            consumer_inactive_threshold=0.0,
            tls=None,
            password="[REDACTED]" if config.mqtt.password else "",
            token="[REDACTED]" if config.mqtt.token else "",
        ),
    ),
)


def diff_for_reload(old: ServerConfig, new: ServerConfig) -> tuple[list[str], list[str]]:
    """What a SIGHUP reload changes: (changed, needs_restart).

    `changed` describes reloadable changes, one line per area (`limits.max_payload: 1048576 -> 2097152`,
    `authorization`, `accounts`, `tls`, `logging.debug: False -> True`); secrets are never printed.
    `needs_restart` holds `config reload not supported for <field>: old=<old>, new=<new>` lines; when
    it is not empty nothing may be applied.
    """
    needs_restart = [
        f"config reload not supported for {label}: old={getter(old)}, new={getter(new)}"
        for label, getter in _RESTART_FIELDS
        if getter(old) != getter(new)
    ]
    changed: list[str] = []
    for section in ("limits", "logging"):
        old_section, new_section = getattr(old, section), getattr(new, section)
        for item in dataclasses.fields(old_section):
            before, after = getattr(old_section, item.name), getattr(new_section, item.name)
            if before != after:
                changed.append(f"{section}.{item.name}: {before} -> {after}")
    for label, before, after in (
        ("authorization", (old.auth, old.no_auth_user), (new.auth, new.no_auth_user)),
        ("accounts", old.accounts, new.accounts),
        ("tls", old.tls, new.tls),
        ("allow_non_tls", old.allow_non_tls, new.allow_non_tls),
        ("server_tags", old.server_tags, new.server_tags),
        ("lame_duck_duration", old.lame_duck_duration, new.lame_duck_duration),
        ("lame_duck_grace_period", old.lame_duck_grace_period, new.lame_duck_grace_period),
        ("cluster.routes", old.cluster.routes, new.cluster.routes),
        ("cluster.authorization", (old.cluster.user, old.cluster.password), (new.cluster.user, new.cluster.password)),
        ("cluster.no_advertise", old.cluster.no_advertise, new.cluster.no_advertise),
        ("mqtt", old.mqtt, new.mqtt),
        ("jetstream", dataclasses.replace(old.jetstream, store_dir="", domain=""),
         dataclasses.replace(new.jetstream, store_dir="", domain="")),
    ):  # fmt: skip
        if before != after:
            changed.append(label)
    return changed, needs_restart
