"""Group-commit fsync thread shared by every file store (layer 3).

One daemon thread runs every fsync of the process, never the event loop. A store that wants
durability calls `SYNCER.request(store)`; the thread asks the store for a `SyncJob` (under the store's
lock: duplicated fds of every file written since the last job, with their lengths, the directories
whose entries changed, the futures waiting, files to unlink once the rest is durable, files to
rename over others once durable), fsyncs them and resolves the futures on their loop with `call_soon_threadsafe`. Writes that arrive while an fsync
runs are collected into the *next* job, so one fsync covers all of them: group commit. Rounds are
sequential, so a future taken into round N resolves only after every earlier round finished.

Test hook (power-loss simulation on real processes): when the environment variable
`JSEDGE_SYNC_JOURNAL` names a file at import, every completed fsync appends one line to it --
``<absolute file path> <synced length> ino=<inode>`` for a file, ``<absolute dir path> dir <name>/<name>/...``
for a directory (the entries it held when its fsync started: those names are durable). Callers that
fsync outside `run_job` (`write_atomic`, recovery truncations) report through `journal_file`. Unset,
it costs one module-level `None` check per file.

Duplicated fds (`os.dup`) make the thread independent of the store closing or deleting a block
while its fsync runs.

Layer 3: stdlib only.
"""

from __future__ import annotations

import asyncio
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: Open fd of the sync journal (test hook, see the module docstring), or None (the default).
_JOURNAL_FD: int | None = None
_journal_path = os.environ.get("JSEDGE_SYNC_JOURNAL")
if _journal_path:
    _JOURNAL_FD = os.open(_journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def journal_file(path: str, length: int, fd: int = -1) -> None:
    """Record that `path` is durable up to `length` bytes (no-op unless the journal is on). The
    line names the file's inode too (``ino=<n>``): a hard link (the stream store's link to a Raft
    log segment) is durable with the data its other name's fsync made durable."""
    if _JOURNAL_FD is not None:
        try:
            ino = os.fstat(fd).st_ino if fd >= 0 else os.stat(path).st_ino
        except OSError:
            ino = 0
        os.write(_JOURNAL_FD, f"{os.path.abspath(path)} {length} ino={ino}\n".encode())


def _list_dir(directory: str) -> list[str] | None:
    if _JOURNAL_FD is None:
        return None
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def _journal_dir(directory: str, names: list[str] | None) -> None:
    if _JOURNAL_FD is not None and names is not None:
        os.write(_JOURNAL_FD, f"{os.path.abspath(directory)} dir {'/'.join(names)}\n".encode())


def fsync_dir(directory: str) -> None:
    """fsync a directory (its entries become durable); journaled like `run_job`'s."""
    names = _list_dir(directory)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    _journal_dir(directory, names)


@dataclass(slots=True)
class SyncJob:
    files: list[tuple[str, int, int]] = field(default_factory=list)  # (path, dup fd, length written)
    dirs: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    unlink_after: list[str] = field(default_factory=list)
    #: (tmp, final): fsync tmp, rename it over final, fsync final's directory (a compressed block
    #: replacing its plain copy); a tmp that is gone (its block was deleted meanwhile) is skipped
    renames: list[tuple[str, str]] = field(default_factory=list)
    #: called with the finals renamed, after their directories were fsynced
    on_renamed: Callable[[list[str]], None] | None = None
    on_synced: Callable[[str, int], None] | None = None


class Syncable(Protocol):
    def take_sync_job(self) -> SyncJob: ...

    def sync_done(self) -> None: ...


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def run_job(job: SyncJob) -> BaseException | None:
    """fsync everything in the job (any thread); returns the first error, if any."""
    error: BaseException | None = None
    for path, fd, length in job.files:
        try:
            os.fsync(fd)
            if job.on_synced is not None:
                job.on_synced(path, length)
            if _JOURNAL_FD is not None:
                journal_file(path, length, fd)
        except OSError as exc:
            error = error or exc
        finally:
            os.close(fd)
    for directory in job.dirs:
        names = _list_dir(directory)
        try:
            dfd = os.open(directory, os.O_RDONLY)
        except FileNotFoundError:
            continue  # deleted meanwhile (stream deleted)
        try:
            os.fsync(dfd)
            _journal_dir(directory, names)
        except OSError as exc:
            error = error or exc
        finally:
            os.close(dfd)
    if error is None and job.renames:
        error = _run_renames(job)
    if error is None and job.unlink_after:
        dirs = set()
        for path in job.unlink_after:
            try:
                os.unlink(path)
                dirs.add(os.path.dirname(path))
            except FileNotFoundError:
                pass
        for directory in dirs:
            try:
                fsync_dir(directory)
            except FileNotFoundError:
                continue
    return error


def _run_renames(job: SyncJob) -> BaseException | None:
    done: list[str] = []
    dirs: set[str] = set()
    for tmp, final in job.renames:
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
            length = os.fstat(fd).st_size
        except OSError as exc:
            return exc
        finally:
            os.close(fd)
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return exc
        if job.on_synced is not None:
            job.on_synced(final, length)
        journal_file(final, length)
        done.append(final)
        dirs.add(os.path.dirname(final))
    for directory in sorted(dirs):
        try:
            fsync_dir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return exc
    if done and job.on_renamed is not None:
        job.on_renamed(done)
    return None


class Syncer:
    """The single fsync thread (started on first use)."""

    def __init__(self) -> None:
        self._queue: deque[Syncable] = deque()
        self._queued: set[int] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        #: Completed rounds (tests and benchmarks read it to count fsync batches).
        self.rounds = 0

    def request(self, store: Syncable) -> None:
        with self._cond:
            if id(store) in self._queued:
                return
            self._queued.add(id(store))
            self._queue.append(store)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="jsedge-fsync", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                store = self._queue.popleft()
                self._queued.discard(id(store))
            try:
                job = store.take_sync_job()
            except Exception:  # a bug, never expected: the thread must outlive it (it serves every store)
                traceback.print_exc()
                continue
            error = run_job(job)
            self.rounds += 1
            store.sync_done()
            for fut in job.waiters:
                try:
                    fut.get_loop().call_soon_threadsafe(_resolve, fut, error)
                except RuntimeError:  # loop closed: nobody is waiting any more
                    pass


SYNCER = Syncer()
