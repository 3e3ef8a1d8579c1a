"""Fast paths of small helpers on the per-message path answer exactly as their slow forms."""

from __future__ import annotations

import calendar
import time

import pytest

from jsedge.jetstream.models import format_time_ns
from jsedge.subjects import FWC, PWC, SEP, is_literal

NS = 1_000_000_000
_BASE = calendar.timegm((2026, 12, 4, 18, 0, 59, 0, 0, 0))


def _slow_format(ns: int) -> str:
    seconds, frac = divmod(ns, NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return text + ("." + f"{frac:09d}".rstrip("0") if frac else "") + "Z"


def test_format_time_ns_reuses_the_second_only_within_it():
    # runs within one second, across seconds, and back to an earlier second
    stamps = [
        _BASE * NS + 1,
        _BASE * NS + 500_000_000,
        (_BASE + 1) * NS,
        (_BASE + 1) * NS + 999_999_999,
        _BASE * NS + 7,
        (_BASE + 86400) * NS + 120_000,
        _BASE * NS,
    ]
    for ns in stamps:
        assert format_time_ns(ns) == _slow_format(ns)
    assert format_time_ns(0) == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "subject",
    [b"a", b"a.b.c", b"a.*", b"*", b">", b"a.>", b"a*.b", b"a.b>", b"a.*b", b"*.>", b"", b"a..b"],
)
def test_is_literal_fast_path_agrees_with_the_token_check(subject):
    assert is_literal(subject) == all(t != PWC and t != FWC for t in subject.split(SEP))
