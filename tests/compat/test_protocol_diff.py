"""Byte-exact differential tests: the same byte streams go to nats-server and to jsedge.

Each scenario runs on a connection (or several, `run_multi`) and yields the bytes the server sent,
with INFO lines normalized (`helpers.normalize_transcript`: ids/ports/versions dropped, key order
kept) and `<EOF>`/`<OPEN>`/`<TIMEOUT>` markers for how the connection ended.

Every scenario is parametrized over `side`:
  * `nats`   – runs on the real nats-server and checks it against the expectation written here
               (from protocol.md, verified). This validates the test itself.
  * `jsedge` – runs on both servers and asserts jsedge's bytes == nats-server's bytes.
Select with `-k nats` / `-k jsedge`. Servers are shared per (kind, config) through `server_pool`;
scenarios that need a private server set `fresh=True`.

Adding a scenario is one line: `S("name", steps..., expect=b"...")` in SCENARIOS (see helpers.run_raw
for the step DSL). `expect` is compared against the transcript *without* the initial INFO line(s)
unless `keep_info=True`; it may also be a callable taking that transcript and returning a bool.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from helpers import (
    BARRIER,
    BARRIER2,
    CLOSED,
    Closed,
    ServerProcess,
    Until,
    connect_line,
    run_multi,
    run_raw,
)

pytestmark = pytest.mark.compat

E = b"<EOF>"
O = b"<OPEN>"  # noqa: E741 - one letter, like E for <EOF>
C = connect_line()  # CONNECT {"verbose":false,"pedantic":false}
CH = connect_line(headers=True)
CNR = connect_line(headers=True, no_responders=True, protocol=1)
UNKNOWN = b"-ERR 'Unknown Protocol Operation'\r\n"
AUTHV = b"-ERR 'Authorization Violation'\r\n"
INFO0 = b'INFO {"proto":1,"headers":true,"max_payload":1048576,"api_lvl":5} \r\n'
INFO_AUTH = b'INFO {"proto":1,"headers":true,"auth_required":true,"max_payload":1048576,"api_lvl":5} \r\n'
PONG = b"PONG\r\n"

USERS = """
authorization {
  users: [
    {user: alice, password: secret, permissions: {
        publish: {allow: ["foo", "req.>"]},
        subscribe: {allow: ["foo", "q.> grp", "_INBOX.>"]}}}
    {user: bob, password: pw2, permissions: {
        publish: {deny: ["secret.>"]},
        subscribe: {deny: ["secret.>", "dq.* grp"]}}}
  ]
}
"""
TOKEN = "authorization { token: s3cr3t }\n"
AUTH_TIMEOUT = "authorization { user: a, password: b, timeout: 1 }\n"
NO_AUTH_USER = """
authorization { users: [ {user: anon, password: x, permissions: {publish: {allow: ["ok"]}}} ] }
no_auth_user: anon
"""
MAXCONN = "max_connections: 1\n"
MAXSUBS = "max_subscriptions: 2\n"
LIMITS = "max_payload: 100\nmax_control_line: 64\n"


class S:
    name: str
    steps: tuple
    expect: bytes | Callable[[bytes], Any] | None = None
    config: str | None = None
    multi: bool = False
    fresh: bool = False
    keep_info: bool = False
    canon: Callable[[bytes], bytes] | None = None

    def __init__(self, name, *steps, expect=None, config=None, multi=False, fresh=False, keep_info=False, canon=None):
        self.name, self.steps, self.expect, self.config = name, steps, expect, config
        self.multi, self.fresh, self.keep_info, self.canon = multi, fresh, keep_info, canon


_FIRST_INFO = re.compile(rb"(^|\[[a-z0-9]+\])INFO \{[^\r\n]*\} \r\n")


def strip_first_info(data: bytes) -> bytes:
    """Drop the greeting INFO line(s) (start of the transcript and right after each `[name]`)."""
    return _FIRST_INFO.sub(lambda m: m.group(1), data)


_FRAME = re.compile(rb"(MSG|HMSG) (\S+) (\S+) (?:(\S+) )?(?:(\d+) )?(\d+)\r\n")


def sort_msgs(data: bytes) -> bytes:
    """Canonical form for scenarios where delivery order across sids is unspecified: sort each
    consecutive run of MSG/HMSG frames."""
    out: list[bytes] = []
    run: list[bytes] = []
    i = 0
    while i < len(data):
        m = _FRAME.match(data, i)
        if m:
            end = m.end() + int(m.group(6)) + 2
            run.append(data[i:end])
            i = end
            continue
        out += sorted(run)
        run = []
        j = data.find(b"\r\n", i)
        j = len(data) if j < 0 else j + 2
        out.append(data[i:j])
        i = j
    out += sorted(run)
    return b"".join(out)


def hpub(subject: str, headers: bytes, payload: bytes, reply: str | None = None) -> bytes:
    mid = f"{subject} {reply} " if reply else f"{subject} "
    return (
        b"HPUB "
        + mid.encode()
        + f"{len(headers)} {len(headers) + len(payload)}".encode()
        + b"\r\n"
        + headers
        + payload
        + b"\r\n"
    )


def nr503(reply: str, sid: str, subject: str) -> bytes:
    """The no-responders status message, built from the protocol.md §7.3 formula."""
    n = 32 + len(subject.encode())
    hdr = b"NATS/1.0 503\r\nNats-Subject: " + subject.encode() + b"\r\n\r\n"
    assert len(hdr) == n
    return f"HMSG {reply} {sid} {n} {n}\r\n".encode() + hdr + b"\r\n"


def AUTH(user: str, pw: str, **kw: Any) -> bytes:
    return connect_line(user=user, **{"pass": pw}, **kw)


BIG = 1048576
XHDR = b"NATS/1.0\r\nX: 1\r\n\r\n"  # 18 bytes
A, B = "a", "b"

SCENARIOS: list[S] = [
    # ---- §17 transcripts ------------------------------------------------------------------
    S(
        "t17_1_hello",
        b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n',
        b"SUB _INBOX.abc.* 1\r\n",
        b"PUB nobody _INBOX.abc.1 2\r\nhi\r\n",
        BARRIER2,
        keep_info=True,
        expect=INFO0
        + b"HMSG _INBOX.abc.1 1 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n"
        + PONG
        + b'INFO {"proto":1,"headers":true,"max_payload":1048576,"connect_info":true,"remote_account":"$G","api_lvl":5} \r\n'
        + PONG,
    ),
    S(
        "t17_2_defaults",
        b"CONNECT {}\r\n",
        b"PUB foo.* 1\r\nx\r\n",
        BARRIER,
        expect=b"+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\n" + PONG,
    ),
    S("t17_3_max_payload", C, b"PUB foo 1048577\r\n", CLOSED, expect=b"-ERR 'Maximum Payload Violation'\r\n" + E),
    S("t17_3_unknown_op", C, b"FOO\r\n", CLOSED, expect=UNKNOWN + E),
    S("t17_3_bad_protocol", b'CONNECT {"protocol":2}\r\n', CLOSED, expect=b"-ERR 'invalid client protocol'\r\n" + E),
    S("t17_3_bad_size_silent", C, b"PUB foo abc\r\n", CLOSED, expect=E),
    S("t17_4_bad_password", AUTH("alice", "x"), CLOSED, config=USERS, keep_info=True, expect=INFO_AUTH + AUTHV + E),
    S(
        "t17_4_permissions",
        AUTH("alice", "secret", protocol=1),
        b"PUB bar 1\r\na\r\n",
        b"SUB q.x other 4\r\n",
        BARRIER2,
        Closed(0.2),
        config=USERS,
        expect=b"-ERR 'Permissions Violation for Publish to \"bar\"'\r\n"
        b'-ERR \'Permissions Violation for Subscription to "q.x" using queue "other"\'\r\n'
        + PONG
        + b'INFO {"proto":1,"headers":true,"auth_required":true,"max_payload":1048576,"connect_info":true,'
        b'"remote_account":"$G","api_lvl":5} \r\n' + PONG + O,
    ),
    # ---- framing §1 -------------------------------------------------------------------------
    S(
        "frame_case_insensitive",
        C,
        b"sub foo 1\r\n",
        b"Pub foo 1\r\na\r\n",
        b"pUb foo 1\r\nb\r\n",
        b"ping\r\n",
        Until(PONG),
        expect=b"MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n" + PONG,
    ),
    S(
        "frame_spaces_tabs",
        C,
        b"SUB  foo   1\r\n",
        b"SUB\tbar\t\t2\r\n",
        b"PUB foo  1\r\na\r\n",
        b"PUB\tbar\t\tr\t 1\r\nb\r\n",
        BARRIER,
        expect=b"MSG foo 1 1\r\na\r\nMSG bar 2 r 1\r\nb\r\n" + PONG,
    ),
    S(
        "frame_lf_only",
        b'CONNECT {"verbose":false}\n',
        b"SUB foo 1\n",
        b"PUB foo 1\nx\r\n",
        b"PING\n",
        Until(PONG),
        expect=b"MSG foo 1 1\r\nx\r\n" + PONG,
    ),
    S("frame_ping_garbage", C, b"PINGxyz\n", Until(PONG), b"PONGabc\r\n", b"+OK\r\n", BARRIER, expect=PONG + PONG),
    S("frame_ping_long_no_limit", C, b"PING" + b"x" * 5000 + b"\r\n", Until(PONG), BARRIER, expect=PONG + PONG),
    S(
        "frame_byte_at_a_time",
        *[bytes([b]) for b in C + b"SUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n"],
        Until(PONG),
        expect=b"MSG foo 1 5\r\nhello\r\n" + PONG,
    ),
    S(
        "frame_split_payload",
        C,
        b"SUB foo 1\r\n",
        b"PUB foo 11\r\nhel",
        b"lo wo",
        b"rld\r",
        b"\n",
        BARRIER,
        expect=b"MSG foo 1 11\r\nhello world\r\n" + PONG,
    ),
    S("frame_payload_no_crlf", C, b"PUB foo 2\r\nhi\nPING", CLOSED, expect=UNKNOWN + E),
    S("frame_payload_too_long", C, b"PUB foo 1\r\nxy\r\n", CLOSED, expect=UNKNOWN + E),
    S("frame_zero_payload", C, b"SUB foo 1\r\n", b"PUB foo 0\r\n\r\n", BARRIER, expect=b"MSG foo 1 0\r\n\r\n" + PONG),
    S(
        "frame_utf8_subject",
        C,
        "SUB föö.* 1\r\n".encode(),
        "PUB föö.bär 1\r\nx\r\n".encode(),
        BARRIER,
        expect="MSG föö.bär 1 1\r\nx\r\n".encode() + PONG,
    ),
    # ---- unknown / client-only ops (close) -------------------------------------------------
    *[
        S(f"op_{n}", C, op, CLOSED, expect=UNKNOWN + E)
        for n, op in [
            ("msg", b"MSG foo 1 1\r\nx\r\n"),
            ("hmsg", b"HMSG foo 1 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
            ("rs_plus", b"RS+ foo\r\n"),
            ("rs_minus", b"RS- foo\r\n"),
            ("rmsg", b"RMSG $G foo 1\r\nx\r\n"),
            ("ls_plus", b"LS+ foo\r\n"),
            ("ls_minus", b"LS- foo\r\n"),
            ("lmsg", b"LMSG foo 1\r\nx\r\n"),
            ("a_plus", b"A+ foo\r\n"),
            ("a_minus", b"A- foo\r\n"),
            ("subx", b"SUBX foo 1\r\n"),
            ("p_only", b"P\r\n"),
            ("unsub_noarg", b"UNSUB\r\n"),
        ]
    ],
    # ---- max control line (args part, exact boundary, partial line) ------------------------
    S("mcl_4096_ok", C, b"PUB " + b"a" * 4094 + b" 1\r\nx\r\n", BARRIER, Closed(0.1), expect=PONG + O),
    S(
        "mcl_4097_err",
        C,
        b"PUB " + b"a" * 4095 + b" 1\r\nx\r\n",
        CLOSED,
        expect=b"-ERR 'maximum control line exceeded'\r\n" + E,
    ),
    S("mcl_sub_4096_ok", C, b"SUB " + b"a" * 4094 + b" 1\r\n", BARRIER, Closed(0.1), expect=PONG + O),
    S(
        "mcl_sub_4097_err",
        C,
        b"SUB " + b"a" * 4095 + b" 1\r\n",
        CLOSED,
        expect=b"-ERR 'maximum control line exceeded'\r\n" + E,
    ),
    S("mcl_partial_4096_open", C, b"PUB " + b"a" * 4096, Closed(0.5), expect=O),
    S("mcl_partial_4097_err", C, b"PUB " + b"a" * 4097, CLOSED, expect=b"-ERR 'maximum control line exceeded'\r\n" + E),
    S(
        "mcl_connect_long",
        b'CONNECT {"verbose":false,"name":"' + b"x" * 5000 + b'"}\r\n',
        CLOSED,
        expect=b"-ERR 'maximum control line exceeded'\r\n" + E,
    ),
    S("mcl_config_64_ok", C, b"PUB " + b"a" * 62 + b" 1\r\nx\r\n", BARRIER, config=LIMITS, expect=PONG),
    S(
        "mcl_config_65_err",
        C,
        b"PUB " + b"a" * 63 + b" 1\r\nx\r\n",
        CLOSED,
        config=LIMITS,
        expect=b"-ERR 'maximum control line exceeded'\r\n" + E,
    ),
    # ---- max payload (exact boundary) ------------------------------------------------------
    S("mp_default_exact_ok", C, b"PUB foo 1048576\r\n" + b"x" * BIG + b"\r\n", BARRIER, expect=PONG),
    S(
        "mp_config_exact_ok",
        C,
        b"SUB foo 1\r\n",
        b"PUB foo 100\r\n" + b"y" * 100 + b"\r\n",
        BARRIER,
        config=LIMITS,
        keep_info=True,
        expect=b'INFO {"proto":1,"headers":true,"max_payload":100,"api_lvl":5} \r\n'
        + b"MSG foo 1 100\r\n"
        + b"y" * 100
        + b"\r\n"
        + PONG,
    ),
    S(
        "mp_config_over",
        C,
        b"PUB foo 101\r\n",
        CLOSED,
        config=LIMITS,
        expect=b"-ERR 'Maximum Payload Violation'\r\n" + E,
    ),
    S(
        "mp_hpub_total_counts",
        CH,
        b"HPUB foo 12 101\r\n",
        CLOSED,
        config=LIMITS,
        expect=b"-ERR 'Maximum Payload Violation'\r\n" + E,
    ),
    S(
        "mp_hpub_total_exact_ok",
        CH,
        b"HPUB foo 12 100\r\nNATS/1.0\r\n\r\n" + b"z" * 88 + b"\r\n",
        BARRIER,
        config=LIMITS,
        expect=PONG,
    ),
    # ---- subjects ----------------------------------------------------------------------------
    *[
        S(
            f"sub_invalid_{i}",
            C,
            b"SUB " + subj + b" 1\r\n",
            b"PUB x 1\r\nx\r\n",
            BARRIER,
            Closed(0.1),
            expect=b"-ERR 'Invalid Subject'\r\n" + PONG + O,
        )
        for i, subj in enumerate([b"foo..bar", b"foo.", b".foo", b"foo.>.bar"])
    ],
    S(
        "sub_valid_odd",
        C,
        b"SUB > 1\r\nSUB * 2\r\nSUB foo.*bar 3\r\nSUB foo.bar> 4\r\nSUB *.* 5\r\nSUB foo.> 6\r\n",
        b"PUB foo.*bar 1\r\na\r\n",
        BARRIER,
        canon=sort_msgs,
        expect=sort_msgs(
            b"MSG foo.*bar 1 1\r\na\r\nMSG foo.*bar 3 1\r\na\r\nMSG foo.*bar 5 1\r\na\r\nMSG foo.*bar 6 1\r\na\r\n"
            + PONG
        ),
    ),
    S(
        "pedantic_pub_delivered",
        connect_line(pedantic=True),
        b"SUB foo.* 1\r\n",
        b"PUB foo.* 1\r\nx\r\n",
        b"PUB foo..x 1\r\ny\r\n",
        BARRIER,
        expect=b"-ERR 'Invalid Publish Subject'\r\nMSG foo.* 1 1\r\nx\r\n-ERR 'Invalid Publish Subject'\r\n" + PONG,
    ),
    S(
        "non_pedantic_wildcard_pub",
        C,
        b"SUB foo.* 1\r\n",
        b"PUB foo.> 1\r\nx\r\n",
        BARRIER,
        expect=b"MSG foo.> 1 1\r\nx\r\n" + PONG,
    ),
    # ---- CONNECT errors ------------------------------------------------------------------------
    S("connect_protocol_neg", connect_line(protocol=-1), CLOSED, expect=b"-ERR 'invalid client protocol'\r\n" + E),
    S("connect_protocol_string_silent", b'CONNECT {"verbose":false,"protocol":"1"}\r\n', CLOSED, expect=E),
    S(
        "connect_nr_requires_headers",
        connect_line(no_responders=True),
        CLOSED,
        expect=b"-ERR 'no responders requires headers support'\r\n" + E,
    ),
    S("connect_account_field", b'CONNECT {"account":"A"}\r\n', CLOSED, expect=AUTHV + E),
    S("connect_new_account_field", connect_line(new_account=True), CLOSED, expect=AUTHV + E),
    S("connect_unknown_keys_ok", connect_line(foo="bar"), BARRIER, expect=PONG),
    S("connect_dup_key_last_wins", b'CONNECT {"verbose":false,"verbose":true}\r\n', BARRIER, expect=b"+OK\r\n" + PONG),
    S(
        "connect_second_accepted",
        C,
        b'CONNECT {"verbose":true}\r\n',
        b"SUB foo 1\r\n",
        BARRIER,
        Closed(0.1),
        expect=b"+OK\r\n+OK\r\n" + PONG + O,
    ),
    # ---- silent closes §13.2 ---------------------------------------------------------------------
    *[
        S(f"silent_{n}", *pre, op, CLOSED, expect=E)
        for n, pre, op in [
            ("connect_garbage", (), b"CONNECT garbage\r\n"),
            ("connect_noarg", (), b"CONNECT\r\n"),
            ("connect_trailing", (), b'CONNECT {"verbose":false} x\r\n'),
            ("info_garbage", (C,), b"INFO garbage\r\n"),
            ("pub_1arg", (C,), b"PUB foo\r\n"),
            ("pub_4args", (C,), b"PUB foo bar baz 1\r\n"),
            ("pub_negative", (C,), b"PUB foo -1\r\n"),
            ("pub_overflow", (C,), b"PUB foo 99999999999999999999999\r\n"),
            ("hpub_2args", (CH,), b"HPUB foo 12\r\n"),
            ("hpub_5args", (CH,), b"HPUB foo r x 12 12\r\n"),
            ("hpub_hdr_gt_total", (CH,), b"HPUB foo 12 10\r\n"),
            ("hpub_bad_size", (CH,), b"HPUB foo ab 12\r\n"),
            ("hpub_not_negotiated", (C,), b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
            ("sub_1arg", (C,), b"SUB foo\r\n"),
            ("sub_4args", (C,), b"SUB foo q 1 2\r\n"),
            ("unsub_3args", (C,), b"UNSUB 1 2 3\r\n"),
            ("unsub_space_only", (C,), b"UNSUB \r\n"),
            ("client_err", (C,), b"-ERR 'x'\r\n"),
        ]
    ],
    S("client_info_ignored", C, b"INFO {}\r\n", b"+OK\r\n", BARRIER, Closed(0.1), expect=PONG + O),
    # ---- verbose §10 -------------------------------------------------------------------------
    S(
        "verbose_connect_empty",
        b"CONNECT {}\r\n",
        b"SUB foo 1\r\n",
        b"UNSUB 1\r\n",
        b"PONG\r\n",
        BARRIER,
        expect=b"+OK\r\n+OK\r\n+OK\r\n" + PONG,
    ),
    # the +OK for a PUB comes *before* the MSG it delivers to the publisher's own subscription
    S(
        "verbose_rules",
        connect_line(verbose=True),
        b"SUB foo 1\r\n",
        b"SUB foo 1\r\n",
        b"PUB foo 1\r\nx\r\n",
        b"UNSUB 9\r\n",
        b"SUB foo..bar 2\r\n",
        b"PONG\r\n",
        b"UNSUB 1\r\n",
        BARRIER,
        expect=b"+OK\r\n+OK\r\n+OK\r\n+OK\r\nMSG foo 1 1\r\nx\r\n+OK\r\n-ERR 'Invalid Subject'\r\n+OK\r\n" + PONG,
    ),
    S(
        "verbose_hpub",
        connect_line(verbose=True, headers=True),
        b"SUB foo 1\r\n",
        hpub("foo", b"NATS/1.0\r\n\r\n", b"x"),
        BARRIER,
        expect=b"+OK\r\n+OK\r\n+OK\r\nHMSG foo 1 12 13\r\nNATS/1.0\r\n\r\nx\r\n" + PONG,
    ),
    S(
        "verbose_perm_violation_no_ok",
        AUTH("alice", "secret", verbose=True),
        b"PUB bar 1\r\na\r\n",
        b"SUB bar 1\r\n",
        b"PUB foo 1\r\nb\r\n",
        BARRIER,
        config=USERS,
        expect=b"+OK\r\n-ERR 'Permissions Violation for Publish to \"bar\"'\r\n"
        b"-ERR 'Permissions Violation for Subscription to \"bar\"'\r\n+OK\r\n" + PONG,
    ),
    # ---- SUB / UNSUB semantics -----------------------------------------------------------------
    S(
        "dup_sid_ignored",
        C,
        b"SUB foo 1\r\n",
        b"SUB bar 1\r\n",
        b"PUB bar 1\r\nb\r\n",
        b"PUB foo 1\r\nf\r\n",
        BARRIER,
        expect=b"MSG foo 1 1\r\nf\r\n" + PONG,
    ),
    S("sid_any_token", C, b"SUB foo abc\r\n", b"PUB foo 1\r\nx\r\n", BARRIER, expect=b"MSG foo abc 1\r\nx\r\n" + PONG),
    S("unsub_unknown_sid", C, b"UNSUB 42\r\n", BARRIER, expect=PONG),
    S(
        "unsub_max_2",
        C,
        b"SUB foo 1\r\n",
        b"UNSUB 1 2\r\n",
        b"PUB foo 1\r\na\r\n" * 3,
        BARRIER,
        expect=b"MSG foo 1 1\r\na\r\n" * 2 + PONG,
    ),
    S(
        "unsub_max_already_reached",
        C,
        b"SUB foo 1\r\n",
        b"PUB foo 1\r\na\r\n" * 2,
        BARRIER,
        b"UNSUB 1 1\r\n",
        b"PUB foo 1\r\nb\r\n",
        BARRIER,
        expect=b"MSG foo 1 1\r\na\r\n" * 2 + PONG + PONG,
    ),
    S(
        "unsub_max_counts_prior",
        C,
        b"SUB foo 1\r\n",
        b"PUB foo 1\r\na\r\n",
        BARRIER,
        b"UNSUB 1 2\r\n",
        b"PUB foo 1\r\nb\r\n" * 2,
        BARRIER,
        expect=b"MSG foo 1 1\r\na\r\n" + PONG + b"MSG foo 1 1\r\nb\r\n" + PONG,
    ),
    *[
        S(
            f"unsub_max_{n}_removes",
            C,
            b"SUB foo 1\r\n",
            b"UNSUB 1 " + v + b"\r\n",
            b"PUB foo 1\r\na\r\n",
            BARRIER,
            expect=PONG,
        )
        for n, v in [("zero", b"0"), ("junk", b"abc"), ("negative", b"-1")]
    ],
    S(
        "multi_sids",
        C,
        b"SUB foo.* 1\r\n",
        b"SUB foo.> 2\r\n",
        b"SUB foo.bar 3\r\n",
        b"SUB foo.baz 4\r\n",
        b"PUB foo.bar 1\r\nx\r\n",
        BARRIER,
        canon=sort_msgs,
        expect=b"MSG foo.bar 1 1\r\nx\r\nMSG foo.bar 2 1\r\nx\r\nMSG foo.bar 3 1\r\nx\r\n" + PONG,
    ),
    S("echo_false", connect_line(echo=False), b"SUB foo 1\r\n", b"PUB foo 1\r\nx\r\n", BARRIER, expect=PONG),
    S(
        "echo_default_true",
        connect_line(),
        b"SUB foo 1\r\n",
        b"PUB foo 1\r\nx\r\n",
        BARRIER,
        expect=b"MSG foo 1 1\r\nx\r\n" + PONG,
    ),
    S(
        "max_subscriptions",
        C,
        b"SUB a 1\r\n",
        b"SUB b 2\r\n",
        b"SUB c 3\r\n",
        b"PUB c 1\r\nx\r\n",
        b"PUB a 1\r\ny\r\n",
        BARRIER,
        Closed(0.1),
        config=MAXSUBS,
        expect=b"-ERR 'maximum subscriptions exceeded'\r\nMSG a 1 1\r\ny\r\n" + PONG + O,
    ),
    # ---- headers ----------------------------------------------------------------------------
    S(
        "hpub_roundtrip",
        CH,
        b"SUB bar 2\r\n",
        b"HPUB bar 24 26\r\nNATS/1.0\r\nA: B\r\nA: C\r\n\r\nhi\r\n",
        b"HPUB bar 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        BARRIER,
        expect=b"HMSG bar 2 24 26\r\nNATS/1.0\r\nA: B\r\nA: C\r\n\r\nhi\r\nHMSG bar 2 12 12\r\nNATS/1.0\r\n\r\n\r\n"
        + PONG,
    ),
    S(
        "hpub_junk_headers_forwarded",
        CH,
        b"SUB foo 1\r\n",
        b"HPUB foo 5 5\r\nhello\r\n",
        b"HPUB foo r 3 5\r\nabcde\r\n",
        BARRIER,
        expect=b"HMSG foo 1 5 5\r\nhello\r\nHMSG foo 1 r 3 5\r\nabcde\r\n" + PONG,
    ),
    S(
        "plain_pub_to_header_sub",
        CH,
        b"SUB foo 1\r\n",
        b"PUB foo 1\r\nx\r\n",
        BARRIER,
        expect=b"MSG foo 1 1\r\nx\r\n" + PONG,
    ),
    S(
        "header_strip_for_plain_sub",
        (A, C),
        (A, b"SUB foo 1\r\n"),
        (A, BARRIER),
        (B, CH),
        (B, hpub("foo", XHDR, b"data")),
        (B, hpub("foo", XHDR, b"", reply="rep")),
        (B, hpub("foo", b"junk!", b"pl")),
        (B, BARRIER),
        (A, BARRIER),
        multi=True,
        expect=b"[a]"
        + PONG
        + b"MSG foo 1 4\r\ndata\r\nMSG foo 1 rep 0\r\n\r\nMSG foo 1 2\r\npl\r\n"
        + PONG
        + b"[b]"
        + PONG,
    ),
    # ---- no responders §7.3 ----------------------------------------------------------------------
    *[
        S(
            f"nr_len_{len(subj)}",
            CNR,
            b"SUB _INBOX.x.* 7\r\n",
            f"PUB {subj} _INBOX.x.9 0\r\n\r\n".encode(),
            BARRIER,
            expect=nr503("_INBOX.x.9", "7", subj) + PONG,
        )
        for subj in ["a", "nobody", "a.much.longer.subject.name.here"]
    ],
    S(
        "nr_hpub_request",
        CNR,
        b"SUB rep 3\r\n",
        hpub("nobody", XHDR, b"q", reply="rep"),
        BARRIER,
        expect=nr503("rep", "3", "nobody") + PONG,
    ),
    S(
        "nr_not_when_delivered",
        CNR,
        b"SUB rep 1\r\nSUB svc 2\r\n",
        b"PUB svc rep 1\r\nq\r\n",
        BARRIER,
        expect=b"MSG svc 2 rep 1\r\nq\r\n" + PONG,
    ),
    S("nr_no_reply_sub_nothing", CNR, b"PUB nobody rep 1\r\nq\r\n", BARRIER, expect=PONG),
    S("nr_not_requested_nothing", CH, b"SUB rep 1\r\n", b"PUB nobody rep 1\r\nq\r\n", BARRIER, expect=PONG),
    S("nr_no_reply_subject_nothing", CNR, b"SUB nobody.x 1\r\n", b"PUB nobody 1\r\nq\r\n", BARRIER, expect=PONG),
    S(
        "nr_only_own_reply_sub",
        (A, CH),
        (A, b"SUB rep 1\r\n"),
        (A, BARRIER),
        (B, CNR),
        (B, b"PUB nobody rep 1\r\nq\r\n"),
        (B, BARRIER),
        (A, BARRIER),
        multi=True,
        expect=b"[a]" + PONG + PONG + b"[b]" + PONG,
    ),
    # ---- auth -------------------------------------------------------------------------------------
    S(
        "auth_token_bad",
        connect_line(auth_token="nope"),
        CLOSED,
        config=TOKEN,
        keep_info=True,
        expect=INFO_AUTH + AUTHV + E,
    ),
    S("auth_token_ok", connect_line(auth_token="s3cr3t"), BARRIER, config=TOKEN, expect=PONG),
    S("auth_users_unknown_user", AUTH("mallory", "secret"), CLOSED, config=USERS, expect=AUTHV + E),
    S("auth_no_credentials", C, CLOSED, config=USERS, expect=AUTHV + E),
    S("auth_ping_first", b"PING\r\n", CLOSED, config=USERS, expect=AUTHV + E),
    S("auth_sub_first", b"SUB foo 1\r\n", CLOSED, config=TOKEN, expect=AUTHV + E),
    S("auth_timeout", Closed(4.0), config=AUTH_TIMEOUT, expect=b"-ERR 'Authentication Timeout'\r\n" + E),
    S(
        "no_auth_user_ping_first",
        b"PING\r\n",
        Until(PONG),
        b"PUB nope 1\r\nx\r\n",
        BARRIER,
        config=NO_AUTH_USER,
        keep_info=True,
        expect=INFO0 + PONG + b"-ERR 'Permissions Violation for Publish to \"nope\"'\r\n" + PONG,
    ),
    S(
        "perm_queue_allowed",
        AUTH("alice", "secret"),
        b"SUB q.x grp 3\r\n",
        b"SUB q.x 2\r\n",
        b"SUB q.x other 4\r\n",
        b"PUB foo 1\r\nx\r\n",
        BARRIER,
        config=USERS,
        expect=b"-ERR 'Permissions Violation for Subscription to \"q.x\"'\r\n"
        b'-ERR \'Permissions Violation for Subscription to "q.x" using queue "other"\'\r\n' + PONG,
    ),
    S(
        "perm_deny_lists",
        AUTH("bob", "pw2"),
        b"SUB > 1\r\n",
        b"SUB secret.x 2\r\n",
        b"SUB dq.a grp 3\r\n",
        b"SUB dq.a 4\r\n",
        b"PUB secret.x 1\r\na\r\n",
        b"PUB dq.a 1\r\nb\r\n",
        BARRIER,
        config=USERS,
        canon=sort_msgs,
        expect=b"-ERR 'Permissions Violation for Subscription to \"secret.x\"'\r\n"
        b'-ERR \'Permissions Violation for Subscription to "dq.a" using queue "grp"\'\r\n'
        b"-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n"
        + sort_msgs(b"MSG dq.a 1 1\r\nb\r\nMSG dq.a 4 1\r\nb\r\n")
        + PONG,
    ),
    S(
        "max_connections",
        (A, C),
        (A, BARRIER),
        (B, CLOSED),
        (A, BARRIER),
        (A, Closed(0.1)),
        multi=True,
        fresh=True,
        config=MAXCONN,
        expect=b"[a]" + PONG + PONG + O + b"[b]-ERR 'maximum connections exceeded'\r\n" + E,
    ),
    # ---- reserved prefixes §8.5 ---------------------------------------------------------------------
    S(
        "reserved_prefixes",
        CH,
        b"SUB > 1\r\n",
        b"PUB $NRG.x 1\r\na\r\n",
        b"PUB foo $JS.ACK.x.y 1\r\na\r\n",
        b"PUB foo _R_.abc 1\r\na\r\n",
        b"PUB _GR_.x 1\r\na\r\n",
        b"PUB foo _GR_.abc 1\r\na\r\n",
        b"HPUB $NRG.y 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        b"PUB foo $JS.ACK 1\r\na\r\n",
        b"PUB foo _R_ 1\r\na\r\n",
        BARRIER,
        Closed(0.1),
        expect=b"-ERR 'Permissions Violation for Publish to \"$NRG.x\"'\r\n"
        b"-ERR 'Permissions Violation for Publish with Reply of \"$JS.ACK.x.y\"'\r\n"
        b"-ERR 'Permissions Violation for Publish with Reply of \"_R_.abc\"'\r\n"
        b"-ERR 'Permissions Violation for Publish to \"_GR_.x\"'\r\n"
        b"-ERR 'Permissions Violation for Publish with Reply of \"_GR_.abc\"'\r\n"
        b"-ERR 'Permissions Violation for Publish to \"$NRG.y\"'\r\n"
        b"MSG foo 1 $JS.ACK 1\r\na\r\nMSG foo 1 _R_ 1\r\na\r\n" + PONG + O,
    ),
    # ---- before CONNECT, connect_info ----------------------------------------------------------------
    S(
        "ping_before_connect",
        b"PING\r\n",
        Until(PONG),
        b"SUB foo 1\r\n",
        b"PUB foo 1\r\nx\r\n",
        BARRIER,
        expect=PONG + b"+OK\r\n+OK\r\nMSG foo 1 1\r\nx\r\n" + PONG,
    ),
    S(
        "connect_info_protocol1",
        connect_line(protocol=1),
        BARRIER,
        BARRIER,
        keep_info=True,
        expect=INFO0 + PONG + b'INFO {"proto":1,"headers":true,"max_payload":1048576,"connect_info":true,'
        b'"remote_account":"$G","api_lvl":5} \r\n' + PONG,
    ),
    S("connect_info_protocol0_none", connect_line(protocol=0), BARRIER2, expect=PONG + PONG),
    # ---- regressions found by the security review (issue: bad input answered as nats-server) --------
    S(
        "hpub_empty_header_block_is_msg",
        CH,
        b"SUB foo 1\r\n",
        b"HPUB foo 0 5\r\nhello\r\n",
        b"HPUB foo r 0 0\r\n\r\n",
        BARRIER,
        expect=b"MSG foo 1 5\r\nhello\r\nMSG foo 1 r 0\r\n\r\n" + PONG,
    ),
    S("connect_key_case_name_object", b'CONNECT {"NAME":{}}\r\n', CLOSED, expect=E),
    S("connect_key_case_pedantic_number", b'CONNECT {"PEDANTIC":1}\r\n', CLOSED, expect=E),
    S("connect_key_case_tls_required", b'CONNECT {"TLS_REQUIRED":-1}\r\n', CLOSED, expect=E),
    S(
        "connect_key_case_verbose_off",
        b'CONNECT {"Verbose":false,"PEDANTIC":false}\r\n',
        b"SUB a..b 1\r\n",
        BARRIER,
        expect=b"-ERR 'Invalid Subject'\r\n" + PONG,
    ),
    S(
        "connect_key_kelvin_sign",
        'CONNECT {"verbose":false,"pedantic":false,"\u212aey":1,"ech\u212f":1}\r\n'.encode(),
        BARRIER,
        expect=PONG,
    ),
    S("connect_protocol_exponent", b'CONNECT {"protocol":1e3}\r\n', CLOSED, expect=E),
    S("connect_protocol_float", b'CONNECT {"verbose":false,"protocol":1.0}\r\n', CLOSED, expect=E),
    S("connect_protocol_huge", b'CONNECT {"verbose":false,"protocol":99999999999999999999}\r\n', CLOSED, expect=E),
    S("connect_nan", b'CONNECT {"verbose":NaN}\r\n', CLOSED, expect=E),
    S("connect_null", b"CONNECT null\r\n", BARRIER, expect=b"+OK\r\n" + PONG),
    S("connect_array", b"CONNECT []\r\n", CLOSED, expect=E),
    S(
        "second_connect_keeps_unnamed_fields",
        C,
        b"CONNECT null\r\n",
        b'CONNECT {"pedantic":true}\r\n',
        b"PUB a.* 1\r\nx\r\n",
        BARRIER,
        expect=b"-ERR 'Invalid Publish Subject'\r\n" + PONG,
    ),
    S(
        "connect_invalid_utf8_key",
        b'CONNECT {"verbose":false,"pedantic":false,"n\xffame":"\xfe"}\r\n',
        BARRIER,
        expect=PONG,
    ),
    S(
        "connect_lone_surrogate",
        b'CONNECT {"verbose":false,"pedantic":false,"name":"\\ud800"}\r\n',
        BARRIER,
        expect=PONG,
    ),
    S("connect_import_wrong_type", b'CONNECT {"verbose":false,"import":{"allow":"x"}}\r\n', CLOSED, expect=E),
    S(
        "connect_empty_account_is_fine",
        b'CONNECT {"verbose":false,"pedantic":false,"account":"","new_account":false}\r\n',
        BARRIER,
        expect=PONG,
    ),
    S(
        "control_bytes_pedantic",
        connect_line(verbose=True, pedantic=True),
        b"SUB a\x01b.\x0c 1\r\n",
        b"PUB a\x01b.\x0c 1\r\nx\r\n",
        b"PUB a.\rb 1\r\ny\r\n",
        BARRIER,
        expect=b"+OK\r\n+OK\r\n+OK\r\nMSG a\x01b.\x0c 1 1\r\nx\r\n+OK\r\n" + PONG,
    ),
]

_names = [s.name for s in SCENARIOS]
assert len(_names) == len(set(_names)), "duplicate scenario names"
assert not any("nats" in n or "jsedge" in n for n in _names), "scenario names must not contain a server kind"


def _run(scn: S, srv: ServerProcess) -> bytes:
    out = run_multi(srv, *scn.steps) if scn.multi else run_raw(srv, *scn.steps)
    return scn.canon(out) if scn.canon else out


def _server(scn: S, kind: str, pool, stack: list) -> ServerProcess:
    if scn.fresh:
        srv = ServerProcess(kind, config=scn.config)
        stack.append(srv)
        return srv
    return pool.get(kind, scn.config)


def _check_expect(scn: S, got: bytes) -> None:
    if scn.expect is None:
        return
    body = got if scn.keep_info else strip_first_info(got)
    if callable(scn.expect):
        assert scn.expect(body), f"{scn.name}: unexpected transcript {body!r}"
    else:
        assert body == scn.expect, f"{scn.name}:\n expected {scn.expect!r}\n      got {body!r}"


@pytest.mark.parametrize("scn", SCENARIOS, ids=_names)
@pytest.mark.parametrize("side", ["nats", "jsedge"])
def test_diff(side: str, scn: S, server_pool) -> None:
    stack: list[ServerProcess] = []
    try:
        ref = _run(scn, _server(scn, "nats", server_pool, stack))
        _check_expect(scn, ref)
        if side == "jsedge":
            got = _run(scn, _server(scn, "jsedge", server_pool, stack))
            assert got == ref, f"{scn.name}: jsedge differs from nats-server\n  nats:   {ref!r}\n  jsedge: {got!r}"
    finally:
        for srv in stack:
            srv.cleanup()


# ---- scenarios that do not fit the transcript form -------------------------------------------------


@pytest.mark.parametrize("side", ["nats", "jsedge"])
def test_info_keys_and_order(side: str, server_pool) -> None:
    """The greeting INFO: same keys in the same order (volatile values aside), ends in `} \\r\\n`."""
    from helpers import RawClient, normalize_info

    infos = {}
    for kind in ["nats"] + (["jsedge"] if side == "jsedge" else []):
        srv = server_pool.get(kind)
        with RawClient(srv) as c:
            line = c.read_line()
            assert line.startswith(b"INFO {") and line.endswith(b"} \r\n")
            c.buf[:0] = line
            info = c.read_info()
        assert info["server_name"] == info["server_id"] and len(info["server_id"]) == 56
        assert info["host"] == "127.0.0.1" and info["port"] == srv.port and info["client_ip"] == "127.0.0.1"
        infos[kind] = info
    ref = infos["nats"]
    assert list(ref) == [
        "server_id",
        "server_name",
        "version",
        "proto",
        "git_commit",
        "go",
        "host",
        "port",
        "headers",
        "max_payload",
        "client_id",
        "client_ip",
        "api_lvl",
        "xkey",
    ]
    if side == "jsedge":
        got = infos["jsedge"]
        assert normalize_info(got) == normalize_info(ref)
        required = [k for k in ref if k not in ("git_commit", "xkey")]
        assert [k for k in got if k in required] == required, list(got)


@pytest.mark.parametrize("side", ["nats", "jsedge"])
def test_connect_info_keys(side: str, server_pool) -> None:
    """The second INFO after the first PING (protocol 1) carries the greeting keys plus
    connect_info/remote_account, in struct order."""
    from helpers import RawClient

    keys = {}
    for kind in ["nats"] + (["jsedge"] if side == "jsedge" else []):
        with RawClient(server_pool.get(kind)) as c:
            first = c.read_info()
            c.send(connect_line(protocol=1) + b"PING\r\n")
            assert c.read_line() == PONG
            second = c.read_info()
            assert second["connect_info"] is True and second["remote_account"] == "$G"
            assert second["client_id"] == first["client_id"]
            keys[kind] = list(second)
    assert keys["nats"] == [
        "server_id",
        "server_name",
        "version",
        "proto",
        "git_commit",
        "go",
        "host",
        "port",
        "headers",
        "max_payload",
        "client_id",
        "client_ip",
        "connect_info",
        "remote_account",
        "api_lvl",
        "xkey",
    ]
    if side == "jsedge":
        optional = {"git_commit", "xkey"}
        assert [k for k in keys["jsedge"] if k not in optional] == [k for k in keys["nats"] if k not in optional]


@pytest.mark.parametrize("side", ["nats", "jsedge"])
def test_info_with_jetstream_and_domain(side: str, tmp_path) -> None:
    """With JetStream on, the greeting INFO says `"jetstream":true` after max_payload (tools read
    it), and a JetStream domain appears as `domain`."""
    from helpers import RawClient

    keys = {}
    for kind in ["nats"] + (["jsedge"] if side == "jsedge" else []):
        conf = f'jetstream {{ store_dir: "{tmp_path / kind}", domain: "edge" }}\n'
        with ServerProcess(kind, config=conf) as srv, RawClient(srv) as c:
            info = c.read_info()
            assert info["jetstream"] is True and info["domain"] == "edge"
            keys[kind] = [k for k in info if k not in ("git_commit", "xkey")]
    if side == "jsedge":
        assert keys["jsedge"] == keys["nats"]
