"""Write or verify a deterministic file store, to prove stores move between architectures.

    python tools/store_fixture.py write DIR     # writes the stream store into DIR (must not exist)
    python tools/store_fixture.py verify DIR    # opens it and checks every message and state

tests/data/filestore-x86_64/ was written on x86-64 and is verified by tests/store/test_cross_arch.py
on every architecture the suite runs on (tools/test-arm.sh runs it on aarch64/armv7); test-arm.sh also
writes a store inside the ARM chroot and verifies it on the host. The format uses explicit
little-endian and LEB128 fields only, so this must hold both ways.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jsedge.store.base import ConsumerState, Pending, SequencePair, StoreConfig
from jsedge.store.filestore import FileStore

BASE_TS = 1_795_000_000_000_000_000
COUNT = 300
DELETED = {17, 42, 99, 250}
PURGED_BELOW = 11  # purge(seq=11) removes 1..10


def message(seq: int) -> tuple[bytes, bytes, bytes, int]:
    subject = f"fx.{seq % 7}.{'x' * (seq % 5)}".encode()
    hdr = f"NATS/1.0\r\nNats-Msg-Id: m{seq}\r\n\r\n".encode() if seq % 3 == 0 else b""
    data = bytes((seq * 31 + i) % 251 for i in range(seq % 97))
    return subject, hdr, data, BASE_TS + seq * 1_000_003


def config() -> StoreConfig:
    return StoreConfig(name="FIXTURE", max_msgs_per_subject=-1)


def expected_consumer_state() -> ConsumerState:
    return ConsumerState(
        delivered=SequencePair(consumer_seq=120, stream_seq=130),
        ack_floor=SequencePair(consumer_seq=100, stream_seq=110),
        pending={
            125: Pending(consumer_seq=115, timestamp=BASE_TS + 7),
            128: Pending(consumer_seq=118, timestamp=BASE_TS + 9),
        },
        redelivered={125: 2},
    )


async def write(directory: Path) -> None:
    store = FileStore(directory, config(), block_size=8192)  # small blocks: several files
    for seq in range(1, COUNT + 1):
        subject, hdr, data, ts = message(seq)
        assert store.store_msg(subject, hdr, data, ts) == seq
    for seq in sorted(DELETED):
        store.remove_msg(seq)
    store.purge(seq=PURGED_BELOW)
    consumer = store.consumer_store("C1")
    consumer.save_config(b'{"durable_name":"C1"}')
    consumer.update(expected_consumer_state())
    await store.sync()
    store.close()


def verify(directory: Path) -> None:
    store = FileStore(directory, config())
    try:
        state = store.state()
        live = [seq for seq in range(PURGED_BELOW, COUNT + 1) if seq not in DELETED]
        assert state.messages == len(live), state
        assert state.first_seq == PURGED_BELOW and state.last_seq == COUNT, state
        assert state.last_ts == message(COUNT)[3], state
        for seq in range(1, COUNT + 1):
            stored = store.load_msg(seq)
            if seq not in live:
                assert stored is None, seq
                continue
            assert stored is not None, seq
            subject, hdr, data, ts = message(seq)
            assert (stored.subject, stored.hdr, stored.data, stored.ts) == (subject, hdr, data, ts), seq
        config_json, consumer_state = store.consumer_store("C1").load()
        assert config_json == b'{"durable_name":"C1"}'
        expected = expected_consumer_state()
        assert consumer_state.delivered == expected.delivered
        assert consumer_state.ack_floor == expected.ack_floor
        assert consumer_state.pending == expected.pending
        assert consumer_state.redelivered == expected.redelivered
    finally:
        store.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[1])
    if argv[0] == "write":
        if directory.exists():
            print(f"{directory} exists", file=sys.stderr)
            return 2
        asyncio.run(write(directory))
    else:
        verify(directory)
        print(f"{directory}: every message and the consumer state verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
