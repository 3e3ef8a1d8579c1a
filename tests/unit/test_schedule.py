"""Message schedule patterns and the scheduler on a fake clock (jsedge/jetstream/schedule.py):
`@at`, `@every`, the predefined and six-field cron patterns with time zones, nats-server's "fire
once after a gap" rule, RFC 3339 `Nats-Schedule-Next` times, and what a due schedule produces."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from jsedge.jetstream import headers as H
from jsedge.jetstream.schedule import PatternError, Scheduler, format_next, next_fire, parse_next
from jsedge.store.base import StoreConfig
from jsedge.store.memstore import MemStore

NS = 1_000_000_000


def ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


T = ns("2026-12-05T10:20:30.400Z")  # a Saturday


def test_at_fires_once_at_its_time():
    assert next_fire("@at 2030-01-01T00:00:00Z", None, T, T) == (ns("2030-01-01T00:00:00Z"), False)
    assert next_fire("@at 2030-01-01T01:00:00+01:00", None, T, T)[0] == ns("2030-01-01T00:00:00Z")
    assert next_fire("@at 2020-01-01T00:00:00Z", None, T, T)[0] < T  # in the past: due at once
    for bad in ("@at 2030-01-01", "@at 2030-13-01T00:00:00Z", "@at soon", "@at  2030-01-01T00:00:00Z"):
        with pytest.raises(PatternError):
            next_fire(bad, None, T, T)
    with pytest.raises(PatternError):
        next_fire("@at 2030-01-01T00:00:00Z", ZoneInfo("Europe/Paris"), T, T)


def test_every_counts_from_the_rounded_time_and_skips_missed_runs():
    assert next_fire("@every 5s", None, T, T) == (ns("2026-12-05T10:20:35Z"), True)
    assert next_fire("@every 1m30s", None, T + NS // 2, T)[0] == ns("2026-12-05T10:22:01Z")
    # after a restart an hour later: once, from now, not sixty times
    later = T + 3600 * NS
    assert next_fire("@every 1m", None, T, later)[0] == ns("2026-12-05T11:21:30Z")
    for bad in ("@every 999ms", "@every", "@every 1 s", "@every -5s"):
        with pytest.raises(PatternError):
            next_fire(bad, None, T, T)


@pytest.mark.parametrize(
    ("pattern", "zone", "expected"),
    [
        ("@hourly", None, "2026-12-05T11:00:00Z"),
        ("@daily", None, "2026-12-06T00:00:00Z"),
        ("@midnight", None, "2026-12-06T00:00:00Z"),
        ("@weekly", None, "2026-12-06T00:00:00Z"),  # Sunday
        ("@monthly", None, "2027-01-01T00:00:00Z"),
        ("@yearly", None, "2027-01-01T00:00:00Z"),
        ("*/15 * * * * *", None, "2026-12-05T10:20:45Z"),
        ("0 30 9 * * mon-fri", "Europe/Paris", "2026-12-07T08:30:00Z"),
        ("0 0 12 * * SAT,sun", "America/New_York", "2026-12-05T17:00:00Z"),
        ("0 0 0 29 feb *", None, "2028-02-29T00:00:00Z"),
        ("0 0 0 1 jan-mar/2 *", None, "2027-01-01T00:00:00Z"),
        ("0 0 0 13 * fri", None, "2026-12-11T00:00:00Z"),  # day 13 OR a Friday
        ("0 0 0 13 * *", None, "2026-12-13T00:00:00Z"),
        ("30 20 10 * * ?", None, "2026-12-06T10:20:30Z"),  # this very second is past (ts has .4)
    ],
)
def test_cron_patterns(pattern, zone, expected):
    due, repeats = next_fire(pattern, ZoneInfo(zone) if zone else None, T, T)
    assert repeats and due == ns(expected), datetime.fromtimestamp(due / NS, UTC)


def test_cron_in_a_dst_gap_goes_to_the_next_day():
    # 02:30 does not exist in New York on 2027-03-14 (clocks go from 02:00 to 03:00)
    start = ns("2027-03-14T05:00:00Z")  # 00:00 EST
    due, _ = next_fire("0 30 2 * * *", ZoneInfo("America/New_York"), start, start)
    assert due == ns("2027-03-15T06:30:00Z")  # 02:30 EDT the day after


@pytest.mark.parametrize(
    "bad",
    [
        "* * * * *",
        "* * * * * * *",
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "*/0 * * * * *",
        "5-1 * * * * *",
        "1-2-3 * * * * *",
        "a * * * * *",
        "0 0 0 31 feb *",
        "@fortnightly",
        "-1 * * * * *",
    ],
)
def test_invalid_cron(bad):
    with pytest.raises(PatternError):
        next_fire(bad, None, T, T)


def test_next_times_are_rfc3339_as_go_writes_them():
    assert format_next(ns("2026-12-05T10:20:35Z"), None) == "2026-12-05T10:20:35Z"
    assert format_next(ns("2026-12-05T10:20:35Z") + 120_000_000, None) == "2026-12-05T10:20:35.12Z"
    assert format_next(ns("2026-12-07T08:30:00Z"), ZoneInfo("Europe/Paris")) == "2026-12-07T09:30:00+01:00"
    assert format_next(ns("2026-12-05T17:00:00Z"), ZoneInfo("America/New_York")) == "2026-12-05T12:00:00-05:00"
    assert parse_next(b"2026-12-07T09:30:00+01:00") == ns("2026-12-07T08:30:00Z")
    assert parse_next(b"2026-12-05T10:20:35.123456789Z") == ns("2026-12-05T10:20:35Z") + 123_456_789
    assert parse_next(b"purge") == 0


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _scheduler(clock: Clock) -> tuple[Scheduler, MemStore]:
    store = MemStore(StoreConfig(name="S"))
    # the scheduler reads the stream's store and asks whether it may fire; no timers are armed
    # while the stream reports itself closed
    stream = SimpleNamespace(store=store, closed=True, replicated=None)
    return Scheduler(stream, clock=clock), store


def _store(scheduler: Scheduler, store: MemStore, subject: bytes, pairs, data: bytes, ts: int) -> int:
    hdr = H.append_headers(b"", pairs) if pairs else b""
    seq = store.store_msg(subject, hdr, data, ts)
    scheduler.stored(seq, subject, hdr, ts)
    return seq


def test_a_schedule_fires_on_the_fake_clock_and_moves_on():
    clock = Clock(T)
    scheduler, store = _scheduler(clock)
    every = [
        (H.SCHEDULE, b"@every 10s"),
        (b"Nats-Schedule-Target", b"s.out"),
        (b"Nats-Schedule-TTL", b"1h"),
        (H.MSG_ID, b"x"),
        (b"Custom", b"kept"),
        (H.ROLLUP, b"sub"),
    ]
    _store(scheduler, store, b"s.every", every, b"tick", T)
    assert scheduler.due_messages() == []
    clock.now = T + 10 * NS
    ((target, hdr, data),) = scheduler.due_messages()
    assert (target, data) == (b"s.out", b"tick")
    assert hdr == (
        b"NATS/1.0\r\nCustom: kept\r\nNats-Scheduler: s.every\r\nNats-Schedule-Next: 2026-12-05T10:20:50Z\r\n"
        b"Nats-TTL: 1h\r\n\r\n"
    )
    assert scheduler.due_messages() == []  # in flight until the produced message is stored
    _store(
        scheduler,
        store,
        target,
        [(H.SCHEDULER, b"s.every"), (H.SCHEDULE_NEXT, b"2026-12-05T10:20:50Z")],
        data,
        clock.now,
    )
    assert scheduler.schedules[b"s.every"][1] == ns("2026-12-05T10:20:50Z")
    clock.now = ns("2026-12-05T10:20:50Z")
    assert len(scheduler.due_messages()) == 1
    # a plain message on the schedule's subject ends the schedule
    _store(scheduler, store, b"s.every", [], b"plain", clock.now)
    assert b"s.every" not in scheduler.schedules


def test_at_produces_a_purge_and_a_vanished_schedule_is_dropped():
    clock = Clock(T)
    scheduler, store = _scheduler(clock)
    at = [
        (H.SCHEDULE, b"@at 2026-12-05T10:21:00Z"),
        (b"Nats-Schedule-Target", b"s.out"),
        (b"Nats-Schedule-Source", b"s.src"),
    ]
    _store(scheduler, store, b"s.src", [(b"From", b"source")], b"latest", T)
    seq = _store(scheduler, store, b"s.at", at, b"own", T)
    clock.now = ns("2026-12-05T10:21:00Z")
    ((target, hdr, data),) = scheduler.due_messages()
    assert (
        data == b"latest"
        and hdr == b"NATS/1.0\r\nFrom: source\r\nNats-Scheduler: s.at\r\nNats-Schedule-Next: purge\r\n\r\n"
    )
    scheduler.inflight.clear()
    store.remove_msg(seq)
    assert scheduler.due_messages() == [] and b"s.at" not in scheduler.schedules
