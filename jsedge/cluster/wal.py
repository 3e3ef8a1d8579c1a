"""The Raft log of one group on disk (layer 6): entries, hard state and snapshot, crash-safe.

Layer 6; imports jsedge.cluster.types, the store's segment codec and group-commit fsync thread
(jsedge.store.codec, jsedge.store._sync, layer 3) and the stdlib.

The log is meant to be short-lived: the stream store holds the applied data and the driver compacts
right after applying (and syncing the store), so the shape is "append, fsync, soon drop". Writes are
buffered on the event loop; `sync()` hands them to the shared fsync thread (`SYNCER`, group commit:
one fsync round covers every write made before it, rounds complete in order) and returns a future.
Nothing here fsyncs on the event loop except `close()` (shutdown) and `sync_blocking()` (tools).

On-disk format
==============

A directory per group holds segment files named ``<no:08x>-<base_index:016x>-<base_term:016x>.wal``.
`no` counts up by one per new segment, so it orders segments in time (a base index does not: after a
truncation a newer segment can start below an older one). A segment is a plain sequence of records of
the segment codec (`jsedge.store.codec`, format at the top of `_codec_py.py`): every record is a BLOB
record, ``0xE6 uvarint(body_len) body crc32``, so CRC, torn-tail truncation and mid-file resync come
from the codec's `scan`. Inside the body (uvarint = LEB128)::

    head       uvarint   code in the low 3 bits; for an entry, (term - base_term) in the rest
    code 0-4   ENTRY     of kind = code: uvarint(index - base_index) data (the rest of the body)
    code 5     TRUNCATE  uvarint(index): drop every entry with index >= index
    code 6     STATE     uvarint(last_index) uvarint(last_term) uvarint(hs.term) voted_for (utf-8, rest)
                         the hard state, and where the log ends at this point
    code 7     SNAPSHOT  uvarint(flags: 1 = install) uvarint(index) uvarint(term) uvarint(peer count)
                         (uvarint(len) peer)* data (the rest): the state machine is durable up to
                         index; a compaction keeps the entries after it, an install drops them all

Entry kinds 0-4 fit the head (types.py uses 0-2). Each segment starts with a STATE record (the current
hard state and the log's last index/term when it was created), so the newest hard state is always in
the newest segment and a segment whose predecessors were deleted still knows where its entries begin.

Bytes per entry: tag 1 + body_len 1-2 + head 1 + index delta 1-2 + CRC 4 = 8-10 bytes of framing
(10 for data of 126 B - 16 KiB: segments rotate at 16384 entries so the index delta stays <= 2 bytes,
and the term delta is 0 except across an election). A hard state change costs one ~15-byte STATE
record at the next sync; a compaction one SNAPSHOT record of ~10 B + peers + snapshot data.

Replay (open) applies the records of all segments in order; every later record supersedes an earlier
one. An ENTRY at index <= the last index implicitly truncates there (so a TRUNCATE marker lost to
corruption cannot resurrect truncated entries: the entries appended after it override them); an
entry that does not connect (a gap: its predecessor was lost to corruption or power loss) is dropped
with everything after it until a snapshot re-anchors the log. Corrupt records are skipped (logged);
a torn tail is truncated (logged). At the end the log must start right after the snapshot (or at 1
without one); if the prefix is missing (only possible through corruption) the entries are dropped
and logged rather than served with a hole. Entries returned are always CRC-checked and contiguous.

Crash safety
============

* Truncation writes a TRUNCATE record in order with everything else: a follower that truncated,
  appended and crashed replays the marker (or the implicit truncation of the entries that follow it)
  and never sees the truncated entries again. A truncation below the active segment's base starts a
  new segment (the STATE header re-asserts the end of the log and keeps index deltas non-negative).
* The hard state set between two syncs is written once, at the sync, into the same file as the
  entries (one fsync covers a vote and the entries acknowledged with it).
* Compaction deletes whole segments only: a prefix of segments older than the segment holding the
  newest SNAPSHOT record, none of which holds an entry newer than that snapshot. They are unlinked by
  the fsync thread after the round that made the snapshot durable (`SyncJob.unlink_after`). When a
  compaction leaves nothing live in the active segment and it has reached 1/16 of the segment size
  (256 KiB by default), the next sync starts a new segment, so the usual cycle -- append, sync,
  apply, compact -- keeps a group's log at a few hundred KiB on disk.
* Deleting a prefix can be interrupted (some unlinks durable, some not): open replays only the
  segments after the last gap in the numbering when they stand alone (they hold a snapshot -- the
  one that allowed the deletion -- and it covers where they begin); the older leftovers are then
  deleted. Segments after a gap that do not stand alone were never synced (any round that fsyncs a
  segment also fsyncs the directory, making every older segment's entry durable): then the
  segments before the gap are the log and the others are dropped. The hard state is the newest
  STATE record found, leftovers included.
* What open recovers may include writes a killed process left in the page cache: every segment is
  marked dirty, so the first `sync()` round fsyncs all of them (and only then unlinks anything open
  decided to delete). The driver persists a Ready with `sync()` before acting, so it never acts on
  recovered state that is not yet durable.
* After a failed fsync the page cache may have dropped the data, so nothing since the last good
  round can be trusted: that round's futures fail and so does every later `sync()` (the driver must
  stop the group).

Memory
======

Per live (un-compacted) entry: 20 bytes of arrays (term 8, segment 4, offset 4, record length 4) and
an 8-byte list slot; the entries themselves are cached for the newest `cache_bytes` (default 1 MiB,
counting data + 96 bytes per entry); older ones are read back from the segment files (one pread per
run of entries in a segment, CRC-checked). Segment files are read one at a time at open. Snapshot data
is kept in memory (`snapshot_data`). Uncommitted entries are bounded by the Raft core, committed ones
by the driver compacting after apply: 1 M live entries would cost ~28 MB plus the cache.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jsedge.cluster.types import Entry, HardState, Ready, SnapshotMeta
from jsedge.store import codec
from jsedge.store._sync import SYNCER, SyncJob, run_job

#: A segment rotates when it reaches this size (4 MiB: compaction frees space in steps of a few MiB,
#: and recovery reads a segment as one sequential I/O)...
DEFAULT_SEGMENT_SIZE = 4 * 1024 * 1024
#: ... or this many entries (keeps the per-entry index delta to at most 2 bytes).
DEFAULT_SEGMENT_ENTRIES = 16384
#: Data bytes of the newest entries kept in memory (older ones are read back from disk).
DEFAULT_CACHE_BYTES = 1024 * 1024
#: A segment whose entries are all compacted away rotates early from this size on (but 1/16 of the
#: segment size at least), so an idle group's log shrinks to a few hundred KiB instead of 4 MiB.
_EARLY_ROTATION = 64 * 1024
#: Buffered bytes that trigger a write to the file without waiting for `sync()`.
_FLUSH_AT = 64 * 1024
#: Cache accounting per cached entry besides its data (Entry object, bytes header, list slot).
_ENTRY_COST = 96

CODE_TRUNCATE = 5
CODE_STATE = 6
CODE_SNAPSHOT = 7
#: Highest entry kind the head can carry.
MAX_ENTRY_KIND = 4
_FLAG_INSTALL = 1

_SEGMENT_NAME = re.compile(r"^([0-9a-f]{8})-([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_UNKNOWN_TERM = -1


class CompactedError(LookupError):
    """The requested index is at or below the snapshot: send the snapshot instead."""


class LogCorruptError(OSError):
    """An entry read back from a segment file failed its checks (the disk changed under us)."""


class LogClosedError(RuntimeError):
    """The log was closed or deleted."""


@dataclass(frozen=True, slots=True)
class WalStatistics:
    first_index: int
    last_index: int
    snapshot_index: int
    segments: int
    disk_bytes: int
    cached_entries: int
    cached_bytes: int
    bytes_written: int
    recovered_corrupt: int
    recovered_truncated: int
    recovered_dropped: int


# ---------------------------------------------------------------------------- record bodies


def _uv(value: int) -> bytes:
    if 0 <= value < 0x80:
        return bytes((value,))
    if value < 0:
        raise ValueError("uvarint of a negative value")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_uv(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, new pos); ValueError when the varint runs past the end or is too long."""
    value = 0
    shift = 0
    for i in range(9):
        byte = buf[pos + i]  # IndexError past the end
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError("varint too long")


def _state_body(last_index: int, last_term: int, hs: HardState) -> bytes:
    return bytes((CODE_STATE,)) + _uv(last_index) + _uv(last_term) + _uv(hs.term) + hs.voted_for.encode()


def _snapshot_body(meta: SnapshotMeta, data: bytes, install: bool) -> bytes:
    parts = [bytes((CODE_SNAPSHOT,)), _uv(_FLAG_INSTALL if install else 0), _uv(meta.index), _uv(meta.term)]
    parts.append(_uv(len(meta.peers)))
    for peer in meta.peers:
        raw = peer.encode()
        parts.append(_uv(len(raw)))
        parts.append(raw)
    parts.append(data)
    return b"".join(parts)


def _snapshot_data(data: bytes) -> bytes:
    # one record holds a snapshot (the codec's MAX_BODY, 64 MiB, less room for meta and peers)
    if len(data) > codec.MAX_BODY - 64 * 1024:
        raise ValueError(f"snapshot data of {len(data)} bytes does not fit a record")
    return bytes(data)


def _decode_snapshot(body: bytes, pos: int) -> tuple[SnapshotMeta, bytes, bool]:
    flags, pos = _read_uv(body, pos)
    index, pos = _read_uv(body, pos)
    term, pos = _read_uv(body, pos)
    count, pos = _read_uv(body, pos)
    if count > len(body):
        raise ValueError("peer count")
    peers = []
    for _ in range(count):
        n, pos = _read_uv(body, pos)
        if pos + n > len(body):
            raise ValueError("peer length")
        peers.append(body[pos : pos + n].decode())
        pos += n
    return SnapshotMeta(index, term, tuple(peers)), body[pos:], bool(flags & _FLAG_INSTALL)


# ---------------------------------------------------------------------------- segments and index


def _segment_name(no: int, base_index: int, base_term: int) -> str:
    return f"{no:08x}-{base_index:016x}-{base_term:016x}.wal"


class _Segment:
    """One segment file. `size` counts buffered bytes too; `flushed` is what the file holds."""

    __slots__ = ("no", "path", "fd", "base_index", "base_term", "size", "flushed", "buf", "count", "live_max", "header")

    def __init__(self, no: int, path: str, fd: int, base_index: int, base_term: int, size: int) -> None:
        self.no = no
        self.path = path
        self.fd = fd
        self.base_index = base_index
        self.base_term = base_term
        self.size = size
        self.flushed = size
        self.buf = bytearray()
        self.count = 0  # entry records written into it
        self.live_max = 0  # highest index of a live entry whose record is here (0: none)
        self.header = size  # size after the STATE header (a segment holding only that never rotates)


class _Index:
    """The live entries floor+1..last: term, segment, offset, record length per entry (arrays), and
    the Entry objects of the newest ones (`cache[pos]` is set exactly for pos >= `evict`)."""

    __slots__ = ("floor", "floor_term", "terms", "segs", "offs", "lens", "cache", "evict", "cached_bytes", "budget")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.reset(0, 0)

    def reset(self, floor: int, floor_term: int) -> None:
        self.floor = floor
        self.floor_term = floor_term
        self.terms = array("q")
        self.segs = array("I")
        self.offs = array("I")
        self.lens = array("I")
        self.cache: list[Entry | None] = []
        self.evict = 0
        self.cached_bytes = 0

    @property
    def last(self) -> int:
        return self.floor + len(self.terms)

    def term_at(self, index: int) -> int | None:
        if index == self.floor:
            return self.floor_term
        pos = index - self.floor - 1
        if 0 <= pos < len(self.terms):
            return self.terms[pos]
        return None

    def push(self, entry: Entry, seg: int, off: int, rec_len: int) -> None:
        self.terms.append(entry.term)
        self.segs.append(seg)
        self.offs.append(off)
        self.lens.append(rec_len)
        self.cache.append(entry)
        self.cached_bytes += len(entry.data) + _ENTRY_COST
        cache = self.cache
        while self.cached_bytes > self.budget and self.evict < len(cache):
            old = cache[self.evict]
            assert old is not None
            self.cached_bytes -= len(old.data) + _ENTRY_COST
            cache[self.evict] = None
            self.evict += 1

    def drop_from(self, index: int) -> None:
        """Drop the entries >= index (floor < index <= last)."""
        pos = index - self.floor - 1
        for e in self.cache[max(pos, self.evict) :]:
            assert e is not None
            self.cached_bytes -= len(e.data) + _ENTRY_COST
        del self.terms[pos:], self.segs[pos:], self.offs[pos:], self.lens[pos:], self.cache[pos:]
        self.evict = min(self.evict, pos)

    def drop_to(self, index: int, term: int) -> None:
        """Drop the entries <= index (floor <= index <= last); index becomes the floor."""
        k = index - self.floor
        for e in self.cache[self.evict : max(k, self.evict)]:
            assert e is not None
            self.cached_bytes -= len(e.data) + _ENTRY_COST
        del self.terms[:k], self.segs[:k], self.offs[:k], self.lens[:k], self.cache[:k]
        self.evict = max(self.evict - k, 0)
        self.floor = index
        self.floor_term = term


@dataclass(slots=True)
class _Found:
    no: int
    base_index: int
    base_term: int
    path: str


class _Replay:
    """Rebuilds the index from records in file order (rules in the module docstring).

    The floor is "anchored" once the first STATE/ENTRY/SNAPSHOT record says where the log is, and
    "known" when its content is (the genesis or a snapshot); an anchor from a STATE header with
    deleted predecessors is a position only, so a truncation may move it down."""

    def __init__(self, index: _Index, log: Callable[[str], None], where: str) -> None:
        self.ix = index
        self.log = log
        self.where = where
        self.anchored = False
        self.known = False
        self.hs = HardState(0, "")
        self.saw_state = False
        self.snap: SnapshotMeta | None = None
        self.snap_data = b""
        self.snap_seg = 0
        self.gaps = 0
        self.dropped = 0

    def _anchor(self, floor: int, term: int, known: bool) -> None:
        self.ix.reset(floor, term)
        self.anchored = True
        self.known = known

    def state(self, last_index: int, last_term: int, hs: HardState) -> None:
        self.hs = hs
        self.saw_state = True
        ix = self.ix
        if not self.anchored:
            self._anchor(last_index, last_term, last_index == 0)
        elif ix.last > last_index:  # only after a lost TRUNCATE: the header is newer
            if last_index >= ix.floor:
                if last_index < ix.last:
                    ix.drop_from(last_index + 1)
            elif not self.known:
                self._anchor(last_index, last_term, False)
        # ix.last < last_index: a gap; the entries after it do not connect and are dropped below

    def truncate(self, index: int) -> None:
        ix = self.ix
        if not self.anchored or index > ix.last:
            return
        if index > ix.floor:
            ix.drop_from(index)
        elif not self.known:
            self._anchor(index - 1, _UNKNOWN_TERM, False)

    def entry(self, entry: Entry, seg: int, off: int, rec_len: int) -> None:
        ix = self.ix
        index = entry.index
        if not self.anchored:
            self._anchor(index - 1, _UNKNOWN_TERM, index == 1)
        last = ix.last
        if index == last + 1:
            ix.push(entry, seg, off, rec_len)
        elif ix.floor < index <= last:
            ix.drop_from(index)
            ix.push(entry, seg, off, rec_len)
        elif index <= ix.floor:
            if self.known:
                return  # at or below the snapshot: stale
            self._anchor(index - 1, _UNKNOWN_TERM, False)
            ix.push(entry, seg, off, rec_len)
        else:
            self.gaps += 1

    def snapshot(self, meta: SnapshotMeta, data: bytes, install: bool, seg: int) -> None:
        self.snap, self.snap_data, self.snap_seg = meta, data, seg
        ix = self.ix
        if install or not self.anchored:
            self._anchor(meta.index, meta.term, True)
        elif meta.index < ix.floor:
            pass  # older than a position-only anchor: `finish` checks that they meet
        elif meta.index == ix.floor:
            ix.floor_term = meta.term
            self.known = True
        elif meta.index <= ix.last and ix.term_at(meta.index) == meta.term:
            ix.drop_to(meta.index, meta.term)
            self.known = True
        else:
            self._anchor(meta.index, meta.term, True)

    def finish(self) -> bool:
        """Check that the log starts right after the snapshot; False when entries had to go."""
        ix = self.ix
        if not self.anchored:
            ix.reset(0, 0)
            return True
        if self.gaps:
            self.log(f"raft log {self.where}: {self.gaps} entries after a gap dropped")
        snap = self.snap
        floor, term = (0, 0) if snap is None else (snap.index, snap.term)
        if ix.floor == floor:
            ix.floor_term = term
            return True
        self.dropped = len(ix.terms)
        self.log(
            f"raft log {self.where}: the entries before index {ix.floor + 1} are missing "
            f"(snapshot at {floor}): dropping {self.dropped} entries"
        )
        ix.reset(floor, term)
        return False


# ---------------------------------------------------------------------------- the log


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


class RaftLog:
    """The durable log of one Raft group (see the module docstring). Use `RaftLog.open`.

    Recovered/current state: `hard_state`, `snapshot` (+ `snapshot_data`), `entries` (everything
    after the snapshot), `first_index`, `last_index`, `last_term`, `term(i)`. Membership is not kept
    apart: it lives in ENTRY_PEERS entries and `SnapshotMeta.peers`. Writes, all buffered and cheap
    on the loop: `append`, `truncate_from`, `set_hard_state`, `compact`, `install_snapshot`
    (`write_ready` does a Ready's in its order); `sync()` makes them durable. Reads for a leader
    catching up a follower: `entry(i)`, `entries_from(i, max_count, max_bytes)` (LogCorruptError if
    the disk changed under us). The fsync thread calls `take_sync_job`/`sync_done`; `on_synced(path,
    length)` reports each file's fsynced length (from that thread)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        log: Callable[[str], None] | None = None,
        on_synced: Callable[[str, int], None] | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        segment_entries: int = DEFAULT_SEGMENT_ENTRIES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self._log = log or (lambda text: None)
        self._on_synced = on_synced
        self.segment_size = segment_size
        self.segment_entries = segment_entries
        self._early_rotation = min(segment_size, max(_EARLY_ROTATION, segment_size // 16))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # shared with the fsync thread (under _lock)
        self._dirty: dict[str, tuple[int, Callable[[], int]]] = {}
        self._dirty_dirs: set[str] = set()
        self._unlink_after: list[str] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._inflight = False
        # event loop only
        self._failed: BaseException | None = None
        self._closed = False
        self._segments: list[_Segment] = []
        self._by_no: dict[int, _Segment] = {}
        self._next_no = 1
        self._ix = _Index(cache_bytes)
        self._hs = HardState(0, "")
        self._hs_pending = False
        self._snap: SnapshotMeta | None = None
        self._snap_data = b""
        self._snap_pending = False  # a compaction not yet written (commutes with what follows it)
        self._snap_seg = 0  # segment holding the newest SNAPSHOT record written (0: none)
        self._snap_written = 0  # its index
        #: Bytes written to segment files by this process (for write-amplification measurements).
        self.bytes_written = 0
        #: What open found: corrupt records skipped, torn tails truncated, entries dropped.
        self.recovered_corrupt = 0
        self.recovered_truncated = 0
        self.recovered_dropped = 0
        self._make_directory()
        self._recover()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        log: Callable[[str], None] | None = None,
        on_synced: Callable[[str, int], None] | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        segment_entries: int = DEFAULT_SEGMENT_ENTRIES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> RaftLog:
        """Open (creating) the log in `directory` and recover it (blocking reads, no fsync)."""
        return cls(
            directory,
            log=log,
            on_synced=on_synced,
            segment_size=segment_size,
            segment_entries=segment_entries,
            cache_bytes=cache_bytes,
        )

    # ------------------------------------------------------------------ recovered / current state
    @property
    def hard_state(self) -> HardState:
        return self._hs

    @property
    def snapshot(self) -> SnapshotMeta | None:
        return self._snap

    @property
    def snapshot_data(self) -> bytes:
        return self._snap_data

    @property
    def first_index(self) -> int:
        """Index of the first entry held (last_index + 1 when empty)."""
        return self._ix.floor + 1

    @property
    def last_index(self) -> int:
        return self._ix.last

    @property
    def last_term(self) -> int:
        ix = self._ix
        return ix.terms[-1] if ix.terms else ix.floor_term

    @property
    def entries(self) -> list[Entry]:
        """Every entry after the snapshot, in order (reads back what the cache does not hold: meant
        for startup)."""
        return self.entries_from(self.first_index) if self._ix.terms else []

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, the snapshot's term at its index, 0 at index 0; None when
        compacted away or beyond the end."""
        return self._ix.term_at(index)

    def entry(self, index: int) -> Entry | None:
        """The entry at `index`, or None when it is compacted away or beyond the end (LogCorruptError
        when a record read back from disk fails its checks)."""
        ix = self._ix
        if not ix.floor < index <= ix.last:
            return None
        return self._read(index - ix.floor - 1, 1)[0]

    def locate(self, index: int, data_len: int) -> tuple[int, str, int] | None:
        """Where entry `index`'s data (`data_len` bytes, the tail of its record's body) lies on disk:
        (segment number, segment path, offset), or None when the entry is not live or not yet
        written to its file. The stream store keeps references into segments (write once:
        jsedge.store.filestore); a segment's bytes never change once written (compaction deletes
        whole segments, a truncation appends a marker), so a reference stays valid for as long as
        the store holds a link to the file."""
        ix = self._ix
        pos = index - ix.floor - 1
        if not 0 <= pos < len(ix.terms):
            return None
        seg = self._by_no.get(ix.segs[pos])
        if seg is None:
            return None
        end = ix.offs[pos] + ix.lens[pos] - 4  # the data ends where the record's CRC begins
        if end > seg.flushed or data_len > ix.lens[pos]:
            return None
        return seg.no, seg.path, end - data_len

    def entries_from(self, index: int, max_count: int = 1 << 62, max_bytes: int = 1 << 62) -> list[Entry]:
        """Entries from `index` on: at most `max_count`, and at most `max_bytes` counted as stored
        (data + ~10 B framing) but always at least one. [] beyond the end; CompactedError at or
        below the snapshot."""
        ix = self._ix
        if index <= ix.floor:
            raise CompactedError(index)
        if index > ix.last or max_count <= 0:
            return []
        pos = index - ix.floor - 1
        end = min(len(ix.terms), pos + max_count)
        lens = ix.lens
        total = lens[pos]
        stop = pos + 1
        while stop < end and total + lens[stop] <= max_bytes:
            total += lens[stop]
            stop += 1
        return self._read(pos, stop - pos)

    # ------------------------------------------------------------------ writes (buffered)
    def write_ready(self, ready: Ready) -> tuple[int, int]:
        """Write a Ready's persistent part in its order (snapshot, truncation, entries, hard state);
        returns (last index, last term) for the core's `persisted` once `sync()` resolves."""
        if ready.snapshot is not None:
            self.install_snapshot(ready.snapshot, ready.snapshot_data)
        if ready.truncate_from:
            self.truncate_from(ready.truncate_from)
        if ready.entries:
            self.append(ready.entries)
        if ready.hard_state is not None:
            self.set_hard_state(ready.hard_state)
        return self.last_index, self.last_term

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries; each must follow the last one (an index <= last truncates there first)."""
        self._check_open()
        ix = self._ix
        for e in entries:
            index = e.index
            kind = e.kind
            if not 0 <= kind <= MAX_ENTRY_KIND:
                raise ValueError(f"entry kind {kind} out of range")
            if index != ix.last + 1:
                if ix.floor < index <= ix.last:
                    self.truncate_from(index)
                else:
                    raise ValueError(f"entry {index} does not follow the log ({ix.floor + 1}..{ix.last})")
            seg = self._segments[-1] if self._segments else None
            if (
                seg is None
                or seg.size >= self.segment_size
                or seg.count >= self.segment_entries
                or index < seg.base_index
                or e.term < seg.base_term
            ):
                seg = self._rotate(index, e.term)
            off = seg.size
            n = codec.encode_blob(
                seg.buf, _uv(((e.term - seg.base_term) << 3) | kind) + _uv(index - seg.base_index) + e.data
            )
            seg.size += n
            seg.count += 1
            seg.live_max = index
            ix.push(e, seg.no, off, n)
            if len(seg.buf) >= _FLUSH_AT:
                self._write_buffer(seg)

    def truncate_from(self, index: int) -> None:
        """Drop every entry with index >= `index` (a follower's conflicting, uncommitted suffix)."""
        self._check_open()
        ix = self._ix
        if index <= ix.floor:
            raise ValueError(f"cannot truncate at {index}: compacted up to {ix.floor}")
        if index > ix.last:
            return
        self._emit(bytes((CODE_TRUNCATE,)) + _uv(index))
        ix.drop_from(index)
        for seg in self._segments:
            if seg.live_max >= index:
                seg.live_max = index - 1
        if index < self._segments[-1].base_index:
            self._rotate(index, self.last_term)

    def set_hard_state(self, hs: HardState) -> None:
        """Remember the hard state; written (once, however often it changed) at the next sync."""
        self._check_open()
        if hs != self._hs:
            self._hs = hs
            self._hs_pending = True

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        """The state machine is durable up to `meta.index`: drop the entries up to it, keep the newer
        ones, remember `meta` and `data`. A no-op at or below the current snapshot. When the log does
        not hold `meta.index` with `meta.term` (beyond the end, or another term), it is emptied."""
        self._check_open()
        ix = self._ix
        if meta.index <= ix.floor:
            return
        data = _snapshot_data(data)
        self._snap, self._snap_data = meta, data
        if meta.index <= ix.last and ix.term_at(meta.index) == meta.term:
            # commutes with the appends and truncations that may follow it before the next sync, so
            # only the newest compaction between two syncs is written
            ix.drop_to(meta.index, meta.term)
            self._snap_pending = True
        else:
            ix.reset(meta.index, meta.term)
            for seg in self._segments:
                seg.live_max = 0
            self._snap_pending = False
            self._emit_snapshot(meta, data, install=False)

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Replace everything: the log is empty after `meta.index`."""
        self._check_open()
        data = _snapshot_data(data)
        self._snap, self._snap_data = meta, data
        self._snap_pending = False
        self._ix.reset(meta.index, meta.term)
        for seg in self._segments:
            seg.live_max = 0
        self._emit_snapshot(meta, data, install=True)

    # ------------------------------------------------------------------ durability
    def sync(self) -> asyncio.Future[None]:
        """A future (on the running loop) resolved when everything written before the call is on
        stable storage: file data and the directory entries of new segments. Group commit through
        the shared fsync thread; rounds complete in order."""
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._failed is not None:
            fut.set_exception(self._failed)
            return fut
        self._flush()
        with self._lock:
            idle = (
                not self._dirty
                and not self._dirty_dirs
                and not self._unlink_after
                and not self._inflight
                and not self._waiters
            )
            if not idle:
                self._waiters.append(fut)
        if idle:
            fut.set_result(None)
            return fut
        fut.add_done_callback(self._round_done)
        SYNCER.request(self)
        return fut

    def sync_blocking(self) -> None:
        """fsync here, in the calling thread (tools and shutdown; never on a busy event loop)."""
        self._check_open()
        if self._failed is not None:
            raise self._failed
        self._flush()
        self._run_inline()

    def _round_done(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None and self._failed is None:
            self._failed = fut.exception()
            self._log(f"raft log {self.directory}: fsync failed, the log is unusable: {self._failed}")

    def take_sync_job(self) -> SyncJob:
        """Called by the fsync thread: everything written so far, and who waits for it."""
        with self._lock:
            return self._take_job_locked()

    def _take_job_locked(self) -> SyncJob:
        job = SyncJob(on_synced=self._on_synced)
        for path, (fd, length) in self._dirty.items():
            job.files.append((path, os.dup(fd), length()))
        job.dirs = sorted(self._dirty_dirs)
        job.waiters = self._waiters
        job.unlink_after = self._unlink_after
        self._dirty = {}
        self._dirty_dirs = set()
        self._waiters = []
        self._unlink_after = []
        self._inflight = True
        return job

    def sync_done(self) -> None:
        with self._lock:
            self._inflight = False
            self._idle.notify_all()

    def _run_inline(self) -> None:
        with self._idle:  # an earlier round still running finishes first: rounds complete in order
            while self._inflight:
                self._idle.wait()
            job = self._take_job_locked()  # under the same lock: the fsync thread cannot slip in
        error = run_job(job)
        self.sync_done()
        for fut in job.waiters:
            try:
                fut.get_loop().call_soon_threadsafe(_resolve, fut, error)
            except RuntimeError:
                pass
        if error is not None:
            self._failed = error
            raise error

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Write what is buffered and fsync it (shutdown path: a blocking fsync), close the files."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self._flush()
                self._run_inline()
        finally:
            self._close_files()

    def delete(self) -> None:
        """Remove the group's log: close the files, delete the directory. Pending syncs fail."""
        self._close_files()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _close_files(self) -> None:
        with self._lock:
            self._dirty.clear()
            self._dirty_dirs.clear()
            self._unlink_after.clear()
            waiters, self._waiters = self._waiters, []
        for seg in self._segments:
            os.close(seg.fd)
        self._segments = []
        self._by_no = {}
        self._closed = True
        for fut in waiters:
            try:
                fut.get_loop().call_soon_threadsafe(_resolve, fut, LogClosedError("raft log closed"))
            except RuntimeError:
                pass

    def _drop(self) -> None:
        """Close the files without writing what is buffered (tests: the process dies here)."""
        self._close_files()

    def statistics(self) -> WalStatistics:
        ix = self._ix
        return WalStatistics(
            first_index=ix.floor + 1,
            last_index=ix.last,
            snapshot_index=self._snap.index if self._snap is not None else 0,
            segments=len(self._segments),
            disk_bytes=sum(seg.size for seg in self._segments),
            cached_entries=len(ix.cache) - ix.evict,
            cached_bytes=ix.cached_bytes,
            bytes_written=self.bytes_written,
            recovered_corrupt=self.recovered_corrupt,
            recovered_truncated=self.recovered_truncated,
            recovered_dropped=self.recovered_dropped,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"raft log {self.directory} is closed")

    # ------------------------------------------------------------------ segments
    def _make_directory(self) -> None:
        missing = []
        path = self.directory
        while not path.exists():
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
        with self._lock:  # new directories: their entries in their parents must become durable too
            for path in missing:
                self._dirty_dirs.add(str(path.parent))

    def _rotate(self, base_index: int, base_term: int) -> _Segment:
        """Start a new segment; its STATE header records the hard state and where the log ends."""
        if self._segments:
            self._write_buffer(self._segments[-1])
        no = self._next_no
        self._next_no += 1
        path = str(self.directory / _segment_name(no, base_index, base_term))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        seg = _Segment(no, path, fd, base_index, base_term, 0)
        self._segments.append(seg)
        self._by_no[no] = seg
        with self._lock:
            self._dirty_dirs.add(str(self.directory))
        seg.size += codec.encode_blob(seg.buf, _state_body(self._ix.last, self.last_term, self._hs))
        seg.header = seg.size
        self._hs_pending = False
        if self._snap_pending:
            self._write_pending_snapshot()
        return seg

    def _emit(self, body: bytes) -> _Segment:
        """Append a control record to the active segment (rotating a full one)."""
        seg = self._segments[-1] if self._segments else None
        if seg is None or (seg.size >= self.segment_size and seg.size > seg.header):
            seg = self._rotate(self._ix.last + 1, max(self.last_term, 0))
        seg.size += codec.encode_blob(seg.buf, body)
        if len(seg.buf) >= _FLUSH_AT:
            self._write_buffer(seg)
        return seg

    def _emit_snapshot(self, meta: SnapshotMeta, data: bytes, install: bool) -> None:
        seg = self._emit(_snapshot_body(meta, data, install))
        self._snap_seg = seg.no
        self._snap_written = meta.index

    def _write_pending_snapshot(self) -> None:
        assert self._snap is not None
        self._snap_pending = False
        self._emit_snapshot(self._snap, self._snap_data, install=False)

    def _write_buffer(self, seg: _Segment) -> None:
        if not seg.buf:
            return
        view = memoryview(seg.buf)
        offset = seg.flushed
        while view:
            written = os.pwrite(seg.fd, view, offset)
            view = view[written:]
            offset += written
        self.bytes_written += len(seg.buf)
        seg.flushed = offset
        seg.buf = bytearray()
        with self._lock:
            self._dirty[seg.path] = (seg.fd, lambda: seg.flushed)

    def _flush(self) -> None:
        """Write the pending records and the buffer; schedule the segments compaction freed."""
        if self._segments:
            active = self._segments[-1]
            if (
                self._snap_pending
                and active.size >= self._early_rotation
                and active.size > active.header
                and active.live_max <= self._ix.floor
            ):
                # "append, fsync, soon drop": everything in the active segment is compacted away, so
                # start a new one now (the pending snapshot goes there) and this one can go at once
                self._rotate(self._ix.last + 1, max(self.last_term, 0))
        if self._snap_pending:
            self._write_pending_snapshot()
        if self._hs_pending:
            self._emit(_state_body(self._ix.last, self.last_term, self._hs))
            self._hs_pending = False
        if self._segments:
            self._write_buffer(self._segments[-1])
        self._reap()

    def _reap(self) -> None:
        """Hand the segments no longer needed to the fsync thread: they are unlinked after the round
        that makes the newest SNAPSHOT record (written to its file before this call) durable."""
        segs = self._segments
        while (
            len(segs) > 1 and self._snap_seg and segs[0].no < self._snap_seg and segs[0].live_max <= self._snap_written
        ):
            seg = segs.pop(0)
            del self._by_no[seg.no]
            with self._lock:
                self._dirty.pop(seg.path, None)
                self._unlink_after.append(seg.path)
            os.close(seg.fd)

    # ------------------------------------------------------------------ reads
    def _read(self, pos: int, count: int) -> list[Entry]:
        """Entries at positions pos..pos+count-1 (from the cache, else one pread per segment run)."""
        ix = self._ix
        out: list[Entry] = []
        end = pos + count
        cached_from = max(pos, ix.evict)
        p = pos
        while p < min(end, cached_from):
            no = ix.segs[p]
            q = p + 1
            while q < min(end, cached_from) and ix.segs[q] == no:
                q += 1
            out.extend(self._read_run(p, q))
            p = q
        for e in ix.cache[cached_from:end]:
            assert e is not None
            out.append(e)
        return out

    def _read_run(self, pos: int, stop: int) -> list[Entry]:
        ix = self._ix
        seg = self._by_no[ix.segs[pos]]
        start = ix.offs[pos]
        finish = ix.offs[stop - 1] + ix.lens[stop - 1]
        if finish > seg.flushed:
            self._write_buffer(seg)
        raw = os.pread(seg.fd, finish - start, start)
        out = []
        for p in range(pos, stop):
            index = ix.floor + 1 + p
            off = ix.offs[p] - start
            try:
                kind, _, _, _, _, _, body, rec_len = codec.decode(raw, off, 0, 0)
                entry = None
                if kind == codec.KIND_BLOB and rec_len == ix.lens[p]:
                    entry = _decode_entry(body, seg.base_index, seg.base_term)
            except (ValueError, IndexError):  # CorruptRecordError (either twin) is a ValueError
                entry = None
            if entry is None or entry.index != index or entry.term != ix.terms[p]:
                raise LogCorruptError(f"raft log {seg.path}: entry {index} at offset {ix.offs[p]} is corrupt")
            out.append(entry)
        return out

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        found: list[_Found] = []
        for name in os.listdir(self.directory):
            m = _SEGMENT_NAME.match(name)
            if m is not None:
                no, base_index, base_term = (int(g, 16) for g in m.groups())
                found.append(_Found(no, base_index, base_term, str(self.directory / name)))
        if not found:
            return
        found.sort(key=lambda f: f.no)
        self._next_no = found[-1].no + 1
        gap = 0
        for k in range(1, len(found)):
            if found[k].no != found[k - 1].no + 1:
                gap = k
        replay, segments, cuts = self._replay(found[gap:])
        stale = found[:gap]
        if gap and (replay.snap is None or replay.dropped):
            self._log(
                f"raft log {self.directory}: segments {found[gap].no}.. do not stand alone after a gap in "
                f"the numbering (never synced): recovering from the segments before it"
            )
            for seg in segments:
                os.close(seg.fd)
            self._ix.reset(0, 0)
            stale = found[gap:]
            replay, segments, cuts = self._replay(found[:gap])
        elif gap:
            self._log(
                f"raft log {self.directory}: segments before {found[gap].no} are left over from a compaction; deleting"
            )
            if not replay.saw_state:  # every STATE record after the gap lost: the newest before it
                replay.hs = _last_hard_state(found[:gap], replay.hs)
        for seg, valid_end, length in cuts:
            self.recovered_truncated += 1
            self._log(f"raft log {seg.path}: truncating {length - valid_end} bytes of torn/corrupt tail at {valid_end}")
            os.ftruncate(seg.fd, valid_end)
        self._segments = segments
        self._by_no = {seg.no: seg for seg in segments}
        self._hs = replay.hs
        self._snap = replay.snap
        self._snap_data = replay.snap_data
        self._snap_seg = replay.snap_seg
        self._snap_written = replay.snap.index if replay.snap is not None else 0
        self.recovered_dropped = replay.dropped + replay.gaps
        ix = self._ix
        for p in range(len(ix.terms)):
            self._by_no[ix.segs[p]].live_max = ix.floor + 1 + p
        with self._lock:
            # what was read may still be only in the page cache (a killed process): the first round
            # fsyncs it all before anything recovered is acted upon or deleted
            for seg in segments:
                self._dirty[seg.path] = (seg.fd, (lambda s: lambda: s.flushed)(seg))
            self._dirty_dirs.add(str(self.directory))
            self._unlink_after.extend(f.path for f in stale)
        self._reap()

    def _replay(self, found: list[_Found]) -> tuple[_Replay, list[_Segment], list[tuple[_Segment, int, int]]]:
        """Replay the given segments into `self._ix`: (the replay, the opened segments, torn tails
        to truncate as (segment, valid end, length))."""
        self._ix.reset(0, 0)
        replay = _Replay(self._ix, self._log, str(self.directory))
        segments: list[_Segment] = []
        cuts: list[tuple[_Segment, int, int]] = []
        fields = codec.FIELDS
        for f in found:
            fd = os.open(f.path, os.O_RDWR)
            length = os.fstat(fd).st_size
            data = os.pread(fd, length, 0) if length else b""
            records, corrupt, valid_end = codec.scan(data, 0, 0)
            seg = _Segment(f.no, f.path, fd, f.base_index, f.base_term, valid_end)
            segments.append(seg)
            for start, end in corrupt:
                if not (end == length and start == valid_end):
                    self.recovered_corrupt += 1
                    self._log(f"raft log {f.path}: skipping corrupt bytes [{start}, {end})")
            if valid_end < length:
                cuts.append((seg, valid_end, length))
            for r in range(0, len(records), fields):
                off = records[r + codec.F_OFFSET]
                rec_len = records[r + codec.F_LEN]
                if records[r + codec.F_KIND] != codec.KIND_BLOB:
                    self.recovered_corrupt += 1
                    self._log(f"raft log {f.path}: unexpected record kind at {off}")
                    continue
                data_len = records[r + codec.F_DATA_LEN]
                body = data[off + rec_len - 4 - data_len : off + rec_len - 4]
                try:
                    code = body[0] & 7
                    if code <= MAX_ENTRY_KIND:
                        entry = _decode_entry(body, f.base_index, f.base_term)
                        seg.count += 1
                        replay.entry(entry, f.no, off, rec_len)
                    elif code == CODE_TRUNCATE:
                        replay.truncate(_read_uv(body, 1)[0])
                    elif code == CODE_STATE:
                        last_index, pos = _read_uv(body, 1)
                        last_term, pos = _read_uv(body, pos)
                        term, pos = _read_uv(body, pos)
                        replay.state(last_index, last_term, HardState(term, body[pos:].decode()))
                    else:
                        meta, snap_data, install = _decode_snapshot(body, 1)
                        replay.snapshot(meta, snap_data, install, f.no)
                except (ValueError, IndexError):  # a valid CRC over a malformed body
                    self.recovered_corrupt += 1
                    self._log(f"raft log {f.path}: malformed record at {off} skipped")
        replay.finish()
        return replay, segments, cuts


def _decode_entry(body: bytes, base_index: int, base_term: int) -> Entry:
    head, pos = _read_uv(body, 0)
    if head & 7 > MAX_ENTRY_KIND:
        raise ValueError("not an entry record")
    delta, pos = _read_uv(body, pos)
    return Entry(base_term + (head >> 3), base_index + delta, head & 7, body[pos:])


def _last_hard_state(found: list[_Found], default: HardState) -> HardState:
    """The hard state of the newest valid STATE record in these segments (`default` if none)."""
    hs = default
    for f in found:
        with open(f.path, "rb") as file:
            data = file.read()
        records, _, _ = codec.scan(data, 0, 0)
        for r in range(0, len(records), codec.FIELDS):
            off, rec_len, data_len = (
                records[r + codec.F_OFFSET],
                records[r + codec.F_LEN],
                records[r + codec.F_DATA_LEN],
            )
            body = data[off + rec_len - 4 - data_len : off + rec_len - 4]
            if records[r + codec.F_KIND] != codec.KIND_BLOB or not body or body[0] & 7 != CODE_STATE:
                continue
            try:
                _, pos = _read_uv(body, 1)
                _, pos = _read_uv(body, pos)
                term, pos = _read_uv(body, pos)
                hs = HardState(term, body[pos:].decode())
            except (ValueError, IndexError):
                continue
    return hs
