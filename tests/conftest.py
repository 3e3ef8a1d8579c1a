"""Session checks and shared fixtures (see tests/helpers.py for the harness itself)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# Imported here, before any test starts a thread: pytest's hypothesis plugin otherwise imports it
# lazily at session end, and CPython 3.11.7 can fail that import with "SystemError: AST constructor
# recursion depth mismatch" when another thread runs during the parse (CPython gh-106905).
import hypothesis  # noqa: F401
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import SERVER_KINDS, ServerPool, ServerProcess

_SELECTOR_MODULES = ("jsedge._ext", "jsedge.routing.sublist", "jsedge.protocol.parser", "jsedge.store.codec")


def _check_extensions() -> None:
    """Fail the session when a compiled twin is missing (unless JSEDGE_NO_EXTENSIONS=1)."""
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"):
        return
    for name in _SELECTOR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            pytest.exit(f"importing {name} failed: {exc!r}", returncode=1)
    ext = importlib.import_module("jsedge._ext")
    if ext.MISSING:
        details = "; ".join(f"{k}: {v}" for k, v in sorted(ext.MISSING.items()))
        pytest.exit(
            "compiled extensions missing (build them with `python setup.py build_ext --inplace`, or run "
            f"with JSEDGE_NO_EXTENSIONS=1 to test the pure-Python twins): {details}",
            returncode=1,
        )


def pytest_configure(config: pytest.Config) -> None:
    """jsedge's own pytest plugin (jsedge.pytest_plugin: `jetstream_server`, `nats_cluster`...),
    when the installed distribution does not register it (an editable install older than the
    entry point); the suite's own `nats_server` fixture, a nats-server process, takes precedence."""
    manager = config.pluginmanager
    if not manager.has_plugin("jsedge") and not manager.has_plugin("jsedge.pytest_plugin"):
        manager.import_plugin("jsedge.pytest_plugin")


def pytest_sessionstart(session: pytest.Session) -> None:
    _check_extensions()


#: The parameters that name the server a test runs against ("jsedge" or "nats"; `kinds` is the
#: cluster fixture of tests/cluster whose "nats" is a cluster of nats-servers only).
_KIND_PARAMS = ("server_kind", "kind", "side", "kinds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With JSEDGE_NO_EXTENSIONS=1 (the second pass of CI), a test parametrized to run against
    nats-server alone is skipped: nothing of it depends on jsedge's twins, and the compiled pass
    ran it already. Differential tests, which run both servers in one test, still run."""
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        return
    skip = pytest.mark.skip(reason="nats-server's side runs in the compiled-twins pass (it does not use them)")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(callspec.params.get(name) == "nats" for name in _KIND_PARAMS):
            item.add_marker(skip)


# --------------------------------------------------------------------------------------------------
# server fixtures


class _Factory:
    """Callable that starts servers of one kind and remembers them for teardown."""

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind
        self.servers: list[ServerProcess] = []

    def __call__(self, *args: object, kind: str | None = None, **kw: object) -> ServerProcess:
        k = kind or self.kind
        assert k is not None
        srv = ServerProcess(k, *args, start=False, **kw)  # type: ignore[arg-type]
        self.servers.append(srv)
        srv.start()
        return srv

    def close(self) -> None:
        for srv in reversed(self.servers):
            srv.cleanup()
        self.servers.clear()


@pytest.fixture
def nats_server():
    """Factory: `nats_server(args=(), config=None, http=False, port=None)` -> running nats-server."""
    f = _Factory("nats")
    yield f
    f.close()


@pytest.fixture
def jsedge_server():
    """Factory: `jsedge_server(args=(), config=None, http=False, port=None)` -> running jsedge."""
    f = _Factory("jsedge")
    yield f
    f.close()


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """ "jsedge" or "nats" (select with `-k nats` / `-k jsedge`)."""
    return request.param


@pytest.fixture
def server_factory(server_kind: str):
    """Factory starting servers of the selected `server_kind`; all stopped at teardown."""
    f = _Factory(server_kind)
    yield f
    f.close()


@pytest.fixture(scope="session")
def server_pool():
    """Session-wide shared servers keyed by (kind, config, args): `server_pool.get(kind, config)`."""
    pool = ServerPool()
    yield pool
    pool.close()


# JetStream fixtures shared by the consumer, KV and object-store suites: a server of the parametrized
# kind with JetStream on a temporary store, and a nats-py connection to it.
@pytest.fixture
def js_server(server_factory, tmp_path):
    return server_factory(args=["-js", "-sd", str(tmp_path)])


@pytest.fixture
async def nc(js_server):
    import nats

    conn = await nats.connect(js_server.url)
    yield conn
    await conn.close()
