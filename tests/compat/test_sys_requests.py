"""System-account requests (`$SYS.REQ.…`), differential: jsedge and nats-server side by side.

The same requests go to both servers (nats-py clients, a `sys` user in the system account SYS, an
`app` user in APP with permissions). Compared as tests/compat/test_monitor.py compares /varz & co:
envelope keys, the `server` block's keys and JSON types, and the data's keys and types (values of
ids, times, counters ignored), with exact equality where nats-server is deterministic (error texts
and codes, silence under a filter, no responders, user info).

Known, intended differences (stripped before comparing, each asserted on its own):
* `server.feature_flags` (nats-server's JetStream internals) is absent from jsedge's ServerInfo, and
  `server.flags` is 1 (JetStream only) where nats-server says 7.
* VARZ data: jsedge adds `jsedge_twins`, nats-server has `feature_flags` (as /varz).
* INFO / ACCOUNTZ account details: nats-server lists its system imports; jsedge has no imports.
* `Accept-Encoding: snappy` is answered uncompressed with `Content-Encoding: identity` by jsedge.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
import tempfile
import urllib.request
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest
from helpers import ServerProcess, acheck_for
from nats.errors import NoRespondersError

pytestmark = [pytest.mark.compat, pytest.mark.timeout(90)]

KINDS = ("nats", "jsedge")

CONFIG = """
accounts {
  SYS: { users: [{user: sys, password: sys}] }
  APP: {
    jetstream: enabled
    users: [{user: app, password: app, permissions: {
      publish: {allow: ["foo.>", "$SYS.REQ.>", "$JS.API.>", "_INBOX.>"], deny: ["foo.bar"]}
      subscribe: {allow: ["_INBOX.>", "foo.>", "q.> grp"]}
      allow_responses: {max: 3, expires: "5s"}
    }}]
  }
}
system_account: SYS
server_tags: ["region:lab", "edge"]
"""

#: (subject suffix, body) pairs answered with the {"server","data"} envelope.
SERVER_REQUESTS = [
    ("VARZ", ""),
    ("VARZ", "{}"),
    ("SUBSZ", ""),
    ("SUBSZ", '{"subscriptions":true}'),
    ("SUBSZ", '{"subscriptions":true,"account":"APP","test":"foo.x"}'),
    ("CONNZ", ""),
    ("CONNZ", '{"auth":true,"subscriptions":true}'),
    ("CONNZ", '{"auth":true,"subscriptions_detail":true,"sort":"subs","limit":1}'),
    ("CONNZ", '{"acc":"APP","filter_subject":"foo.x","auth":true}'),
    ("CONNZ", '{"state":1}'),
    ("ROUTEZ", ""),
    ("GATEWAYZ", ""),
    ("LEAFZ", ""),
    ("ACCOUNTZ", ""),
    ("ACCOUNTZ", '{"account":"APP"}'),
    ("JSZ", ""),
    ("JSZ", '{"accounts":true}'),
    ("JSZ", '{"streams":true,"config":true}'),
    ("JSZ", '{"consumer":true,"account":"APP"}'),
    ("JSZ", '{"leader_only":true}'),
    ("HEALTHZ", ""),
    ("HEALTHZ", '{"js-enabled-only":true}'),
    ("HEALTHZ", '{"account":"APP","stream":"ORDERS","consumer":"worker"}'),
    ("HEALTHZ", '{"account":"APP","stream":"NOPE"}'),
    ("HEALTHZ", '{"stream":"x","details":true}'),
    ("RAFTZ", ""),
]


# --------------------------------------------------------------------------------------------------
# harness


def _start_pair(js: bool, http: bool = False) -> tuple[dict[str, ServerProcess], list[str]]:
    servers: dict[str, ServerProcess] = {}
    dirs: list[str] = []
    try:
        for kind in KINDS:
            args: list[str] = []
            if js:
                store = tempfile.mkdtemp(prefix=f"sysreq-{kind}-")
                dirs.append(store)
                args = ["-js", "-sd", store]
            servers[kind] = ServerProcess(kind, args=args, config=CONFIG, http=http)
    except BaseException:
        for srv in servers.values():
            srv.cleanup()
        for store in dirs:
            shutil.rmtree(store, ignore_errors=True)
        raise
    return servers, dirs


async def _seed(url: str) -> None:
    """A stream with one message and a durable consumer in APP."""
    nc = await nats.connect(url, user="app", password="app", connect_timeout=3, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="ORDERS", subjects=["foo.orders.>"])
        await js.publish("foo.orders.1", b"one")
        await js.add_consumer("ORDERS", durable_name="worker")
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def pair():
    servers, dirs = _start_pair(js=True)
    try:
        for srv in servers.values():
            asyncio.run(asyncio.wait_for(_seed(srv.url), 15))
        yield servers
    finally:
        for srv in servers.values():
            srv.cleanup()
        for store in dirs:
            shutil.rmtree(store, ignore_errors=True)


@pytest.fixture(scope="module")
def plain_pair():
    """Without JetStream, with the HTTP monitor (to compare $SYS data with the HTTP documents)."""
    servers, _ = _start_pair(js=False, http=True)
    try:
        yield servers
    finally:
        for srv in servers.values():
            srv.cleanup()


async def _connect(srv: ServerProcess, user: str = "sys", **kw: Any) -> nats.NATS:
    return await nats.connect(
        srv.url, user=user, password=user, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0, **kw
    )


@asynccontextmanager
async def _clients(srv: ServerProcess):
    """A `sys` requester plus an APP `holder` with two subscriptions (one queued)."""
    sys_nc = await _connect(srv)
    holder = await _connect(srv, "app", name="holder")
    try:
        await holder.subscribe("foo.>")
        await holder.subscribe("q.x", queue="grp")
        await holder.flush()

        async def holder_seen() -> bool | None:
            # the state the answers are compared in: the holder listed with both subscriptions
            # (nats-server has been seen answering a moment earlier with none)
            answer = await ask(sys_nc, "$SYS.REQ.SERVER.PING.CONNZ", '{"subscriptions":true}')
            found = [c for c in answer["data"].get("connections") or [] if c.get("name") == "holder"]
            return bool(found) and found[-1].get("subscriptions") == 2 or None

        assert await acheck_for(5, holder_seen, interval=0.05)
        yield sys_nc
    finally:
        await holder.close()
        await sys_nc.close()


async def collect(
    nc: nats.NATS,
    subject: str,
    body: str | bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    window: float = 0.5,
    first_timeout: float = 3.0,
    expect: int | None = 1,
) -> list[Any]:
    """Every reply to one request: waits up to `first_timeout` for the first, then `window` for more
    (or returns as soon as `expect` replies arrived)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        data = body.encode() if isinstance(body, str) else body
        await nc.publish(subject, data, reply=inbox, headers=headers)
        replies = []
        timeout = first_timeout
        while expect is None or len(replies) < expect:
            try:
                replies.append(await sub.next_msg(timeout=timeout))
            except nats.errors.TimeoutError:
                break
            timeout = window
        return replies
    finally:
        await sub.unsubscribe()


async def ask(nc: nats.NATS, subject: str, body: str | bytes = b"", **kw: Any) -> dict[str, Any]:
    replies = await collect(nc, subject, body, **kw)
    assert len(replies) == 1, (subject, body, replies)
    return json.loads(replies[0].data)


async def silent(nc: nats.NATS, subject: str, body: str | bytes = b"") -> bool:
    return not await collect(nc, subject, body, first_timeout=0.6, expect=None)


def shape(value: Any) -> Any:
    """Key order and JSON types; list elements as the set of their shapes; numbers are numbers."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return ["list", sorted({json.dumps(shape(item)) for item in value})]
    assert isinstance(value, dict)
    return [[key, shape(item)] for key, item in value.items()]


def normalize(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop the known differences (module docstring) from one server's envelope."""
    doc = json.loads(json.dumps(doc))
    server = doc.get("server")
    if isinstance(server, dict):
        server.pop("feature_flags", None)
    data = doc.get("data")
    if isinstance(data, dict):
        data.pop("jsedge_twins", None)
        data.pop("feature_flags", None)
        for detail in (data, data.get("account_detail")):
            if isinstance(detail, dict) and "account_name" in detail:
                for key in ("imports", "exports"):  # nats-server lists them in Go map order
                    if isinstance(detail.get(key), list):
                        detail[key].sort(key=json.dumps)
    return doc


def assert_same_shape(got: dict[str, Any], ref: dict[str, Any], what: str) -> None:
    got, ref = normalize(got), normalize(ref)
    assert list(got) == list(ref), (what, list(got), list(ref))
    assert shape(got) == shape(ref), f"{what}:\n jsedge {json.dumps(got)[:3000]}\n nats   {json.dumps(ref)[:3000]}"


async def both(pair: dict[str, ServerProcess], subject: str, body: str = "", **kw: Any) -> tuple[dict, dict]:
    """(jsedge, nats) answers to the same request, each with the holder connected."""
    answers = {}
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            answers[kind] = await ask(nc, subject, body, **kw)
    return answers["jsedge"], answers["nats"]


_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


# --------------------------------------------------------------------------------------------------
# server requests


@pytest.mark.parametrize("suffix,body", SERVER_REQUESTS, ids=[f"{s}-{b}" for s, b in SERVER_REQUESTS])
async def test_ping_kind_shape(pair, suffix, body):
    got, ref = await both(pair, f"$SYS.REQ.SERVER.PING.{suffix}", body)
    assert list(got) == ["server", "data"], got
    assert_same_shape(got, ref, f"{suffix} {body}")


async def test_server_info_block(pair):
    got, ref = await both(pair, "$SYS.REQ.SERVER.PING.VARZ")
    for doc in (got, ref):
        info = doc["server"]
        assert info["id"] == doc["data"]["server_id"]
        assert info["name"] == doc["data"]["server_name"]
        assert info["ver"] == "2.15.1"
        assert info["tags"] == ["region:lab", "edge"]
        assert info["jetstream"] is True and info["flags"] & 1
        assert isinstance(info["seq"], int) and info["seq"] > 0
        assert _TIME.match(info["time"]), info["time"]
    assert "feature_flags" not in got["server"] and got["server"]["flags"] == 1
    assert list(normalize(ref)["server"]) == list(got["server"])


async def test_seq_increases(pair):
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            first = await ask(nc, "$SYS.REQ.SERVER.PING.HEALTHZ")
            second = await ask(nc, "$SYS.REQ.SERVER.PING.IDZ")  # no envelope: does not count
            third = await ask(nc, "$SYS.REQ.SERVER.PING.HEALTHZ")
            assert "seq" not in second
            assert third["server"]["seq"] > first["server"]["seq"], kind
            assert third["server"]["time"] >= first["server"]["time"]


async def test_statsz(pair):
    for subject in ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.STATSZ"):
        for body in ("", "{}"):
            got, ref = await both(pair, subject, body)
            assert list(got) == list(ref) == ["server", "statsz"]
            assert_same_shape(got, ref, f"{subject} {body!r}")
            stats = got["statsz"]
            assert stats["connections"] >= 2  # the sys requester and the APP holder (a closing one may linger)
            assert stats["total_connections"] >= 2
            assert stats["active_accounts"] >= 2
            assert stats["subscriptions"] > 0
            assert stats["cores"] >= 1 and stats["mem"] > 0
            assert _TIME.match(stats["start"])
            assert stats["received"]["msgs"] >= 1
            assert stats["active_servers"] == 1 == ref["statsz"]["active_servers"]
            assert (
                "store_dir" not in stats["jetstream"]["config"]
                and "store_dir" not in ref["statsz"]["jetstream"]["config"]
            )
            assert stats["jetstream"]["limits"] == ref["statsz"]["jetstream"]["limits"]


async def test_idz(pair):
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            doc = await ask(nc, "$SYS.REQ.SERVER.PING.IDZ", "{not json")  # the body is never read
            assert list(doc) == ["name", "host", "id"]
            assert doc["id"] == nc._server_info["server_id"]
            assert doc["host"] == "127.0.0.1"


async def test_direct_subject_uses_the_server_id_from_info(pair):
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            server_id = nc._server_info["server_id"]
            doc = await ask(nc, f"$SYS.REQ.SERVER.{server_id}.VARZ")
            assert doc["data"]["server_id"] == doc["server"]["id"] == server_id
            idz = await ask(nc, f"$SYS.REQ.SERVER.{server_id}.IDZ")
            assert idz["id"] == server_id
            statsz = await ask(nc, f"$SYS.REQ.SERVER.{server_id}.STATSZ")
            assert list(statsz) == ["server", "statsz"]
            other = "N" + "A" * 55
            with pytest.raises(NoRespondersError):
                await nc.request(f"$SYS.REQ.SERVER.{other}.VARZ", b"", timeout=2)


@pytest.mark.parametrize(
    "body",
    [
        '{"server_name":"no-such-server"}',
        '{"cluster":"somecluster"}',
        '{"host":"10.9.8.7"}',
        '{"tags":["edge","missing"]}',
        '{"domain":"elsewhere"}',
        '{"server_name":"N","exact_match":true}',
        '{"SERVER_NAME":"no-such-server"}',
    ],
)
async def test_filtered_ping_gets_no_answer(pair, body):
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            subjects = ("$SYS.REQ.SERVER.PING.VARZ", "$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.JSZ")
            quiet = await asyncio.gather(*(silent(nc, subject, body) for subject in subjects))
            assert all(quiet), (kind, body, quiet)


@pytest.mark.parametrize(
    "body",
    [
        '{"tags":["EDGE"]}',
        '{"tags":[" region:lab ","edge"]}',
        '{"server_name":"N"}',
        '{"host":"127.0"}',
        '{"cluster":""}',
        "null",
    ],
)
async def test_matching_filter_answers(pair, body):
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            doc = await ask(nc, "$SYS.REQ.SERVER.PING.HEALTHZ", body)
            assert doc["data"] == {"status": "ok", "status_code": 200}, kind
            statsz = await ask(nc, "$SYS.REQ.SERVER.PING", body)
            assert "statsz" in statsz


@pytest.mark.parametrize(
    "subject,body",
    [
        ("$SYS.REQ.SERVER.PING.VARZ", "{bad"),
        ("$SYS.REQ.SERVER.PING.VARZ", "[1]"),
        ("$SYS.REQ.SERVER.PING.VARZ", " "),
        ("$SYS.REQ.SERVER.PING.VARZ", '{"a":}'),
        ("$SYS.REQ.SERVER.PING.VARZ", '{"a" 1}'),
        ("$SYS.REQ.SERVER.PING.VARZ", '{"a":1 "b":2}'),
        ("$SYS.REQ.SERVER.PING.VARZ", '{"a":[1 2]}'),
        ("$SYS.REQ.SERVER.PING.VARZ", '{"a":tru}'),
        ("$SYS.REQ.SERVER.PING.VARZ", "{} x"),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"sort":1}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"offset":1.5}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"cid":-1}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"state":"closed"}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"limit":1e3}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"auth":"yes","sort":2}'),
        ("$SYS.REQ.SERVER.PING.HEALTHZ", '{"tags":"x"}'),
        ("$SYS.REQ.SERVER.PING.HEALTHZ", '{"tags":[1],"server_name":"no-such-server"}'),
        ("$SYS.REQ.SERVER.PING.JSZ", '{"accounts":1}'),
        ("$SYS.REQ.SERVER.PING.STATSZ", "{bad"),
        ("$SYS.REQ.SERVER.PING", '{"tags":{}}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"sort":"bogus"}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"sort":"stop"}'),
        ("$SYS.REQ.SERVER.PING.CONNZ", '{"filter_subject":"foo"}'),
        ("$SYS.REQ.SERVER.PING.SUBSZ", '{"test":"foo.*"}'),
        ("$SYS.REQ.SERVER.PING.ACCOUNTZ", '{"account":"NOPE"}'),
    ],
)
async def test_error_answers(pair, subject, body):
    got, ref = await both(pair, subject, body)
    assert list(got) == list(ref), (got, ref)
    assert got["error"] == ref["error"], (got["error"], ref["error"])
    # 400 (the body): no data; 500 (the endpoint): "data":null, as nats-server's typed nil.
    assert got.get("data", "absent") == ref.get("data", "absent")
    assert ("data" in got) == (got["error"]["code"] == 500)


async def test_non_system_user_gets_no_responders(pair):
    for kind in KINDS:
        async with _clients(pair[kind]) as sys_nc:
            server_id = sys_nc._server_info["server_id"]
            app = await _connect(pair[kind], "app")
            try:
                for subject in (
                    "$SYS.REQ.SERVER.PING",
                    "$SYS.REQ.SERVER.PING.VARZ",
                    "$SYS.REQ.SERVER.PING.STATSZ",
                    "$SYS.REQ.SERVER.PING.JSZ",
                    "$SYS.REQ.SERVER.PING.IDZ",
                    f"$SYS.REQ.SERVER.{server_id}.VARZ",
                    "$SYS.REQ.ACCOUNT.APP.CONNZ",
                    "$SYS.REQ.ACCOUNT.APP.INFO",
                    "$SYS.REQ.USER.APP.INFO",
                ):
                    with pytest.raises(NoRespondersError):
                        await app.request(subject, b"", timeout=2)
            finally:
                await app.close()


async def test_imports_answer_other_accounts_for_themselves(pair):
    """nats-server imports four system services into every account; jsedge answers them the same."""
    answers: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        async with _clients(pair[kind]):
            app = await _connect(pair[kind], "app")
            try:
                docs = {
                    subject: await ask(app, subject)
                    for subject in (
                        "$SYS.REQ.SERVER.PING.CONNZ",
                        "$SYS.REQ.ACCOUNT.PING.CONNZ",
                        "$SYS.REQ.ACCOUNT.PING.STATZ",
                        "$SYS.REQ.USER.INFO",
                    )
                }
                docs["filtered"] = await silent(app, "$SYS.REQ.ACCOUNT.PING.CONNZ", '{"server_name":"no-such-server"}')
                docs["auth"] = await ask(app, "$SYS.REQ.SERVER.PING.CONNZ", '{"auth":true}')
            finally:
                await app.close()
        answers[kind] = docs
    got, ref = answers["jsedge"], answers["nats"]
    assert got["filtered"] and ref["filtered"]
    for subject in ("$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.ACCOUNT.PING.CONNZ", "$SYS.REQ.ACCOUNT.PING.STATZ"):
        assert_same_shape(got[subject], ref[subject], subject)
    for doc in (got, ref):
        # Only APP's connections: the holder and the requester (and a closing one may linger).
        assert doc["$SYS.REQ.SERVER.PING.CONNZ"]["data"]["num_connections"] >= 2
        assert {c["account"] for c in doc["auth"]["data"]["connections"]} == {"APP"}
        assert [s["acc"] for s in doc["$SYS.REQ.ACCOUNT.PING.STATZ"]["data"]["account_statz"]] == ["APP"]
    info_got, info_ref = got["$SYS.REQ.USER.INFO"], ref["$SYS.REQ.USER.INFO"]
    assert_same_shape(info_got, info_ref, "USER.INFO")
    for doc in (info_got, info_ref):
        perms = doc["data"]["permissions"]
        for part in ("publish", "subscribe"):
            for key in perms[part]:
                perms[part][key].sort()
    assert info_got["data"] == info_ref["data"]
    assert info_got["data"]["user"] == "app" and info_got["data"]["permissions"]["responses"] == {
        "max": 3,
        "ttl": 5_000_000_000,
    }


async def test_user_info_of_the_system_user(pair):
    got, ref = await both(pair, "$SYS.REQ.USER.INFO")
    assert got["data"] == ref["data"] == {"user": "sys", "account": "SYS", "account_name": "SYS"}
    assert list(got) == list(ref) == ["server", "data"]


# --------------------------------------------------------------------------------------------------
# account requests


@pytest.mark.parametrize(
    "suffix,body",
    [
        ("CONNZ", ""),
        ("CONNZ", '{"auth":true,"subscriptions":true}'),
        ("SUBSZ", ""),
        ("LEAFZ", ""),
        ("JSZ", ""),
        ("JSZ", '{"streams":true,"consumer":true,"config":true}'),
        ("INFO", ""),
        ("STATZ", ""),
        ("STATZ", '{"include_unused":true}'),
    ],
)
async def test_account_kind_shape(pair, suffix, body):
    got, ref = await both(pair, f"$SYS.REQ.ACCOUNT.APP.{suffix}", body)
    assert list(got) == ["server", "data"], got
    assert_same_shape(got, ref, f"ACCOUNT.APP.{suffix} {body}")


async def test_account_conns(pair):
    got, ref = await both(pair, "$SYS.REQ.ACCOUNT.APP.CONNS")
    assert list(got) == list(ref)
    assert list(got)[:4] == ["type", "id", "timestamp", "server"]
    assert got["type"] == ref["type"] == "io.nats.server.advisory.v1.account_connections"
    assert len(got["id"]) == len(ref["id"]) == 22
    assert got["acc"] == got["name"] == "APP" and got["conns"] >= 1 and ref["conns"] >= 1
    assert_same_shape(got, ref, "CONNS")
    for kind in KINDS:  # an unknown account has no connections: no answer
        async with _clients(pair[kind]) as nc:
            assert await silent(nc, "$SYS.REQ.ACCOUNT.NOPE.CONNS")


async def test_unknown_account(pair):
    got, ref = await both(pair, "$SYS.REQ.ACCOUNT.NOPE.CONNZ")
    for doc in (got, ref):
        doc["data"].pop("now")
    assert (
        got["data"]
        == ref["data"]
        == {
            "server_id": "",
            "num_connections": 0,
            "total": 0,
            "offset": 0,
            "limit": 1024,
            "connections": None,
        }
    )
    for suffix in ("INFO", "JSZ"):
        got, ref = await both(pair, f"$SYS.REQ.ACCOUNT.NOPE.{suffix}")
        assert got["error"] == ref["error"] and got["data"] is ref["data"] is None, suffix
    got, ref = await both(pair, "$SYS.REQ.ACCOUNT.NOPE.SUBSZ")
    assert_same_shape(got, ref, "NOPE.SUBSZ")
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            assert await silent(nc, "$SYS.REQ.ACCOUNT.NOPE.STATZ")
            doc = await ask(nc, "$SYS.REQ.ACCOUNT.PING.STATZ")
            assert sorted(s["acc"] for s in doc["data"]["account_statz"]) == ["APP", "SYS"]
            doc = await ask(nc, "$SYS.REQ.ACCOUNT.PING.CONNZ")  # the account named "PING"
            assert doc["data"]["connections"] is None


async def test_account_jsz_error_without_jetstream_account(pair):
    got, ref = await both(pair, "$SYS.REQ.ACCOUNT.SYS.JSZ")
    assert got["error"] == ref["error"] == {"code": 500, "description": 'account "SYS" not jetstream enabled'}


# --------------------------------------------------------------------------------------------------
# encodings


async def test_gzip_and_unsupported_encodings(pair):
    for kind in KINDS:
        async with _clients(pair[kind]) as nc:
            replies = await collect(nc, "$SYS.REQ.SERVER.PING.VARZ", headers={"Accept-Encoding": "gzip"})
            assert replies[0].headers == {"Content-Encoding": "gzip"}, kind
            assert json.loads(gzip.decompress(replies[0].data))["data"]["server_id"]
            replies = await collect(nc, "$SYS.REQ.SERVER.PING.VARZ", headers={"Accept-Encoding": "br"})
            assert replies[0].headers == {"Content-Encoding": "identity"}, kind
            assert json.loads(replies[0].data)["data"]["server_id"]
            # Errors and statsz are never compressed.
            replies = await collect(nc, "$SYS.REQ.SERVER.PING.VARZ", "{bad", headers={"Accept-Encoding": "gzip"})
            assert not replies[0].headers and json.loads(replies[0].data)["error"]["code"] == 400
            replies = await collect(nc, "$SYS.REQ.SERVER.PING.STATSZ", headers={"Accept-Encoding": "gzip"})
            assert not replies[0].headers and "statsz" in json.loads(replies[0].data)
    async with _clients(pair["jsedge"]) as nc:  # what the nats CLI asks for
        replies = await collect(nc, "$SYS.REQ.SERVER.PING.VARZ", "{}", headers={"Accept-Encoding": "snappy"})
        assert replies[0].headers == {"Content-Encoding": "identity"}
        assert json.loads(replies[0].data)["data"]["server_id"]


# --------------------------------------------------------------------------------------------------
# without JetStream, with the HTTP monitor


async def test_without_jetstream(plain_pair):
    for suffix, body in (("JSZ", ""), ("JSZ", '{"accounts":true}'), ("VARZ", ""), ("STATSZ", "")):
        got, ref = await both(plain_pair, f"$SYS.REQ.SERVER.PING.{suffix}", body)
        assert_same_shape(got, ref, suffix)
    assert got["statsz"].get("jetstream") is None is ref["statsz"].get("jetstream")
    got, ref = await both(plain_pair, "$SYS.REQ.SERVER.PING.JSZ")
    assert got["data"]["disabled"] is ref["data"]["disabled"] is True
    assert got["server"]["jetstream"] is ref["server"]["jetstream"] is False
    assert got["server"]["flags"] == ref["server"]["flags"] == 0
    got, ref = await both(plain_pair, "$SYS.REQ.ACCOUNT.APP.JSZ")
    assert got["error"] == ref["error"] == {"code": 500, "description": "jetstream not enabled"}
    for kind in KINDS:
        async with _clients(plain_pair[kind]) as nc:
            assert await silent(nc, "$SYS.REQ.SERVER.PING.JSZ", '{"leader_only":true}'), kind


def _http(srv: ServerProcess, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}{path}", timeout=5) as response:
        return json.loads(response.read())


_VOLATILE = ("now", "uptime", "mem", "cpu", "http_req_stats", "last_activity", "idle", "rtt", "in_msgs", "in_bytes",
             "out_msgs", "out_bytes", "in_client_msgs", "in_client_bytes", "out_client_msgs", "out_client_bytes",
             "num_matches", "cache_hit_rate", "num_cache", "avg_fanout", "max_fanout", "pending_bytes")  # fmt: skip


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@pytest.mark.parametrize(
    "suffix,body,path",
    [
        ("VARZ", "", "/varz"),
        ("CONNZ", '{"auth":true,"subscriptions":true}', "/connz?auth=1&subs=1"),
        ("SUBSZ", '{"subscriptions":true,"account":"APP"}', "/subsz?subs=1&acc=APP"),
        ("ACCOUNTZ", '{"account":"APP"}', "/accountz?acc=APP"),
        ("JSZ", "", "/jsz"),
        ("ROUTEZ", "", "/routez"),
        ("LEAFZ", "", "/leafz"),
        ("GATEWAYZ", "", "/gatewayz"),
    ],
)
async def test_jsedge_data_is_the_http_document(plain_pair, suffix, body, path):
    srv = plain_pair["jsedge"]
    async with _clients(srv) as nc:
        # nc.request's reply subscription stays, so both documents see the same subscriptions.
        doc = json.loads((await nc.request(f"$SYS.REQ.SERVER.PING.{suffix}", body.encode(), timeout=3)).data)
        http_doc = await asyncio.get_running_loop().run_in_executor(None, _http, srv, path)
    assert _stable(doc["data"]) == _stable(http_doc)


async def test_account_added_by_reload_gets_the_imports():
    """nats-server registers its system imports for accounts a reload adds; so does jsedge."""
    import signal

    added = CONFIG.replace("\n}\nsystem_account", "\n  NEW: { users: [{user: new, password: new}] }\n}\nsystem_account")
    assert "NEW: { users" in added
    servers, _ = _start_pair(js=False)
    try:
        for kind in KINDS:
            srv = servers[kind]
            assert srv.config_path is not None
            mark = srv.log_mark()
            srv.config_path.write_text(added)
            srv.signal(signal.SIGHUP)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda srv=srv, mark=mark: srv.wait_for_log("Reloaded server configuration", 10, since=mark)
            )
            nc = await _connect(srv, "new")
            try:
                doc = await ask(nc, "$SYS.REQ.USER.INFO")
                assert doc["data"] == {"user": "new", "account": "NEW", "account_name": "NEW"}, kind
                doc = await ask(nc, "$SYS.REQ.ACCOUNT.PING.STATZ")
                assert [s["acc"] for s in doc["data"]["account_statz"]] == ["NEW"], kind
            finally:
                await nc.close()
    finally:
        for srv in servers.values():
            srv.cleanup()


def test_http_varz_has_the_jetstream_block(tmp_path):
    """/varz `jetstream` (shared with VARZ and STATSZ over $SYS) is nats-server's JetStreamVarz."""
    started = []
    try:
        for kind in KINDS:
            started.append(ServerProcess(kind, args=["-js", "-sd", str(tmp_path / kind)], http=True))
        ref, got = (_http(srv, "/varz")["jetstream"] for srv in started)
        assert shape(got) == shape(ref), (got, ref)
        assert list(got) == ["config", "stats", "limits"]
        assert got["limits"] == ref["limits"] and got["stats"]["api"]["level"] == ref["stats"]["api"]["level"]
        assert got["config"]["store_dir"] == str(tmp_path / "jsedge" / "jetstream")
    finally:
        for srv in started:
            srv.cleanup()


async def _connect_events(srv: ServerProcess) -> list[Any]:
    """The CONNECT and DISCONNECT events of an APP client that publishes once."""
    sys_nc = await _connect(srv)
    events: list[Any] = []

    async def on_event(msg: Any) -> None:
        events.append((msg.subject, json.loads(msg.data)))

    try:
        await sys_nc.subscribe("$SYS.ACCOUNT.APP.CONNECT", cb=on_event)
        await sys_nc.subscribe("$SYS.ACCOUNT.APP.DISCONNECT", cb=on_event)
        await sys_nc.flush()
        app = await _connect(srv, "app", name="evented")
        await app.publish("foo.x", b"hello")
        await app.flush()
        await app.close()
        await acheck_for(5, lambda: len(events) >= 2, interval=0.05)
        await asyncio.sleep(0.2)
    finally:
        await sys_nc.close()
    out = []
    for subject, doc in events:
        doc = normalize(doc)
        client = doc["client"]
        fixed = {k: client[k] for k in ("host", "acc", "user", "name", "lang", "name_tag", "kind", "client_type")}
        extra = {k: doc[k] for k in ("type", "sent", "received", "reason") if k in doc}
        out.append((subject, shape(doc), fixed, extra))
    return out


async def test_account_connect_and_disconnect_events(plain_pair):
    """`$SYS.ACCOUNT.<acc>.CONNECT`/`DISCONNECT` as nats-server publishes them (ClientInfo, the
    counts of what the client sent and received, the close reason)."""
    results = [await _connect_events(plain_pair[kind]) for kind in KINDS]
    assert results[0] == results[1]
    assert [item[0] for item in results[1]] == ["$SYS.ACCOUNT.APP.CONNECT", "$SYS.ACCOUNT.APP.DISCONNECT"]
