"""Two-node routed benchmarks: a jsedge cluster against a nats-server cluster, in one run, as ratios.

    python benchmarks/routes.py [--quick] [--json out.json] [--servers jsedge,nats] [--markdown]

For each server kind, two nodes A and B form a cluster on loopback (B solicits a route to A; A pinned to
CPU 0 and B to CPU 1 with ``taskset`` when available). The load generator is ``loadgen.py``'s raw-protocol
workers (separate forked processes, pre-built ``PUB`` batches, ``MSG`` counting with ``bytearray.count``);
with two cores it cannot have a core of its own, so by default it is unpinned and shares both cores with
the servers (``--gen-cpus`` pins it). Scenarios:

* routed throughput: publisher on A, one subscriber on B, 16 B and 1 KiB payloads; a fixed message count
  with a deadline, and the figure is messages *delivered* to the subscriber per second (first publish to
  last arrival);
* queue group: two members on A and two on B, publisher on A, 16 B: delivered msgs/s and the split;
* request/reply across the route: requester on A, responder on B, one request outstanding, p50/p99.

Before each scenario the script waits until A knows B's subscriptions (a probe subject subscribed on B
after the benchmark's subscriptions is published from A until it arrives: interest crosses a route in
order). The CPU used by the generator's publisher and subscribers and by both servers is recorded per
scenario, so a generator-bound figure shows (publisher or subscriber near 100 % of a core).

Ratio = jsedge / nats-server on every row. Goals: routed throughput >= 1.0x at 16 B and >= 0.7x at
1 KiB; request/reply p50 <= 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import queue as queue_mod
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import e2e  # noqa: E402
import loadgen  # noqa: E402

HOST = e2e.HOST
CLUSTER_NAME = "bench"
NODE_CPUS = {"A": 0, "B": 1}
CLK_TCK = os.sysconf("SC_CLK_TCK")
_CTX = loadgen._CTX

# (key, label, size, max msgs full, max msgs quick, subscriber nodes, queue)
THROUGHPUT = [
    ("routed_16", "routed A -> B 16 B", 16, 10_000_000, 1_000_000, "B", None),
    ("routed_1k", "routed A -> B 1 KiB", 1024, 3_000_000, 300_000, "B", None),
    ("queue_16", "queue group 2 on A + 2 on B, 16 B", 16, 10_000_000, 1_000_000, "AABB", b"q"),
]


# --------------------------------------------------------------------------- cluster


class Node(e2e.Server):
    """One cluster node: e2e's server wrapper (spawn, first PONG, stop by PID) with cluster flags."""

    def __init__(self, kind: str, label: str, pure: bool, logdir: Path, routes_to: int | None, profile: Path | None):
        (logdir / label).mkdir(parents=True, exist_ok=True)
        super().__init__(kind, pure, logdir / label)
        self.label = label
        self.cluster_port = e2e.free_port()
        self.routes_to = routes_to
        self.profile = profile
        self.cpu = NODE_CPUS[label]

    def argv(self, port: int) -> list[str]:
        if self.name == "nats":
            cmd = ["nats-server"]
        elif self.profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(self.profile / f"{self.label}.prof"), "-m", "jsedge"]
        else:
            cmd = [sys.executable, "-m", "jsedge"]
        cmd += ["-a", HOST, "-p", str(port), "-n", f"{self.name}-{self.label}"]
        cmd += ["--cluster", f"nats://{HOST}:{self.cluster_port}", "--cluster_name", CLUSTER_NAME]
        if self.routes_to:
            cmd += ["--routes", f"nats://{HOST}:{self.routes_to}"]
        if shutil.which("taskset") and self.cpu in os.sched_getaffinity(0):
            cmd = ["taskset", "-c", str(self.cpu)] + cmd
        return cmd

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def check_alive(self, what: str) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} node {self.label} died during {what}; see {self.logfile()}")


def wait_interest(sub_port: int, pub_port: int, timeout: float = 20.0) -> float:
    """Subscribe to a fresh probe subject on the node at ``sub_port`` and publish it on ``pub_port`` until
    it arrives; returns the seconds that took. A node sends its interest over the route in order, so once
    the probe arrives the other node also knows every subscription made earlier on ``sub_port``."""
    subject = b"probe.%d.%d" % (os.getpid(), time.monotonic_ns())
    sub = loadgen.connect(HOST, sub_port)
    pub = loadgen.connect(HOST, pub_port)
    try:
        sub.sendall(b"SUB " + subject + b" 1\r\nPING\r\n")
        buf = loadgen._wait_pong(sub)
        sub.settimeout(0.005)
        t0 = time.monotonic()
        while b"MSG " not in buf:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"interest from port {sub_port} never reached port {pub_port} ({timeout:.0f}s)")
            pub.sendall(b"PUB " + subject + b" 0\r\n\r\n")
            try:
                chunk = sub.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("server closed the probe connection")
            buf += chunk
        return time.monotonic() - t0
    finally:
        sub.close()
        pub.close()


def start_cluster(kind: str, args, logdir: Path) -> tuple[Node, Node]:
    profile = Path(args.cprofile).resolve() if (args.cprofile and kind == "jsedge") else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    a = Node(kind, "A", args.pure, logdir, None, profile)
    a.start()
    b = Node(kind, "B", args.pure, logdir, a.cluster_port, profile)
    try:
        b.start()
        # the route is up (and interest flows both ways) once probes cross in both directions
        wait_interest(b.port, a.port)
        wait_interest(a.port, b.port)
    except BaseException:
        b.stop()
        a.stop()
        raise
    return a, b


# --------------------------------------------------------------------------- workers (loadgen's, plus CPU)


def _rusage_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _sub_main(port, queue, idx, counts, last, ready, stop, errors, cpu):
    loadgen._subscriber(HOST, port, loadgen.SUBJECT, queue, idx, counts, last, ready, stop, errors)
    cpu[idx] = _rusage_cpu()  # a forked child starts with zero usage


def _pub_main(port, size, max_msgs, seconds, counts, window, go, errors, result_q):
    res: dict = {}
    loadgen._publisher(HOST, port, size, max_msgs, seconds, counts, 1, window, res, go, errors)
    res["cpu"] = _rusage_cpu()
    result_q.put(res)


def run_routed(
    nodes: dict[str, Node],
    pub_node: str,
    sub_nodes: str,
    size: int,
    queue: bytes | None,
    max_msgs: int,
    seconds: float,
    window_bytes: int = 4 * 1024 * 1024,
    stall: float = 3.0,
) -> dict:
    """Publish up to ``max_msgs`` on ``pub_node`` (stopping at the ``seconds`` deadline) to subscribers on
    ``sub_nodes`` (one letter per subscriber; all in queue group ``queue`` if set, else plain subscribers
    of which there must be one). Counts what arrives."""
    if queue is None and len(sub_nodes) != 1:
        raise ValueError("plain subscriptions: one subscriber (the rate is per delivered message)")
    n = len(sub_nodes)
    errors = _CTX.Queue()
    counts = _CTX.Array("q", n, lock=False)
    last = _CTX.Array("d", n, lock=False)
    cpu = _CTX.Array("d", n, lock=False)
    stop = _CTX.Event()
    subs = []
    pub = None
    try:
        for i, label in enumerate(sub_nodes):
            ready = _CTX.Event()
            p = _CTX.Process(
                target=_sub_main, args=(nodes[label].port, queue, i, counts, last, ready, stop, errors, cpu)
            )
            p.start()
            subs.append(p)
            if not ready.wait(15):
                raise RuntimeError("subscriber did not become ready")
        errs = loadgen._errors_of(errors)
        if errs:
            raise RuntimeError("; ".join(errs))
        for label in sorted(set(sub_nodes) - {pub_node}):
            wait_interest(nodes[label].port, nodes[pub_node].port)
        window = max(1, window_bytes // len(loadgen.pub_frame(size)))
        result_q = _CTX.Queue()
        go = _CTX.Event()
        pub = _CTX.Process(
            target=_pub_main,
            args=(nodes[pub_node].port, size, max_msgs, seconds, counts, window, go, errors, result_q),
        )
        pub.start()
        time.sleep(0.2)  # let the publisher connect before the clocks start
        srv_cpu0 = {k: v.cpu_seconds() for k, v in nodes.items()}
        wall0 = loadgen.now()
        go.set()
        give_up = loadgen.now() + seconds + 60
        while True:  # a subscriber that dies would leave the publisher waiting on its window for ever
            try:
                res = result_q.get(timeout=0.25)
                break
            except queue_mod.Empty:
                dead = [i for i, p in enumerate(subs) if not p.is_alive()]
                if dead or loadgen.now() > give_up:
                    errs = loadgen._errors_of(errors)
                    why = f"subscriber(s) {dead} exited" if dead else "publisher did not finish"
                    raise RuntimeError(why + (": " + "; ".join(errs) if errs else "")) from None
        if "sent" not in res:
            raise RuntimeError("; ".join(loadgen._errors_of(errors)) or "publisher failed")
        sent = res["sent"]
        # wait for the arrivals: all of them, or until nothing more arrived for `stall` seconds
        got, since = sum(counts), loadgen.now()
        while got < sent and loadgen.now() - since < stall and all(p.is_alive() for p in subs):
            time.sleep(0.005)
            now_got = sum(counts)
            if now_got != got:
                got, since = now_got, loadgen.now()
        wall1 = loadgen.now()
        srv_cpu1 = {k: v.cpu_seconds() for k, v in nodes.items()}
        stop.set()
        for p in subs:
            p.join(5)
        errs = loadgen._errors_of(errors)
        got = sum(counts)
        if got == 0:
            raise RuntimeError("nothing delivered" + (": " + "; ".join(errs) if errs else ""))
        t0 = res["t0"]
        t_end = max(last[:n])
        elapsed = t_end - t0
        per_node: dict[str, int] = {}
        for i, label in enumerate(sub_nodes):
            per_node[label] = per_node.get(label, 0) + counts[i]
        wall = wall1 - wall0
        return {
            "size": size,
            "publisher": pub_node,
            "subscribers": sub_nodes,
            "queue": queue.decode() if queue else None,
            "sent": sent,
            "delivered": got,
            "lost": sent - got,
            "errors": errs,
            "seconds": elapsed,
            "delivered_per_s": got / elapsed,
            "delivered_mb_per_s": got * size / elapsed / 1e6,
            "per_node": per_node,
            "share_pct": {k: 100 * per_node.get(k, 0) / got for k in sorted(set(sub_nodes))},
            # CPU as a share of one core: generator processes over their active time, servers over the
            # whole measurement (publisher start to the last arrival plus the final poll)
            "cpu": {
                "publisher": res["cpu"] / (res["t1"] - t0),
                "subscriber_max": max(cpu[:n]) / elapsed,
                **{f"server_{k}": (srv_cpu1[k] - srv_cpu0[k]) / wall for k in nodes},
            },
        }
    finally:
        stop.set()
        for p in subs:
            p.join(2)
            if p.is_alive():
                p.terminate()
        if pub is not None:
            pub.join(2)
            if pub.is_alive():
                pub.terminate()


def run_routed_reqrep(nodes: dict[str, Node], req_node: str, resp_node: str, count: int, warmup: int) -> dict:
    """loadgen's responder on ``resp_node`` and requester on ``req_node``: one request outstanding.

    Only the responder's interest needs waiting for: the requester's inbox SUB reaches the other node
    before its first request does (same route, in order)."""
    errors = _CTX.Queue()
    ready = _CTX.Event()
    resp = _CTX.Process(target=loadgen._responder, args=(HOST, nodes[resp_node].port, ready, errors))
    resp.start()
    req = None
    try:
        if not ready.wait(15):
            raise RuntimeError("responder did not become ready")
        wait_interest(nodes[resp_node].port, nodes[req_node].port)
        out = _CTX.Queue()
        req = _CTX.Process(target=loadgen._requester, args=(HOST, nodes[req_node].port, count, warmup, 16, out, errors))
        req.start()
        samples = out.get(timeout=300)
        req.join(5)
    finally:
        resp.terminate()
        resp.join(5)
        if req is not None and req.is_alive():
            req.terminate()
    errs = loadgen._errors_of(errors)
    if not samples:
        raise RuntimeError("; ".join(errs) or "requester failed")
    samples.sort()
    return {
        "count": len(samples),
        "p50_us": samples[len(samples) // 2],
        "p90_us": samples[int(len(samples) * 0.9)],
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "mean_us": statistics.fmean(samples),
        "max_us": samples[-1],
    }


# --------------------------------------------------------------------------- driver


def bench_kind(kind: str, args, logdir: Path) -> dict:
    q = args.quick
    secs = 3.0 if q else 10.0
    res: dict = {"name": kind}
    a, b = start_cluster(kind, args, logdir)
    nodes = {"A": a, "B": b}
    print(f"  [{kind}] cluster up: A client port {a.port}, B client port {b.port} (B routes to A)", flush=True)
    try:
        for key, label, size, full_n, quick_n, sub_nodes, queue in THROUGHPUT:
            try:
                r = run_routed(
                    nodes, "A", sub_nodes, size, queue, quick_n if q else full_n, secs, args.window_mib << 20
                )
            except Exception as exc:  # a failing scenario is reported, the run continues
                r = {"error": str(exc)}
                print(f"  [{kind}] {label}: ERROR {exc}", flush=True)
            else:
                c = r["cpu"]
                split = (
                    f", split A {r['per_node'].get('A', 0)} / B {r['per_node'].get('B', 0)}"
                    f" ({r['share_pct'].get('B', 0):.1f} % on B)"
                    if queue
                    else ""
                )
                print(
                    f"  [{kind}] {label}: delivered {r['delivered_per_s'] / 1e6:.3f} M msgs/s"
                    f" ({r['delivered_mb_per_s']:.1f} MB/s), {r['delivered']}/{r['sent']} in {r['seconds']:.2f} s"
                    f"{split}; CPU pub {100 * c['publisher']:.0f} %, sub {100 * c['subscriber_max']:.0f} %,"
                    f" A {100 * c['server_A']:.0f} %, B {100 * c['server_B']:.0f} %"
                    + (f"; LOST {r['lost']}" if r["lost"] else ""),
                    flush=True,
                )
            res[key] = r
            a.check_alive(label)
            b.check_alive(label)
        try:
            r = run_routed_reqrep(nodes, "A", "B", count=1000 if q else 5000, warmup=100 if q else 300)
        except Exception as exc:
            r = {"error": str(exc)}
            print(f"  [{kind}] request/reply: ERROR {exc}", flush=True)
        else:
            print(
                f"  [{kind}] request/reply A -> B -> A: p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us"
                f" ({r['count']} requests)",
                flush=True,
            )
        res["reqrep"] = r
    finally:
        b.stop()
        a.stop()
    return res


def build_rows(nats: dict | None, js: dict | None) -> list[dict]:
    """Rows in e2e.render_table's shape; ratio = jsedge / nats-server."""
    rows = []

    def add(label, path, fmt, target=None, ok=None):
        a = e2e._get(nats, *path)
        b = e2e._get(js, *path)
        ratio = b / a if a and b else None
        met = None if (target is None or ratio is None) else ok(ratio)
        rows.append(dict(scenario=label, nats=a, jsedge=b, ratio=ratio, target=target, met=met, fmt=fmt))

    add("routed 16 B (msgs/s delivered)", ("routed_16", "delivered_per_s"), "rate", ">= 1.0x", lambda r: r >= 1.0)
    add("routed 1 KiB (msgs/s delivered)", ("routed_1k", "delivered_per_s"), "rate", ">= 0.7x", lambda r: r >= 0.7)
    add("routed 1 KiB (MB/s delivered)", ("routed_1k", "delivered_mb_per_s"), "mb")
    add("queue 2+2, 16 B (msgs/s delivered)", ("queue_16", "delivered_per_s"), "rate")
    for side in ("A", "B"):
        add(f"queue: share delivered on {side} (%)", ("queue_16", "share_pct", side), "pct")
    add("request/reply p50 (us)", ("reqrep", "p50_us"), "us", "<= 1.2x", lambda r: r <= 1.2)
    add("request/reply p99 (us)", ("reqrep", "p99_us"), "us")
    return rows


def cpu_table(results: dict, markdown: bool) -> str:
    head = ["scenario", "server", "publisher", "subscriber", "node A", "node B"]
    body = []
    for key, label, *_ in THROUGHPUT:
        for kind in ("jsedge", "nats"):
            c = e2e._get(results, kind, key, "cpu")
            if c:
                body.append(
                    [label, kind]
                    + [f"{100 * c[k]:.0f} %" for k in ("publisher", "subscriber_max", "server_A", "server_B")]
                )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    return "\n".join(out + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="jsedge vs nats-server: two-node routed benchmarks")
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--servers", default="jsedge,nats", help="comma list of jsedge,nats")
    ap.add_argument("--pure", action="store_true", help="run jsedge with JSEDGE_NO_EXTENSIONS=1")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    ap.add_argument("--gen-cpus", default="", help="pin the load generator to these CPUs (default: unpinned)")
    ap.add_argument(
        "--window-mib",
        type=int,
        default=4,
        help="end-to-end window of undelivered messages, MiB (loadgen's default 4; 64 trips max_pending)",
    )
    ap.add_argument(
        "--cprofile", metavar="DIR", help="run the jsedge nodes under cProfile, writing DIR/A.prof and DIR/B.prof"
    )
    args = ap.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in ("jsedge", "nats"):
            ap.error(f"unknown server {s!r}")

    env = e2e.environment(args)
    affinity = os.sched_getaffinity(0)
    pinned = env["taskset"] and all(c in affinity for c in NODE_CPUS.values())
    env["server_cpu"] = dict(NODE_CPUS) if pinned else None
    if args.gen_cpus:
        loadgen.set_generator_cpus({int(c) for c in args.gen_cpus.split(",")})
        env["generator_cpu"] = args.gen_cpus
    else:
        env["generator_cpu"] = None
    env["scenario_seconds"] = 3.0 if args.quick else 10.0
    env["window_mib"] = args.window_mib
    print(
        f"commit {env['commit']}{' (dirty)' if env['dirty'] else ''}, Python {env['python']}, Cython {env['cython']}, "
        f"loop {env['loop']}, jsedge {'compiled twins' if not args.pure else 'pure (JSEDGE_NO_EXTENSIONS=1)'}, "
        f"{env['nats_server']}",
        flush=True,
    )
    print(
        (
            f"node A on CPU {NODE_CPUS['A']}, node B on CPU {NODE_CPUS['B']}"
            if pinned
            else "NOTE: taskset or CPUs 0/1 unavailable; nodes run unpinned"
        )
        + (
            f"; load generator pinned to CPU {args.gen_cpus} (shares it with a node)"
            if args.gen_cpus
            else f"; load generator unpinned, sharing the {os.cpu_count()} cores with the nodes"
        ),
        flush=True,
    )
    if args.cprofile:
        print(f"NOTE: jsedge nodes run under cProfile (slower); profiles in {args.cprofile}", flush=True)
    try:
        load = os.getloadavg()
        env["loadavg_before"] = [round(x, 2) for x in load]
        print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    except OSError:
        pass

    results: dict = {"env": env, "servers": {}}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jsedge-routes-") as tmp:
        logdir = Path(tmp)
        for kind in sorted(servers, key=lambda s: s != "nats"):  # the baseline first: it validates the generator
            print(f"== {kind}", flush=True)
            try:
                results["servers"][kind] = bench_kind(kind, args, logdir)
            except Exception as exc:
                print(f"  [{kind}] FAILED: {exc}", flush=True)
                for log in sorted(logdir.glob(f"*/{kind}-*.log")):
                    tail = log.read_text(errors="replace").splitlines()[-10:]
                    print(f"  | {log.parent.name}:\n  | " + "\n  | ".join(tail), flush=True)
                results["servers"][kind] = {"name": kind, "error": str(exc)}
    env["wall_seconds"] = round(time.monotonic() - t_start, 1)

    rows = build_rows(results["servers"].get("nats"), results["servers"].get("jsedge"))
    results["table"] = [{k: v for k, v in r.items() if k != "fmt"} for r in rows]
    print()
    print("ratio = jsedge / nats-server (throughput: higher is better; latency: lower is better)")
    print(e2e.render_table(rows, args.markdown))
    print()
    print("CPU, % of one core (generator processes over their active time, nodes over the measurement):")
    print(cpu_table(results["servers"], args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
