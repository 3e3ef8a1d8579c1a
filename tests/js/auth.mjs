// nats.js driver for tests/compat/test_operator_mode_diff.py: a JWT user through nats.js.
//
//   node auth.mjs <server url> <good .creds> <bad .creds> <request subject>
//
// Connects with credsAuthenticator (user JWT + seed signing the nonce), does a publish/subscribe
// round trip and one request, then tries the bad credentials; prints ONE line of JSON. A watchdog
// exits 2 after 20 s so nothing hangs.
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "@nats-io/transport-node";

const [url, good, bad, subject] = process.argv.slice(2);
const te = new TextEncoder();
const td = new TextDecoder();
const out = {};
const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({ fatal: "watchdog" }) + "\n");
  process.exit(2);
}, 20000);

try {
  const nc = await connect({ servers: url, authenticator: credsAuthenticator(readFileSync(good)) });
  const sub = nc.subscribe("js.x", { max: 1 });
  nc.publish("js.x", te.encode("hi"));
  for await (const m of sub) out.roundtrip = td.decode(m.data);
  try {
    const reply = await nc.request(subject, te.encode("q"), { timeout: 2000 });
    out.request = td.decode(reply.data);
  } catch (err) {
    out.request = { error: String(err?.message ?? err) };
  }
  await nc.close();
} catch (err) {
  out.good = { error: String(err?.message ?? err) };
}
try {
  const nc = await connect({
    servers: url,
    authenticator: credsAuthenticator(readFileSync(bad)),
    reconnect: false,
  });
  out.bad = "connected";
  await nc.close();
} catch (err) {
  out.bad = { error: String(err?.message ?? err) };
}
clearTimeout(watchdog);
process.stdout.write(JSON.stringify(out) + "\n");
