"""JetStream end-to-end benchmarks: jsedge (fsync before ack, group commit) against nats-server with its
default lazy fsync (every 2 min) and with ``jetstream { sync_interval: always }``, in one run.

    python benchmarks/js_e2e.py [--quick] [--no-million] [--json out.json] [--servers jsedge,nats,nats-always]

Every server is started in turn on an ephemeral loopback port pinned to CPU 0 (``taskset -c 0``) with a
fresh file store under /tmp (deleted afterwards); the client runs in this process, pinned to CPU 1, on raw
blocking sockets (connection and PUB building blocks from ``benchmarks/loadgen.py``, the server wrapper
from ``benchmarks/e2e.py``). Servers are stopped by PID. File storage, 128 B payloads throughout.

Scenarios (each time-boxed; see benchmarks/README.md, "JetStream end-to-end"):
 1. publish sync: one outstanding PUB-with-reply, wait for the PubAck: msgs/s, p50/p99 latency.
 2. publish with 256 in flight: pipelined PUBs with distinct reply subjects on a wildcard inbox.
 3. KV-style put: ``max_msgs_per_subject: 5`` over 1000 subjects ``kv.k.<i>``, 256 in flight.
 4. direct get (``allow_direct``), 10 000 messages on 1000 subjects: 1 outstanding (p50/p99), 64 in flight.
 5. bytes on disk per message: N = 200 000 x 128 B on a 16 B subject, server stopped, ``du -sb`` of the
    stream directory ``<sd>/jetstream/$G/streams/<name>``.
 6. 1 M messages stored: VmRSS after publishing and after a restart; restart time = spawn until the log
    says ``Server is ready`` and STREAM.INFO answered (``--no-million`` skips it, ``--quick`` uses 100 k).
 7. consumers, only where ``$JS.API.CONSUMER.CREATE`` answers: pull fetch+ack (batch 100 and 500,
    explicit ack), push consumer (explicit ack), ordered-consumer replay of 100 k messages.

Targets (from the issues): with fsync before ack, 256-in-flight publish >= 0.5x nats-server default and
>= 5x its ``sync_interval: always`` figure; sync publish p50 <= 1.3x the ``always`` figure; bytes per stored
message <= 0.95x; RSS with 1 M stored <= 1.0x; consumer throughput >= 0.5x nats-server (default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import e2e  # noqa: E402
import loadgen  # noqa: E402

HOST = e2e.HOST
PAYLOAD_SIZE = 128
SUBJECT16 = b"orders.eu.create"  # 16 bytes, as in bench_store.py
assert len(SUBJECT16) == 16
CONNECT = (
    b'CONNECT {"verbose":false,"pedantic":false,"echo":false,"protocol":1,"headers":true,'
    b'"no_responders":true,"name":"js_e2e"}\r\n'
)
TAIL = 16  # >= longest counted pattern - 1
KINDS = ("jsedge", "nats", "nats-always")
LABELS = {"jsedge": "jsedge", "nats": "nats default", "nats-always": "nats always"}


# --------------------------------------------------------------------------- client


class JSError(RuntimeError):
    pass


class NoAnswer(RuntimeError):
    pass


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """Like loadgen.connect, but with headers and no_responders (JetStream replies carry headers)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed before INFO")
        data += chunk
    if not data.startswith(b"INFO "):
        raise ConnectionError(f"expected INFO, got {data[:80]!r}")
    sock.sendall(CONNECT + b"PING\r\n")
    loadgen._wait_pong(sock, data.split(b"\n", 1)[1])
    return sock


class Frame:
    __slots__ = ("subject", "sid", "reply", "hdr", "payload")

    def __init__(self, subject, sid, reply, hdr, payload):
        self.subject, self.sid, self.reply, self.hdr, self.payload = subject, sid, reply, hdr, payload

    @property
    def status(self) -> bytes:
        """b"" or the status code of a header block like ``NATS/1.0 503``."""
        if self.hdr.startswith(b"NATS/1.0 "):
            return self.hdr[9:12]
        return b""


class Conn:
    """A blocking connection with a frame reader for MSG / HMSG (PINGs answered, PONG/+OK skipped)."""

    def __init__(self, port: int):
        self.sock = connect(port)
        self.buf = bytearray()
        self.pos = 0
        self.sid = 0
        self.req_id = 0
        self.sock.sendall(b"SUB _INBOX.ctl.* 1\r\n")
        self.ctl_sid = b"1"
        self.sid = 1

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def sub(self, subject: bytes) -> bytes:
        self.sid += 1
        self.sock.sendall(b"SUB %s %d\r\nPING\r\n" % (subject, self.sid))
        # wait for our PONG so the subscription is in place
        while True:
            if self._fill_until_pong():
                return b"%d" % self.sid

    def _fill_until_pong(self) -> bool:
        # frames arriving meanwhile stay in the buffer; only a PONG line is consumed here
        while True:
            idx = self.buf.find(b"PONG\r\n", self.pos)
            if idx >= 0 and (idx == self.pos or self.buf[idx - 2 : idx] == b"\r\n"):
                del self.buf[idx : idx + 6]
                return True
            self._recv()

    def _recv(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed the connection")
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += chunk

    def next_frame(self) -> Frame:
        buf = self.buf
        while True:
            nl = buf.find(b"\r\n", self.pos)
            if nl >= 0:
                line = bytes(buf[self.pos : nl])
                if line.startswith(b"MSG "):
                    a = line.split(b" ")
                    size = int(a[-1])
                    end = nl + 2 + size + 2
                    if len(buf) >= end:
                        f = Frame(a[1], a[2], a[3] if len(a) == 5 else b"", b"", bytes(buf[nl + 2 : nl + 2 + size]))
                        self.pos = end
                        return f
                elif line.startswith(b"HMSG "):
                    a = line.split(b" ")
                    hlen, total = int(a[-2]), int(a[-1])
                    end = nl + 2 + total + 2
                    if len(buf) >= end:
                        body = bytes(buf[nl + 2 : nl + 2 + total])
                        f = Frame(a[1], a[2], a[3] if len(a) == 6 else b"", body[:hlen], body[hlen:])
                        self.pos = end
                        return f
                else:
                    self.pos = nl + 2
                    if line == b"PING":
                        self.sock.sendall(b"PONG\r\n")
                    elif line.startswith(b"-ERR"):
                        raise ConnectionError(line.decode(errors="replace"))
                    continue
            self._recv()
            buf = self.buf

    def request(self, subject: str | bytes, body: dict | bytes | None = None, timeout: float = 10.0) -> dict:
        """A JetStream API request on the control inbox; returns the JSON answer, raises JSError/NoAnswer."""
        if isinstance(subject, str):
            subject = subject.encode()
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        body = body or b""
        self.req_id += 1
        inbox = b"_INBOX.ctl.%d" % self.req_id
        self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject, inbox, len(body), body))
        self.sock.settimeout(timeout)
        try:
            while True:
                f = self.next_frame()
                if f.subject == inbox:
                    break
        except TimeoutError:
            raise NoAnswer(f"no answer to {subject.decode()} within {timeout:.0f}s") from None
        finally:
            self.sock.settimeout(None)
        if f.status == b"503":
            raise NoAnswer(f"no responders for {subject.decode()}")
        doc = json.loads(f.payload) if f.payload else {}
        if isinstance(doc, dict) and "error" in doc:
            raise JSError(f"{subject.decode()}: {doc['error']}")
        return doc

    def add_stream(self, cfg: dict) -> dict:
        cfg = {"storage": "file", "num_replicas": 1, **cfg}
        return self.request(f"$JS.API.STREAM.CREATE.{cfg['name']}", cfg)

    def stream_info(self, name: str, timeout: float = 30.0) -> dict:
        return self.request(f"$JS.API.STREAM.INFO.{name}", None, timeout)

    def delete_stream(self, name: str) -> None:
        self.request(f"$JS.API.STREAM.DELETE.{name}", None, 60.0)


class Ring:
    """K pre-built frames in one doubled buffer, so any run of <= K consecutive frames is one slice."""

    def __init__(self, frames: list[bytes]):
        self.k = len(frames)
        blob = b"".join(frames)
        self.view = memoryview(blob + blob)
        self.offs = [0]
        for f in frames + frames:
            self.offs.append(self.offs[-1] + len(f))

    def take(self, start: int, n: int) -> memoryview:
        i = start % self.k
        return self.view[self.offs[i] : self.offs[i + n]]


def pub_ring(subjects: list[bytes], inbox_prefix: bytes, k: int, size: int = PAYLOAD_SIZE) -> Ring:
    """PUB frames cycling over ``subjects`` with distinct reply subjects ``<inbox_prefix>.<i>``."""
    return Ring([loadgen.pub_frame(size, subjects[i % len(subjects)], b"%s.%d" % (inbox_prefix, i)) for i in range(k)])


def pipelined(port: int, ring: Ring, inbox_prefix: bytes, window: int, seconds: float, max_msgs: int) -> dict:
    """Keep ``window`` requests outstanding (replies counted on a wildcard inbox) until ``seconds`` or
    ``max_msgs``; replies are counted, not parsed (``MSG `` also matches ``HMSG ``), and any error reply
    (``"error"`` in a PubAck, or a status header such as 503/404) fails the run."""
    assert window <= ring.k
    conn = Conn(port)
    sock = conn.sock
    conn.sub(inbox_prefix + b".*")
    rbuf = bytearray(TAIL + (1 << 20))
    rview = memoryview(rbuf)[TAIL:]
    sent = acked = 0
    refill = max(1, window // 8)  # resend when at least this many slots are free (fewer syscalls)
    c0 = time.process_time()
    t0 = loadgen.now()
    deadline = t0 + seconds
    first = min(window, max_msgs)
    sock.sendall(ring.take(0, first))
    sent = first
    stopping = False
    sock.settimeout(30.0)
    try:
        while acked < sent:
            n = sock.recv_into(rview)
            if not n:
                raise EOFError("server closed the connection")
            lo, hi = TAIL, TAIL + n
            acked += rbuf.count(b"MSG ", lo - 3, hi)
            if rbuf.count(b'"error"', lo - 6, hi) or rbuf.count(b"NATS/1.0 ", lo - 8, hi):
                i = max(rbuf.find(b'"error"', 0, hi), rbuf.find(b"NATS/1.0 ", 0, hi))
                raise JSError(f"error reply: {bytes(rbuf[max(0, i - 120) : i + 160])!r}")
            if rbuf.count(b"PING\r\n", lo - 5, hi):
                sock.sendall(b"PONG\r\n")
            rbuf[0:TAIL] = rbuf[hi - TAIL : hi]
            if not stopping:
                if loadgen.now() >= deadline:
                    stopping = True
                else:
                    free = min(window - (sent - acked), max_msgs - sent)
                    if free >= refill or (free > 0 and sent - acked == 0):
                        sock.sendall(ring.take(sent, free))
                        sent += free
    finally:
        t1 = loadgen.now()
        conn.close()
    return {
        "msgs": acked,
        "seconds": t1 - t0,
        "msgs_per_s": acked / (t1 - t0),
        "window": window,
        "client_cpu": (time.process_time() - c0) / (t1 - t0),
    }


def latency(conn: Conn, frames: list[bytes], inbox: bytes, count: int, warmup: int, seconds: float) -> dict:
    """One outstanding request at a time (frames cycled), latency in microseconds, time-boxed."""
    samples = []
    sock = conn.sock
    deadline = loadgen.now() + seconds
    t_start = None
    for i in range(warmup + count):
        if i == warmup:
            c0 = time.process_time()
            t_start = loadgen.now()
            deadline = t_start + seconds
        t0 = time.perf_counter_ns()
        sock.sendall(frames[i % len(frames)])
        while True:
            f = conn.next_frame()
            if f.subject == inbox:
                break
        t1 = time.perf_counter_ns()
        if f.status or b'"error"' in f.payload:
            raise JSError(f"error reply: {f.hdr!r} {f.payload[:200]!r}")
        if i >= warmup:
            samples.append((t1 - t0) / 1000.0)
            if loadgen.now() >= deadline:
                break
    elapsed = loadgen.now() - t_start
    samples.sort()
    n = len(samples)
    return {
        "count": n,
        "msgs_per_s": n / elapsed,
        "p50_us": samples[n // 2],
        "p99_us": samples[min(n - 1, int(n * 0.99))],
        "max_us": samples[-1],
        "client_cpu": (time.process_time() - c0) / elapsed,
    }


def fill(port: int, subjects: list[bytes], count: int, seconds: float, window: int = 1024) -> dict:
    """Store ``count`` messages (pipelined, acked) unless the time box ends first."""
    ring = pub_ring(subjects, b"_INBOX.fill", max(4096, window))
    return pipelined(port, ring, b"_INBOX.fill", window, seconds, count)


def du_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of a directory tree, as `du -sb` / `du -s -B1` report them."""
    app = int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])
    alloc = int(
        subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )
    return app, alloc


# --------------------------------------------------------------------------- consumers


def consumers_supported(conn: Conn, stream: str) -> tuple[bool, str]:
    """Does ``$JS.API.CONSUMER.CREATE`` answer? (jsedge gives no reply at all to API subjects it lacks.)"""
    try:
        conn.request(
            f"$JS.API.CONSUMER.CREATE.{stream}.PROBE",
            {"stream_name": stream, "config": {"durable_name": "PROBE", "ack_policy": "explicit"}},
            timeout=3.0,
        )
    except (NoAnswer, JSError) as exc:
        return False, str(exc)
    try:
        conn.request(f"$JS.API.CONSUMER.DELETE.{stream}.PROBE", None, 10.0)
    except (NoAnswer, JSError):
        pass
    return True, "answers"


def _scan_msgs(buf: bytearray, pos: int, acks: list, on_status) -> tuple[int, int]:
    """Parse complete MSG/HMSG frames from ``buf[pos:]``: ack reply subjects of data messages are appended
    to ``acks``; status messages (HMSG with ``NATS/1.0 <code>``) go to ``on_status(code, reply)``.
    Returns (new pos, data messages)."""
    n = 0
    find = buf.find
    blen = len(buf)
    while True:
        nl = find(b"\r\n", pos)
        if nl < 0:
            return pos, n
        c = buf[pos]
        if c == 77:  # 'M'
            a = bytes(buf[pos:nl]).split(b" ")
            end = nl + 4 + int(a[-1])
            if end > blen:
                return pos, n
            if len(a) == 5:
                acks.append(a[3])
            n += 1
            pos = end
        elif c == 72:  # 'H'
            a = bytes(buf[pos:nl]).split(b" ")
            end = nl + 4 + int(a[-1])
            if end > blen:
                return pos, n
            hlen = int(a[-2])
            hdr = bytes(buf[nl + 2 : nl + 2 + hlen])
            if hdr.startswith(b"NATS/1.0 "):
                on_status(hdr[9:12], a[3] if len(a) == 6 else b"", hdr)
            else:
                if len(a) == 6:
                    acks.append(a[3])
                n += 1
            pos = end
        else:
            line = bytes(buf[pos:nl])
            pos = nl + 2
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode(errors="replace"))
            if line == b"PING":
                on_status(b"PING", b"", b"")


def _ack_frames(acks: list[bytes]) -> bytes:
    return b"".join(b"PUB %s 0\r\n\r\n" % r for r in acks)


def run_pull(port: int, stream: str, durable: str, batch: int, available: int, seconds: float) -> dict:
    """Pull consumer, explicit ack: one fetch of ``batch`` outstanding; every message is acked, and the
    acks go out in the same write as the next fetch. The last ack is sent with a reply and awaited."""
    conn = Conn(port)
    try:
        conn.request(
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            {
                "stream_name": stream,
                "config": {
                    "durable_name": durable,
                    "ack_policy": "explicit",
                    "deliver_policy": "all",
                    "max_ack_pending": 100_000,
                },
            },
        )
        inbox = b"_INBOX.pull"
        conn.sub(inbox + b".*")
        sock = conn.sock
        nxt = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}".encode()
        statuses: list = []

        def on_status(code, reply, hdr):
            if code == b"PING":
                sock.sendall(b"PONG\r\n")
            else:
                statuses.append((code, hdr))

        def fetch_frame(i: int, b: int) -> bytes:
            body = b'{"batch":%d,"expires":10000000000}' % b
            return b"PUB %s %s.%d %d\r\n%s\r\n" % (nxt, inbox, i, len(body), body)

        received = 0
        fetches = 0
        buf = bytearray(conn.buf[conn.pos :])
        pos = 0
        acks: list[bytes] = []
        c0 = time.process_time()
        t0 = loadgen.now()
        deadline = t0 + seconds
        want = min(batch, available)
        sock.sendall(fetch_frame(0, want))
        got_in_batch = 0
        sock.settimeout(10.0)
        while True:
            pos, n = _scan_msgs(buf, pos, acks, on_status)
            if statuses:
                raise JSError(f"pull status: {statuses[0]!r}")
            received += n
            got_in_batch += n
            if got_in_batch >= want:
                fetches += 1
                got_in_batch = 0
                remaining = available - received
                if loadgen.now() >= deadline or remaining <= 0:
                    break
                want = min(batch, remaining)
                sock.sendall(_ack_frames(acks) + fetch_frame(fetches, want))
                acks = []
            elif acks and len(acks) >= 256:
                sock.sendall(_ack_frames(acks))
                acks = []
            if pos:
                del buf[:pos]
                pos = 0
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                raise JSError(
                    f"fetch {fetches + 1}: {got_in_batch} of {want} messages, then nothing for 10 s "
                    f"({received} received before)"
                ) from None
            if not chunk:
                raise EOFError("server closed the connection")
            buf += chunk
        # last ack with a reply: the server answers once it has processed it
        last = acks.pop()
        sock.sendall(_ack_frames(acks) + b"PUB %s _INBOX.ctl.ackdone 0\r\n\r\nPING\r\n" % last)
        conn.buf = buf
        conn.pos = pos
        while conn.next_frame().subject != b"_INBOX.ctl.ackdone":
            pass
        t1 = loadgen.now()
        sock.settimeout(None)
        info = conn.request(f"$JS.API.CONSUMER.INFO.{stream}.{durable}")
        res = {
            "msgs": received,
            "seconds": t1 - t0,
            "msgs_per_s": received / (t1 - t0),
            "batch": batch,
            "fetches": fetches,
            "client_cpu": (time.process_time() - c0) / (t1 - t0),
            "ack_floor": info.get("ack_floor", {}).get("stream_seq"),
            "num_ack_pending": info.get("num_ack_pending"),
        }
        if res["ack_floor"] != received or res["num_ack_pending"]:
            res["warning"] = "ack floor / pending do not match the messages acked"
        conn.request(f"$JS.API.CONSUMER.DELETE.{stream}.{durable}")
        return res
    finally:
        conn.close()


def run_push(port: int, stream: str, available: int, seconds: float, ordered: bool, count: int | None = None) -> dict:
    """Push consumer. ``ordered=False``: durable, explicit ack (every message acked as it arrives,
    ``max_ack_pending`` left at its default). ``ordered=True``: an ordered consumer as nats.go creates it
    (ephemeral, ack none, max_deliver 1, flow control, idle heartbeat, memory storage), flow-control
    requests are answered, consumer sequences are checked to be gap-free."""
    conn = Conn(port)
    try:
        deliver = b"_INBOX.push.ordered" if ordered else b"_INBOX.push.d"
        conn.sub(deliver)
        sock = conn.sock
        target = min(available, count or available)
        if ordered:
            cfg = {
                "deliver_subject": deliver.decode(),
                "deliver_policy": "all",
                "ack_policy": "none",
                "max_deliver": 1,
                "ack_wait": 22 * 3600 * 10**9,
                "flow_control": True,
                "idle_heartbeat": 5 * 10**9,
                "mem_storage": True,
                "num_replicas": 1,
            }
            subject = f"$JS.API.CONSUMER.CREATE.{stream}"
        else:
            cfg = {
                "durable_name": "PUSH",
                "deliver_subject": deliver.decode(),
                "deliver_policy": "all",
                "ack_policy": "explicit",
            }
            subject = f"$JS.API.CONSUMER.CREATE.{stream}.PUSH"
        statuses: list = []
        fc = [0]

        def on_status(code, reply, hdr):
            if code == b"PING":
                sock.sendall(b"PONG\r\n")
            elif code == b"100":
                if reply:  # flow control request
                    sock.sendall(b"PUB %s 0\r\n\r\n" % reply)
                    fc[0] += 1
            else:
                statuses.append((code, hdr))

        c0 = time.process_time()
        t0 = loadgen.now()
        created = conn.request(subject, {"stream_name": stream, "config": cfg})
        name = created.get("name", "PUSH")
        buf = bytearray(conn.buf[conn.pos :])
        pos = 0
        received = 0
        acks: list[bytes] = []
        deadline = t0 + seconds
        last_cseq = 0
        sock.settimeout(30.0)
        while received < target:
            pos, n = _scan_msgs(buf, pos, acks, on_status)
            if statuses:
                raise JSError(f"push status: {statuses[0]!r}")
            received += n
            if ordered:
                if acks:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
                    for r in acks:
                        cseq = int(r.split(b".")[-3])
                        if cseq != last_cseq + 1:
                            raise JSError(f"ordered consumer gap: {last_cseq} -> {cseq}")
                        last_cseq = cseq
                    acks = []
            elif acks:
                sock.sendall(_ack_frames(acks))
                acks = []
            if received >= target or loadgen.now() >= deadline:
                break
            if pos:
                del buf[:pos]
                pos = 0
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            buf += chunk
        t1 = loadgen.now()
        sock.settimeout(None)
        conn.buf, conn.pos = bytearray(), 0  # stop reading this connection's deliveries
        res = {
            "msgs": received,
            "seconds": t1 - t0,
            "msgs_per_s": received / (t1 - t0),
            "target": target,
            "complete": received >= target,
            "client_cpu": (time.process_time() - c0) / (t1 - t0),
        }
        if ordered:
            res["flow_control_replies"] = fc[0]
        ctl = Conn(port)
        try:
            ctl.request(f"$JS.API.CONSUMER.DELETE.{stream}.{name}")
        finally:
            ctl.close()
        return res
    finally:
        conn.close()


# --------------------------------------------------------------------------- servers


class JSServer(e2e.Server):
    """e2e.Server with JetStream on a file store in ``store_dir``; ``kind`` picks jsedge / nats / nats-always."""

    def __init__(self, kind: str, pure: bool, logdir: Path, store_dir: Path):
        super().__init__(kind, pure, logdir)
        self.kind = kind
        self.store_dir = store_dir

    def argv(self, port: int) -> list[str]:
        sd = str(self.store_dir)
        if self.kind == "jsedge":
            cmd = [sys.executable, "-m", "jsedge", "-a", HOST, "-p", str(port), "-js", "-sd", sd]
        elif self.kind == "nats":
            cmd = ["nats-server", "-a", HOST, "-p", str(port), "-js", "-sd", sd]
        else:
            conf = self.logdir / "nats-always.conf"
            conf.write_text(f'jetstream {{\n  store_dir: "{sd}"\n  sync_interval: always\n}}\n')
            cmd = ["nats-server", "-c", str(conf), "-a", HOST, "-p", str(port)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", str(e2e.SERVER_CPU)] + cmd
        return cmd

    def stream_dir(self, name: str) -> Path:
        return self.store_dir / "jetstream" / "$G" / "streams" / name

    def timed_start(self, stream: str, timeout: float = 120.0) -> dict:
        """Spawn; seconds until the log says ``Server is ready`` and until STREAM.INFO answered after it."""
        t0 = time.perf_counter()
        self.start(timeout)
        logfile = self.logfile()
        while b"Server is ready" not in logfile.read_bytes():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited; see {logfile}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{self.kind}: no 'Server is ready' within {timeout:.0f}s")
            time.sleep(0.001)
        t_ready = time.perf_counter() - t0
        conn = Conn(self.port)
        try:
            info = conn.stream_info(stream, timeout)
        finally:
            conn.close()
        return {"ready_s": t_ready, "info_s": time.perf_counter() - t0, "messages": info["state"]["messages"]}


# --------------------------------------------------------------------------- scenarios


def _safe(res: dict, key: str, label: str, kind: str, fn, *a, **kw):
    try:
        r = fn(*a, **kw)
    except Exception as exc:  # a failing scenario is reported, the run continues
        r = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  [{kind}] {label}: ERROR {r['error']}", flush=True)
    res[key] = r
    return r


def _say(kind: str, text: str) -> None:
    print(f"  [{kind}] {text}", flush=True)


def bench_server(kind: str, args, tmp: Path) -> dict:
    q = args.quick
    secs = 1.0 if q else 4.0
    res: dict = {"name": kind}
    store = Path(tempfile.mkdtemp(prefix=f"js-e2e-{kind}-", dir="/tmp"))
    srv = JSServer(kind, args.pure, tmp, store)
    port = 0
    try:
        srv.start()
        port = srv.port
        ctl = Conn(port)

        # 1. publish sync
        def s1():
            ctl.add_stream({"name": "PUB1", "subjects": ["p1.>"]})
            subj = b"p1.orders.create"
            frames = [loadgen.pub_frame(PAYLOAD_SIZE, subj, b"_INBOX.ctl.sync")]
            conn = Conn(port)
            try:
                r = latency(conn, frames, b"_INBOX.ctl.sync", 500 if q else 2000, 50 if q else 100, secs)
            finally:
                conn.close()
            ctl.delete_stream("PUB1")
            return r

        r = _safe(res, "pub_sync", "publish sync", kind, s1)
        if "error" not in r:
            _say(
                kind,
                f"publish sync: {r['msgs_per_s']:.0f} msgs/s, p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us ({r['count']} acks)",
            )

        # 2. publish, 256 in flight
        def s2():
            ctl.add_stream({"name": "PUB256", "subjects": ["p2.>"]})
            ring = pub_ring([b"p2.orders.create"], b"_INBOX.p2", 4096)
            r = pipelined(port, ring, b"_INBOX.p2", 256, secs, 10**9)
            ctl.delete_stream("PUB256")
            return r

        r = _safe(res, "pub_256", "publish 256 in flight", kind, s2)
        if "error" not in r:
            _say(
                kind,
                f"publish 256 in flight: {r['msgs_per_s']:.0f} msgs/s ({r['msgs']} acks, client CPU {r['client_cpu']:.0%})",
            )

        # 3. KV-style put
        def s3():
            ctl.add_stream({"name": "KV", "subjects": ["kv.k.>"], "max_msgs_per_subject": 5, "allow_direct": True})
            subjects = [b"kv.k.%d" % i for i in range(1000)]
            ring = pub_ring(subjects, b"_INBOX.kv", 4000)
            r = pipelined(port, ring, b"_INBOX.kv", 256, secs, 10**9)
            st = ctl.stream_info("KV")["state"]
            r["stored"] = st["messages"]
            if r["msgs"] >= 5000 and st["messages"] != 5000:
                raise JSError(f"KV stream holds {st['messages']} messages, expected 5000")
            ctl.delete_stream("KV")
            return r

        r = _safe(res, "kv_put", "KV put 256 in flight", kind, s3)
        if "error" not in r:
            _say(
                kind,
                f"KV put (history 5, 1000 keys) 256 in flight: {r['msgs_per_s']:.0f} msgs/s (stored {r['stored']})",
            )

        # 4. direct get
        def s4():
            ctl.add_stream({"name": "DG", "subjects": ["dg.k.>"], "allow_direct": True})
            subjects = [b"dg.k.%d" % i for i in range(1000)]
            f = fill(port, subjects, 10_000, 60.0)
            if f["msgs"] != 10_000:
                raise JSError(f"direct-get fill stored only {f['msgs']} of 10000 within 60 s")
            reqs = [b"PUB $JS.API.DIRECT.GET.DG.%s _INBOX.ctl.dg 0\r\n\r\n" % s for s in subjects]
            conn = Conn(port)
            try:
                lat = latency(conn, reqs, b"_INBOX.ctl.dg", 500 if q else 2000, 50 if q else 100, secs)
            finally:
                conn.close()
            ring = Ring(
                [b"PUB $JS.API.DIRECT.GET.DG.%s _INBOX.dg.%d 0\r\n\r\n" % (subjects[i % 1000], i) for i in range(4000)]
            )
            tput = pipelined(port, ring, b"_INBOX.dg", 64, secs, 10**9)
            ctl.delete_stream("DG")
            return {"fill": f, "latency": lat, "inflight64": tput}

        r = _safe(res, "direct_get", "direct get", kind, s4)
        if "error" not in r:
            _say(
                kind,
                f"direct get: p50 {r['latency']['p50_us']:.0f} us, p99 {r['latency']['p99_us']:.0f} us; "
                f"64 in flight {r['inflight64']['msgs_per_s']:.0f} msgs/s (fill {r['fill']['msgs_per_s']:.0f} msgs/s)",
            )

        # 5. bytes on disk per message (then restart on the same store for the consumer scenarios)
        n_store = 50_000 if q else 200_000
        stored = 0

        def s5():
            nonlocal stored
            ctl.add_stream({"name": "STORE", "subjects": ["orders.>"]})
            # fsync per write (sync_interval: always) stores ~5 k msgs/s here: a shorter time box, the
            # on-disk format is the same as with the default sync interval
            box = (10.0 if q else 20.0) if kind == "nats-always" else (30.0 if q else 60.0)
            f = fill(port, [SUBJECT16], n_store, box)
            stored = f["msgs"]
            st = ctl.stream_info("STORE")["state"]
            if st["messages"] != stored:
                raise JSError(f"STREAM.INFO says {st['messages']} messages, {stored} were acked")
            ctl.close()
            srv.stop()
            app, alloc = du_bytes(srv.stream_dir("STORE"))
            return {
                "target": n_store,
                "msgs": stored,
                "fill_msgs_per_s": f["msgs_per_s"],
                "state_bytes": st["bytes"],
                "du_bytes": app,
                "du_alloc_bytes": alloc,
                "bytes_per_msg": app / stored,
                "alloc_bytes_per_msg": alloc / stored,
                "complete": stored == n_store,
            }

        r = _safe(res, "disk", "bytes on disk", kind, s5)
        if "error" not in r:
            _say(
                kind,
                f"bytes on disk: {r['bytes_per_msg']:.1f} B/msg over {r['msgs']} msgs "
                f"({r['alloc_bytes_per_msg']:.1f} allocated; fill {r['fill_msgs_per_s']:.0f} msgs/s)"
                + ("" if r["complete"] else f" -- time box hit, {r['msgs']} of {n_store}"),
            )
        srv.stop()

        # 7. consumers (on the STORE stream, after a restart)
        if stored:
            srv.start(120.0)
            port = srv.port
            ctl = Conn(port)
            ctl.stream_info("STORE", 120.0)
            ok, why = consumers_supported(ctl, "STORE")
            res["consumers_supported"] = ok
            if not ok:
                _say(kind, f"consumers: skipped ($JS.API.CONSUMER.CREATE: {why})")
            else:
                csecs = 1.0 if q else 3.0
                for b in (100, 500):
                    r = _safe(
                        res, f"pull_{b}", f"pull batch {b}", kind, run_pull, port, "STORE", f"PULL{b}", b, stored, csecs
                    )
                    if "error" not in r:
                        _say(
                            kind,
                            f"pull fetch+ack batch {b}: {r['msgs_per_s']:.0f} msgs/s ({r['msgs']} msgs, client CPU {r['client_cpu']:.0%})"
                            + (f" WARNING {r['warning']}" if "warning" in r else ""),
                        )
                r = _safe(res, "push", "push consumer", kind, run_push, port, "STORE", stored, csecs, False)
                if "error" not in r:
                    _say(
                        kind,
                        f"push consumer (explicit ack): {r['msgs_per_s']:.0f} msgs/s ({r['msgs']} msgs, client CPU {r['client_cpu']:.0%})",
                    )
                r = _safe(
                    res,
                    "ordered",
                    "ordered replay",
                    kind,
                    run_push,
                    port,
                    "STORE",
                    stored,
                    10.0 if q else 30.0,
                    True,
                    100_000,
                )
                if "error" not in r:
                    _say(
                        kind,
                        f"ordered consumer replay of {r['target']}: {r['msgs_per_s']:.0f} msgs/s "
                        f"({r['seconds']:.2f} s{'' if r['complete'] else ', INCOMPLETE: time box'})",
                    )
            ctl.close()
            srv.stop()
        shutil.rmtree(store, ignore_errors=True)

        # 6. 1 M messages stored: RSS and restart
        if not args.no_million:
            if kind == "nats-always" and not args.million_always:
                _say(
                    kind,
                    "1 M scenario: skipped (fsync per write makes the fill minutes long; same store format as default)",
                )
            else:
                _safe(res, "million", "1 M stored", kind, million, srv, store, kind, args)
    finally:
        srv.stop()
        shutil.rmtree(store, ignore_errors=True)
    return res


def million(srv: JSServer, store: Path, kind: str, args) -> dict:
    n = 100_000 if args.quick else 1_000_000
    store.mkdir(parents=True, exist_ok=True)
    srv.start()
    ctl = Conn(srv.port)
    ctl.add_stream({"name": "MILLION", "subjects": ["orders.>"]})
    ctl.close()
    f = fill(srv.port, [SUBJECT16], n, 60.0 if args.quick else 150.0, window=2048)
    time.sleep(1.0)
    rss_pub = srv.rss_kib()
    srv.stop()
    du, _ = du_bytes(srv.stream_dir("MILLION"))
    st = srv.timed_start("MILLION")
    time.sleep(0.5)
    rss_restart = srv.rss_kib()
    srv.stop()
    r = {
        "target": n,
        "msgs": f["msgs"],
        "fill_msgs_per_s": f["msgs_per_s"],
        "complete": f["msgs"] == n,
        "rss_after_publish_kib": rss_pub,
        "rss_after_restart_kib": rss_restart,
        "restart_ready_s": st["ready_s"],
        "restart_info_s": st["info_s"],
        "recovered": st["messages"],
        "du_bytes": du,
    }
    _say(
        kind,
        f"{n} stored ({f['msgs_per_s']:.0f} msgs/s fill): RSS {rss_pub / 1024:.1f} MiB, after restart "
        f"{rss_restart / 1024:.1f} MiB; restart: ready {st['ready_s'] * 1000:.0f} ms, STREAM.INFO {st['info_s'] * 1000:.0f} ms"
        + ("" if r["complete"] else f" -- time box hit, only {f['msgs']} stored"),
    )
    if st["messages"] != f["msgs"]:
        raise JSError(f"recovered {st['messages']} messages, {f['msgs']} were acked")
    return r


# --------------------------------------------------------------------------- table


def _g(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def build_rows(s: dict, args) -> list[dict]:
    js, nd, na = s.get("jsedge"), s.get("nats"), s.get("nats-always")
    rows = []

    def ratio(a, b):
        return a / b if a is not None and b is not None and a > 0 and b > 0 else None

    def add(label, path, fmt, target=None, met=None, scale=1.0):
        vals = [_g(x, *path) for x in (js, nd, na)]
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

    def both(lo_d, lo_a):  # met on both counts; the table says which part fails
        def met(rd, ra):
            if rd is None or ra is None:
                return None
            return rd >= lo_d and ra >= lo_a

        return met

    add("publish sync (msgs/s)", ("pub_sync", "msgs_per_s"), "rate")
    add(
        "publish sync p50 (us)",
        ("pub_sync", "p50_us"),
        "us",
        "<= 1.3x always",
        lambda rd, ra: None if ra is None else ra <= 1.3,
    )
    add("publish sync p99 (us)", ("pub_sync", "p99_us"), "us")
    add(
        "publish 256 in flight (msgs/s)",
        ("pub_256", "msgs_per_s"),
        "rate",
        ">= 0.5x default, >= 5x always",
        both(0.5, 5.0),
    )
    add("KV put, history 5, 256 in flight (msgs/s)", ("kv_put", "msgs_per_s"), "rate")
    add("direct get p50 (us)", ("direct_get", "latency", "p50_us"), "us")
    add("direct get p99 (us)", ("direct_get", "latency", "p99_us"), "us")
    add("direct get 64 in flight (msgs/s)", ("direct_get", "inflight64", "msgs_per_s"), "rate")
    add(
        "bytes on disk per msg (B)",
        ("disk", "bytes_per_msg"),
        "b1",
        "<= 0.95x default",
        lambda rd, ra: None if rd is None else rd <= 0.95,
    )
    if not args.no_million:
        m = "100 k" if args.quick else "1 M"
        add(
            f"RSS, {m} stored (MiB)",
            ("million", "rss_after_publish_kib"),
            "mib",
            "<= 1.0x default",
            lambda rd, ra: None if rd is None else rd <= 1.0,
            scale=1 / 1024,
        )
        add(f"RSS after restart, {m} (MiB)", ("million", "rss_after_restart_kib"), "mib", scale=1 / 1024)
        add(f"restart to ready, {m} (ms)", ("million", "restart_ready_s"), "ms", scale=1000)
        add(f"restart to STREAM.INFO, {m} (ms)", ("million", "restart_info_s"), "ms", scale=1000)
    cons = [
        ("pull fetch+ack batch 100 (msgs/s)", "pull_100"),
        ("pull fetch+ack batch 500 (msgs/s)", "pull_500"),
        ("push consumer, explicit ack (msgs/s)", "push"),
        ("ordered consumer replay 100 k (msgs/s)", "ordered"),
    ]
    for label, key in cons:
        add(label, (key, "msgs_per_s"), "rate", ">= 0.5x default", lambda rd, ra: None if rd is None else rd >= 0.5)
    return rows


def _fmt(v, fmt):
    if v is None:
        return "-"
    if fmt == "rate":
        return f"{v / 1e3:.1f} k"
    if fmt in ("mib", "b1"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def render_table(rows: list[dict], markdown: bool) -> str:
    head = ["scenario", "jsedge", "nats default", "nats always", "js/default", "js/always", "target", "met"]
    body = []
    for r in rows:
        met = "" if r["target"] is None else ("n/a" if r["met"] is None else ("met" if r["met"] else "NOT met"))
        if r["target"] and r["target"].startswith(">= 0.5x default, >= 5x always") and r["met"] is False:
            parts = [("default", r["ratio_default"] >= 0.5), ("always", r["ratio_always"] >= 5.0)]
            met = "NOT met (" + ", ".join(f"{k} {'met' if ok else 'not'}" for k, ok in parts) + ")"
        body.append(
            [
                r["scenario"],
                _fmt(r["jsedge"], r["fmt"]),
                _fmt(r["nats"], r["fmt"]),
                _fmt(r["nats_always"], r["fmt"]),
                "-" if r["ratio_default"] is None else f"{r['ratio_default']:.2f}x",
                "-" if r["ratio_always"] is None else f"{r['ratio_always']:.2f}x",
                r["target"] or "",
                met,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(out)


def twins(pure: bool) -> str | None:
    """Which twins jsedge loads in the servers' environment, e.g. ``parser=c, sublist=c, codec=c, commands=c, ingest=c``."""
    code = (
        "import jsedge.protocol.parser as p, jsedge.routing.sublist as s, jsedge.store.codec as c; "
        "import jsedge.jetstream.commands as m, jsedge.jetstream.ingest as i; "
        "print(f'parser={p.IMPLEMENTATION}, sublist={s.IMPLEMENTATION}, codec={c.IMPLEMENTATION}, "
        "commands={m.IMPLEMENTATION}, ingest={i.IMPLEMENTATION}')"
    )
    srv = JSServer("jsedge", pure, Path("/tmp"), Path("/tmp"))
    try:
        return (
            subprocess.run(
                [sys.executable, "-c", code], cwd=REPO, env=srv.env(), capture_output=True, text=True, timeout=60
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="JetStream end-to-end: jsedge vs nats-server (default and sync always)")
    ap.add_argument("--quick", action="store_true", help="1 s time boxes, 50 k stored, 100 k instead of 1 M")
    ap.add_argument("--no-million", action="store_true", help="skip the 1 M messages RSS/restart scenario")
    ap.add_argument(
        "--million-always", action="store_true", help="also run the 1 M scenario on nats-server sync always"
    )
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--servers", default=",".join(KINDS), help="comma list of jsedge,nats,nats-always")
    ap.add_argument("--pure", action="store_true", help="run jsedge with JSEDGE_NO_EXTENSIONS=1")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            ap.error(f"unknown server {k!r}")

    env = e2e.environment(args)
    env["no_million"] = args.no_million
    env["twins"] = twins(args.pure)
    env["payload"] = PAYLOAD_SIZE
    cpus = os.sched_getaffinity(0)
    if e2e.GEN_CPU in cpus and len(cpus) > 1:
        loadgen.set_generator_cpus({e2e.GEN_CPU})
    else:
        print(f"NOTE: CPU {e2e.GEN_CPU} unavailable; client unpinned", file=sys.stderr)
        env["generator_cpu"] = None
    print(
        f"commit {env['commit']}{' (dirty)' if env['dirty'] else ''}, Python {env['python']}, Cython {env['cython']}, "
        f"loop {env['loop']}, jsedge twins {env['twins']}, "
        f"{env['nats_server']}",
        flush=True,
    )
    # as e2e.py: measure jsedge with bytecode caches, as an installed package runs (restart time)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "jsedge")], check=False)

    t_run = time.perf_counter()
    results: dict = {"env": env, "servers": {}}
    with tempfile.TemporaryDirectory(prefix="js-e2e-logs-", dir="/tmp") as tmp:
        for kind in sorted(kinds, key=lambda k: k == "jsedge"):  # nats baselines first
            print(f"== {LABELS[kind]}", flush=True)
            t = time.perf_counter()
            try:
                results["servers"][kind] = bench_server(kind, args, Path(tmp))
            except Exception as exc:
                print(f"  [{kind}] FAILED: {exc}", flush=True)
                for log in sorted(Path(tmp).glob(f"{kind}-*.log"))[-1:]:
                    print("  | " + "\n  | ".join(log.read_text(errors="replace").splitlines()[-15:]), flush=True)
                results["servers"][kind] = {"name": kind, "error": str(exc)}
            results["servers"][kind]["wall_s"] = time.perf_counter() - t
    env["wall_s"] = round(time.perf_counter() - t_run, 1)

    rows = build_rows(results["servers"], args)
    results["table"] = [{k: v for k, v in r.items() if k != "fmt"} for r in rows]
    js = results["servers"].get("jsedge", {})
    if js and not js.get("consumers_supported", True):
        print("\njsedge: $JS.API.CONSUMER.CREATE does not answer yet -- consumer rows have no jsedge figure")
    print(
        f"\nratios = jsedge / nats-server (throughput: higher is better; latency, bytes, RSS, time: lower is better); "
        f"wall time {env['wall_s']:.0f} s"
    )
    print(render_table(rows, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
