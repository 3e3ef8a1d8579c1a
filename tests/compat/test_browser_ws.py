"""A real browser (headless Chromium) running nats.ws, the NATS browser client, in a page, against
jsedge's and nats-server's `websocket {}` ports over ws:// and wss://: the same results from both.

The page (served by a small HTTP server in the test) connects, subscribes, publishes with headers,
makes a request, and uses a JetStream KV bucket, then POSTs its results back to the test. Skipped
where no `chromium` binary or no nats.ws bundle (`npm ci --prefix tests/js`) is installed.
"""

from __future__ import annotations

import http.server
import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    REPO_ROOT,
    ServerProcess,
    free_port,
    make_tls_files,
    needs_browser,
    pure_pass_in_ci,
)

pytestmark = [pytest.mark.compat, pytest.mark.timeout(180)]

BUNDLE = REPO_ROOT / "tests" / "js" / "node_modules" / "nats.ws" / "esm" / "nats.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>nats.ws in a browser</title></head>
<body><pre id="out">running</pre>
<script type="module">
import { connect, headers, StringCodec } from "./nats.js";
const sc = StringCodec();
const out = {};
const url = new URLSearchParams(location.search).get("url");
try {
  const nc = await connect({ servers: url });
  out.connected = typeof nc.info.server_id === "string";
  out.headers_supported = nc.info.headers === true;
  const echo = nc.subscribe("browser.echo");
  (async () => { for await (const m of echo) m.respond(sc.encode("re:" + sc.decode(m.data))); })();
  const got = nc.subscribe("browser.x", { max: 1 });
  const h = headers();
  h.set("X-From", "browser <b>&amp;</b>");
  nc.publish("browser.x", sc.encode("hello from a page"), { headers: h });
  for await (const m of got) out.message = [m.subject, sc.decode(m.data), m.headers.get("X-From")];
  const reply = await nc.request("browser.echo", sc.encode("ping"), { timeout: 5000 });
  out.reply = sc.decode(reply.data);
  try { await nc.request("browser.nobody", sc.encode("x"), { timeout: 2000 }); out.no_responders = false; }
  catch (e) { out.no_responders = String(e.code); }
  const big = new Uint8Array(200000).fill(65);
  const bigSub = nc.subscribe("browser.big", { max: 1 });
  nc.publish("browser.big", big);
  for await (const m of bigSub) out.big = m.data.length;
  const js = nc.jetstream();
  const kv = await js.views.kv("browser_bucket", { history: 3 });
  await kv.put("light", sc.encode("on"));
  await kv.put("light", sc.encode("off"));
  const entry = await kv.get("light");
  out.kv = [sc.decode(entry.value), entry.revision];
  await nc.drain();
  out.closed = true;
} catch (e) {
  out.error = String(e);
}
document.getElementById("out").textContent = JSON.stringify(out);
await fetch("/result", { method: "POST", body: JSON.stringify(out) });
</script></body></html>
"""


@contextmanager
def _page_server(results: queue.Queue[dict[str, Any]]) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/page.html":
                body, kind = PAGE.encode(), "text/html"
            elif path == "/nats.js":
                body, kind = BUNDLE.read_bytes(), "text/javascript"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            results.put(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run_page(http_port: int, url: str, results: queue.Queue[dict[str, Any]], profile: Path) -> dict[str, Any]:
    assert CHROMIUM is not None, "JSEDGE_REQUIRE_BROWSER=1 and no chromium installed"
    argv = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        "--ignore-certificate-errors",  # the test's own CA signs the wss:// certificate
        f"--user-data-dir={profile}",
        f"http://127.0.0.1:{http_port}/page.html?url={url}",
    ]
    browser = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return results.get(timeout=60)
    finally:
        browser.kill()
        browser.wait(10)


@needs_browser()
@pure_pass_in_ci("a browser page's WebSocket client, no compiled twin in its path that other tests miss")
@pytest.mark.skipif(not BUNDLE.exists(), reason="nats.ws not installed (npm ci --prefix tests/js)")
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_browser_page_as_against_nats_server(scheme: str, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls") if scheme == "wss" else None
    answers = []
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    with _page_server(results) as http_port:
        for kind in ("nats", "jsedge"):
            port = free_port()
            if tls is None:
                block = f"websocket {{ port: {port}, no_tls: true }}\n"
            else:
                block = (
                    f'websocket {{ port: {port}, tls {{ cert_file: "{tls.server_cert}", '
                    f'key_file: "{tls.server_key}" }} }}\n'
                )
            config = block + f'jetstream {{ store_dir: "{tmp_path / kind}" }}\n'
            with ServerProcess(kind, config=config):
                host = "localhost" if tls is not None else "127.0.0.1"
                answers.append(_run_page(http_port, f"{scheme}://{host}:{port}", results, tmp_path / f"profile-{kind}"))
    nats, jsedge = answers
    assert jsedge == nats
    assert jsedge["message"] == ["browser.x", "hello from a page", "browser <b>&amp;</b>"]
    assert jsedge["kv"] == ["off", 2] and jsedge["big"] == 200000 and jsedge.get("closed") is True
    assert jsedge["reply"] == "re:ping" and jsedge["no_responders"] == "503", jsedge
