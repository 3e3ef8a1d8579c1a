"""Smoke-test a built jsedge (a wheel installed in a venv, or a zipapp) where it was built, with the
standard library only (it runs inside the emulated ARM root file systems too):

    python tools/artifact_smoke.py -- <command that runs jsedge...>
    python tools/artifact_smoke.py -- /venv/bin/python -m jsedge
    python tools/artifact_smoke.py -- python3 -I dist/jsedge-0.1.0-py311-aarch64.pyz

Starts the server with JetStream on a free port, then through the same command's management CLI
adds a file stream, publishes a message and reads the stream's state back; stops the server by its
PID. Exit status 0 when all of it worked; the output says which twins the server runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen(
            [*command, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines: list[str] = []
            deadline = time.monotonic() + 120  # minutes under emulation are normal
            assert server.stdout is not None
            while time.monotonic() < deadline:
                line = server.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if "Server is ready" in line:
                    break
            if not any("Server is ready" in line for line in lines):
                print("".join(lines), file=sys.stderr)
                print("smoke: the server never became ready", file=sys.stderr)
                return 1
            twins = [line.strip() for line in lines if "twin" in line.lower()]
            print("smoke: server ready;", twins[0] if twins else "compiled twins")

            def cli(*args: str) -> str:
                done = subprocess.run(
                    [*command, "-s", url, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(args)}: {done.stdout}{done.stderr}")
                return done.stdout

            cli("stream", "add", "SMOKE", "--subjects", "smoke.>", "--storage", "file", "--defaults")
            cli("pub", "smoke.x", "hello")
            info = cli("stream", "info", "SMOKE", "--json")
            if '"messages": 1' not in info:
                print(info, file=sys.stderr)
                print("smoke: the stream does not hold the message", file=sys.stderr)
                return 1
            print("smoke: stream added, message stored and read back: ok")
            return 0
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"smoke: {exc}", file=sys.stderr)
            return 1
        finally:
            if server.poll() is None:
                os.kill(server.pid, signal.SIGTERM)
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(server.pid, signal.SIGKILL)
                    server.wait(5)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
