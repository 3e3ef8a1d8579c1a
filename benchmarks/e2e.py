"""End-to-end benchmarks: jsedge against the real nats-server, in one run, reported as ratios.

    python benchmarks/e2e.py [--quick] [--json out.json] [--servers jsedge,nats] [--pure]

Each server in turn is started on an ephemeral loopback port pinned to CPU 0 (``taskset -c 0``), the load
generator (``benchmarks/loadgen.py``, raw pipelined protocol, separate processes) runs on CPU 1, every
scenario runs, and the server is stopped by PID. Throughput scenarios are time-boxed (each publishes for a
fixed number of seconds, stopping on a batch boundary), so a slow server cannot stretch the run.

Targets (from the issue): core throughput >= 0.5x nats-server on one core; request/reply p50 <= 1.3x
nats-server's; idle RSS <= 1.5x; start -> first PONG <= 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402

HOST = "127.0.0.1"
SERVER_CPU = 0
GEN_CPU = 1

# (key, label, kind, params). kind "tput" compares msgs/s (higher is better).
THROUGHPUT = [
    ("pub_16", "publish-only 16 B", dict(size=16)),
    ("pub_128", "publish-only 128 B", dict(size=128)),
    ("pub_1k", "publish-only 1 KiB", dict(size=1024)),
    ("pubsub_16", "pub -> 1 sub 16 B", dict(size=16, subs=1)),
    ("pubsub_1k", "pub -> 1 sub 1 KiB", dict(size=1024, subs=1)),
    ("fanout4_16", "fan-out to 4 subs 16 B", dict(size=16, subs=4)),
    ("queue4_16", "queue group of 4 16 B", dict(size=16, subs=4, queue=b"q")),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One server process, started pinned to SERVER_CPU and stopped by PID."""

    def __init__(self, name: str, pure: bool, logdir: Path):
        self.name = name
        self.pure = pure
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    def argv(self, port: int) -> list[str]:
        if self.name == "nats":
            cmd = ["nats-server", "-a", HOST, "-p", str(port)]
        else:
            cmd = [sys.executable, "-m", "jsedge", "-a", HOST, "-p", str(port)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", str(SERVER_CPU)] + cmd
        return cmd

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("JSEDGE_NO_EXTENSIONS", None)
        if self.name == "jsedge" and self.pure:
            env["JSEDGE_NO_EXTENSIONS"] = "1"
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, timeout: float = 30.0) -> float:
        """Spawn and wait for the first PONG; returns seconds from spawn to that PONG."""
        self.port = free_port()
        self.starts += 1
        log = open(self.logdir / f"{self.name}-{self.starts}.log", "wb")
        t0 = time.perf_counter()
        # taskset execs the server, so the PID is the server's own.
        self.proc = subprocess.Popen(
            self.argv(self.port), cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        delay = 0.0005
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.logfile()}")
            if time.perf_counter() - t0 > timeout:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer PING within {timeout:.0f}s; see {self.logfile()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=5) as s:
                    s.sendall(b"CONNECT {}\r\nPING\r\n")
                    data = b""
                    while b"PONG\r\n" not in data:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed")
                        data += chunk
                return time.perf_counter() - t0
            except OSError:
                time.sleep(delay)
                delay = min(delay * 2, 0.01)

    def logfile(self) -> Path:
        return self.logdir / f"{self.name}-{self.starts}.log"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def bench_server(name: str, args, logdir: Path) -> dict:
    q = args.quick
    secs = 1.0 if q else 4.0
    res: dict = {"name": name}
    srv = Server(name, args.pure, logdir)

    # start -> first PONG, median of 5 starts (fresh port each time)
    times = []
    for _ in range(5):
        times.append(srv.start())
        srv.stop()
    res["start_ms"] = statistics.median(times) * 1000
    res["start_ms_all"] = [round(t * 1000, 1) for t in times]
    print(f"  [{name}] start -> first PONG: {res['start_ms']:.1f} ms (median of 5)", flush=True)

    srv.start()
    try:
        # idle RSS: after start and one connection that completed CONNECT/PING/PONG and is still open
        conn = loadgen.connect(HOST, srv.port)
        time.sleep(0.3)
        res["idle_rss_kib"] = srv.rss_kib()
        conn.close()
        print(f"  [{name}] idle RSS: {res['idle_rss_kib'] / 1024:.1f} MiB", flush=True)

        for key, label, params in THROUGHPUT:
            try:
                r = loadgen.run_pubsub(HOST, srv.port, seconds=secs, **params)
            except Exception as exc:  # a failing scenario is reported, the run continues
                r = {"error": str(exc)}
                print(f"  [{name}] {label}: ERROR {exc}", flush=True)
            else:
                print(
                    f"  [{name}] {label}: {r['msgs_per_s'] / 1e6:.3f} M msgs/s, {r['mb_per_s']:.1f} MB/s"
                    + (f", delivered {r['delivered_per_s'] / 1e6:.3f} M/s" if r["subs"] else ""),
                    flush=True,
                )
            res[key] = r
            if srv.proc.poll() is not None:
                raise RuntimeError(f"{name} died during {label}; see {srv.logfile()}")

        try:
            r = loadgen.run_reqrep(HOST, srv.port, count=1000 if q else 2000, warmup=100 if q else 200)
        except Exception as exc:
            r = {"error": str(exc)}
            print(f"  [{name}] request/reply: ERROR {exc}", flush=True)
        else:
            print(f"  [{name}] request/reply: p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us", flush=True)
        res["reqrep"] = r
        res["rss_after_kib"] = srv.rss_kib()
    finally:
        srv.stop()
    return res


def _get(d: dict | None, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def build_rows(nats: dict | None, js: dict | None) -> list[dict]:
    """Rows of the comparison table: figures, ratio, target, met."""
    rows = []

    def add(label, unit, a, b, ratio_kind, target, met_fn, fmt):
        ratio = None
        if a is not None and b is not None and a > 0 and b > 0:
            ratio = b / a if ratio_kind == "js/nats" else a / b if ratio_kind == "nats/js" else None
        met = None
        if target is not None:
            met = met_fn(ratio, b)
        rows.append(
            dict(
                scenario=label,
                unit=unit,
                nats=a,
                jsedge=b,
                ratio=ratio,
                ratio_kind=ratio_kind,
                target=target,
                met=met,
                fmt=fmt,
            )
        )

    for key, label, params in THROUGHPUT:
        a = _get(nats, key, "msgs_per_s")
        b = _get(js, key, "msgs_per_s")
        add(
            label + " (msgs/s)",
            "msgs/s",
            a,
            b,
            "js/nats",
            ">= 0.5x",
            lambda r, _b: None if r is None else r >= 0.5,
            "rate",
        )
        if params.get("subs", 0) == 0 or params["size"] >= 1024:
            a = _get(nats, key, "mb_per_s")
            b = _get(js, key, "mb_per_s")
            add(label + " (MB/s)", "MB/s", a, b, "js/nats", None, None, "mb")
    a = _get(nats, "reqrep", "p50_us")
    b = _get(js, "reqrep", "p50_us")
    # latency: ratio is jsedge/nats (lower is better), target jsedge p50 <= 1.3x nats
    add("request/reply p50 (us)", "us", a, b, "js/nats", "<= 1.3x", lambda r, _b: None if r is None else r <= 1.3, "us")
    add(
        "request/reply p99 (us)",
        "us",
        _get(nats, "reqrep", "p99_us"),
        _get(js, "reqrep", "p99_us"),
        "js/nats",
        None,
        None,
        "us",
    )
    a = _get(nats, "idle_rss_kib")
    b = _get(js, "idle_rss_kib")
    add(
        "idle RSS (MiB)",
        "MiB",
        a and a / 1024,
        b and b / 1024,
        "js/nats",
        "<= 1.5x",
        lambda r, _b: None if r is None else r <= 1.5,
        "mib",
    )
    a = _get(nats, "start_ms")
    b = _get(js, "start_ms")
    add(
        "start -> first PONG (ms)",
        "ms",
        a,
        b,
        "js/nats",
        "<= 100 ms",
        lambda _r, bb: None if bb is None else bb <= 100,
        "ms",
    )
    return rows


def _fmt(v, fmt):
    if v is None:
        return "-"
    if fmt == "rate":
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"
    if fmt in ("mb", "mib", "ms"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def render_table(rows: list[dict], markdown: bool) -> str:
    head = ["scenario", "nats-server", "jsedge", "ratio", "target", "met"]
    body = []
    for r in rows:
        met = "-" if r["met"] is None else ("met" if r["met"] else "NOT met")
        body.append(
            [
                r["scenario"],
                _fmt(r["nats"], r["fmt"]),
                _fmt(r["jsedge"], r["fmt"]),
                "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
                r["target"] or "",
                met if r["target"] else "",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(out)


def environment(args) -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return None

    try:
        import Cython

        cython = Cython.__version__
    except ImportError:
        cython = None
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        nats_version = subprocess.run(
            ["nats-server", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        nats_version = None
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "cython": cython,
        "loop": loop,
        "jsedge_compiled_twins": not args.pure,
        "nats_server": nats_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "taskset": bool(shutil.which("taskset")),
        "server_cpu": SERVER_CPU,
        "generator_cpu": GEN_CPU,
        "quick": args.quick,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="jsedge vs nats-server end-to-end benchmarks")
    ap.add_argument("--quick", action="store_true", help="short run (~40 s for both servers)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--servers", default="jsedge,nats", help="comma list of jsedge,nats")
    ap.add_argument("--pure", action="store_true", help="run jsedge with JSEDGE_NO_EXTENSIONS=1")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = ap.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in ("jsedge", "nats"):
            ap.error(f"unknown server {s!r}")

    env = environment(args)
    if not env["taskset"]:
        print("NOTE: taskset not found; servers run unpinned", file=sys.stderr)
    cpus = os.sched_getaffinity(0)
    if GEN_CPU in cpus and len(cpus) > 1:
        loadgen.set_generator_cpus({GEN_CPU})
    else:
        print(f"NOTE: CPU {GEN_CPU} unavailable; generator unpinned", file=sys.stderr)
        env["generator_cpu"] = None
    print(
        f"commit {env['commit']}{' (dirty)' if env['dirty'] else ''}, Python {env['python']}, Cython {env['cython']}, "
        f"loop {env['loop']}, jsedge {'compiled twins' if not args.pure else 'pure (JSEDGE_NO_EXTENSIONS=1)'}",
        flush=True,
    )

    # Measure jsedge as installed: `pip install` writes bytecode caches, a source tree run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every module at each start (~30 ms of start-up).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "jsedge")], check=False)

    results: dict = {"env": env, "servers": {}}
    with tempfile.TemporaryDirectory(prefix="jsedge-e2e-") as tmp:
        logdir = Path(tmp)
        # nats-server first: it is the baseline and validates the generator
        for name in sorted(servers, key=lambda s: s != "nats"):
            print(f"== {name}", flush=True)
            try:
                results["servers"][name] = bench_server(name, args, logdir)
            except Exception as exc:
                print(f"  [{name}] FAILED: {exc}", flush=True)
                for log in sorted(logdir.glob(f"{name}-*.log"))[-1:]:
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    print("  | " + "\n  | ".join(tail), flush=True)
                results["servers"][name] = {"name": name, "error": str(exc)}

    rows = build_rows(results["servers"].get("nats"), results["servers"].get("jsedge"))
    results["table"] = [{k: v for k, v in r.items() if k != "fmt"} for r in rows]
    print()
    print(
        "ratio = jsedge / nats-server for every row (throughput: higher is better; latency, RSS, start: lower is better)"
    )
    print(render_table(rows, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
