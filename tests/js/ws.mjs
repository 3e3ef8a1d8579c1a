// nats.js over WebSocket, for tests/compat/test_websocket_diff.py: `wsconnect` from
// @nats-io/nats-core (the browser client's transport), run by Node with --experimental-websocket.
//
//   node --experimental-websocket ws.mjs <ws url>
//
// Publish/subscribe, a request with a responder, headers, no responders, a big message, a
// JetStream KV bucket (put/get/history) and an object; prints ONE line of JSON. A watchdog exits 2
// after 20 s so nothing hangs.
import { wsconnect, headers } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";

const [url] = process.argv.slice(2);
const te = new TextEncoder();
const td = new TextDecoder();
const out = {};
const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({ fatal: "watchdog", partial: out }) + "\n");
  process.exit(2);
}, 20000);

try {
  const nc = await wsconnect({ servers: url });
  out.info_ok = typeof nc.info?.server_id === "string";
  const sub = nc.subscribe("ws.echo");
  (async () => {
    for await (const m of sub) m.respond(te.encode("re:" + td.decode(m.data)));
  })();
  const inbox = nc.subscribe("ws.x", { max: 1 });
  const h = headers();
  h.set("X-Test", "1");
  nc.publish("ws.x", te.encode("hi"), { headers: h });
  for await (const m of inbox) out.roundtrip = [td.decode(m.data), m.headers?.get("X-Test")];
  out.request = td.decode((await nc.request("ws.echo", te.encode("q"), { timeout: 2000 })).data);
  try {
    await nc.request("nobody.here", te.encode("?"), { timeout: 2000 });
    out.no_responders = "answered";
  } catch (err) {
    out.no_responders = String(err?.name ?? err);
  }
  const big = new Uint8Array(200 * 1024).fill(65);
  const bigSub = nc.subscribe("ws.big", { max: 1 });
  nc.publish("ws.big", big);
  for await (const m of bigSub) out.big = m.data.length;
  const kv = await new Kvm(nc).create("WSKV", { history: 3 });
  await kv.put("k", te.encode("v1"));
  await kv.put("k", te.encode("v2"));
  const entry = await kv.get("k");
  out.kv = [td.decode(entry.value), entry.revision];
  const os = await new Objm(nc).create("WSOBJ");
  const data = new Uint8Array(300 * 1024).fill(7);
  await os.putBlob({ name: "blob" }, data);
  out.obj = (await os.getBlob("blob")).length;
  await nc.close();
  out.closed = true;
} catch (err) {
  out.error = String(err?.message ?? err);
}
clearTimeout(watchdog);
process.stdout.write(JSON.stringify(out) + "\n");
