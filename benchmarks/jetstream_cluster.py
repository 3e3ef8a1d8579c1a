"""Clustered JetStream (R3) benchmarks: a jsedge cluster against nats-server clusters, in one run, as ratios.

    python benchmarks/jetstream_cluster.py [--quick] [--json out.json] [--servers jsedge,nats,nats-always]

For each kind in turn (nats-server default, nats-server with ``jetstream { sync_interval: always }``, then
jsedge) a 3-node cluster is started on loopback with ``tests/helpers.py``'s ``Cluster`` (every node with
``-js -sd js`` in its own temp directory under /tmp, monitoring on), the script waits for the meta leader
(``$JS.API.INFO`` answers without an error), creates an R3 file stream ``BENCH`` on ``bench.>`` and runs:

1. **publish, 256 in flight**: 128 B payloads on ``bench.x``, pipelined PUBs with distinct reply subjects
   (``js_e2e.pipelined``: raw blocking socket, replies counted on one wildcard inbox, any error reply fails
   the run), a fixed count (200 000; 20 000 with ``--quick``) with a deadline (60 s; 15 s with ``--quick``).
   The client connects to the stream leader's node.
2. **bytes written per message per node**: ``write_bytes`` of ``/proc/<pid>/io`` of each node, read before
   the measured publish and again once every replica is current and 1 s more has passed; the sum over the
   3 nodes / 3 / messages acked. (``write_bytes`` counts page-cache pages dirtied, 4 KiB each time a clean
   page is written to, e.g. again after an fsync, plus direct I/O; it is what the process makes the disk
   write, not the bytes it passed to ``write()``.) The growth of each node's store directory (``du -sb``)
   per message is reported alongside for reference.
3. **failover**: a client on a surviving node sends one 128 B publish every 5 ms (each with its own reply
   subject, no waiting); once acks flow, the stream leader (``STREAM.INFO`` ``cluster.leader``, mapped to
   its process) is killed with SIGKILL, and the figure is the time from the kill to the first successful
   PubAck of a publish sent after the kill. The node is restarted and every replica current again before
   the next trial (5 trials; 1 with ``--quick``); the median is reported.

jsedge runs with its default Raft timing (nats-server's: heartbeat 1 s, election 4-9 s): the script removes
``JSEDGE_RAFT_HEARTBEAT``/``JSEDGE_RAFT_ELECTION``/``JSEDGE_RAFT_LOST_QUORUM`` from the servers' environment.
nats-server has no such knob, so defaults are compared with defaults.

Nothing is pinned: with 3 servers and the client on a 2-core machine, "one core per server" is impossible,
so the kinds run one cluster at a time, sharing all cores. The per-node CPU during the publish run is
recorded (sum of the 3 nodes, % of one core).

Ratios are jsedge / nats-server (``js/default``, ``js/always``). Goals (from the issue): 256-in-flight publish
>= 0.5x nats-server default **and** >= 5x ``always`` (jsedge fsyncs on a majority before every ack); failover
<= 1.0x nats-server default; bytes written per message per node <= 0.6x nats-server default.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import e2e  # noqa: E402
import js_e2e  # noqa: E402
from helpers import Cluster, ServerProcess  # noqa: E402

KINDS = ("jsedge", "nats", "nats-always")
LABELS = {"jsedge": "jsedge", "nats": "nats default", "nats-always": "nats always"}
ALWAYS_CONF = "jetstream {\n  sync_interval: always\n}\n"
RAFT_ENV = ("JSEDGE_RAFT_HEARTBEAT", "JSEDGE_RAFT_ELECTION", "JSEDGE_RAFT_LOST_QUORUM")
STREAM = "BENCH"
SUBJECT = b"bench.x"
FAILOVER_SUBJECT = b"bench.fo"
PAYLOAD = 128
WINDOW = 256
FAILOVER_PERIOD = 0.005
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- cluster


class BenchCluster(Cluster):
    """helpers.Cluster with an optional config file per node (nats-server's ``sync_interval: always`` has
    no command-line flag) and a longer start-up timeout (the suite may be sharing the cores)."""

    def __init__(self, kinds, *, config: str | None = None, **kw) -> None:
        self.config = config
        super().__init__(kinds, **kw)

    def start(self, index: int, port: int | None = None) -> ServerProcess:
        server = ServerProcess(
            self.kinds[index], self.args(index), self.config, http=True, port=port, env=self.env, ready_timeout=60
        )
        self.servers[index] = server
        return server


def start_cluster(kind: str, pure: bool) -> BenchCluster:
    env = {"JSEDGE_NO_EXTENSIONS": "1"} if pure else None
    config = ALWAYS_CONF if kind == "nats-always" else None
    server_kind = "jsedge" if kind == "jsedge" else "nats"
    cluster = BenchCluster([server_kind] * 3, name="bench", extra_args=["-js", "-sd", "js"], env=env, config=config)
    try:
        cluster.wait_mesh(30)
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


def wait_meta_leader(port: int, timeout: float = 90.0) -> float:
    """Poll ``$JS.API.INFO`` until it answers without an error; returns the seconds that took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            conn = js_e2e.Conn(port)
            try:
                conn.request("$JS.API.INFO", None, 2.0)
                return time.monotonic() - t0
            finally:
                conn.close()
        except (js_e2e.JSError, js_e2e.NoAnswer, OSError, EOFError) as exc:
            last = exc
            time.sleep(0.25)
    raise RuntimeError(f"no meta leader within {timeout:.0f}s (last: {last})")


def create_stream(port: int, timeout: float = 60.0) -> dict:
    """Create the R3 file stream, retrying while the cluster settles (peers not yet known, ...)."""
    cfg = {"name": STREAM, "subjects": ["bench.>"], "storage": "file", "num_replicas": 3}
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        conn = js_e2e.Conn(port)
        try:
            return conn.request(f"$JS.API.STREAM.CREATE.{STREAM}", cfg, 5.0)
        except (js_e2e.JSError, js_e2e.NoAnswer, OSError, EOFError) as exc:
            last = exc
            time.sleep(0.5)
        finally:
            conn.close()
    raise RuntimeError(f"could not create the stream within {timeout:.0f}s (last: {last})")


def stream_info(cluster: BenchCluster, timeout: float = 5.0) -> dict:
    """STREAM.INFO through the first running node that answers."""
    last: Exception | None = None
    for server in cluster.running():
        try:
            conn = js_e2e.Conn(server.port)
        except OSError as exc:
            last = exc
            continue
        try:
            return conn.request(f"$JS.API.STREAM.INFO.{STREAM}", None, timeout)
        except (js_e2e.JSError, js_e2e.NoAnswer, OSError, EOFError) as exc:
            last = exc
        finally:
            conn.close()
    raise RuntimeError(f"STREAM.INFO failed on every node: {last}")


def all_current(info: dict) -> bool:
    cl = info.get("cluster") or {}
    replicas = cl.get("replicas") or []
    return (
        bool(cl.get("leader"))
        and len(replicas) == 2
        and all(r.get("current") and not r.get("lag") and not r.get("offline") for r in replicas)
    )


def wait_current(cluster: BenchCluster, timeout: float = 90.0) -> dict:
    """Until the stream has a leader and both followers are current with no lag."""
    t0 = time.monotonic()
    info: dict = {}
    while time.monotonic() - t0 < timeout:
        try:
            info = stream_info(cluster, 2.0)
            if all_current(info):
                return info
        except RuntimeError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"stream replicas not current within {timeout:.0f}s: {info.get('cluster')}")


def node_index(name: str) -> int:
    """helpers.Cluster names node i ``n<i+1>``."""
    return int(name.lstrip("n")) - 1


# --------------------------------------------------------------------------- /proc


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/<pid>/io")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def du_sb(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def other_pytests() -> int:
    """How many pytest processes are running on the machine (not ours)."""
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"pytest" in cmd:
            n += 1
    return n


# --------------------------------------------------------------------------- scenarios


def warm_up(port: int, timeout: float = 60.0) -> None:
    """Single publishes until one is acked (the leader's subscription has reached the client's node),
    then 1000 pipelined ones."""
    conn = js_e2e.Conn(port)
    try:
        t0 = time.monotonic()
        while True:
            try:
                conn.request(SUBJECT, b"w" * PAYLOAD, 2.0)
                break
            except (js_e2e.JSError, js_e2e.NoAnswer) as exc:
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"no PubAck within {timeout:.0f}s: {exc}") from None
                time.sleep(0.1)
    finally:
        conn.close()
    ring = js_e2e.pub_ring([SUBJECT], b"_INBOX.warm", 4096)
    js_e2e.pipelined(port, ring, b"_INBOX.warm", WINDOW, 30.0, 1000)


def publish_run(cluster: BenchCluster, count: int, seconds: float) -> dict:
    info = wait_current(cluster)
    leader = info["cluster"]["leader"]
    via = cluster[node_index(leader)]
    warm_up(via.port)
    wait_current(cluster)
    pids = [s.pid for s in cluster.servers]
    dirs = [s.dir / "js" for s in cluster.servers]
    seq0 = stream_info(cluster)["state"]["last_seq"]
    wb0 = [write_bytes(p) for p in pids]
    du0 = [du_sb(d) for d in dirs]
    cpu0 = [cpu_seconds(p) for p in pids]
    ring = js_e2e.pub_ring([SUBJECT], b"_INBOX.p", 4096)
    t0 = time.monotonic()
    r = js_e2e.pipelined(via.port, ring, b"_INBOX.p", WINDOW, seconds, count)
    elapsed = time.monotonic() - t0
    cpu1 = [cpu_seconds(p) for p in pids]
    # the followers may still be applying: wait until every replica is current, then a little more
    t_settle = time.monotonic()
    info = wait_current(cluster)
    time.sleep(1.0)
    settle = time.monotonic() - t_settle
    wb1 = [write_bytes(p) for p in pids]
    du1 = [du_sb(d) for d in dirs]
    msgs = r["msgs"]
    stored = info["state"]["last_seq"] - seq0
    wb = [b - a for a, b in zip(wb0, wb1)]
    du = [b - a for a, b in zip(du0, du1)]
    return {
        "leader": leader,
        "via": via.port,
        "msgs": msgs,
        "stored": stored,
        "seconds": r["seconds"],
        "msgs_per_s": r["msgs_per_s"],
        "window": WINDOW,
        "payload": PAYLOAD,
        "client_cpu": r["client_cpu"],
        "nodes_cpu": sum(b - a for a, b in zip(cpu0, cpu1)) / elapsed,
        "node_cpu": [(b - a) / elapsed for a, b in zip(cpu0, cpu1)],
        "settle_s": settle,
        "write_bytes": wb,
        "write_bytes_per_msg_node": sum(wb) / 3 / msgs,
        "write_bytes_per_msg": [w / msgs for w in wb],
        "du_bytes": du,
        "du_per_msg_node": sum(du) / 3 / msgs,
    }


def failover_trial(cluster: BenchCluster, warm: float = 1.0, deadline: float = 90.0) -> dict:
    """Publish every FAILOVER_PERIOD from a surviving node, kill -9 the stream leader, time to the first
    successful PubAck of a publish sent after the kill."""
    info = wait_current(cluster)
    leader = info["cluster"]["leader"]
    victim = node_index(leader)
    via = next(i for i in range(3) if i != victim)
    pid = cluster[victim].pid
    conn = js_e2e.Conn(cluster[via].port)
    prefix = b"_INBOX.fo"
    conn.sub(prefix + b".*")
    sock = conn.sock
    payload = b"f" * PAYLOAD
    seq = 0
    kill_seq = None
    t_kill = None
    acked_before = 0
    errors: dict[str, int] = {}
    t_start = time.monotonic()
    next_send = t_start
    result: dict = {"leader": leader, "via": f"n{via + 1}"}
    try:
        while True:
            now = time.monotonic()
            if now >= next_send:
                seq += 1
                sock.sendall(b"PUB %s %s.%d %d\r\n%s\r\n" % (FAILOVER_SUBJECT, prefix, seq, PAYLOAD, payload))
                next_send = now + FAILOVER_PERIOD
            if t_kill is None and now - t_start >= warm and acked_before >= 10:
                kill_seq = seq
                t_kill = time.monotonic()
                os.kill(pid, signal.SIGKILL)
            if t_kill is None and now - t_start > 30:
                raise RuntimeError(f"only {acked_before} PubAcks before the kill in 30 s")
            if t_kill is not None and now - t_kill > deadline:
                result.update(failover_s=None, error=f"no PubAck within {deadline:.0f}s of the kill")
                break
            sock.settimeout(max(0.0005, next_send - time.monotonic()))
            try:
                f = conn.next_frame()
            except TimeoutError:
                continue
            if not f.subject.startswith(prefix + b"."):
                continue
            n = int(f.subject.rsplit(b".", 1)[1])
            ok = not f.status and b'"error"' not in f.payload
            if not ok:
                key = f.status.decode() or "error"
                if t_kill is not None:
                    errors[key] = errors.get(key, 0) + 1
                continue
            if t_kill is None:
                acked_before += 1
            elif n > kill_seq:
                result["failover_s"] = time.monotonic() - t_kill
                result["ack"] = json.loads(f.payload)
                break
    finally:
        conn.close()
        if t_kill is not None:
            cluster.kill(victim)  # reaps the killed process
    result["errors_after_kill"] = errors
    result["published_after_kill"] = seq - (kill_seq or seq)
    # back to three current replicas for the next trial
    cluster.restart(victim)
    try:
        info = wait_current(cluster)
        result["new_leader"] = info["cluster"]["leader"]
    except RuntimeError as exc:
        result["recover_error"] = str(exc)
    return result


# --------------------------------------------------------------------------- driver


def _say(kind: str, text: str) -> None:
    print(f"  [{kind}] {text}", flush=True)


def bench_kind(kind: str, args) -> dict:
    q = args.quick
    res: dict = {"name": kind}
    t0 = time.monotonic()
    cluster = start_cluster(kind, args.pure)
    try:
        res["mesh_s"] = time.monotonic() - t0
        res["meta_leader_s"] = wait_meta_leader(cluster[0].port) + res["mesh_s"]
        _say(kind, f"cluster up, meta leader after {res['meta_leader_s']:.1f} s from spawn")
        create_stream(cluster[0].port)
        info = wait_current(cluster)
        _say(kind, f"stream {STREAM} R3, leader {info['cluster']['leader']}")
        try:
            r = publish_run(cluster, 20_000 if q else 200_000, 15.0 if q else 60.0)
        except Exception as exc:  # a failing scenario is reported, the run continues
            r = {"error": f"{type(exc).__name__}: {exc}"}
            _say(kind, f"publish: ERROR {r['error']}")
        else:
            _say(
                kind,
                f"publish 256 in flight: {r['msgs_per_s'] / 1e3:.1f} k msgs/s ({r['msgs']} in {r['seconds']:.1f} s,"
                f" via leader {r['leader']}); nodes CPU {100 * r['nodes_cpu']:.0f} % of one core"
                f" ({', '.join(f'{100 * c:.0f}' for c in r['node_cpu'])}), client {100 * r['client_cpu']:.0f} %;"
                f" write_bytes/msg/node {r['write_bytes_per_msg_node']:.0f} B"
                f" ({', '.join(f'{w:.0f}' for w in r['write_bytes_per_msg'])}),"
                f" du/msg/node {r['du_per_msg_node']:.0f} B",
            )
        res["publish"] = r
        trials = []
        for i in range(args.trials):
            try:
                t = failover_trial(cluster)
            except Exception as exc:
                t = {"error": f"{type(exc).__name__}: {exc}"}
            trials.append(t)
            if t.get("failover_s") is not None:
                _say(
                    kind,
                    f"failover {i + 1}: {1000 * t['failover_s']:.0f} ms (killed {t['leader']}, client on {t['via']},"
                    f" new leader {t.get('new_leader', '?')}, error replies {t['errors_after_kill']})",
                )
            else:
                _say(kind, f"failover {i + 1}: ERROR {t.get('error')}")
        ok = [t["failover_s"] for t in trials if t.get("failover_s") is not None]
        res["failover"] = {
            "trials": trials,
            "median_s": statistics.median(ok) if ok else None,
            "max_s": max(ok) if ok else None,
            "min_s": min(ok) if ok else None,
        }
    finally:
        cluster.cleanup()
    res["wall_s"] = time.monotonic() - t0
    return res


def build_rows(s: dict) -> list[dict]:
    """Rows in js_e2e.render_table's shape (jsedge, nats default, nats always, both ratios)."""
    js, nd, na = s.get("jsedge"), s.get("nats"), s.get("nats-always")
    rows = []

    def ratio(a, b):
        return a / b if a is not None and b is not None and a > 0 and b > 0 else None

    def add(label, path, fmt, target=None, met=None, scale=1.0):
        vals = [js_e2e._g(x, *path) for x in (js, nd, na)]
        vals = [None if v is None else v * scale for v in vals]
        r_d, r_a = ratio(vals[0], vals[1]), ratio(vals[0], vals[2])
        rows.append(
            dict(
                scenario=label,
                jsedge=vals[0],
                nats=vals[1],
                nats_always=vals[2],
                ratio_default=r_d,
                ratio_always=r_a,
                target=target,
                met=None if met is None else met(r_d, r_a),
                fmt=fmt,
            )
        )

    def both(rd, ra):
        return None if rd is None or ra is None else rd >= 0.5 and ra >= 5.0

    add("R3 publish 256 in flight (msgs/s)", ("publish", "msgs_per_s"), "rate", ">= 0.5x default, >= 5x always", both)
    add("nodes CPU in publish (% of one core)", ("publish", "nodes_cpu"), "pct", scale=100)
    add(
        "write_bytes per msg per node (B)",
        ("publish", "write_bytes_per_msg_node"),
        "b1",
        "<= 0.6x default",
        lambda rd, ra: None if rd is None else rd <= 0.6,
    )
    add("store growth (du) per msg per node (B)", ("publish", "du_per_msg_node"), "b1")
    add(
        "failover kill -9 -> next ack, median (ms)",
        ("failover", "median_s"),
        "ms",
        "<= 1.0x default",
        lambda rd, ra: None if rd is None else rd <= 1.0,
        scale=1000,
    )
    add("failover, min of trials (ms)", ("failover", "min_s"), "ms", scale=1000)
    add("failover, max of trials (ms)", ("failover", "max_s"), "ms", scale=1000)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Clustered JetStream (R3): jsedge vs nats-server (default and always)")
    ap.add_argument("--quick", action="store_true", help="20 k messages (15 s box), one failover trial")
    ap.add_argument("--trials", type=int, help="failover trials per kind (default 5, 1 with --quick)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--servers", default=",".join(KINDS), help="comma list of jsedge,nats,nats-always")
    ap.add_argument("--pure", action="store_true", help="run jsedge with JSEDGE_NO_EXTENSIONS=1")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = ap.parse_args(argv)
    if args.trials is None:
        args.trials = 1 if args.quick else 5
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            ap.error(f"unknown server {k!r}")

    # servers inherit this environment: default Raft timing, compiled twins unless --pure
    for name in (*RAFT_ENV, "JSEDGE_NO_EXTENSIONS"):
        os.environ.pop(name, None)
    env = e2e.environment(args)
    env.update(server_cpu=None, generator_cpu=None, taskset=False, payload=PAYLOAD, window=WINDOW)
    env["twins"] = js_e2e.twins(args.pure)
    env["pytest_running_at_start"] = other_pytests()
    env["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"commit {env['commit']}{' (dirty)' if env['dirty'] else ''}, Python {env['python']}, Cython {env['cython']}, "
        f"loop {env['loop']}, jsedge twins {env['twins']}, {env['nats_server']}",
        flush=True,
    )
    print(
        f"{os.cpu_count()} cores, nothing pinned: 3 nodes + client share them, one cluster at a time; "
        f"jsedge Raft timing: defaults (election 4-9 s); pytest processes running: "
        f"{env['pytest_running_at_start']}; load average {' '.join(map(str, env['loadavg_before']))}",
        flush=True,
    )
    t_run = time.monotonic()
    results: dict = {"env": env, "servers": {}}
    for kind in sorted(kinds, key=lambda k: k == "jsedge"):  # nats baselines first
        print(f"== {LABELS[kind]}", flush=True)
        try:
            results["servers"][kind] = bench_kind(kind, args)
        except Exception as exc:
            print(f"  [{kind}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            results["servers"][kind] = {"name": kind, "error": str(exc)}
    env["wall_s"] = round(time.monotonic() - t_run, 1)
    env["pytest_running_at_end"] = other_pytests()
    env["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]

    rows = build_rows(results["servers"])
    results["table"] = [{k: v for k, v in r.items() if k != "fmt"} for r in rows]
    print(
        f"\nratios = jsedge / nats-server (throughput: higher is better; bytes, time: lower is better); "
        f"wall time {env['wall_s']:.0f} s; load average after {' '.join(map(str, env['loadavg_after']))}"
    )
    print(js_e2e.render_table(rows, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
