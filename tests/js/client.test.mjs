// The browser client module on its own, in Node, against a real Tether server.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { SessionStream, StatusPoller, TokenManager, backoffDelay, sseFrames } from "../../tether/web/static/client.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = process.env.TETHER_PYTHON || "python3";
const SECRET = "js-test-secret-0123456789abcdef";
const servers = [];

function freePort() {
  return new Promise((resolve) => { const s = createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); }); });
}

async function startServer(env = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tether-js-"));
  const proc = spawn(PYTHON, ["-m", "tether.cli", "serve", "--port", String(port), "--data-dir", dir, "--log-level", "warning"], {
    cwd: ROOT, env: { ...process.env, PYTHONPATH: ROOT, TETHER_BOOTSTRAP_SECRET: SECRET, TETHER_HEARTBEAT_S: "0.2", TETHER_AGENTS: JSON.stringify(["tests.helpers.agents"]), TETHER_TEST_COUNTER: join(dir, "counter.txt"), ...env }, stdio: "ignore",
  });
  servers.push(proc);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(url + "/healthz")).ok) return { url, proc }; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("server did not start");
}

// Node's fetch keeps no cookies; a browser does. This keeps the refresh cookie like one.
function cookieFetch() {
  const jar = new Map();
  return async (url, init = {}) => {
    const headers = new Headers(init.headers || {});
    if (String(url).includes("/auth") && jar.size) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
    const r = await fetch(url, { ...init, headers });
    for (const c of r.headers.getSetCookie()) { const [kv] = c.split(";"); const [k, v] = kv.split("="); if (v) jar.set(k, v); else jar.delete(k); }
    return r;
  };
}

async function api(url, path, body) {
  const r = await fetch(url + path, { method: body === undefined ? "GET" : "POST", headers: { "x-web-bootstrap-secret": SECRET, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  assert.ok(r.ok, `${path}: ${r.status}`);
  return r.json();
}

async function allEvents(url, sid) {
  const out = [];
  let after = 0;
  for (;;) {
    const page = await api(url, `/api/sessions/${sid}/events?after=${after}`);
    out.push(...page.events);
    after = page.next_after;
    if (!page.more) return out;
  }
}

async function waitFor(check, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

let main;
before(async () => { main = await startServer({ TETHER_ACCESS_TTL_S: "1" }); });
after(() => { for (const p of servers) p.kill("SIGKILL"); });

test("backoff is full jitter between 0 and min(20 s, 0.5 s * 2^attempt)", () => {
  assert.equal(backoffDelay(1, { random: () => 1 }), 1000);
  assert.equal(backoffDelay(10, { random: () => 1 }), 20000);
  assert.equal(backoffDelay(3, { random: () => 0 }), 0);
  for (let a = 0; a < 30; a++) { const d = backoffDelay(a); assert.ok(d >= 0 && d <= 20000); }
});

// Every request that carries a bearer token, with the token's expiry and when it was sent.
function watchTokens(f) {
  const sent = [];
  const watched = async (url, init = {}) => {
    const auth = new Headers(init.headers || {}).get("authorization");
    const at = Date.now() / 1000;
    const r = await f(url, init);
    if (auth) {
      const token = auth.replace(/^Bearer /, "");
      const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
      sent.push({ url: String(url), token, exp: claims.exp, at, status: r.status });
    }
    return r;
  };
  return { watched, sent };
}

test("the stream delivers the log exactly, and no request carries an expired token", async () => {
  const { watched: f, sent } = watchTokens(cookieFetch());
  const tokens = new TokenManager({ baseUrl: main.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(main.url, "/api/sessions", { title: "js" })).id;
  const root = (await api(main.url, `/api/sessions/${sid}/tasks`, { agent: "batch", input: { items: [1, 2, 3, 4, 5, 6], delay_s: 0.5 } })).id;
  const stream = new SessionStream({ sessionId: sid, tokens, baseUrl: main.url, fetch: f });
  // The page polls the task tree beside the stream, each ask with the token of the moment.
  const poller = new StatusPoller({ sessionId: sid, tokens, baseUrl: main.url, fetch: f, intervalMs: 100 });
  const got = [];
  const states = [];
  stream.addEventListener("event", (e) => got.push(e.detail));
  stream.addEventListener("state", (e) => states.push(e.detail.kind));
  stream.start();
  poller.start();
  await waitFor(() => got.some((e) => e.task_id === root && e.type === "task.status" && e.data.status === "completed"));
  stream.stop();
  poller.stop();
  tokens.close();
  assert.deepEqual(got, await allEvents(main.url, sid));
  // TTL 1 s, a task of ~4 s: the requests span several tokens, and each was sent before its
  // token expired (the server would have answered 401: none did).
  const expired = sent.filter((s) => s.at >= s.exp || s.status === 401);
  assert.deepEqual(expired, [], `${expired.length} of ${sent.length} requests carried an expired token`);
  assert.ok(new Set(sent.map((s) => s.token)).size >= 3, `${sent.length} requests, ${new Set(sent.map((s) => s.token)).size} tokens`);
  assert.ok(sent.some((s) => s.url.includes("/stream")) && sent.filter((s) => s.url.includes("/tasks")).length >= 10);
  assert.equal(states[0], "connecting");
  assert.ok(states.includes("live"));
});

test("a busy stream comes in batches: each event once, in order, to batch and single listeners alike", async () => {
  const f = cookieFetch();
  const tokens = new TokenManager({ baseUrl: main.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(main.url, "/api/sessions", {})).id;
  const stream = new SessionStream({ sessionId: sid, tokens, baseUrl: main.url, fetch: f });
  const batches = [];
  const single = [];
  stream.addEventListener("events", (e) => batches.push(e.detail));
  stream.addEventListener("event", (e) => single.push(e.detail));
  stream.start();
  await waitFor(() => stream.state.kind === "live");
  const root = (await api(main.url, `/api/sessions/${sid}/tasks`, { agent: "blast", input: { count: 20000, steps: 4 } })).id;
  await waitFor(() => single.some((e) => e.task_id === root && e.type === "task.status" && e.data.status === "completed"));
  stream.stop();
  tokens.close();
  const log = await allEvents(main.url, sid);
  assert.deepEqual(batches.flat(), log);
  assert.deepEqual(single, log);
  assert.equal(stream.cursor, log.at(-1).seq);
  // Thousands of events a second arrive many to a read, and are told as one batch each.
  assert.ok(batches.length < log.length / 10, `${batches.length} batches for ${log.length} events`);
});

test("a forced reconnect resumes from the cursor with nothing twice", async () => {
  const f = cookieFetch();
  const tokens = new TokenManager({ baseUrl: main.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(main.url, "/api/sessions", {})).id;
  const root = (await api(main.url, `/api/sessions/${sid}/tasks`, { agent: "batch", input: { items: [1, 2, 3, 4], delay_s: 0.4 } })).id;
  // A fetch whose streams die after a few reads, as a flaky network does.
  let cuts = 0;
  const flaky = async (url, init) => {
    const r = await f(url, init);
    if (!String(url).includes("/stream") || !r.body) return r;
    const reader = r.body.getReader();
    let reads = 0;
    const body = new ReadableStream({
      async pull(c) {
        if (++reads > 3) { cuts++; reader.cancel().catch(() => {}); c.error(new Error("cut")); return; }
        const { value, done } = await reader.read();
        if (done) c.close(); else c.enqueue(value);
      },
    });
    return new Response(body, { status: r.status, headers: r.headers });
  };
  const stream = new SessionStream({ sessionId: sid, tokens, baseUrl: main.url, fetch: flaky, minDelay: 10, maxDelay: 50 });
  const got = [];
  stream.addEventListener("event", (e) => got.push(e.detail));
  stream.start();
  await waitFor(() => got.some((e) => e.task_id === root && e.type === "task.status" && e.data.status === "completed"));
  stream.stop();
  tokens.close();
  assert.ok(cuts >= 3, `only ${cuts} cuts`);
  assert.deepEqual(got, await allEvents(main.url, sid));
});

test("a stalled stream is abandoned after 2.5 heartbeats and resumed", async () => {
  const f = cookieFetch();
  const tokens = new TokenManager({ baseUrl: main.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(main.url, "/api/sessions", {})).id;
  let calls = 0;
  // The first stream sends its snapshot and then nothing at all, while the socket stays open.
  const stalling = async (url, init) => {
    const r = await f(url, init);
    if (!String(url).includes("/stream") || calls++ > 0) return r;
    const reader = r.body.getReader();
    const first = await reader.read();
    const body = new ReadableStream({ start(c) { c.enqueue(first.value); }, cancel() { reader.cancel().catch(() => {}); } });
    return new Response(body, { status: 200, headers: r.headers });
  };
  const stream = new SessionStream({ sessionId: sid, tokens, baseUrl: main.url, fetch: stalling, minDelay: 10, maxDelay: 50 });
  const states = [];
  stream.addEventListener("state", (e) => states.push(e.detail));
  const t0 = Date.now();
  stream.start();
  await waitFor(() => calls >= 2 && states.filter((s) => s.kind === "live").length >= 2);
  stream.stop();
  tokens.close();
  assert.ok(states.some((s) => s.kind === "reconnecting" && s.reason === "stalled"), JSON.stringify(states));
  assert.ok(Date.now() - t0 >= 400); // 2.5 x 0.2 s heartbeat
});

test("Retry asked while an attempt is under way tries again at once, not after a backoff", async () => {
  const calls = [];
  let fail = null;
  const fetch = (url) => new Promise((resolve) => { calls.push(Date.now()); fail = () => resolve(new Response("down", { status: 503 })); });
  const tokens = { authHeader: async () => ({}) };
  const stream = new SessionStream({ sessionId: "s_x", tokens, fetch, random: () => 1, minDelay: 10000, maxDelay: 20000 });
  stream.start();
  await waitFor(() => calls.length === 1);
  stream.poke();  // while the first attempt waits for its answer
  fail();
  await waitFor(() => calls.length === 2, 2000);  // a backoff would be 10 s or more
  stream.stop();
});

test("410 rebuilds from the snapshot; a 404 stops with the reason", async () => {
  const srv = await startServer({ TETHER_RETENTION_EVENTS: "20" });
  const f = cookieFetch();
  const tokens = new TokenManager({ baseUrl: srv.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(srv.url, "/api/sessions", {})).id;
  const root = (await api(srv.url, `/api/sessions/${sid}/tasks`, { agent: "blast", input: { count: 300, steps: 3 } })).id;
  await waitFor(async () => (await api(srv.url, `/api/tasks/${root}`)).status === "completed");
  const s = await api(srv.url, `/api/sessions/${sid}`);
  const stream = new SessionStream({ sessionId: sid, tokens, baseUrl: srv.url, fetch: f });
  const got = [];
  let reset = null;
  stream.addEventListener("reset", (e) => { reset = e.detail; got.length = 0; });
  stream.addEventListener("event", (e) => got.push(e.detail.seq));
  stream.start(5); // a cursor long pruned
  await waitFor(() => got.length && got[got.length - 1] === s.head_seq);
  stream.stop();
  assert.equal(reset.first_seq, s.first_seq);
  assert.deepEqual(got, Array.from({ length: s.head_seq - s.first_seq + 1 }, (_, i) => s.first_seq + i));

  const gone = new SessionStream({ sessionId: "s_missing", tokens, baseUrl: srv.url, fetch: f });
  const stopped = new Promise((r) => gone.addEventListener("state", (e) => { if (e.detail.kind === "stopped") r(e.detail); }));
  gone.start();
  const st = await stopped;
  assert.match(st.reason, /not found/);
  tokens.close();
});

test("a gone event sends the stream straight back, and it rebuilds from the 410", async () => {
  const srv = await startServer({ TETHER_RETENTION_EVENTS: "20" });
  const f = cookieFetch();
  const tokens = new TokenManager({ baseUrl: srv.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(srv.url, "/api/sessions", {})).id;
  let streams = 0;
  let release;
  const held = new Promise((r) => { release = r; });
  // The first stream delivers its snapshot, then (once the log has moved far past it) the
  // server's `gone`, as a stream that fell behind retention gets it.
  const behind = async (url, init) => {
    const r = await f(url, init);
    if (!String(url).includes("/stream") || streams++ > 0) return r;
    const reader = r.body.getReader();
    const first = await reader.read();
    const body = new ReadableStream({
      async start(c) {
        c.enqueue(first.value);
        await held;
        c.enqueue(new TextEncoder().encode('event: gone\ndata: {"reason":"pruned","after":0}\n\n'));
        c.close();
        reader.cancel().catch(() => {});
      },
    });
    return new Response(body, { status: 200, headers: r.headers });
  };
  const stream = new SessionStream({ sessionId: sid, tokens, baseUrl: srv.url, fetch: behind, minDelay: 5000, maxDelay: 5000 });
  let resets = 0;
  const got = [];
  stream.addEventListener("reset", () => { resets += 1; got.length = 0; });
  stream.addEventListener("event", (e) => got.push(e.detail.seq));
  stream.start();
  await waitFor(() => stream.state.kind === "live");
  const root = (await api(srv.url, `/api/sessions/${sid}/tasks`, { agent: "blast", input: { count: 300, steps: 3 } })).id;
  await waitFor(async () => (await api(srv.url, `/api/tasks/${root}`)).status === "completed");
  const t0 = Date.now();
  release();
  const s = await api(srv.url, `/api/sessions/${sid}`);
  await waitFor(() => got.length && got[got.length - 1] === s.head_seq);
  stream.stop();
  tokens.close();
  assert.ok(Date.now() - t0 < 4000, "reconnected without waiting out a backoff");
  assert.equal(resets, 1);
  assert.deepEqual(got, Array.from({ length: s.head_seq - s.first_seq + 1 }, (_, i) => s.first_seq + i));
});

test("the poller reports the server's statuses and when it checked", async () => {
  const f = cookieFetch();
  const tokens = new TokenManager({ baseUrl: main.url, fetch: f, locks: null, channel: null });
  await tokens.signIn({ secret: SECRET });
  const sid = (await api(main.url, "/api/sessions", {})).id;
  const root = (await api(main.url, `/api/sessions/${sid}/tasks`, { agent: "one_item", input: { item: 1, delay_s: 0.5 } })).id;
  const poller = new StatusPoller({ sessionId: sid, tokens, baseUrl: main.url, fetch: f, intervalMs: 100 });
  const seen = [];
  poller.addEventListener("status", (e) => seen.push([e.detail.tasks[0]?.status, e.detail.checkedAt]));
  poller.start();
  await waitFor(() => seen.some(([s]) => s === "completed"));
  poller.stop();
  tokens.close();
  assert.ok(seen.some(([s]) => s === "running"));
  assert.ok(seen.every(([, at], i) => i === 0 || at >= seen[i - 1][1]));
  assert.equal((await api(main.url, `/api/tasks/${root}`)).status, "completed");
});

test("sseFrames parses named, id'd and comment frames", async () => {
  const text = "retry: 1000\n: hello\n\nevent: snapshot\ndata: {\"a\":1}\n\nid: 3\ndata: {\"seq\":3}\n\n";
  const body = new Response(text).body;
  const frames = [];
  for await (const f of sseFrames(body)) frames.push(f);
  assert.deepEqual(frames, [
    { event: "comment", data: null, id: null },
    { event: "snapshot", data: { a: 1 }, id: null },
    { event: "message", data: { seq: 3 }, id: "3" },
  ]);
});
