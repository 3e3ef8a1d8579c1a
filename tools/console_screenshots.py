"""Screenshots of the web console for the README (docs/console-*.png), from a jsedge with a few
streams, a consumer, a KV bucket and some traffic. Needs Chromium (Debian's `chromium`).

    python tools/console_screenshots.py
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _populate(port: int) -> None:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{port}", name="thermostat")
    js = nc.jetstream()
    await js.add_stream(name="READINGS", subjects=["sensors.>"])
    for i in range(400):
        room = ("kitchen", "attic", "garage")[i % 3]
        await js.publish(
            f"sensors.{room}.temp", f'{{"celsius": {18 + i % 7}.{i % 10}}}'.encode(), headers={"Unit": "C"}
        )
    await js.add_consumer("READINGS", durable_name="dashboard")
    kv = await js.create_key_value(bucket="settings")
    await kv.put("heating.target", b"21")
    await nc.close()


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("no chromium here")
    port, http = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jsedge",
                "-js",
                "-sd",
                tmp,
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                str(http),
                "-n",
                "pi1",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.5)
            asyncio.run(_populate(port))
            out = ROOT / "docs"
            out.mkdir(exist_ok=True)
            for name, path in (("overview", "/console"), ("stream", "/console/stream?acc=%24G&name=READINGS")):
                subprocess.run(
                    [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     "--window-size=1200,760", "--virtual-time-budget=7000", f"--user-data-dir={tmp}/profile",
                     f"--screenshot={out / f'console-{name}.png'}", f"http://127.0.0.1:{http}{path}"],
                    check=True, capture_output=True, timeout=60,
                )  # fmt: skip
                print(out / f"console-{name}.png")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
