"""nats.js against a cluster: discovery, traffic across routes, reconnect, lame duck mode.

tests/js/cluster.mjs drives the official nats.js client (@nats-io/transport-node, pinned in
tests/js/package.json) and reports what it observed as JSON; every scenario runs on a three-node
jsedge cluster and on a three-node nats-server cluster with the same assertions. Scenarios that
need the cluster changed midway (a node started, killed or sent SIGUSR2) are a dialogue: the driver
prints `{"ready": ...}` and waits for one line on stdin, which the test writes once it has acted.

Node dependencies are installed on first use with `npm ci --prefix tests/js`, as in
tests/kv/test_nats_js.py; the tests skip only when `node` or `npm` is not on PATH.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_ROOT, Cluster, ServerProcess, skip_unless_pure_pass_in_ci

JS_DIR = REPO_ROOT / "tests" / "js"
SCRIPT = JS_DIR / "cluster.mjs"
NPM_TIMEOUT = 240
SCENARIO_TIMEOUT = 45  # the driver's own watchdog fires 5 s earlier

# the first test may have to run `npm ci`; every scenario itself is bounded by SCENARIO_TIMEOUT
pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

CLUSTERS = {
    "jsedge": ["jsedge", "jsedge", "jsedge"],
    "nats": ["nats", "nats", "nats"],
}
LAME_DUCK_CONFIG = 'lame_duck_duration: "30s"\nlame_duck_grace_period: "1s"\n'

_install_lock = threading.Lock()


# ------------------------------------------------------------------ node (as in tests/kv/test_nats_js.py)


def _installed() -> bool:
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        try:
            if json.loads((JS_DIR / "node_modules" / name / "package.json").read_text()).get("version") != version:
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


@pytest.fixture(params=list(CLUSTERS))
def kinds(request) -> list[str]:
    return CLUSTERS[request.param]


class Driver:
    """cluster.mjs as a child process: JSON lines out, one stdin line per `ready`. Every read is
    bounded by the scenario's deadline; the process is killed (by PID) on exit."""

    def __init__(self, node: str, scenario: str, urls: list[str], timeout: float = SCENARIO_TIMEOUT) -> None:
        self.scenario = scenario
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        env = dict(os.environ, CLUSTER_WATCHDOG_MS=str(int((timeout - 5) * 1000)))
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), scenario, *urls],
            cwd=str(JS_DIR),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str | None] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in iter(stream.readline, ""):
            sink(line.rstrip("\n"))
        sink(None)  # EOF

    def _message(self) -> dict[str, Any]:
        """The next JSON line; a `fatal` one (or EOF, or the deadline) fails the test."""
        while True:
            remaining = self.deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"cluster.mjs {self.scenario}: no output within {self.timeout}s") from None
            if line is None:
                self.proc.wait(5)
                self._threads[1].join(2)
                raise AssertionError(
                    f"cluster.mjs {self.scenario} ended (rc {self.proc.returncode}):\n" + self.errors()
                )
            if not line.startswith("{"):
                continue
            message: dict[str, Any] = json.loads(line)
            assert "fatal" not in message, f"cluster.mjs {self.scenario}: {message['fatal']}\n" + self.errors()
            return message

    def errors(self) -> str:
        return "\n".join(line for line in self.stderr if line is not None)

    def ready(self) -> dict[str, Any]:
        message = self._message()
        assert "ready" in message, message
        return message["ready"]

    def answer(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        message = self._message()
        assert "result" in message, message
        assert self.proc.wait(max(self.deadline - time.monotonic(), 1)) == 0, self.errors()
        return message["result"]

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for thread in self._threads:  # the pumps end at EOF, before their pipes are closed
            thread.join(2)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def hostport(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


def _pool(seed: str, *gossiped: str) -> list[dict[str, Any]]:
    """nats.js' server pool as cluster.mjs reports it (sorted by host:port)."""
    entries = [{"listen": seed, "gossiped": False}] + [{"listen": hp, "gossiped": True} for hp in gossiped]
    return sorted(entries, key=lambda e: e["listen"])


ROAMING_TRAFFIC = {
    "to_two": {"data": "FROM ROAMING", "hop": "two"},
    "to_roaming": {"data": "TO ROAMING", "hop": "roaming"},
    "last": [{"subject": "to.roaming", "data": "last", "trace": "7"}],
}


# ------------------------------------------------------------------------------ scenarios


def test_discovery_of_joining_and_leaving_members(node_js: str, kinds: list[str]) -> None:
    with Cluster(kinds, start=False) as cluster:
        cluster.start(0)
        cluster.start(1)
        cluster.wait_mesh()
        with Driver(node_js, "discovery", [cluster[0].url]) as driver:
            assert driver.ready() == {"stage": "start node 2"}
            cluster.start(2)
            driver.answer(hostport(cluster[2]))
            assert driver.ready() == {"stage": "kill node 2"}
            n2 = hostport(cluster[2])
            cluster.kill(2)
            driver.answer(n2)
            r = driver.result()
    n0, n1 = hostport(cluster[0]), hostport(cluster[1])
    assert r["pool"] == _pool(n0, n1)
    assert r["current"] == n0
    assert r["info"] == {"cluster": "c1", "connect_urls": sorted([n0, n1])}
    assert r["join_update"] == {"type": "update", "added": [n2], "deleted": []}
    assert r["pool_after_join"] == _pool(n0, n1, n2)
    assert r["info_after_join"] == sorted([n0, n1, n2])
    assert r["leave_update"] == {"type": "update", "added": [], "deleted": [n2]}
    assert r["pool_after_leave"] == _pool(n0, n1)
    assert r["info_after_leave"] == sorted([n0, n1])
    assert r["current_after"] == n0
    assert r["disconnects"] == []


def test_traffic_across_the_cluster(node_js: str, kinds: list[str]) -> None:
    with Cluster(kinds) as cluster:
        cluster.wait_mesh()
        with Driver(node_js, "traffic", [cluster[i].url for i in range(3)]) as driver:
            r = driver.result()
        assert r["connected"] == [hostport(cluster[i]) for i in range(3)]
    new = {"subject": "orders.new", "data": "from node 0", "trace": "42"}
    assert r["fanout"] == {
        "b": [new, {"subject": "orders.deep.x", "data": "only the > subscriber", "trace": None}],
        "c": [new],
    }
    assert r["request_a_to_c"] == {"data": "HELLO", "hop": "c"}
    assert r["request_c_to_a"] == {"data": "WORLD", "hop": "a"}
    assert r["request_b_to_c"] == {"data": "ALSO", "hop": "c"}
    assert r["no_responders"] == {
        "error": "RequestError",
        "message": "no responders: 'svc.nobody'",
        "cause": "NoResponders",
    }
    assert r["queue"] == {"total": 200, "distinct": 200, "per_member": [True, True]}


def test_reconnect_to_a_discovered_member(node_js: str, kinds: list[str]) -> None:
    with Cluster(kinds) as cluster:
        cluster.wait_mesh()
        n0, n1, n2 = (hostport(cluster[i]) for i in range(3))
        with Driver(node_js, "reconnect", [cluster[i].url for i in range(3)]) as driver:
            assert driver.ready() == {"stage": "kill node 0", "server": n0}
            cluster.kill(0)  # SIGKILL
            driver.answer("killed")
            r = driver.result()
    assert r["pool"] == _pool(n0, n1, n2)
    assert r["before"] == ROAMING_TRAFFIC and r["current_before"] == n0
    assert r["current_after"] in (n1, n2)
    assert r["events"] == [{"type": "disconnect", "server": n0}, {"type": "reconnect", "server": r["current_after"]}]
    assert r["after"] == ROAMING_TRAFFIC
    assert r["info_after"] == sorted([n1, n2])
    assert r["pool_after"] == _pool(n0, n1, n2)


def test_lame_duck_mode(node_js: str, kinds: list[str], tmp_path: Path) -> None:
    config = tmp_path / "lame_duck.conf"
    config.write_text(LAME_DUCK_CONFIG)
    with Cluster(kinds, extra_args=["-c", str(config)]) as cluster:
        cluster.wait_mesh()
        n0, n1, n2 = (hostport(cluster[i]) for i in range(3))
        with Driver(node_js, "ldm", [cluster[i].url for i in range(3)]) as driver:
            assert driver.ready() == {"stage": "lame duck node 0", "server": n0}
            cluster[0].signal(signal.SIGUSR2)
            driver.answer("ldm")
            r = driver.result()
        assert cluster[0].wait_exit(20) == 0  # the lame duck shuts down once its clients are gone
    assert r["before"] == ROAMING_TRAFFIC and r["current_before"] == n0
    assert r["ldm"] == {"type": "ldm", "server": n0}
    # the client pinned to node 1 learns from node 1 that node 0 is leaving
    assert r["peer_update"] == {"type": "update", "added": [], "deleted": [n0]}
    assert r["current_after"] in (n1, n2)
    assert r["events"] == [
        {"type": "ldm", "server": n0},
        {"type": "disconnect", "server": n0},
        {"type": "reconnect", "server": r["current_after"]},
    ]
    assert r["after"] == ROAMING_TRAFFIC
    assert r["peer_events"] == []


def test_lame_duck_info_lists_only_the_other_members(node_js: str, kinds: list[str], tmp_path: Path) -> None:
    """The ldm INFO (as nats.js keeps it in nc.info) lists the other members only, not the node
    that is leaving (nats-server's sendLDMToClients)."""
    config = tmp_path / "lame_duck.conf"
    config.write_text(LAME_DUCK_CONFIG)
    with Cluster(kinds, extra_args=["-c", str(config)]) as cluster:
        cluster.wait_mesh()
        n0, n1, n2 = (hostport(cluster[i]) for i in range(3))
        with Driver(node_js, "ldminfo", [cluster[0].url]) as driver:
            assert driver.ready() == {"stage": "lame duck node 0", "server": n0}
            cluster[0].signal(signal.SIGUSR2)
            driver.answer("ldm")
            r = driver.result()
    assert r["before"] == sorted([n0, n1, n2])
    assert r["at_ldm"] == {"server": n0, "ldm": True, "connect_urls": sorted([n1, n2])}


def test_kv_and_object_store_with_three_replicas_through_a_leader_kill(node_js: str, kinds: list[str]) -> None:
    """nats.js KV (put, compare-and-set, history, watch) and object store buckets with replicas: 3;
    the KV stream's leader is killed midway and everything goes on through the new one."""
    if "nats" not in kinds:
        # over a minute per kind (nats.js's 30 s heartbeats): CI runs nats-server's side in the
        # compiled pass and jsedge's in the pure one, whose twins the other cluster tests cover too
        skip_unless_pure_pass_in_ci("a minute of nats.js heartbeats; nats-server's side runs in the compiled pass")
    env = {"JSEDGE_RAFT_HEARTBEAT": "0.2", "JSEDGE_RAFT_ELECTION": "0.8-1.6", "JSEDGE_RAFT_LOST_QUORUM": "2.5"}
    with Cluster(kinds, extra_args=["-js", "-sd", "js"], env=env) as cluster:
        cluster.wait_mesh()
        with Driver(node_js, "kvr3", [s.url for s in cluster.servers], timeout=150) as driver:
            ready = driver.ready()
            cluster.kill(int(ready["leader"][1:]) - 1)
            driver.answer("killed")
            result = driver.result()
    # nats-server answers a KV get (a direct get) from any replica, and a follower may not have the
    # put just acknowledged yet (seen on a loaded machine: "3"); jsedge's answer is always the put's
    stale_ok = ("3", "5") if "nats" in kinds else ("5",)
    assert result["get_after"] in stale_ok, result
    assert result == {
        "replicas": 3,
        "put": [1, 2, 3],
        "update": 4,
        "update_stale": "wrong last sequence: 4",
        "obj": {"size": 300_000, "chunks": 3},
        "put_after": result["put_after"],
        "get_after": result["get_after"],
        "cas_after": result["put_after"] + 1,
        "history": ["3", "5", "6"],
        "obj_get": True,
        "watched": ["3", "5", "6"],
        "leader_changed": True,
    }, result
