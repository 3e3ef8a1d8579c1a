"""A KV register workload on a three-node jsedge cluster (an R3 bucket) with one nats-py client per
node doing put / get / update-with-revision / create on a few keys while the stream's leader is
killed with SIGKILL and restarted; the recorded history must be linearizable
(tests/linearizability.py).

Reads are the leader's (`STREAM.MSG.GET`, last message for the key): a direct get may be answered
by any replica and is only eventually consistent, on nats-server as on jsedge. Seeded by
JSEDGE_FAULT_SEED (default 1515); JSEDGE_KV_WORKLOAD_SECONDS makes the run longer."""

from __future__ import annotations

import asyncio
import os
import random
import time

import nats
import pytest
from helpers import acheck_for, compiled_only
from linearizability import FAILED, Recorder, check
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, KeyWrongLastSequenceError, NoStreamResponseError, NotFoundError
from test_jetstream_cluster import add_bucket, connect, js_cluster

pytestmark = pytest.mark.timeout(240)

SEED = int(os.environ.get("JSEDGE_FAULT_SEED") or 1515)
SECONDS = float(os.environ.get("JSEDGE_KV_WORKLOAD_SECONDS") or 8)
KEYS = ["k0", "k1", "k2"]
UNKNOWN = (TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError, ConnectionError, asyncio.TimeoutError)


async def _client(index: int, urls: list[str], recorder: Recorder, stop: float, rng: random.Random) -> int:
    nc = await nats.connect(
        urls[index:] + urls[:index],
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        dont_randomize=True,
    )
    done = 0
    try:
        js = nc.jetstream(timeout=1)
        kv = await js.key_value("reg")
        n = 0
        while time.monotonic() < stop:
            key = rng.choice(KEYS)
            kind = rng.choice(["put", "get", "get", "update", "create"])
            n += 1
            value = f"c{index}-{n}".encode()
            last = 0
            token = recorder.begin()
            try:
                if kind == "get":
                    try:
                        msg = await js.get_last_msg("KV_reg", f"$KV.reg.{key}")
                        result = (msg.data, msg.seq)
                    except NotFoundError:
                        result = None
                    recorder.done(token, key, "get", result, client=index)
                elif kind == "put":
                    rev = await kv.put(key, value)
                    recorder.done(token, key, "put", rev, value=value, client=index)
                elif kind == "create":
                    try:
                        rev = await kv.create(key, value)
                    except KeyWrongLastSequenceError:
                        rev = FAILED
                    recorder.done(token, key, "create", rev, value=value, client=index)
                else:
                    try:
                        entry = await kv.get(key)
                        last = entry.revision or 0
                    except Exception:
                        last = rng.randint(1, 50)
                    token = recorder.begin()  # the compare-and-set alone is the operation
                    try:
                        rev = await kv.update(key, value, last=last)
                    except KeyWrongLastSequenceError:
                        rev = FAILED
                    recorder.done(token, key, "update", rev, value=value, last=last, client=index)
                done += 1
            except APIError as exc:
                if exc.err_code == 10071:  # wrong last sequence from the server's stream check
                    recorder.done(token, key, kind, FAILED, value=value, last=last, client=index)
                else:
                    recorder.unknown(token, key, kind, value=None if kind == "get" else value, last=last, client=index)
                    await asyncio.sleep(0.05)
            except (*UNKNOWN, nats.errors.Error):
                recorder.unknown(token, key, kind, value=None if kind == "get" else value, last=last, client=index)
                await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return done


@compiled_only(
    "the history check is of the Raft-replicated KV, the same Python in both modes; the pure twins' "
    "cluster paths are covered by the other cluster tests"
)
async def test_kv_register_history_is_linearizable_across_a_leader_kill() -> None:
    rng = random.Random(SEED)
    with js_cluster() as cluster:
        cluster.wait_mesh()
        nc = await connect(cluster[0])
        try:
            js = nc.jetstream(timeout=3)

            await add_bucket(js, bucket="reg", replicas=3, history=1)

            async def stream_leader():
                return (await js.stream_info("KV_reg")).cluster.leader

            leader = await acheck_for(30, stream_leader, interval=0.2)
        finally:
            await nc.close()
        urls = [server.url for server in cluster.servers]
        recorder = Recorder(time.monotonic)
        start = time.monotonic()
        stop = start + SECONDS
        clients = [asyncio.create_task(_client(i, urls, recorder, stop, random.Random(rng.random()))) for i in range(3)]
        victim = int(leader[1:]) - 1
        await asyncio.sleep(SECONDS * 0.25)
        cluster.kill(victim)
        await asyncio.sleep(SECONDS * 0.35)
        cluster.restart(victim)
        completed = sum(await asyncio.gather(*clients))
        assert completed > 30, f"only {completed} operations completed"
        result = check(recorder.ops)
        assert result, (
            f"not linearizable on key {result.key}; longest valid prefix ends with "
            f"{[(o.kind, o.value, o.result) for o in result.best[-5:]]}"
        )
