"""The article's walkthrough (seed 000_f4d5d52d0939ab57) end to end, with its commands and flags:
stream add, stream info/ls, pub, stream view, consumer add (pull and queue), consumer next,
kv add/put/get/del, and the quick reference (stream ls/info/purge/rm, consumer ls/info/rm,
stream view/get, kv ls/info/history, server info/report/check)."""

from __future__ import annotations

from test_consumer_cli import ARTICLE_CONSUMER
from test_stream_cli import ARTICLE_ADD


def test_article_walkthrough(cli):
    # Verify the connection
    assert "Server information for" in cli("server", "info", "--server", cli.url).out

    # Streams
    assert "Stream ORDERS was created" in cli(*ARTICLE_ADD).out
    info = cli("stream", "info", "ORDERS").out
    assert "Subjects: orders.>" in info and "Retention: Limits" in info and "Discard Policy: Old" in info
    assert "ORDERS" in cli("stream", "ls").out
    assert (
        'Published 31 bytes to "orders.created"' in cli("pub", "orders.created", '{"id":"ord-001","amount":49.99}').out
    )
    cli("pub", "orders.shipped", '{"id":"ord-001","carrier":"DHL"}')
    view = cli("stream", "view", "ORDERS").out
    assert '{"id":"ord-001","amount":49.99}' in view and '"carrier":"DHL"' in view

    # Consumers
    assert "Information for Consumer ORDERS > order-processor" in cli(*ARTICLE_CONSUMER).out
    nxt = cli("consumer", "next", "ORDERS", "order-processor", "--count", "5").out
    assert nxt.count("Acknowledged message") == 2 and "ord-001" in nxt
    cli(
        "consumer",
        "add",
        "ORDERS",
        "order-processor-queue",
        "--pull",
        "--deliver",
        "all",
        "--ack",
        "explicit",
        "--max-deliver",
        "5",
        "--filter",
        "orders.>",
    )

    # KV
    assert (
        "Information for Key-Value Store Bucket config"
        in cli("kv", "add", "config", "--ttl", "1h", "--replicas", "1").out
    )
    cli("kv", "put", "config", "database.host", "pg.internal")
    cli("kv", "put", "config", "database.port", "5432")
    assert "pg.internal" in cli("kv", "get", "config", "database.host").out
    cli("kv", "del", "config", "database.host")

    # Cluster health (single node)
    assert "JetStream Summary" in cli("server", "report", "jetstream").out
    r = cli("server", "check", "jetstream", "--expected", "3", ok=False)
    assert r.rc == 2 and "CRITICAL" in r.out

    # ---- Quick Reference
    assert "ORDERS" in cli("stream", "ls").out
    assert "Messages: 2" in cli("stream", "info", "ORDERS").out

    ls = cli("consumer", "ls", "ORDERS").out
    assert "order-processor" in ls and "order-processor-queue" in ls
    assert "Unprocessed Messages: 0" in cli("consumer", "info", "ORDERS", "order-processor").out
    cli("consumer", "rm", "ORDERS", "order-processor")
    assert "order-processor-queue" in cli("consumer", "ls", "ORDERS", "--names").out

    assert "[2] Subject: orders.shipped" in cli("stream", "view", "ORDERS").out
    cli("pub", "orders.created", "{{Count}}", "--count", "40")
    got = cli("stream", "get", "ORDERS", "42").out
    assert "Item: ORDERS#42" in got and "40" in got.splitlines()[-1]

    assert "config" in cli("kv", "ls").out
    assert "Bucket Name: config" in cli("kv", "info", "config").out
    hist = cli("kv", "history", "config", "database.host")
    assert "database.host" in hist.out and "DEL" in hist.out  # history 1: only the delete marker is kept

    assert "Server information for" in cli("server", "info").out
    assert "JetStream Summary" in cli("server", "report", "jetstream").out
    r = cli("server", "check", "jetstream", "--expected", "1")
    assert r.out.startswith("OK JetStream")

    assert "Purged 42 messages" in cli("stream", "purge", "ORDERS").out
    assert "Deleted stream ORDERS" in cli("stream", "rm", "ORDERS").out
    assert "ORDERS" not in cli("stream", "ls").out
