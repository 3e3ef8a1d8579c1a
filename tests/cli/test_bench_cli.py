"""`jsedge bench ...`: tiny runs (1000 messages) against nats-server and jsedge."""

from __future__ import annotations

import json
import re

import pytest

RATE = re.compile(r"(\w+) stats: [\d,]+ msgs/sec ~ [\d.]+ MB/sec")


@pytest.mark.parametrize("mode", [["pub", "b.pub"], ["pubsub", "b.ps", "--clients", "2"], ["request", "b.req"]])
def test_core(cli, mode):
    r = cli("bench", *mode, "--msgs", "1000", "--size", "64")
    assert r.out.startswith("Starting Core NATS") and RATE.search(r.out) and "latency: min" in r.out and "p99" in r.out
    if "--clients" in mode:
        assert " [2] " in r.out and "stddev" in r.out


def test_js_pub_fetch(cli):
    r = cli("bench", "js", "pub", "bj.x", "--msgs", "1000", "--batch", "20", "--storage", "memory")
    assert "Pub stats:" in r.out

    async def count(nc, js):
        return (await js.stream_info("benchstream")).state.messages

    assert cli.state(count) == 1000
    r = cli("bench", "js", "fetch", "bj.x", "--msgs", "1000", "--json")
    data = json.loads(r.out)
    assert data["Fetch"]["msgs"] == 1000 and data["latency"]["count"] == 1000


def test_kv_put_get(cli):
    r = cli("bench", "kv", "put", "--msgs", "1000", "--keys", "10", "--clients", "2")
    assert "Put stats:" in r.out
    r = cli("bench", "kv", "get", "--msgs", "1000", "--keys", "10")
    assert "Get stats:" in r.out and "Get round trip latency" in r.out
