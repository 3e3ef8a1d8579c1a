"""Atomic batch publish across kill -9: a jsedge server killed while it stores a committed batch
comes back with the whole batch or none of it, never a part (the file store's batch marker, see
jsedge/store/filestore.py). Real process, real client, kills at several moments of the commit."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import nats
import pytest

from tests.helpers import ServerProcess, compiled_only

pytestmark = pytest.mark.timeout(120)

BATCH = 600
PAYLOAD = b"x" * 2000


async def _one_round(server: ServerProcess, round_no: int, delay: float) -> tuple[int, int, bool]:
    """Stage a batch, commit it, kill the server `delay` seconds later; (batch messages found after
    the restart, messages in the stream, whether the PubAck arrived before the kill)."""
    nc = await nats.connect(server.url, allow_reconnect=False)
    batch_id = f"r{round_no}"
    for n in range(1, BATCH):
        await nc.publish(f"crash.{n % 7}", PAYLOAD, headers={"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n)})
    await nc.flush()
    commit = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(BATCH), "Nats-Batch-Commit": "1"}
    acked = asyncio.ensure_future(nc.request("crash.0", PAYLOAD, headers=commit, timeout=5))
    await asyncio.sleep(delay)
    server.kill()
    got_ack = acked.done() and acked.exception() is None
    if not acked.done():
        acked.cancel()
    try:
        await nc.close()
    except Exception:
        pass
    server.start()
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info("CRASH")
        count = 0
        for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
            msg = await js.get_msg("CRASH", seq)
            if msg.headers and msg.headers.get("Nats-Batch-Id") == batch_id:
                count += 1
        return count, info.state.messages, got_ack
    finally:
        await nc.close()


async def _timed_commit(server: ServerProcess) -> float:
    """How long a commit takes here, from the request to its PubAck (the kills aim inside it)."""
    nc = await nats.connect(server.url)
    try:
        for n in range(1, BATCH):
            hdrs = {"Nats-Batch-Id": "timing", "Nats-Batch-Sequence": str(n)}
            await nc.publish(f"crash.{n % 7}", PAYLOAD, headers=hdrs)
        await nc.flush()
        commit = {"Nats-Batch-Id": "timing", "Nats-Batch-Sequence": str(BATCH), "Nats-Batch-Commit": "1"}
        start = time.monotonic()
        await nc.request("crash.0", PAYLOAD, headers=commit, timeout=5)
        return time.monotonic() - start
    finally:
        await nc.close()


@compiled_only("kill timing; the store-level batch tests run in both modes")
def test_kill_9_during_a_batch_commit_keeps_all_of_it_or_none(tmp_path):
    seed = int(os.environ.get("JSEDGE_FAULT_SEED", "1515"))
    rounds = int(os.environ.get("JSEDGE_FAULT_LOOPS", "8"))
    rng = random.Random(seed)
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path)]) as server:

        async def run() -> tuple[list[int], int]:
            nc = await nats.connect(server.url)
            reply = await nc.request(
                "$JS.API.STREAM.CREATE.CRASH",
                json.dumps({"name": "CRASH", "subjects": ["crash.>"], "allow_atomic": True}).encode(),
                timeout=5,
            )
            assert "error" not in json.loads(reply.data)
            await nc.close()
            commit_time = await _timed_commit(server)
            seen = []
            total = BATCH
            cut_short = 0
            for round_no in range(rounds):
                # from before the commit is read to just after its PubAck
                delay = rng.uniform(0, 1.3 * commit_time) if round_no < rounds - 1 else 3 * commit_time
                count, messages, acked = await _one_round(server, round_no, delay)
                assert count in (0, BATCH), (round_no, delay, count)
                assert count == BATCH or not acked, (round_no, delay, "an acknowledged batch was lost")
                total += count
                assert messages == total
                seen.append(count)
                cut_short += sum("was cut short" in line for line in server.log_lines())
            return seen, cut_short

        seen, cut_short = asyncio.run(run())
        assert BATCH in seen  # the last round waits for its commit
        print(f"batches stored whole {seen.count(BATCH)}, dropped {seen.count(0)} ({cut_short} cut short by the kill)")
