"""`jsedge pub|sub|req|reply` against nats-server and jsedge."""

from __future__ import annotations

import time


def _wait_line(proc, text, timeout=5.0):
    """Read the subprocess' stdout until a line containing `text` (bounded)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if sel.select(max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return seen
    raise AssertionError(f"{text!r} not seen; got {seen!r}")


def _finish(proc, timeout=5.0):
    try:
        out, err = proc.communicate(timeout=timeout)
    except Exception:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def test_pub_count_template_headers_into_stream(cli):
    cli("stream", "add", "T", "--subjects", "t.>", "--storage", "memory")
    r = cli("pub", "t.a", "msg {{Count}}", "--count", "3", "-H", "X-N:{{Count}}")
    assert "Published 3 messages" in r.out
    r = cli("pub", "t.b", "one", "-J")
    assert "Stored in Stream: T Sequence: 4" in r.out

    async def check(nc, js):
        msgs = [await js.get_msg("T", seq) for seq in (1, 2, 3)]
        return [(m.data, m.headers) for m in msgs]

    got = cli.state(check)
    assert [d for d, _ in got] == [b"msg 1", b"msg 2", b"msg 3"]
    assert got[2][1]["X-N"] == "3"


def test_sub_and_queue(cli):
    proc = cli.popen("sub", "s.>", "--count", "2", "--queue", "q")
    try:
        _wait_line(proc, "Subscribing on s.> in group q")
        cli("pub", "s.one", "hello")
        cli("pub", "s.two", "world", "-H", "A:b")
        rc, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert rc == 0, err
    assert '[#1] Received on "s.one"' in out and "hello" in out and "A: b" in out and "world" in out


def test_sub_stream_replay(cli):
    cli("stream", "add", "R", "--subjects", "r.>", "--storage", "file")
    cli("pub", "r.x", "v{{Count}}", "--count", "3")
    r = cli("sub", "--stream", "R", "--count", "3")
    if cli.kind == "jsedge" and r.rc != 0:
        import pytest

        pytest.xfail("stream replay needs push consumers in jsedge")
    assert "Received JetStream message: stream: R seq 3" in r.out and "v3" in r.out
    r = cli("sub", "r.x", "--stream", "R", "--last", "--count", "1", "--raw")
    assert r.out.strip() == "v3"


def test_req_reply(cli):
    proc = cli.popen("reply", "svc.echo", "got {{Request}} #{{Count}}", "--count", "1")
    try:
        _wait_line(proc, "Listening on")
        r = cli("req", "svc.echo", "ping")
        assert "Received with rtt" in r.out and "got ping #1" in r.out
        rc, out, _ = _finish(proc)
        assert rc == 0 and "ping" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    r = cli("req", "svc.nobody", "x", ok=False)
    assert r.rc == 1 and "no responders" in r.err


def test_sub_wait_bounded(cli):
    started = time.monotonic()
    r = cli("sub", "quiet", "--wait", "300ms", "--json")
    assert r.rc == 0 and time.monotonic() - started < 5
    assert r.out == ""  # --json: one JSON line per message, none arrived
