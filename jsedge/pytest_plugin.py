"""pytest fixtures with a jsedge server inside the test process (layer 7): no Go binary, no container.

Installed with jsedge as a `pytest11` entry point; it only adds fixtures and a marker, so it does
nothing unless a test asks for one of them:

* `nats_server`: a core NATS server on an ephemeral port (`.client_url`, `.port`, `.restart()`).
* `jetstream_server`: the same with JetStream, its store in the test's temporary directory;
  `.restart()` keeps the store (durability and reconnect tests).
* `nats_cluster`: three servers in a full mesh of routes (`.client_urls`, `[i]`), ready when every
  route is up.
* `nats_server_session`, `jetstream_server_session`: one server for the whole session.
* `@pytest.mark.jsedge_config("conf text")` gives the function-scoped fixtures of a test a
  config file (nats-server's syntax; e.g. accounts, authorization, `max_payload`).

The servers run in a thread with their own event loop, so the fixtures are plain (synchronous)
ones that suit sync tests, pytest-asyncio and anyio alike; clients connect to them over TCP.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "jsedge_config"


def _leave_jsedge_unrewritten() -> None:
    """pytest marks every module of a plugin's distribution for assertion rewriting, so each jsedge
    module a test imports would be parsed and rewritten again, although none is test code; on
    CPython 3.11 such a parse deep in a call stack can fail ("AST constructor recursion depth
    mismatch", seen in this suite). Unmark the jsedge package (the plugin's own module only has
    fixtures). Uses pytest's rewrite hook as found on sys.meta_path; does nothing if it changes."""
    for finder in sys.meta_path:
        if type(finder).__name__ != "AssertionRewritingHook":
            continue
        marked = getattr(finder, "_must_rewrite", None)
        if isinstance(marked, set):
            marked.discard("jsedge")
        cache = getattr(finder, "_marked_for_rewrite_cache", None)
        if isinstance(cache, dict):
            for name in [name for name in cache if name == "jsedge" or name.startswith("jsedge.")]:
                del cache[name]


_leave_jsedge_unrewritten()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(text): conf-file text for this test's jsedge server fixtures")
    _leave_jsedge_unrewritten()


def _options(request: pytest.FixtureRequest, **options: Any) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        options["config"] = marker.args[0] if marker.args else marker.kwargs["config"]
    return options


@pytest.fixture
def nats_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    from jsedge.embed import run_in_thread

    with run_in_thread(**_options(request)) as server:
        yield server


@pytest.fixture
def jetstream_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from jsedge.embed import run_in_thread

    store = str(tmp_path_factory.mktemp("jsedge-js"))
    with run_in_thread(**_options(request, jetstream=True, store_dir=store)) as server:
        yield server


@pytest.fixture(scope="session")
def nats_server_session() -> Iterator[Any]:
    from jsedge.embed import run_in_thread

    with run_in_thread() as server:
        yield server


@pytest.fixture(scope="session")
def jetstream_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from jsedge.embed import run_in_thread

    store = str(tmp_path_factory.mktemp("jsedge-js-session"))
    with run_in_thread(jetstream=True, store_dir=store) as server:
        yield server


class Cluster:
    """Three embedded servers routed to each other."""

    def __init__(self, servers: list[Any]) -> None:
        self.servers = servers

    def __getitem__(self, index: int) -> Any:
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def client_urls(self) -> list[str]:
        return [server.client_url for server in self.servers]

    @property
    def client_url(self) -> str:
        return ",".join(self.client_urls)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def nats_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    from jsedge.embed import run_in_thread

    ports = _free_ports(3)
    urls = [f"nats://127.0.0.1:{port}" for port in ports]
    servers: list[Any] = []
    try:
        for index in range(len(ports)):
            options = _options(
                request,
                name=f"n{index + 1}",
                cluster=urls[index],
                cluster_name="jsedge",
                routes=[url for url in urls if url != urls[index]],
            )
            servers.append(run_in_thread(**options))
        deadline = time.monotonic() + 20
        while not all(_routes(server) >= 2 for server in servers):
            if time.monotonic() > deadline:
                raise TimeoutError("the jsedge cluster's routes did not come up within 20 s")
            time.sleep(0.02)
        yield Cluster(servers)
    finally:
        for server in servers:
            server.stop()


def _routes(server: Any) -> int:
    routes = server.embedded.server.routes
    return len(routes.routes) if routes is not None else 0
