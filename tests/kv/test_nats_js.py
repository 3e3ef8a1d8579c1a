"""The KV, object-store and article scenarios through nats.js, on jsedge and on nats-server.

A second client implementation keeps the server honest: tests/js/kv_obj.mjs drives the official
nats.js packages (@nats-io/transport-node, jetstream, kv, obj; exact versions pinned in
tests/js/package.json + package-lock.json) and prints one JSON object of observations that the
tests below assert on. The expected values were captured against nats-server 2.15.1.

Node dependencies are installed on first use with `npm ci --prefix tests/js` (into
tests/js/node_modules, gitignored). The tests skip only when `node` or `npm` is not on PATH; a
failing install is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import REPO_ROOT

JS_DIR = REPO_ROOT / "tests" / "js"
SCRIPT = JS_DIR / "kv_obj.mjs"
NPM_TIMEOUT = 240
SCENARIO_TIMEOUT = 30

# the first test may have to run `npm ci`; every scenario itself is bounded by SCENARIO_TIMEOUT
pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

_install_lock = threading.Lock()


def _installed() -> bool:
    """Every pinned dependency is present at its pinned version."""
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        pkg = JS_DIR / "node_modules" / name / "package.json"
        try:
            if json.loads(pkg.read_text()).get("version") != version:
                return False
        except (OSError, ValueError):
            return False
    return True


@pytest.fixture(scope="session")
def node_js() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("nats.js tests need Node.js: `node`/`npm` not on PATH")
    with _install_lock:
        if not _installed():
            proc = subprocess.run(
                [npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=str(JS_DIR),
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            assert proc.returncode == 0, f"npm ci failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            assert _installed(), "npm ci succeeded but the pinned @nats-io packages are missing"
    return node


@pytest.fixture
def js_server(server_factory, tmp_path):
    return server_factory(args=["-js", "-sd", str(tmp_path)])


def run_scenario(node: str, server, scenario: str) -> dict:
    env = dict(os.environ, KV_OBJ_WATCHDOG_MS=str((SCENARIO_TIMEOUT - 5) * 1000))
    proc = subprocess.run(
        [node, str(SCRIPT), server.url, scenario],
        cwd=str(JS_DIR),
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON from kv_obj.mjs {scenario} (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert "fatal" not in result, f"{scenario} on {server.kind}: {result['fatal']}\n{proc.stderr}"
    assert proc.returncode == 0, proc.stderr
    return result


def _e(key, value, revision, operation="PUT", delta=0):
    return {
        "key": key,
        "value": value,
        "revision": revision,
        "operation": operation,
        "delta": delta,
        "length": len(value),
    }


def test_kv_operations(node_js, js_server):
    r = run_scenario(node_js, js_server, "kv")
    st = r["status"]
    assert st["bucket"] == "cfg" and st["values"] == 0 and st["history"] == 5 and st["ttl"] == 3_600_000
    assert st["max_msg_size"] == 1024 and st["allow_direct"] is True and st["discard"] == "new"
    assert st["subjects"] == ["$KV.cfg.>"] and st["max_msgs_per_subject"] == 5
    assert st["allow_rollup_hdrs"] is True and st["duplicate_window"] == 120 * 10**9 and st["replicas"] == 1

    assert r["put"] == [1, 2, 3]
    assert r["get_a"] == _e("a", "2", 2)
    assert r["get_a_rev1"] == _e("a", "1", 1)
    assert r["get_a_rev3"] is None and r["get_missing"] is None
    assert r["create_b"] == 4
    assert r["create_b_again"] == {"error": "wrong last sequence: 4", "code": 10071}
    assert r["update_b"] == 5
    assert r["update_b_stale"] == {"error": "wrong last sequence: 5", "code": 10071}
    assert r["put_prev_ok"] == 6
    assert r["put_too_big"] == {"error": "message size exceeds maximum allowed", "code": 10054}
    assert r["get_deleted"] == _e("a", "", 7, "DEL")
    assert r["create_after_delete"] == 8
    assert r["delete_wrong_prev"] == {"error": "wrong last sequence: 8", "code": 10071}
    assert r["get_purged"] == _e("b", "", 9, "PURGE")
    assert r["history_b"] == [_e("b", "", 9, "PURGE")]
    assert r["history_a"] == [
        _e("a", "1", 1, delta=3),
        _e("a", "2", 2, delta=2),
        _e("a", "", 7, "DEL", 1),
        _e("a", "again", 8),
    ]
    assert r["keys"] == ["a", "other.key"] and r["keys_filtered"] == ["other.key"]
    assert r["keys_multi"] == ["a", "other.key"]
    assert r["state"] == {"messages": 6, "last_seq": 9, "num_deleted": 3}
    assert r["after_purge_deletes_young"] == 3 and r["after_purge_deletes_all"] == 1
    assert r["keys_after"] == ["a"]
    assert r["reopen_get"] == _e("a", "again", 8)
    assert r["list"] == ["cfg", "second"]
    assert r["destroy"] is True
    assert r["open_destroyed"] == {"error": "stream not found", "code": 10059}


def _w(key, value, revision, operation="PUT", delta=0, update=False, length=None):
    d = _e(key, value, revision, operation, delta)
    if length is not None:
        d["length"] = length
    d["isUpdate"] = update
    return d


def test_kv_watch(node_js, js_server):
    r = run_scenario(node_js, js_server, "kvwatch")
    assert r["empty_watch"] == [_w("first", "1", 1, update=True), _w("first", "2", 2, update=True)]
    # nats.js counts num_pending of the consumer: the last initial value is already flagged isUpdate
    assert r["initial"] == [_w("svc.a", "2", 4, delta=1), _w("svc.b", "", 7, "DEL", update=True)]
    assert r["updates"] == [_w("svc.c", "new", 8, update=True), _w("svc.a", "", 10, "PURGE", update=True)]
    assert [(e["key"], e["revision"], e["delta"]) for e in r["watch_all_initial"]] == [
        ("first", 2, 4),
        ("svc.b", 7, 3),
        ("svc.c", 8, 2),
        ("other", 9, 1),
        ("svc.a", 10, 0),
    ]
    assert r["watch_all_update"] == [_w("z", "z", 11, update=True)]
    assert r["watch_history"] == [_w("other", "x", 6, delta=1), _w("other", "y", 9, update=True)]
    assert r["watch_updates_only"] == [_w("u", "1", 12, update=True)]
    # headers_only through filter_subjects: no value, the length comes from Nats-Msg-Size
    assert r["watch_multi_headers_only"] == [
        _w("svc.c", "", 8, delta=1, length=3),
        _w("z", "", 11, update=True, length=1),
    ]
    assert [(e["key"], e["revision"], e["delta"]) for e in r["watch_resume"]] == [
        ("other", 9, 3),
        ("svc.a", 10, 2),
        ("z", 11, 1),
    ]
    assert [(e["key"], e["operation"]) for e in r["watch_ignore_deletes"]] == [("svc.c", "PUT"), ("svc.a", "PURGE")]
    assert r["many"] == {"count": 20, "updates": 1, "last_delta": 0, "late": _w("k.0.v", "late", 61, update=True)}
    assert r["many_keys"] == 20


def test_kv_per_key_ttl_and_limit_markers(node_js, js_server):
    r = run_scenario(node_js, js_server, "kvttl")
    assert r["config"] == {"allow_msg_ttl": True, "subject_delete_marker_ttl": 10**9, "max_age": 10**9}
    assert r["status_marker_ttl"] == 1000
    assert r["short_ttl_header"] == "1s"
    assert r["watch_first"] == [["short", "PUT"], ["p", "PUT"], ["p", "PURGE"]]
    assert r["watch_marker"] == [["short", "PURGE", 0]]
    assert r["marker_reason"] == "MaxAge"
    assert r["get_short_after"] in (None, _e("short", "", 4, "PURGE"))
    assert r["final_messages"] == 0


def test_object_store(node_js, js_server):
    r = run_scenario(node_js, js_server, "obj")
    assert r["config"] == {
        "subjects": ["$O.files.C.>", "$O.files.M.>"],
        "allow_direct": True,
        "allow_rollup_hdrs": True,
        "discard": "new",
    }
    assert r["list_empty"] == 0
    assert r["put_big"]["size"] == 300_000 and r["put_big"]["chunks"] == 3
    assert r["put_big"]["digest"] == r["put_big"]["expected_digest"]
    assert r["watch_puts"] == [
        ["dir/a.txt", 300000, False, True],
        ["small", 18, False, True],
        ["empty", 0, False, True],
    ]
    assert r["get_big_sha"] == r["expected_big_sha"]
    assert r["get_small"] == "hello object store" and r["get_empty_len"] == 0
    assert r["get_stream"] == {"len": 300000, "error": "undefined"}
    assert r["get_missing"] is None and r["info_missing"] is None
    assert r["info_small"] == {"name": "small", "size": 18, "chunks": 5, "digest_ok": True, "bucket": "files"}
    assert r["reput_get"] == "v2"
    assert r["old_chunks"] == {"ok": None}  # the old nuid's chunks were purged
    assert r["link"] == {"name": "lnk", "link": {"bucket": "other", "name": "target"}}
    assert r["link_get"] == "linked data"
    assert r["store_link"] == {"bucket": "other"}
    assert r["store_link_get"]["error"] == "link is a bucket"
    assert r["update_meta"] == {"description": "tiny", "metadata": {"k": "v"}, "size": 18}
    assert r["renamed_get"] == "hello object store" and r["old_name_info"] is None
    assert r["delete"]["success"] is True
    assert r["deleted_info"] == {"name": "empty", "deleted": True, "size": 0, "chunks": 0, "digest": ""}
    assert r["list"] == ["dir/a.txt", "lnk", "renamed", "storelink"]
    assert r["watch_history"] == 3
    assert "digests do not match" in r["digest_mismatch"]["error"]
    assert r["sealed"] is True
    assert r["put_after_seal"] == {"error": "invalid operation on sealed stream", "code": 10109}
    assert r["status"] == {"bucket": "files", "sealed": True, "size_matches": True}
    assert r["destroy"] is True


def _m(subject, seq, data):
    return {"subject": subject, "seq": seq, "data": data}


def test_direct_get_forms_and_last_per_subject(node_js, js_server):
    r = run_scenario(node_js, js_server, "direct")
    assert r["seq"] == _m("d.b", 2, "2")
    assert r["last_by_subj"] == _m("d.a", 3, "3")
    assert r["last_by_subj_wild"] == _m("d.b", 5, "5")
    assert r["next_by_subj"] == _m("d.b", 5, "5")
    assert r["missing"] is None
    assert r["batch"] == [_m("d.b", 2, "2"), _m("d.a", 3, "3"), _m("d.c.x", 4, "4")]
    assert r["batch_subj"] == [_m("d.b", 2, "2"), _m("d.b", 5, "5")]
    assert r["multi_last"] == [_m("d.a", 3, "3"), _m("d.b", 5, "5")]
    assert r["multi_last_wild"] == [_m("d.a", 3, "3"), _m("d.c.x", 4, "4"), _m("d.b", 5, "5")]
    assert r["multi_last_up_to"] == [_m("d.b", 2, "2"), _m("d.a", 3, "3")]
    assert r["ordered_num_pending"] == 3
    assert r["ordered_lps"] == [["d.a", 3, 2, "1", 0], ["d.c.x", 4, 1, "1", 0], ["d.b", 5, 0, "1", 0]]


def test_article_programs(node_js, js_server):
    r = run_scenario(node_js, js_server, "article")
    stream = ["ORDERS", 7 * 24 * 3600 * 10**9, 5 * 1024**3, 120 * 10**9]
    assert r["first"] == {
        "stream": stream,
        "seq": 1,
        "duplicate": False,
        "processed": [["ord-002", 129.99, 1]],
        "nakked": [],
    }
    # second run: the same message id is a duplicate; the bad order is nak'ed and redelivered
    # within the same fetch until max_deliver (5) is exhausted
    assert r["second"] == {
        "stream": stream,
        "seq": 1,
        "duplicate": True,
        "processed": [["ord-001", 49.99, 1]],
        "nakked": [3, 3, 3, 3, 3],
    }
    assert r["redelivered"] is None
    assert r["consumer"] == {"num_pending": 0, "num_ack_pending": 0, "max_deliver": 5}
    assert r["kv_puts"] == [1, 2] and r["kv_get"] == "pg.internal"
    assert r["kv_after_del"] == _e("database.host", "", 3, "DEL")
    assert r["kv_watch_all"] == [
        ["database.host", "pg.internal", "PUT"],
        ["database.port", "5432", "PUT"],
        ["database.host", "", "DEL"],
    ]
    assert r["kv_put"] == 4 and r["kv_entry"] == ["pg.internal", 4] and r["kv_cas"] == 5
    assert r["kv_cas_stale"] == {"error": "wrong last sequence: 5", "code": 10071}
    assert r["kv_watch_initial"] == [["database.port", "5432", False], ["database.host", "pg2.internal", True]]
    assert r["kv_watch_update"] == [["database.port", "6432", 6, True]]


def test_npm_lock_pins_exact_versions():
    """package.json pins exact versions and the committed lock file agrees (CI installs from it)."""
    pkg = json.loads((JS_DIR / "package.json").read_text())
    lock = json.loads((JS_DIR / "package-lock.json").read_text())
    deps = pkg["dependencies"]
    expected = {
        "@nats-io/transport-node",
        "@nats-io/jetstream",
        "@nats-io/kv",
        "@nats-io/obj",
        "nats.ws",
        "playwright-core",
    }
    assert set(deps) == expected
    for name, version in deps.items():
        assert version[0].isdigit(), f"{name} is not pinned exactly: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert "tests/js/node_modules/" in Path(REPO_ROOT / ".gitignore").read_text().splitlines()
