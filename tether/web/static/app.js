// The Tether page. Connection logic lives in client.js, words in describe.js, the task tree
// in tree.js, the timeline in timeline.js, the task form in form.js; this file wires them.
import { AuthError, SharedSession, StatusPoller, TokenManager } from "./client.js";
import { Conversation } from "./chat.js";
import { TERMINAL, ago, clause, clock, sentence, taskName } from "./describe.js";
import { SchemaForm, firstSentence } from "./form.js";
import { Timeline } from "./timeline.js";
import { TaskTree } from "./tree.js";
import { setText } from "./dom.js";

const $ = (id) => document.getElementById(id);
const setHidden = (el, on) => { if (el.hidden !== on) el.hidden = on; };
const params = new URLSearchParams(location.search);
// Test and soak runs shrink the status poll; the default suits people.
const POLL_MS = Number(params.get("poll_ms")) || 2000;
const FULL_LOAD = Number(params.get("full_load")) || 5000;  // more events: open on the newest TAIL
const TAIL = 1000;
const TAIL_FROM = "999999999999999999";  // before= this: the newest events, whatever the head

class ApiError extends Error {
  constructor(status, problem) {
    // A body that did not validate: what is wrong with it, in the server's plain words.
    const fields = problem?.errors?.length ? problem.errors.map((e) => clause(e.msg)).join("; ") : "";
    super(fields || problem?.detail || problem?.title || `HTTP ${status}`);
    Object.assign(this, { status, problem });
  }
}

const tokens = new TokenManager();
let session = null;   // SharedSession of the open session
let poller = null;    // StatusPoller of the open session
let sessionId = null;
let generation = 0;   // bumped by every openSession: late answers for an old one are dropped
let conn = { kind: "connecting" };
let polled = null;    // {checkedAt, head} of the last good status poll
let pollError = null; // {checkedAt, reason} of the last failed one (cleared by a good one)
let onlineAt = 0; // when the device last came back online
let lastLiveAt = 0;   // ms: when the stream last said it is live
let lastEventTs = 0;  // s: the newest event's server time
let loading = false;  // initial load of a session: transitions are not news
let unseen = 0;
let agentsByName = new Map();
let sessionsById = new Map();

const tree = new TaskTree({ root: $("tree"), empty: $("tree-empty"), api: (p, i) => api(p, i) });
const timeline = new Timeline({
  root: $("timeline"),
  nameOf: (id) => { const t = tree.get(id); return t ? taskName(t) : id; },
  loadBefore: (seq, n) => api(`/api/sessions/${sessionId}/events?before=${seq}&limit=${n}`),
});
const conversation = new Conversation({ root: $("conversation"), api: (p, i) => api(p, i), isModelAgent: (n) => agentsByName.get(n)?.kind === "model" });
const form = new SchemaForm({ root: $("agent-fields"), storageKey: () => `tether.form.${sessionId}`, agents: () => [...agentsByName.values()] });
// Tests and the benchmark read the page's model through this (never needed by the page).
window.tether = { timeline, tree, conversation, conn: () => conn, stats: () => ({ events: timeline.events.length, rows: timeline.rows, tasks: tree.size, nodes: document.getElementsByTagName("*").length }) };

// ---- api ----------------------------------------------------------------------------------

async function api(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { "content-type": "application/json", ...(await tokens.authHeader()), ...(init.headers ?? {}) };
    const r = await fetch(path, { ...init, headers, cache: "no-store" });
    if (r.status === 401 && attempt === 0) { await tokens.refresh(); continue; }
    if (!r.ok) { let body = null; try { body = await r.json(); } catch { /* not JSON */ } throw new ApiError(r.status, body); }
    return r.status === 204 ? null : r.json();
  }
}

// ---- sign-in ------------------------------------------------------------------------------

function closeSession() {
  generation += 1;
  poller?.stop(); poller = null;      // first: its answer in flight must not land anywhere
  session?.close(); session = null;
  sessionId = null;
}

function clearPage() {
  tree.reset(); timeline.reset(); conversation.reset();
  $("sessions").replaceChildren();
  setTitle(null);
  document.title = "Tether";
}

function showSignIn(why = "") {
  closeSession();
  clearPage();
  $("app-view").hidden = true;
  $("signout").hidden = true;
  $("menu").hidden = true;
  $("signin-view").hidden = false;
  showMore(false);
  $("signin-why").textContent = why;
  setConn({ kind: "stopped", reason: "signed out" });
  $("secret").value = "";
  $("secret").focus();
}

async function trySignIn(body) {
  $("signin-error").textContent = "";
  try { await tokens.signIn(body); await enter(); }
  catch (e) { $("signin-error").textContent = e instanceof AuthError ? e.message : `Could not reach the server: ${e.message}`; }
}

$("signin-secret").addEventListener("submit", (e) => { e.preventDefault(); trySignIn({ secret: $("secret").value }); });
$("signin-user").addEventListener("submit", (e) => { e.preventDefault(); trySignIn({ username: $("username").value, password: $("password").value }); });
$("signout").addEventListener("click", async () => { await tokens.signOut(); });
tokens.addEventListener("signedout", (e) => {
  const why = e.detail.reason === "signed out" ? "You signed out. Your tasks keep running on the server." : `Your sign-in ended (${e.detail.reason}). Sign in again to continue; your tasks kept running.`;
  showSignIn(why);
});

// A `#secret=` link pasted into an open tab signs in with it, as it does on a fresh load.
window.addEventListener("hashchange", () => { signInFromFragment(); });

async function signInFromFragment() {
  const secret = new URLSearchParams(location.hash.slice(1)).get("secret");
  if (!secret) return false;
  history.replaceState(null, "", location.pathname + location.search);  // the secret leaves the address bar
  try { await tokens.signIn({ secret }); await enter(); } catch (e) { showSignIn(e.message); }
  return true;
}

// ---- sessions -----------------------------------------------------------------------------

async function enter() {
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("signout").hidden = false;
  $("menu").hidden = false;
  let wanted = params.get("session") || localStorage.getItem("tether.session");
  // The session to open is known before the list comes: its tree and newest events are
  // asked for alongside it (on a reload of a big session, most of the time to live).
  let early = wanted ? firstLoad(wanted) : null;
  early?.catch(() => {});  // a session that is gone: openSession asks again and says so
  const [{ sessions }, { agents }] = await Promise.all([api("/api/sessions"), api("/api/agents")]);
  sessionsById = new Map(sessions.map((s) => [s.id, s]));
  fillAgents(agents);
  if (!sessions.some((s) => s.id === wanted)) { wanted = sessions[0]?.id; early = null; }
  if (!wanted) {
    // A first sign-in: a session to start in, listed and titled like any other.
    wanted = (await api("/api/sessions", { method: "POST", body: JSON.stringify({ title: "My first session" }) })).id;
    sessions.splice(0, sessions.length, ...(await api("/api/sessions")).sessions);
    sessionsById = new Map(sessions.map((s) => [s.id, s]));
  }
  await openSession(wanted, { early, sessions });
}

// A session's task tree and its newest TAIL events, asked for at once.
const firstLoad = (id) => Promise.all([api(`/api/sessions/${id}/tasks?brief=true`), api(`/api/sessions/${id}/events?before=${TAIL_FROM}&limit=${TAIL}`)]);

const STATE_WORDS = { running: "Running", completed: "Done", failed: "Failed", interrupted: "Interrupted", cancelled: "Cancelled", empty: "No tasks" };

async function renderSessions(list = null) {
  const gen = generation;
  const { sessions } = list ? { sessions: list } : await api("/api/sessions");
  if (gen !== generation && !sessionId) return;
  sessionsById = new Map(sessions.map((s) => [s.id, s]));
  $("sessions").replaceChildren(...sessions.map((s) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `?session=${s.id}`;
    const title = document.createElement("span"); title.className = "s-title"; title.textContent = s.title || "Untitled session";
    const state = document.createElement("span");
    const needs = s.needs_you > 0;
    state.className = "s-state"; state.dataset.state = needs ? "needs" : s.state;
    state.textContent = needs ? "Needs you" : STATE_WORDS[s.state] ?? s.state;
    a.append(title, state);
    if (s.id === sessionId) a.setAttribute("aria-current", "page");
    a.addEventListener("click", (e) => { e.preventDefault(); openSession(s.id); showSidebar(false); });
    li.dataset.session = s.id;
    li.append(a);
    return li;
  }));
  const me = sessionsById.get(sessionId);
  if (me) setTitle(me.title || "Untitled session");
}

// The open session's title, with Rename and Delete beside it; null: not known yet, so
// nothing shows (never the buttons beside a blank title).
function setTitle(title) {
  $("session-title").textContent = title ?? "";
  $("title-box").hidden = title === null;
  $("m-rename").hidden = $("m-delete").hidden = title === null;
}

let sessionsQueued = null;
function refreshSessionsSoon() {
  clearTimeout(sessionsQueued);
  sessionsQueued = setTimeout(() => renderSessions().catch(() => {}), 400);
}

$("new-session").addEventListener("click", async () => {
  $("session-error").textContent = "";
  try {
    const s = await api("/api/sessions", { method: "POST", body: JSON.stringify({ title: `Session of ${new Date().toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}` }) });
    sessionsById.set(s.id, s);
    await openSession(s.id);
    showSidebar(false);
  } catch (e) { $("session-error").textContent = sentence(e.message); }
});

// Rename and delete the open session.
$("rename").addEventListener("click", () => {
  $("rename-input").value = $("session-title").textContent;
  $("rename-form").hidden = false;
  $("rename").hidden = $("delete").hidden = $("session-title").hidden = true;
  $("rename-input").select();
});
// Back to the button that opened it: Rename beside the title, or the phone's menu button.
const refocus = (el) => (el.offsetParent ? el : $("more")).focus();
const endRename = () => { $("rename-form").hidden = true; $("rename").hidden = $("delete").hidden = $("session-title").hidden = false; refocus($("rename")); };
$("rename-cancel").addEventListener("click", endRename);
$("rename-form").addEventListener("keydown", (e) => { if (e.key === "Escape") endRename(); });
$("rename-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const s = await api(`/api/sessions/${sessionId}`, { method: "PATCH", body: JSON.stringify({ title: $("rename-input").value }) });
    $("session-title").textContent = s.title;
    endRename();
    renderSessions().catch(() => {});
  } catch (err) { $("session-error").textContent = sentence(err.message); }
});
$("delete").addEventListener("click", () => {
  $("delete-q").textContent = "Delete this session and its history?";
  $("delete-confirm").hidden = false; $("rename").hidden = $("delete").hidden = true;
  $("delete-no").focus();
});
const endDelete = () => { $("delete-confirm").hidden = true; $("rename").hidden = $("delete").hidden = false; };
$("delete-no").addEventListener("click", () => { endDelete(); refocus($("delete")); });
$("delete-yes").addEventListener("click", async () => {
  try {
    await api(`/api/sessions/${sessionId}`, { method: "DELETE" });
    localStorage.removeItem(`tether.draft.${sessionId}`);
    endDelete();
    closeSession();
    clearPage();
    localStorage.removeItem("tether.session");
    await enter();
  } catch (e) { $("delete-q").textContent = `Not deleted: ${clause(e.message)}.`; $("delete-no").focus(); }
});

async function openSession(id, { early = null, sessions = null } = {}) {
  closeSession();
  const gen = generation;
  sessionId = id;
  localStorage.setItem("tether.session", id);
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(params), session: id })}`);
  polled = null; pollError = null; lastEventTs = 0; loading = true;
  tree.reset(); tree.setStale(null); timeline.reset(); conversation.reset();
  renderChatChrome();
  $("message").value = localStorage.getItem(`tether.draft.${id}`) ?? "";
  if (form.agent) form.build(form.agent);
  const known = sessionsById.get(id);
  setTitle(known ? known.title || "Untitled session" : null);
  renderSessions(sessions).catch(() => {});
  setConn({ kind: "connecting", attempt: 0 });

  // The tree first (statuses of every task), then the log: all of it for a session of
  // normal size, its newest TAIL for a huge one (older pages load on demand). The tree and
  // the tail are asked for at once; a tail that reaches the start is the whole log.
  let cursor = 0;
  try {
    const [snap, tail] = await (early ?? firstLoad(id));
    if (gen !== generation) return;
    tree.adopt(snap.tasks);
    const evs = [];
    let older = false;
    if (snap.head_seq > FULL_LOAD || !tail.more) {
      evs.push(...tail.events);
      older = tail.more;
      cursor = tail.next_after;
    } else {
      for (;;) {
        const page = await api(`/api/sessions/${id}/events?after=${cursor}`);
        evs.push(...page.events);
        cursor = page.next_after;
        if (!page.more) break;
      }
    }
    if (gen !== generation) return;
    timeline.reset(older);
    applyEvents(evs);
    // The form is open where it is the way to start: no model to talk to, nothing run yet.
    $("advanced").open = document.body.classList.contains("no-model") && tree.size === 0;
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof ApiError && e.status === 404) { localStorage.removeItem("tether.session"); $("session-error").textContent = "That session is gone."; return; }
    cursor = 0; // the stream reads it all instead
  } finally { if (gen === generation) loading = false; }

  const p = (poller = new StatusPoller({ sessionId: id, tokens, intervalMs: POLL_MS, path: `/api/sessions/${id}/tasks?brief=true` }));
  p.addEventListener("status", (e) => { if (p === poller) polledOk(e.detail); });
  p.addEventListener("error", (e) => {
    // A poll asked before the network came back (its token refresh failed offline, say) says
    // nothing about the server.
    if (p === poller && e.detail.checkedAt >= onlineAt) { pollError = e.detail; renderConn(); }
  });

  const s = (session = new SharedSession({ sessionId: id, tokens }));
  s.addEventListener("events", (e) => { if (s === session) applyEvents(e.detail); });
  s.addEventListener("snapshot", (e) => { if (s === session) adopt(e.detail.tasks); });
  s.addEventListener("reset", () => { if (s === session) openSession(id); });
  s.addEventListener("heartbeat", () => { if (s === session) { lastLiveAt = Date.now(); } });
  s.addEventListener("state", (e) => { if (s === session) setConn(e.detail); });
  s.start(cursor);
}

// A status poll answered: the tree is fresh; if the log moved, read it over REST (a proxy
// may block only the stream); if the server just came back, retry the stream now.
function polledOk(detail) {
  const wasDown = !polled || pollError;
  polled = { checkedAt: detail.checkedAt, head: detail.head_seq };
  pollError = null;
  adopt(detail.tasks);
  if (conn.kind !== "live") {
    if (detail.head_seq > (session?.cursor ?? 0)) session?.catchUp().catch(() => {});
    if (wasDown) session?.poke();
  }
  renderConn();
}

// ---- start a task -------------------------------------------------------------------------

function fillAgents(agents) {
  agentsByName = new Map(agents.map((a) => [a.name, a]));
  const models = agents.filter((a) => a.kind === "model");
  const main = models.find((a) => a.default) ?? models[0];
  $("composer").hidden = !main;
  $("no-model").hidden = !!main;
  document.body.classList.toggle("no-model", !main);
  if (main) {
    $("chat-agent").textContent = main.ready ? `${main.name} · ${main.model}` : `${main.name} is not ready: ${main.problem}`;
    $("send").disabled = !main.ready;
  }
  // Internal agents (the batch's item agent) run only under another: not offered here.
  const startable = agents.filter((a) => a.kind !== "model" && !a.internal);
  const sel = $("agent");
  sel.replaceChildren(...startable.map((a) => new Option(a.name[0].toUpperCase() + a.name.slice(1), a.name)));
  sel.value = localStorage.getItem("tether.agent") ?? (startable.some((a) => a.name === "batch") ? "batch" : startable[0]?.name);
  if (!sel.value) sel.value = startable[0]?.name ?? "";
  const pick = () => {
    const a = agentsByName.get(sel.value);
    if (!a) return;
    localStorage.setItem("tether.agent", a.name);
    $("agent-help").textContent = firstSentence(a.description);
    form.build(a);
  };
  sel.onchange = pick;
  pick();
}

$("newtask").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("newtask-error").textContent = "";
  const input = form.value();
  if (!input) { $("newtask-error").textContent = "Some fields need fixing."; return; }
  $("start").disabled = true;
  try {
    await api(`/api/sessions/${sessionId}/tasks`, { method: "POST", body: JSON.stringify({ agent: $("agent").value, input }) });
    form.forget();
    refreshSessionsSoon();
  } catch (err) {
    const rest = err instanceof ApiError && err.problem?.errors ? form.showErrors(err.problem.errors) : err.message;
    $("newtask-error").textContent = rest || "Some fields need fixing.";
  } finally { $("start").disabled = false; }
});

// ---- conversation -------------------------------------------------------------------------

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  $("composer-error").textContent = "";
  $("send").disabled = true;
  try {
    await api(`/api/sessions/${sessionId}/messages`, { method: "POST", body: JSON.stringify({ text }) });
    $("message").value = "";
    localStorage.removeItem(`tether.draft.${sessionId}`);
    refreshSessionsSoon();
  } catch (err) { $("composer-error").textContent = sentence(err.message); }
  finally { $("send").disabled = false; $("message").focus(); }
});
$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("message").addEventListener("input", () => { if (sessionId) localStorage.setItem(`tether.draft.${sessionId}`, $("message").value); });

function renderChatChrome() {
  setHidden($("chat-empty"), conversation.turns.size > 0);
  const n = conversation.pendingApprovals;
  setHidden($("needs-you"), n === 0);
  setText($("needs-you"), n === 1 ? "1 approval needs you" : `${n} approvals need you`);
  renderTitle();
}

conversation.addEventListener("approvals", () => { renderChatChrome(); refreshSessionsSoon(); });
conversation.addEventListener("needsyou", (e) => {
  if (!loading) announce(`An agent needs you: it asks to run ${e.detail.tool}.`);
  if (document.visibilityState === "hidden" && "Notification" in window && Notification.permission === "granted") {
    new Notification("Tether: an agent needs you", { body: `It asks to run ${e.detail.tool}.`, tag: `approval-${e.detail.task}` });
  }
});

function renderTitle() {
  const needs = conversation.pendingApprovals > 0 ? "(needs you) " : "";
  const title = `${needs}${unseen ? `(${unseen}) ` : ""}Tether`;
  if (document.title !== title) document.title = title;
}

// ---- tasks and timeline -------------------------------------------------------------------

function adopt(list) {
  tree.adopt(list, (t, [was, now]) => noticeEnd(t, was, now));
  setText($("tab-tasks-n"), tree.roots().length ? `(${tree.roots().length})` : "");
}

function applyEvents(evs) {
  const named = new Set(); // tasks whose names came with these events
  let newRoot = false;
  for (const ev of evs) {
    const d = ev.data ?? {};
    let change = null;
    // An event the tree's snapshot already holds (the tail and the tree are read at once).
    const t = ev.task_id ? tree.get(ev.task_id) : undefined;
    const known = t?.last_seq >= ev.seq;
    if (t && !known) t.last_seq = ev.seq;
    if (known) { /* the timeline still shows it */ } else if (ev.type === "task.created") {
      change = tree.upsert(ev.task_id, { agent: d.agent, parent_id: d.parent_id ?? undefined, input: d.input, created_at: ev.ts, last_seq: ev.seq });
    } else if (ev.type === "task.status") {
      const f = { status: d.status };
      if (d.status === "running") f.started_at = ev.ts;
      if (TERMINAL.has(d.status)) { f.ended_at = ev.ts; if (d.error) f.error = d.error; }
      change = tree.upsert(ev.task_id, f);
    } else if (ev.type === "task.progress") tree.upsert(ev.task_id, { progress: { n: d.n, m: d.m } });
    if (change) noticeEnd(tree.get(ev.task_id), ...change);
    if (ev.type === "task.created") named.add(ev.task_id);
    if (ev.type === "task.created" && !ev.data?.parent_id) newRoot = true;
    if (ev.ts > lastEventTs) lastEventTs = ev.ts;
  }
  timeline.rename(named);
  conversation.applyMany(evs);
  if (newRoot) { renderChatChrome(); if (!loading) refreshSessionsSoon(); }
  timeline.add(evs);
  setText($("tab-tasks-n"), tree.roots().length ? `(${tree.roots().length})` : "");
}

// A top-level task ended while this page watched: say so once, to screen readers too.
function noticeEnd(t, was, now) {
  if (loading || !was || TERMINAL.has(was) || !TERMINAL.has(now) || t.parent_id) return;
  const words = { completed: "finished", failed: "failed", cancelled: "was cancelled", interrupted: "was interrupted" }[now];
  announce(`${taskName(t)} ${words}.`);
  refreshSessionsSoon();
  if (document.visibilityState === "hidden") {
    unseen += 1;
    renderTitle();
    if ("Notification" in window && Notification.permission === "granted") new Notification(`Tether: ${taskName(t)} ${words}`, { tag: t.id });
  }
}

function announce(text) {
  const el = $("announce");
  el.textContent = "";
  requestAnimationFrame(() => { el.textContent = text; });
}

setInterval(() => { tree.tick(); renderConn(); }, 1000);

// ---- connection indicator: what is known, and since when ----------------------------------

function setConn(s) {
  conn = s;
  if (s.kind === "live") { poller?.stop(); lastLiveAt = Date.now(); }
  else if (s.kind !== "connecting" || s.attempt > 0) poller?.start();
  renderConn();
}

// kind: live | connecting | reconnecting (the stream is down, the server answers) |
// unreachable (the server does not answer) | offline (this device has no network) | stopped
function connKind() {
  if (conn.kind === "stopped") return "stopped";
  if (conn.kind === "live") return "live";
  if (navigator.onLine === false) return "offline";
  if (pollError) return "unreachable";
  if (conn.kind === "connecting" && !conn.attempt) return "connecting";
  return "reconnecting";
}

function renderConn() {
  const kind = connKind();
  const el = $("conn");
  if (el.dataset.kind !== kind) el.dataset.kind = kind;
  let text, sub = "";
  const known = Math.max(lastLiveAt, polled?.checkedAt ?? 0);
  if (kind === "live") {
    text = "Live";
    if (lastEventTs) sub = `last update ${ago(Date.now() - lastEventTs * 1000)}`;
  } else if (kind === "offline") {
    text = "You're offline";
    sub = known ? `showing what the server said at ${clock(known, false)}` : "";
  } else if (kind === "unreachable") {
    text = "Server unreachable";
    sub = known ? `as of ${clock(known, false)} · trying again` : "trying again";
  } else if (kind === "reconnecting") {
    text = "Reconnecting";
    const t = tree.mainTask();
    sub = polled ? `checking every ${Math.round(POLL_MS / 1000) || 1} s meanwhile${t ? ` · ${taskName(t)}: ${t.status}${t.progress ? ` ${t.progress.n}/${t.progress.m}` : ""}` : ""}` : "";
  } else if (kind === "stopped") {
    text = conn.reason === "signed out" ? "Signed out" : "Stopped";
    sub = conn.reason === "signed out" ? "" : conn.reason ?? "";
  } else text = "Connecting…";
  setText($("conn-text"), text);
  setText($("conn-sub"), sub);
  setHidden($("retry"), !["reconnecting", "unreachable", "offline"].includes(kind));
  // Stale: nothing fresh from the server (the stream is down and polls fail or have not
  // answered yet): the tree is a picture from `known`, not the present.
  const stale = ["unreachable", "offline"].includes(kind) && sessionId;
  const asOf = stale ? known || Date.now() : null;
  if ((tree.asOf === null) !== (asOf === null)) tree.setStale(asOf);
  if ($("panel-tasks").hasAttribute("data-stale") !== !!stale) $("panel-tasks").toggleAttribute("data-stale", !!stale);
  setHidden($("stale"), !stale);
  setText($("stale"), stale ? `As of ${clock(asOf, false)}` : "");
}

$("retry").addEventListener("click", () => { session?.poke(); poller?.check(); });
window.addEventListener("online", () => { onlineAt = Date.now(); pollError = null; session?.poke(); poller?.check(); renderConn(); });
window.addEventListener("offline", renderConn);

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") { unseen = 0; renderTitle(); session?.poke(); }
});

if ("Notification" in window && Notification.permission === "default") {
  $("notify").hidden = false;
  $("notify").addEventListener("click", async () => { await Notification.requestPermission(); $("notify").hidden = true; });
}

// ---- phone: one panel at a time, sessions in a drawer ---------------------------------------

for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll("[role=tab]")];
    const i = tabs.indexOf(tab);
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") { const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length]; selectTab(next); next.focus(); }
  });
}
function selectTab(tab) {
  for (const t of document.querySelectorAll("[role=tab]")) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).classList.toggle("active", on);
  }
  if (tab.id === "tab-timeline" && timeline.follow) timeline.render();
  localStorage.setItem("tether.tab", tab.id);
}
selectTab($(localStorage.getItem("tether.tab") ?? "tab-chat") ?? $("tab-chat"));

function showSidebar(on) {
  document.body.classList.toggle("drawer", on);
  $("menu").setAttribute("aria-expanded", String(on));
  if (on && $("menu").offsetParent) $("sidebar").querySelector("a[aria-current]")?.focus();
}
$("menu").addEventListener("click", () => showSidebar(!document.body.classList.contains("drawer")));
// A tap beside the open drawer closes it, as on every phone.
$("backdrop").addEventListener("click", () => { showSidebar(false); $("menu").focus(); });
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  if (document.body.classList.contains("drawer")) { showSidebar(false); $("menu").focus(); }
  if (document.body.classList.contains("more-open")) { showMore(false); $("more").focus(); }
});

// The phone's header menu (⋯): Rename, Delete, the theme and Sign out.
function showMore(on) {
  document.body.classList.toggle("more-open", on);
  $("more").setAttribute("aria-expanded", String(on));
}
$("more").addEventListener("click", () => showMore(!document.body.classList.contains("more-open")));
document.addEventListener("click", (e) => { if (document.body.classList.contains("more-open") && !e.target.closest("#bar-actions, #more")) showMore(false); });
$("m-rename").addEventListener("click", () => { showMore(false); $("rename").click(); });
$("m-delete").addEventListener("click", () => { showMore(false); $("delete").click(); });

// ---- theme: light, dark or the system's (theme.js applied it before the first paint) ------------

const themePicker = $("theme");
themePicker.value = window.tetherTheme?.pref() ?? "system";
themePicker.addEventListener("change", () => window.tetherTheme?.set(themePicker.value));
document.addEventListener("themechange", (e) => { if (themePicker.value !== e.detail.pref) themePicker.value = e.detail.pref; });

// ---- start ----------------------------------------------------------------------------------

async function main() {
  if (await signInFromFragment()) return;
  if (await tokens.resume().catch(() => false)) return enter();
  showSignIn();
}

main();
