"""Tiered JetStream limits of an account JWT (`limits.tiered_limits: {R1: {...}, R3: {...}}`)
against nats-server 2.15.1: a stream's tier is R<its replicas>, a replica count without a tier is
refused (10120), each tier counts its own streams, consumers and bytes, and `$JS.API.INFO` shows
zero account-wide limits and a `tiers` block. On one server and on a three-node cluster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest

from tests.compat.test_operator_mode_diff import World, write_creds
from tests.helpers import Cluster, ServerProcess, acheck_for, assert_same_lines
from tests.natsjwt import UNLIMITED_ACCOUNT, encode, new_key

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]

TIERS = {
    "R1": {"mem_storage": 1_000_000, "disk_storage": 2_000_000, "streams": 2, "consumer": 2, "max_ack_pending": 100},
    "R3": {"mem_storage": 500_000, "disk_storage": 900_000, "streams": 1, "consumer": 1, "max_ack_pending": 10},
}


def _setup(tmp_path: Path) -> tuple[World, str, str]:
    """(the world, the config lines preloading the system account and a tiered account T, T's
    user's creds)."""
    world = World()
    tiered = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    limits = {**UNLIMITED_ACCOUNT, "tiered_limits": TIERS}
    token = encode(
        {"sub": tiered.public, "name": "T", "nats": {"type": "account", "version": 2, "limits": limits}}, world.operator
    )
    preload = f"  {world.system.public}: {world.accounts[world.system.public]}\n  {tiered.public}: {token}"
    config = f"operator: {world.operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
    return world, config, write_creds(tmp_path, *world.user(tiered))


def _short(answer: dict[str, Any]) -> str:
    error = answer.get("error")
    return f"error {error['err_code']} {error['description']}" if error else "ok"


def _info_lines(info: dict[str, Any]) -> list[str]:
    """The account info without the API counters (their totals differ with retries)."""
    info = {k: v for k, v in info.items() if k not in ("api", "type")}
    return [json.dumps(info, sort_keys=True)]


async def _request(nc: Any, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(body).encode() if body is not None else b"", timeout=5)
    return dict(json.loads(reply.data))


async def _single_script(url: str, creds: str) -> list[str]:
    nc = await nats.connect(url, user_credentials=creds)
    out = []
    try:
        out += _info_lines(await _request(nc, "$JS.API.INFO"))
        for name, extra in (("S1", {"max_bytes": 1000}), ("S2", {}), ("S3", {}), ("X", {"num_replicas": 3})):
            body = {"name": name, "subjects": [name.lower()], **extra}
            out.append(f"create {name}: {_short(await _request(nc, f'$JS.API.STREAM.CREATE.{name}', body))}")
        for n in range(3):
            body = {"stream_name": "S1", "config": {"durable_name": f"d{n}", "ack_policy": "explicit"}}
            answer = await _request(nc, f"$JS.API.CONSUMER.CREATE.S1.d{n}", body)
            out.append(f"consumer d{n}: {_short(answer)}")
        body = {
            "stream_name": "S2",
            "config": {"durable_name": "big", "ack_policy": "explicit", "max_ack_pending": 500},
        }
        answer = await _request(nc, "$JS.API.CONSUMER.CREATE.S2.big", body)
        out.append(f"consumer over max_ack_pending: {_short(answer)}")
        out += _info_lines(await _request(nc, "$JS.API.INFO"))
    finally:
        await nc.close()
    return out


def test_tiered_limits_on_one_server_as_nats_server(tmp_path: Path) -> None:
    _world, config, creds = _setup(tmp_path)
    results = []
    for kind in ("nats", "jsedge"):
        store = tmp_path / kind
        with ServerProcess(kind, config=config + f'jetstream {{ store_dir: "{store}" }}\n') as server:
            results.append(asyncio.run(_single_script(server.url, creds)))
    assert_same_lines(results[0], results[1])
    assert len(results[0]) == len(results[1])


async def _cluster_script(urls: list[str], creds: str) -> list[str]:
    nc = await nats.connect(urls[0], user_credentials=creds)
    out = []
    try:

        async def ready() -> bool:
            answer = await _request(nc, "$JS.API.INFO")
            return "error" not in answer

        await acheck_for(30, ready, interval=0.3)
        for name, replicas, extra in (
            ("R3A", 3, {"max_bytes": 1000}),
            ("R3B", 3, {}),
            ("ONE", 1, {"max_bytes": 2000}),
            ("R5", 5, {}),
            ("R2", 2, {}),
        ):
            body = {"name": name, "subjects": [name.lower()], "num_replicas": replicas, **extra}
            out.append(f"create {name}: {_short(await _request(nc, f'$JS.API.STREAM.CREATE.{name}', body))}")
        for n in range(2):
            body = {"stream_name": "R3A", "config": {"durable_name": f"d{n}", "ack_policy": "explicit"}}
            answer = await _request(nc, f"$JS.API.CONSUMER.CREATE.R3A.d{n}", body)
            out.append(f"R3 consumer d{n}: {_short(answer)}")
        info = await _request(nc, "$JS.API.INFO")
        out.append(f"streams {info.get('streams')}, consumers {info.get('consumers')}")
        for name, tier in sorted((info.get("tiers") or {}).items()):
            out.append(f"tier {name}: limits {json.dumps(tier.get('limits'), sort_keys=True)}")
            out.append(f"tier {name}: streams {tier.get('streams')}, reserved_storage {tier.get('reserved_storage')}")
    finally:
        await nc.close()
    return out


def test_tiered_limits_on_a_cluster_as_nats_server(tmp_path: Path) -> None:
    _world, config, creds = _setup(tmp_path)
    results = []
    for kind in ("nats", "jsedge"):

        def node_config(index: int, kind: str = kind) -> str:
            return config + f'jetstream {{ store_dir: "{tmp_path / kind / str(index)}" }}\n'

        with Cluster([kind] * 3, config=node_config) as cluster:
            cluster.wait_mesh()
            results.append(asyncio.run(_cluster_script([cluster[i].url for i in range(3)], creds)))
    assert_same_lines(results[0], results[1])
    assert len(results[0]) == len(results[1])
