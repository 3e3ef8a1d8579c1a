"""HTTP monitoring, differential: jsedge and the real nats-server side by side, the same clients on both.

For every endpoint: the same keys in the same order with the same JSON types (values of ids, times,
ports, versions and counters ignored), and exact equality where nats-server is deterministic (error
texts, status codes, /healthz bodies, /connz paging and sort order, empty shapes).

Known, intended differences (stripped before comparing, each asserted on its own):
* `/varz`: jsedge adds `jsedge_twins`; nats-server's `feature_flags` describe JetStream internals jsedge
  does not have.
* `/accountz?acc=…`: exports and imports (the system account's automatic ones included) are compared
  as sets: nats-server lists them in Go map order.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import urllib.error
import urllib.request
from typing import Any

import nats
import pytest
from helpers import ServerProcess, check_for

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

KINDS = ("nats", "jsedge")


# --------------------------------------------------------------------------------------------------
# harness


class Clients:
    """nats-py clients on their own loop thread: `holder` (2 subs, one queue), an unnamed publisher
    with one sub, and `gone`, which subscribes and disconnects (a closed-connection snapshot)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Clients:
        self.thread.start()
        if not self.ready.wait(15):
            raise AssertionError(f"clients for {self.url} not ready")
        if self.error is not None:
            raise self.error
        return self

    def close(self) -> None:
        if self.loop is not None and self.stop_event is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        opts = {"connect_timeout": 2, "allow_reconnect": False, "max_reconnect_attempts": 0}
        holder = await nats.connect(self.url, name="holder", **opts)
        publisher = await nats.connect(self.url, **opts)
        try:
            await holder.subscribe("hold.>", queue="qq")
            await holder.subscribe("hold2")
            await holder.flush()
            await publisher.subscribe("foo")
            await publisher.flush()
            await publisher.publish("hold2", b"hi")
            await publisher.publish("foo", b"x")
            await publisher.flush()
            await holder.flush()
            gone = await nats.connect(self.url, name="gone", **opts)
            await gone.subscribe("x.y")
            await gone.flush()
            await gone.close()
            self.ready.set()
            await self.stop_event.wait()
        finally:
            for nc in (holder, publisher):
                try:
                    await nc.close()
                except Exception:
                    pass


class Endpoint:
    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.base = f"http://127.0.0.1:{srv.http_port}"

    def raw(self, path: str, method: str = "GET") -> tuple[int, str, str]:
        request = urllib.request.Request(self.base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()

    def json(self, path: str) -> dict[str, Any]:
        status, ctype, body = self.raw(path)
        assert status == 200, (self.srv.kind, path, status, body)
        assert ctype == "application/json", (self.srv.kind, path, ctype)
        return json.loads(body)


@pytest.fixture(scope="module")
def pair():
    servers: dict[str, ServerProcess] = {}
    clients: list[Clients] = []
    try:
        for kind in KINDS:
            servers[kind] = ServerProcess(kind, http=True)
        for kind in KINDS:
            clients.append(Clients(servers[kind].url).start())
        endpoints = {kind: Endpoint(srv) for kind, srv in servers.items()}

        def settled(ep: Endpoint) -> bool:
            open_conns = ep.json("/connz")["connections"]
            closed = ep.json("/connz?state=closed")["connections"]
            return len(open_conns) == 2 and all("rtt" in c for c in open_conns) and len(closed) == 1

        # jsedge measures RTT with its first PING, about 2 s after CONNECT.
        for ep in endpoints.values():
            check_for(8, lambda ep=ep: settled(ep) or None, interval=0.2)
        yield endpoints
    finally:
        for c in clients:
            c.close()
        for srv in servers.values():
            srv.cleanup()


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


def both(pair, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return pair["nats"].json(path), pair["jsedge"].json(path)


def _drop_closed_rtt(doc: dict[str, Any]) -> None:
    """Closed connections: see test_closed_connection_has_rtt (jsedge measures RTT only by PING)."""
    for conn in doc.get("connections") or ():
        if "stop" in conn:
            conn.pop("rtt", None)


def _drop_paged_qgroup(doc: dict) -> None:
    """A page of /subsz: nats-server lists subscriptions in its sublist's map order (random from
    run to run), so which one a one-item page shows varies; its optional `qgroup` is left out."""
    for sub in doc.get("subscriptions_list") or ():
        sub.pop("qgroup", None)


def assert_same_shape(pair, path: str, drop_nats: tuple[str, ...] = (), drop_jsedge: tuple[str, ...] = ()):
    ref, got = both(pair, path)
    _drop_closed_rtt(ref)
    _drop_closed_rtt(got)
    if path.startswith("/subsz") and "limit=" in path:
        _drop_paged_qgroup(ref)
        _drop_paged_qgroup(got)
    for key in drop_nats:
        ref.pop(key, None)
    for key in drop_jsedge:
        got.pop(key, None)
    assert shape(got) == shape(ref), f"{path}:\n jsedge {json.dumps(got)}\n nats   {json.dumps(ref)}"
    return ref, got


# --------------------------------------------------------------------------------------------------
# shapes


def test_varz_shape(pair):
    ref, got = both(pair, "/varz")
    assert isinstance(got.pop("jsedge_twins"), dict)
    ref.pop("feature_flags", None)
    assert isinstance(got["http_req_stats"], dict) and got["http_req_stats"].get("/varz", 0) >= 1
    assert all(isinstance(v, int) for v in got["http_req_stats"].values())
    assert list(got["http_req_stats"]) == sorted(got["http_req_stats"])
    ref.pop("http_req_stats"), got.pop("http_req_stats")
    assert shape(got) == shape(ref), f"\n jsedge {json.dumps(got)}\n nats   {json.dumps(ref)}"
    for key in ("version", "proto", "host", "max_connections", "ping_interval", "ping_max", "http_host",
                "http_base_path", "https_port", "auth_timeout", "max_control_line", "max_payload",
                "max_pending", "cluster", "gateway", "leaf", "mqtt", "websocket", "jetstream",
                "tls_timeout", "write_deadline", "connections", "total_connections", "routes", "remotes",
                "leafnodes", "in_msgs", "in_bytes", "out_msgs", "out_bytes", "in_client_msgs",
                "out_client_bytes", "slow_consumers", "config_digest", "system_account",
                "slow_consumer_stats", "stale_connection_stats", "disk_io_wait_stats"):  # fmt: skip
        assert got[key] == ref[key], key
    assert got["http_port"] == pair["jsedge"].srv.http_port
    assert got["port"] == pair["jsedge"].srv.port
    for key in ("start", "now", "config_load_time"):
        assert got[key].endswith("Z") and got[key][:2] == "20"


@pytest.mark.parametrize(
    "path",
    [
        "/connz",
        "/connz?subs=1",
        "/connz?subs=detail&auth=true",
        "/connz?state=closed&subs=1",
        "/connz?state=closed&subs=detail&auth=1",
        "/connz?state=any",
        "/connz?acc=$G&auth=1",
        "/subsz",
        "/subsz?subs=1",
        "/subsz?subs=1&test=foo",
        "/subsz?acc=$G&subs=1&limit=1&offset=1",
        "/subsz?subs=1&acc=nope",
        "/routez",
        "/routez?subs=detail",
        "/leafz",
        "/gatewayz",
        "/accountz",
        "/accstatz",
        "/accstatz?unused=1",
        "/jsz",
        "/jsz?acc=x&accounts=1",
    ],
)
def test_endpoint_shape(pair, path):
    assert_same_shape(pair, path)


@pytest.mark.parametrize("account", ["$G", "$SYS"])
def test_accountz_detail_shape(pair, account):
    ref, got = both(pair, f"/accountz?acc={account}")
    # the system account's automatic exports and imports, listed in Go map order by nats-server
    for key in ("imports", "exports"):
        ordered = [sorted(doc["account_detail"].get(key) or [], key=json.dumps) for doc in (ref, got)]
        assert ordered[0] == ordered[1], key
    assert shape(got) == shape(ref)
    assert got["account_detail"]["account_name"] == account
    assert got["account_detail"]["name_tag"] == account
    assert got["system_account"] == "$SYS"


def test_exact_bodies(pair):
    for path in ("/routez", "/leafz", "/gatewayz", "/jsz", "/accountz"):
        ref, got = both(pair, path)
        for doc in (ref, got):
            doc.pop("server_id"), doc.pop("now")
            doc.pop("server_name", None)
            if isinstance(doc.get("accounts"), list):
                doc["accounts"].sort()  # nats-server lists accounts in sync.Map order
        assert got == ref, path
    ref, got = both(pair, "/connz?acc=nope")
    ref.pop("now"), got.pop("now")
    assert (
        got
        == ref
        == {
            "server_id": "",
            "num_connections": 0,
            "total": 0,
            "offset": 0,
            "limit": 1024,
            "connections": None,
        }
    )


def test_subsz_listing(pair):
    for path in ("/subsz?subs=1&test=foo", "/subsz?subs=1&test=hold.a", "/subsz?subs=1&test=nomatch"):
        ref, got = both(pair, path)
        view = [
            [
                (d["account"], d["subject"], d.get("qgroup"), d["sid"], d["msgs"])
                for d in doc.get("subscriptions_list", [])
            ]
            for doc in (ref, got)
        ]
        assert view[1] == view[0], path
        assert (got["total"], got["offset"], got["limit"]) == (ref["total"], ref["offset"], ref["limit"])
    ref, got = both(pair, "/subsz")
    assert "subscriptions_list" not in got and got["total"] == 0
    got_g = pair["jsedge"].json("/subsz?subs=1&acc=$G")
    subjects = sorted(d["subject"] for d in got_g["subscriptions_list"])
    assert subjects == ["foo", "hold.>", "hold2"]
    assert got_g["total"] == 3
    # The count includes the internal subscriptions of nats-server's system imports into $G
    # (`$SYS.REQ.USER.INFO` & co, jsedge.events), which the listing leaves out.
    assert got_g["num_subscriptions"] == pair["nats"].json("/subsz?acc=$G")["num_subscriptions"] == 7


# --------------------------------------------------------------------------------------------------
# errors and status codes


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/varz/x",
        "/varz/",
        "/connz?sort=bogus",
        "/connz?sort=CID",
        "/connz?sort=stop",
        "/connz?sort=reason&state=any",
        "/connz?subs=maybe",
        "/connz?auth=x&subs=y",
        "/connz?sort=x&subs=y",
        "/connz?sort=x&state=y",
        "/connz?limit=x",
        "/connz?offset=1.5",
        "/connz?cid=x",
        "/connz?cid=-1",
        "/connz?state=bogus",
        "/subsz?test=foo.*",
        "/subsz?limit=x",
        "/subsz?subs=x",
        "/accountz?acc=nope",
        "/accstatz?unused=x",
        "/routez?subs=x",
        "/leafz?subs=x",
        "/gatewayz?accs=x",
        "/jsz?leader-only=true",
        "/jsz?accounts=x",
        "/jsz?raft=x&accounts=y",
        "/jsz?limit=x",
        "/healthz?js-enabled-only=x",
        "/healthz?details=x&js-server-only=y",
        "/healthz?js-meta-only=y&js-enabled-only=x",
    ],
)
def test_error_responses(pair, path):
    ref = pair["nats"].raw(path)
    got = pair["jsedge"].raw(path)
    assert got == ref


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/healthz?js-enabled-only=true",
        "/healthz?js-server-only=1",
        "/healthz?js-meta-only=1",
        "/healthz?js-enabled=true",
        "/healthz?details=1",
        "/healthz?stream=x",
        "/healthz?consumer=c",
        "/healthz?account=a&consumer=c",
        "/healthz?details=1&stream=x",
        "/healthz?consumer=c&details=1",
        "/healthz?account=a&stream=s&details=true",
    ],
)
def test_healthz(pair, path):
    ref = pair["nats"].raw(path)
    got = pair["jsedge"].raw(path)
    assert got == ref


def test_http_conventions(pair):
    for ep in pair.values():
        status, ctype, body = ep.raw("/")
        assert (status, ctype) == (200, "text/html; charset=utf-8")
        assert "./varz" in body and "./connz" in body
        status, ctype, body = ep.raw("/varz", method="POST")
        assert status == 200 and json.loads(body)["server_id"]
        assert not body.endswith("\n") and body.startswith('{\n  "server_id"')
    conn = http.client.HTTPConnection("127.0.0.1", pair["jsedge"].srv.http_port, timeout=5)
    try:
        for _ in range(3):  # keep-alive: several requests on one connection
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.getheader("Access-Control-Allow-Origin") == "*"
            assert response.getheader("Content-Type") == "application/json"
            assert response.read() == b'{"status":"ok"}'
        conn.request("HEAD", "/varz")
        response = conn.getresponse()
        assert response.status == 200 and int(response.getheader("Content-Length")) > 0
        assert response.read() == b""
    finally:
        conn.close()
    assert "\\u003e" in pair["jsedge"].raw("/connz?subs=1")[2]  # Go's escaping of `>` in "hold.>"
    redirects = []
    for ep in pair.values():  # Go's ServeMux redirects unclean paths to the cleaned one
        conn = http.client.HTTPConnection("127.0.0.1", ep.srv.http_port, timeout=5)
        try:
            conn.request("GET", "//varz?x=1")
            response = conn.getresponse()
            response.read()
            redirects.append((response.status, response.getheader("Location")))
        finally:
            conn.close()
    assert redirects[1] == redirects[0] == (307, "/varz?x=1")


# --------------------------------------------------------------------------------------------------
# /connz behaviour


def _names(doc: dict[str, Any]) -> list[str]:
    return [c.get("name", "") for c in doc["connections"]]


def _paging(doc: dict[str, Any]) -> tuple[int, int, int, int]:
    return doc["num_connections"], doc["total"], doc["offset"], doc["limit"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "sort=cid",
        "sort=start",
        "sort=subs",
        "sort=msgs_from",
        "sort=bytes_from",
        "sort=bytes_to",
        "sort=pending&limit=1",
        "sort=uptime",
        "limit=1",
        "limit=1&offset=1",
        "offset=5",
        "offset=-1",
        "limit=0",
        "limit=-1",
        "state=closed",
        "state=closed&sort=stop",
        "state=closed&sort=reason",
        "state=closed&sort=rtt",
        "state=any",
        "state=all&limit=1&offset=1",
        "state=any&sort=cid&offset=2",
        "user=x",
        "user=x&state=any",
        "mqtt_client=x",
        "acc=$G&auth=1",
        "acc=$SYS&auth=1",
        "acc=$G&state=closed",
    ],
)
def test_connz_paging_and_sort(pair, query):
    ref, got = both(pair, f"/connz?{query}")
    assert _paging(got) == _paging(ref)
    if query.startswith("sort=pending"):
        # Every idle connection has 0 pending bytes: nats-server's order among ties is arbitrary.
        assert len(_names(got)) == len(_names(ref))
    else:
        assert _names(got) == _names(ref)


def test_connz_cid(pair):
    for state in ("", "&state=any", "&state=open"):
        ref_all, got_all = both(pair, "/connz")
        docs = []
        for ep, doc in ((pair["nats"], ref_all), (pair["jsedge"], got_all)):
            cid = next(c["cid"] for c in doc["connections"] if c.get("name") == "holder")
            docs.append(ep.json(f"/connz?cid={cid}{state}"))
        assert _paging(docs[1]) == _paging(docs[0])
        assert _names(docs[1]) == _names(docs[0]) == ["holder"]
    ref, got = both(pair, "/connz?cid=99999")
    assert _paging(got) == _paging(ref) and got["connections"] == []
    ref_closed, got_closed = both(pair, "/connz?state=closed")
    views = []
    for ep, doc in ((pair["nats"], ref_closed), (pair["jsedge"], got_closed)):
        cid = doc["connections"][0]["cid"]
        one = ep.json(f"/connz?state=closed&cid={cid}")
        views.append((_names(one), _paging(one)))
    assert views[1] == views[0] == (["gone"], (1, 1, 0, 1))


def test_connz_values(pair):
    ref, got = both(pair, "/connz?subs=detail&auth=1")
    for doc in (ref, got):
        for conn in doc["connections"]:
            for key in ("cid", "port", "start", "last_activity", "rtt", "uptime", "idle"):
                conn.pop(key)
            for detail in conn.get("subscriptions_list_detail", []):
                detail.pop("cid")
            # nats-server lists a client's subscriptions in Go map order: compare them as sets.
            if "subscriptions_list_detail" in conn:
                conn["subscriptions_list_detail"].sort(key=lambda d: d["sid"])
            if "subscriptions_list" in conn:
                conn["subscriptions_list"].sort()
    for mine, theirs in zip(got["connections"], ref["connections"]):
        assert mine == theirs, [(k, mine.get(k), theirs.get(k)) for k in theirs if mine.get(k) != theirs.get(k)]
    assert len(got["connections"]) == len(ref["connections"])
    closed = pair["jsedge"].json("/connz?state=closed&subs=1&auth=1")["connections"][0]
    assert closed["reason"] == "Client Closed"
    assert closed["subscriptions_list"] == ["x.y"]
    assert closed["name"] == "gone" and "name_tag" not in closed
    assert closed["stop"] >= closed["start"]
    rtt = pair["jsedge"].json("/connz")["connections"][0]["rtt"]
    assert re.fullmatch(r"[0-9.]+(ns|\u00b5s|ms|s)", rtt), rtt


def test_closed_connection_has_rtt(pair):
    ref, got = both(pair, "/connz?state=closed")
    assert "rtt" in ref["connections"][0]
    assert "rtt" in got["connections"][0]


def test_http_req_stats_counts_paths(pair):
    ep = pair["jsedge"]
    before = ep.json("/varz")["http_req_stats"]
    ep.raw("/healthz")
    ep.raw("/healthz")
    ep.raw("/nope")
    after = ep.json("/varz")["http_req_stats"]
    assert after["/healthz"] == before.get("/healthz", 0) + 2
    assert after["/varz"] == before["/varz"] + 1
    assert "/nope" not in after


# --------------------------------------------------------------------------------------------------
# base path


def test_http_base_path():
    conf = 'http_base_path: "/mon/x"\n'
    paths = ("/", "/varz", "/mon/x", "/mon/x/", "/mon/x/varz", "/mon/x/connz", "/mon/x/nope")
    started = []
    try:
        for kind in KINDS:
            started.append(ServerProcess(kind, config=conf, http=True))
        results = []
        for srv in started:
            ep = Endpoint(srv)
            results.append([ep.raw(p)[0] for p in paths] + [ep.json("/mon/x/varz")["http_base_path"]])
        assert results[1] == results[0]
        assert results[1][:7] == [404, 404, 200, 404, 200, 200, 404]
    finally:
        for srv in started:
            srv.cleanup()
