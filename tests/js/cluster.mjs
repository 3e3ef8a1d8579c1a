// nats.js cluster driver for tests/cluster/test_nats_js_cluster.py.
//
//   node cluster.mjs <scenario> <url> [<url>...]
//
// Runs one scenario with the official nats.js client (@nats-io/transport-node) against a cluster
// and prints JSON lines on stdout:
//   {"ready": {...}}   the driver now waits for ONE line on stdin: the Python side does something to
//                      the cluster (start, kill, SIGUSR2 a node) and then answers (the line's text is
//                      scenario-specific, e.g. the host:port of a node it started);
//   {"result": {...}}  the observations the Python test asserts on; exit 0.
// Any unexpected failure prints {"fatal": ...} and exits 1; a watchdog exits 2 after WATCHDOG_MS so
// nothing hangs. Every wait inside is a poll with a deadline (`until`), never a bare sleep.
import { connect, headers } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";

const WATCHDOG_MS = Number(process.env.CLUSTER_WATCHDOG_MS || 40000);
const WAIT_MS = 15000;
const [scenario, ...urls] = process.argv.slice(2);
const te = new TextEncoder();
const td = new TextDecoder();

const watchdog = setTimeout(() => {
  emit({ fatal: `watchdog: scenario ${scenario} exceeded ${WATCHDOG_MS} ms` });
  process.exit(2);
}, WATCHDOG_MS);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// stdin, one line per `ready`
const stdinLines = [];
let stdinWaiter = null;
createInterface({ input: process.stdin }).on("line", (line) => {
  stdinLines.push(line.trim());
  if (stdinWaiter) stdinWaiter();
});

async function ready(payload) {
  emit({ ready: payload });
  await until(() => stdinLines.length > 0, WAIT_MS, "a line on stdin", () => new Promise((r) => (stdinWaiter = r)));
  stdinWaiter = null;
  return stdinLines.shift();
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

// poll `fn` (sync or async) until it returns something truthy; `wake` optionally resolves early
async function until(fn, ms, what, wake = null) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = `error: ${err?.message ?? err}`;
    }
    if (Date.now() >= deadline) throw new Error(`timeout (${ms} ms) waiting for ${what}; last: ${JSON.stringify(last)}`);
    await (wake ? Promise.race([wake(), pause(20)]) : pause(20));
  }
}

// every status event of a connection, in order, as plain data
function record(nc) {
  const events = [];
  (async () => {
    for await (const s of nc.status()) {
      const e = { type: s.type };
      if (s.server !== undefined) e.server = s.server;
      if (s.added !== undefined) e.added = [...s.added].sort();
      if (s.deleted !== undefined) e.deleted = [...s.deleted].sort();
      events.push(e);
    }
  })().catch(() => {});
  return events;
}

const pool = (nc) => nc.getServers().map((s) => ({ listen: s.listen, gossiped: s.gossiped })).sort((a, b) => a.listen.localeCompare(b.listen));
const connected = (nc) => nc.getServer();
const interesting = (events, types) => events.filter((e) => types.includes(e.type));

async function request(nc, subject, data, opts = {}) {
  try {
    const m = await nc.request(subject, te.encode(data), { timeout: 500, ...opts });
    return { data: td.decode(m.data), hop: m.headers?.get("X-Hop") ?? null };
  } catch (err) {
    return { error: err.name, message: err.message, cause: err.cause?.name ?? null };
  }
}

// a subscription whose messages are kept (subject, data, header) for the result
function keep(nc, subject, opts = {}) {
  const got = [];
  const sub = nc.subscribe(subject, {
    ...opts,
    callback: (err, m) => {
      if (!err) got.push({ subject: m.subject, data: td.decode(m.data), trace: m.headers?.get("X-Trace") ?? null });
    },
  });
  return { sub, got };
}

function serve(nc, subject, tag) {
  return nc.subscribe(subject, {
    callback: (err, m) => {
      if (err) return;
      const h = headers();
      h.set("X-Hop", tag);
      m.respond(te.encode(td.decode(m.data).toUpperCase()), { headers: h });
    },
  });
}

// publish a probe until `box` (a kept subscription, maybe on another node) has seen one
async function reaches(pub, subject, box, what) {
  await until(
    async () => {
      pub.publish(subject, te.encode("probe"));
      await pub.flush();
      await pause(30);
      return box.got.length > 0;
    },
    WAIT_MS,
    what,
  );
  box.got.length = 0;
}

const answered = (nc, subject, data, what) => until(async () => {
  const r = await request(nc, subject, data);
  return r.error ? null : r;
}, WAIT_MS, what);

// ------------------------------------------------------------------------------------------------

// Nodes 0 and 1 run; the client is given node 0 only. The Python side then starts node 2 (answers
// its host:port), then kills it (answers its host:port again).
async function discoveryScenario() {
  const r = {};
  const nc = await connect({ servers: urls[0], timeout: 5000 });
  const events = record(nc);
  await until(() => nc.getServers().length === 2, WAIT_MS, "node 1 in the server pool");
  r.pool = pool(nc);
  r.current = connected(nc);
  r.info = { cluster: nc.info.cluster, connect_urls: [...nc.info.connect_urls].sort() };

  const joined = await ready({ stage: "start node 2" });
  const joinUpdate = await until(
    () => events.find((e) => e.type === "update" && e.added?.includes(joined)),
    WAIT_MS,
    `an update status adding ${joined}`,
  );
  r.join_update = joinUpdate;
  r.pool_after_join = pool(nc);
  await until(() => nc.info.connect_urls?.length === 3, WAIT_MS, "three connect_urls in nc.info");
  r.info_after_join = [...nc.info.connect_urls].sort();

  const left = await ready({ stage: "kill node 2" });
  r.leave_update = await until(
    () => events.find((e) => e.type === "update" && e.deleted?.includes(left)),
    WAIT_MS,
    `an update status deleting ${left}`,
  );
  r.pool_after_leave = pool(nc);
  r.info_after_leave = [...nc.info.connect_urls].sort();
  r.current_after = connected(nc);
  r.disconnects = interesting(events, ["disconnect", "reconnect", "ldm", "error"]);
  await nc.close();
  return r;
}

// One client per node: fan-out, headers, queue groups and request/reply across routes.
async function trafficScenario() {
  const r = {};
  const [a, b, c] = await Promise.all(urls.map((u) => connect({ servers: u, timeout: 5000, noRandomize: true })));
  r.connected = [a, b, c].map(connected);
  const onB = keep(b, "orders.>");
  const onC = keep(c, "orders.*");
  serve(c, "svc.upper", "c");
  serve(a, "svc.lower", "a");
  const members = [keep(b, "work", { queue: "workers" }), keep(c, "work", { queue: "workers" })];
  await Promise.all([a.flush(), b.flush(), c.flush()]);

  await reaches(a, "orders.probe", onB, "orders.> on node 1");
  await reaches(a, "orders.probe", onC, "orders.* on node 2");
  onB.got.length = onC.got.length = 0;
  const h = headers();
  h.set("X-Trace", "42");
  a.publish("orders.new", te.encode("from node 0"), { headers: h });
  a.publish("orders.deep.x", te.encode("only the > subscriber"));
  await a.flush();
  await until(() => onB.got.length === 2 && onC.got.length === 1, WAIT_MS, "the fan-out");
  r.fanout = { b: onB.got, c: onC.got };

  r.request_a_to_c = await answered(a, "svc.upper", "hello", "svc.upper on node 2");
  r.request_c_to_a = await answered(c, "svc.lower", "world", "svc.lower on node 0");
  r.request_b_to_c = await request(b, "svc.upper", "also");
  r.no_responders = await request(a, "svc.nobody", "?", { timeout: 2000 });

  // queue group: every member known, then each message delivered exactly once over the cluster
  await until(
    async () => {
      a.publish("work", te.encode("warm-up"));
      await a.flush();
      await pause(20);
      return members.every((m) => m.got.length > 0);
    },
    WAIT_MS,
    "both queue members",
  );
  for (const m of members) m.got.length = 0;
  for (let i = 0; i < 200; i++) a.publish("work", te.encode(String(i)));
  await a.flush();
  const numbered = () => members.flatMap((m) => m.got).filter((x) => x.data !== "warm-up").length;
  await until(() => numbered() >= 200, WAIT_MS, "200 queue deliveries");
  await Promise.all([b.flush(), c.flush()]);
  // a late warm-up message may still come in: only the numbered ones count
  const seen = members.flatMap((m) => m.got.map((x) => x.data)).filter((d) => d !== "warm-up");
  r.queue = { total: seen.length, distinct: new Set(seen).size, per_member: members.map((m) => m.got.some((x) => x.data !== "warm-up")) };

  await Promise.all([a.close(), b.close(), c.close()]);
  return r;
}

// `roaming` is given node 0 only, `one`/`two` are pinned to nodes 1 and 2. Returns the handles.
async function roamingSetup() {
  const roaming = await connect({ servers: urls[0], timeout: 5000, reconnectTimeWait: 200, maxReconnectAttempts: -1 });
  const events = record(roaming);
  const one = await connect({ servers: urls[1], timeout: 5000, reconnect: false });
  const oneEvents = record(one);
  const two = await connect({ servers: urls[2], timeout: 5000, reconnect: false });
  const toRoaming = keep(roaming, "to.roaming");
  serve(roaming, "svc.roaming", "roaming");
  const toOne = keep(one, "to.one");
  serve(two, "svc.two", "two");
  await Promise.all([roaming.flush(), one.flush(), two.flush()]);
  await until(() => roaming.getServers().length === 3, WAIT_MS, "three servers in the roaming pool");
  return { roaming, events, one, oneEvents, two, toRoaming, toOne };
}

// messages and requests both ways between the roaming client (wherever it is) and the pinned ones;
// after a reconnect this proves the roaming client's subscriptions were replayed
async function roamingTraffic(t) {
  await reaches(t.roaming, "to.one", t.toOne, "roaming -> to.one");
  await reaches(t.two, "to.roaming", t.toRoaming, "two -> to.roaming");
  const out = {
    to_two: await answered(t.roaming, "svc.two", "from roaming", "svc.two"),
    to_roaming: await answered(t.one, "svc.roaming", "to roaming", "svc.roaming"),
  };
  const h = headers();
  h.set("X-Trace", "7");
  t.two.publish("to.roaming", te.encode("last"), { headers: h });
  await t.two.flush();
  await until(() => t.toRoaming.got.length === 1, WAIT_MS, "the last message");
  out.last = t.toRoaming.got.splice(0);
  return out;
}

async function roamingClose(t) {
  await Promise.all([t.roaming.close(), t.one.close(), t.two.close()]);
}

// after `killed`: disconnect, reconnect to a discovered member, traffic, node 0 pruned from nc.info
async function reconnectScenario() {
  const r = {};
  const t = await roamingSetup();
  r.pool = pool(t.roaming);
  r.before = await roamingTraffic(t);
  r.current_before = connected(t.roaming);
  await ready({ stage: "kill node 0", server: r.current_before });
  await until(() => t.events.some((e) => e.type === "reconnect"), WAIT_MS, "a reconnect status");
  r.events = interesting(t.events, ["disconnect", "reconnect", "ldm"]);
  r.current_after = connected(t.roaming);
  r.after = await roamingTraffic(t);
  await until(() => t.roaming.info.connect_urls?.length === 2, WAIT_MS, "node 0 gone from nc.info.connect_urls");
  r.info_after = [...t.roaming.info.connect_urls].sort();
  r.pool_after = pool(t.roaming);
  await roamingClose(t);
  return r;
}

// after `ldm` (SIGUSR2 sent to node 0): the ldm status, peers' clients drop node 0, the lame duck
// closes the client after its grace period and the client reconnects to a discovered member
async function ldmScenario() {
  const r = {};
  const t = await roamingSetup();
  r.before = await roamingTraffic(t);
  r.current_before = connected(t.roaming);
  await ready({ stage: "lame duck node 0", server: r.current_before });
  r.ldm = await until(() => t.events.find((e) => e.type === "ldm"), WAIT_MS, "an ldm status");
  r.peer_update = await until(
    () => t.oneEvents.find((e) => e.type === "update" && e.deleted?.includes(r.current_before)),
    WAIT_MS,
    "node 1's client told node 0 is leaving",
  );
  await until(() => t.events.some((e) => e.type === "reconnect"), WAIT_MS, "a reconnect status");
  r.events = interesting(t.events, ["disconnect", "reconnect", "ldm"]);
  r.current_after = connected(t.roaming);
  r.after = await roamingTraffic(t);
  r.peer_events = interesting(t.oneEvents, ["disconnect", "reconnect", "ldm"]);
  await roamingClose(t);
  return r;
}

// the lame duck's own INFO as the client keeps it (nc.info) when the ldm status fires: nats-server
// sends the other members only, so the client is not pointed back at the node that is leaving
async function ldmInfoScenario() {
  const nc = await connect({ servers: urls[0], timeout: 5000, reconnectTimeWait: 200, maxReconnectAttempts: -1 });
  const seen = [];
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "ldm") seen.push({ server: s.server, ldm: nc.info.ldm ?? null, connect_urls: [...(nc.info.connect_urls ?? [])].sort() });
    }
  })().catch(() => {});
  await until(() => nc.getServers().length === 3, WAIT_MS, "three servers in the pool");
  const r = { before: [...nc.info.connect_urls].sort() };
  await ready({ stage: "lame duck node 0", server: connected(nc) });
  r.at_ldm = await until(() => seen[0], WAIT_MS, "an ldm status");
  await nc.close();
  return r;
}

// a KV bucket and an object store with replicas: 3, through the stream leader's death: operations
// are retried (as an application would) until the cluster answers again, and nothing acknowledged
// before the kill is missing after it
async function retry(fn, what) {
  return await until(async () => ({ v: await fn() }), WAIT_MS, what).then((x) => x.v);
}

const hexsha = (b) => createHash("sha256").update(b).digest("hex");

async function kvr3Scenario() {
  const r = {};
  const nc = await connect({ servers: urls, timeout: 5000, reconnectTimeWait: 200, maxReconnectAttempts: -1 });
  const kvm = new Kvm(nc, { timeout: 2000 });
  const objm = new Objm(nc, { timeout: 2000 });
  // the meta group may still be electing its first leader: JetStream answers once it has one
  const jsm = await retry(() => jetstreamManager(nc, { timeout: 2000 }), "JetStream");
  const kv = await retry(() => kvm.create("r3", { history: 5, replicas: 3 }), "an R3 bucket");
  const st = await kv.status();
  r.replicas = st.replicas;
  r.put = [await kv.put("a", "1"), await kv.put("a", "2"), await kv.put("b", "x")];
  r.update = await kv.update("a", "3", 2);
  r.update_stale = await kv.update("a", "4", 2).then(() => "ok", (err) => String(err?.message));
  const os = await retry(() => objm.create("files", { replicas: 3 }), "an R3 object store");
  const big = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);
  const info = await os.putBlob({ name: "big" }, big);
  r.obj = { size: info.size, chunks: info.chunks };
  const watched = [];
  const w = await kv.watch({ key: "a" });
  (async () => {
    for await (const e of w) watched.push([e.key, e.operation, e.value ? new TextDecoder().decode(e.value) : ""]);
  })().catch(() => {});
  await until(() => watched.length >= 1, WAIT_MS, "the watcher's initial value");
  const leader = (await jsm.streams.info("KV_r3")).cluster.leader;
  await ready({ stage: "kill the KV stream leader", leader });
  // after the kill: writes and reads go on through the new leader
  r.put_after = await retry(() => kv.put("a", "5"), "a put after the kill");
  r.get_after = new TextDecoder().decode((await retry(() => kv.get("a"), "a get")).value);
  r.cas_after = await retry(() => kv.update("a", "6", r.put_after), "an update after the kill");
  r.history = (await retry(async () => {
    const out = [];
    for await (const e of await kv.history({ key: "a" })) out.push(new TextDecoder().decode(e.value));
    return out;
  }, "the history")).slice(-3);
  r.obj_get = hexsha(await retry(() => os.getBlob("big"), "the object")) === hexsha(big);
  // a watcher whose (R1) consumer was on the killed server notices only after two missed idle
  // heartbeats (nats.js asks for one every 30 s), then re-creates its consumer from where it was:
  // with nats-server as with jsedge, wherever the server placed that consumer
  await until(() => watched.some((e) => e[2] === "6"), 6 * WAIT_MS, "the watcher to see the update made after the kill");
  r.watched = watched.map((e) => e[2]);
  const leaderAfter = await retry(async () => (await jsm.streams.info("KV_r3")).cluster.leader, "a new leader");
  r.leader_changed = leaderAfter !== leader;
  await nc.close();
  return r;
}

// ------------------------------------------------------------------------------------------------

const scenarios = { discovery: discoveryScenario, traffic: trafficScenario, reconnect: reconnectScenario, ldm: ldmScenario, ldminfo: ldmInfoScenario, kvr3: kvr3Scenario };

try {
  if (!scenarios[scenario]) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`);
  const result = await scenarios[scenario]();
  emit({ result });
  clearTimeout(watchdog);
  process.exit(0);
} catch (err) {
  emit({ fatal: String(err?.stack ?? err) });
  process.exit(1);
}
