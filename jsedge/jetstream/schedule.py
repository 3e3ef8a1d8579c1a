"""Message schedules (nats-server 2.12+, ADR-51): `allow_msg_schedules`, `Nats-Schedule`.

A message published with `Nats-Schedule: <pattern>` and `Nats-Schedule-Target: <subject>` is a
schedule: it stays on its own subject (a `Nats-Rollup: sub` is added, so a new schedule on the subject
replaces the old one), and when it fires the stream stores a message on the target subject with the
schedule's payload (or, with `Nats-Schedule-Source`, the last message of that subject), minus the
schedule's own headers, plus `Nats-Scheduler: <schedule subject>` and `Nats-Schedule-Next: <next time
in RFC 3339>` or `purge`. Storing that message moves the schedule on to its next time, or (`purge`)
purges the schedule's subject: an `@at` schedule fires once.

Patterns, as nats-server reads them: `@at <RFC 3339 time>`, `@every <Go duration of 1s or more>`,
`@yearly` / `@annually` / `@monthly` / `@weekly` / `@daily` / `@midnight` / `@hourly`, and six-field
cron (`second minute hour day-of-month month day-of-week`, names, ranges, steps, lists), the cron forms
in `Nats-Schedule-Time-Zone` when given. A schedule that would have fired several times while the
server was down fires once. `Nats-Schedule-TTL` and `Nats-Schedule-Rollup: sub` become the produced
message's `Nats-TTL` and `Nats-Rollup`.

The `Scheduler` of a stream keeps, per schedule subject, the schedule message's sequence and its
next time; it is rebuilt from the stored messages when the stream opens, and fired by a timer (at
least 250 ms apart, as nats-server) on the node that leads the stream. Time comes from an injectable
clock (`clock`, nanoseconds since the epoch).

Layer 4: imports jetstream headers/errors and layer 0.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from jsedge.errors import JSError, js_error
from jsedge.goparse import parse_duration_ns
from jsedge.jetstream import headers as H

NS = 1_000_000_000
#: nats-server never fires schedules closer together than this (ingest would suffer)
MIN_FIRE_DELAY = 0.25

SCHEDULE_TTL = b"Nats-Schedule-TTL"
SCHEDULE_ROLLUP = b"Nats-Schedule-Rollup"
SCHEDULE_TARGET = b"Nats-Schedule-Target"
SCHEDULE_SOURCE = b"Nats-Schedule-Source"

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_PREDEFINED = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = {n: i + 1 for i, n in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())}
#: (min, max, names) of the six cron fields
_FIELDS = ((0, 59, None), (0, 59, None), (0, 23, None), (1, 31, None), (1, 12, _MONTHS), (0, 6, _DAYS))
_STAR = 1 << 63


class PatternError(ValueError):
    pass


# ------------------------------------------------------------------------------------------------
# patterns


def load_zone(value: bytes | None) -> tzinfo | None:
    """`Nats-Schedule-Time-Zone` (None when absent); 10223 when empty or unknown."""
    if value is None:
        return None
    if not value:
        raise js_error("JSMessageSchedulesTimeZoneInvalidErr")
    text = value.decode("utf-8", "replace")
    if text == "UTC":
        return UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(text)
    except (ValueError, OSError, LookupError):
        raise js_error("JSMessageSchedulesTimeZoneInvalidErr") from None


def _round_second(ns: int) -> int:
    """Go's Time.Round(time.Second): halves away from zero."""
    whole, rest = divmod(ns, NS)
    return (whole + (1 if rest * 2 >= NS else 0)) * NS


def next_fire(pattern: str, zone: tzinfo | None, ts: int, now: int) -> tuple[int, bool]:
    """(next time in ns, repeats) of a schedule pattern, from `ts`; PatternError when invalid.
    An empty pattern is "no schedule": (0, False)."""
    if not pattern:
        return 0, False
    if pattern.startswith("@at "):
        if zone is not None:
            raise PatternError("a time zone with @at")
        text = pattern[4:]
        if not _RFC3339.fullmatch(text):
            raise PatternError(text)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise PatternError(text) from None
        return _to_ns(moment), False
    if pattern.startswith("@every "):
        if zone is not None:
            raise PatternError("a time zone with @every")
        try:
            every = parse_duration_ns(pattern[7:])
        except ValueError:
            raise PatternError(pattern) from None
        if every < NS:
            raise PatternError("intervals under a second")
        due = _round_second(ts) + every
        if due < now:
            due = _round_second(now) + every
        return due, True
    cron = _PREDEFINED.get(pattern, pattern)
    fields = _parse_cron(cron)
    due = _cron_next(fields, zone or UTC, ts)
    if due < now:
        due = _cron_next(fields, zone or UTC, _round_second(now))
    return due, True


def _to_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def _from_ns(ns: int, zone: tzinfo) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).astimezone(zone)


def format_next(ns: int, zone: tzinfo | None) -> str:
    """Go's time.RFC3339Nano of the moment in the zone (`Z` for a zero offset)."""
    moment = _from_ns(ns, zone or UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = ns % NS
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_cron(pattern: str) -> list[int]:
    parts = pattern.split()
    if len(parts) != 6:
        raise PatternError(f"pattern requires 6 fields, got {len(parts)}")
    return [_cron_field(part, *_FIELDS[i]) for i, part in enumerate(parts)]


def _cron_field(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    bits = 0
    for expr in (e for e in text.split(",") if e):
        bits |= _cron_range(expr, low, high, names)
    return bits


def _cron_number(text: str, names: dict[str, int] | None) -> int:
    if names is not None and text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?\d+", text):
        raise PatternError(f"failed to parse int from {text}")
    number = int(text)
    if number < 0:
        raise PatternError(f"negative number ({number}) not allowed")
    return number


def _cron_range(expr: str, low: int, high: int, names: dict[str, int] | None) -> int:
    range_and_step = expr.split("/")
    bounds = range_and_step[0].split("-")
    extra = 0
    if bounds[0] in ("*", "?"):
        start, end, extra = low, high, _STAR
    else:
        start = _cron_number(bounds[0], names)
        if len(bounds) == 1:
            end = start
        elif len(bounds) == 2:
            end = _cron_number(bounds[1], names)
        else:
            raise PatternError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _cron_number(range_and_step[1], None)
        if len(bounds) == 1:
            end = high
        if step > 1:
            extra = 0
    else:
        raise PatternError(f"too many slashes: {expr}")
    if start < low or end > high or start > end or step == 0:
        raise PatternError(f"range out of bounds: {expr}")
    bits = 0
    for value in range(start, end + 1, step):
        bits |= 1 << value
    return bits | extra


def _day_matches(dom: int, dow: int, moment: datetime) -> bool:
    dom_match = bool(1 << moment.day & dom)
    dow_match = bool(1 << ((moment.weekday() + 1) % 7) & dow)
    if dom & _STAR or dow & _STAR:
        return dom_match and dow_match
    return dom_match or dow_match


def _wall(zone: tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Go's time.Date(...) in the zone, months and days past their ends carried over."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    base = datetime(year, month, 1, tzinfo=zone) + timedelta(days=day - 1)
    moment = datetime(base.year, base.month, base.day, hour, minute, tzinfo=zone)
    return moment.astimezone(UTC).astimezone(zone)  # normalised (a time in a DST gap moves on)


def _cron_next(fields: list[int], zone: tzinfo, ts: int) -> int:
    """The first second after `ts` that the cron fields match (nats-server's parseCron walk)."""
    second, minute, hour, dom, month, dow = fields
    moment = _from_ns((ts // NS + 1) * NS, zone)
    truncated = False
    year_limit = moment.year + 5
    while True:
        if moment.year > year_limit:
            raise PatternError("pattern exceeds maximum range")
        wrapped = False
        while not (1 << moment.month) & month:
            if not truncated:
                truncated = True
                moment = _wall(zone, moment.year, moment.month, 1)
            moment = _wall(zone, moment.year, moment.month + 1, 1)
            if moment.month == 1:
                wrapped = True
                break
        if wrapped:
            continue
        while not _day_matches(dom, dow, moment):
            if not truncated:
                truncated = True
                moment = _wall(zone, moment.year, moment.month, moment.day)
            moment = _wall(zone, moment.year, moment.month, moment.day + 1, moment.hour, moment.minute)
            if moment.day == 1:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << moment.hour) & hour:
            if not truncated:
                truncated = True
                moment = _wall(zone, moment.year, moment.month, moment.day, moment.hour)
            moment = (moment.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
            if moment.hour == 0:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << moment.minute) & minute:
            if not truncated:
                truncated = True
                moment = moment.replace(second=0, microsecond=0)
            moment = (moment.astimezone(UTC) + timedelta(minutes=1)).astimezone(zone)
            if moment.minute == 0:
                wrapped = True
                break
        if wrapped:
            continue
        while not (1 << moment.second) & second:
            if not truncated:
                truncated = True
                moment = moment.replace(microsecond=0)
            moment = (moment.astimezone(UTC) + timedelta(seconds=1)).astimezone(zone)
            if moment.second == 0:
                wrapped = True
                break
        if wrapped:
            continue
        return _to_ns(moment)


def schedule_of(hdr: bytes, ts: int, now: int) -> int:
    """When the schedule in these headers fires next (0: no schedule, or an invalid one)."""
    if not hdr:
        return 0
    try:
        zone = load_zone(H.get_header(hdr, H.SCHEDULE_TIME_ZONE))
        pattern = (H.get_header(hdr, H.SCHEDULE) or b"").decode("utf-8", "replace")
        return next_fire(pattern, zone, ts, now)[0]
    except (PatternError, JSError):
        return 0


def parse_next(value: bytes) -> int:
    """A produced message's `Nats-Schedule-Next` time (RFC 3339, nanoseconds); 0 if unreadable."""
    text = value.decode("utf-8", "replace")
    if not _RFC3339.fullmatch(text):
        return 0
    head, _, rest = text.partition(".")
    fraction = 0
    if rest:
        digits = re.match(r"\d+", rest)
        assert digits is not None
        fraction = int(digits.group()[:9].ljust(9, "0"))
        text = head + rest[digits.end() :]
    try:
        return _to_ns(datetime.fromisoformat(text.replace("Z", "+00:00"))) + fraction
    except ValueError:
        return 0


# ------------------------------------------------------------------------------------------------
# the scheduler of one stream


class Scheduler:
    """The schedules of one stream: subject -> (sequence of the schedule message, next time)."""

    def __init__(self, stream: Any, clock: Callable[[], int] = time.time_ns) -> None:
        self.stream = stream
        self.clock = clock
        self.schedules: dict[bytes, tuple[int, int]] = {}
        #: schedules whose produced message is on its way (not fired again until it is stored)
        self.inflight: set[bytes] = set()
        self._timer: Any = None
        self._timer_at = 0

    def rebuild(self) -> None:
        """Every schedule message in the store (a stream opening, a snapshot installed)."""
        self.schedules.clear()
        self.inflight.clear()
        store = self.stream.store
        now = self.clock()
        seq = 1
        while True:
            msg = store.load_next_msg(b">", seq)
            if msg is None:
                break
            seq = msg.seq + 1
            if msg.hdr and H.get_header(msg.hdr, H.SCHEDULE):
                due = schedule_of(msg.hdr, msg.ts, now)
                if due:
                    self.schedules[msg.subject] = (msg.seq, due)
        self.arm()

    def stored(self, seq: int, subject: bytes, hdr: bytes, ts: int) -> None:
        """A message was stored (every replica): a schedule is added or replaced, a plain message
        ends its subject's schedule, a produced one moves its schedule on."""
        due = schedule_of(hdr, ts, self.clock()) if hdr else 0
        scheduler = H.get_header(hdr, H.SCHEDULER) if hdr else None
        if due:
            self.schedules[subject] = (seq, due)
            self.inflight.discard(subject)
        elif not scheduler:
            self.schedules.pop(subject, None)
            self.inflight.discard(subject)
        if scheduler and hdr:
            following = H.get_header(hdr, H.SCHEDULE_NEXT)
            if following and following != b"purge" and scheduler in self.schedules:
                moment = parse_next(following)
                if moment:
                    self.schedules[scheduler] = (self.schedules[scheduler][0], moment)
                    self.inflight.discard(scheduler)
        self.arm()

    def leading(self) -> None:
        """This node leads the stream now: fire what is due (nothing is in flight any more)."""
        self.inflight.clear()
        self.arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _may_fire(self) -> bool:
        stream = self.stream
        if stream.closed:
            return False
        replicated = stream.replicated
        return replicated is None or replicated.group is None or replicated.is_leader

    def arm(self) -> None:
        if not self._may_fire():
            self.stop()
            return
        pending = [due for subject, (_seq, due) in self.schedules.items() if subject not in self.inflight]
        if not pending:
            self.stop()
            return
        due = min(pending)
        delay = max(MIN_FIRE_DELAY, (due - self.clock()) / NS)
        at = self.clock() + int(delay * NS)
        if self._timer is not None and self._timer_at <= at:
            return
        self.stop()
        self._timer_at = at
        self._timer = self.stream.server.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._may_fire():
            return
        for target, hdr, data in self.due_messages():
            self.stream.process_publish(target, b"", hdr, data, sourced=True)
        self.arm()

    def due_messages(self) -> list[tuple[bytes, bytes, bytes]]:
        """The messages of every schedule due now, in the order of their schedule messages
        (nats-server's getScheduledMessages); each schedule is then in flight."""
        now = self.clock()
        store = self.stream.store
        produced: list[tuple[int, bytes, bytes, bytes]] = []
        for subject, (seq, due) in list(self.schedules.items()):
            if due > now or subject in self.inflight:
                continue
            message = self._produce(store, subject, seq, due, now)
            if message is None:
                del self.schedules[subject]
                continue
            produced.append((seq, *message))
            self.inflight.add(subject)
        produced.sort(key=lambda item: item[0])
        return [item[1:] for item in produced]

    @staticmethod
    def _produce(store: Any, subject: bytes, seq: int, due: int, now: int) -> tuple[bytes, bytes, bytes] | None:
        msg = store.load_msg(seq)
        if msg is None or msg.subject != subject or not msg.hdr:
            return None
        hdr = msg.hdr
        pattern = H.get_header(hdr, H.SCHEDULE)
        if not pattern:
            return None
        try:
            zone = load_zone(H.get_header(hdr, H.SCHEDULE_TIME_ZONE))
            following, repeats = next_fire(pattern.decode("utf-8", "replace"), zone, due, now)
        except (PatternError, JSError):
            return None
        ttl = H.get_header(hdr, SCHEDULE_TTL) or b""
        if ttl:
            try:
                H.parse_ttl(ttl)
            except ValueError:
                return None
        target = H.get_header(hdr, SCHEDULE_TARGET)
        if not target:
            return None
        rollup = H.get_header(hdr, SCHEDULE_ROLLUP) or b""
        source = H.get_header(hdr, SCHEDULE_SOURCE)
        out_hdr, data = hdr, msg.data
        if source:
            last = store.load_last_msg(source)
            if last is not None:
                out_hdr, data = last.hdr, last.data
        out_hdr = _strip(out_hdr)
        extra = [(H.SCHEDULER, subject)]
        if repeats:
            extra.append((H.SCHEDULE_NEXT, format_next(following, zone).encode()))
        else:
            extra.append((H.SCHEDULE_NEXT, b"purge"))
        if ttl:
            extra.append((H.TTL, ttl))
        if rollup:
            extra.append((H.ROLLUP, rollup))
        return target, H.append_headers(out_hdr, extra), data


def _strip(hdr: bytes) -> bytes:
    """A produced message's headers: the schedule's own (Nats-Schedule*, Nats-Scheduler) and those
    that could stop it from being stored (Nats-Expected-*, Nats-Msg-Id, Nats-TTL, Nats-Rollup) go."""
    if not hdr:
        return hdr
    lines = hdr.split(b"\r\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        name = line.split(b":", 1)[0]
        if name.startswith((b"Nats-Schedule", b"Nats-Expected-")) or name in (H.MSG_ID, H.TTL, H.ROLLUP):
            continue
        kept.append(line)
    if len(kept) == 1:
        return b""
    return b"\r\n".join(kept) + b"\r\n\r\n"
