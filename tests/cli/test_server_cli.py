"""`jsedge server ...` against nats-server and jsedge."""

from __future__ import annotations

import json

from helpers import free_port


def test_info(cli):
    r = cli("server", "info")
    assert "Server information for" in r.out and "Version:" in r.out and "JetStream:" in r.out and "API Level:" in r.out
    data = json.loads(cli("server", "info", "--json").out)
    assert data["server"]["server_id"] and data["jetstream"]["api"]["level"] >= 1


def test_check_connection_ok_and_critical(cli):
    r = cli("server", "check", "connection")
    assert r.out.startswith("OK Connection OK:connected to") and "| connect_time=" in r.out and "rtt=" in r.out
    r = cli("server", "check", "connection", "-s", f"nats://127.0.0.1:{free_port()}", "--timeout", "1s", ok=False)
    assert r.rc == 2 and r.out.startswith("CRITICAL Connection CRIT:connection failed")


def test_check_jetstream_expected_peers(cli):
    r = cli("server", "check", "jetstream", "--expected", "1")
    assert r.out.startswith("OK JetStream") and "OK:1 peers" in r.out and "| memory=" in r.out
    r = cli("server", "check", "jetstream", "--expected", "3", ok=False)
    assert r.rc == 2 and r.out.startswith("CRITICAL JetStream") and "CRIT:1 peers of expected 3" in r.out
    cli("stream", "add", "A", "--defaults")
    r = cli("server", "check", "jetstream", "--stream-warn", "1", ok=False)
    assert r.rc == 1 and r.out.startswith("WARNING JetStream") and "WARN:1 streams" in r.out


def test_report_jetstream_and_ping(cli):
    cli("stream", "add", "A", "--defaults")
    cli("pub", "A", "x", "--count", "2")
    r = cli("server", "report", "jetstream")
    assert "JetStream Summary" in r.out and "API Req" in r.out
    rows = json.loads(cli("server", "report", "jetstream", "--json").out)
    assert rows[0]["streams"] == 1 and rows[0]["messages"] == 2
    r = cli("server", "ping", "--count", "2")
    assert "rtt=" in r.out and "2 replies" in r.out


def test_connection_error_exit(cli):
    r = cli("stream", "ls", "-s", f"nats://127.0.0.1:{free_port()}", "--timeout", "1s", ok=False)
    assert r.rc == 1 and "jsedge: error: could not connect" in r.err
