"""Permission matrix: publish/subscribe allow and deny, queue entries, allow_responses, default
permissions, no_auth_user, accounts and JetStream API subjects, on jsedge and nats-server.

Every scenario runs the same steps on several raw connections of both servers and compares every
byte they sent (`-ERR` texts, deliveries; MSG frames sorted within a run). A scenario with `expect`
also checks nats-server against what is written here, so the matrix is verified on the reference.
"""

from __future__ import annotations

import json

import pytest

# imported here, at collection, not inside a test: CPython 3.11's parser can fail with "AST
# constructor recursion depth mismatch" when pytest rewrites a module imported deep in a call stack
# (seen once in CI)
from compat.test_protocol_diff import sort_msgs, strip_first_info
from helpers import BARRIER, Pause, ServerProcess, run_multi

pytestmark = pytest.mark.compat


def login(user: str, **extra) -> bytes:
    body = {"verbose": False, "pedantic": False, "user": user, "pass": user}
    body.update(extra)
    return b"CONNECT " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n"


ANON = b'CONNECT {"verbose":false,"pedantic":false}\r\n'

USERS = """
authorization {
  default_permissions: { publish: { deny: ["forbidden.>"] } }
  users: [
    { user: pub, password: pub, permissions: { publish: ">", subscribe: ">" } }
    { user: puba, password: puba, permissions: {
        publish: { allow: ["a.>", "b.*"], deny: ["a.secret.>"] } } }
    { user: suba, password: suba, permissions: {
        subscribe: { allow: ["a.>", "q.> grp", "_INBOX.>"], deny: ["a.secret.>", "a.private"] } } }
    { user: subov, password: subov, permissions: { subscribe: { allow: "a.*", deny: "a.b" } } }
    { user: subq, password: subq, permissions: { subscribe: { allow: ">", deny: ["dq.x bad", "dw.* w*"] } } }
    { user: subdeny, password: subdeny, permissions: { subscribe: { deny: [">"] } } }
    { user: resp, password: resp, permissions: { subscribe: "svc.>", allow_responses: true } }
    { user: respmax, password: respmax, permissions: {
        subscribe: "svc.>", allow_responses: { max: 2 } } }
    { user: respexp, password: respexp, permissions: {
        subscribe: "svc.>", allow_responses: { expires: "100ms" } } }
    { user: respdeny, password: respdeny, permissions: {
        publish: { allow: "ok.>" }, subscribe: "svc.>", allow_responses: true } }
    { user: dflt, password: dflt }
    { user: jsapi, password: jsapi, permissions: {
        publish: { deny: ["$JS.API.STREAM.DELETE.>", "$JS.API.CONSUMER.>"] },
        subscribe: { deny: "$JS.EVENT.>" } } }
    { user: anon, password: anon, permissions: { publish: "open.>", subscribe: "open.>" } }
  ]
}
no_auth_user: anon
"""

ACCOUNTS = """
accounts {
  A: { users: [
    { user: a1, password: a1, permissions: { publish: "x.>", subscribe: { allow: ">", deny: "x.hidden" } } }
    { user: a2, password: a2 }
  ] }
  B: { users: [ { user: b1, password: b1 } ] }
  SYS: { users: [ { user: sys, password: sys, permissions: { publish: { deny: "$SYS.REQ.>" } } } ] }
}
system_account: SYS
"""


def pv_pub(subject: str) -> bytes:
    return f"-ERR 'Permissions Violation for Publish to \"{subject}\"'\r\n".encode()


def pv_sub(subject: str) -> bytes:
    return f"-ERR 'Permissions Violation for Subscription to \"{subject}\"'\r\n".encode()


class P:
    def __init__(self, name: str, *steps, config: str = USERS, expect: bytes | None = None) -> None:
        self.name, self.steps, self.config, self.expect = name, steps, config, expect

    def __repr__(self) -> str:
        return self.name


S, T, R, C = "s", "t", "r", "c"  # connection names: subscriber, second subscriber, responder, client

SCENARIOS = [
    P(
        "sub_deny_through_wildcards",
        (S, login("suba")),
        (S, b"SUB a.> 1\r\nSUB a.* 2\r\nSUB a.> grp 3\r\n"),
        (S, BARRIER),
        (C, login("pub")),
        (C, b"PUB a.secret.x 1\r\n1\r\nPUB a.private 1\r\n2\r\nPUB a.ok 1\r\n3\r\nPUB a.secret 1\r\n4\r\n"),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "sub_deny_literal_refused",
        (S, login("suba")),
        (S, b"SUB a.secret.x 1\r\nSUB a.private 2\r\nSUB a.secret.> 3\r\nSUB b.x 4\r\nSUB a.ok 5\r\n"),
        (S, BARRIER),
        (C, login("pub")),
        (C, b"PUB a.ok 1\r\nx\r\n"),
        (C, BARRIER),
        (S, BARRIER),
        expect=b"[s]"
        + pv_sub("a.secret.x")
        + pv_sub("a.private")
        + pv_sub("a.secret.>")
        + pv_sub("b.x")
        + b"PONG\r\nMSG a.ok 5 1\r\nx\r\nPONG\r\n[c]PONG\r\n",
    ),
    P(
        "sub_allow_deny_overlap",
        (S, login("subov")),
        (S, b"SUB a.* 1\r\nSUB a.b 2\r\nSUB a.> 3\r\n"),
        (S, BARRIER),
        (C, login("pub")),
        (C, b"PUB a.b 1\r\n1\r\nPUB a.c 1\r\n2\r\n"),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "queue_allow_entries",
        (S, login("suba")),
        (S, b"SUB q.x grp 1\r\nSUB q.x other 2\r\nSUB q.x 3\r\nSUB q.y.* grp 4\r\n"),
        (S, BARRIER),
        (C, login("pub")),
        (C, b"PUB q.x 1\r\n1\r\n"),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "queue_deny_entries",
        (S, login("subq")),
        (S, b"SUB dq.x bad 1\r\nSUB dq.x good 2\r\nSUB dq.x 3\r\nSUB dw.a wx 4\r\nSUB dw.a v 5\r\n"),
        (S, BARRIER),
        (C, login("pub")),
        (C, b"PUB dq.x 1\r\n1\r\nPUB dw.a 1\r\n2\r\n"),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "queue_deny_through_wildcards",
        (S, login("subq")),
        (S, b"SUB dq.* bad 1\r\nSUB dq.> good 2\r\nSUB dw.> wq 3\r\n"),
        (S, BARRIER),
        (C, login("pub")),
        (C, b"PUB dq.x 1\r\n1\r\nPUB dq.y 1\r\n2\r\nPUB dw.z 1\r\n3\r\n"),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "sub_deny_all",
        (S, login("subdeny")),
        (S, b"SUB foo 1\r\nSUB > 2\r\nSUB * 3\r\n"),
        (S, BARRIER),
    ),
    P(
        "publish_allow_deny",
        (S, login("pub")),
        (S, b"SUB > 1\r\n"),
        (S, BARRIER),
        (C, login("puba")),
        (
            C,
            b"PUB a.x.y 1\r\n1\r\nPUB b.x 1\r\n2\r\nPUB b.x.y 1\r\n3\r\nPUB a.secret.q 1\r\n4\r\n"
            b"PUB a.secret 1\r\n5\r\nPUB c 1\r\n6\r\nPUB a.* 1\r\n7\r\n",
        ),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "allow_responses_without_publish_block",
        (R, login("resp")),
        (R, b"SUB svc.> 1\r\n"),
        (R, BARRIER),
        (C, login("pub")),
        (C, b"SUB inbox.1 9\r\nSUB elsewhere 8\r\nPUB svc.a inbox.1 1\r\nq\r\n"),
        (C, BARRIER),
        (R, BARRIER),
        (R, b"PUB elsewhere 1\r\nx\r\nPUB inbox.1 2\r\nr1\r\nPUB inbox.1 2\r\nr2\r\nPUB inbox.2 1\r\nz\r\n"),
        (R, BARRIER),
        (C, BARRIER),
        expect=b"[r]PONG\r\nMSG svc.a 1 inbox.1 1\r\nq\r\nPONG\r\n"
        + pv_pub("elsewhere")
        + pv_pub("inbox.1")
        + pv_pub("inbox.2")
        + b"PONG\r\n[c]PONG\r\nMSG inbox.1 9 2\r\nr1\r\nPONG\r\n",
    ),
    P(
        "allow_responses_max",
        (R, login("respmax")),
        (R, b"SUB svc.> 1\r\n"),
        (R, BARRIER),
        (C, login("pub")),
        (C, b"SUB inbox.1 9\r\nPUB svc.a inbox.1 1\r\nq\r\n"),
        (C, BARRIER),
        (R, BARRIER),
        (R, b"PUB inbox.1 1\r\n1\r\nPUB inbox.1 1\r\n2\r\nPUB inbox.1 1\r\n3\r\n"),
        (R, BARRIER),
        (C, BARRIER),
    ),
    P(
        "allow_responses_expire",
        (R, login("respexp")),
        (R, b"SUB svc.> 1\r\n"),
        (R, BARRIER),
        (C, login("pub")),
        (C, b"SUB inbox.1 9\r\nPUB svc.a inbox.1 1\r\nq\r\n"),
        (C, BARRIER),
        (R, BARRIER),
        (R, Pause(0.4)),
        (R, b"PUB inbox.1 1\r\n1\r\n"),
        (R, BARRIER),
        (C, BARRIER),
    ),
    P(
        "allow_responses_beside_an_allow_list",
        (R, login("respdeny")),
        (R, b"SUB svc.> 1\r\n"),
        (R, BARRIER),
        (C, login("pub")),
        (C, b"SUB inbox.1 9\r\nSUB ok.> 8\r\nPUB svc.a inbox.1 1\r\nq\r\n"),
        (C, BARRIER),
        (R, BARRIER),
        (R, b"PUB ok.1 1\r\n1\r\nPUB inbox.1 1\r\n2\r\nPUB inbox.1 1\r\n3\r\nPUB no 1\r\n4\r\n"),
        (R, BARRIER),
        (C, BARRIER),
    ),
    P(
        "default_permissions",
        (S, login("pub")),
        (S, b"SUB > 1\r\n"),
        (S, BARRIER),
        (C, login("dflt")),
        (C, b"PUB forbidden.x 1\r\n1\r\nPUB fine 1\r\n2\r\nSUB forbidden.> 5\r\n"),
        (C, BARRIER),
        (S, BARRIER),
    ),
    P(
        "no_auth_user_permissions",
        (S, login("pub")),
        (S, b"SUB > 1\r\n"),
        (S, BARRIER),
        (C, ANON),
        (C, b"PUB open.x 1\r\n1\r\nPUB closed 1\r\n2\r\nSUB closed 5\r\nSUB open.> 6\r\n"),
        (C, BARRIER),
        (S, b"PUB open.y 1\r\n3\r\n"),
        (S, BARRIER),
        (C, BARRIER),
    ),
    P(
        "jetstream_api_subjects",
        (S, login("pub")),
        (S, b"SUB $JS.> 1\r\n"),
        (S, BARRIER),
        (C, login("jsapi")),
        (
            C,
            b"PUB $JS.API.STREAM.DELETE.X 0\r\n\r\nPUB $JS.API.CONSUMER.INFO.X.Y 0\r\n\r\n"
            b"PUB $JS.API.STREAM.INFO.X 0\r\n\r\nSUB $JS.EVENT.ADVISORY.> 5\r\nSUB $JS.> 6\r\n",
        ),
        (C, BARRIER),
        (S, b"PUB $JS.EVENT.ADVISORY.X 1\r\n1\r\nPUB $JS.OTHER 1\r\n2\r\n"),
        (S, BARRIER),
        (C, BARRIER),
    ),
    P(
        "accounts_isolate_and_filter",
        (S, login("a1")),
        (S, b"SUB x.* 1\r\nSUB x.hidden 2\r\n"),
        (S, BARRIER),
        (T, login("b1")),
        (T, b"SUB > 1\r\n"),
        (T, BARRIER),
        (C, login("a2")),
        (C, b"PUB x.hidden 1\r\n1\r\nPUB x.shown 1\r\n2\r\n"),
        (C, BARRIER),
        (S, b"PUB x.mine 1\r\n3\r\nPUB y 1\r\n4\r\n"),
        (S, BARRIER),
        (T, BARRIER),
        config=ACCOUNTS,
    ),
    P(
        "system_account_user",
        (S, login("sys")),
        (S, b"PUB $SYS.REQ.SERVER.PING 0\r\n\r\nSUB $SYS.TEST.> 1\r\n"),
        (S, BARRIER),
        config=ACCOUNTS,
    ),
]


def canonical(data: bytes) -> bytes:
    return sort_msgs(strip_first_info(data))


@pytest.fixture(scope="module")
def servers():
    started: dict[tuple[str, str], ServerProcess] = {}
    yield started
    for srv in started.values():
        srv.cleanup()


def _server(servers, kind: str, config: str) -> ServerProcess:
    if (kind, config) not in servers:
        servers[(kind, config)] = ServerProcess(kind, config=config)
    return servers[(kind, config)]


@pytest.mark.parametrize("side", ["nats", "jsedge"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=repr)
def test_permissions(servers, side: str, scenario: P) -> None:
    reference = canonical(run_multi(_server(servers, "nats", scenario.config), *scenario.steps))
    if side == "nats":
        if scenario.expect is not None:
            assert reference == scenario.expect
        return
    got = canonical(run_multi(_server(servers, "jsedge", scenario.config), *scenario.steps))
    assert got == reference
