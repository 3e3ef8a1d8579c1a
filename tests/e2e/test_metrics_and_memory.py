"""`/metrics` scraped and parsed like Prometheus would, and the memory budget honoured under load."""

from __future__ import annotations

import json
import urllib.request

import nats
import pytest
from helpers import ServerProcess
from prometheus_client.parser import text_string_to_metric_families


def _scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


async def test_metrics_endpoint_with_jetstream(tmp_path) -> None:
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path)], http=True) as server:
        nc = await nats.connect(server.url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await js.add_stream(name="ORDERS", subjects=["orders.>"])
            for i in range(3):
                await js.publish("orders.new", f"{i}".encode())
            samples = _scrape(server.http_port)
            assert samples["gnatsd_varz_connections"][0].value >= 1
            assert "gnatsd_varz_slow_consumers" in samples
            assert samples["gnatsd_varz_in_msgs"][0].value >= 3
            stream = [s for s in samples["jetstream_stream_total_messages"] if s.labels["stream_name"] == "ORDERS"]
            assert stream and stream[0].value == 3
            assert samples["jetstream_server_total_streams"][0].value == 1
            twins = {s.labels["twin"] for s in samples["jsedge_compiled_twin"]}
            assert {"parser", "sublist"} <= twins
        finally:
            await nc.close()


@pytest.mark.parametrize("kind", ["jsedge", "nats"])
async def test_memory_stream_past_its_budget_gets_the_nats_server_error(tmp_path, kind: str) -> None:
    config = f'jetstream {{ store_dir: "{tmp_path}", max_memory_store: 1MB }}\n'
    with ServerProcess(kind, config=config, http=True) as server:
        nc = await nats.connect(server.url, connect_timeout=2, allow_reconnect=False)
        try:
            # A raw request: the exact error JSON, not a client exception, is what we compare.
            reply = await nc.request(
                "$JS.API.STREAM.CREATE.MEM",
                json.dumps({"name": "MEM", "subjects": ["mem.>"], "storage": "memory"}).encode(),
                timeout=2,
            )
            assert "error" not in json.loads(reply.data), reply.data
            payload = b"x" * 16384
            error = None
            for _ in range(200):  # 3.2 MiB into a 1 MiB budget
                ack = json.loads((await nc.request("mem.a", payload, timeout=2)).data)
                if "error" in ack:
                    error = ack["error"]
                    break
            assert error is not None, "the budget was never enforced"
            assert (error["code"], error["err_code"]) == (503, 10023), error
            assert error["description"] == "insufficient resources"
            info = json.loads((await nc.request("$JS.API.STREAM.INFO.MEM", b"", timeout=2)).data)
            # nats-server checks usage before storing, so it may end one message over the budget.
            assert info["state"]["bytes"] <= 1024 * 1024 + len(payload) + 64
        finally:
            await nc.close()
