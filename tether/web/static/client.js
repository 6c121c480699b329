// Tether's browser client: the connection logic, with no UI in it.
//
//   TokenManager  access token in memory, refresh cookie on the server side; refreshes at ~75%
//                 of the token's life, one refresh in flight, coordinated across tabs.
//   SessionStream fetch-based SSE reader: Authorization header, Last-Event-ID resume,
//                 full-jitter backoff (0.5-20 s, unlimited), stall watchdog (~2.5x heartbeat),
//                 immediate retry on `online` / `visibilitychange`, 401 -> refresh -> retry,
//                 410 -> rebuild from the snapshot, other 4xx -> stop and say why. Dedupes by seq.
//   StatusPoller  whenever the stream is not live, asks the server for each task's status.
//   SharedSession one stream per session for all tabs of a browser (leader election with Web
//                 Locks, fan-out with BroadcastChannel): browsers allow six HTTP/1.1
//                 connections per origin, and eight tabs must all stay live.
//
// Runs in browsers and in Node (>= 20): every platform object can be passed in.

const SKEW_MS = 1000;

export class AuthError extends Error {}

export class TokenManager extends EventTarget {
  constructor({ baseUrl = "", fetch = globalThis.fetch.bind(globalThis), locks = globalThis.navigator?.locks, channel = makeChannel("tether-auth"), now = () => Date.now() } = {}) {
    super();
    this.baseUrl = baseUrl;
    this.fetch = fetch;
    this.locks = locks;
    this.channel = channel;
    this.now = now;
    this.token = null;
    this.expiresAt = 0; // ms
    this.issuedAt = 0;
    this.user = null;
    this.refreshes = 0;
    this._inflight = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
    this.channel?.addEventListener("message", (e) => {
      const m = e.data;
      if (m?.type === "token" && m.expiresAt > this.expiresAt) this._adopt(m, false);
      if (m?.type === "signedout") this._signedOut(m.reason, false);
    });
  }

  get signedIn() { return this.token !== null; }

  async signIn(body) {
    const r = await this.fetch(this.baseUrl + "/auth", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), credentials: "same-origin" });
    if (!r.ok) throw new AuthError(await problemDetail(r));
    this._take(await r.json());
    return this.user;
  }

  // Use the refresh cookie (a reload, a new tab): true if we are signed in again.
  async resume() {
    try { await this.refresh(); return true; } catch (e) { if (e instanceof AuthError) return false; throw e; }
  }

  // One refresh in flight per tab, and one across tabs: the Web Lock serialises them, and a
  // tab that gets the lock after another tab refreshed adopts that token instead.
  refresh() {
    this._inflight ??= (async () => {
      try {
        const run = async () => {
          if (this.token && this._fresh()) return;
          const r = await this.fetch(this.baseUrl + "/auth/refresh", { method: "POST", credentials: "same-origin" });
          if (r.status === 401 || r.status === 403) {
            const why = await problemDetail(r);
            this._signedOut(why, true);
            throw new AuthError(why);
          }
          if (!r.ok) throw new Error(`refresh failed: HTTP ${r.status}`);
          this._take(await r.json());
          this.refreshes += 1;
        };
        if (this.locks) await this.locks.request("tether-refresh", run); else await run();
      } finally { this._inflight = null; }
    })();
    return this._inflight;
  }

  async authHeader() {
    if (!this.token) throw new AuthError("not signed in");
    if (this.now() > this.expiresAt - SKEW_MS) await this.refresh();
    return { authorization: `Bearer ${this.token}` };
  }

  async signOut() {
    try { await this.fetch(this.baseUrl + "/auth/logout", { method: "POST", headers: this.token ? { authorization: `Bearer ${this.token}` } : {}, credentials: "same-origin" }); } catch { /* offline: the cookie dies with its sign-in */ }
    this._signedOut("signed out", true);
  }

  _fresh() {
    const ttl = this.expiresAt - this.issuedAt;
    return this.expiresAt - this.now() > ttl * 0.25 + SKEW_MS / 2;
  }

  _take(body) {
    const now = this.now();
    this._adopt({ token: body.access_token, expiresAt: now + body.expires_in * 1000, issuedAt: now, user: body.user }, true);
  }

  _adopt(m, broadcast) {
    Object.assign(this, { token: m.token, expiresAt: m.expiresAt, issuedAt: m.issuedAt, user: m.user });
    if (broadcast) this.channel?.postMessage({ type: "token", ...m });
    clearTimeout(this._timer);
    const at = m.issuedAt + (m.expiresAt - m.issuedAt) * 0.75;
    this._timer = setTimeout(() => this.refresh().catch(() => {}), Math.max(250, at - this.now()));
    this.dispatchEvent(new CustomEvent("token", { detail: { expiresAt: m.expiresAt } }));
  }

  _signedOut(reason, broadcast) {
    if (this.token === null && !broadcast) return;
    this.token = null;
    clearTimeout(this._timer);
    if (broadcast) this.channel?.postMessage({ type: "signedout", reason });
    this.dispatchEvent(new CustomEvent("signedout", { detail: { reason } }));
  }

  close() { clearTimeout(this._timer); this.channel?.close?.(); }
}

export async function problemDetail(r) {
  try { const b = await r.json(); return b.detail || b.title || `HTTP ${r.status}`; } catch { return `HTTP ${r.status}`; }
}

function makeChannel(name) {
  return typeof BroadcastChannel === "function" ? new BroadcastChannel(name) : null;
}

// Parse an SSE byte stream into {event, data, id} frames, one array per read from the
// network: a busy stream brings hundreds of frames a read, and whoever takes them handles
// them as one batch (one watchdog reset, one dispatch, one cross-tab message).
/** @param {ReadableStream<Uint8Array>} body @param {AbortSignal | null} [signal] */
export async function* sseChunks(body, signal = null) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  // An abort (watchdog, offline) must end a read that is waiting, whatever the body is.
  signal?.addEventListener("abort", () => reader.cancel(signal.reason).catch(() => {}), { once: true });
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      const frames = [];
      let start = 0, i;
      while ((i = buf.indexOf("\n\n", start)) >= 0) {
        const block = buf.slice(start, i);
        start = i + 2;
        let event = "message", data = [], id = null, comment = false;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) comment = true;
          else if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
          else if (line.startsWith("id: ")) id = line.slice(4);
        }
        if (data.length) frames.push({ event, data: JSON.parse(data.join("\n")), id });
        else if (comment) frames.push({ event: "comment", data: null, id: null });
      }
      if (start) buf = buf.slice(start);
      if (frames.length) yield frames;
    }
  } finally { reader.releaseLock(); }
}

// The same, one frame at a time.
export async function* sseFrames(body, signal = null) {
  for await (const frames of sseChunks(body, signal)) yield* frames;
}

// What a stream of log events dispatches: `events` {detail: [envelope, ...]} once per batch,
// and `event` {detail: envelope} for each, only once someone listens for it (a page taking
// thousands of events a second takes them in batches).
class LogEventTarget extends EventTarget {
  /** @override @param {string} type @param {any} listener (passed on as it is) @param {boolean | AddEventListenerOptions} [options] */
  addEventListener(type, listener, options) {
    if (type === "event") this._perEvent = true;
    super.addEventListener(type, listener, options);
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // evs: in seq order, each after this.cursor. Moves the cursor, then tells the listeners.
  _emitEvents(evs) {
    if (!evs.length) return;
    this.cursor = evs[evs.length - 1].seq;
    this._emit("events", evs);
    if (this._perEvent) for (const ev of evs) this._emit("event", ev);
  }
}

export function backoffDelay(attempt, { min = 500, max = 20000, random = Math.random } = {}) {
  // Full jitter: uniform in [0, min(max, min * 2^attempt)], so a thousand clients that dropped
  // at once do not come back at once.
  return random() * Math.min(max, min * 2 ** attempt);
}

// Events (all CustomEvent, detail shown):
//   events [envelope, ...]     log events in seq order, each once, in batches as they came
//   event {envelope}           the same, one at a time (dispatched only to a page that listens)
//   snapshot {snapshot}        at every (re)connect
//   reset {snapshot}           the cursor was gone (410): drop what you have, events follow from the start
//   heartbeat {server_time, head_seq}
//   state {kind, attempt, nextTryAt, since, reason}   kind: connecting | live | reconnecting | offline | stopped
/**
 * How one connection ended: `fatal` stop, `now` try again at once, `live` it had been live
 * (the backoff starts over); otherwise try again after a backoff.
 * @typedef {{ fatal?: boolean, now?: boolean, live?: boolean, retry?: boolean, reason: string }} Outcome
 */
export class SessionStream extends LogEventTarget {
  constructor({ sessionId, tokens, baseUrl = "", fetch = globalThis.fetch.bind(globalThis), win = globalThis.window, random = Math.random, minDelay = 500, maxDelay = 20000, offlineAfter = 3, offlineAfterMs = 10000, now = () => Date.now() }) {
    super();
    this.sessionId = sessionId;
    this.tokens = tokens;
    this.baseUrl = baseUrl;
    this.fetch = fetch;
    this.win = win;
    this.random = random;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.offlineAfter = offlineAfter;
    this.offlineAfterMs = offlineAfterMs;
    this.now = now;
    this.cursor = 0;
    this.heartbeatMs = 15000;
    this.state = { kind: "stopped" };
    this.reconnects = 0;
    this._stopped = true;
    this._wake = null;
    this._poked = false;
    this._abort = null;
    this._lastLive = now();
    this._onWake = () => { if (!this.win?.document || this.win.document.visibilityState !== "hidden") this._wake?.(); };
    // The system says the network is gone: the socket is dead even if no error arrived yet.
    this._onOffline = () => this._abort?.abort(new Error("browser offline"));
  }

  start(cursor = this.cursor) {
    this.cursor = cursor;
    this._stopped = false;
    this.win?.addEventListener?.("online", this._onWake);
    this.win?.addEventListener?.("offline", this._onOffline);
    this.win?.document?.addEventListener?.("visibilitychange", this._onWake);
    this._loop();
    return this;
  }

  stop(reason = "stopped") {
    this._stopped = true;
    this.win?.removeEventListener?.("online", this._onWake);
    this.win?.removeEventListener?.("offline", this._onOffline);
    this.win?.document?.removeEventListener?.("visibilitychange", this._onWake);
    this._abort?.abort();
    this._wake?.();
    this._setState({ kind: "stopped", reason });
  }

  // Immediately retry (e.g. the page became visible again, or "Retry now"). Asked while an
  // attempt is under way, the next one follows it at once, not after a backoff.
  poke() { if (this._wake) this._wake(); else this._poked = true; }

  _setState(s) {
    this.state = { since: this.now(), ...s };
    this.dispatchEvent(new CustomEvent("state", { detail: this.state }));
  }

  async _loop() {
    let attempt = 0;
    let first = true;
    while (!this._stopped) {
      if (!first) this.reconnects += 1;
      first = false;
      const outcome = await this._connect(attempt).catch((e) => /** @type {Outcome} */ ({ retry: true, reason: String(e?.message || e) }));
      if (this._stopped) return;
      if (outcome.fatal) { this.stop(outcome.reason); return; }
      if (outcome.live) { attempt = 0; this._poked = false; }
      if (outcome.now) continue;
      attempt += 1;
      if (this._poked) { this._poked = false; continue; }
      const delay = backoffDelay(attempt, { min: this.minDelay, max: this.maxDelay, random: this.random });
      const offline = (this.win?.navigator?.onLine === false || attempt >= this.offlineAfter) && this.now() - this._lastLive >= this.offlineAfterMs;
      this._setState({ kind: offline ? "offline" : "reconnecting", attempt, nextTryAt: this.now() + delay, reason: outcome.reason });
      await /** @type {Promise<void>} */ (new Promise((resolve) => {
        const t = setTimeout(resolve, delay);
        this._wake = () => { clearTimeout(t); resolve(); };
      }));
      this._wake = null;
    }
  }

  /** @returns {Promise<Outcome>} */
  async _connect(attempt) {
    this._setState({ kind: attempt === 0 ? "connecting" : "reconnecting", attempt, nextTryAt: this.now() });
    let headers;
    try { headers = await this.tokens.authHeader(); } catch (e) {
      if (e instanceof AuthError) return { fatal: true, reason: e.message };
      throw e;
    }
    if (this.cursor > 0) headers["last-event-id"] = String(this.cursor);
    const abort = (this._abort = new AbortController());
    // Resuming from a cursor, the events after it say every change since: the snapshot
    // need not list the tasks (on a session of 10,000 that is most of the time to live).
    const q = this.cursor > 0 ? "?tasks=0" : "";
    const r = await this.fetch(`${this.baseUrl}/api/sessions/${this.sessionId}/stream${q}`, { headers, signal: abort.signal, cache: "no-store" });
    if (r.status === 401) {
      try { await this.tokens.refresh(); } catch (e) { if (e instanceof AuthError) return { fatal: true, reason: e.message }; throw e; }
      return { now: attempt < 2, reason: "token refreshed" };
    }
    if (r.status === 410) {
      const problem = await r.json();
      await this._rebuild(problem.snapshot);
      return { now: true, reason: "rebuilt from snapshot" };
    }
    if (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429) {
      return { fatal: true, reason: await problemDetail(r) };
    }
    if (!r.ok) return { retry: true, reason: `HTTP ${r.status}` };
    return this._read(r, abort);
  }

  /** @returns {Promise<Outcome>} */
  async _read(r, abort) {
    let live = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      // No byte for 2.5 heartbeats: the connection is dead even if no error says so.
      watchdog = setTimeout(() => abort.abort(new Error("stalled")), this.heartbeatMs * 2.5);
    };
    arm();
    let batch = [];
    const flush = () => { if (batch.length) { const evs = batch; batch = []; this._emitEvents(evs); } };
    try {
      for await (const frames of sseChunks(r.body, abort.signal)) {
        arm();
        for (const f of frames) {
          if (f.event === "message") {
            const last = batch.length ? batch[batch.length - 1].seq : this.cursor;
            if (f.data.seq > last) batch.push(f.data);
            continue;
          }
          flush(); // what came before this frame is told first
          if (f.event === "snapshot") {
            if (f.data.heartbeat_s) { this.heartbeatMs = f.data.heartbeat_s * 1000; arm(); }
            live = true;
            this._lastLive = this.now();
            this._emit("snapshot", f.data);
            this._setState({ kind: "live" });
          } else if (f.event === "heartbeat") {
            this._lastLive = this.now();
            this._emit("heartbeat", f.data);
          } else if (f.event === "auth") {
            // The sign-in behind this stream ended: a refresh tells whether we may go on.
            try { await this.tokens.refresh(); } catch (e) { if (e instanceof AuthError) return { fatal: true, reason: f.data.reason }; }
            return { live, now: true, reason: f.data.reason };
          } else if (f.event === "shutdown") {
            return { live, reason: "server restarting" };
          } else if (f.event === "gone") {
            // The events after our cursor were pruned while we were behind: ask again at once;
            // the server answers 410 with a snapshot to rebuild from.
            return { live, now: true, reason: "events pruned while behind: rebuilding" };
          }
        }
        flush();
      }
      return { live, reason: abort.signal.aborted ? String(abort.signal.reason?.message || "aborted") : "stream ended" };
    } catch (e) {
      return { live, reason: abort.signal.aborted ? String(abort.signal.reason?.message || "aborted") : String(e?.message || e) };
    } finally {
      flush(); // events parsed before a drop are still news
      clearTimeout(watchdog);
      this._lastLive = live ? this.now() : this._lastLive;
    }
  }

  async _rebuild(snapshot) {
    this.cursor = snapshot.first_seq - 1;
    this._emit("reset", snapshot);
    await catchUp(this, this.fetch);
  }
}

// Read the log over REST from stream.cursor to the head, emitting like the stream does.
export async function catchUp(target, fetchImpl) {
  for (;;) {
    const headers = await target.tokens.authHeader();
    const r = await fetchImpl(`${target.baseUrl}/api/sessions/${target.sessionId}/events?after=${target.cursor}`, { headers, cache: "no-store" });
    if (!r.ok) throw new Error(await problemDetail(r));
    const page = await r.json();
    target._emitEvents(page.events.filter((ev) => ev.seq > target.cursor));
    if (!page.more) return;
  }
}

// Asks GET /api/sessions/{id}/tasks every `intervalMs` while running. Emits
//   status {tasks, checkedAt}   and   error {reason, checkedAt}
export class StatusPoller extends EventTarget {
  /** @param {{ sessionId: string, tokens: TokenManager, baseUrl?: string, fetch?: typeof globalThis.fetch, intervalMs?: number, now?: () => number, path?: string | null }} options */
  constructor({ sessionId, tokens, baseUrl = "", fetch = globalThis.fetch.bind(globalThis), intervalMs = 2000, now = () => Date.now(), path = null }) {
    super();
    this.sessionId = sessionId;
    this.tokens = tokens;
    this.baseUrl = baseUrl;
    this.fetch = fetch;
    this.intervalMs = intervalMs;
    this.now = now;
    this.path = path ?? `/api/sessions/${sessionId}/tasks`;
    this.running = false;
    this.last = null; // {tasks, head_seq, checkedAt}
    this._gen = 0;   // bumped by stop(): an answer to an older ask is dropped
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this._tick();
  }

  stop() {
    this.running = false;
    this._gen = (this._gen ?? 0) + 1;
    clearTimeout(this._timer);
  }

  async check() {
    const checkedAt = this.now();
    const gen = this._gen;
    try {
      const headers = await this.tokens.authHeader();
      const r = await this.fetch(`${this.baseUrl}${this.path}`, { headers, cache: "no-store" });
      if (!r.ok) throw new Error(await problemDetail(r));
      const body = await r.json();
      this.last = { tasks: body.tasks, head_seq: body.head_seq, checkedAt };
      // Stopped while asking (the page moved to another session): the answer is not news.
      if (gen === this._gen) this.dispatchEvent(new CustomEvent("status", { detail: this.last }));
    } catch (e) {
      if (gen === this._gen) this.dispatchEvent(new CustomEvent("error", { detail: { reason: String(e?.message || e), checkedAt } }));
    }
  }

  async _tick() {
    if (!this.running) return;
    await this.check();
    if (this.running) this._timer = setTimeout(() => this._tick(), this.intervalMs);
  }
}

// One live stream per session for every tab: the tab holding the Web Lock runs the stream
// and rebroadcasts; the others follow over BroadcastChannel, filling any gap over REST.
// Same events as SessionStream ("events", "event", "snapshot", "reset", "heartbeat", "state").
export class SharedSession extends LogEventTarget {
  constructor(opts) {
    super();
    this.opts = opts;
    const { sessionId, tokens, baseUrl = "", fetch = globalThis.fetch.bind(globalThis), locks = globalThis.navigator?.locks } = opts;
    this.sessionId = sessionId;
    this.tokens = tokens;
    this.baseUrl = baseUrl;
    this.fetch = fetch;
    this.locks = locks;
    this.cursor = 0;
    this.leader = false;
    this.state = { kind: "connecting" };
    this.stream = null;
    this.channel = locks ? makeChannel(`tether-stream:${sessionId}`) : null;
    this._closed = false;
    this._filling = null;
    /** @type {(() => void) | null} */
    this._release = null;
  }

  get reconnects() { return this.stream?.reconnects ?? 0; }

  async start(cursor = 0) {
    this.cursor = cursor;
    if (!this.locks || !this.channel) { this._lead(); return this; }
    this.channel.onmessage = (e) => this._fromLeader(e.data);
    // Catch up over REST right away, then follow the leader until this tab becomes it.
    this._fill().catch(() => {});
    this._post({ type: "hello" });
    this.locks.request(`tether-stream:${this.sessionId}`, () => {
      if (this._closed) return undefined;
      this._lead();
      return /** @type {Promise<void>} */ (new Promise((resolve) => { this._release = resolve; }));
    });
    return this;
  }

  close() {
    this._closed = true;
    this.stream?.stop("closed");
    this._release?.();
    this.channel?.close();
  }

  poke() { this.stream?.poke(); }

  // Read what the log holds beyond this tab's cursor over REST (the stream may be blocked
  // while the API answers); the stream, when it comes back, resumes after it.
  async catchUp() {
    await this._fill();
    if (this.stream && this.stream.cursor < this.cursor) this.stream.cursor = this.cursor;
  }

  _post(m) {
    if (this._closed || !this.channel) return;
    try { this.channel.postMessage(m); } catch { /* closed under us: nobody listens */ }
  }

  _lead() {
    this.leader = true;
    const s = (this.stream = new SessionStream({ ...this.opts, sessionId: this.sessionId, tokens: this.tokens }));
    s.addEventListener("events", (/** @type {CustomEvent} */ e) => {
      const evs = e.detail.filter((ev) => ev.seq > this.cursor);
      if (!evs.length) return;
      this._emitEvents(evs);
      this._post({ type: "events", detail: evs });
    });
    for (const type of ["snapshot", "reset", "heartbeat", "state"]) {
      s.addEventListener(type, (/** @type {CustomEvent} */ e) => {
        if (type === "reset") this.cursor = e.detail.first_seq - 1;
        if (type === "state") this.state = e.detail;
        this._emit(type, e.detail);
        this._post({ type, detail: e.detail });
      });
    }
    s.start(this.cursor);
  }

  _fromLeader(m) {
    if (this.leader) {
      if (m.type === "hello") this._post({ type: "state", detail: this.state });
      return;
    }
    if (m.type === "events" || m.type === "event") { // "event": a leader tab of an older page
      const evs = (m.type === "events" ? m.detail : [m.detail]).filter((ev) => ev.seq > this.cursor);
      if (!evs.length) return;
      if (evs[0].seq > this.cursor + 1) { this._fill().catch(() => {}); return; }
      this._emitEvents(evs);
    } else if (m.type === "state") {
      this.state = m.detail;
      this._emit("state", m.detail);
    } else if (m.type === "snapshot" || m.type === "heartbeat") {
      this._emit(m.type, m.detail);
      if (m.type === "heartbeat" && m.detail.head_seq > this.cursor) this._fill().catch(() => {});
    } else if (m.type === "reset") {
      this.cursor = m.detail.first_seq - 1;
      this._emit("reset", m.detail);
      this._fill().catch(() => {});
    }
  }

  _fill() {
    this._filling ??= catchUp(this, this.fetch).finally(() => { this._filling = null; });
    return this._filling;
  }
}
