"""Formatting helpers of jsedge.monitor: nats-server's time, uptime, duration and query decoding rules."""

from __future__ import annotations

import calendar

import pytest

from jsedge.monitor import (
    ZERO_TIME,
    BadRequest,
    Query,
    decode_state,
    format_rtt,
    format_time,
    format_time_ns,
    format_uptime,
    go_duration,
    go_number,
    render_conn,
)

_BASE = calendar.timegm((2026, 11, 26, 7, 38, 41, 0, 0, 0))


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (_BASE * 1_000_000_000 + 623749389, "2026-11-26T07:38:41.623749389Z"),
        (_BASE * 1_000_000_000 + 623749000, "2026-11-26T07:38:41.623749Z"),
        (_BASE * 1_000_000_000 + 500_000_000, "2026-11-26T07:38:41.5Z"),
        (_BASE * 1_000_000_000, "2026-11-26T07:38:41Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (0, ZERO_TIME),
        (None, ZERO_TIME),
    ],
)
def test_format_time_ns(ns, text):
    assert format_time_ns(ns) == text


def test_format_time_float_rounds_to_microseconds():
    assert format_time(_BASE + 0.6237491) == "2026-11-26T07:38:41.623749Z"
    assert format_time(_BASE + 0.25) == "2026-11-26T07:38:41.25Z"
    assert format_time(float(_BASE)) == "2026-11-26T07:38:41Z"
    assert format_time(0.0) == ZERO_TIME
    assert format_time(None) == ZERO_TIME
    assert ZERO_TIME == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.999, "0s"),
        (-5, "0s"),
        (41, "41s"),
        (59.9, "59s"),
        (60, "1m0s"),
        (291, "4m51s"),
        (3723, "1h2m3s"),
        (3600, "1h0m0s"),
        (86400, "1d0h0m0s"),
        (2 * 86400 + 5, "2d0h0m5s"),
        (365 * 86400 + 3 * 86400 + 4 * 3600, "1y3d4h0m0s"),
        (2 * 365 * 86400 + 61, "2y0d0h1m1s"),
    ],
)
def test_format_uptime(seconds, text):
    assert format_uptime(seconds) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1000, "1\u00b5s"),
        (941_000, "941\u00b5s"),
        (1_500, "1.5\u00b5s"),
        (1_000_000, "1ms"),
        (1_234_000, "1.234ms"),
        (1_234_567, "1.234567ms"),
        (2_500_000_000, "2.5s"),
        (1_000_000_000, "1s"),
        (60 * 1_000_000_000, "1m0s"),
        (3_600 * 1_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-1_500_000, "-1.5ms"),
    ],
)
def test_go_duration(ns, text):
    assert go_duration(ns) == text


def test_format_rtt_truncates_to_microseconds_below_one_millisecond():
    assert format_rtt(0.000941234) == "941\u00b5s"
    assert format_rtt(0.000508999) == "508\u00b5s"
    assert "\u00b5" in format_rtt(0.0005) and "\u03bc" not in format_rtt(0.0005)  # U+00B5, not Greek mu
    assert format_rtt(0.0000005) == "500ns"
    # At or above 1 ms nats-server keeps nanoseconds.
    assert format_rtt(0.001234567) == "1.234567ms"
    assert format_rtt(2.5) == "2.5s"


def test_go_number_writes_integral_floats_as_ints():
    assert go_number(2.0) == 2 and isinstance(go_number(2.0), int)
    assert go_number(0.0) == 0 and isinstance(go_number(0.0), int)
    assert go_number(0.5) == 0.5
    assert go_number(7) == 7


def test_query_bool_accepts_go_parsebool_values():
    for text in ("1", "t", "T", "TRUE", "true", "True"):
        assert Query(f"subs={text}").bool("subs") is True
    for text in ("0", "f", "F", "FALSE", "false", "False", ""):
        assert Query(f"subs={text}").bool("subs") is False
    assert Query("").bool("subs") is False
    with pytest.raises(BadRequest) as info:
        Query("subs=maybe").bool("subs")
    assert info.value.text == (
        "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"maybe\": invalid syntax"
    )
    with pytest.raises(BadRequest):
        Query("subs=yes").bool("subs")


def test_query_int_and_uint64():
    assert Query("limit=5").int("limit") == 5
    assert Query("limit=-1").int("limit") == -1
    assert Query("limit=%2B3").int("limit") == 3
    with pytest.raises(BadRequest) as info:
        Query("limit=x").int("limit")
    assert info.value.text == "Error decoding int for 'limit': strconv.Atoi: parsing \"x\": invalid syntax"
    for bad in ("1_0", " 1", "1.0"):
        with pytest.raises(BadRequest):
            Query(f"limit={bad}").int("limit")
    with pytest.raises(BadRequest) as info:
        Query("limit=99999999999999999999").int("limit")
    assert info.value.text.endswith("value out of range")
    assert Query("cid=7").uint64("cid") == 7
    with pytest.raises(BadRequest) as info:
        Query("cid=-1").uint64("cid")
    assert info.value.text == "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax"


def test_query_first_value_and_subs_detail():
    query = Query("acc=A&acc=B&subs=DETAIL")
    assert query.get("acc") == "A"
    assert query.subs() == (False, True)
    assert Query("subs=1").subs() == (True, False)


def test_decode_state():
    assert decode_state(Query("")) == 0
    assert decode_state(Query("state=OPEN")) == 0
    assert decode_state(Query("state=closed")) == 1
    assert decode_state(Query("state=any")) == 2
    assert decode_state(Query("state=all")) == 2
    with pytest.raises(BadRequest) as info:
        decode_state(Query("state=bogus"))
    assert info.value.text == "Error decoding state for bogus"


def test_render_conn_filters_private_auth_and_subscription_keys():
    info = {
        "cid": 1,
        "kind": "Client",
        "subscriptions": 1,
        "authorized_user": "u",
        "name_tag": "$G",
        "subscriptions_list_detail": [{"subject": "a.>", "sid": "1", "msgs": 0, "cid": 1}],
        "_start": 1.0,
    }
    bare = render_conn(info, subs=False, subs_detail=False, auth=False)
    assert bare == {"cid": 1, "kind": "Client", "subscriptions": 1}
    plain = render_conn(info, subs=True, subs_detail=False, auth=True)
    assert list(plain) == ["cid", "kind", "subscriptions", "authorized_user", "subscriptions_list", "name_tag"]
    assert plain["subscriptions_list"] == ["a.>"]
    detail = render_conn(info, subs=False, subs_detail=True, auth=False)
    assert detail["subscriptions_list_detail"][0]["subject"] == "a.>"
    assert "subscriptions_list" not in detail
