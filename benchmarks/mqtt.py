"""MQTT publish throughput: jsedge against nats-server's MQTT (and Mosquitto when installed), in one run.

    python benchmarks/mqtt.py [--quick] [--json out.json] [--servers jsedge,nats,mosquitto]

Each server runs alone, pinned to CPU 0 with ``taskset`` when available (the load generator runs in this
process on the other core). jsedge and nats-server run with JetStream (MQTT needs it: sessions and QoS 1
messages live in streams); Mosquitto runs with its defaults (in-memory, no persistence).

The generator speaks MQTT 3.1.1 over raw sockets, with pre-built packets, so it is not the bottleneck:

* **QoS 0, 64 B**: one subscriber (QoS 0 on the topic) and one publisher sending a fixed number of
  PUBLISH packets as fast as the socket takes them; the figure is messages *delivered* to the
  subscriber per second (first publish to last arrival; every delivered packet has the same size, so
  arrivals are counted by bytes).
* **QoS 1, 64 B, 256 in flight**: one publisher keeps 256 PUBLISH packets unacknowledged; one QoS 1
  subscriber acknowledges every delivery. The figure is PUBACKs received per second by the publisher
  (jsedge and nats-server store each QoS 1 message in the `$MQTT_msgs` stream before the PUBACK;
  jsedge fsyncs it first, nats-server does not).

Ratios are jsedge / nats-server and jsedge / Mosquitto.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
SIZE = 64
TOPIC = b"bench/topic"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _string(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def _connect(client_id: bytes) -> bytes:
    return _packet(0x10, _string(b"MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + _string(client_id))


def _publish(qos: int, pid: int, payload: bytes) -> bytes:
    body = _string(TOPIC) + (struct.pack(">H", pid) if qos else b"") + payload
    return _packet(0x30 | (qos << 1), body)


def _open(port: int, client_id: bytes) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_connect(client_id))
    ack = _read_exact(sock, 4)
    assert ack[:2] == b"\x20\x02" and ack[3] == 0, ack
    return sock


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _subscribe(sock: socket.socket, qos: int) -> None:
    sock.sendall(_packet(0x82, struct.pack(">H", 1) + _string(TOPIC) + bytes([qos])))
    ack = _read_exact(sock, 5)
    assert ack[0] == 0x90 and ack[4] == qos, ack


class Server:
    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.port = _free_port()
        self.dir = workdir / kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "mosquitto":
            conf = self.dir / "mosquitto.conf"
            conf.write_text(f"listener {self.port} {HOST}\nallow_anonymous true\nmax_inflight_messages 0\n")
            argv = ["mosquitto", "-c", str(conf)]
        else:
            conf = self.dir / "server.conf"
            conf.write_text(
                f'server_name: bench\nlisten: "{HOST}:{_free_port()}"\n'
                f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n'
                f'mqtt {{ listen: "{HOST}:{self.port}", max_ack_pending: 4096 }}\n'
            )
            argv = (
                ["nats-server", "-c", str(conf)]
                if self.kind == "nats"
                else [sys.executable, "-m", "jsedge", "-c", str(conf)]
            )
        if shutil.which("taskset"):
            argv = ["taskset", "-c", "0", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def qos0(port: int, count: int) -> float:
    sub = _open(port, b"bench-sub0")
    _subscribe(sub, 0)
    pub = _open(port, b"bench-pub0")
    packet = _publish(0, 0, b"x" * SIZE)
    expected = len(packet) * count
    received = [0, 0.0]

    def reader() -> None:
        sub.settimeout(30)
        total = 0
        while total < expected:
            chunk = sub.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
        received[0] = total
        received[1] = time.perf_counter()

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.2)
    batch = packet * 1000
    start = time.perf_counter()
    for _ in range(count // 1000):
        pub.sendall(batch)
    thread.join(60)
    pub.close()
    sub.close()
    return received[0] / len(packet) / (received[1] - start)


def qos1(port: int, count: int, window: int = 256) -> float:
    sub = _open(port, b"bench-sub1")
    _subscribe(sub, 1)
    stop = threading.Event()

    def subscriber() -> None:
        # acknowledge every delivery (QoS 1 PUBLISH: topic, packet id, payload)
        sub.settimeout(1)
        buf = b""
        while not stop.is_set():
            try:
                chunk = sub.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            acks = bytearray()
            while len(buf) >= 2:
                length, i, mult = 0, 1, 1
                while True:
                    byte = buf[i]
                    length += (byte & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not byte & 0x80 or i >= len(buf):
                        break
                if len(buf) < i + length:
                    break
                if buf[0] >> 4 == 3 and (buf[0] >> 1) & 3:
                    topic_len = struct.unpack_from(">H", buf, i)[0]
                    acks += b"\x40\x02" + buf[i + 2 + topic_len : i + 4 + topic_len]
                buf = buf[i + length :]
            if acks:
                sub.sendall(bytes(acks))

    thread = threading.Thread(target=subscriber, daemon=True)
    thread.start()
    pub = _open(port, b"bench-pub1")
    packets = [_publish(1, pid, b"x" * SIZE) for pid in range(1, 65536)]
    sent = acked = 0
    pub.settimeout(30)
    start = time.perf_counter()
    out = bytearray()
    while sent < min(window, count):
        out += packets[sent % 65535]
        sent += 1
    pub.sendall(out)
    pending = b""
    while acked < count:
        chunk = pub.recv(1 << 16)
        if not chunk:
            raise ConnectionError("publisher closed")
        pending += chunk
        n = len(pending) // 4
        pending = pending[n * 4 :]
        acked += n
        out = bytearray()
        while sent < count and sent - acked < window:
            out += packets[sent % 65535]
            sent += 1
        if out:
            pub.sendall(out)
    elapsed = time.perf_counter() - start
    stop.set()
    pub.close()
    sub.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--servers", default="jsedge,nats,mosquitto")
    args = parser.parse_args()
    kinds = [k for k in args.servers.split(",") if k != "mosquitto" or shutil.which("mosquitto")]
    n0 = 100_000 if args.quick else 500_000
    n1 = 10_000 if args.quick else 50_000
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as tmp:
        for kind in kinds:
            server = Server(kind, Path(tmp))
            server.start()
            try:
                results[kind] = {"qos0": qos0(server.port, n0), "qos1": qos1(server.port, n1)}
            finally:
                server.stop()
            print(
                f"{kind}: QoS 0 {results[kind]['qos0']:,.0f} msgs/s, QoS 1 {results[kind]['qos1']:,.0f} msgs/s",
                flush=True,
            )
    print()
    print("| scenario | " + " | ".join(kinds) + " | js/nats | js/mosquitto |")
    print("|---|" + "---|" * (len(kinds) + 2))
    for key, label in (
        ("qos0", "QoS 0 publish 64 B, delivered (msgs/s)"),
        ("qos1", "QoS 1 publish 64 B, 256 in flight (msgs/s)"),
    ):
        cells = [f"{results[k][key] / 1000:.1f} k" for k in kinds]
        js = results.get("jsedge", {}).get(key)
        ratio_nats = f"{js / results['nats'][key]:.2f}x" if js and "nats" in results else ""
        ratio_mosq = f"{js / results['mosquitto'][key]:.2f}x" if js and "mosquitto" in results else ""
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio_nats} | {ratio_mosq} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if os.environ.get("JSEDGE_BENCH_STRICT"):
        assert all(v > 0 for r in results.values() for v in r.values())


if __name__ == "__main__":
    main()
