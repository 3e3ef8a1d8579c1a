"""jsedge inside a Python program (layer 7): an embedded server on the caller's event loop, or in a
thread of its own, for tests and applications that carry their NATS server with them.

    async with jsedge.serve(jetstream=True) as server:      # port 0: an ephemeral port
        nc = await nats.connect(server.client_url)

    with jsedge.run_in_thread(jetstream=True) as server:    # synchronous programs and tests
        ...

The server is the same as the `jsedge` command's (the same compiled twins, the same config
loader): the common keyword arguments become its command-line flags, any other keyword argument is
a key of the config tree (`max_payload=2048`, `authorization={"users": [...]}`, `accounts={...}`,
`jetstream={"max_mem": "1G"}`), and `config=` is a conf-file text (the `nats-server.conf` syntax);
the tree and the text are written to a temporary file, and flags win over the file as on the
command line. Nothing global is taken: no signal handlers, no systemd notifications, log lines go
to the `logging` logger given (default `logging.getLogger("jsedge")`, nats-server's levels mapped
to logging's). With `jetstream=True` and no `store_dir`, the store is a temporary directory removed
at shutdown. Several servers may run in one process (a cluster, through `cluster=` and `routes=`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jsedge.log import Logger

_LEVELS = {
    "FTL": logging.CRITICAL,
    "ERR": logging.ERROR,
    "WRN": logging.WARNING,
    "INF": logging.INFO,
    "DBG": logging.DEBUG,
    "TRC": logging.DEBUG,
}


#: the signals a server started with handle_signals=True takes (the jsedge command's)
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class LoggingLogger(Logger):
    """jsedge's logger writing to a `logging.Logger` instead of stderr."""

    def __init__(self, target: logging.Logger, *, debug: bool = False, trace: bool = False) -> None:
        super().__init__(debug=debug, trace=trace, journald=False)
        self.target = target

    def configure(self, *, debug: bool, trace: bool, logtime: bool, utc: bool, logfile: str) -> None:
        self.debug_enabled, self.trace_enabled = debug, trace  # (the caller's logging decides the rest)

    def log(self, level: str, text: str) -> None:
        self.target.log(_LEVELS.get(level, logging.INFO), text)


def _flags(
    *,
    host: str,
    port: int,
    jetstream: bool,
    store_dir: str | None,
    http_port: int | None,
    name: str | None,
    cluster: str | None,
    cluster_name: str | None,
    routes: list[str] | None,
    config_path: str | None,
    debug: bool,
    trace: bool,
) -> list[str]:
    """The command line of the keyword arguments (0 = an ephemeral port, nats-server's -1)."""
    argv = ["-a", host, "-p", str(port if port else -1)]
    if config_path:
        argv += ["-c", config_path]
    if jetstream:
        argv += ["-js"]
    if store_dir:
        argv += ["-sd", store_dir]
    if http_port is not None:
        argv += ["-m", str(http_port if http_port else -1)]
    if name:
        argv += ["-n", name]
    if cluster:
        argv += ["--cluster", cluster]
    if cluster_name:
        argv += ["--cluster_name", cluster_name]
    if routes:
        argv += ["--routes", ",".join(routes)]
    if debug:
        argv += ["-D"]
    if trace:
        argv += ["-V"]
    return argv


def conf_text(tree: dict[str, Any]) -> str:
    """Python values as nats-server.conf text: dicts are blocks, lists arrays, strings quoted
    (JSON escapes are the conf syntax's), numbers and booleans as they are."""
    import json

    def value(item: Any) -> str:
        if isinstance(item, dict):
            return "{ " + ", ".join(f"{json.dumps(str(k))}: {value(v)}" for k, v in item.items()) + " }"
        if isinstance(item, (list, tuple)):
            return "[ " + ", ".join(value(v) for v in item) + " ]"
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return str(item)
        return json.dumps(str(item))

    return "".join(f"{json.dumps(str(key))}: {value(item)}\n" for key, item in tree.items())


class EmbeddedServer:
    """A running embedded server: its URLs, and reload / lame duck / restart / shutdown."""

    def __init__(
        self, argv: list[str], logger: Logger, store_dir: str | None, cleanup: list[str], signals: bool = False
    ) -> None:
        self.argv = argv
        self.signals = signals
        self._saved_signals: dict[signal.Signals, Any] = {}
        self.logger = logger
        self.store_dir = store_dir
        self._cleanup = cleanup
        self.server: Any = None
        self._port = 0
        self._http_port = 0

    async def start(self) -> EmbeddedServer:
        from jsedge.config import ConfigError, load_config
        from jsedge.sdnotify import Notifier
        from jsedge.server import Server

        argv = list(self.argv)
        if self._port:  # a restart keeps the port its clients know
            index = argv.index("-p")
            argv[index + 1] = str(self._port)
        try:
            config = load_config(argv, os.environ).config
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        server = Server(config, self.logger, argv)
        server.notifier = Notifier({})  # never systemd's, even when the caller runs under it
        if self.signals:  # asked for: SIGTERM/SIGINT stop it, SIGHUP reloads, as the command's
            # what the process had (SIG_IGN under nohup, a framework's handler...), given back at
            # shutdown: asyncio's remove_signal_handler would leave SIG_DFL
            self._saved_signals = {number: signal.getsignal(number) for number in _SIGNALS}
            server.install_signal_handlers()
        await server.start()
        self.server = server
        self._port = server.port
        self._http_port = server.http_port
        return self

    # -- where it is ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        host = self.argv[self.argv.index("-a") + 1]
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    @property
    def client_url(self) -> str:
        host = self.host
        return f"nats://{f'[{host}]' if ':' in host else host}:{self._port}"

    @property
    def monitor_url(self) -> str | None:
        return f"http://{self.host}:{self._http_port}" if self._http_port else None

    # -- control ----------------------------------------------------------------------------
    async def reload(self) -> None:
        """Re-read the configuration (as SIGHUP)."""
        self.server.reload()

    async def lame_duck(self) -> None:
        """Stop accepting clients and close the existing ones over the lame-duck period."""
        await self.server.enter_lame_duck()
        await self.server.stopped.wait()

    async def shutdown(self) -> None:
        if self.server is not None and not self.server.stopped.is_set():
            await self.server.shutdown()
        if self.signals and self.server is not None:
            for number in _SIGNALS:
                self.server.loop.remove_signal_handler(number)
                previous = self._saved_signals.get(number)
                if previous is not None:
                    signal.signal(number, previous)

    async def restart(self) -> None:
        """Shut down and start again on the same port with the same store (reconnect and
        durability tests)."""
        await self.shutdown()
        await self.start()

    def _remove_temporaries(self) -> None:
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _prepare(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    jetstream: bool | dict[str, Any] = False,
    store_dir: str | os.PathLike[str] | None = None,
    config: str | None = None,
    http_port: int | None = None,
    name: str | None = None,
    cluster: str | None = None,
    cluster_name: str | None = None,
    routes: list[str] | None = None,
    logger: logging.Logger | None = None,
    debug: bool = False,
    trace: bool = False,
    handle_signals: bool = False,
    **tree: Any,
) -> EmbeddedServer:
    cleanup: list[str] = []
    config_path = None
    if isinstance(jetstream, dict):  # `jetstream={"max_mem": "1G", ...}`: a block of the config tree
        tree["jetstream"] = jetstream
        jetstream = True
    if tree:  # any other config-tree option, written as conf text after `config`
        config = (config or "") + "\n" + conf_text(tree)
    if config is not None:
        directory = tempfile.mkdtemp(prefix="jsedge-conf-")
        cleanup.append(directory)
        config_path = os.path.join(directory, "server.conf")
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(config)
    store = os.fspath(store_dir) if store_dir is not None else None
    if jetstream and store is None:
        store = tempfile.mkdtemp(prefix="jsedge-js-")
        cleanup.append(store)
    argv = _flags(
        host=host,
        port=port,
        jetstream=jetstream,
        store_dir=store,
        http_port=http_port,
        name=name,
        cluster=cluster,
        cluster_name=cluster_name,
        routes=routes,
        config_path=config_path,
        debug=debug,
        trace=trace,
    )
    target = logger if logger is not None else logging.getLogger("jsedge")
    return EmbeddedServer(argv, LoggingLogger(target, debug=debug, trace=trace), store, cleanup, handle_signals)


@asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[EmbeddedServer]:
    """An embedded server on the running event loop for the `async with` block. Options:
    `port` (0: ephemeral), `host`, `jetstream`, `store_dir` (None with JetStream: a temporary
    directory, removed at exit), `config` (conf-file text), `http_port` (0: ephemeral), `name`,
    `cluster` (route listen URL), `cluster_name`, `routes`, `logger`, `debug`, `trace`,
    `handle_signals` (take SIGTERM/SIGINT/SIGHUP/SIGUSR1/2 as the command does; off by default),
    and any key of the config tree."""
    embedded = _prepare(**options)
    try:
        await embedded.start()
        yield embedded
    finally:
        await embedded.shutdown()
        embedded._remove_temporaries()


class ThreadedServer:
    """`run_in_thread`'s handle: the embedded server's URLs and blocking controls."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.embedded: EmbeddedServer | None = None

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=self._run, name="jsedge-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with serve(**self._options) as embedded:
                self.embedded = embedded
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    def _call(self, coroutine_function: Any) -> Any:
        assert self._loop is not None and self.embedded is not None
        return asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop).result(60)

    # -- the embedded server's, from any thread --------------------------------------------------
    @property
    def client_url(self) -> str:
        assert self.embedded is not None
        return self.embedded.client_url

    @property
    def port(self) -> int:
        assert self.embedded is not None
        return self.embedded.port

    @property
    def monitor_url(self) -> str | None:
        assert self.embedded is not None
        return self.embedded.monitor_url

    @property
    def store_dir(self) -> str | None:
        assert self.embedded is not None
        return self.embedded.store_dir

    def reload(self) -> None:
        self._call(lambda: self.embedded.reload())  # type: ignore[union-attr]

    def restart(self) -> None:
        self._call(lambda: self.embedded.restart())  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(60)
            self._loop = None

    def __enter__(self) -> ThreadedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(**options: Any) -> ThreadedServer:
    """An embedded server running in a thread with its own event loop, started before this
    returns; stop it with `.stop()` or use it as a context manager. Options as `serve`'s."""
    return ThreadedServer(options).start()
