"""Logging in nats-server's line format (layer 0).

`[<pid>] <YYYY/MM/DD HH:MM:SS.uuuuuu> [<LVL>] <text>`, levels INF DBG TRC WRN ERR FTL. `-T=false`
drops the timestamp. When `JOURNAL_STREAM` is set (systemd connected stderr to the journal) lines carry
a `<N>` syslog priority prefix and no timestamp of their own, because journald stamps them.
Tooling waits for the key lines ("Listening for client connections on", "Server is ready"), so they
are written and flushed at once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

# syslog priorities for journald's `<N>` prefix.
_PRIORITY = {"FTL": 2, "ERR": 3, "WRN": 4, "INF": 6, "DBG": 7, "TRC": 7}


class Logger:
    """A small, thread-safe line logger; `reopen()` serves SIGUSR1 (logrotate)."""

    def __init__(
        self,
        *,
        debug: bool = False,
        trace: bool = False,
        logtime: bool = True,
        utc: bool = False,
        logfile: str = "",
        stream: TextIO | None = None,
        journald: bool | None = None,
    ) -> None:
        self.debug_enabled = debug
        self.trace_enabled = trace
        self.logtime = logtime
        self.utc = utc
        self.logfile = logfile
        self._stream_default = stream or sys.stderr
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self.journald = bool(os.environ.get("JOURNAL_STREAM")) if journald is None else journald
        self._pid = os.getpid()
        if logfile:
            self._file = open(logfile, "a", encoding="utf-8")

    def configure(self, *, debug: bool, trace: bool, logtime: bool, utc: bool, logfile: str) -> None:
        """Apply new logging options (reload)."""
        self.debug_enabled, self.trace_enabled, self.logtime, self.utc = debug, trace, logtime, utc
        if logfile != self.logfile:
            self.logfile = logfile
            self.reopen()

    @property
    def _out(self) -> TextIO:
        return self._file if self._file is not None else self._stream_default

    def reopen(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self.logfile:
                self._file = open(self.logfile, "a", encoding="utf-8")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _stamp(self) -> str:
        now = time.time()
        parts = time.gmtime(now) if self.utc else time.localtime(now)
        return time.strftime("%Y/%m/%d %H:%M:%S", parts) + f".{int((now % 1) * 1_000_000):06d}"

    def log(self, level: str, text: str) -> None:
        if self.journald and self._file is None:
            line = f"<{_PRIORITY[level]}>[{level}] {text}\n"
        elif self.logtime:
            line = f"[{self._pid}] {self._stamp()} [{level}] {text}\n"
        else:
            line = f"[{self._pid}] [{level}] {text}\n"
        with self._lock:
            out = self._out
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                pass

    def info(self, text: str) -> None:
        self.log("INF", text)

    def warn(self, text: str) -> None:
        self.log("WRN", text)

    def error(self, text: str) -> None:
        self.log("ERR", text)

    def fatal(self, text: str) -> None:
        self.log("FTL", text)

    def debug(self, text: str) -> None:
        if self.debug_enabled:
            self.log("DBG", text)

    def trace(self, text: str) -> None:
        if self.trace_enabled:
            self.log("TRC", text)
