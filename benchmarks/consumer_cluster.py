"""Replicated consumers and KV on a 3-node cluster (R3): jsedge against nats-server, in one run, as ratios.

    python benchmarks/consumer_cluster.py [--quick] [--json out.json]

For each kind in turn (nats-server with its defaults, then jsedge with its defaults: Raft timing of
nats-server, fsync before every ack) a 3-node cluster is started on loopback (``jetstream_cluster.py``'s
``start_cluster``), and one nats-py client on the first node runs:

1. **fetch + ack, batch 100**: an R3 file stream holding N messages (128 B), one durable pull consumer
   (R3, the stream's replica count); the client fetches batches of 100 and acks every message (plain
   ack, no reply), until all N are consumed; messages per second.
2. **KV put, 64 in flight**: an R3 bucket; `kv.put` on 100 keys, 64 concurrent operations at a time.
3. **KV get, 64 in flight**: `kv.get` of those keys the same way (nats-py uses direct gets, which any
   replica answers).
4. **consumer failover**: a publisher sends one message every 5 ms while a fetcher asks for one message
   at a time (0.25 s expiry); once deliveries flow, the consumer's leader (CONSUMER.INFO
   ``cluster.leader``) is killed with SIGKILL; the figure is the time from the kill to the first message
   delivered by a fetch sent after it. The node is restarted before the next trial (3 trials, 1 with
   ``--quick``); the median is reported.

The client is nats-py for both kinds, so the absolute numbers are the client's as much as the servers';
the ratio (jsedge / nats-server) is what the issue's goals are about: >= 0.5x for fetch+ack and KV, and
failover <= 1.0x. Nothing is pinned (2 cores for 3 servers and the client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import jetstream_cluster as jc  # noqa: E402
import nats  # noqa: E402
from nats.errors import TimeoutError as NatsTimeout  # noqa: E402
from nats.js.errors import ServiceUnavailableError  # noqa: E402

KINDS = ("nats", "jsedge")
PAYLOAD = b"x" * 128


async def _retry(make, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await make()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def fetch_ack(nc, count: int) -> float:
    js = nc.jetstream(timeout=10)
    await _retry(lambda: js.add_stream(name="CB", subjects=["cb.>"], num_replicas=3))
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        # the first publishes may meet a stream still electing its leader (503): a batch is retried
        await _retry(lambda n=n: asyncio.gather(*(js.publish("cb.x", PAYLOAD, headers=None) for _ in range(n))))
    await _retry(lambda: js.add_consumer("CB", durable_name="d", ack_policy="explicit", max_ack_pending=10_000))
    sub = await js.pull_subscribe_bind("d", stream="CB")
    got = 0
    t0 = time.perf_counter()
    while got < count:
        try:
            msgs = await sub.fetch(100, timeout=2)
        except NatsTimeout:
            continue
        except ServiceUnavailableError:  # 503: the new consumer's group has no leader yet
            await asyncio.sleep(0.1)
            continue
        for msg in msgs:
            await msg.ack()
        got += len(msgs)
    await nc.flush()
    return count / (time.perf_counter() - t0)


async def kv_ops(nc, count: int) -> tuple[float, float]:
    js = nc.jetstream(timeout=10)
    kv = await _retry(lambda: js.create_key_value(bucket="kvb", replicas=3))
    keys = [f"k{i}" for i in range(100)]
    await asyncio.gather(*(kv.put(k, PAYLOAD) for k in keys))

    async def run(op) -> float:
        t0 = time.perf_counter()
        done = 0
        while done < count:
            batch = min(64, count - done)
            await asyncio.gather(*(op(keys[(done + i) % 100]) for i in range(batch)))
            done += batch
        return count / (time.perf_counter() - t0)

    puts = await run(lambda k: kv.put(k, PAYLOAD))
    gets = await run(lambda k: kv.get(k))
    return puts, gets


async def failover_trial(cluster, trial: int) -> float:
    nc = await nats.connect(
        [s.url for s in cluster.servers], max_reconnect_attempts=-1, reconnect_time_wait=0.1, connect_timeout=2
    )
    js = nc.jetstream(timeout=2)
    stream = f"FO{trial}"
    await _retry(lambda: js.add_stream(name=stream, subjects=[f"fo{trial}.>"], num_replicas=3))
    await _retry(lambda: js.add_consumer(stream, durable_name="f", ack_policy="explicit"))
    sub = await js.pull_subscribe_bind("f", stream=stream)
    stop = False

    async def publisher() -> None:
        while not stop:
            try:
                await nc.publish(f"fo{trial}.x", PAYLOAD)
            except Exception:
                pass
            await asyncio.sleep(0.005)

    task = asyncio.create_task(publisher())
    killed_at = None
    killed = -1
    try:
        delivered = 0
        while True:
            asked = time.monotonic()
            try:
                msgs = await sub.fetch(1, timeout=0.25)
            except Exception:
                msgs = []
            for msg in msgs:
                try:
                    await msg.ack()
                except Exception:
                    pass
            if msgs:
                delivered += 1
                if killed_at is not None and asked >= killed_at:
                    return time.monotonic() - killed_at
            if killed_at is None and delivered >= 20:
                ci = await _retry(lambda: js.consumer_info(stream, "f"))
                victim = jc.node_index(ci.cluster.leader)
                cluster.kill(victim)  # the client reconnects elsewhere if it was there, as any would
                killed_at = time.monotonic()
                killed = victim
            if killed_at is not None and time.monotonic() - killed_at > 90:
                raise RuntimeError("no delivery within 90 s of the kill")
    finally:
        stop = True
        await task
        await nc.close()
        if killed_at is not None:
            await asyncio.to_thread(cluster.restart, killed)


async def bench_kind(kind: str, args) -> dict:
    cluster = jc.start_cluster(kind, pure=False)
    try:
        jc.wait_meta_leader(cluster[0].port)
        nc = await nats.connect(cluster[0].url, connect_timeout=5)
        try:
            count = 2_000 if args.quick else 20_000
            fetch = await fetch_ack(nc, count)
            puts, gets = await kv_ops(nc, 1_000 if args.quick else 10_000)
        finally:
            await nc.close()
        trials = [await failover_trial(cluster, t) for t in range(1 if args.quick else 3)]
        return {"fetch_ack": fetch, "kv_put": puts, "kv_get": gets, "failover": statistics.median(trials)}
    finally:
        cluster.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    results = {}
    for kind in KINDS:
        print(f"[{kind}] running", flush=True)
        results[kind] = asyncio.run(bench_kind(kind, args))
        print(f"[{kind}] {results[kind]}", flush=True)
    j, n = results["jsedge"], results["nats"]
    print(f"{'':22}{'jsedge':>12}{'nats':>12}{'ratio':>8}")
    for key, unit in (("fetch_ack", "msg/s"), ("kv_put", "op/s"), ("kv_get", "op/s"), ("failover", "s")):
        print(f"{key + ' (' + unit + ')':22}{j[key]:12.1f}{n[key]:12.1f}{j[key] / n[key]:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
