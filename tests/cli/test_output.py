"""Formatting helpers: sizes, durations, tables and progress bars in the nats CLI's style."""

from __future__ import annotations

import io

import pytest

from jsedge.cli import output as out


@pytest.mark.parametrize(
    "n,text", [(0, "0 B"), (245, "245 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB"), (20 * 1024**3, "20 GiB")]
)
def test_ibytes(n, text):
    assert out.ibytes(n) == text


@pytest.mark.parametrize(
    "text,n", [("5GB", 5 * 1024**3), ("1024", 1024), ("1K", 1024), ("2MiB", 2 * 1024**2), ("-1", -1)]
)
def test_parse_size(text, n):
    assert out.parse_size(text) == n


@pytest.mark.parametrize(
    "text,ns",
    [
        ("7d", 7 * 86400 * 10**9),
        ("2m", 120 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("500ms", 500_000_000),
        ("30", 30 * 10**9),
        ("0", 0),
        ("1y", 365 * 86400 * 10**9),
    ],
)
def test_parse_duration(text, ns):
    assert out.parse_duration(text) == ns


def test_parse_errors():
    for bad in ("5XB", "abc"):
        with pytest.raises(ValueError):
            out.parse_size(bad)
    for bad in ("7x", "1h30"):
        with pytest.raises(ValueError):
            out.parse_duration(bad)


@pytest.mark.parametrize(
    "ns,text",
    [
        (120 * 10**9, "2m0s"),
        (168 * 3600 * 10**9, "168h0m0s"),
        (1_500_000_000, "1.5s"),
        (250_000_000, "250ms"),
        (0, "0s"),
        (1500, "1.5µs"),
    ],
)
def test_go_duration(ns, text):
    assert out.go_duration(ns) == text


@pytest.mark.parametrize(
    "ns,text", [(7 * 86400 * 10**9, "7d0h0m0s"), (120 * 10**9, "2m0s"), (30 * 10**9, "30.00s"), (0, "forever")]
)
def test_human_duration(ns, text):
    assert out.human_duration(ns) == text


def test_table_aligned():
    t = out.Table("Streams", ["Name", "Messages"], right=(1,))
    t.add("ORDERS", "1,000")
    t.add("X", "2")
    lines = str(t).splitlines()
    assert len({len(line) for line in lines}) == 1  # every line the same width
    assert "Streams" in lines[1]
    assert "| ORDERS |    1,000 |" in lines
    assert "| X      |        2 |" in lines


def test_progress_non_tty_prints_final_line_once():
    buf = io.StringIO()
    bar = out.Progress("Uploading x", 2048, stream=buf)
    bar.update(1024)
    bar.update(1024)
    bar.close()
    assert buf.getvalue() == "Uploading x [" + "#" * 30 + "] 100% 2.0 KiB/2.0 KiB\n"
