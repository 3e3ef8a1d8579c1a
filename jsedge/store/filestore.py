"""File-backed stream store (layer 3), nats-server's filestore.

Layout of a stream directory::

    <dir>/msgs/<base_seq:016x>-<base_ts:016x>.blk   blocks: records of the segment codec (codec.py)
    <dir>/obs/<consumer>/config.json                consumer config (atomic write)
    <dir>/obs/<consumer>/state.<gen:08d>.log        consumer state log (BLOB records, see below)
    <dir>/meta.bin                                  the stream layer's metadata (`save_meta`, atomic)
    <dir>/refs/<file:08x>.seg                       hard links to Raft log segments (write once, below)

Rules live in `_core.IndexedStore`; this module keeps payloads on disk. The index adds one array
(`_off`, uint32 offset in the block) to the core's 16 bytes per sequence; the block of a sequence is
found by bisecting the blocks' base sequences (a block holds the messages with base <= seq < next
block's base). Nothing per message is kept in RAM but those 20 bytes (uint32 arrays: `array('I')`,
4 bytes on every platform jsedge runs on, where `array('L')` would be 8 on 64-bit ones).

Writes append to the active block's buffer; it is written to the file (one `os.write`) by `sync()`,
when it passes 64 KiB, before a read of an unwritten record, at rotation and at close. Rotation starts a
new block at `block_size` (default 4 MiB: a 1 M message stream of 200 B records is 50 files; recovery
reads blocks whole, and 4 MiB keeps that read one large sequential I/O). Each new block starts with a
STATE record (first_seq, last_seq, last_ts), so the newest block always restores last_seq even when
every message is gone.

Removals: a message that is not the first gets a TOMBSTONE record in the active block (a restart must
not resurrect it); removals from the front only move the floor, persisted by one STATE record at the
next `sync()`/close (a purge writes it at once). A front removal lost in a crash before that sync is
redone on open, because opening re-applies the limits — the same limits removed it. `erase` rewrites
the record in place as an ERASED record of the same length. A block with no live message is deleted
when its tombstones no longer refer to a message of another existing block (the active block stays).

Durability (`sync()`): see `_sync.py` — group commit by default (the future resolves after the fsync
that covers every write made before the call), `sync_policy="interval"` (resolve at once, fsync every
`sync_interval` seconds: nats-server's `sync_interval`, an explicit opt-in to lose the last interval on
power loss), `"always"` (every mutation requests an fsync at once, nats-server's `sync_always`). The
`on_synced(path, length)` callback (called from the fsync thread) reports per file the length known
to be on stable storage: the power-loss tests truncate files to those lengths.

Recovery on open: every block is read and scanned by the codec; a torn or corrupt tail is truncated,
a corrupt record in the middle is skipped (logged through `log`) and the scan resynchronises on the
next valid record, so intact records after it survive; records are replayed in order (messages,
skips, tombstones, state), then limits are applied.

Atomic batches (`begin_batch`): a BLOB record `jsedge-batch <first> <last>` goes before a batch's
records. If the replay ends below `<last>`, the batch was cut short (a kill or a power loss while it
was written, or an fsync that ran in its middle): every block is cut back to the marker (later blocks
deleted) and replayed again, so the stream holds all of a batch or none of it. A batch that failed
half way in a running server writes `jsedge-batch-cancel` (what it stored stays).

Compression (`compression: s2` in the stream config): a block is compressed when it is sealed (the
next block starts), as nats-server does. The codec is Snappy's raw block format from `cramjam` (S2
is nats-server's extension of Snappy; both trade ratio for speed, which is what a Pi's CPU wants; a
block of JSON telemetry shrinks to about a third). The compressed file replaces the plain one by
rename only after it is fsynced (the fsync thread does both, `SyncJob.renames`), so a crash leaves one
of the two whole; until the loop learns of the rename it reads the plain copy through the fd it
still holds. A compressed file is ``JSZ\x01`` + codec byte + uint32 plain length + uint32 CRC-32 of
the compressed body + body; a plain block never starts with ``J`` (record tags are 0xE0-0xE6).
Reading a compressed block decompresses it whole into a small cache shared by every store (two
blocks), so a consumer walking it pays once. Offsets in the index stay offsets in the plain bytes.
A block never changes once compressed except by `erase` (rewritten plain, synchronously: rare) and
by recovery cutting back a partial atomic batch. Without `cramjam` importable, blocks stay plain
(logged once).

Write once (replicated streams): a message of a replicated file stream is already on disk, in the
Raft log segment that made it durable before it was committed. Writing it again into a block would
double the bytes written per message (an SD card's wear), so the cluster layer tells the store where
the payload sits (`set_ref`, for the next message stored) and the block gets a MSG_REF record instead:
subject, headers and the reference (file, offset, length, CRC-32 of the payload). The store owns the
segment through a hard link, `refs/<file>.seg`, made and made durable (`link_ref`) before any record
points into it, so the Raft log may compact and delete its own name whenever it likes. A read
resolves the reference with one pread (read ahead like blocks) and checks the CRC; a payload that
does not check out is reported like any corrupt record and never served. Which file each stored
message references is kept as runs (`_ref_runs`: first sequence of each run of consecutive messages
stored against one file, 0 for full records), so a removal counts down its file's live messages
without a per-message array, and a file with none left (and not the one being filled) is unlinked.
Runs are in the index snapshot; a scan rebuilds them from the records. Erasing a referenced message
erases the record; the payload stays in the segment until the segment goes, as it stays in
nats-server's Raft log until that is compacted. Messages with a TTL, compressed streams and atomic
batches are stored whole.

Consumer state: an append-only log of BLOB records per consumer — a full snapshot first, then small
delivered/ack records (`update_delivered` costs one 37-byte record). When the log grows past 8x its
snapshot (and 64 KiB) a new generation starts with a fresh snapshot; the old file is unlinked by the
fsync thread only after the new one is durable. Open replays the newest generation whose snapshot is
intact. Consumer logs are flushed and fsynced by the stream store's `sync()`.

Layer 3: imports jsedge.store.base/_core/_sync, the codec selector and the stdlib.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import heapq
import marshal
import os
import re
import shutil
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path

from jsedge.store import codec
from jsedge.store._core import DELETED, IndexedStore, apply_ack, apply_delivered, copy_state, resolved
from jsedge.store._sync import SYNCER, SyncJob, fsync_dir, journal_file, run_job
from jsedge.store.base import (
    FLUSH_AT,
    MSG_HDR_OVERHEAD,
    MSG_OVERHEAD,
    ConsumerState,
    Pending,
    SequencePair,
    StoreClosedError,
    StoreConfig,
    StoredMsg,
)

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
#: Buffered bytes that trigger a write to the file without waiting for `sync()`.
_FLUSH_AT = FLUSH_AT
_BLOCK_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.blk$")
_U64 = (1 << 64) - 1
# a record's framing never exceeds the accounted size by more than this (see `_read`)
_READ_SLACK = 64
#: bytes read at once when reads move forward through a block (`_read`): ~200 records of 150 B
_READ_AHEAD = 32 * 1024
#: BLOB records in a message block: an atomic batch begins (`begin_batch`), or failed half way
_BATCH_MARK = b"jsedge-batch"
_INDEX_FILE = "index.snap"
_INDEX_MAGIC = b"JSEDGE-INDEX\n"
#: Bumped whenever the snapshot's contents or the index's arrays change meaning.
_INDEX_VERSION = 7
_BATCH_CANCEL = b"jsedge-batch-cancel"
_REF_NAME = re.compile(r"^([0-9a-f]{8})\.seg$")
#: open reference files kept (least recently used closed beyond this)
_REF_FDS = 32
#: compressed block header: magic, codec (1 = Snappy raw), plain length, CRC-32 of the body
_Z_HEAD = struct.Struct("<4sBII")
_Z_MAGIC = b"JSZ\x01"
_Z_SNAPPY = 1
#: plain bytes of recently read compressed blocks, by path (shared by every store: bounded RSS)
_PLAIN_CACHE: collections.OrderedDict[str, bytes] = collections.OrderedDict()
_PLAIN_CACHE_BLOCKS = 2
_snappy_module: object = None


#: an index snapshot larger than this leaves enough freed heap behind to hand back (`_load_index`)
_TRIM_AFTER = 1 << 20


def _return_freed_memory() -> None:
    """Give the heap that loading a large index snapshot freed back to the system (glibc keeps it
    below the top of the heap otherwise: a million-message snapshot leaves ~19 MiB of RSS that no
    object uses). Nothing happens where there is no glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (ImportError, OSError, AttributeError):
        pass


def _snappy() -> object | None:
    """cramjam's Snappy, imported on first use (False once it failed: blocks stay plain)."""
    global _snappy_module
    if _snappy_module is None:
        try:
            import cramjam

            _snappy_module = cramjam.snappy
        except ImportError:
            _snappy_module = False
    return _snappy_module or None


def compress_block(plain: bytes) -> bytes:
    snappy = _snappy()
    if snappy is None:
        raise RuntimeError("cramjam is not installed")
    body = bytes(snappy.compress_raw(plain))  # type: ignore[attr-defined]
    return _Z_HEAD.pack(_Z_MAGIC, _Z_SNAPPY, len(plain), codec.crc32(body)) + body


def decompress_block(raw: bytes) -> bytes:
    """The plain bytes of a compressed block file; ValueError when it is damaged."""
    if len(raw) < _Z_HEAD.size:
        raise ValueError("short compressed block")
    magic, kind, length, crc = _Z_HEAD.unpack_from(raw)
    if magic != _Z_MAGIC or kind != _Z_SNAPPY:
        raise ValueError("not a compressed block")
    body = raw[_Z_HEAD.size :]
    if codec.crc32(body) != crc:
        raise ValueError("checksum mismatch")
    snappy = _snappy()
    if snappy is None:
        raise ValueError("compressed, and cramjam is not installed to read it")
    try:
        plain = bytes(snappy.decompress_raw(body))  # type: ignore[attr-defined]
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise ValueError(f"undecodable ({exc})") from None
    if len(plain) != length:
        raise ValueError("length mismatch")
    return plain


_CACHE_LOCK = threading.Lock()


def _cache_put(path: str, plain: bytes) -> None:
    with _CACHE_LOCK:
        _PLAIN_CACHE[path] = plain
        _PLAIN_CACHE.move_to_end(path)
        while len(_PLAIN_CACHE) > _PLAIN_CACHE_BLOCKS:
            _PLAIN_CACHE.popitem(last=False)


def _cache_drop(path: str) -> None:
    with _CACHE_LOCK:
        _PLAIN_CACHE.pop(path, None)


def _block_name(base_seq: int, base_ts: int) -> str:
    return f"{base_seq:016x}-{base_ts & _U64:016x}.blk"


def _parse_block_name(name: str) -> tuple[int, int] | None:
    m = _BLOCK_NAME.match(name)
    if m is None:
        return None
    ts = int(m.group(2), 16)
    return int(m.group(1), 16), ts - (1 << 64) if ts >= 1 << 63 else ts


def write_atomic(path: Path, data: bytes) -> None:
    """temp file, fsync, rename, fsync dir: the file holds the old or the new bytes, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(str(path.parent))
    journal_file(str(path), len(data))


def _write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """pwrite at an explicit offset: never depends on a file position (a reopened block's is 0)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class _Block:
    """One segment file. `size` counts buffered bytes too; `flushed` is what the file holds.
    A compressed block has `fd` -1 and `disk` its file's length; `sealing` is the tmp path of a
    compressed copy waiting for its rename, `touched` that the block changed after it was taken."""

    __slots__ = (
        "path",
        "fd",
        "base_seq",
        "base_ts",
        "size",
        "flushed",
        "buf",
        "live",
        "tomb_min",
        "tomb_max",
        "disk",
        "sealing",
        "touched",
    )

    def __init__(self, path: str, fd: int, base_seq: int, base_ts: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.base_seq = base_seq
        self.base_ts = base_ts
        self.size = size
        self.flushed = size
        self.buf = bytearray()
        self.live = 0
        self.tomb_min = -1
        self.tomb_max = -1
        self.disk = size
        self.sealing: str | None = None
        self.touched = False

    def note_tombstone(self, seq: int) -> None:
        if self.tomb_min < 0 or seq < self.tomb_min:
            self.tomb_min = seq
        if seq > self.tomb_max:
            self.tomb_max = seq


class FileStore(IndexedStore):
    """StreamStore on segment files (see the module docstring)."""

    _OVERHEAD = MSG_OVERHEAD
    _HDR_OVERHEAD = MSG_HDR_OVERHEAD

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: StoreConfig,
        *,
        sync_policy: str = "group",
        sync_interval: float = 120.0,
        block_size: int = DEFAULT_BLOCK_SIZE,
        log: Callable[[str], None] | None = None,
        on_synced: Callable[[str, int], None] | None = None,
    ) -> None:
        if sync_policy not in ("group", "interval", "always"):
            raise ValueError(f"unknown sync_policy {sync_policy!r}")
        super().__init__(config)
        self.directory = Path(directory)
        self.sync_policy = sync_policy
        #: jetstream/ingest.py may append header-less publishes itself (acks after a group commit)
        self.plain_ingest = sync_policy == "group"
        self.sync_interval = sync_interval
        self.block_size = block_size
        self._log = log or (lambda text: None)
        self._on_synced = on_synced
        self._msgs_dir = self.directory / "msgs"
        self._obs_dir = self.directory / "obs"
        self._msgs_dir.mkdir(parents=True, exist_ok=True)
        self._off = array("I")
        self._blocks: list[_Block] = []
        self._bases: list[int] = []
        self._lock = threading.Lock()
        #: notified when the fsync thread finishes a job (`close` waits for one in flight)
        self._idle = threading.Condition(self._lock)
        self._dirty: dict[str, tuple[int, Callable[[], int]]] = {}  # path -> (fd, length getter)
        self._dirty_dirs: set[str] = set()
        self._unlink_after: list[str] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._inflight = 0  # jobs taken and not finished (the fsync thread and close can both hold one)
        self._floor_dirty = False
        self._recovering = False
        self._consumers: dict[str, FileConsumerStore] = {}
        self._interval_handle: asyncio.TimerHandle | None = None
        #: Corrupt records skipped and torn tails truncated at open (for statistics and tests).
        self.recovered_corrupt = 0
        self.recovered_truncated = 0
        #: the last atomic batch marker replayed: (first_seq, last_seq, block index, offset)
        self._batch_marker: tuple[int, int, int, int] | None = None
        #: Atomic batches found cut short at open and dropped (for statistics and tests).
        self.recovered_partial_batches = 0
        #: Opened from the index snapshot of a clean close (no block was scanned).
        self.opened_from_index = False
        #: The stream layer's own state at a clean close, kept in the index snapshot (the Msg-Id
        #: window, so a restart does not rebuild it from every recent message's headers):
        #: `save_extra()` gives it at close, `snapshot_extra` holds what the open loaded (None
        #: after a scan: the snapshot was not used, or there was none).
        self.save_extra: Callable[[], bytes] | None = None
        self.snapshot_extra: bytes | None = None
        #: read-ahead of forward reads: (block, start offset, end offset, bytes), and the last read
        self._ahead: tuple[_Block, int, int, bytes] | None = None
        self._last_block: _Block | None = None
        self._last_off = 0
        #: compressed copies waiting for the fsync thread's rename (tmp, block path), the block
        #: paths it renamed that the loop has not applied yet, and the loop to tell
        self._renames: list[tuple[str, str]] = []
        self._sealed: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._no_codec_logged = False
        #: write once (module docstring): runs of messages stored against one reference file
        #: (first sequence, file; file 0 = stored whole), live messages per file, open files
        self._refs_dir = self.directory / "refs"
        self._ref_runs = array("q")
        self._ref_files = array("I")
        self._ref_live: dict[int, int] = {}
        self._ref_fds: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._ref_ahead: tuple[int, int, bytes] | None = None
        self._ref_current = 0
        self._ref_next = 1
        #: counting starts once the index is complete (`_open_refs`): removals while loading or
        #: scanning are counted by `_rebuild_ref_counts`, never against a half-built count
        self._ref_ready = False
        #: (seq, file, offset, length): the next message stored is at `offset` of `file` (`set_ref`)
        self._ref_hint: tuple[int, int, int, int] | None = None
        if not self._load_index():
            if self._recover():
                self._reset_for_replay()
                self._recover()
        self._open_refs()

    # ------------------------------------------------------------------ blocks
    @property
    def _active(self) -> _Block:
        return self._blocks[-1]

    def _new_block(self, base_seq: int, base_ts: int) -> _Block:
        if self._blocks:
            sealed = self._active
            self._flush_block(sealed)
            if sealed.fd >= 0 and sealed.sealing is None and self._compressing():
                self._seal(sealed)
        path = str(self._msgs_dir / _block_name(base_seq, base_ts))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        block = _Block(path, fd, base_seq, base_ts, 0)
        self._blocks.append(block)
        self._bases.append(base_seq)
        with self._lock:
            self._dirty_dirs.add(str(self._msgs_dir))
        # every block opens with the stream's floor and last_seq (restores them if all else is gone)
        self._floor_dirty = False
        block.size += codec.encode_state(block.buf, self._first, self._last, self._last_ts)
        return block

    def _writable_block(self, seq: int, ts: int) -> _Block:
        """The active block, or a new one when there is none yet, it is full or compressed (the
        newest block after a crash that came between a rotation and the new block's first write)."""
        if not self._blocks or self._blocks[-1].size >= self.block_size or self._blocks[-1].fd < 0:
            return self._new_block(seq, ts)
        return self._blocks[-1]

    def _block_of(self, seq: int) -> _Block:
        return self._blocks[bisect.bisect_right(self._bases, seq) - 1]

    def _flush_block(self, block: _Block) -> None:
        if block.buf:
            _write_all(block.fd, block.buf, block.flushed)
            block.flushed += len(block.buf)
            block.buf = bytearray()
            with self._lock:
                self._dirty[block.path] = (block.fd, self._flushed_getter(block))

    @staticmethod
    def _flushed_getter(block: _Block) -> Callable[[], int]:
        return lambda: block.flushed

    def _append(self, encode: Callable[..., int], *args: object) -> None:
        if not self._blocks or self._blocks[-1].fd < 0:  # a tombstone/state before any message: base ts = now
            self._new_block(self._last + 1, self._last_ts or time.time_ns())
        block = self._blocks[-1]
        block.size += encode(block.buf, *args)
        if self.sync_policy == "always":
            self._flush_block(block)
            self._request_sync(None)
        elif len(block.buf) >= _FLUSH_AT:
            self._flush_block(block)

    def _reap_blocks(self) -> None:
        """Delete blocks without live messages whose tombstones no other block needs."""
        changed = True
        while changed:
            changed = False
            for k in range(len(self._blocks) - 1):  # never the active (last) block
                block = self._blocks[k]
                if block.live:
                    continue
                if block.tomb_max >= 0 and self._tombstones_needed(k):
                    continue
                self._flush_block(block)
                self._forget_block(block)
                with self._lock:
                    self._dirty_dirs.add(str(self._msgs_dir))
                del self._blocks[k]
                del self._bases[k]
                changed = True
                break

    def _tombstones_needed(self, k: int) -> bool:
        lo, hi = self._blocks[k].tomb_min, self._blocks[k].tomb_max
        for j, other in enumerate(self._blocks):
            if j == k:
                continue
            end = self._bases[j + 1] - 1 if j + 1 < len(self._bases) else self._last
            if other.base_seq <= hi and lo <= end:
                return True
        return False

    # ------------------------------------------------------------------ IndexedStore hooks
    def _write_msg(self, seq: int, ts: int, subject: bytes, hdr: bytes, data: bytes, ttl_ns: int) -> None:
        # `_writable_block` + `_append`, inlined: this runs once per stored message.
        blocks = self._blocks
        if not blocks or blocks[-1].size >= self.block_size or blocks[-1].fd < 0:
            block = self._new_block(seq, ts)
        else:
            block = blocks[-1]
        self._off.append(block.size)
        block.live += 1
        buf = block.buf
        hint = self._ref_hint
        if hint is not None and hint[0] == seq and hint[3] == len(data) and not ttl_ns:
            fid = hint[1]
            block.size += codec.encode_msg_ref(
                buf, block.base_seq, block.base_ts, seq, ts, subject, hdr, len(data), fid, hint[2], zlib.crc32(data)
            )
            self._ref_stored(seq, fid)
        else:
            if self._ref_runs and self._ref_files[-1]:
                self._ref_runs.append(seq)  # a run of messages stored whole starts here
                self._ref_files.append(0)
            block.size += codec.encode_msg(buf, block.base_seq, block.base_ts, seq, ts, subject, hdr, data, ttl_ns)
        self._ref_hint = None
        if self.sync_policy == "always":
            self._flush_block(block)
            self._request_sync(None)
        elif len(buf) >= _FLUSH_AT:
            self._flush_block(block)

    def _write_skip(self, seq: int, ts: int) -> None:
        block = self._writable_block(seq, ts)
        self._off.append(0)
        self._append(codec.encode_skip, block.base_seq, block.base_ts, seq, ts)

    def _read_raw(self, block: _Block, offset: int, length: int) -> bytes:
        if block.fd < 0:
            return self._plain(block)[offset : offset + length]
        if offset + length > block.flushed and offset < block.size:
            if offset >= block.flushed:
                start = offset - block.flushed
                return bytes(block.buf[start : start + length])
            self._flush_block(block)
        return os.pread(block.fd, length, offset)

    def _read(self, seq: int) -> StoredMsg | None:
        i = seq - self._base
        block = self._block_of(seq)
        offset = self._off[i]
        # the accounted size (30/34 + lengths) is never below the record length minus 64 bytes of
        # worst-case varint framing, so one pread of size + slack holds the whole record
        want = self._size[i] + _READ_SLACK
        ahead = self._ahead
        if ahead is not None and ahead[0] is block and ahead[1] <= offset and offset + want <= ahead[2]:
            raw, pos = ahead[3], offset - ahead[1]
        elif block.fd < 0:
            raw, pos = self._plain(block), offset
        elif (
            block is self._last_block and 0 < offset - self._last_off <= _READ_AHEAD and offset + want <= block.flushed
        ):
            # reading forward (a consumer, a mirror, a replay): one pread for the next records
            end = min(block.flushed, offset + _READ_AHEAD)
            raw, pos = os.pread(block.fd, end - offset, offset), 0
            self._ahead = (block, offset, offset + len(raw), raw)
        else:
            raw, pos = self._read_raw(block, offset, want), 0
        self._last_block, self._last_off = block, offset
        try:
            kind, rseq, ts, _aux, subject, hdr, data, _n = codec.decode(raw, pos, block.base_seq, block.base_ts)
        except codec.CorruptRecordError:
            kind, rseq, ts, subject, hdr, data = -1, -1, 0, b"", b"", b""  # never served: the check below
        if kind == codec.KIND_MSG_REF and rseq == seq:
            resolved = self._resolve_ref(data)
            if resolved is None:
                self._log(
                    f"filestore {self.directory}: the data of message {seq} is missing or corrupt "
                    f"({block.path}@{offset} -> {self._refs_dir}); not served"
                )
                return None
            return StoredMsg(subject, seq, ts, hdr, resolved)
        if kind not in (codec.KIND_MSG, codec.KIND_MSG_TTL) or rseq != seq:
            self._log(
                f"filestore {self.directory}: message {seq} is corrupt on disk ({block.path}@{offset}); not served"
            )
            return None
        return StoredMsg(subject, seq, ts, hdr, data)

    # ------------------------------------------------------------------ write once (module docstring)
    def link_ref(self, path: str) -> int:
        """Take a Raft log segment as a reference file: hard-link it into `refs/` (durable before
        this returns, so no record can point into a file a crash would lose) and return its number
        for `set_ref`. The previous file stops being the one being filled."""
        self._check_open()
        if not self._refs_dir.exists():
            self._refs_dir.mkdir()
            fsync_dir(str(self.directory))
        fid = self._ref_next
        self._ref_next += 1
        target = self._ref_path(fid)
        try:
            os.unlink(target)  # a leftover no record refers to (numbers only grow while open)
        except FileNotFoundError:
            pass
        os.link(path, target)
        fsync_dir(str(self._refs_dir))
        previous = self._ref_current
        self._ref_current = fid
        self._ref_live.setdefault(fid, 0)
        if previous and not self._ref_live.get(previous):
            self._ref_release(previous)
        return fid

    def has_ref(self, fid: int) -> bool:
        """Is reference file `fid` still there to be pointed into?"""
        return fid in self._ref_live

    def set_ref(self, seq: int, fid: int, offset: int, length: int) -> None:
        """The next message stored, if it gets sequence `seq` and has `length` bytes of data, is
        stored as a reference to `offset` in file `fid` (see the module docstring)."""
        self._ref_hint = (seq, fid, offset, length) if fid in self._ref_live else None

    def clear_ref(self) -> None:
        self._ref_hint = None

    def _ref_path(self, fid: int) -> str:
        return str(self._refs_dir / f"{fid:08x}.seg")

    def _ref_stored(self, seq: int, fid: int) -> None:
        if not self._ref_runs or self._ref_files[-1] != fid:
            self._ref_runs.append(seq)
            self._ref_files.append(fid)
        self._ref_live[fid] = self._ref_live.get(fid, 0) + 1

    def _ref_removed(self, seq: int) -> None:
        if not self._ref_ready:
            return
        k = bisect.bisect_right(self._ref_runs, seq) - 1
        if k < 0:
            return
        fid = self._ref_files[k]
        if not fid:
            return
        live = self._ref_live.get(fid, 0) - 1
        self._ref_live[fid] = live
        if live <= 0 and fid != self._ref_current:
            self._ref_release(fid)

    def _ref_release(self, fid: int) -> None:
        """No stored message refers to file `fid` any more: close and unlink it."""
        self._ref_live.pop(fid, None)
        fd = self._ref_fds.pop(fid, None)
        if fd is not None:
            os.close(fd)
        if self._ref_ahead is not None and self._ref_ahead[0] == fid:
            self._ref_ahead = None
        try:
            os.unlink(self._ref_path(fid))
        except FileNotFoundError:
            pass

    def _resolve_ref(self, ref: bytes) -> bytes | None:
        try:
            length, fid, offset, crc = codec.decode_ref(ref)
        except ValueError:
            return None
        ahead = self._ref_ahead
        if ahead is not None and ahead[0] == fid and ahead[1] <= offset and offset + length <= ahead[1] + len(ahead[2]):
            start = offset - ahead[1]
            data = ahead[2][start : start + length]
        else:
            fd = self._ref_fds.get(fid)
            try:
                if fd is None:
                    fd = os.open(self._ref_path(fid), os.O_RDONLY)
                    self._ref_fds[fid] = fd
                    if len(self._ref_fds) > _REF_FDS:
                        os.close(self._ref_fds.popitem(last=False)[1])
                else:
                    self._ref_fds.move_to_end(fid)
                chunk = os.pread(fd, max(length, _READ_AHEAD), offset)
            except OSError:
                return None
            self._ref_ahead = (fid, offset, chunk)
            data = chunk[:length]
        if len(data) != length or zlib.crc32(data) != crc:
            return None
        return data

    def _rebuild_ref_counts(self) -> None:
        """Live messages per reference file from the runs and the index (after a load or a scan)."""
        live: dict[int, int] = {}
        runs, files = self._ref_runs, self._ref_files
        base, end = self._base, self._last + 1
        sids = self._sid
        keep = 0
        for k in range(len(runs)):
            lo = max(runs[k], base)
            hi = min(runs[k + 1] if k + 1 < len(runs) else end, end)
            fid = files[k]
            if hi <= base:
                keep = k + 1  # wholly below the index: dropped below
                continue
            if fid and hi > lo:
                count = (hi - lo) - sids[lo - base : hi - base].count(DELETED)
                if count:
                    live[fid] = live.get(fid, 0) + count
        if keep:
            del runs[:keep], files[:keep]
        self._ref_live = live
        self._ref_ready = True

    def _open_refs(self) -> None:
        """After the index is loaded or rebuilt: count each file's live messages, unlink the files
        nothing refers to, continue numbering after the highest."""
        self._rebuild_ref_counts()
        if not self._refs_dir.exists():
            return
        highest = 0
        for name in os.listdir(self._refs_dir):
            m = _REF_NAME.match(name)
            if m is None:
                continue
            fid = int(m[1], 16)
            highest = max(highest, fid)
            if not self._ref_live.get(fid):
                self._ref_live.pop(fid, None)
                os.unlink(self._refs_dir / name)
        missing = [fid for fid in self._ref_live if not os.path.exists(self._ref_path(fid))]
        for fid in missing:
            self._log(
                f"filestore {self.directory}: reference file {fid:08x} is missing; "
                f"the {self._ref_live[fid]} messages stored against it will not be served"
            )
        self._ref_next = highest + 1

    def headers_since(self, cutoff: int) -> list[tuple[int, int, bytes]]:
        """See `IndexedStore.headers_since`: here each block of the range is read once and scanned
        by the codec (a restart rebuilding the Msg-Id window of a million recent messages must not
        read and decode them one by one)."""
        self._check_open()
        first = self._first_since(cutoff) if self._msgs else 0
        out: list[tuple[int, int, bytes]] = []
        if not first:
            return out
        F = codec.FIELDS
        kind_msg, kind_ttl, kind_ref = codec.KIND_MSG, codec.KIND_MSG_TTL, codec.KIND_MSG_REF
        k = bisect.bisect_right(self._bases, first) - 1
        for block in self._blocks[max(k, 0) :]:
            if block.buf:
                self._flush_block(block)
            data = self._block_bytes(block)
            entries = codec.scan(data, block.base_seq, block.base_ts)[0]
            header_lens = entries[codec.F_HDR_LEN :: F]
            if header_lens.count(0) == len(header_lens):
                continue  # no record of the block has headers (checked in C, not record by record)
            for k in [k for k, hl in enumerate(header_lens) if hl]:
                r = k * F
                kind = entries[r]
                if kind != kind_msg and kind != kind_ttl and kind != kind_ref:
                    continue
                hl = entries[r + 8]
                seq = entries[r + 3]
                if not hl or seq < first or not self._live(seq):
                    continue
                end = entries[r + 1] + entries[r + 2] - 4 - entries[r + 9]
                if self._off[seq - self._base] != entries[r + 1]:
                    continue  # an older copy of the record (never served)
                out.append((seq, entries[r + 4], bytes(data[end - hl : end])))
        return out

    def _on_remove(self, seq: int, front: bool, erase: bool) -> None:
        block = self._block_of(seq)
        block.live -= 1
        if self._recovering:
            return
        if self._ref_runs:
            self._ref_removed(seq)
        if erase:
            offset = self._off[seq - self._base]
            raw = self._read_raw(block, offset, self._size[seq - self._base] + _READ_SLACK)
            try:
                rec_len = codec.decode(raw, 0, block.base_seq, block.base_ts)[7]
            except codec.CorruptRecordError:
                rec_len = 0
            if rec_len:
                erased = codec.erased_record(rec_len, block.base_seq, seq)
                self._ahead = None
                if block.fd < 0:
                    plain = bytearray(self._plain(block))
                    plain[offset : offset + rec_len] = erased
                    self._rewrite_plain(block, bytes(plain))
                elif offset >= block.flushed:
                    start = offset - block.flushed
                    block.buf[start : start + rec_len] = erased
                else:
                    os.pwrite(block.fd, erased, offset)
                    block.touched = True  # a compressed copy taken before must be taken again
                    with self._lock:
                        self._dirty[block.path] = (block.fd, self._flushed_getter(block))
        if front and not erase:
            self._floor_dirty = True
        else:
            self._write_tombstone(seq)
        if block.live == 0 and block is not self._blocks[-1]:
            self._reap_blocks()

    def _write_tombstone(self, seq: int) -> None:
        self._append(codec.encode_tombstone, seq)
        self._blocks[-1].note_tombstone(seq)

    def _write_floor(self) -> None:
        self._floor_dirty = False
        self._append(codec.encode_state, self._first, self._last, self._last_ts)

    def _on_purge_all(self) -> None:
        for block in self._blocks:
            block.live = 0
        if self._ref_runs and self._ref_ready:
            for fid in [f for f in self._ref_live if f != self._ref_current]:
                self._ref_release(fid)
            if self._ref_current in self._ref_live:
                self._ref_live[self._ref_current] = 0
            del self._ref_runs[:], self._ref_files[:]

    def _on_bulk_front(self, new_first: int, moved_last: bool) -> None:
        if self._recovering:
            return
        self._write_floor()
        self._reap_blocks()

    def _on_compact(self, count: int) -> None:
        del self._off[:count]  # (reference runs below the index are dropped at the next open)

    # ------------------------------------------------------------------ atomic batches
    def begin_batch(self, first_seq: int, last_seq: int) -> None:
        """A BLOB record before the batch's records: `jsedge-batch first last` (see `_recover`)."""
        self._append(codec.encode_blob, b"%s %d %d" % (_BATCH_MARK, first_seq, last_seq))

    def end_batch(self, complete: bool = True) -> None:
        if not complete:  # what the failed batch stored stays: its marker must not drop it
            self._append(codec.encode_blob, _BATCH_CANCEL)

    def _drop_partial_batch(self) -> None:
        """The last atomic batch's marker promises sequences the blocks do not hold: cut every
        block back to the marker (so the batch, and only the batch, is gone) for a second replay."""
        assert self._batch_marker is not None
        first, last, index, offset = self._batch_marker
        self.recovered_partial_batches += 1
        self._log(
            f"filestore {self.directory}: atomic batch of sequences {first}-{last} was cut short "
            f"(the stream ends at {self._last}); dropping its {max(0, self._last - first + 1)} stored messages"
        )
        for k, block in enumerate(self._blocks):
            if k > index:
                self._forget_block(block)
                continue
            if k == index:
                if block.fd < 0:
                    self._rewrite_plain(block, self._plain(block)[:offset])
                else:
                    os.ftruncate(block.fd, offset)
                    os.fsync(block.fd)
                    journal_file(block.path, offset)
            if block.fd >= 0:
                os.close(block.fd)
        fsync_dir(str(self._msgs_dir))

    def _reset_for_replay(self) -> None:
        IndexedStore.__init__(self, self.config)
        self._ahead = self._last_block = None
        self._off = array("I")
        self._blocks = []
        self._bases = []
        self._floor_dirty = False
        self._batch_marker = None
        del self._ref_runs[:], self._ref_files[:]
        with self._lock:
            self._dirty.clear()

    # ------------------------------------------------------------------ compression
    def _compressing(self) -> bool:
        if self.config.compression != "s2" or self._recovering:
            return False
        if _snappy() is None:
            if not self._no_codec_logged:
                self._no_codec_logged = True
                self._log(
                    f"filestore {self.directory}: s2 compression asked, cramjam is not installed: blocks stay plain"
                )
            return False
        return True

    def _seal(self, block: _Block) -> None:
        """Write the compressed copy of a sealed block; the fsync thread renames it over the
        block once it is durable (`_renamed`), and the loop then drops the plain fd (`_apply_sealed`)."""
        tmp = block.path + ".tmp"
        try:
            data = compress_block(os.pread(block.fd, block.flushed, 0) if block.flushed else b"")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, data, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            self._log(f"filestore {block.path}: not compressed ({exc})")
            return
        block.sealing = tmp
        block.touched = False
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        with self._lock:
            self._renames.append((tmp, block.path))
        SYNCER.request(self)

    def _renamed(self, paths: list[str]) -> None:
        """Called by the fsync thread: these blocks' compressed copies replaced them on disk."""
        with self._lock:
            self._sealed.extend(paths)
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._apply_sealed)
            except RuntimeError:  # loop closed: the next open finds the compressed files
                pass

    def _apply_sealed(self) -> None:
        with self._lock:
            if not self._sealed:
                return
            done = set(self._sealed)
            self._sealed = []
        if self._closed:
            return
        for block in self._blocks:
            if block.sealing is None or block.path not in done:
                continue
            block.sealing = None
            if block.touched:  # erased after its copy was taken: take it again
                self._seal(block)
                continue
            self._close_block_fd(block)  # the plain copy's inode goes with it
            block.disk = os.stat(block.path).st_size
            _cache_drop(block.path)

    def _plain(self, block: _Block) -> bytes:
        """The plain bytes of a compressed block (cached; b"" when the file is damaged: every
        read of it then fails its record check and is logged, as a corrupt record would)."""
        with _CACHE_LOCK:
            plain = _PLAIN_CACHE.get(block.path)
            if plain is not None:
                _PLAIN_CACHE.move_to_end(block.path)
                return plain
        try:
            with open(block.path, "rb") as f:
                plain = decompress_block(f.read())
        except (OSError, ValueError) as exc:
            self._log(f"filestore {block.path}: compressed block unreadable ({exc})")
            plain = b""
        _cache_put(block.path, plain)
        return plain

    def _block_bytes(self, block: _Block) -> bytes:
        if block.fd < 0:
            return self._plain(block)
        return os.pread(block.fd, block.flushed, 0) if block.flushed else b""

    def _rewrite_plain(self, block: _Block, plain: bytes) -> None:
        """Replace a compressed block by plain bytes, durably, now (erase; recovery cutting back
        a partial batch)."""
        tmp = block.path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        _write_all(fd, plain, 0)
        os.fsync(fd)
        os.rename(tmp, block.path)
        fsync_dir(os.path.dirname(block.path))
        journal_file(block.path, len(plain))
        _cache_drop(block.path)
        block.fd = fd
        block.size = block.flushed = block.disk = len(plain)

    def _close_block_fd(self, block: _Block) -> None:
        """Close a block's fd once the fsync thread can no longer take it into a job (it dups the
        fds of `_dirty` under the lock: a closed, maybe reused, fd number must not be there)."""
        with self._lock:
            self._dirty.pop(block.path, None)
        if block.fd >= 0:
            os.close(block.fd)
            block.fd = -1

    def _forget_block(self, block: _Block) -> None:
        """Close and unlink a block's file (and a compressed copy waiting for its rename: if the
        fsync thread renames first, the unlink after removes it; if not, its rename finds nothing)."""
        if block.sealing is not None:
            try:
                os.unlink(block.sealing)
            except FileNotFoundError:
                pass
            block.sealing = None
        self._close_block_fd(block)
        os.unlink(block.path)
        self._ahead = self._last_block = None
        _cache_drop(block.path)

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> bool:
        """Replay every block; True when a cut-short atomic batch was dropped and the caller must
        replay again from a fresh index."""
        found = []
        for name in os.listdir(self._msgs_dir):
            parsed = _parse_block_name(name)
            if parsed is None:
                if name.endswith(".tmp"):
                    try:
                        os.unlink(self._msgs_dir / name)
                    except FileNotFoundError:
                        pass
                continue
            found.append((parsed[0], parsed[1], name))
        found.sort()
        self._recovering = True
        try:
            for base_seq, base_ts, name in found:
                self._recover_block(str(self._msgs_dir / name), base_seq, base_ts)
        finally:
            self._recovering = False
        marker = self._batch_marker
        if marker is not None and self._last < marker[1]:
            self._drop_partial_batch()
            return True
        # limits may have changed, and front removals since the last floor record are redone here
        self.update_config(self.config)
        self._reap_blocks()
        return False

    def _recover_block(self, path: str, base_seq: int, base_ts: int) -> None:
        fd = os.open(path, os.O_RDWR)
        length = disk = os.fstat(fd).st_size
        data = os.pread(fd, length, 0) if length else b""
        if data[:4] == _Z_MAGIC:
            os.close(fd)
            fd = -1
            try:
                data = decompress_block(data)
            except ValueError as exc:
                self.recovered_corrupt += 1
                self._log(f"filestore {path}: compressed block unreadable ({exc}); its records are lost")
                data = b""
            length = len(data)
            _cache_put(path, data)
        entries, corrupt, valid_end = codec.scan(data, base_seq, base_ts)
        for start, end in corrupt:
            if end == length and start == valid_end:
                self.recovered_truncated += 1
                self._log(f"filestore {path}: truncating {length - start} bytes of torn/corrupt tail at {start}")
            else:
                self.recovered_corrupt += 1
                self._log(f"filestore {path}: skipping corrupt bytes [{start}, {end})")
        if valid_end < length and fd >= 0:
            os.ftruncate(fd, valid_end)
            os.fsync(fd)
            journal_file(path, valid_end)
        block = _Block(path, fd, base_seq, base_ts, valid_end if fd >= 0 else length)
        block.disk = disk
        self._blocks.append(block)
        self._bases.append(base_seq)
        self._replay(block, data, entries)

    def _replay(self, block: _Block, data: bytes, entries: array[int]) -> None:
        """Apply one block's records in order (hot loop of a restart: locals bound, no calls for MSG)."""
        F = codec.FIELDS
        subjects = self._subjects
        intern = self._intern
        sids, tss, sizes, offs = self._sid, self._ts, self._size, self._off
        never = self._never
        ttl_deadline = self._ttl_deadline
        ttl_heap = self._ttl_heap
        kind_msg, kind_ttl, kind_ref = codec.KIND_MSG, codec.KIND_MSG_TTL, codec.KIND_MSG_REF
        runs, run_files = self._ref_runs, self._ref_files
        for r in range(0, len(entries), F):
            kind = entries[r]
            seq = entries[r + 3]
            if kind == kind_msg or kind == kind_ttl or kind == kind_ref:
                if seq <= self._last:
                    self._log(f"filestore {block.path}: out-of-order message {seq} ignored")
                    continue
                self._gap_to(seq)
                so, sl, hl, dl = entries[r + 6], entries[r + 7], entries[r + 8], entries[r + 9]
                if kind == kind_ref:
                    end = entries[r + 1] + entries[r + 2] - 4
                    try:
                        fid = codec.decode_ref(bytes(data[end - dl : end]))[1]
                    except ValueError:
                        fid = 0
                    if not runs or run_files[-1] != fid:
                        runs.append(seq)
                        run_files.append(fid)
                    dl = entries[r + 5]  # the referenced length is what the message accounts
                elif runs and run_files[-1]:
                    runs.append(seq)
                    run_files.append(0)
                subject = data[so : so + sl]
                ss = subjects.get(subject)
                if ss is None:
                    ss = intern(subject)
                ts = entries[r + 4]
                size = (34 + sl + hl + dl) if hl else (30 + sl + dl)
                sids.append(ss[0])
                tss.append(ts)
                sizes.append(size)
                offs.append(entries[r + 1])
                if ss[1] == 0:
                    ss[2] = seq
                ss[1] += 1
                ss[3] = seq
                if self._msgs == 0:
                    self._first = seq
                self._msgs += 1
                self._bytes += size
                self._last = seq
                self._last_ts = ts
                block.live += 1
                if kind == kind_ttl:
                    ttl = entries[r + 5]
                    if ttl > 0:
                        ttl_deadline[seq] = ts + ttl
                        ttl_heap.append((ts + ttl, seq))
                    elif ttl < 0:
                        never.add(seq)
            elif kind == codec.KIND_TOMBSTONE:
                block.note_tombstone(seq)
                if self._live(seq):
                    self._remove(seq, notify=False)
            elif kind == codec.KIND_SKIP or kind == codec.KIND_ERASED:
                if seq > self._last:
                    self._gap_to(seq + 1)
                    if kind == codec.KIND_SKIP:
                        self._last_ts = entries[r + 4]
            elif kind == codec.KIND_STATE:
                first, last, last_ts = seq, entries[r + 5], entries[r + 4]
                if last > self._last:
                    self._gap_to(last + 1)
                    self._last_ts = last_ts
                elif last == self._last and self._last_ts == 0:
                    self._last_ts = last_ts
                while self._msgs and self._first < first:
                    self._remove(self._first, notify=False)
                if not self._msgs and first > self._last + 1:
                    self._reset_index(first)
                self._used = True
            elif kind == codec.KIND_BLOB:
                end = entries[r + 1] + entries[r + 2] - 4
                self._replay_blob(bytes(data[end - entries[r + 9] : end]), entries[r + 1])
        if entries:
            self._used = True
        heapq.heapify(ttl_heap)

    def _replay_blob(self, body: bytes, offset: int) -> None:
        if body == _BATCH_CANCEL:
            self._batch_marker = None
        elif body.startswith(_BATCH_MARK + b" "):
            try:
                _, first, last = body.split(b" ")
                self._batch_marker = (int(first), int(last), len(self._blocks) - 1, offset)
            except ValueError:
                self._log(f"filestore {self.directory}: unreadable batch marker {body!r} ignored")

    def _gap_to(self, next_seq: int) -> None:
        """Make the index end just below `next_seq` with deleted slots (sequences never seen alive)."""
        missing = next_seq - 1 - self._last
        if missing <= 0:
            return
        self._used = True
        if not self._msgs:
            self._reset_index(next_seq)
            return
        self._sid.extend(array("I", [DELETED]) * missing)
        self._ts.extend(array("q", [0]) * missing)
        self._size.extend(array("I", [0]) * missing)
        self._off.extend(array("I", [0]) * missing)
        self._last = next_seq - 1

    # ------------------------------------------------------------------ durability
    def _flush_all(self) -> None:
        if self._sealed:
            self._apply_sealed()
        if self._floor_dirty:
            self._write_floor()
        if self._blocks:
            self._flush_block(self._blocks[-1])
        for consumer in self._consumers.values():
            consumer._flush()

    def take_sync_job(self) -> SyncJob:
        """Called by the fsync thread: everything written so far, and who waits for it."""
        with self._lock:
            job = SyncJob(on_synced=self._on_synced)
            for path, (fd, length) in self._dirty.items():
                try:
                    job.files.append((path, os.dup(fd), length()))
                except OSError:  # defensive: every close pops its file from `_dirty` first
                    continue
            job.dirs = sorted(self._dirty_dirs)
            job.waiters = self._waiters
            job.unlink_after = self._unlink_after
            if self._renames:
                job.renames = self._renames
                job.on_renamed = self._renamed
                self._renames = []
            self._dirty = {}
            self._dirty_dirs = set()
            self._waiters = []
            self._unlink_after = []
            self._inflight += 1
            return job

    def sync_done(self) -> None:
        with self._lock:
            self._inflight -= 1
            self._idle.notify_all()

    def _request_sync(self, waiter: asyncio.Future[None] | None) -> None:
        with self._lock:
            if waiter is not None:
                self._waiters.append(waiter)
        SYNCER.request(self)

    def sync(self) -> Awaitable[None]:
        self._check_open()
        self._flush_all()
        if self.sync_policy == "interval":
            self._arm_interval()
            return resolved()
        with self._lock:
            idle = not self._dirty and not self._dirty_dirs and not self._inflight and not self._waiters
        if idle:
            return resolved()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # no loop (tools, sync tests): do the fsync here
            run_job(self.take_sync_job())
            self.sync_done()
            return resolved()
        fut: asyncio.Future[None] = loop.create_future()
        self._request_sync(fut)
        return fut

    def _arm_interval(self) -> None:
        if self._interval_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._interval_handle = loop.call_later(self.sync_interval, self._interval_tick)

    def _interval_tick(self) -> None:
        self._interval_handle = None
        if self._closed:
            return
        self._flush_all()
        self._request_sync(None)
        self._arm_interval()

    # ------------------------------------------------------------------ metadata, consumers, lifecycle
    def save_meta(self, data: bytes) -> None:
        self._check_open()
        write_atomic(self.directory / "meta.bin", bytes(data))

    def load_meta(self) -> bytes | None:
        try:
            return (self.directory / "meta.bin").read_bytes()
        except FileNotFoundError:
            return None

    def consumer_store(self, name: str) -> FileConsumerStore:
        self._check_open()
        store = self._consumers.get(name)
        if store is None or store.deleted:
            store = self._consumers[name] = FileConsumerStore(self, name)
        return store

    def _mark_dirty(self, path: str, fd: int, length: Callable[[], int], directory: str | None = None) -> None:
        with self._lock:
            self._dirty[path] = (fd, length)
            if directory is not None:
                self._dirty_dirs.add(directory)
        if self.sync_policy == "always":
            self._request_sync(None)

    def close(self) -> None:
        """Write what is buffered and fsync it (shutdown path: a synchronous fsync is acceptable),
        then the index snapshot that lets the next open skip reading the blocks."""
        if self._closed:
            return
        self._flush_all()
        for _round in range(3):  # a block erased while its compressed copy waited is copied again
            run_job(self.take_sync_job())
            self.sync_done()
            with self._lock:  # a job the fsync thread took before ours may hold renames: let it finish
                self._idle.wait_for(lambda: not self._inflight, timeout=60)
            self._apply_sealed()
            with self._lock:
                if not self._renames:
                    break
        if self._interval_handle is not None:
            self._interval_handle.cancel()
        for consumer in self._consumers.values():
            consumer._close_fd()
        try:
            self._save_index()
        except OSError as exc:
            self._log(f"filestore {self.directory}: index snapshot not written ({exc})")
        for block in self._blocks:
            if block.fd >= 0:
                os.close(block.fd)
        self._close_refs()
        self._closed = True

    def _close_refs(self) -> None:
        for fd in self._ref_fds.values():
            os.close(fd)
        self._ref_fds.clear()
        self._ref_ahead = None

    # ------------------------------------------------------------------ index snapshot
    def _save_index(self) -> None:
        """`index.snap`: the whole in-memory index at a clean close, with each block's name, length
        and modification time, so the next open loads it instead of scanning every record (1 M messages: a
        second of reading and decoding). Written atomically after the blocks are fsynced."""
        if any(b.size != b.flushed or b.sealing is not None for b in self._blocks):
            return
        blocks = []
        for b in self._blocks:
            st = os.stat(b.path)
            blocks.append(
                (os.path.basename(b.path), b.size, st.st_size, st.st_mtime_ns, b.live, b.tomb_min, b.tomb_max, b.fd < 0)
            )
        state = {
            "v": _INDEX_VERSION,
            "base": self._base,
            "first": self._first,
            "last": self._last,
            "last_ts": self._last_ts,
            "msgs": self._msgs,
            "bytes": self._bytes,
            "used": self._used,
            "sid": self._sid.tobytes(),
            "ts": self._ts.tobytes(),
            "size": self._size.tobytes(),
            "off": self._off.tobytes(),
            "subjects": self._subjects,
            "sid_subject": self._sid_subject,
            "free_sids": self._free_sids,
            "ttl": self._ttl_deadline,
            "never": list(self._never),
            "blocks": blocks,
            "ref_runs": self._ref_runs.tobytes(),
            "ref_files": self._ref_files.tobytes(),
            "extra": self.save_extra() if self.save_extra is not None else None,
        }
        # zlib level 1: ~6 instead of 20 bytes a message on disk, 0.2 s per million at close
        payload = zlib.compress(marshal.dumps(state), 1)
        write_atomic(self.directory / _INDEX_FILE, _INDEX_MAGIC + struct.pack("<I", codec.crc32(payload)) + payload)

    def _load_index(self) -> bool:
        """Open from `index.snap` when it matches the blocks on disk exactly (names, lengths and
        modification times: no block is read, so a store of gigabytes on an SD card opens at once;
        a record damaged later is caught by its own CRC when read, and never served);
        it is removed first, so a crash later can never load a stale one. False: recover by
        scanning (no snapshot, or one that does not match: logged)."""
        path = self.directory / _INDEX_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return False
        os.unlink(path)
        fsync_dir(str(self.directory))
        try:
            state = self._check_index(raw)
        except (ValueError, EOFError, TypeError, KeyError) as exc:
            self._log(f"filestore {self.directory}: index snapshot not used ({exc}); scanning the blocks")
            return False
        fds: list[int] = []
        try:
            for name, _size, _disk, _mtime, _live, _lo, _hi, compressed in state["blocks"]:
                fds.append(-1 if compressed else os.open(self._msgs_dir / name, os.O_RDWR))
        except OSError as exc:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
            self._log(f"filestore {self.directory}: index snapshot not used ({exc}); scanning the blocks")
            return False
        for fd, (name, size, disk, _mtime, live, lo, hi, _compressed) in zip(fds, state["blocks"], strict=True):
            parsed = _parse_block_name(name)
            assert parsed is not None
            block = _Block(str(self._msgs_dir / name), fd, parsed[0], parsed[1], size)
            block.disk = disk
            block.live, block.tomb_min, block.tomb_max = live, lo, hi
            self._blocks.append(block)
            self._bases.append(parsed[0])
        self._base, self._first, self._last = state["base"], state["first"], state["last"]
        self._last_ts, self._msgs, self._bytes, self._used = (
            state["last_ts"],
            state["msgs"],
            state["bytes"],
            state["used"],
        )
        self._sid = array("I", state["sid"])
        self._ts = array("q", state["ts"])
        self._size = array("I", state["size"])
        self._off = array("I", state["off"])
        self._subjects = state["subjects"]
        self._sid_subject = state["sid_subject"]
        self._free_sids = state["free_sids"]
        self._ttl_deadline = state["ttl"]
        self._ttl_heap = [(deadline, seq) for seq, deadline in self._ttl_deadline.items()]
        heapq.heapify(self._ttl_heap)
        self._never = set(state["never"])
        self._ref_runs = array("q", state["ref_runs"])
        self._ref_files = array("I", state["ref_files"])
        self.snapshot_extra = state.get("extra")
        self.update_config(self.config)  # the limits may have changed since
        self._reap_blocks()
        self.opened_from_index = True
        if len(raw) > _TRIM_AFTER:
            del raw, state
            _return_freed_memory()
        return True

    def _check_index(self, raw: bytes) -> dict:  # type: ignore[type-arg]
        if not raw.startswith(_INDEX_MAGIC) or len(raw) < len(_INDEX_MAGIC) + 4:
            raise ValueError("not an index snapshot")
        (crc,) = struct.unpack_from("<I", raw, len(_INDEX_MAGIC))
        payload = raw[len(_INDEX_MAGIC) + 4 :]
        if codec.crc32(payload) != crc:
            raise ValueError("checksum mismatch")
        try:
            state = marshal.loads(zlib.decompress(payload))
        except zlib.error as exc:
            raise ValueError(f"unreadable ({exc})") from None
        if not isinstance(state, dict) or state.get("v") != _INDEX_VERSION:
            raise ValueError("unknown version")
        on_disk = {}
        for name in os.listdir(self._msgs_dir):
            if _parse_block_name(name) is not None:
                st = os.stat(self._msgs_dir / name)
                on_disk[name] = (st.st_size, st.st_mtime_ns)
        listed = {entry[0]: (entry[2], entry[3]) for entry in state["blocks"]}
        if on_disk != listed:
            raise ValueError("the blocks changed since it was written")
        counts = {
            len(state["sid"]) / self._sid.itemsize,
            len(state["ts"]) / self._ts.itemsize,
            len(state["size"]) / self._size.itemsize,
            len(state["off"]) / self._off.itemsize,
        }
        if len(counts) != 1:
            raise ValueError("the index arrays disagree")
        return state

    def delete(self) -> None:
        if not self._closed:
            for consumer in self._consumers.values():
                consumer._close_fd()
            for block in self._blocks:
                if block.fd >= 0:
                    os.close(block.fd)
                _cache_drop(block.path)
            self._close_refs()
            self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)

    def statistics(self) -> dict[str, int]:  # type: ignore[override]
        st = self.state()
        return {
            "messages": st.messages,
            "bytes": st.bytes,
            "blocks": len(self._blocks),
            "disk_bytes": self.disk_usage(),
            "recovered_corrupt": self.recovered_corrupt,
            "recovered_truncated": self.recovered_truncated,
        }

    def disk_usage(self) -> int:
        """Bytes of all block files (written or buffered; compressed ones as stored) and of the
        reference files (write once: shared with the Raft log while it still lists them)."""
        total = sum(b.disk if b.fd < 0 else b.size for b in self._blocks)
        for fid in self._ref_live:
            try:
                total += os.stat(self._ref_path(fid)).st_size
            except OSError:
                pass
        return total


# ---------------------------------------------------------------------------------------------
# consumer state log

_C_DELIVERED = 1
_C_ACK = 2
_C_SNAPSHOT = 3
_DELIVERED = struct.Struct("<BQQQq")
_ACK = struct.Struct("<BQQ")
_SNAP_HEAD = struct.Struct("<BQQQQII")
_SNAP_PENDING = struct.Struct("<QQq")
_SNAP_REDELIVERED = struct.Struct("<QQ")
_LOG_NAME = re.compile(r"^state\.(\d{8})\.log$")
_COMPACT_MIN = 64 * 1024


def encode_consumer_state(state: ConsumerState) -> bytes:
    out = bytearray(
        _SNAP_HEAD.pack(
            _C_SNAPSHOT,
            state.delivered.consumer_seq,
            state.delivered.stream_seq,
            state.ack_floor.consumer_seq,
            state.ack_floor.stream_seq,
            len(state.pending),
            len(state.redelivered),
        )
    )
    for sseq, pending in sorted(state.pending.items()):
        out += _SNAP_PENDING.pack(sseq, pending.consumer_seq, pending.timestamp)
    for sseq, count in sorted(state.redelivered.items()):
        out += _SNAP_REDELIVERED.pack(sseq, count)
    return bytes(out)


def decode_consumer_state(blob: bytes) -> ConsumerState:
    _, dc, ds, fc, fs, npend, nred = _SNAP_HEAD.unpack_from(blob, 0)
    state = ConsumerState(SequencePair(dc, ds), SequencePair(fc, fs))
    pos = _SNAP_HEAD.size
    for _ in range(npend):
        sseq, cseq, ts = _SNAP_PENDING.unpack_from(blob, pos)
        state.pending[sseq] = Pending(cseq, ts)
        pos += _SNAP_PENDING.size
    for _ in range(nred):
        sseq, count = _SNAP_REDELIVERED.unpack_from(blob, pos)
        state.redelivered[sseq] = count
        pos += _SNAP_REDELIVERED.size
    return state


class FileConsumerStore:
    """ConsumerStore of a file stream: config file + state log (see the module docstring)."""

    def __init__(self, stream: FileStore, name: str) -> None:
        self.stream = stream
        self.name = name
        self.deleted = False
        self.directory = stream._obs_dir / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self._buf = bytearray()
        self._fd = -1
        self._path = ""
        self._gen = 0
        self._size = 0
        self._flushed = 0
        self._snapshot_size = 0
        self._state = ConsumerState()
        self._open()

    def _open(self) -> None:
        gens = sorted(
            (int(m.group(1)) for m in (_LOG_NAME.match(n) for n in os.listdir(self.directory)) if m), reverse=True
        )
        loaded = False
        for gen in gens:
            path = self.directory / f"state.{gen:08d}.log"
            data = path.read_bytes()
            entries, corrupt, _ = codec.scan(data, 0, 0)
            if corrupt:
                self.stream._log(f"filestore consumer {path}: skipping corrupt bytes {corrupt}")
            state = None
            for r in range(0, len(entries), codec.FIELDS):
                if entries[r] != codec.KIND_BLOB:
                    continue
                end = entries[r + 1] + entries[r + 2] - 4
                blob = data[end - entries[r + 9] : end]
                if state is None:
                    if blob[:1] != bytes((_C_SNAPSHOT,)):
                        break
                    state = decode_consumer_state(blob)
                    continue
                self._apply(state, blob)
            if state is not None:
                self._state = state
                self._gen = gen
                self._path = str(path)  # unlinked once the next generation is durable
                loaded = True
                break
        for gen in gens:  # older (or unusable newer) generations
            if gen != self._gen or not loaded:
                os.unlink(self.directory / f"state.{gen:08d}.log")
        self._start_generation(self._gen + 1 if loaded else 1)

    @staticmethod
    def _apply(state: ConsumerState, blob: bytes) -> None:
        op = blob[0]
        if op == _C_DELIVERED:
            _, cseq, sseq, dc, ts = _DELIVERED.unpack(blob)
            apply_delivered(state, cseq, sseq, dc, ts)
        elif op == _C_ACK:
            _, cseq, sseq = _ACK.unpack(blob)
            apply_ack(state, cseq, sseq)
        elif op == _C_SNAPSHOT:
            new = decode_consumer_state(blob)
            state.delivered, state.ack_floor = new.delivered, new.ack_floor
            state.pending, state.redelivered = new.pending, new.redelivered

    def _start_generation(self, gen: int) -> None:
        old = self._path
        self._flush()
        if self._fd >= 0:
            # out of `_dirty` before the close: the fsync thread dups the fds listed there, and
            # a close (which releases the GIL) let it find a closed fd (it died of EBADF, and every
            # later sync of the stream waited forever). The new generation's snapshot holds the old
            # one's state; the old file is unlinked once the new one is durable.
            with self.stream._lock:
                self.stream._dirty.pop(old, None)
            os.close(self._fd)
        self._gen = gen
        self._path = str(self.directory / f"state.{gen:08d}.log")
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = self._flushed = 0
        snapshot = encode_consumer_state(self._state)
        self._snapshot_size = len(snapshot)
        self._size += codec.encode_blob(self._buf, snapshot)
        self._flush()
        self.stream._mark_dirty(self._path, self._fd, lambda: self._flushed, str(self.directory))
        if old:
            with self.stream._lock:
                self.stream._unlink_after.append(old)

    def _record(self, blob: bytes) -> None:
        self._size += codec.encode_blob(self._buf, blob)
        if self._size > _COMPACT_MIN and self._size > 8 * self._snapshot_size:
            self._start_generation(self._gen + 1)
        elif self.stream.sync_policy == "always":
            self._flush()

    def _flush(self) -> None:
        if self._buf and self._fd >= 0:
            _write_all(self._fd, self._buf, self._flushed)
            self._flushed += len(self._buf)
            self._buf = bytearray()
            self.stream._mark_dirty(self._path, self._fd, lambda: self._flushed)

    def _close_fd(self) -> None:
        """Close the log (its stream store's close fsynced it; `delete` drops it)."""
        if self._fd >= 0:
            self._flush()
            with self.stream._lock:
                self.stream._dirty.pop(self._path, None)
            os.close(self._fd)
            self._fd = -1

    def _check(self) -> None:
        if self.deleted:
            raise StoreClosedError(f"consumer store {self.name} deleted")
        self.stream._check_open()

    # ---- ConsumerStore
    def load(self) -> tuple[bytes | None, ConsumerState]:
        try:
            config = (self.directory / "config.json").read_bytes()
        except FileNotFoundError:
            config = None
        return config, copy_state(self._state)

    def save_config(self, config_json: bytes) -> None:
        self._check()
        write_atomic(self.directory / "config.json", bytes(config_json))

    def update(self, state: ConsumerState) -> None:
        self._check()
        self._state = copy_state(state)
        self._record(encode_consumer_state(self._state))

    def update_delivered(self, consumer_seq: int, stream_seq: int, delivery_count: int, ts: int) -> None:
        self._check()
        apply_delivered(self._state, consumer_seq, stream_seq, delivery_count, ts)
        self._record(_DELIVERED.pack(_C_DELIVERED, consumer_seq, stream_seq, delivery_count, ts))

    def update_acks(self, consumer_seq: int, stream_seq: int) -> None:
        self._check()
        apply_ack(self._state, consumer_seq, stream_seq)
        self._record(_ACK.pack(_C_ACK, consumer_seq, stream_seq))

    def state(self) -> ConsumerState:
        return copy_state(self._state)

    def sync_blocking(self) -> None:
        if self.deleted or self._fd < 0:
            return  # deleted, or closed with its stream store (which wrote and fsynced it)
        self._flush()
        os.fsync(self._fd)

    def delete(self) -> None:
        self._close_fd()
        self.deleted = True
        with self.stream._lock:
            for path in list(self.stream._dirty):
                if path.startswith(str(self.directory)):
                    del self.stream._dirty[path]
        shutil.rmtree(self.directory, ignore_errors=True)
