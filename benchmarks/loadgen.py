"""A raw-protocol NATS load generator that does not bottleneck a Python server.

Design (see ARCHITECTURE.md §9):

* Plain blocking sockets, no client library, no asyncio.
* Publishers send pre-built ~256 KiB batches of concatenated ``PUB`` frames with one ``sendall`` each; the
  batch is built once and re-sent. Every batch ends with a ``PING``; at most ``MAX_PINGS`` PINGs may be
  outstanding (PONGs are counted), so the server's input buffers stay bounded. When subscribers are
  present the publisher also keeps the number of undelivered messages under a window (end-to-end flow
  control through shared counters) so nobody is cut off as a slow consumer.
* Subscribers ``recv_into`` a large buffer and count ``MSG`` frames with ``bytearray.count``. Counting is
  exact: payloads are ``x`` bytes and subjects never contain ``MSG `` / ``PING``, and a 5-byte tail is
  carried across reads so a frame header split across two reads is counted exactly once.
* Publishers and subscribers are separate processes (``fork``) pinned to the generator core(s).

All scenario functions take ``(host, port)`` and return plain dicts; ``benchmarks/e2e.py`` drives them.
Standalone use: ``python benchmarks/loadgen.py --port 4222 pub --size 16 --seconds 2``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"echo":false,"protocol":0,"name":"loadgen"}\r\n'
BATCH_BYTES = 256 * 1024
RECV_BYTES = 4 * 1024 * 1024
MAX_PINGS = 4
TAIL = 5  # len(b"PING\r\n") - 1: the longest pattern we count, minus one
SUBJECT = b"bench.x"

_CTX = mp.get_context("fork")
_GEN_CPUS: set[int] | None = None


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)  # system-wide, comparable across processes


def set_generator_cpus(cpus: set[int] | None) -> None:
    """Pin this process (and every child forked afterwards) to ``cpus``; None leaves affinity alone."""
    global _GEN_CPUS
    _GEN_CPUS = cpus
    _pin()


def _pin() -> None:
    if _GEN_CPUS:
        try:
            os.sched_setaffinity(0, _GEN_CPUS)
        except (OSError, AttributeError):
            pass


# --------------------------------------------------------------------------- connection helpers


def _frame_counter(buf: bytearray, n: int, pattern: bytes) -> int:
    """Occurrences of ``pattern`` that end inside the ``n`` new bytes at ``buf[TAIL:TAIL+n]``."""
    return buf.count(pattern, TAIL - (len(pattern) - 1), TAIL + n)


def _roll_tail(buf: bytearray, n: int) -> None:
    end = TAIL + n
    buf[0:TAIL] = buf[end - TAIL : end]


def connect(host: str, port: int, timeout: float = 10.0, sndbuf: int | None = None) -> socket.socket:
    """Connect, read INFO, send CONNECT + PING and wait for the PONG. Returns a blocking socket."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed before INFO")
        data += chunk
    if not data.startswith(b"INFO "):
        raise ConnectionError(f"expected INFO, got {data[:80]!r}")
    sock.sendall(CONNECT + b"PING\r\n")
    _wait_pong(sock, data.split(b"\n", 1)[1])
    return sock


def _wait_pong(sock: socket.socket, data: bytes = b"") -> bytes:
    while b"PONG\r\n" not in data:
        if b"-ERR" in data:
            raise ConnectionError(data.decode(errors="replace").strip())
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed while waiting for PONG")
        data += chunk
    return data.split(b"PONG\r\n", 1)[1]


def pub_frame(size: int, subject: bytes = SUBJECT, reply: bytes | None = None) -> bytes:
    head = b"PUB " + subject + (b" " + reply if reply else b"") + b" %d\r\n" % size
    return head + b"x" * size + b"\r\n"


# --------------------------------------------------------------------------- processes


def _subscriber(host, port, subject, queue, idx, counts, last, ready, stop, errors):
    _pin()
    try:
        sock = connect(host, port)
        sub = b"SUB " + subject + (b" " + queue if queue else b"") + b" 1\r\n"
        sock.sendall(sub + b"PING\r\n")
        rest = _wait_pong(sock)
        sock.settimeout(0.05)
        buf = bytearray(TAIL + RECV_BYTES)
        view = memoryview(buf)
        count = rest.count(b"MSG ")
        buf[0:TAIL] = (b"\0" * TAIL + rest)[-TAIL:]
        counts[idx] = count
        ready.set()
        recv_into = sock.recv_into
        tail_view = view[TAIL:]
        while True:
            try:
                n = recv_into(tail_view)
            except TimeoutError:
                if stop.is_set():
                    break
                continue
            if not n:
                errors.put(f"subscriber {idx}: server closed the connection")
                break
            count += buf.count(b"MSG ", TAIL - 3, TAIL + n)
            if buf.count(b"PING\r\n", TAIL - 5, TAIL + n):
                sock.sendall(b"PONG\r\n")
            buf[0:TAIL] = buf[n : n + TAIL]
            counts[idx] = count
            last[idx] = now()
        sock.close()
    except Exception as exc:  # reported to the parent, never silent
        errors.put(f"subscriber {idx}: {exc!r}")
        ready.set()


def _publisher(host, port, size, max_msgs, seconds, counts, fanout, window, result, go, errors):
    """Publish up to ``max_msgs`` (stopping early at the ``seconds`` deadline, on a batch boundary)."""
    _pin()
    try:
        sock = connect(host, port, sndbuf=1 << 20)
        frame = pub_frame(size)
        per_batch = max(1, BATCH_BYTES // len(frame))
        batch = frame * per_batch + b"PING\r\n"
        rbuf = bytearray(TAIL + 65536)
        rview = memoryview(rbuf)[TAIL:]
        outstanding = 0

        def drain(limit: int) -> None:
            nonlocal outstanding
            while outstanding > limit:
                n = sock.recv_into(rview)
                if not n:
                    raise ConnectionError("server closed the publisher connection")
                outstanding -= _frame_counter(rbuf, n, b"PONG\r\n")
                if _frame_counter(rbuf, n, b"PING\r\n"):
                    sock.sendall(b"PONG\r\n")
                if b"-ERR" in rbuf[: TAIL + n]:
                    raise ConnectionError(bytes(rbuf[TAIL : TAIL + n]).decode(errors="replace").strip())
                _roll_tail(rbuf, n)

        go.wait()
        sent = 0
        t0 = now()
        deadline = t0 + seconds
        while sent < max_msgs:
            k = min(per_batch, max_msgs - sent)
            sock.sendall(batch if k == per_batch else frame * k + b"PING\r\n")
            sent += k
            outstanding += 1
            drain(MAX_PINGS)
            if fanout:  # end-to-end window: do not run ahead of the slowest subscriber(s)
                while sent * fanout - sum(counts) > window * fanout:
                    time.sleep(0.0002)
            if now() >= deadline:
                break
        drain(0)
        t1 = now()
        sock.close()
        result["sent"] = sent
        result["t0"] = t0
        result["t1"] = t1
    except Exception as exc:
        errors.put(f"publisher: {exc!r}")


def _errors_of(q) -> list[str]:
    out = []
    while not q.empty():
        out.append(q.get())
    return out


def run_pubsub(
    host: str,
    port: int,
    size: int,
    subs: int = 0,
    queue: bytes | None = None,
    seconds: float = 2.0,
    max_msgs: int = 50_000_000,
    window_bytes: int = 4 * 1024 * 1024,
    sub_port: int | None = None,
    settle: float = 0.0,
) -> dict:
    """Publish-only (``subs=0``), pub→N subs (fan-out), or a queue group of N (``queue`` set).

    ``sub_port``: subscribers on another server (a leaf's hub), after ``settle`` seconds for their
    interest to reach the publisher's server. Returns msgs/s published (``msgs_per_s``), payload
    MB/s, delivered msgs/s, and counts.
    """
    errors = _CTX.Queue()
    counts = _CTX.Array("q", max(subs, 1), lock=False)
    last = _CTX.Array("d", max(subs, 1), lock=False)
    stop = _CTX.Event()
    procs = []
    for i in range(subs):
        ready = _CTX.Event()
        p = _CTX.Process(
            target=_subscriber, args=(host, sub_port or port, SUBJECT, queue, i, counts, last, ready, stop, errors)
        )
        p.start()
        procs.append(p)
        if not ready.wait(15):
            raise RuntimeError("subscriber did not become ready")
    errs = _errors_of(errors)
    if errs:
        stop.set()
        for p in procs:
            p.join(2)
        raise RuntimeError("; ".join(errs))
    if settle:
        time.sleep(settle)
    frame_len = len(pub_frame(size))
    window = max(1, window_bytes // frame_len)
    fanout = 0 if subs == 0 else (1 if queue else subs)
    result_q = _CTX.Queue()
    go = _CTX.Event()

    def pub_target():
        res: dict = {}
        _publisher(host, port, size, max_msgs, seconds, counts, fanout, window, res, go, errors)
        result_q.put(res)

    pub = _CTX.Process(target=pub_target)
    pub.start()
    go.set()
    res = result_q.get(timeout=seconds + 120)
    pub.join(5)
    errs = _errors_of(errors)
    if errs or "sent" not in res:
        stop.set()
        for p in procs:
            p.join(2)
        raise RuntimeError("; ".join(errs) or "publisher failed")
    sent = res["sent"]
    expected = sent * fanout
    t_end = res["t1"]
    if subs:
        give_up = now() + max(10.0, seconds * 5)
        while sum(counts) < expected and now() < give_up and not any(not p.is_alive() for p in procs):
            time.sleep(0.002)
        stop.set()
        for p in procs:
            p.join(5)
        got = sum(counts)
        errs = _errors_of(errors)
        if got != expected:
            raise RuntimeError(f"delivered {got} of {expected} messages" + (": " + "; ".join(errs) if errs else ""))
        t_end = max(t_end, max(last[:subs]))
    elapsed = t_end - res["t0"]
    return {
        "size": size,
        "subs": subs,
        "queue": queue.decode() if queue else None,
        "sent": sent,
        "delivered": expected,
        "seconds": elapsed,
        "msgs_per_s": sent / elapsed,
        "mb_per_s": sent * size / elapsed / 1e6,
        "delivered_per_s": expected / elapsed if subs else None,
    }


# --------------------------------------------------------------------------- request / reply


def _read_msg(sock: socket.socket, buf: bytearray) -> tuple[list[bytes], bytes]:
    """Read one complete MSG frame from ``sock`` (with leftover bytes in ``buf``): (header args, payload).

    PINGs from the server are answered; PONGs and +OK are skipped.
    """
    while True:
        nl = buf.find(b"\r\n")
        if nl >= 0:
            line = bytes(buf[:nl])
            if line.startswith(b"MSG "):
                args = line.split()
                size = int(args[-1])
                end = nl + 2 + size + 2
                if len(buf) >= end:
                    payload = bytes(buf[nl + 2 : nl + 2 + size])
                    del buf[:end]
                    return args, payload
            else:
                del buf[: nl + 2]
                if line == b"PING":
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    raise ConnectionError(line.decode(errors="replace"))
                continue
        chunk = sock.recv(262144)
        if not chunk:
            raise EOFError("server closed the connection")
        buf += chunk


def _responder(host, port, ready, errors):
    _pin()
    try:
        sock = connect(host, port)
        sock.sendall(b"SUB bench.req 1\r\nPING\r\n")
        buf = bytearray(_wait_pong(sock))
        ready.set()
        while True:
            args, payload = _read_msg(sock, buf)
            if len(args) == 5:  # MSG subj sid reply size
                sock.sendall(b"PUB %s %d\r\n%s\r\n" % (args[3], len(payload), payload))
    except EOFError:
        pass
    except Exception as exc:
        errors.put(f"responder: {exc!r}")
        ready.set()


def _requester(host, port, count, warmup, size, out, errors):
    _pin()
    try:
        sock = connect(host, port)
        sock.sendall(b"SUB _INBOX.lat 1\r\nPING\r\n")
        buf = bytearray(_wait_pong(sock))
        req = pub_frame(size, b"bench.req", b"_INBOX.lat")
        samples = []
        for i in range(warmup + count):
            t0 = time.perf_counter_ns()
            sock.sendall(req)
            _read_msg(sock, buf)
            t1 = time.perf_counter_ns()
            if i >= warmup:
                samples.append((t1 - t0) / 1000.0)
        sock.close()
        out.put(samples)
    except Exception as exc:
        errors.put(f"requester: {exc!r}")
        out.put(None)


def run_reqrep(
    host: str,
    port: int,
    count: int = 2000,
    warmup: int = 200,
    size: int = 16,
    responder_port: int | None = None,
    settle: float = 0.0,
) -> dict:
    """One outstanding request at a time; latencies in microseconds. ``responder_port``: the
    responder on another server (a leaf's hub), ``settle`` seconds for its interest to spread."""
    errors = _CTX.Queue()
    ready = _CTX.Event()
    resp = _CTX.Process(target=_responder, args=(host, responder_port or port, ready, errors))
    resp.start()
    try:
        if not ready.wait(15):
            raise RuntimeError("responder did not become ready")
        if settle:
            time.sleep(settle)
        out = _CTX.Queue()
        req = _CTX.Process(target=_requester, args=(host, port, count, warmup, size, out, errors))
        req.start()
        samples = out.get(timeout=300)
        req.join(5)
    finally:
        resp.terminate()
        resp.join(5)
    errs = _errors_of(errors)
    if not samples:
        raise RuntimeError("; ".join(errs) or "requester failed")
    samples.sort()
    return {
        "count": len(samples),
        "p50_us": samples[len(samples) // 2],
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "mean_us": statistics.fmean(samples),
        "max_us": samples[-1],
    }


# --------------------------------------------------------------------------- CLI (standalone use)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4222)
    ap.add_argument("--cpus", default="", help="pin the generator to these CPUs, e.g. 1 or 1,2")
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("pub", help="publish, optionally to N subscribers or a queue group")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--subs", type=int, default=0)
    p.add_argument("--queue", default="")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--msgs", type=int, default=50_000_000)
    r = sp.add_parser("reqrep", help="request/reply latency, one outstanding request")
    r.add_argument("--count", type=int, default=2000)
    r.add_argument("--size", type=int, default=16)
    args = ap.parse_args(argv)
    if args.cpus:
        set_generator_cpus({int(c) for c in args.cpus.split(",")})
    if args.cmd == "pub":
        res = run_pubsub(
            args.host, args.port, args.size, args.subs, args.queue.encode() or None, args.seconds, args.msgs
        )
    else:
        res = run_reqrep(args.host, args.port, args.count, size=args.size)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
