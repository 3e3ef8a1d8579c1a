// nats.js driver for tests/kv/test_nats_js.py.
//
//   node kv_obj.mjs <server url> <scenario>
//
// Runs one scenario against the server with the official nats.js clients (@nats-io/transport-node,
// @nats-io/jetstream, @nats-io/kv, @nats-io/obj) and prints ONE line of JSON on stdout: the
// observations the Python test asserts on. Errors thrown by expected-failure operations are recorded
// as {"error": <message>, "code": <api err_code or null>}. Any unexpected failure prints
// {"fatal": ...} and exits 1; a watchdog exits 2 after WATCHDOG_MS so nothing hangs.
import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { createHash } from "node:crypto";

const WATCHDOG_MS = Number(process.env.KV_OBJ_WATCHDOG_MS || 20000);
const [url, scenario] = process.argv.slice(2);
const te = new TextEncoder();
const td = new TextDecoder();

const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({ fatal: `watchdog: scenario ${scenario} exceeded ${WATCHDOG_MS} ms` }) + "\n");
  process.exit(2);
}, WATCHDOG_MS);

async function attempt(fn) {
  try {
    const v = await fn();
    return { ok: v === undefined ? null : v };
  } catch (err) {
    return { error: String(err?.message ?? err), code: err?.code ?? err?.api_error?.err_code ?? null };
  }
}

// next `n` values of an async iterator, each within `ms` (nats.js iterators can be iterated only
// once, so the underlying iterator is kept across calls)
const iterators = new WeakMap();
async function take(iter, n, ms = 3000) {
  if (!iterators.has(iter)) iterators.set(iter, iter[Symbol.asyncIterator]());
  const it = iterators.get(iter);
  const out = [];
  for (let i = 0; i < n; i++) {
    let timer;
    const r = await Promise.race([
      it.next(),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timeout waiting for item ${i + 1} of ${n}`)), ms);
      }),
    ]);
    clearTimeout(timer);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

async function collect(iter, ms = 5000) {
  const out = [];
  let timer;
  const all = (async () => {
    for await (const v of iter) out.push(v);
  })();
  await Promise.race([
    all,
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error("timeout collecting iterator")), ms);
    }),
  ]);
  clearTimeout(timer);
  return out;
}

const ent = (e) =>
  e === null ? null : { key: e.key, value: e.string(), revision: e.revision, operation: e.operation, delta: e.delta ?? null, length: e.length };
const wentry = (e) => ({ ...ent(e), isUpdate: e.isUpdate });

function blob(n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + Math.floor(i / 251)) % 256;
  return b;
}

const sha = (b) => "SHA-256=" + createHash("sha256").update(b).digest("base64url") + "=";
const hexsha = (b) => createHash("sha256").update(b).digest("hex");

async function readAll(stream) {
  const chunks = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

// ------------------------------------------------------------------------------------------------

async function kvScenario(nc) {
  const r = {};
  const kvm = new Kvm(nc);
  const kv = await kvm.create("cfg", { history: 5, ttl: 3600 * 1000, maxValueSize: 1024, replicas: 1 });
  const st = await kv.status();
  const c = st.streamInfo.config;
  r.status = {
    bucket: st.bucket, values: st.values, history: st.history, ttl: st.ttl, replicas: st.replicas,
    max_msg_size: c.max_msg_size, allow_direct: c.allow_direct, discard: c.discard, subjects: c.subjects,
    deny_delete: c.deny_delete, allow_rollup_hdrs: c.allow_rollup_hdrs, duplicate_window: c.duplicate_window,
    max_msgs_per_subject: c.max_msgs_per_subject,
  };
  r.put = [await kv.put("a", "1"), await kv.put("a", "2"), await kv.put("other.key", "o")];
  r.get_a = ent(await kv.get("a"));
  r.get_a_rev1 = ent(await kv.get("a", { revision: 1 }));
  r.get_a_rev3 = ent(await kv.get("a", { revision: 3 })); // revision 3 is another key's
  r.get_missing = ent(await kv.get("missing"));
  r.create_b = await kv.create("b", "x");
  r.create_b_again = await attempt(() => kv.create("b", "y"));
  r.update_b = await kv.update("b", "z", 4);
  r.update_b_stale = await attempt(() => kv.update("b", "zz", 4));
  r.put_prev_ok = await kv.put("b", "w", { previousSeq: 5 });
  r.put_too_big = await attempt(() => kv.put("big", "x".repeat(2000)));
  await kv.delete("a");
  r.get_deleted = ent(await kv.get("a"));
  r.create_after_delete = await kv.create("a", "again");
  r.delete_wrong_prev = await attempt(() => kv.delete("a", { previousSeq: 3 }));
  await kv.purge("b");
  r.get_purged = ent(await kv.get("b"));
  r.history_b = (await collect(await kv.history({ key: "b" }))).map(ent);
  r.history_a = (await collect(await kv.history({ key: "a" }))).map(ent);
  r.keys = (await collect(await kv.keys())).sort();
  r.keys_filtered = await collect(await kv.keys("other.*"));
  r.keys_multi = (await collect(await kv.keys(["a", "other.>"]))).sort();
  const si = await (await jetstreamManager(nc)).streams.info("KV_cfg");
  r.state = { messages: si.state.messages, last_seq: si.state.last_seq, num_deleted: si.state.num_deleted ?? 0 };
  // purgeDeletes: markers younger than the threshold are kept (keep 1), older ones removed
  await kv.delete("other.key");
  await kv.purgeDeletes();
  r.after_purge_deletes_young = (await (await jetstreamManager(nc)).streams.info("KV_cfg")).state.messages;
  await kv.purgeDeletes(-1);
  r.after_purge_deletes_all = (await (await jetstreamManager(nc)).streams.info("KV_cfg")).state.messages;
  r.keys_after = (await collect(await kv.keys())).sort();
  // reopen, list buckets, destroy
  const kv2 = await kvm.open("cfg");
  r.reopen_get = ent(await kv2.get("a"));
  await kvm.create("second", { history: 1 });
  r.list = (await collect(kvm.list())).map((s) => s.bucket).sort();
  r.destroy = await kv.destroy();
  r.open_destroyed = await attempt(async () => {
    const k = await kvm.open("cfg");
    return await k.get("a");
  });
  return r;
}

async function kvWatchScenario(nc) {
  const r = {};
  const kvm = new Kvm(nc);
  const kv = await kvm.create("w", { history: 5 });
  // a watcher on an empty bucket sees puts immediately, as updates
  const w0 = await kv.watch();
  await kv.put("first", "1");
  await kv.put("first", "2");
  r.empty_watch = (await take(w0, 2)).map(wentry);
  w0.stop();

  await kv.put("svc.a", "1");
  await kv.put("svc.a", "2");
  await kv.put("svc.b", "1");
  await kv.put("other", "x");
  await kv.delete("svc.b");
  const w = await kv.watch({ key: "svc.*" });
  r.initial = (await take(w, 2)).map(wentry);
  await kv.put("svc.c", "new");
  await kv.put("other", "y");
  await kv.purge("svc.a");
  r.updates = (await take(w, 2)).map(wentry);
  w.stop();

  const wa = await kv.watch({ key: ">" });
  r.watch_all_initial = (await take(wa, 5)).map(wentry);
  await kv.put("z", "z");
  r.watch_all_update = (await take(wa, 1)).map(wentry);
  wa.stop();

  const wh = await kv.watch({ key: "other", include: "history" });
  r.watch_history = (await take(wh, 2)).map(wentry);
  wh.stop();
  const wu = await kv.watch({ key: ">", include: "updates" });
  await kv.put("u", "1");
  r.watch_updates_only = (await take(wu, 1)).map(wentry);
  wu.stop();
  const wm = await kv.watch({ key: ["svc.c", "z"], headers_only: true });
  r.watch_multi_headers_only = (await take(wm, 2)).map(wentry);
  wm.stop();
  const wr = await kv.watch({ key: ">", resumeFromRevision: 9 });
  r.watch_resume = (await take(wr, 3)).map(wentry);
  wr.stop();
  const wi = await kv.watch({ key: "svc.*", ignoreDeletes: true });
  r.watch_ignore_deletes = (await take(wi, 2)).map(wentry);
  wi.stop();

  // many keys through a `>` filter: the initial phase ends exactly after the last key
  const many = await kvm.create("many", { history: 2 });
  for (let i = 0; i < 60; i++) await many.put(`k.${i % 20}.v`, String(i));
  const wmany = await many.watch({ key: "k.>" });
  const got = await take(wmany, 20);
  await many.put("k.0.v", "late");
  const late = await take(wmany, 1);
  r.many = { count: got.length, updates: got.filter((e) => e.isUpdate).length, last_delta: got[19]?.delta, late: wentry(late[0]) };
  wmany.stop();
  r.many_keys = (await collect(await many.keys())).length;
  return r;
}

async function kvTtlScenario(nc) {
  const r = {};
  const kvm = new Kvm(nc);
  const jsm = await jetstreamManager(nc);
  // per-key TTL (create with a TTL, purge with a TTL) needs a bucket with limit markers
  const kv = await kvm.create("lm", { history: 2, ttl: 1000, markerTTL: 1000 });
  const c = (await jsm.streams.info("KV_lm")).config;
  r.config = { allow_msg_ttl: c.allow_msg_ttl, subject_delete_marker_ttl: c.subject_delete_marker_ttl, max_age: c.max_age };
  r.status_marker_ttl = (await kv.status()).markerTTL;
  const w = await kv.watch();
  await kv.create("short", "v", "1s");
  const m = await jsm.direct.getMessage("KV_lm", { last_by_subj: "$KV.lm.short" });
  r.short_ttl_header = m.header.get("Nats-TTL");
  await kv.put("p", "v");
  await kv.purge("p", { ttl: "1s" });
  // the watcher sees: short(put), p(put), p(purge), then the server's limit markers / expiries
  const first = await take(w, 3);
  r.watch_first = first.map((e) => [e.key, e.operation]);
  // max_age 1s removes `short`'s value and writes a MaxAge marker seen as PURGE
  const later = await take(w, 1, 5000);
  r.watch_marker = later.map((e) => [e.key, e.operation, e.length]);
  const raw = await jsm.streams.getMessage("KV_lm", { seq: later[0].revision }).catch(() => null);
  r.marker_reason = raw ? raw.header.get("Nats-Marker-Reason") : "expired-already";
  r.get_short_after = ent(await kv.get("short"));
  w.stop();
  // eventually everything (values and markers) expires
  const deadline = Date.now() + 6000;
  let n = -1;
  while (Date.now() < deadline) {
    n = (await jsm.streams.info("KV_lm")).state.messages;
    if (n === 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  r.final_messages = n;
  return r;
}

// ------------------------------------------------------------------------------------------------

async function objScenario(nc) {
  const r = {};
  const objm = new Objm(nc);
  const jsm = await jetstreamManager(nc);
  const os = await objm.create("files");
  const c = (await jsm.streams.info("OBJ_files")).config;
  r.config = { subjects: c.subjects, allow_direct: c.allow_direct, allow_rollup_hdrs: c.allow_rollup_hdrs, discard: c.discard };
  r.list_empty = (await os.list()).length;

  const big = blob(300_000);
  const w = await os.watch();
  const info = await os.putBlob({ name: "dir/a.txt", description: "big one" }, big);
  r.put_big = { size: info.size, chunks: info.chunks, digest: info.digest, expected_digest: sha(big) };
  const small = te.encode("hello object store");
  await os.putBlob({ name: "small", options: { max_chunk_size: 4 } }, small);
  await os.putBlob({ name: "empty" }, new Uint8Array(0));
  r.watch_puts = (await take(w, 3)).map((i) => [i.name, i.size, i.deleted ?? false, i.isUpdate]);

  const gotBig = await os.getBlob("dir/a.txt");
  r.get_big_sha = hexsha(gotBig);
  r.expected_big_sha = hexsha(big);
  r.get_small = td.decode(await os.getBlob("small"));
  r.get_empty_len = (await os.getBlob("empty")).length;
  const res = await os.get("dir/a.txt");
  const streamed = await readAll(res.data);
  r.get_stream = { len: streamed.length, error: String(await res.error) };
  r.get_missing = await os.get("missing");
  const i1 = await os.info("small");
  r.info_small = { name: i1.name, size: i1.size, chunks: i1.chunks, digest_ok: i1.digest === sha(small), bucket: i1.bucket };
  r.info_missing = await os.info("missing");

  // re-put under the same name: the old chunks are purged
  const oldNuid = (await os.info("dir/a.txt")).nuid;
  await os.putBlob({ name: "dir/a.txt" }, te.encode("v2"));
  r.reput_get = td.decode(await os.getBlob("dir/a.txt"));
  r.old_chunks = await attempt(() => jsm.streams.getMessage("OBJ_files", { last_by_subj: `$O.files.C.${oldNuid}` }));

  // links to an object and to a whole store
  const other = await objm.create("other");
  await other.putBlob({ name: "target" }, te.encode("linked data"));
  const tinfo = await other.info("target");
  const lnk = await os.link("lnk", tinfo);
  r.link = { name: lnk.name, link: lnk.options?.link ?? null };
  r.link_get = td.decode(await os.getBlob("lnk"));
  const slnk = await os.linkStore("storelink", other);
  r.store_link = slnk.options?.link ?? null;
  r.store_link_get = await attempt(() => os.getBlob("storelink"));

  // meta update and rename
  await os.update("small", { name: "small", description: "tiny", metadata: { k: "v" } });
  const u = await os.info("small");
  r.update_meta = { description: u.description, metadata: u.metadata ?? null, size: u.size };
  await os.update("small", { name: "renamed" });
  r.renamed_get = td.decode(await os.getBlob("renamed"));
  r.old_name_info = await os.info("small");

  // delete
  r.delete = await os.delete("empty");
  const di = await os.info("empty");
  r.deleted_info = di && { name: di.name, deleted: di.deleted, size: di.size, chunks: di.chunks, digest: di.digest };
  r.list = (await os.list()).map((i) => i.name).sort();
  r.watch_history = await (async () => {
    const wh = await os.watch({ includeHistory: true, ignoreDeletes: false });
    const items = await take(wh, 3);
    wh.stop();
    return items.length;
  })();
  w.stop();

  // corrupt the digest: the client must refuse the object
  const metaSubject = "$O.files.M." + Buffer.from("renamed").toString("base64").replaceAll("+", "-").replaceAll("/", "_");
  const meta = await jsm.streams.getMessage("OBJ_files", { last_by_subj: metaSubject }).catch(() => null);
  if (meta) {
    const js = jetstream(nc);
    const m = meta.json();
    m.digest = sha(te.encode("something else"));
    await js.publish(meta.subject, JSON.stringify(m), { headers: (() => { const h = meta.header; h.set("Nats-Rollup", "sub"); return h; })() });
    r.digest_mismatch = await attempt(async () => {
      const rr = await os.get("renamed");
      await readAll(rr.data); // the stream errors with "digests do not match"
      return "read without error";
    });
  } else {
    r.digest_mismatch = { error: "meta for renamed not found" };
  }

  // seal and status
  const sealed = await os.seal();
  r.sealed = sealed.sealed;
  r.put_after_seal = await attempt(() => os.putBlob({ name: "x" }, te.encode("x")));
  const status = await os.status();
  r.status = { bucket: status.bucket, sealed: status.sealed, size_matches: status.size === status.streamInfo.state.bytes };
  r.destroy = await other.destroy();
  return r;
}

// ------------------------------------------------------------------------------------------------

async function directScenario(nc) {
  const r = {};
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({ name: "D", subjects: ["d.>"], allow_direct: true });
  for (const [s, v] of [["d.a", "1"], ["d.b", "2"], ["d.a", "3"], ["d.c.x", "4"], ["d.b", "5"]]) await js.publish(s, v);
  const m = (x) => (x ? { subject: x.subject, seq: x.seq, data: x.string() } : null);
  r.seq = m(await jsm.direct.getMessage("D", { seq: 2 }));
  r.last_by_subj = m(await jsm.direct.getMessage("D", { last_by_subj: "d.a" }));
  r.last_by_subj_wild = m(await jsm.direct.getMessage("D", { last_by_subj: "d.>" }));
  r.next_by_subj = m(await jsm.direct.getMessage("D", { next_by_subj: "d.b", seq: 3 }));
  r.missing = m(await jsm.direct.getMessage("D", { last_by_subj: "d.none" }));
  r.batch = (await collect(await jsm.direct.getBatch("D", { seq: 2, batch: 3 }))).map(m);
  r.batch_subj = (await collect(await jsm.direct.getBatch("D", { seq: 1, batch: 10, next_by_subj: "d.b" }))).map(m);
  r.multi_last = (await collect(await jsm.direct.getLastMessagesFor("D", { multi_last: ["d.a", "d.b"] }))).map(m);
  r.multi_last_wild = (await collect(await jsm.direct.getLastMessagesFor("D", { multi_last: ["d.>"] }))).map(m);
  r.multi_last_up_to = (await collect(await jsm.direct.getLastMessagesFor("D", { multi_last: ["d.a", "d.b"], up_to_seq: 3 }))).map(m);
  // last_per_subject + wildcard + headers_only through an ordered consumer: exact pending
  const oc = await js.consumers.get("D", { filter_subjects: ["d.>"], deliver_policy: DeliverPolicy.LastPerSubject, headers_only: true });
  const info = await oc.info(true);
  r.ordered_num_pending = info.num_pending;
  const msgs = await oc.fetch({ max_messages: 3, expires: 2000 });
  const seen = [];
  for await (const x of msgs) seen.push([x.subject, x.seq, x.info.pending, x.headers?.get("Nats-Msg-Size") ?? null, x.data.length]);
  r.ordered_lps = seen;
  return r;
}

// ------------------------------------------------------------------------------------------------
// the article's programs (shared/seed/000_f4d5d52d0939ab57.txt), translated to nats.js

async function createOrUpdateStream(jsm, cfg) {
  try {
    await jsm.streams.info(cfg.name);
    return await jsm.streams.update(cfg.name, cfg);
  } catch (err) {
    if (!/stream not found/i.test(String(err?.message))) throw err;
    return await jsm.streams.add(cfg);
  }
}

const DAY_NS = 24 * 3600 * 1e9;

async function producerConsumerRun(nc) {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const si = await createOrUpdateStream(jsm, {
    name: "ORDERS", subjects: ["orders.>"], storage: "file", retention: "limits",
    max_age: 7 * DAY_NS, max_bytes: 5 * 1024 * 1024 * 1024, duplicate_window: 120 * 1e9,
  });
  const ack = await js.publish("orders.created", JSON.stringify({ id: "ord-002", amount: 129.99 }), { msgID: "ord-002-created" });
  const cfg = { durable_name: "order-processor", name: "order-processor", filter_subject: "orders.>",
    ack_policy: AckPolicy.Explicit, ack_wait: 30 * 1e9, max_deliver: 5 };
  try {
    await jsm.consumers.update("ORDERS", "order-processor", cfg);
  } catch {
    await jsm.consumers.add("ORDERS", cfg);
  }
  const cons = await js.consumers.get("ORDERS", "order-processor");
  const msgs = await cons.fetch({ max_messages: 10, expires: 1000 });
  const processed = [], nakked = [];
  for await (const m of msgs) {
    let o;
    try {
      o = m.json();
    } catch {
      m.nak();
      nakked.push(m.seq);
      continue;
    }
    processed.push([o.id, o.amount, m.info.deliveryCount]);
    await m.ackAck();
  }
  return { stream: [si.config.name, si.config.max_age, si.config.max_bytes, si.config.duplicate_window], seq: ack.seq, duplicate: ack.duplicate, processed, nakked };
}

async function articleScenario(nc) {
  const r = {};
  r.first = await producerConsumerRun(nc);
  const js = jetstream(nc);
  await js.publish("orders.shipped", JSON.stringify({ id: "ord-001", amount: 49.99 }));
  await js.publish("orders.created", "not json");
  r.second = await producerConsumerRun(nc);
  const cons = await js.consumers.get("ORDERS", "order-processor");
  const m = await cons.next({ expires: 2000 });
  r.redelivered = m ? [m.string(), m.info.deliveryCount, m.seq] : null;
  if (m) await m.ackAck();
  const ci = await cons.info();
  r.consumer = { num_pending: ci.num_pending, num_ack_pending: ci.num_ack_pending, max_deliver: ci.config.max_deliver };

  // KV: `nats kv add config --ttl 1h`, put/get/del, then the Go KV program
  const kvm = new Kvm(nc);
  let kv = await kvm.create("config", { ttl: 3600 * 1000, replicas: 1 });
  const wall = await kv.watch();
  r.kv_puts = [await kv.put("database.host", "pg.internal"), await kv.put("database.port", "5432")];
  r.kv_get = (await kv.get("database.host")).string();
  await kv.delete("database.host");
  r.kv_after_del = ent(await kv.get("database.host"));
  r.kv_watch_all = (await take(wall, 3)).map((e) => [e.key, e.string(), e.operation]);
  wall.stop();
  kv = await kvm.create("config", { ttl: 3600 * 1000 }); // CreateOrUpdateKeyValue, same config
  r.kv_put = await kv.put("database.host", "pg.internal");
  const entry = await kv.get("database.host");
  r.kv_entry = [entry.string(), entry.revision];
  r.kv_cas = await kv.update("database.host", "pg2.internal", entry.revision);
  r.kv_cas_stale = await attempt(() => kv.update("database.host", "pg3.internal", entry.revision));
  const w = await kv.watch({ key: "database.*" });
  const initial = await take(w, 2);
  r.kv_watch_initial = initial.map((e) => [e.key, e.string(), e.isUpdate]);
  await kv.put("database.port", "6432");
  const upd = await take(w, 1);
  r.kv_watch_update = upd.map((e) => [e.key, e.string(), e.revision, e.isUpdate]);
  w.stop();
  return r;
}

// ------------------------------------------------------------------------------------------------

const scenarios = { kv: kvScenario, kvwatch: kvWatchScenario, kvttl: kvTtlScenario, obj: objScenario, direct: directScenario, article: articleScenario };

let nc;
try {
  if (!scenarios[scenario]) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`);
  nc = await connect({ servers: url, timeout: 5000 });
  const result = await scenarios[scenario](nc);
  process.stdout.write(JSON.stringify(result) + "\n");
  await nc.close();
  clearTimeout(watchdog);
  process.exit(0);
} catch (err) {
  process.stdout.write(JSON.stringify({ fatal: String(err?.stack ?? err) }) + "\n");
  if (nc) await nc.close().catch(() => {});
  process.exit(1);
}
