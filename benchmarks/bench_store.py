"""Store benchmarks: append throughput (no sync / group commit), bytes on disk per message against
nats-server's record size, and restart time + RSS with 1 M stored messages.

    python -m pytest benchmarks/bench_store.py -o python_files='bench_*.py' -p no:randomly -s -q
    python benchmarks/bench_store.py            # same, as a script
    JSEDGE_BENCH_SKIP_1M=1 ...                  # skip the 1 M message restart case (~20 s)

Messages are 128 B on a 16 B subject, no headers. nats-server's file record for that is
22 B header + 8 B hash + subject + payload = 30 + 16 + 128 = 174 B (streams.md §11's accounting is
the same formula). Results are printed as one line per scenario.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jsedge.store import codec
from jsedge.store._sync import SYNCER
from jsedge.store.base import StorageType, StoreConfig
from jsedge.store.filestore import FileStore
from jsedge.store.memstore import MemStore

SUBJECT = b"orders.eu.create"
PAYLOAD = b"p" * 128
T0 = 1_700_000_000_000_000_000
NATS_RECORD = 30 + len(SUBJECT) + len(PAYLOAD)
ROOT = Path(__file__).resolve().parents[1]


def report(name: str, value: str) -> None:
    print(f"\n[bench_store codec={codec.IMPLEMENTATION}] {name}: {value}")


def append(store, count: int, start: int = 0) -> None:
    store_msg = store.store_msg
    for i in range(start, start + count):
        store_msg(SUBJECT, b"", PAYLOAD, T0 + i * 1000)


def test_append_no_sync(tmp_path: Path) -> None:
    count = 100_000
    for kind in ("memory", "file"):
        if kind == "memory":
            store = MemStore(StoreConfig(name="B", storage=StorageType.MEMORY))
        else:
            store = FileStore(tmp_path / "nosync", StoreConfig(name="B"))
        t = time.perf_counter()
        append(store, count)
        elapsed = time.perf_counter() - t
        report(f"append 128 B, no sync, {kind}", f"{count / elapsed:,.0f} msgs/s")
        store.close()


def test_append_group_commit(tmp_path: Path) -> None:
    """64 concurrent publishers: each stores one message and awaits sync() before its next one."""
    count, publishers = 20_000, 64
    store = FileStore(tmp_path / "group", StoreConfig(name="B"))
    rounds = SYNCER.rounds

    async def publisher(n: int) -> None:
        for i in range(n):
            store.store_msg(SUBJECT, b"", PAYLOAD, T0 + i)
            await store.sync()

    async def main() -> float:
        t = time.perf_counter()
        await asyncio.gather(*(publisher(count // publishers) for _ in range(publishers)))
        return time.perf_counter() - t

    elapsed = asyncio.run(main())
    fsyncs = SYNCER.rounds - rounds
    report(
        "append 128 B, acked after fsync (group commit, 64 publishers)",
        f"{count / elapsed:,.0f} msgs/s, {fsyncs} fsync rounds ({count / max(fsyncs, 1):.0f} msgs per fsync)",
    )
    store.close()


def test_bytes_per_message(tmp_path: Path) -> None:
    count = 50_000
    store = FileStore(tmp_path / "size", StoreConfig(name="B"))
    append(store, count)
    store.close()
    disk = sum(p.stat().st_size for p in (tmp_path / "size" / "msgs").glob("*.blk"))
    per = disk / count
    ratio = per / NATS_RECORD
    report("bytes on disk per 128 B message", f"{per:.1f} B vs nats-server {NATS_RECORD} B = {ratio:.3f}x")
    assert ratio <= 0.95


RECOVER_SCRIPT = """
import resource, sys, time
from jsedge.store.base import StoreConfig
from jsedge.store.filestore import FileStore
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
before = rss()
t = time.perf_counter()
store = FileStore(sys.argv[1], StoreConfig(name='B'))
elapsed = time.perf_counter() - t
st = store.state()
msg = store.load_msg(st.last_seq)
assert msg is not None and msg.data == b'p' * 128
print(elapsed, st.messages, rss() - before, rss())
"""


@pytest.mark.skipif(os.environ.get("JSEDGE_BENCH_SKIP_1M", "") not in ("", "0"), reason="JSEDGE_BENCH_SKIP_1M set")
def test_recovery_1m(tmp_path: Path) -> None:
    count = 1_000_000
    directory = tmp_path / "million"
    store = FileStore(directory, StoreConfig(name="B"))
    t = time.perf_counter()
    append(store, count)
    store.close()
    build = time.perf_counter() - t
    disk = sum(p.stat().st_size for p in (directory / "msgs").glob("*.blk"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", RECOVER_SCRIPT, str(directory)], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    elapsed, messages, rss_delta, rss_total = float(out[0]), int(out[1]), int(out[2]), int(out[3])
    assert messages == count
    report(
        "1 M messages",
        f"written in {build:.1f} s ({disk / 2**20:.0f} MiB on disk); restart {elapsed:.2f} s, "
        f"index RSS +{rss_delta / 2**20:.0f} MiB ({rss_delta / count:.0f} B/msg), process RSS {rss_total / 2**20:.0f} MiB",
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for fn in (test_append_no_sync, test_append_group_commit, test_bytes_per_message, test_recovery_1m):
            sub = Path(tmp) / fn.__name__
            sub.mkdir()
            fn(sub)
