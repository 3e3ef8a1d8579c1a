"""Faults on a replicated consumer, on real jsedge processes: a work-queue stream (R3) drained by three
workers, one per node, through one durable pull consumer (C-R3F), while its leader is killed with
SIGKILL or paused with SIGSTOP over and over. Afterwards:

* every published message was delivered (nothing skipped), and the stream ends empty with nothing
  pending or waiting for an ack;
* no message came back once its ack_sync had been answered (an acknowledged ack is never undone);
* redeliveries happen only to messages whose ack was not answered yet (at-least-once), and are
  counted;
* the stream is empty on every replica and the consumer has nothing pending or unacknowledged.

Seeded (`JSEDGE_FAULT_SEED`, default 1515) and bounded (`JSEDGE_FAULT_LOOPS`, default 4 cycles).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import defaultdict

import pytest
from helpers import acheck_for, http_json
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError
from test_jetstream_cluster import add_stream
from test_jetstream_faults import FaultCluster, connect_to, stop_all

SEED = int(os.environ.get("JSEDGE_FAULT_SEED", "1515"))
LOOPS = int(os.environ.get("JSEDGE_FAULT_LOOPS", "4"))
MESSAGES = 300
#: An ack answered this long before the fetch that got the message again was sent means the ack was
#: undone (a delivery sent just before the ack committed may still arrive a little after the answer).
GRACE = 1.0


async def _consumer_leader(js) -> str | None:
    try:
        ci = await js.consumer_info("WQ", "w")
    except (TimeoutError, NatsTimeout, APIError):
        return None
    return ci.cluster.leader if ci.cluster is not None else None


async def drained(js) -> bool:
    try:
        ci = await js.consumer_info("WQ", "w")
        si = await js.stream_info("WQ")
    except (TimeoutError, NatsTimeout, APIError):
        return False
    return si.state.messages == 0 and ci.num_pending == 0 and ci.num_ack_pending == 0


async def _diagnose(js, workers) -> str:
    sent = {f"m{i}".encode() for i in range(MESSAGES)}
    text = (
        f"acked {len(workers.acked_at)} of {MESSAGES}; never delivered: "
        f"{sorted(sent - set(workers.deliveries))[:10]}; unacked: {sorted(sent - set(workers.acked_at))[:10]}"
    )
    try:
        ci = await js.consumer_info("WQ", "w")
        si = await js.stream_info("WQ")
    except Exception as exc:
        return text + f"; info failed: {exc!r}"
    return text + (
        f"; consumer: delivered={ci.delivered} ack_floor={ci.ack_floor} pending={ci.num_pending} "
        f"ack_pending={ci.num_ack_pending} waiting={ci.num_waiting} leader={ci.cluster.leader}; "
        f"stream: {si.state} leader={si.cluster.leader}"
    )


class Workers:
    def __init__(self) -> None:
        self.deliveries: dict[bytes, list[float]] = defaultdict(list)
        self.acked_at: dict[bytes, float] = {}
        self.stop = False

    async def run(self, conn) -> None:
        js = conn.jetstream(timeout=2)
        sub = None
        while not self.stop:
            try:
                if sub is None:
                    sub = await js.pull_subscribe_bind("w", stream="WQ")
                # a message of this batch was sent after the request: its delivery time is at least
                # this (the batch arrives up to a second later, and is worked through after that)
                asked = time.monotonic()
                msgs = await sub.fetch(10, timeout=1)
            except (TimeoutError, NatsTimeout, APIError):
                continue
            except Exception:
                await asyncio.sleep(0.1)
                continue
            for msg in msgs:
                self.deliveries[msg.data].append(asked)
                try:
                    await msg.ack_sync(timeout=1)
                except Exception:
                    continue  # no answer: the ack may or may not have committed
                self.acked_at.setdefault(msg.data, time.monotonic())


@pytest.mark.timeout(240)
async def test_work_queue_drained_by_three_workers_while_the_consumer_leader_dies() -> None:
    rng = random.Random(SEED)
    with FaultCluster() as cluster:
        cluster.wait_mesh()
        servers = cluster.servers
        conns = [await connect_to([servers[i], servers[(i + 1) % 3], servers[(i + 2) % 3]]) for i in range(3)]
        workers = Workers()
        tasks = []
        try:
            js = conns[0].jetstream(timeout=3)
            await add_stream(js, name="WQ", subjects=["wq.>"], num_replicas=3, retention="workqueue")
            await js.add_consumer("WQ", durable_name="w", ack_policy="explicit", ack_wait=2.0, max_ack_pending=50)
            for i in range(MESSAGES):
                await js.publish("wq.x", f"m{i}".encode())
            tasks = [asyncio.create_task(workers.run(conn)) for conn in conns]
            await acheck_for(20, lambda: len(workers.acked_at) >= 20, interval=0.05)
            for cycle in range(LOOPS):
                leader = await acheck_for(20, lambda: _consumer_leader(js), interval=0.2)
                victim = int(leader[1:]) - 1 if rng.random() < 0.8 else rng.randrange(3)
                before = len(workers.acked_at)
                if cycle % 2 == 0:
                    cluster.kill(victim)
                    await asyncio.sleep(rng.uniform(0.3, 1.5))
                    await asyncio.to_thread(cluster.restart, victim)
                else:
                    os.kill(cluster[victim].pid, signal.SIGSTOP)
                    await asyncio.sleep(rng.uniform(2.0, 3.0))  # longer than an election
                    os.kill(cluster[victim].pid, signal.SIGCONT)
                # the consumer acks again before the next fault (unless everything is done)
                try:
                    await acheck_for(30, lambda b=before: len(workers.acked_at) >= b + 10 or drained(js), interval=0.05)
                except AssertionError:
                    raise AssertionError(
                        f"cycle {cycle} ({'kill' if cycle % 2 == 0 else 'pause'} n{victim + 1}, leader was "
                        f"{leader}): " + await _diagnose(js, workers)
                    ) from None
            try:
                # done when the stream is empty and nothing waits for an ack (an ack whose answer
                # was lost may still have committed: such a message is done without an answer)
                await acheck_for(60, lambda: drained(js), interval=0.2)
            except AssertionError:
                raise AssertionError("draining: " + await _diagnose(js, workers)) from None
        finally:
            workers.stop = True
            for task in tasks:
                await asyncio.wait_for(task, 10)

        sent = {f"m{i}".encode() for i in range(MESSAGES)}
        assert set(workers.deliveries) == sent  # nothing skipped
        undone = [
            data
            for data, times in workers.deliveries.items()
            if data in workers.acked_at and any(t > workers.acked_at[data] + GRACE for t in times)
        ]
        assert not undone, f"acknowledged work came back: {sorted(undone)[:10]}"
        redelivered = sum(len(times) - 1 for times in workers.deliveries.values())
        print(f"redeliveries: {redelivered} of {MESSAGES} messages over {LOOPS} faults")

        def replicas_empty() -> bool:
            for server in cluster.servers:
                jsz = http_json(server, "/jsz?streams=true", timeout=1.0)
                for account in jsz.get("account_details") or []:
                    for stream in account.get("stream_detail") or []:
                        if stream["name"] == "WQ" and stream["state"]["messages"] != 0:
                            return False
            return True

        await acheck_for(30, lambda: asyncio.to_thread(replicas_empty), interval=0.2)
        for conn in conns:
            await conn.close()
        await stop_all(cluster)
        assert not cluster.bad_lines, cluster.bad_lines
