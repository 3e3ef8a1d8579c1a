"""Per-server and per-account JetStream (layer 4): stream lifecycle, limits, recovery, startup log.

`JetStream(server)` is created by the server when JetStream is enabled. `start()` logs nats-server's
startup block, enables JetStream for the accounts that have it (`$G` without an `accounts` block),
recovers every stream from `<store_dir>/jetstream/<account>/streams/<name>/` (its `meta.inf` holds the
config and creation time; the store's own files sit next to it), and starts the `$JS.API` layer.

The API layer (layer 5) sits above this one, so it is not imported here: it registers itself through
`api_factory` / `direct_get_handler` (see `attach_api`). Until server.py composes it explicitly, `start()`
gets its API layer (`jsedge.api`, layer 5) from the composition root, server.py, through `attach_api`. May import layers 0-3 and jetstream.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from jsedge.errors import js_error
from jsedge.jetstream import advisory
from jsedge.jetstream.batch import limits_from as batch_limits_from
from jsedge.jetstream.commands import UpdateConfig
from jsedge.jetstream.host import ServerHandle
from jsedge.jetstream.models import ZERO_TIME, StreamConfig, decode_stream_config_request, format_time_ns, parse_time_ns
from jsedge.jetstream.stream import Stream, store_config
from jsedge.jetstream.streamconfig import (
    API_LEVEL,
    check_stream_config,
    check_update,
    set_static_metadata,
)
from jsedge.store.base import StreamStore
from jsedge.subjects import subjects_overlap

META_FILE = "meta.inf"

_BANNER = [
    "    _ ___ _____ ___ _____ ___ ___   _   __  __",
    " _ | | __|_   _/ __|_   _| _ \\ __| /_\\ |  \\/  |",
    "| || | _|  | | \\__ \\ | | |   / _| / _ \\| |\\/| |",
    " \\__/|___| |_| |___/ |_| |_|_\\___/_/ \\_\\_|  |_|",
    "",
    "         https://docs.nats.io/jetstream",
    "",
]


def friendly_bytes(size: int) -> str:
    """nats-server's friendlyBytes: 1024-based, two decimals (`953.67 MB`)."""
    if size < 1024:
        return f"{size} B"
    units = ["K", "M", "G", "T", "P", "E"]
    exp = 0
    value = float(size)
    while value >= 1024 and exp < len(units):
        value /= 1024
        exp += 1
    return f"{value:.2f} {units[exp - 1]}B"


def go_duration_text(seconds: float) -> str:
    """Go's Duration.String() for the `Took …` line."""
    ns = int(seconds * 1e9)
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1000:.3f}".rstrip("0").rstrip(".") + "µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{ns / 1e9:.9f}".rstrip("0").rstrip(".") + "s"


def open_store(
    config: StreamConfig, directory: str, jetstream_config: Any, log: Callable[[str], None] | None = None
) -> StreamStore:
    """A memory or file store for the stream (the file store lives in `directory`)."""
    settings = store_config(config)
    if config.storage == "memory":
        from jsedge.store.memstore import MemStore

        return MemStore(settings)
    from jsedge.store.filestore import FileStore

    # Durability: group commit (ack after fsync) unless the config opts into nats-server's lazy
    # `sync_interval` or asks for `sync_always`.
    if jetstream_config.sync_always:
        policy, interval = "always", 120.0
    elif jetstream_config.sync_interval is not None:
        policy, interval = "interval", float(jetstream_config.sync_interval)
    else:
        policy, interval = "group", 120.0
    return FileStore(directory, settings, sync_policy=policy, sync_interval=interval, log=log)


#: Directories above the stream directories whose entries are known durable (fsynced once).
_DURABLE_DIRS: set[str] = set()


def tier_name(replicas: int | None) -> str:
    """nats-server's tier of a stream: R<replicas> (R1 for 0)."""
    return f"R{max(1, replicas or 1)}"


class AccountJetStream:
    """JetStream state of one account: its streams, limits and API counters."""

    def __init__(self, jetstream: JetStream, account: Any, limits: Any) -> None:
        self.jetstream = jetstream
        self.server: ServerHandle = jetstream.server
        self.account = account
        self.name: str = account.name
        self.limits = limits  # AccountJetStreamConfig or None (= unlimited)
        self.streams: dict[str, Stream] = {}
        self.api_total = 0
        self.api_errors = 0
        self.directory = os.path.join(jetstream.store_root, self.name, "streams")

    @property
    def domain(self) -> str:
        return self.jetstream.domain

    def limit(self, name: str, replicas: int | None = None) -> int | bool:
        """An account limit: the flat one, or with tiered limits the tier of `replicas`' (None:
        the account-wide figure, which nats-server shows as 0 for a tiered account; a replica
        count without a tier: no limit here, `require_tier` refuses such streams)."""
        limits = self.limits
        if limits is None:
            return False if name == "max_bytes_required" else -1
        if limits.tiers:
            if replicas is None:
                return False if name == "max_bytes_required" else 0
            tier = dict(limits.tiers).get(tier_name(replicas))
            if tier is None:
                return False if name == "max_bytes_required" else -1
            limits = tier
        value: int | bool = getattr(limits, name)
        return value

    @property
    def tiered(self) -> bool:
        return self.limits is not None and bool(self.limits.tiers)

    def require_tier(self, replicas: int) -> None:
        """A tiered account must have limits for the stream's tier (nats-server's 10120)."""
        if self.tiered and tier_name(replicas) not in dict(self.limits.tiers):
            raise js_error("JSNoLimitsErr")

    def _in_tier(self, stream: Stream, replicas: int) -> bool:
        return not self.tiered or max(1, stream.config.num_replicas) == max(1, replicas)

    # ------------------------------------------------------------------ hooks used by streams

    def direct_get_callback(self, stream: Stream) -> Callable[..., None]:
        jetstream = self.jetstream

        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            handler = jetstream.direct_get_handler
            if handler is not None:
                handler(stream, src, subject, reply, hdr_len, msg)

        return callback

    def check_resources(self, stream: Stream, size: int) -> None:
        """Publish-time check against server-wide and account storage limits (10023)."""
        memory = stream.config.storage == "memory"
        server_limit = self.jetstream.max_memory if memory else self.jetstream.max_store
        replicas = stream.config.num_replicas
        account_limit = self.limit("max_memory" if memory else "max_store", replicas)
        if not self.jetstream.explicit_limits and account_limit == -1:
            return  # automatic limits are 75 % of RAM/disk: not worth a scan per publish
        usage = self.jetstream.usage(memory)
        if server_limit >= 0 and usage + size > server_limit:
            raise js_error("JSInsufficientResourcesErr")
        if isinstance(account_limit, int) and account_limit >= 0:
            if self.usage(memory, replicas if self.tiered else None) + size > account_limit:
                raise js_error("JSAccountResourcesExceededErr")

    def usage(self, memory: bool, replicas: int | None = None) -> int:
        """Bytes stored (in the tier of `replicas`, when given)."""
        return sum(
            s.store.state().bytes
            for s in self.streams.values()
            if (s.config.storage == "memory") == memory and (replicas is None or self._in_tier(s, replicas))
        )

    def reserved(self, memory: bool, replicas: int | None = None) -> int:
        return sum(
            s.config.max_bytes
            for s in self.streams.values()
            if s.config.max_bytes > 0
            and (s.config.storage == "memory") == memory
            and (replicas is None or self._in_tier(s, replicas))
        )

    # ------------------------------------------------------------------ stream lifecycle

    def stream_dir(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _check_overlap(self, config: StreamConfig, exclude: str = "") -> None:
        mine = [s.encode() for s in config.subjects or []]
        for other in self.streams.values():
            if other.name == exclude:
                continue
            for subject in other.config.subjects or []:
                if any(subjects_overlap(subject.encode(), m) for m in mine):
                    raise js_error("JSStreamSubjectOverlapErr")

    def _check_limits(self, config: StreamConfig, replacing: Stream | None = None) -> None:
        replicas = config.num_replicas
        tier = replicas if self.tiered else None
        if replacing is None:
            max_streams = self.limit("max_streams", replicas)
            if isinstance(max_streams, int) and max_streams > 0:
                if sum(1 for s in self.streams.values() if self._in_tier(s, replicas)) >= max_streams:
                    raise js_error("JSMaximumStreamsLimitErr")
        if self.limit("max_bytes_required", replicas) and config.max_bytes <= 0:
            raise js_error("JSStreamMaxBytesRequired")
        memory = config.storage == "memory"
        if config.max_bytes > 0:
            reserved = self.jetstream.reserved(memory)
            if replacing is not None and replacing.config.max_bytes > 0:
                reserved -= replacing.config.max_bytes
            server_limit = self.jetstream.max_memory if memory else self.jetstream.max_store
            if server_limit >= 0 and reserved + config.max_bytes > server_limit:
                raise js_error("JSMemoryResourcesExceededErr" if memory else "JSStorageResourcesExceededErr")
            account_limit = self.limit("max_memory" if memory else "max_store", replicas)
            if isinstance(account_limit, int) and account_limit >= 0:
                reserved_here = self.reserved(memory, tier)
                if replacing is not None and replacing.config.max_bytes > 0 and self._in_tier(replacing, replicas):
                    reserved_here -= replacing.config.max_bytes
                if reserved_here + config.max_bytes > account_limit:
                    raise js_error("JSMemoryResourcesExceededErr" if memory else "JSStorageResourcesExceededErr")
        elif memory and self.jetstream.max_memory == 0:
            raise js_error("JSMemoryResourcesExceededErr")
        elif not memory and self.jetstream.max_store == 0:
            raise js_error("JSStorageResourcesExceededErr")

    def defaulted(self, config: StreamConfig, pedantic: bool) -> StreamConfig:
        return check_stream_config(config, pedantic=pedantic, max_duplicate_window=self.jetstream.max_duplicate_window)

    def create_stream(self, request: StreamConfig) -> tuple[Stream, bool]:
        """STREAM.CREATE after the name check: (stream, did_create)."""
        if request.sealed:
            raise js_error("JSStreamInvalidConfigF", err="stream configuration for create can not be sealed")
        if request.mirror_direct and request.mirror is None:
            raise js_error("JSStreamInvalidConfigF", err="stream has no mirror but does have mirror direct")
        config = self.defaulted(request, request.pedantic)
        self.require_tier(config.num_replicas)
        if config.num_replicas > 1:
            raise js_error("JSStreamReplicasNotSupportedErr")
        if config.mirror is not None or config.sources:
            mirror_module = self.jetstream.mirror_module()
            if mirror_module is not None:
                mirror_module.check_origins(self, config)  # may set mirror_direct: before the compare
        existing = self.streams.get(config.name)
        if existing is not None:
            candidate = config.copy()
            set_static_metadata(candidate)
            current = existing.config.copy()
            candidate.metadata = {k: v for k, v in (candidate.metadata or {}).items() if k != "_nats.req.level"}
            current.metadata = {k: v for k, v in (current.metadata or {}).items() if k != "_nats.req.level"}
            if candidate != current:
                raise js_error("JSStreamNameExistErr")
            return existing, True
        self._check_overlap(config)
        self._check_limits(config)
        set_static_metadata(config)
        stream = self._open(config, time.time_ns(), fresh=True)
        advisory.stream_action(stream, "create")
        return stream, True

    def _open(
        self, config: StreamConfig, created: int, fresh: bool, fill: Callable[[Stream], None] | None = None
    ) -> Stream:
        """Open (or create, `fresh`) a stream's store and start it. `fill` runs before the start
        (restore: the archive's messages applied as commands); then its consumers are recovered."""
        directory = self.stream_dir(config.name)
        if fresh and os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
        self._write_meta(config, created)
        store = open_store(config, directory, self.jetstream.config, self.server.logger.warn)
        stream = Stream(self, config, store, created)
        if fill is not None:
            try:
                fill(stream)
            except BaseException:
                store.delete()
                shutil.rmtree(directory, ignore_errors=True)
                raise
        self.streams[config.name] = stream
        stream.start()
        if not fresh or fill is not None:
            from jsedge.jetstream.consumers import recover_consumers

            recover_consumers(stream)
        self.attach_mirror(stream)
        return stream

    def attach_mirror(self, stream: Stream) -> None:
        """Start, reconfigure or stop the copy loops of a stream's mirror or sources (after its
        start and after every config change; a cluster's replicas all do, only the leader copies)."""
        config = stream.config
        mirror_module = self.jetstream.mirror_module() if (config.mirror is not None or config.sources) else None
        if mirror_module is not None:
            mirror_module.attach(stream)
        elif stream._mirror is not None:
            stream._mirror.forget()  # its sources are gone: so are the durables made for them
            stream._mirror.stop()
            stream._mirror = None

    def open_replica(
        self, config: StreamConfig, created: int, group: str, attach: Callable[[Stream], None], *, keep: bool = False
    ) -> Stream:
        """A stream of a JetStream cluster on this server (cluster/stream.py): its store is reopened
        when the directory belongs to the same Raft group (or `keep`: a replica change carries it
        over to a new group), else started afresh; `attach` runs before the stream starts (it
        decides which subscriptions the replica takes)."""
        directory = self.stream_dir(config.name)
        fresh = not keep and self._read_group(config.name) != group
        if fresh and os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
        self._write_meta(config, created, group)
        store = open_store(config, directory, self.jetstream.config, self.server.logger.warn)
        stream = Stream(self, config, store, created)
        attach(stream)
        self.streams[config.name] = stream
        stream.start()
        if not fresh:
            from jsedge.jetstream.consumers import recover_consumers

            recover_consumers(stream)  # durable consumers placed here; the meta group confirms them
        self.attach_mirror(stream)
        return stream

    def _read_group(self, name: str) -> str:
        try:
            with open(os.path.join(self.stream_dir(name), META_FILE), encoding="utf-8") as handle:
                return str(json.load(handle).get("group", ""))
        except (OSError, ValueError):
            return ""

    def close_replica(self, name: str, *, delete: bool) -> None:
        """Stop (and with `delete`, remove) this server's replica of a clustered stream."""
        stream = self.streams.pop(name, None)
        if stream is None:
            return
        from jsedge.jetstream.consumers import stop_consumers

        stop_consumers(stream, deleted=delete)
        if delete and stream._mirror is not None:
            stream._mirror.forget()
        stream.stop()
        if delete:
            stream.store.delete()
            shutil.rmtree(self.stream_dir(name), ignore_errors=True)
        else:
            try:
                stream.store.close()
            except Exception:
                pass

    def _write_meta(self, config: StreamConfig, created: int, group: str = "") -> None:
        from jsedge.jetstream.models import encode

        directory = self.stream_dir(config.name)
        document: dict[str, Any] = {"config": encode(config), "created": format_time_ns(created)}
        if not group and self.jetstream.clustered:
            group = self._read_group(config.name)
        if group:
            document["group"] = group
        # atomic and durable: temp file, fsync, rename, fsync the directory (without that last
        # fsync a power loss can lose the rename, and a clustered replica whose meta.inf is gone
        # restarts its store afresh); the stream directory's own entry is made durable too
        from pathlib import Path

        from jsedge.store._sync import fsync_dir
        from jsedge.store.filestore import write_atomic

        write_atomic(Path(directory) / META_FILE, json.dumps(document).encode())
        # the new directories' own entries too, up to the store root: `streams/` and the account's
        # directory are created with the first stream, and a power loss must not take them back
        root = os.path.dirname(os.path.abspath(self.jetstream.store_root))
        parent = os.path.dirname(os.path.abspath(directory))
        while parent.startswith(root) and parent not in _DURABLE_DIRS:
            fsync_dir(parent)
            if parent != os.path.dirname(os.path.abspath(directory)):
                _DURABLE_DIRS.add(parent)  # an ancestor is made durable once per process
            if parent == root:
                break
            parent = os.path.dirname(parent)

    def update_stream(self, request: StreamConfig) -> Stream:
        stream = self.streams.get(request.name)
        config = self.defaulted(request, request.pedantic)
        if stream is None:
            raise js_error("JSStreamNotFoundErr")
        if config.num_replicas > 1:
            raise js_error("JSStreamReplicasNotSupportedErr")
        config = check_update(stream.config, config)
        if config.mirror is not None or config.sources:
            mirror_module = self.jetstream.mirror_module()
            if mirror_module is not None:
                mirror_module.check_origins(self, config)
        self._check_overlap(config, exclude=stream.name)
        self._check_limits(config, replacing=stream)
        set_static_metadata(config)
        if config.mirror is None and stream.config.mirror is not None and not config.subjects:
            config.subjects = [config.name]
        stream.execute(UpdateConfig(config))
        self._write_meta(config, stream.created)
        self.attach_mirror(stream)
        advisory.stream_action(stream, "modify")
        return stream

    def delete_stream(self, name: str) -> None:
        stream = self.streams.pop(name, None)
        if stream is None:
            raise js_error("JSStreamNotFoundErr")
        from jsedge.jetstream.consumers import stop_consumers

        stop_consumers(stream, deleted=True)
        if stream._mirror is not None:
            stream._mirror.forget()
        stream.stop()
        stream.store.delete()
        shutil.rmtree(self.stream_dir(name), ignore_errors=True)
        advisory.stream_action(stream, "delete")  # after its consumers' (nats-server's order)

    def recover(self) -> None:
        if not os.path.isdir(self.directory) or self.jetstream.clustered:
            return  # in a cluster the meta group says which streams this server holds
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name, META_FILE)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    document = json.load(handle)
                config = decode_stream_config_request(document["config"])
                config.pedantic = False
                created_text = document.get("created", ZERO_TIME)
                created = parse_time_ns(created_text)
                self._open(config, created, fresh=False)
                self.server.logger.info(f"  Restored stream '{self.name} > {name}'")  # nats-server says similar
            except Exception as exc:
                self.server.logger.error(f"  Error recreating stream '{self.name} > {name}': {exc}")

    def stop(self) -> None:
        from jsedge.jetstream.ackroute import release_account_subscriptions
        from jsedge.jetstream.consumers import stop_consumers

        release_account_subscriptions(self)
        for stream in list(self.streams.values()):
            stop_consumers(stream, deleted=False)
            stream.stop()
            try:
                stream.store.close()
            except Exception:
                pass


class JetStreamStartError(RuntimeError):
    """JetStream cannot start; str() is the reason nats-server gives after "Can't start JetStream: "."""


def prepare_store_dir(path: str) -> None:
    """nats-server's checks of the store directory, with its texts: created when missing, else it
    must be a directory this process can write into."""
    try:
        exists = os.path.lexists(path)
        if not exists:
            os.makedirs(path, exist_ok=True)
            return
    except OSError as exc:
        where = exc.filename or path
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        if exc.errno == errno.ENOTDIR:
            raise JetStreamStartError("storage directory is not a directory") from None
        raise JetStreamStartError(f"could not create storage directory - mkdir {where}: {reason}") from None
    if not os.path.isdir(path):
        raise JetStreamStartError("storage directory is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix="_test_", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError:
        raise JetStreamStartError("storage directory is not writable") from None


class JetStream:
    """The server's JetStream engine."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.config = server.config.jetstream
        self.domain: str = self.config.domain
        base = self.config.store_dir or os.path.join(tempfile.gettempdir(), "nats")
        self.temporary_dir = not self.config.store_dir
        self.store_root = os.path.join(os.path.abspath(base), "jetstream")
        self.explicit_limits = self.config.max_memory_store >= 0 or self.config.max_file_store >= 0
        self.max_memory = self.config.max_memory_store if self.config.max_memory_store >= 0 else _auto_memory()
        prepare_store_dir(self.store_root)
        self.max_store = self.config.max_file_store if self.config.max_file_store >= 0 else _auto_disk(self.store_root)
        self.max_duplicate_window = _duration_limit(self.config.limits, "duplicate_window")
        #: `limits { batch { max_msgs, max_inflight_per_stream, max_inflight_total, timeout } }`
        self.batch_limits = batch_limits_from(self.config.limits)
        self.accounts: dict[str, AccountJetStream] = {}
        #: Set by the API layer: `handler(stream, src, subject, reply, hdr_len, msg)` for DIRECT.GET.
        self.direct_get_handler: Callable[..., None] | None = None
        self.api: Any = None
        #: Set by the composition root when JetStream runs clustered (cluster/jetstream.py).
        self.clustered = False
        self.cluster: Any = None
        self.started = False
        self._mirror_module: Any = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        log = self.server.logger
        began = time.monotonic()
        log.info("Starting JetStream")
        if self.temporary_dir:
            log.warn("Temporary storage directory used, data could be lost on system reboot")
        for line in _BANNER:
            log.info(line)
        log.info("---------------- JETSTREAM ----------------")
        log.info(f"  Strict:          {'true' if self.config.strict else 'false'}")
        log.info(f"  Max Memory:      {friendly_bytes(self.max_memory)}")
        log.info(f"  Max Storage:     {friendly_bytes(self.max_store)}")
        log.info(f'  Store Directory: "{self.store_root}"')
        if self.domain:
            log.info(f"  Domain:          {self.domain}")
        log.info(f"  API Level:       {API_LEVEL}")
        log.info("-------------------------------------------")
        for account, limits in self._enabled_accounts():
            jsa = AccountJetStream(self, account, limits)
            self.accounts[account.name] = jsa
            jsa.recover()
        self.started = True
        if self.api is not None:
            self.api.start()  # the composition root (server.py) attached it before start()
        log.info(f"Took {go_duration_text(time.monotonic() - began)} to start JetStream")

    def enable_new_accounts(self) -> None:
        """After a reload or an account JWT update: JetStream for the accounts that now have it
        (a single server; a cluster's meta group learns accounts at start)."""
        if not self.started:
            return
        added = False
        for account, limits in self._enabled_accounts():
            if account.name in self.accounts:
                continue
            jsa = AccountJetStream(self, account, limits)
            self.accounts[account.name] = jsa
            jsa.recover()
            added = True
        if added and self.api is not None:
            self.api.stop()
            self.api.start()

    def notify_shutdown(self) -> None:
        """Before the clients are closed: waiting pull requests hear that the server goes away."""
        for jsa in self.accounts.values():
            for stream in list(jsa.streams.values()):
                for consumer in list(stream.consumers.values()):
                    consumer.shutdown_waiting()

    def attach_api(self, api: Any) -> None:
        """For a composition root that builds the API itself (call before `start()`)."""
        self.api = api

    async def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        for jsa in self.accounts.values():
            jsa.stop()
        self.started = False

    def _enabled_accounts(self) -> list[tuple[Any, Any]]:
        server = self.server
        configured = server.config.accounts
        if not configured:
            return [(server.accounts["$G"], None)]
        out = []
        for account_config in configured:
            if account_config.jetstream:
                out.append((server.lookup_account(account_config.name), account_config.jetstream_limits))
        return out

    def mirror_module(self) -> Any:
        if self._mirror_module is None:
            try:
                self._mirror_module = importlib.import_module("jsedge.jetstream.mirror")
            except ImportError:
                self._mirror_module = False
        return self._mirror_module or None

    # ------------------------------------------------------------------ lookups and totals

    def account(self, name: str) -> AccountJetStream | None:
        return self.accounts.get(name)

    def usage(self, memory: bool) -> int:
        return sum(jsa.usage(memory) for jsa in self.accounts.values())

    def reserved(self, memory: bool) -> int:
        return sum(jsa.reserved(memory) for jsa in self.accounts.values())

    def statistics(self) -> dict[str, Any]:
        streams = [s for jsa in self.accounts.values() for s in jsa.streams.values()]
        states = [s.store.state() for s in streams]
        return {
            "memory": sum(st.bytes for s, st in zip(streams, states) if s.config.storage == "memory"),
            "storage": sum(st.bytes for s, st in zip(streams, states) if s.config.storage != "memory"),
            "reserved_memory": self.reserved(True),
            "reserved_storage": self.reserved(False),
            "accounts": len(self.accounts),
            "streams": len(streams),
            "consumers": sum(len(s.consumers) for s in streams),
            "messages": sum(st.messages for st in states),
            "bytes": sum(st.bytes for st in states),
            "api_total": sum(jsa.api_total for jsa in self.accounts.values()),
            "api_errors": sum(jsa.api_errors for jsa in self.accounts.values()),
        }


def _auto_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4)
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def _auto_disk(path: str) -> int:
    try:
        return int(shutil.disk_usage(path).free * 3 // 4)
    except OSError:
        return 1 << 40


def _duration_limit(limits: Any, name: str) -> int:
    for key, value in limits or ():
        if key == name:
            try:
                return int(float(value) * 1e9) if not isinstance(value, int) else int(value) * 1_000_000_000
            except (TypeError, ValueError):
                return 0
    return 0
