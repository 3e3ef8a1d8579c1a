"""`jsedge kv ...` and `jsedge object ...` against nats-server and jsedge."""

from __future__ import annotations

import json
import os


def test_kv_lifecycle(cli):
    r = cli("kv", "add", "config", "--history", "5", "--ttl", "1h", "--replicas", "1", "--max-value-size", "1KB")
    assert "Information for Key-Value Store Bucket config" in r.out and "History Kept: 5" in r.out

    async def cfg(nc, js):
        return (await js.stream_info("KV_config")).config

    c = cli.state(cfg)
    assert c.max_msgs_per_subject == 5 and c.max_age == 3600 and c.max_msg_size == 1024 and c.allow_direct

    assert cli("kv", "put", "config", "database.host", "pg.internal").out.strip() == "pg.internal"
    cli("kv", "put", "config", "database.port", "5432")
    r = cli("kv", "get", "config", "database.host")
    assert "config > database.host revision: 1" in r.out and "pg.internal" in r.out
    assert cli("kv", "get", "config", "database.port", "--raw").out == "5432"
    r = cli("kv", "create", "config", "database.port", "1", ok=False)
    assert r.rc == 1 and "wrong last sequence" in r.err
    cli("kv", "update", "config", "database.host", "pg2.internal", "1")
    r = cli("kv", "update", "config", "database.host", "pg3", "1", ok=False)
    assert r.rc == 1
    cli("kv", "del", "config", "database.host")
    r = cli("kv", "get", "config", "database.host", ok=False)
    assert r.rc == 1 and "not found" in r.err
    r = cli("kv", "history", "config", "database.host")
    if cli.kind == "jsedge" and r.rc != 0:
        import pytest

        pytest.xfail("KV history needs ordered push consumers in jsedge")
    assert "pg.internal" in r.out and "pg2.internal" in r.out and "DEL" in r.out
    assert cli("kv", "ls", "config").out.split() == ["database.port"]
    r = cli("kv", "ls")
    assert "config" in r.out and "Key-Value Buckets" in r.out
    info = json.loads(cli("kv", "info", "config", "--json").out)
    assert info["config"]["name"] == "KV_config"
    cli("kv", "purge", "config", "database.port", "-f")
    assert "No keys" in cli("kv", "ls", "config").out
    cli("kv", "rm", "config", "-f")
    r = cli("kv", "info", "config", ok=False)
    assert r.rc == 1 and "bucket config not found" in r.err


def test_kv_watch(cli):
    cli("kv", "add", "w")
    cli("kv", "put", "w", "a", "1")
    proc = cli.popen("kv", "watch", "w", "--count", "2", "--wait", "5s")
    try:
        from test_pubsub_cli import _finish, _wait_line

        _wait_line(proc, "PUT w > a: 1")
        cli("kv", "put", "w", "b", "2")
        rc, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert rc == 0, err
    assert "PUT w > b: 2" in out


def test_object_put_get_ls_rm(cli, tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    assert "Information for Object Store Bucket files" in cli("object", "add", "files").out
    r = cli("object", "put", "files", str(src), "--name", "dir/big.bin")
    assert "Stored dir/big.bin" in r.out and "3 chunks" in r.out and "100%" in r.err
    r = cli("object", "ls", "files")
    if cli.kind == "jsedge" and r.rc != 0:
        import pytest

        pytest.xfail("object listing needs ordered push consumers in jsedge")
    assert "dir/big.bin" in r.out and "293 KiB" in r.out
    dst = tmp_path / "out.bin"
    r = cli("object", "get", "files", "dir/big.bin", "-O", str(dst))
    assert dst.read_bytes() == data and "Downloading dir/big.bin" in r.err
    meta = json.loads(cli("object", "info", "files", "dir/big.bin", "--json").out)
    assert meta["size"] == 300_000 and meta["digest"].startswith("SHA-256=")
    assert "files" in cli("object", "ls").out
    cli("object", "rm", "files", "dir/big.bin", "-f")
    assert "No objects" in cli("object", "ls", "files").out
    cli("object", "rm", "files", "-f")
    assert "No Object Store buckets" in cli("object", "ls").out
