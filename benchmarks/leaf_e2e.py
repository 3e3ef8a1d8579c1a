"""Leaf node link: jsedge as the leaf against nats-server as the leaf, the same nats-server hub.

    python benchmarks/leaf_e2e.py [--seconds 4] [--json out.json]

For each leaf kind: a nats-server hub (pinned to the generator's CPU) and the leaf (pinned to the
server CPU, as in benchmarks/e2e.py), then with benchmarks/loadgen.py: publishers on the leaf and a
subscriber on the hub, 16 B (leaf → hub throughput, delivered msgs/s), and a responder on the hub
answering requests made on the leaf (latency through the link and back, p50/p99). Ratio is jsedge /
nats-server. Not a test: results go to benchmarks/README.md (issue 15's goals: throughput >= 0.7x,
p50 <= 1.2x).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import loadgen
from e2e import GEN_CPU, SERVER_CPU, free_port

HOST = "127.0.0.1"


def spawn(argv: list[str], cpu: int, log: Path) -> subprocess.Popen[bytes]:
    if shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_log(log: Path, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace")) if log.exists() else None
        if match:
            return match
        time.sleep(0.05)
    raise RuntimeError(f"{log}: no line matching {pattern!r}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run(kind: str, seconds: float, tmp: Path) -> dict[str, float]:
    hub_port, hub_leaf_port, leaf_port = free_port(), free_port(), free_port()
    hub_conf = tmp / f"hub-{kind}.conf"
    hub_conf.write_text(f"port: {hub_port}\nleafnodes {{ port: {hub_leaf_port} }}\n")
    leaf_conf = tmp / f"leaf-{kind}.conf"
    leaf_conf.write_text(
        f"port: {leaf_port}\nserver_name: leaf\n"
        f'leafnodes {{ remotes: [ {{ url: "nats-leaf://{HOST}:{hub_leaf_port}" }} ] }}\n'
    )
    hub = spawn(["nats-server", "-c", str(hub_conf), "-a", HOST], GEN_CPU, tmp / f"hub-{kind}.log")
    leaf_argv = [sys.executable, "-m", "jsedge"] if kind == "jsedge" else ["nats-server"]
    leaf_log = tmp / f"leaf-{kind}.log"
    try:
        wait_log(tmp / f"hub-{kind}.log", "Server is ready")
        leaf = spawn([*leaf_argv, "-c", str(leaf_conf), "-a", HOST], SERVER_CPU, leaf_log)
        try:
            wait_log(leaf_log, "Leafnode connection created")
            flow = loadgen.run_pubsub(HOST, leaf_port, 16, subs=1, seconds=seconds, sub_port=hub_port, settle=0.5)
            latency = loadgen.run_reqrep(HOST, leaf_port, 2000, 200, 16, responder_port=hub_port, settle=0.5)
            return {
                "leaf_to_hub_msgs_per_s": flow["delivered_per_s"],
                "p50_us": latency["p50_us"],
                "p99_us": latency["p99_us"],
            }
        finally:
            stop(leaf)
    finally:
        stop(hub)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    loadgen.set_generator_cpus({GEN_CPU})
    with tempfile.TemporaryDirectory() as tmp:
        results = {kind: run(kind, args.seconds, Path(tmp)) for kind in ("nats", "jsedge")}
    rows = [
        ("leaf → hub 16 B (msgs/s delivered)", "leaf_to_hub_msgs_per_s", ">= 0.7x"),
        ("request leaf → hub → leaf p50 (us)", "p50_us", "<= 1.2x"),
        ("request leaf → hub → leaf p99 (us)", "p99_us", ""),
    ]
    print("| scenario | nats-server leaf | jsedge leaf | ratio | goal |")
    print("|---|---|---|---|---|")
    for label, key, goal in rows:
        a, b = results["nats"][key], results["jsedge"][key]
        print(f"| {label} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | {goal} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
