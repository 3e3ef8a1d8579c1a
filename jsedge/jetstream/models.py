"""JetStream data types with nats-server's JSON shapes (layer 4).

Each type is a slotted dataclass whose attribute names are the JSON keys, declared in nats-server's
struct order, with a per-field codec spec (`spec(kind, emit)`) that drives both directions:

* `decode(cls, obj, path)` — strict parsing like Go's `encoding/json` with `DisallowUnknownFields`:
  unknown keys and type mismatches give the 10025 texts nats-server produces (`json: unknown field
  "x"`, `json: cannot unmarshal string into Go struct field StreamConfigRequest.max_age of type
  time.Duration`); the first such error in document order wins, but an invalid enum aborts at once
  (Go returns custom `UnmarshalJSON` errors immediately). Keys match case-insensitively as in Go.
* `encode(obj)` — a dict in struct order, honouring `omitempty` (`emit="omit"`).

Durations are integer nanoseconds, times are ns since the epoch (0 = Go's zero time) and are written as
RFC 3339 with trimmed fractions. May import layer 0-3 modules only.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from jsedge.errors import js_error

ZERO_TIME = "0001-01-01T00:00:00Z"
NS = 1_000_000_000
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
INT32_MAX = (1 << 31) - 1


# the last second formatted: timestamps of stored messages and deliveries come in runs within
# one second (a direct get or a delivery formats one per message)
# (one tuple, replaced whole: safe with servers in several threads)
_last_second: tuple[int, str] = (-1, "")


def format_time_ns(ns: int) -> str:
    """Go's `time.RFC3339Nano` in UTC; 0 is the zero time."""
    if not ns or ns <= 0:
        return ZERO_TIME
    seconds, frac = divmod(int(ns), NS)
    global _last_second
    cached = _last_second
    if cached[0] == seconds:
        text = cached[1]
    else:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_time_ns(text: str) -> int:
    """RFC 3339 (any offset, up to 9 fraction digits) to ns since the epoch; the zero time is 0."""
    match = _TIME_RE.match(text)
    if match is None:
        raise ValueError(f"parsing time {json.dumps(text)}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year == 1 and month == 1 and day == 1 and hour == minute == second == 0:
        return 0
    import calendar

    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    offset = match.group(8)
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    frac = match.group(7) or ""
    nanos = int((frac[1:] + "000000000")[:9]) if frac else 0
    return seconds * NS + nanos


# ------------------------------------------------------------------------------------------------
# field specs


def _cannot_unmarshal(raw: str) -> str:
    return f"can not unmarshal {json.dumps(raw)}"


class Enum:
    """A string enum decoded by a custom UnmarshalJSON in nats-server. Go calls UnmarshalJSON for
    `null` too, so null is refused like any unknown value; `error` builds Go's text from the raw
    JSON of the value."""

    def __init__(
        self,
        values: tuple[str, ...],
        case_insensitive: bool = False,
        aliases: dict[str, str] | None = None,
        error: Any = _cannot_unmarshal,
        null_ok: bool = False,
    ):
        self.values = values
        self.case_insensitive = case_insensitive
        self.aliases = aliases or {}
        self.error = error
        self.null_ok = null_ok


def spec(kind: Any, emit: str = "always", default: Any = None, go: str = "") -> Any:
    """A dataclass field with codec metadata. `kind`: "str", "int", "int32", "uint", "bool", "dur",
    "time", "strlist", "strmap", "durlist", an `Enum`, a model class, or `[model class]`.
    `emit`: "always" or "omit" (Go omitempty)."""
    meta = {"kind": kind, "emit": emit, "go": go}
    if isinstance(kind, list) or kind in ("strlist", "durlist"):
        return field(default=None, metadata=meta)
    if kind == "strmap" or isinstance(kind, type):
        return field(default=None, metadata=meta)
    if default is None:
        default = (
            {"str": "", "bool": False}.get(kind, 0)
            if isinstance(kind, str)
            else (kind.values[0] if isinstance(kind, Enum) else None)
        )
    return field(default=default, metadata=meta)


_GO_TYPES = {
    "str": "string",
    "int": "int",
    "int64": "int64",
    "int32": "int32",
    "uint": "uint64",
    "bool": "bool",
    "dur": "time.Duration",
    "time": "time.Time",
    "strlist": "[]string",
    "durlist": "[]time.Duration",
    "strmap": "map[string]string",
}


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


class _Decode:
    """Decoding state: the first soft error (Go's savedError)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.error: str | None = None

    def save(self, text: str) -> None:
        if self.error is None:
            self.error = text

    def type_error(self, value: Any, path: str, go_type: str, number_text: bool = False) -> None:
        kind = json_kind(value)
        if kind == "number" and number_text:
            kind = "number " + _go_number(value)
        self.save(f"json: cannot unmarshal {kind} into Go struct field {self.root}.{path} of type {go_type}")


class _Abort(Exception):
    pass


def _go_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return repr(value) if "e" in repr(value) else str(value)
    return json.dumps(value)


def _decode_int(state: _Decode, value: Any, path: str, go_type: str, lo: int, hi: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        state.type_error(value, path, go_type)
        return None
    if isinstance(value, float):
        # Go accepts `5.0`? No: strconv.ParseInt("5.0") fails, the error quotes the literal.
        state.type_error(value, path, go_type, number_text=True)
        return None
    if value < lo or value > hi:
        state.type_error(value, path, go_type, number_text=True)
        return None
    return value


def _decode_value(state: _Decode, kind: Any, value: Any, path: str, current: Any) -> Any:
    if isinstance(kind, Enum):
        if value is None and kind.null_ok:
            return current
        if isinstance(value, str):
            text = value.lower() if kind.case_insensitive else value
            text = kind.aliases.get(text, text)
            if text in kind.values:
                return text
        raise _Abort(kind.error(json.dumps(value, separators=(",", ":"))))
    if value is None:
        return current  # Go leaves the field as it was for null
    if isinstance(kind, list):
        if not isinstance(value, list):
            state.type_error(value, path, "[]*server." + kind[0].GO_NAME)
            return current
        items = []
        for item in value:
            if isinstance(item, dict):
                items.append(decode_into(state, kind[0], item, path))
            elif item is not None:
                state.type_error(item, path, "server." + kind[0].GO_NAME)
        return items
    if isinstance(kind, type):
        if not isinstance(value, dict):
            state.type_error(value, path, "server." + kind.GO_NAME)
            return current
        return decode_into(state, kind, value, path)
    if kind == "str":
        if not isinstance(value, str):
            state.type_error(value, path, "string")
            return current
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            state.type_error(value, path, "bool")
            return current
        return value
    if kind in ("int", "int64", "dur"):
        result = _decode_int(state, value, path, _GO_TYPES[kind], -(1 << 63), INT64_MAX)
        return current if result is None else result
    if kind == "int32":
        result = _decode_int(state, value, path, "int32", -(1 << 31), INT32_MAX)
        return current if result is None else result
    if kind == "uint":
        result = _decode_int(state, value, path, "uint64", 0, UINT64_MAX)
        return current if result is None else result
    if kind == "time":
        if not isinstance(value, str):
            state.type_error(value, path, "time.Time")
            return current
        try:
            return parse_time_ns(value)
        except ValueError:
            raise _Abort(f'parsing time {json.dumps(value)} as "2006-01-02T15:04:05Z07:00": cannot parse') from None
    if kind in ("strlist", "durlist"):
        if not isinstance(value, list):
            state.type_error(value, path, _GO_TYPES[kind])
            return current
        out: list[str | int] = []  # strings for strlist, nanoseconds for durlist
        for item in value:
            if kind == "strlist":
                if isinstance(item, str):
                    out.append(item)
                elif item is not None:
                    state.type_error(item, path, "string")
                else:
                    out.append("")
            else:
                result = _decode_int(state, item, path, "time.Duration", -(1 << 63), INT64_MAX)
                out.append(0 if result is None else result)
        return out
    if kind == "strmap":
        if not isinstance(value, dict):
            state.type_error(value, path, "map[string]string")
            return current
        out_map: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, str):
                out_map[key] = item
            elif item is not None:
                state.type_error(item, f"{path}.{key}", "string")
        return out_map
    raise AssertionError(kind)


def decode_into(state: _Decode, cls: Any, obj: dict[str, Any], path: str = "") -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    lower = {name.lower(): name for name in fields}
    values: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in fields else lower.get(key.lower())
        if name is None:
            state.save(f"json: unknown field {json.dumps(key)}")
            continue
        spec_ = fields[name].metadata
        sub_path = f"{path}.{name}" if path else name
        current = values.get(name, fields[name].default)
        values[name] = _decode_value(state, spec_["kind"], value, sub_path, current)
    return cls(**values)


def decode(cls: Any, obj: Any, root: str) -> Any:
    """Strictly decode a parsed JSON document into `cls`; raises JSError 10025 on failure."""
    state = _Decode(root)
    if not isinstance(obj, dict):
        raise js_error(
            "JSInvalidJSONErr", err=f"json: cannot unmarshal {json_kind(obj)} into Go value of type server.{root}"
        )
    try:
        result = decode_into(state, cls, obj)
    except _Abort as exc:
        raise js_error("JSInvalidJSONErr", err=str(exc)) from None
    if state.error is not None:
        raise js_error("JSInvalidJSONErr", err=state.error)
    return result


def parse_json(data: bytes) -> Any:
    """A request body as nats-server's strict API decoder reads it (gojson.decode_stream): syntax
    errors become 10025 with Go's text; an empty body or `null` is an empty object."""
    from jsedge.gojson import GoSyntaxError, decode_stream

    try:
        value = decode_stream(data)
    except GoSyntaxError as exc:
        raise js_error("JSInvalidJSONErr", err=str(exc)) from None
    return {} if value is None else value


def _is_empty(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def encode(obj: Any) -> dict[str, Any]:
    """A model instance as a JSON-ready dict in struct order (omitempty honoured)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if not meta:
            continue
        value = getattr(obj, f.name)
        kind = meta["kind"]
        if meta["emit"] == "omit" and _is_empty(value):
            continue
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            out[f.name] = [encode(item) for item in value]
        elif dataclasses.is_dataclass(value):
            out[f.name] = encode(value)
        elif kind == "time":
            out[f.name] = format_time_ns(value)
        elif value is None and isinstance(kind, str) and kind in ("strlist", "durlist"):
            out[f.name] = None
        elif kind == "strmap":
            # Go writes map keys sorted
            out[f.name] = None if value is None else dict(sorted(value.items()))
        elif value is None and isinstance(kind, type):
            out[f.name] = {}
        else:
            out[f.name] = value
    return out


# ------------------------------------------------------------------------------------------------
# stream config


RETENTION = Enum(("limits", "interest", "workqueue"))
DISCARD = Enum(("old", "new"), case_insensitive=True)
STORAGE = Enum(("file", "memory"))
# StoreCompression decodes a Go string first: null is "" there, then refused like any unknown name.
COMPRESSION = Enum(("none", "s2"), error=lambda raw: "unknown compression algorithm")
PERSIST_MODE = Enum(("default", "async"), aliases={"": "default"})


@dataclass(slots=True)
class SubjectTransform:
    GO_NAME = "SubjectTransformConfig"
    src: str = spec("str")
    dest: str = spec("str")


@dataclass(slots=True)
class RePublish:
    GO_NAME = "RePublish"
    src: str = spec("str")
    dest: str = spec("str")
    headers_only: bool = spec("bool", "omit")


@dataclass(slots=True)
class Placement:
    GO_NAME = "Placement"
    cluster: str = spec("str", "omit")
    tags: list[str] | None = spec("strlist", "omit")
    preferred: str = spec("str", "omit")


@dataclass(slots=True)
class ExternalStream:
    GO_NAME = "ExternalStream"
    api: str = spec("str")
    deliver: str = spec("str")


@dataclass(slots=True)
class StreamConsumerSource:
    GO_NAME = "StreamConsumerSource"
    name: str = spec("str", "omit")
    deliver_subject: str = spec("str", "omit")


@dataclass(slots=True)
class StreamSource:
    GO_NAME = "StreamSource"
    name: str = spec("str")
    opt_start_seq: int = spec("uint", "omit")
    opt_start_time: int = spec("time", "omit")
    filter_subject: str = spec("str", "omit")
    subject_transforms: list[SubjectTransform] | None = spec([SubjectTransform], "omit")
    external: ExternalStream | None = spec(ExternalStream, "omit")
    consumer: StreamConsumerSource | None = spec(StreamConsumerSource, "omit")


@dataclass(slots=True)
class ConsumerLimits:
    GO_NAME = "StreamConsumerLimits"
    inactive_threshold: int = spec("dur", "omit")
    max_ack_pending: int = spec("int", "omit")


@dataclass(slots=True)
class StreamConfig:
    """nats-server's StreamConfig; `pedantic` only exists in requests (StreamConfigRequest)."""

    GO_NAME = "StreamConfig"
    name: str = spec("str")
    description: str = spec("str", "omit")
    subjects: list[str] | None = spec("strlist", "omit")
    retention: str = spec(RETENTION)
    max_consumers: int = spec("int")
    max_msgs: int = spec("int64")
    max_bytes: int = spec("int64")
    max_age: int = spec("dur")
    max_msgs_per_subject: int = spec("int64")
    max_msg_size: int = spec("int32", "omit")
    discard: str = spec(DISCARD)
    storage: str = spec(STORAGE)
    num_replicas: int = spec("int")
    no_ack: bool = spec("bool", "omit")
    template_owner: str = spec("str", "omit")
    duplicate_window: int = spec("dur", "omit")
    placement: Placement | None = spec(Placement, "omit")
    mirror: StreamSource | None = spec(StreamSource, "omit")
    sources: list[StreamSource] | None = spec([StreamSource], "omit")
    compression: str = spec(COMPRESSION)
    first_seq: int = spec("uint", "omit")
    subject_transform: SubjectTransform | None = spec(SubjectTransform, "omit")
    republish: RePublish | None = spec(RePublish, "omit")
    allow_direct: bool = spec("bool")
    mirror_direct: bool = spec("bool")
    discard_new_per_subject: bool = spec("bool", "omit")
    sealed: bool = spec("bool")
    deny_delete: bool = spec("bool")
    deny_purge: bool = spec("bool")
    allow_rollup_hdrs: bool = spec("bool")
    consumer_limits: ConsumerLimits | None = spec(ConsumerLimits)
    allow_msg_ttl: bool = spec("bool")
    subject_delete_marker_ttl: int = spec("dur", "omit")
    allow_msg_counter: bool = spec("bool", "omit")
    allow_atomic: bool = spec("bool", "omit")
    allow_msg_schedules: bool = spec("bool", "omit")
    persist_mode: str = spec(PERSIST_MODE, "omit", default="")
    allow_batched: bool = spec("bool", "omit")
    metadata: dict[str, str] | None = spec("strmap", "omit")
    pedantic: bool = field(default=False)  # request only, never emitted (no codec metadata)

    def copy(self) -> StreamConfig:
        return decode(StreamConfig, json.loads(json.dumps(encode(self))), "StreamConfig")


# Requests decode into this (same fields + pedantic) so error texts name `StreamConfigRequest`.
_REQUEST_FIELDS = [
    (f.name, f.type, field(default=f.default, metadata=f.metadata))
    for f in dataclasses.fields(StreamConfig)
    if f.metadata
]


StreamConfigRequest = dataclasses.make_dataclass(
    "StreamConfigRequest", [*_REQUEST_FIELDS, ("pedantic", bool, spec("bool", "omit"))], slots=True
)


def decode_stream_config_request(obj: Any) -> StreamConfig:
    request = decode(StreamConfigRequest, obj, "StreamConfigRequest")
    values = {f.name: getattr(request, f.name) for f in dataclasses.fields(StreamConfig) if f.metadata}
    config = StreamConfig(**values)
    config.pedantic = request.pedantic
    return config


# ------------------------------------------------------------------------------------------------
# small request types


@dataclass(slots=True)
class StreamInfoRequest:
    GO_NAME = "JSApiStreamInfoRequest"
    offset: int = spec("int")
    deleted_details: bool = spec("bool")
    subjects_filter: str = spec("str")


@dataclass(slots=True)
class StreamNamesRequest:
    GO_NAME = "JSApiStreamNamesRequest"
    offset: int = spec("int")
    subject: str = spec("str")


@dataclass(slots=True)
class StreamPurgeRequest:
    GO_NAME = "JSApiStreamPurgeRequest"
    filter: str = spec("str")
    seq: int = spec("uint")
    keep: int = spec("uint")


@dataclass(slots=True)
class MsgGetRequest:
    GO_NAME = "JSApiMsgGetRequest"
    seq: int = spec("uint")
    last_by_subj: str = spec("str")
    next_by_subj: str = spec("str")
    batch: int = spec("int")
    max_bytes: int = spec("int")
    start_time: int = spec("time")
    multi_last: list[str] | None = spec("strlist")
    up_to_seq: int = spec("uint")
    up_to_time: int = spec("time")
    no_hdr: bool = spec("bool")
    # presence flags, filled by the API layer (Go uses pointers for start_time / up_to_time)
    has_start_time: bool = field(default=False)
    has_up_to_time: bool = field(default=False)


@dataclass(slots=True)
class MsgDeleteRequest:
    GO_NAME = "JSApiMsgDeleteRequest"
    seq: int = spec("uint")
    no_erase: bool = spec("bool")


@dataclass(slots=True)
class MetaServerRemoveRequest:
    GO_NAME = "JSApiMetaServerRemoveRequest"
    peer: str = spec("str")  # the server's name
    peer_id: str = spec("str")


@dataclass(slots=True)
class StreamRemovePeerRequest:
    GO_NAME = "JSApiStreamRemovePeerRequest"
    peer: str = spec("str")


# ------------------------------------------------------------------------------------------------
# consumer config (jetstream-api.md §5.8) and consumer requests


DELIVER_POLICY = Enum(
    ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject"), aliases={"undefined": "all"}
)
ACK_POLICY = Enum(("none", "all", "explicit", "flow_control"))
REPLAY_POLICY = Enum(("instant", "original"))
PRIORITY_POLICY = Enum(
    ("none", "overflow", "pinned_client", "prioritized"),
    aliases={"": "none"},
    error=lambda raw: f"unknown priority policy: {raw}",
)


@dataclass(slots=True)
class ConsumerConfig:
    GO_NAME = "ConsumerConfig"
    durable_name: str = spec("str", "omit")
    name: str = spec("str", "omit")
    description: str = spec("str", "omit")
    deliver_policy: str = spec(DELIVER_POLICY)
    opt_start_seq: int = spec("uint", "omit")
    opt_start_time: int = spec("time", "omit")
    ack_policy: str = spec(ACK_POLICY)
    ack_wait: int = spec("dur", "omit")
    max_deliver: int = spec("int", "omit")
    backoff: list[int] | None = spec("durlist", "omit")
    filter_subject: str = spec("str", "omit")
    filter_subjects: list[str] | None = spec("strlist", "omit")
    replay_policy: str = spec(REPLAY_POLICY)
    rate_limit_bps: int = spec("uint", "omit")
    sample_freq: str = spec("str", "omit")
    max_waiting: int = spec("int", "omit")
    max_ack_pending: int = spec("int", "omit")
    flow_control: bool = spec("bool", "omit")
    headers_only: bool = spec("bool", "omit")
    max_batch: int = spec("int", "omit")
    max_expires: int = spec("dur", "omit")
    max_bytes: int = spec("int", "omit")
    deliver_subject: str = spec("str", "omit")
    deliver_group: str = spec("str", "omit")
    idle_heartbeat: int = spec("dur", "omit")
    inactive_threshold: int = spec("dur", "omit")
    num_replicas: int = spec("int")
    mem_storage: bool = spec("bool", "omit")
    direct: bool = spec("bool", "omit")
    sourcing: bool = spec("bool", "omit")
    metadata: dict[str, str] | None = spec("strmap", "omit")
    pause_until: int = spec("time", "omit")
    priority_groups: list[str] | None = spec("strlist", "omit")
    priority_policy: str = spec(PRIORITY_POLICY, "omit", default="")
    priority_timeout: int = spec("dur", "omit")

    def copy(self) -> ConsumerConfig:
        return dataclasses.replace(
            self,
            backoff=list(self.backoff) if self.backoff is not None else None,
            filter_subjects=list(self.filter_subjects) if self.filter_subjects is not None else None,
            metadata=dict(self.metadata) if self.metadata is not None else None,
            priority_groups=list(self.priority_groups) if self.priority_groups is not None else None,
        )

    def filters(self) -> list[str]:
        if self.filter_subjects:
            return list(self.filter_subjects)
        if self.filter_subject:
            return [self.filter_subject]
        return []


@dataclass(slots=True)
class CreateConsumerRequest:
    GO_NAME = "CreateConsumerRequest"
    stream_name: str = spec("str")
    config: ConsumerConfig | None = spec(ConsumerConfig)
    action: str = spec("str", "omit")
    pedantic: bool = spec("bool", "omit")


def decode_consumer_config(obj: Any) -> ConsumerConfig:
    return decode(ConsumerConfig, obj, "ConsumerConfig")


def decode_create_consumer_request(obj: Any) -> CreateConsumerRequest:
    """The create body; the action is validated like nats-server's ConsumerAction.UnmarshalJSON."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key.lower() == "action" and not (isinstance(value, str) and value in ("", "create", "update")):
                raw = json.dumps(value, separators=(",", ":"))
                raise js_error("JSInvalidJSONErr", err=f"unknown consumer action: {raw}")
    request = decode(CreateConsumerRequest, obj, "CreateConsumerRequest")
    if request.config is None:
        request.config = ConsumerConfig()
    return request


@dataclass(slots=True)
class ConsumerNamesRequest:
    GO_NAME = "JSApiConsumersRequest"
    offset: int = spec("int")


@dataclass(slots=True)
class ConsumerResetRequest:
    GO_NAME = "JSApiConsumerResetRequest"
    seq: int = spec("uint", "omit")


@dataclass(slots=True)
class ConsumerPauseRequest:
    GO_NAME = "JSApiConsumerPauseRequest"
    pause_until: int = spec("time", "omit")
