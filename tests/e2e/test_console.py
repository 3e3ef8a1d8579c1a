"""The web console on the monitoring port (jsedge.console) against a running jsedge with real
streams, consumers, a KV bucket and a client: the expected figures appear, links lead where they
say, paging works, client data (subjects, headers, payloads) is shown as text, never as markup;
and in headless Chromium (Debian's, driven by playwright-core from tests/js: CI installs both),
every page renders its figures without console errors while its scripts poll, its links answer,
a screenshot of each is kept in the test's directory, a message typed into the publish form
reaches a nats-py subscriber, and a three-node cluster shows its meta group and replicas."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.helpers import (
    BROWSER_REQUIRED,
    CHROMIUM,
    REPO_ROOT,
    Cluster,
    ServerProcess,
    acheck_for,
    check_for,
    free_port,
    needs_browser,
    pure_pass_in_ci,
)

pytestmark = [pytest.mark.timeout(120), pure_pass_in_ci("the console uses no compiled twin")]


def _get(server: ServerProcess, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{path}", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        return str(resp.read().decode())


PAGES_SCRIPT = REPO_ROOT / "tests" / "js" / "console_pages.mjs"
PLAYWRIGHT = REPO_ROOT / "tests" / "js" / "node_modules" / "playwright-core"


def _browse(
    base: str,
    pages: list[tuple[str, str, list[str]]],
    shots: Path,
    auth: tuple[str, str] | None = None,
    publish: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Headless Chromium over `pages` ((name, path, expected texts)) through tests/js/console_pages.mjs
    (playwright-core driving Debian's chromium): per page the texts it could not find, its console
    errors and uncaught exceptions, the status of every console link on it, and a full-page
    screenshot in `shots`; with `publish`, the page's publish form filled in and submitted."""
    assert CHROMIUM is not None, "JSEDGE_REQUIRE_BROWSER=1 and no chromium installed"
    if not PLAYWRIGHT.exists():
        if BROWSER_REQUIRED:
            raise AssertionError("playwright-core is not installed: npm ci --prefix tests/js")
        pytest.skip("playwright-core not installed (npm ci --prefix tests/js)")
    shots.mkdir(parents=True, exist_ok=True)
    spec = {
        "chromium": CHROMIUM,
        "base": base,
        "user": auth[0] if auth else None,
        "password": auth[1] if auth else None,
        "shots": str(shots),
        "pages": [{"name": name, "path": path, "expect": expect} for name, path, expect in pages],
        "publish": publish,
    }
    spec_file = shots / "spec.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run(
        ["node", str(PAGES_SCRIPT), str(spec_file)], capture_output=True, text=True, timeout=180, cwd=shots
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    for page in result["pages"]:
        assert page["status"] == 200 and not page["missing"] and not page["errors"], page
        assert page["links"] and all(status == 200 for status in page["links"].values()), page
        assert Path(page["shot"]).stat().st_size > 10_000, page
    return result


async def _populate(url: str) -> nats.NATS:
    nc = await nats.connect(url, name="console-test <client>")
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    for i in range(25):
        await js.publish(f"orders.n{i}", f"order {i}".encode(), headers={"X-Test": "<b>bold</b>"})
    await js.publish("orders.<i>", b"<script>alert(1)</script>")
    await js.publish("orders.bin", bytes(range(256)))
    await js.add_consumer("ORDERS", durable_name="worker")
    kv = await js.create_key_value(bucket="settings")
    await kv.put("mode", b"eco")
    return nc


def test_console_pages(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path / "js"), "-n", "pi1"], http=True) as server:
        nc = loop.run_until_complete(_populate(f"nats://127.0.0.1:{server.port}"))
        try:
            index = _get(server, "/")
            assert "href=./console" in index
            overview = _get(server, "/console")
            assert "<b>pi1</b>" in overview and ">2.15.1<" in overview
            assert re.search(r"streams</div><div class=\"v\">2<", overview)  # ORDERS and the KV bucket
            assert "store disk used" in overview and 'id="chart"' in overview

            streams = _get(server, "/console/streams")
            assert 'href="/console/stream?acc=%24G&amp;name=ORDERS">ORDERS</a>' in streams
            assert "KV_settings" in streams and "KV bucket" in streams
            assert ">27<" in streams  # messages of ORDERS

            first = _get(server, "/console/stream?acc=%24G&name=ORDERS")
            assert first.count("<tr>") == 2 + 1 + 20  # two header rows, the worker, 20 messages
            assert ">worker<" in first and "orders.n0" in first and "orders.n19" in first
            assert "X-Test: &lt;b&gt;bold&lt;/b&gt;" in first and "<b>bold</b>" not in first
            later = re.search(r'href="(/console/stream\?[^"]*seq=21)"', first)
            assert later is not None
            second = _get(server, later.group(1).replace("&amp;", "&"))
            assert "orders.n20" in second and "orders.n0<" not in second
            assert "orders.&lt;i&gt;" in second and "&lt;script&gt;alert(1)&lt;/script&gt;" in second
            assert "<script>alert(1)</script>" not in second
            assert "hex: 00 01 02 03" in second  # a binary payload
            assert "&quot;max_msgs&quot;: -1" in second  # the configuration

            connections = _get(server, "/console/connections")
            assert "console-test &lt;client&gt;" in connections and "<client>" not in connections
            assert 'id="filter"' in connections and "_INBOX." in connections  # searchable, with subscriptions

            missing = _get(server, "/console/stream?acc=%24G&name=NOPE")
            assert "No stream" in missing

            assert streams.count('<svg class="spark" data-key="$G/') == 2  # a growth line per stream
            accounts = _get(server, "/console/accounts")
            row = re.search(r"<tr><td>\$G</td>(.*?)</tr>", accounts)
            assert row is not None, accounts
            cells = re.findall(r"<td class=n>([^<]*)</td>", row.group(1))
            assert cells[0] == "1" and cells[4:7] == ["2", "1", "28"]  # 1 client; 2 streams, 1 consumer, 28 msgs
            alone = _get(server, "/console/cluster")
            assert "not in a cluster" in alone
            leafs = _get(server, "/console/leafs")
            assert "No leaf node links" in leafs

        finally:
            loop.run_until_complete(nc.close())
            loop.close()


@needs_browser()
def test_console_in_a_browser(tmp_path: Path) -> None:
    """Every page in headless Chromium, behind the monitoring port's auth with actions on: the
    figures appear once the page has rendered (client data as text), no console errors or uncaught
    exceptions while its scripts poll, every console link on it answers, a screenshot of each is
    kept in the test's directory; then a message published from the overview's form (typed in
    and submitted as a user would) reaches a nats-py subscriber."""
    port = free_port()
    config = (
        "server_name: pi1\n"
        f'http: {{ listen: "127.0.0.1:{port}", auth: {{ user: admin, password: "s3cret" }}, '
        "console: { actions: true } }\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    loop = asyncio.new_event_loop()
    with ServerProcess("jsedge", config=config) as server:
        nc = loop.run_until_complete(_populate(f"nats://127.0.0.1:{server.port}"))
        try:
            received: list[tuple[str, bytes]] = []

            async def watch(msg: Any) -> None:
                received.append((msg.subject, msg.data))

            async def more() -> None:
                js = nc.jetstream()
                store = await js.create_object_store(bucket="files")
                await store.put("report.pdf", b"%PDF" + bytes(300_000))
                await nc.subscribe("hello.>", cb=watch)
                await nc.flush()

            loop.run_until_complete(more())
            pages = [
                ("overview", "/console", ["pi1", "2.15.1", "store disk used", "Publish a test message"]),
                ("streams", "/console/streams", ["ORDERS", "KV_settings", "OBJ_files", "27"]),
                ("stream", "/console/stream?acc=%24G&name=ORDERS", ["worker", "orders.n0", "X-Test: <b>bold</b>"]),
                ("stream-page-2", "/console/stream?acc=%24G&name=ORDERS&seq=21", ["<script>alert(1)</script>"]),
                ("kv", "/console/kv?acc=%24G&bucket=settings", ["mode", "eco"]),
                ("objects", "/console/objects?acc=%24G&bucket=files", ["report.pdf", "293.0 KiB"]),
                ("connections", "/console/connections", ["console-test <client>"]),
                ("accounts", "/console/accounts", ["$G"]),
                ("cluster", "/console/cluster", ["not in a cluster"]),
                ("leafs", "/console/leafs", ["No leaf node links"]),
            ]
            publish = {"path": "/console", "subject": "hello.pi", "payload": "typed in a browser"}
            result = _browse(f"http://127.0.0.1:{port}", pages, tmp_path / "shots", ("admin", "s3cret"), publish)
            assert result["published"] is not None and "published" in result["published"]["status"]
            loop.run_until_complete(acheck_for(10, lambda: ("hello.pi", b"typed in a browser") in received))
        finally:
            loop.run_until_complete(nc.close())
            loop.close()


def test_console_shows_the_cluster(tmp_path: Path) -> None:
    with Cluster(["jsedge"] * 3, extra_args=["-js", "-sd", "js"]) as cluster:

        def led() -> bool:
            page = _get(cluster[0], "/console")
            return "meta leader" in page and re.search(r"meta leader</div><div class=\"v\">n\d", page) is not None

        check_for(30, led)
        page = _get(cluster[0], "/console")
        assert "Cluster c1" in page and re.search(r"routes</div><div class=\"v\">2<", page)

        async def replicated() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{cluster[0].port}")
            try:
                js = nc.jetstream(timeout=5)
                for _attempt in range(50):
                    try:
                        await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
                        break
                    except Exception:
                        await asyncio.sleep(0.2)
                for i in range(5):
                    await js.publish("r3.x", b"m%d" % i)
            finally:
                await nc.close()

        asyncio.run(replicated())

        def whole() -> str | None:
            # the stream leader's node sees both followers current
            for server in cluster.servers:
                view = _get(server, "/console/cluster")
                if view.count("(current)") == 2 and ">R3</a>" in view:
                    return view
            return None

        view = check_for(30, whole)
        assert re.search(r"<td>S-R3F-[^<]+</td><td>n\d</td>", view)  # the group and its leader
        assert "JetStream meta group" in view and " s ago<" in view
        first = _get(cluster[0], "/console/cluster")
        assert ">n2<" in first and ">n3<" in first  # n1's routes
        if CHROMIUM is not None or BROWSER_REQUIRED:  # the same pages in headless Chromium
            leader_node = next(s for s in cluster.servers if _get(s, "/console/cluster").count("(current)") == 2)
            pages = [
                ("cluster-overview", "/console", ["Cluster c1", "meta leader"]),
                ("cluster", "/console/cluster", ["JetStream meta group", "R3", "(current)"]),
                ("cluster-streams", "/console/streams", ["R3"]),
            ]
            _browse(f"http://127.0.0.1:{leader_node.http_port}", pages, tmp_path / "shots")


def test_console_shows_leaf_links() -> None:
    hub = ServerProcess("jsedge", config="server_name: hub\nleafnodes { port: -1 }\n", http=True)
    with hub:
        listening = hub.wait_for_log(re.compile(r"Listening for leafnode connections on \S+:(\d+)"), timeout=10)
        port = int(listening.group(1))
        leaf_conf = (
            f'server_name: edge\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "nats://127.0.0.1:{port}" }} ] }}\n'
        )
        with ServerProcess("jsedge", config=leaf_conf, http=True) as leaf:
            check_for(20, lambda: ">edge<" in _get(hub, "/console/leafs"))
            check_for(20, lambda: ">hub<" in _get(leaf, "/console/leafs"))
            assert "hub side (a leaf dialled us)" in _get(hub, "/console/leafs")
            assert "leaf (we dialled the hub)" in _get(leaf, "/console/leafs")


def _status(port: int, path: str, header: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if header is not None:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("WWW-Authenticate", "")


def test_monitoring_port_authentication(tmp_path: Path) -> None:
    """`http: { listen, auth: { user, password } }` (or `{ token }`): every endpoint, the console
    and /metrics need the credentials; /healthz stays open for health checks."""
    import base64

    from tests.helpers import free_port

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    port = free_port()
    config = f'http: {{ listen: "127.0.0.1:{port}", auth: {{ user: admin, password: "s3cret" }} }}\n'
    with ServerProcess("jsedge", config=config):
        check_for(10, lambda: _status(port, "/healthz")[0] == 200)
        assert _status(port, "/console") == (401, 'Basic realm="jsedge monitoring"')
        assert _status(port, "/varz")[0] == 401
        assert _status(port, "/varz", basic("admin", "wrong"))[0] == 401
        for path in ("/console", "/varz", "/metrics", "/connz", "/"):
            assert _status(port, path, basic("admin", "s3cret"))[0] == 200, path
    port = free_port()
    config = f'http: {{ listen: "127.0.0.1:{port}", auth: {{ token: "t0ken" }} }}\n'
    with ServerProcess("jsedge", config=config):
        check_for(10, lambda: _status(port, "/healthz")[0] == 200)
        assert _status(port, "/jsz", "Bearer t0ken")[0] == 200
        assert _status(port, "/jsz", basic("", "t0ken"))[0] == 200  # curl -u :t0ken
        assert _status(port, "/jsz", "Bearer nope")[0] == 401


def test_console_actions(tmp_path: Path) -> None:
    """With `http: { auth, console: { actions: true } }`: publishing from the page reaches a
    nats-py subscriber, purge and delete change the stream, each action is logged, and a post
    without the page's form token (a cross-site form) or without auth is refused."""
    import base64
    import urllib.parse

    from tests.helpers import free_port

    port = free_port()
    auth = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    config = (
        f'http: {{ listen: "127.0.0.1:{port}", auth: {{ user: admin, password: "s3cret" }}, '
        "console: { actions: true } }\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )

    def request(path: str, form: dict[str, str] | None = None, header: str | None = auth) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
        if header:
            req.add_header("Authorization", header)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), resp.headers.get("Location", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace"), error.headers.get("Location", "")

    loop = asyncio.new_event_loop()
    with ServerProcess("jsedge", config=config) as server:
        nc = loop.run_until_complete(nats.connect(f"nats://127.0.0.1:{server.port}"))
        try:
            js = nc.jetstream()
            loop.run_until_complete(js.add_stream(name="CMDS", subjects=["cmds.>"]))
            for i in range(3):
                loop.run_until_complete(js.publish("cmds.x", f"c{i}".encode()))
            received: list[tuple[str, bytes]] = []

            async def watch(msg: nats.aio.msg.Msg) -> None:
                received.append((msg.subject, msg.data))

            loop.run_until_complete(nc.subscribe("hello.>", cb=watch))
            loop.run_until_complete(nc.flush())
            status, page, _ = request("/console/stream?acc=%24G&name=CMDS")
            assert status == 200 and "Purge stream" in page and ">delete</button>" in page
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
            assert token is not None
            csrf = token.group(1)
            base = {"csrf": csrf, "acc": "$G", "back": "/console/stream?acc=%24G&name=CMDS"}

            status, _, location = request(
                "/console/action", {**base, "action": "publish", "subject": "hello.pi", "payload": "from the console"}
            )
            assert status == 303 and "done=published" in location
            loop.run_until_complete(asyncio.sleep(0.2))
            assert received == [("hello.pi", b"from the console")]

            status, _, location = request("/console/action", {**base, "action": "delete", "stream": "CMDS", "seq": "2"})
            assert status == 303 and "done=delete+done" in location
            info = loop.run_until_complete(js.stream_info("CMDS"))
            assert info.state.messages == 2

            # refused: no form token, a wrong one, no auth
            assert request("/console/action", {**base, "csrf": "", "action": "purge", "stream": "CMDS"})[0] == 403
            assert request("/console/action", {**base, "csrf": "bad", "action": "purge", "stream": "CMDS"})[0] == 403
            assert request("/console/action", {**base, "action": "purge", "stream": "CMDS"}, header=None)[0] == 401
            assert loop.run_until_complete(js.stream_info("CMDS")).state.messages == 2

            status, _, location = request("/console/action", {**base, "action": "purge", "stream": "CMDS"})
            assert status == 303 and "done=purge+done" in location
            assert loop.run_until_complete(js.stream_info("CMDS")).state.messages == 0
            status, page, _ = request(location)
            assert "purge done" in page
            server.wait_for_log("Console action by admin: purge 'CMDS' in account '\\$G'")
            server.wait_for_log("Console action by admin: published to 'hello.pi'")
        finally:
            loop.run_until_complete(nc.close())
            loop.close()


def test_console_actions_are_off_by_default(tmp_path: Path) -> None:
    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path / "js")], http=True) as server:
        assert "Purge" not in _get(server, "/console")
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.http_port}/console/action", data=b"action=publish&subject=x&csrf=y"
        )
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("accepted")
        except urllib.error.HTTPError as error:
            assert error.code == 403


def test_console_kv_and_object_store_pages(tmp_path: Path) -> None:
    """A KV bucket's keys with their revision, operation and history; an object store's objects
    with their size and chunks; both linked from the streams page."""

    async def populate(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="home", history=5)
        await kv.put("light.kitchen", b"on")
        await kv.put("light.kitchen", b"off")
        await kv.put("heating", b"<21>")
        await kv.put("gone", b"x")
        await kv.delete("gone")
        obj = await js.create_object_store(bucket="files")
        await obj.put("report.pdf", b"%PDF" + bytes(300_000))
        await nc.close()

    with ServerProcess("jsedge", ["-js", "-sd", str(tmp_path / "js")], http=True) as server:
        asyncio.run(populate(f"nats://127.0.0.1:{server.port}"))
        streams = _get(server, "/console/streams")
        assert 'href="/console/kv?acc=%24G&amp;bucket=home">kv</a>' in streams
        assert 'href="/console/objects?acc=%24G&amp;bucket=files">objects</a>' in streams
        kv = _get(server, "/console/kv?acc=%24G&bucket=home")
        rows = re.findall(r"<tr><td>([^<]*)</td><td class=n>(\d+)</td><td>(\w+)</td><td class=n>(\d+)</td>", kv)
        assert rows == [("gone", "5", "DEL", "2"), ("heating", "3", "PUT", "1"), ("light.kitchen", "2", "PUT", "2")]
        assert "&lt;21&gt;" in kv and "<21>" not in kv
        objects = _get(server, "/console/objects?acc=%24G&bucket=files")
        assert "report.pdf" in objects and "293.0 KiB" in objects
        assert re.search(r"<td class=n>3</td>", objects)  # 300 004 bytes in 128 KiB chunks
