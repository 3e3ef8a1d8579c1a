"""Child process of tests/store/test_crash.py: append to a file store forever, printing each
sequence once its `sync()` resolved ("acked"), until the parent kills it with SIGKILL.

Usage: python crash_child.py <directory> <seed>
Payload of seq N is derived from N (see `payload`), so the parent can verify contents.
"""

from __future__ import annotations

import asyncio
import sys

from jsedge.store.base import StoreConfig
from jsedge.store.filestore import FileStore


def payload(seq: int) -> bytes:
    return b"payload-%d-" % seq + bytes([seq % 251]) * (seq * 7 % 300)


async def main(directory: str, seed: int) -> None:
    store = FileStore(directory, StoreConfig(name="CRASH"), block_size=16 * 1024)
    out = sys.stdout
    next_seq = store.state().last_seq + 1
    while True:
        batch = []
        for _ in range(1 + (next_seq + seed) % 8):
            seq = store.store_msg(b"crash.%d" % (next_seq % 5), b"", payload(next_seq), next_seq)
            assert seq == next_seq
            batch.append(seq)
            next_seq += 1
        await store.sync()
        out.write("".join(f"{seq}\n" for seq in batch))
        out.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
