"""The Prometheus exposition: valid text (parsed by prometheus_client), exporter-compatible names."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from jsedge.metrics import render

VARZ = {
    "server_id": "NABC",
    "server_name": "home",
    "connections": 3,
    "slow_consumers": 1,
    "in_msgs": 10,
    "cpu": 1.5,
    "auth_required": True,  # booleans are not metrics
    "slow_consumer_stats": {"clients": 1, "routes": 0, "gateways": 0, "leafs": 0},
}

JSZ = {
    "config": {"max_memory": 100, "max_storage": 200, "store_dir": "/x", "domain": ""},
    "streams": 1,
    "consumers": 1,
    "messages": 5,
    "bytes": 500,
    "account_details": [
        {
            "name": "$G",
            "id": "$G",
            "stream_detail": [
                {
                    "name": "ORDERS",
                    "state": {"messages": 5, "bytes": 500, "first_seq": 1, "last_seq": 5, "consumer_count": 1},
                    "consumer_detail": [
                        {
                            "name": "C",
                            "created": "2026-11-26T00:00:00Z",
                            "config": {"description": 'quote " and \\ backslash'},
                            "delivered": {"consumer_seq": 4, "stream_seq": 4},
                            "ack_floor": {"consumer_seq": 2, "stream_seq": 2},
                            "num_ack_pending": 2,
                            "num_redelivered": 0,
                            "num_waiting": 1,
                            "num_pending": 1,
                        }
                    ],
                }
            ],
        }
    ],
}


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_varz_numbers_become_gnatsd_varz_gauges() -> None:
    samples = _samples(render(VARZ, twins={"parser": "c", "sublist": "py"}))
    assert samples["gnatsd_varz_connections"][0].value == 3
    assert samples["gnatsd_varz_connections"][0].labels == {"server_id": "NABC"}
    assert samples["gnatsd_varz_slow_consumers"][0].value == 1
    assert samples["gnatsd_varz_cpu"][0].value == 1.5
    assert "gnatsd_varz_auth_required" not in samples
    assert "gnatsd_varz_server_name" not in samples
    twins = {s.labels["twin"]: s.value for s in samples["jsedge_compiled_twin"]}
    assert twins == {"parser": 1, "sublist": 0}


def test_jetstream_series_with_exporter_labels() -> None:
    samples = _samples(render(VARZ, jsz=JSZ))
    assert samples["jetstream_server_total_streams"][0].value == 1
    assert samples["jetstream_stream_total_messages"][0].labels["stream_name"] == "ORDERS"
    pending = samples["jetstream_consumer_num_pending"][0]
    assert pending.value == 1
    assert pending.labels["consumer_name"] == "C"
    assert pending.labels["consumer_desc"] == 'quote " and \\ backslash'
    assert samples["jetstream_consumer_num_ack_pending"][0].value == 2


def test_every_family_has_help_and_type_once() -> None:
    text = render(VARZ, subsz={"num_subscriptions": 4, "cache_hit_rate": 0.5}, jsz=JSZ)
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert _samples(text)["gnatsd_subsz_num_subscriptions"][0].value == 4
