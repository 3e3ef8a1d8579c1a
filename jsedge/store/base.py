"""The store contract (layer 3): what a stream and its consumers need from storage.

Two implementations follow it, `memstore.MemStore` and `filestore.FileStore`; one contract suite
(`tests/store/`) runs against both. Stores are synchronous and single-threaded (the event loop
thread), except the file store's fsync, which runs in a helper thread (group commit) and is awaited
through `sync()`. Time is injected (`now` arguments, nanoseconds) so tests control expiry.

Every stream mutation in jsedge goes through the stream's `apply()` of a command; the store only
executes them. Subjects are `bytes`; a header block is the raw `NATS/1.0\\r\\n...\\r\\n\\r\\n`
bytes (`b""` when the message has no headers).
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


class StorageType(enum.Enum):
    FILE = "file"
    MEMORY = "memory"


#: A file store's accounted size of a stored message (streams.md §11): this + len(subject) + len(data)
MSG_OVERHEAD = 30
#: the same with headers: this + len(subject) + len(hdr) + len(data)
MSG_HDR_OVERHEAD = 34
#: A file block's buffered records are written out (not fsynced) once they reach this size; the
#: fused plain publish (jetstream/ingest.py) uses the same mark.
FLUSH_AT = 64 * 1024


class DiscardPolicy(enum.Enum):
    OLD = "old"
    NEW = "new"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The parts of a stream config the store enforces itself (streams.md §8)."""

    name: str
    storage: StorageType = StorageType.FILE
    max_msgs: int = -1
    max_bytes: int = -1
    max_age_ns: int = 0  # 0 = unlimited
    max_msgs_per_subject: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD
    discard_new_per_subject: bool = False
    first_seq: int = 1  # for a new, empty store only
    compression: str = "none"  # "s2": the file store compresses sealed blocks


@dataclass(frozen=True, slots=True)
class StoredMsg:
    subject: bytes
    seq: int
    ts: int  # nanoseconds since the epoch, as stored
    hdr: bytes  # b"" when the message had no headers
    data: bytes

    @property
    def size(self) -> int:
        """Accounted size (streams.md §11) is the store's business: see `StreamStore.msg_size`."""
        return len(self.subject) + len(self.hdr) + len(self.data)


@dataclass(slots=True)
class StreamState:
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    first_ts: int = 0  # ns, 0 = zero time
    last_seq: int = 0
    last_ts: int = 0
    num_subjects: int = 0
    num_deleted: int = 0
    deleted: list[int] | None = None  # only when asked for
    # `builtins.bytes`: inside this class body `bytes` names the field above (nats-server's JSON name)
    subjects: dict[builtins.bytes, int] | None = None  # only when asked for


@dataclass(frozen=True, slots=True)
class SubjectState:
    msgs: int
    first_seq: int
    last_seq: int


class StoreError(Exception):
    """A store refusal the stream maps to an API error."""


class DiscardNewError(StoreError):
    """discard:new rejected a message; `reason` is `maximum messages exceeded`,
    `maximum bytes exceeded` or `maximum messages per subject exceeded` (the 10077 texts)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreClosedError(StoreError):
    pass


#: Called for every message that leaves the store for any reason other than a plain client
#: delete: (seq, subject). Consumers of interest/workqueue streams and KV watchers rely on it.
#: Exactly: removals by limits (per-subject, max_msgs, max_bytes, also when `update_config` lowers
#: them), by expiry (max_age and TTL, from `expire()`, which also returns them) and by `purge`
#: (rollups are purges). Never for `remove_msg`: its caller already knows. Called synchronously,
#: after the message left the index, inside the store call that removed it.
RemovedCallback = Callable[[int, bytes], None]


class StreamStore(Protocol):
    """Messages of one stream. Sequences start at `config.first_seq` and never repeat."""

    config: StoreConfig

    # ---- writes (each is durable once the awaitable from `sync()` taken afterwards resolves)
    def store_msg(
        self, subject: bytes, hdr: bytes, data: bytes, ts: int, ttl_ns: int = 0, *, rollup: bool = False
    ) -> int:
        """Append with the next sequence and timestamp `ts`; enforce discard-new (raising
        DiscardNewError), then per-subject limits, then discard-old limits (streams.md §8 order).
        `ttl_ns` > 0: expire at ts + ttl; -1: never expires (exempt from max_age). Returns seq.
        `rollup`: the publish carries `Nats-Rollup`, which lifts the discard_new_per_subject
        rejection (§8 step 1a); the rollup purge itself is the caller's `purge()` afterwards."""
        ...

    def skip_msg(self, ts: int) -> int:
        """Consume the next sequence without storing (interest retention with no interest)."""
        ...

    def remove_msg(self, seq: int, erase: bool = False) -> bool:
        """Delete one message (erase overwrites its bytes on disk). False when absent."""
        ...

    def purge(self, subject: bytes | None = None, seq: int = 0, keep: int = 0) -> int:
        """streams.md §9 semantics: filter, `seq` (delete below), `keep` (keep newest N).
        Returns the number purged. With no filter, `seq` beyond last_seq moves the stream."""
        ...

    def expire(self, now: int) -> list[StoredMsg]:
        """Remove messages past max_age or their TTL at time `now`; returns the removed ones
        (the stream writes delete markers for subjects they emptied)."""
        ...

    def next_expiry(self) -> int:
        """Earliest expiry deadline (ns) of any stored message, 0 when none."""
        ...

    def update_config(self, config: StoreConfig) -> None:
        """New limits apply at once (lowering max_msgs removes messages)."""
        ...

    # ---- reads
    def load_msg(self, seq: int) -> StoredMsg | None: ...

    def load_next_msg(self, subject_filter: bytes, start_seq: int) -> StoredMsg | None:
        """First stored message with seq >= start_seq matching the filter (`>` or b"" = all)."""
        ...

    def load_last_msg(self, subject_filter: bytes, max_seq: int = 0) -> StoredMsg | None:
        """Newest message matching the filter (with seq <= max_seq when max_seq > 0)."""
        ...

    def load_prev_msg(self, start_seq: int) -> StoredMsg | None: ...

    def state(self, *, deleted_details: bool = False, subjects_filter: bytes | None = None) -> StreamState: ...

    def headers_since(self, cutoff: int) -> list[tuple[int, int, bytes]]:
        """(seq, ts, headers) of the live messages with headers at the end of the stream stored at
        or after `cutoff` (ns), oldest first (a stream's Msg-Id window, rebuilt on open)."""
        ...

    def last_seq(self) -> int:
        """`state().last_seq` without building the state (the per-message replicated path)."""
        ...

    def subjects_state(self, subject_filter: bytes) -> dict[bytes, SubjectState]: ...

    def num_pending(self, start_seq: int, subject_filter: bytes, last_per_subject: bool = False) -> int:
        """Stored messages with seq >= start_seq matching the filter (or distinct subjects)."""
        ...

    def msg_size(self, subject: bytes, hdr: bytes, data: bytes) -> int:
        """Accounted bytes of a message (streams.md §11: file 30/34 +, memory 16 +)."""
        ...

    # ---- atomic batches
    def begin_batch(self, first_seq: int, last_seq: int) -> None:
        """The next writes store sequences first_seq..last_seq as one atomic batch: a file store
        that finds only part of them on open (a kill or a power loss in between) drops that part."""
        ...

    def end_batch(self, complete: bool = True) -> None:
        """The batch begun last is written (`complete=False`: it failed half way, and what it
        stored stays; the file store must not drop it, or what came after it, on open)."""
        ...

    # ---- durability and lifecycle
    def sync(self) -> Awaitable[None]:
        """Resolve once everything written before this call is on stable storage (group commit:
        one fsync covers every write made while the previous fsync ran). Memory stores resolve
        at once. Policy `sync_interval` may make this resolve before the fsync (explicit opt-in)."""
        ...

    def set_removed_callback(self, callback: RemovedCallback | None) -> None: ...

    def save_meta(self, data: bytes) -> None:
        """Persist the stream layer's own metadata (stream config JSON, created time, source
        cursors…) beside the messages: atomically (temp file, fsync, rename, fsync dir) in the
        file store; kept in memory by the memory store."""
        ...

    def load_meta(self) -> bytes | None:
        """What `save_meta` last stored (None when never saved)."""
        ...

    def consumer_store(self, name: str) -> ConsumerStore:
        """The state store of a durable (or ephemeral) consumer of this stream."""
        ...

    def close(self) -> None: ...

    def delete(self) -> None:
        """Close and remove every file of this stream."""
        ...


@dataclass(slots=True)
class SequencePair:
    consumer_seq: int = 0
    stream_seq: int = 0


@dataclass(slots=True)
class Pending:
    consumer_seq: int
    timestamp: int  # ns of the last delivery


@dataclass(slots=True)
class ConsumerState:
    """What must survive a restart for a consumer (consumers.md §1)."""

    delivered: SequencePair = field(default_factory=SequencePair)
    ack_floor: SequencePair = field(default_factory=SequencePair)
    pending: dict[int, Pending] = field(default_factory=dict)  # stream seq -> pending entry
    redelivered: dict[int, int] = field(default_factory=dict)  # stream seq -> delivery count (>1)


class ConsumerStore(Protocol):
    def load(self) -> tuple[bytes | None, ConsumerState]:
        """(config JSON as written by `save_config`, or None) and the last saved state."""
        ...

    def save_config(self, config_json: bytes) -> None: ...

    def update(self, state: ConsumerState) -> None:
        """Replace the whole state (made durable by the stream store's next `sync()`)."""
        ...

    def update_delivered(self, consumer_seq: int, stream_seq: int, delivery_count: int, ts: int) -> None:
        """Incremental: a message was (re)delivered. Cheap: appends a small record."""
        ...

    def update_acks(self, consumer_seq: int, stream_seq: int) -> None:
        """Incremental: a message was acknowledged (ack floor moves as the state implies)."""
        ...

    def state(self) -> ConsumerState: ...

    def sync_blocking(self) -> None:
        """Write and fsync the state now (a blocking fsync of one small file): before a Raft log
        that the state came from is deleted or marked as applied (a replica change, a snapshot
        installed from the leader)."""
        ...

    def delete(self) -> None: ...
