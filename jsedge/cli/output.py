"""Human output for the management commands: tables, progress bars, sizes, durations and counts in
the nats CLI's style (go-humanize's IBytes, Go's time.Duration, natscli's humanizeDuration), plain
ASCII, no dependency.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

# -------------------------------------------------------------------------------------------------
# numbers and sizes

_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def comma(n: int | float) -> str:
    """1234567 -> '1,234,567' (humanize.Comma)."""
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.2f}"
    return f"{int(n):,}"


def ibytes(n: int | float) -> str:
    """go-humanize IBytes: 245 B, 1.2 KiB, 5.0 GiB, 20 GiB."""
    n = float(n)
    if n < 1024:
        return f"{int(n)} B"
    i = 0
    while n >= 1024 and i < len(_IEC) - 1:
        n /= 1024
        i += 1
    return f"{n:.1f} {_IEC[i]}" if n < 10 else f"{n:.0f} {_IEC[i]}"


def limit_count(n: int | None) -> str:
    return "unlimited" if n is None or n < 0 else comma(n)


def limit_bytes(n: int | None) -> str:
    return "unlimited" if n is None or n <= 0 else ibytes(n)


_SIZE_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "ki": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "ti": 1024**4,
    "tib": 1024**4,
    "p": 1024**5,
    "pb": 1024**5,
    "pi": 1024**5,
    "pib": 1024**5,
}


def parse_size(text: str) -> int:
    """'5GB' -> 5 GiB (natscli counts K/M/G in powers of 1024), '-1' -> -1, '1000' -> 1000."""
    m = _SIZE_RE.match(str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text!r}")
    value = float(m.group(1))
    return int(value * _SIZE_UNITS[m.group(2).lower()])


# -------------------------------------------------------------------------------------------------
# durations (nanoseconds, as on the JetStream wire)

_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|M|y)")
_DUR_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
    "M": 30 * 86400 * 10**9,
    "y": 365 * 86400 * 10**9,
}


def parse_duration(text: str) -> int:
    """'7d' / '2m' / '1h30m' / '500ms' / '0' -> nanoseconds (natscli's duration syntax)."""
    text = str(text).strip()
    if text in ("0", "", "-1"):
        return 0
    if re.fullmatch(r"\d+", text):  # bare number: seconds
        return int(text) * 10**9
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return int(total)


def go_duration(ns: int | float) -> str:
    """Go's time.Duration.String(): 2m0s, 168h0m0s, 1.5s, 250ms, 0s."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1_000_000)}ms"
    secs = ns / 1e9
    h, rem = divmod(int(secs), 3600)
    m = rem // 60
    s = secs - h * 3600 - m * 60
    out = f"{_trim(round(s, 9))}s"
    if h or m:
        out = f"{m}m" + out
    if h:
        out = f"{h}h" + out
    return sign + out


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def human_duration(ns: int | float | None) -> str:
    """natscli's humanizeDuration: 7d0h0m0s, 2m0s, 30.00s; 0 is 'forever' in limits."""
    if ns is None:
        return "never"
    ns = int(ns)
    if ns <= 0:
        return "forever" if ns == 0 else "never"
    secs = ns // 10**9
    mins, hrs, days = secs // 60, secs // 3600, secs // 86400
    years = days // 365
    if years:
        return f"{years}y{days % 365}d{hrs % 24}h{mins % 60}m{secs % 60}s"
    if days:
        return f"{days}d{hrs % 24}h{mins % 60}m{secs % 60}s"
    if hrs:
        return f"{hrs}h{mins % 60}m{secs % 60}s"
    if mins:
        return f"{mins}m{secs % 60}s"
    return f"{ns / 1e9:.2f}s"


def since(ts: str | None, now: datetime | None = None) -> str:
    """Age of an RFC 3339 timestamp as a short duration ('3s', '2h1m0s'); 'never' for zero time."""
    dt = parse_time(ts)
    if dt is None:
        return "never"
    now = now or datetime.now(UTC)
    return human_duration(max(0, int((now - dt).total_seconds() * 1e9)))


def parse_time(ts: str | None) -> datetime | None:
    if not ts or ts.startswith("0001-01-01"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", ts)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz)


def fmt_time(ts: str | None) -> str:
    """'2024-01-01 12:00:01' in local time, like natscli; '' for the zero time."""
    dt = parse_time(ts)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else ""


# -------------------------------------------------------------------------------------------------
# tables and key/value sections


class Table:
    """An aligned ASCII table with an optional title, in the layout of natscli's tables."""

    def __init__(self, title: str | None, headers: Sequence[str], right: Iterable[int] = ()) -> None:
        self.title = title
        self.headers = [str(h) for h in headers]
        self.rows: list[list[str]] = []
        self.right = set(right)

    def add(self, *cells: Any) -> None:
        self.rows.append(["" if c is None else str(c) for c in cells])

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        inner = len(sep) - 2

        def line(cells: Sequence[str], header: bool = False) -> str:
            parts = []
            for i, cell in enumerate(cells):
                parts.append(cell.rjust(widths[i]) if (i in self.right and not header) else cell.ljust(widths[i]))
            return "| " + " | ".join(parts) + " |"

        out = []
        if self.title:
            if len(self.title) > inner - 2:
                widths[-1] += len(self.title) - (inner - 2)
                sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
                inner = len(sep) - 2
            out += ["+" + "-" * inner + "+", "|" + self.title.center(inner) + "|"]
        out += [sep, line(self.headers, True), sep]
        out += [line(r) for r in self.rows]
        out.append(sep)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


def section(pairs: Sequence[tuple[str, Any] | None], indent: int = 0) -> str:
    """Right-aligned 'Label: value' lines (natscli's info screens); None entries are skipped."""
    items = [p for p in pairs if p is not None]
    if not items:
        return ""
    width = max(len(k) for k, _ in items) + indent
    return "\n".join(f"{k.rjust(width)}: {v}" for k, v in items)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# -------------------------------------------------------------------------------------------------
# progress bars


class Progress:
    """`label [#########.........] 45% 1.2 MiB/2.4 MiB` on stderr.

    Redrawn in place on a terminal (at most 10 times a second); elsewhere only the final state is
    written, once, so logs and test output stay small.
    """

    def __init__(self, label: str, total: int, unit: str = "bytes", width: int = 30, stream: Any = None) -> None:
        self.label = label
        self.total = max(0, int(total))
        self.unit = unit
        self.width = width
        self.stream = stream or sys.stderr
        self.done = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._closed = False

    def _fmt(self, n: int) -> str:
        return ibytes(n) if self.unit == "bytes" else comma(n)

    def line(self) -> str:
        frac = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {int(frac * 100):3d}% {self._fmt(self.done)}/{self._fmt(self.total)}"

    def update(self, n: int) -> None:
        self.done += n
        if self.tty:
            now = time.monotonic()
            if now - self._last >= 0.1:
                self._last = now
                self.stream.write("\r" + self.line())
                self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stream.write(("\r" if self.tty else "") + self.line() + "\n")
        self.stream.flush()
