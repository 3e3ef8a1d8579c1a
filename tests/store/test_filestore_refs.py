"""Write once: the file store keeping a message's payload as a reference into another file (a
replicated stream's Raft log segment, hard-linked into the store; jsedge/store/filestore.py). The
same messages stored with and without references read back identically, survive a reopen from the
index snapshot and from a scan, and a reference file is unlinked once nothing refers to it. Real
files in tmp_path."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from jsedge.store.base import StoreConfig
from jsedge.store.filestore import FileStore

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000_000_000_000
HDR = b"NATS/1.0\r\nNats-Msg-Id: m%d\r\n\r\n"


class Segment:
    """A stand-in for a Raft log segment: payloads at known offsets between other bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: list[int] = []
        path.write_bytes(b"")

    def add(self, payload: bytes) -> int:
        with open(self.path, "ab") as f:
            f.write(b"<frame>")
            offset = f.tell()
            f.write(payload)
        return offset


def open_store(directory: Path, logs: list[str] | None = None, **config: object) -> FileStore:
    sink = logs.append if logs is not None else (lambda text: None)
    return FileStore(directory, StoreConfig(name="S", **config), block_size=4096, log=sink)  # type: ignore[arg-type]


def fill(store: FileStore, seg: Segment, fid: int, count: int, start: int = 0) -> list[bytes]:
    payloads = []
    for i in range(start, start + count):
        payload = os.urandom(40 + i % 50)
        offset = seg.add(payload)
        store.set_ref(store.last_seq() + 1, fid, offset, len(payload))
        store.store_msg(b"s.%d" % (i % 3), HDR % i if i % 2 else b"", payload, T0 + i)
        payloads.append(payload)
    return payloads


def contents(store: FileStore) -> list[tuple[int, bytes, bytes, bytes]]:
    out = []
    seq = 1
    while (msg := store.load_next_msg(b">", seq)) is not None:
        out.append((msg.seq, msg.subject, msg.hdr, msg.data))
        seq = msg.seq + 1
    return out


def test_referenced_messages_read_and_account_like_whole_ones(tmp_path: Path) -> None:
    seg = Segment(tmp_path / "wal.seg")
    refs = open_store(tmp_path / "refs")
    whole = open_store(tmp_path / "whole")
    fid = refs.link_ref(str(seg.path))
    payloads = fill(refs, seg, fid, 200)
    for i, payload in enumerate(payloads):
        whole.store_msg(b"s.%d" % (i % 3), HDR % i if i % 2 else b"", payload, T0 + i)
    assert contents(refs) == contents(whole)
    assert refs.state() == whole.state()
    # the blocks hold references, not payloads: far smaller than the whole store's
    size = sum(f.stat().st_size for f in (tmp_path / "refs" / "msgs").iterdir())
    assert size < sum(f.stat().st_size for f in (tmp_path / "whole" / "msgs").iterdir()) / 2
    # the Msg-Id window is rebuilt from headers of referenced messages too
    assert [seq for seq, _ts, _hdr in refs.headers_since(0)] == [seq for seq, _ts, _hdr in whole.headers_since(0)]
    refs.close()
    whole.close()


@pytest.mark.parametrize("how", ["index", "scan"])
def test_a_reopen_keeps_the_references_and_their_counts(tmp_path: Path, how: str) -> None:
    seg = Segment(tmp_path / "wal.seg")
    store = open_store(tmp_path / "s")
    fid = store.link_ref(str(seg.path))
    fill(store, seg, fid, 50)
    store.store_msg(b"whole", b"", b"x" * 100, T0 + 99)  # a run of whole messages after the references
    for seq in (3, 10, 11, 40):
        store.remove_msg(seq)
    before = contents(store)
    state = store.state()
    store.close()
    if how == "scan":
        os.unlink(tmp_path / "s" / "index.snap")
    store = open_store(tmp_path / "s")
    assert store.opened_from_index is (how == "index")
    assert contents(store) == before and store.state() == state
    assert store._ref_live == {fid: 46}
    # numbering continues after the files there (a new file never reuses a number)
    seg2 = Segment(tmp_path / "wal2.seg")
    assert store.link_ref(str(seg2.path)) == fid + 1
    store.close()


def test_a_file_nothing_refers_to_is_unlinked_but_not_the_one_being_filled(tmp_path: Path) -> None:
    first, second = Segment(tmp_path / "a.seg"), Segment(tmp_path / "b.seg")
    store = open_store(tmp_path / "s")
    refs = tmp_path / "s" / "refs"
    fid1 = store.link_ref(str(first.path))
    fill(store, first, fid1, 5)
    for seq in range(1, 6):
        store.remove_msg(seq)
    assert (refs / f"{fid1:08x}.seg").exists()  # still being filled: kept
    fid2 = store.link_ref(str(second.path))
    assert not (refs / f"{fid1:08x}.seg").exists()  # no longer filled, nothing refers to it
    fill(store, second, fid2, 5, start=5)
    fid3 = store.link_ref(str(first.path))
    assert (refs / f"{fid2:08x}.seg").exists()  # five messages still refer to it
    store.purge()
    assert not (refs / f"{fid2:08x}.seg").exists() and (refs / f"{fid3:08x}.seg").exists()
    store.close()
    store = open_store(tmp_path / "s")
    assert os.listdir(refs) == []  # nothing refers to the last one either: gone at open
    store.close()


def test_limits_release_the_oldest_files(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", max_msgs=10)
    refs = tmp_path / "s" / "refs"
    for k in range(5):
        seg = Segment(tmp_path / f"{k}.seg")
        fid = store.link_ref(str(seg.path))
        fill(store, seg, fid, 10, start=10 * k)
    assert sorted(os.listdir(refs)) == [f"{5:08x}.seg"]
    assert len(contents(store)) == 10
    store.close()


def test_a_corrupt_or_missing_payload_is_not_served(tmp_path: Path) -> None:
    seg = Segment(tmp_path / "wal.seg")
    logs: list[str] = []
    store = open_store(tmp_path / "s", logs)
    fid = store.link_ref(str(seg.path))
    payloads = fill(store, seg, fid, 20)
    raw = bytearray(seg.path.read_bytes())
    target = raw.find(payloads[7])
    raw[target + 3] ^= 0x40
    with open(seg.path, "r+b") as f:  # the same file as the store's link (one inode)
        f.write(raw)
    store._ref_ahead = None
    assert store.load_msg(8) is None
    assert any("message 8" in line and "corrupt" in line for line in logs)
    assert store.load_msg(9).data == payloads[8]  # type: ignore[union-attr]
    store.close()
    os.unlink(tmp_path / "s" / "refs" / f"{fid:08x}.seg")
    logs.clear()
    store = open_store(tmp_path / "s", logs)
    assert any("missing" in line for line in logs)
    assert store.load_msg(1) is None and store.state().messages == 20
    store.close()


def test_a_hint_that_does_not_match_stores_the_message_whole(tmp_path: Path) -> None:
    seg = Segment(tmp_path / "wal.seg")
    store = open_store(tmp_path / "s")
    fid = store.link_ref(str(seg.path))
    offset = seg.add(b"p" * 64)
    store.set_ref(5, fid, offset, 64)  # another sequence
    store.store_msg(b"a", b"", b"p" * 64, T0)
    store.set_ref(2, fid, offset, 63)  # another length
    store.store_msg(b"a", b"", b"p" * 64, T0)
    store.set_ref(3, fid, offset, 64)
    store.store_msg(b"a", b"", b"p" * 64, T0, ttl_ns=10**12)  # a TTL: stored whole
    store.set_ref(4, fid, offset, 64)
    store.clear_ref()
    store.store_msg(b"a", b"", b"p" * 64, T0)
    assert store._ref_live == {fid: 0}
    assert [m[3] for m in contents(store)] == [b"p" * 64] * 4
    store.close()


def test_erasing_a_referenced_message_erases_its_record(tmp_path: Path) -> None:
    seg = Segment(tmp_path / "wal.seg")
    store = open_store(tmp_path / "s")
    fid = store.link_ref(str(seg.path))
    fill(store, seg, fid, 5)
    assert store.remove_msg(2, erase=True)
    assert store.load_msg(2) is None
    store.close()
    os.unlink(tmp_path / "s" / "index.snap")
    store = open_store(tmp_path / "s")
    assert [m[0] for m in contents(store)] == [1, 3, 4, 5]
    assert store._ref_live == {fid: 4}
    store.close()


def test_the_crc_in_the_reference_is_the_payloads(tmp_path: Path) -> None:
    seg = Segment(tmp_path / "wal.seg")
    store = open_store(tmp_path / "s")
    fid = store.link_ref(str(seg.path))
    payload = b"hello world, referenced" * 3
    offset = seg.add(payload)
    store.set_ref(1, fid, offset, len(payload))
    store.store_msg(b"a", b"", payload, T0)
    block = store._blocks[0]
    store.close()
    from jsedge.store import codec

    raw = Path(block.path).read_bytes()
    entries = codec.scan(raw, block.base_seq, block.base_ts)[0]
    records = [entries[r : r + codec.FIELDS] for r in range(0, len(entries), codec.FIELDS)]
    (ref,) = [r for r in records if r[codec.F_KIND] == codec.KIND_MSG_REF]
    end = ref[codec.F_OFFSET] + ref[codec.F_LEN] - 4
    assert codec.decode_ref(raw[end - ref[codec.F_DATA_LEN] : end]) == (len(payload), fid, offset, zlib.crc32(payload))
