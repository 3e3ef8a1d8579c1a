"""Raft vocabulary shared by the core (`raft.py`), its codec (`codec.py`), its log on disk (`wal.py`)
and the asyncio driver (`transport.py`). Pure data, no I/O (layer 6, imports nothing of jsedge).

Peers are named by their 8-character peer id (spec/clustering.md §4.2). Indexes and terms start at 1;
index 0 / term 0 mean "nothing" (the empty log's last index and term).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Entry kinds.
ENTRY_NORMAL = 0  # a state-machine command (opaque bytes)
ENTRY_NOOP = 1  # appended by a new leader at the start of its term (commits earlier terms' entries)
ENTRY_PEERS = 2  # a membership change: data = the new peer set (see codec.encode_peers)


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on stable storage before a node answers a vote or an append."""

    term: int
    voted_for: str  # "" = nobody


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """A compacted prefix of the log: everything up to `index` (whose term was `term`) is folded
    into the state machine; `peers` is the membership in force at `index`."""

    index: int
    term: int
    peers: tuple[str, ...]


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class VoteRequest:
    term: int
    candidate: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    #: Set when a leader hands over (TimeoutNow): voters skip their "I still hear a leader" check.
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    voter: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendRequest:
    term: int
    leader: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse:
    term: int
    follower: str
    success: bool
    #: success: the highest index the follower has persisted that matches the leader's log;
    #: failure: a hint where the leader should retry from (the follower's last index + 1, or the
    #: first index of the conflicting term).
    index: int


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    term: int
    leader: str
    meta: SnapshotMeta
    #: Opaque state-machine snapshot (streams: a state summary; the driver catches up the rest).
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapshotResponse:
    term: int
    follower: str
    index: int  # the snapshot index now installed (0 = refused)


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the receiver campaigns at once."""

    term: int
    leader: str


Message = VoteRequest | VoteResponse | AppendRequest | AppendResponse | SnapshotRequest | SnapshotResponse | TimeoutNow


@dataclass(slots=True)
class Ready:
    """What a call into the core asks the driver to do, in this order:

    1. persist: `snapshot` (install it: restore the state machine from `snapshot_data`, then the log
       starts after `snapshot.index`), then truncate the log at `truncate_from` (drop every entry with
       index >= it), append `entries`, write `hard_state`; all durable (fsynced) before step 2;
    2. send `messages` (each `(peer id, message)`);
    3. apply `committed` to the state machine, in order.

    Then tell the core what became durable: `persisted(last index, last term)` (and
    `snapshot_installed(...)` for a snapshot). Steps 1-2 of one Ready must not be reordered; Readies
    may be pipelined (the next one persisted while this one's messages wait).
    """

    messages: list[tuple[str, Message]] = field(default_factory=list)
    hard_state: HardState | None = None
    truncate_from: int = 0  # 0 = no truncation
    entries: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b""
    committed: list[Entry] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.messages
            or self.hard_state is not None
            or self.truncate_from
            or self.entries
            or self.snapshot is not None
            or self.committed
        )
