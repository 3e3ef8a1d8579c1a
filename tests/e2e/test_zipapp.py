"""jsedge as one file (issue 18): tools/build_zipapp.py packs jsedge, its compiled twins and its
dependencies into a zipapp; the file runs under an isolated Python (`-I -S`: no site-packages at
all, nothing installed) as the server and as the management CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest
from helpers import REPO_ROOT, free_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"), reason="a build test: the compiled pass runs it"
    ),
]


def _isolated(pyz: Path, tmp_path: Path, *args: str) -> list[str]:
    """argv running the zipapp with nothing importable but what it carries."""
    return [sys.executable, "-I", "-S", str(pyz), *args]


def _env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "SHIV_ROOT": str(tmp_path / "shiv")}


def test_zipapp_runs_the_server_and_the_cli_with_nothing_installed(tmp_path: Path) -> None:
    pytest.importorskip("shiv")
    pyz = tmp_path / "jsedge.pyz"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "build_zipapp.py"), "--from-env", "-o", str(pyz)],
        check=True,
        capture_output=True,
        timeout=90,
    )
    assert pyz.stat().st_size > 0
    version = subprocess.run(
        _isolated(pyz, tmp_path, "version"), env=_env(tmp_path), capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0 and version.stdout.startswith("jsedge: v"), version.stderr
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            _isolated(pyz, tmp_path, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "store")),
            env=_env(tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while b"Server is ready" not in log.read_bytes():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        compiled = any((REPO_ROOT / "jsedge" / "_speedups").glob("*.so"))
        assert all(f"{name}=c" in text for name in ("codec", "parser", "sublist")) == compiled, text
        url = f"nats://127.0.0.1:{port}"

        async def use() -> bytes:
            nc = await nats.connect(url)
            try:
                js = nc.jetstream()
                await js.add_stream(name="ORDERS", subjects=["orders.>"])
                await js.publish("orders.new", b"one")
                return bytes((await js.get_msg("ORDERS", 1)).data)
            finally:
                await nc.close()

        assert asyncio.run(use()) == b"one"
        listed = subprocess.run(
            _isolated(pyz, tmp_path, "stream", "ls", "-s", url, "--names"),
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listed.returncode == 0 and "ORDERS" in listed.stdout, listed.stdout + listed.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
