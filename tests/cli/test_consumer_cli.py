"""`jsedge consumer ...` against nats-server and jsedge."""

from __future__ import annotations

import json

from test_stream_cli import _seed

ARTICLE_CONSUMER = [
    "consumer",
    "add",
    "ORDERS",
    "order-processor",
    "--pull",
    "--deliver",
    "all",
    "--ack",
    "explicit",
    "--max-deliver",
    "5",
    "--ack-wait",
    "30s",
    "--filter",
    "orders.>",
]


def test_add_info_ls_rm(cli):
    _seed(cli)
    r = cli(*ARTICLE_CONSUMER)
    assert "Information for Consumer ORDERS > order-processor" in r.out
    assert "Pull Mode: true" in r.out and "Maximum Deliveries: 5" in r.out and "Unprocessed Messages: 3" in r.out

    async def cfg(nc, js):
        return (await js.consumer_info("ORDERS", "order-processor")).config

    c = cli.state(cfg)
    assert (
        c.durable_name == "order-processor"
        and c.max_deliver == 5
        and c.ack_wait == 30
        and c.filter_subject == "orders.>"
    )
    r = cli("consumer", "ls", "ORDERS")
    assert "order-processor" in r.out and "Unprocessed" in r.out
    assert cli("consumer", "ls", "ORDERS", "--names").out.split() == ["order-processor"]
    info = json.loads(cli("consumer", "info", "ORDERS", "order-processor", "--json").out)
    assert info["num_pending"] == 3
    assert "Deleted consumer" in cli("consumer", "rm", "ORDERS", "order-processor").out
    r = cli("consumer", "info", "ORDERS", "order-processor", ok=False)
    assert r.rc == 1 and "consumer not found" in r.err


def test_add_requires_flags_or_defaults(cli):
    _seed(cli)
    r = cli("consumer", "add", "ORDERS", "c1", ok=False)
    assert r.rc == 1 and "--pull" in r.err and "--defaults" in r.err
    info = json.loads(
        cli("consumer", "add", "ORDERS", "c1", "--defaults", "--backoff", "1s,5s", "--max-deliver", "3", "--json").out
    )
    assert info["config"]["backoff"] == [1_000_000_000, 5_000_000_000] and info["config"]["ack_policy"] == "explicit"


def test_next_acks_and_no_ack(cli):
    _seed(cli)
    cli(*ARTICLE_CONSUMER)
    r = cli("consumer", "next", "ORDERS", "order-processor", "--no-ack")
    assert "str seq: 1" in r.out and "Acknowledged" not in r.out
    r = cli("consumer", "next", "ORDERS", "order-processor", "--count", "5")
    assert r.out.count("Acknowledged message") == 2 and "Received 2 of 5" in r.out
    info = json.loads(cli("consumer", "info", "ORDERS", "order-processor", "--json").out)
    assert info["num_pending"] == 0 and info["num_ack_pending"] == 1  # the --no-ack one


def test_next_nothing_pending_fails(cli):
    _seed(cli, 0)
    cli(*ARTICLE_CONSUMER)
    r = cli("consumer", "next", "ORDERS", "order-processor", "--wait", "200ms", ok=False)
    assert r.rc == 1 and "no message received" in r.err


def test_pause_resume(cli):
    _seed(cli)
    cli(*ARTICLE_CONSUMER)
    r = cli("consumer", "pause", "ORDERS", "order-processor", "--until", "1h")
    assert "Paused ORDERS > order-processor until" in r.out
    assert json.loads(cli("consumer", "info", "ORDERS", "order-processor", "--json").out).get("paused") is True
    assert "resumed" in cli("consumer", "resume", "ORDERS", "order-processor").out
    assert not json.loads(cli("consumer", "info", "ORDERS", "order-processor", "--json").out).get("paused")
