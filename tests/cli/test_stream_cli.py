"""`jsedge stream ...` against nats-server and jsedge."""

from __future__ import annotations

import json

ARTICLE_ADD = [
    "stream",
    "add",
    "ORDERS",
    "--subjects",
    "orders.>",
    "--storage",
    "file",
    "--retention",
    "limits",
    "--max-msgs",
    "1000000",
    "--max-bytes",
    "5GB",
    "--max-age",
    "7d",
    "--replicas",
    "1",
    "--discard",
    "old",
    "--dupe-window",
    "2m",
]


async def _publish(js, items):
    for subject, data in items:
        await js.publish(subject, data)


def _seed(cli, n=3):
    cli(*ARTICLE_ADD)
    cli.state(
        lambda nc, js: _publish(
            js, [(f"orders.{i % 2 and 'shipped' or 'created'}", f"m{i}".encode()) for i in range(1, n + 1)]
        )
    )


def test_add_with_article_flags_sets_config(cli):
    r = cli(*ARTICLE_ADD)
    assert "Information for Stream ORDERS" in r.out
    assert "Maximum Bytes: 5.0 GiB" in r.out and "Maximum Age: 7d0h0m0s" in r.out
    assert "Duplicate Window: 2m0s" in r.out and "Maximum Messages: 1,000,000" in r.out

    async def cfg(nc, js):
        return (await js.stream_info("ORDERS")).config

    c = cli.state(cfg)
    assert c.subjects == ["orders.>"] and c.max_msgs == 1_000_000 and c.max_bytes == 5 * 1024**3
    assert c.max_age == 7 * 86400 and c.duplicate_window == 120 and c.discard == "old"


def test_add_requires_flags_or_defaults(cli):
    r = cli("stream", "add", "X", ok=False)
    assert r.rc == 1 and "--subjects" in r.err and "--defaults" in r.err
    r = cli(
        "stream", "add", "X", "--defaults", "--max-msgs-per-subject", "5", "--allow-rollup", "--deny-delete", "--json"
    )
    info = json.loads(r.out)
    assert info["config"]["subjects"] == ["X"] and info["config"]["max_msgs_per_subject"] == 5
    assert info["config"]["allow_rollup_hdrs"] is True and info["config"]["deny_delete"] is True


def test_add_from_config_file_and_server_error(cli, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"subjects": ["cfg.>"], "storage": "memory", "max_msgs": 10}))
    r = cli("stream", "add", "CFG", "--config", str(path), "--json")
    assert json.loads(r.out)["config"]["storage"] == "memory"
    r = cli("stream", "add", "OTHER", "--subjects", "cfg.a", "--storage", "file", ok=False)
    assert r.rc == 1 and "subjects overlap with an existing stream" in r.err


def test_ls_info_json_and_unknown_stream(cli):
    r = cli("stream", "ls")
    assert "No Streams defined" in r.out
    _seed(cli)
    r = cli("stream", "ls")
    assert "ORDERS" in r.out and "Messages" in r.out
    assert cli("stream", "ls", "--names").out.split() == ["ORDERS"]
    info = json.loads(cli("stream", "info", "ORDERS", "--json").out)
    assert info["state"]["messages"] == 3
    r = cli("stream", "info", "NOPE", ok=False)
    assert r.rc == 1 and "stream not found" in r.err


def test_view_get_rm_msg(cli):
    _seed(cli)
    r = cli("stream", "view", "ORDERS")
    assert "[1] Subject: orders.shipped" in r.out and "m3" in r.out
    assert "[2]" not in cli("stream", "view", "ORDERS", "--subject", "orders.shipped").out
    r = cli("stream", "get", "ORDERS", "2")
    assert "Item: ORDERS#2" in r.out and "orders.created" in r.out and "m2" in r.out
    msg = json.loads(cli("stream", "get", "ORDERS", "--last-for", "orders.shipped", "--json").out)
    assert msg["seq"] == 3
    cli("stream", "rm-msg", "ORDERS", "2", "-f")
    r = cli("stream", "get", "ORDERS", "2", ok=False)
    assert r.rc == 1 and "no message found" in r.err
    assert json.loads(cli("stream", "info", "ORDERS", "--json").out)["state"]["messages"] == 2


def test_purge_variants(cli):
    _seed(cli, 6)
    r = cli("stream", "purge", "ORDERS", "--subject", "orders.created", "--keep", "1")
    assert "Purged 2 messages" in r.out
    r = cli("stream", "purge", "ORDERS", "--seq", "4")
    assert "Purged 2 messages" in r.out  # 1 and 3 (2 was purged above)
    r = cli("stream", "purge", "ORDERS", "--keep", "1", "--seq", "2", ok=False)
    assert r.rc == 1
    cli("stream", "purge", "ORDERS")
    assert json.loads(cli("stream", "info", "ORDERS", "--json").out)["state"]["messages"] == 0


def test_edit_and_rm(cli):
    _seed(cli)
    r = cli("stream", "edit", "ORDERS", "--max-msgs", "10", "--description", "orders")
    assert "Maximum Messages: 10" in r.out and "Description: orders" in r.out
    r = cli("stream", "edit", "ORDERS", "--storage", "memory", ok=False)
    assert r.rc == 1 and "storage type" in r.err
    assert "Deleted stream ORDERS" in cli("stream", "rm", "ORDERS").out
    assert "No Streams defined" in cli("stream", "ls").out


def _check_restored(cli, name="ORDERS"):
    info = json.loads(cli("stream", "info", name, "--json").out)
    assert info["state"]["messages"] == 3 and info["state"]["last_seq"] == 4 and info["state"]["num_deleted"] == 1
    assert json.loads(cli("stream", "get", name, "4", "--json").out)["subject"] == "orders.created"
    assert info["config"]["max_msgs"] == 1_000_000


def test_backup_restore_snapshot_or_fallback(cli, tmp_path):
    _seed(cli, 4)
    cli("stream", "rm-msg", "ORDERS", "2", "-f")
    r = cli("stream", "backup", "ORDERS", str(tmp_path / "bk"))
    assert "Backed up stream ORDERS" in r.out and "100%" in r.err
    assert (tmp_path / "bk" / "backup.json").exists()
    cli("stream", "rm", "ORDERS", "-f")
    r = cli("stream", "restore", str(tmp_path / "bk"))
    assert "Restored stream ORDERS with 3 messages" in r.out
    _check_restored(cli)
    r = cli("stream", "restore", str(tmp_path / "bk"), ok=False)
    assert r.rc == 1


def test_backup_restore_json_format(cli, tmp_path):
    _seed(cli, 4)
    cli("stream", "rm-msg", "ORDERS", "2", "-f")
    cli("stream", "backup", "ORDERS", str(tmp_path / "bk"), "--json-format")
    meta = json.loads((tmp_path / "bk" / "backup.json").read_text())
    assert meta["format"] == "jsedge-stream-backup/1" and meta["messages"] == 3
    lines = (tmp_path / "bk" / "messages.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 3, 4]
    cli("stream", "rm", "ORDERS", "-f")
    cli("stream", "restore", str(tmp_path / "bk"))
    _check_restored(cli)


def test_ls_hides_system_streams_unless_all(cli):
    """As the nats CLI: the streams behind KV buckets and object stores are listed only with -a."""
    r = cli("kv", "add", "config")
    r = cli("stream", "ls")
    assert "KV_config" not in r.out and "pass -a to include system streams" in r.out
    assert "KV_config" in cli("stream", "ls", "-a").out
    assert cli("stream", "ls", "--names", "--all").out.split() == ["KV_config"]
    _seed(cli)
    listed = cli("stream", "ls", "--names").out.split()
    assert listed == ["ORDERS"]
