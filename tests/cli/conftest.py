"""Fixtures for the management-command tests: a JetStream server of each kind and a CLI runner.

Every command runs as `python -m jsedge ...` in a subprocess (bounded by a timeout) against a real
server; the server's state is checked with nats-py through `js_state`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import REPO_ROOT

CLI_TIMEOUT = 8.0


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:  # shown in assertion messages
        return f"rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class CLI:
    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        self.kind = kind

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["NATS_URL"] = self.url
        env.pop("NATS_USER", None)
        env.pop("NATS_PASSWORD", None)
        env.pop("NATS_CREDS", None)
        return env

    def __call__(self, *args: str, input: str | None = None, timeout: float = CLI_TIMEOUT, ok: bool = True) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "jsedge", *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            cwd=str(REPO_ROOT),
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if ok:
            assert result.rc == 0, f"jsedge {' '.join(args)} failed:\n{result}"
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "jsedge", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=str(REPO_ROOT),
        )

    def state(self, fn: Callable[[Any, Any], Awaitable[Any]]) -> Any:
        """Run `fn(nc, js)` with a nats-py connection to the server; its result."""
        import nats

        async def run() -> Any:
            nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=3)
            try:
                return await asyncio.wait_for(fn(nc, nc.jetstream(timeout=3)), 8)
            finally:
                await nc.close()

        return asyncio.run(run())


@pytest.fixture
def js_server(server_factory, tmp_path):
    return server_factory(["-js", "-sd", str(tmp_path / "store")])


@pytest.fixture
def cli(js_server, server_kind) -> CLI:
    return CLI(js_server.url, server_kind)
