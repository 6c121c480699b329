// The Tether page. Connection logic lives in client.js, words in describe.js, the task tree
// in tree.js, the timeline in timeline.js, the task form in form.js; this file wires them.
import { AuthError, SharedSession, StatusPoller, TokenManager } from "./client.js";
import { Conversation, WINDOW } from "./chat.js";
import { AttachmentTray } from "./attachments.js";
import { TERMINAL, ago, clause, clock, sentence, taskName } from "./describe.js";
import { SchemaForm, firstSentence } from "./form.js";
import { Timeline } from "./timeline.js";
import { SearchBox, reveal } from "./search.js";
import { TaskTree } from "./tree.js";
import { setText } from "./dom.js";
import { ShareTokens, ownerTools, readOnly, shareToken, showEnded } from "./share.js";
import { UsageView } from "./usage.js";

/**
 * The page's element with this id (index.html has every one the script asks for); `tag`
 * names its kind for the type checker: `$("message", "textarea").value`.
 * @template {keyof HTMLElementTagNameMap} K
 * @overload
 * @param {string} id
 * @param {K} tag
 * @returns {HTMLElementTagNameMap[K]}
 */
/**
 * @overload
 * @param {string} id
 * @returns {HTMLElement}
 */
/** @param {string} id @param {string} [_tag] */
function $(id, _tag) { return /** @type {HTMLElement} */ (document.getElementById(id)); }
const setHidden = (el, on) => { if (el.hidden !== on) el.hidden = on; };
const params = new URLSearchParams(location.search);
// Test and soak runs shrink the status poll; the default suits people.
const POLL_MS = Number(params.get("poll_ms")) || 2000;
const FULL_LOAD = Number(params.get("full_load")) || 5000;  // more events: open on the newest TAIL
const TAIL = Number(params.get("tail")) || 1000;  // (tests shrink both)
const TAIL_FROM = "999999999999999999";  // before= this: the newest events, whatever the head

class ApiError extends Error {
  constructor(status, problem) {
    // A body that did not validate: what is wrong with it, in the server's plain words.
    const fields = problem?.errors?.length ? problem.errors.map((e) => clause(e.msg)).join("; ") : "";
    super(fields || problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// A page opened from a share link reads that one session with the link's token, signed in as
// nobody (share.js).
const shared = shareToken();
const tokens = /** @type {TokenManager} */ (/** @type {unknown} */ (shared ? new ShareTokens(shared) : new TokenManager()));
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
const conversation = new Conversation({
  root: $("conversation"), pill: $("chat-jump"), api: (p, i) => api(p, i),
  isModelAgent: (n) => agentsByName.get(n)?.kind === "model",
  loadTurns: (ids, after) => api(`/api/sessions/${sessionId}/events?${ids.map((id) => `task=${encodeURIComponent(id)}`).join("&")}&after=${after}`),
  // An edit goes to the agent that answered, if one can still be talked to.
  agentFor: (n) => (agentsByName.get(n)?.kind === "model" && !agentsByName.get(n).internal && agentsByName.get(n).ready ? n : undefined),
  fetchFile,
});
const tray = new AttachmentTray({
  form: $("composer", "form"), row: /** @type {HTMLElement} */ ($("composer").querySelector(".row")), box: $("message", "textarea"),
  api: (p, i) => api(p, i), say: (text) => { $("composer-error").textContent = text; },
});
const usage = new UsageView({ root: $("conversation"), header: $("session-usage"), api: (p, i) => api(p, i) });
conversation.addEventListener("turns", () => usage.render());
conversation.addEventListener("problem", (/** @type {CustomEvent} */ e) => { $("composer-error").textContent = e.detail; });
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

// A file of a session's workspace (an attachment), with the sign-in's token.
async function fetchFile(url) {
  const r = await fetch(url, { headers: await tokens.authHeader(), cache: "no-store" });
  if (!r.ok) { let body = null; try { body = await r.json(); } catch { /* not JSON */ } throw new ApiError(r.status, body); }
  return r.blob();
}

// ---- sign-in ------------------------------------------------------------------------------

function closeSession() {
  generation += 1;
  poller?.stop(); poller = null;      // first: its answer in flight must not land anywhere
  session?.close(); session = null;
  sessionId = null;
}

function clearPage() {
  tree.reset(); timeline.reset(); conversation.reset(); usage.reset();
  sessionList = []; sessionsNext = null;
  $("sessions").replaceChildren();
  setHidden($("sessions-skeleton"), false);
  setHidden($("sessions-empty"), true);
  setHidden($("sessions-more"), true);
  showNotFound(false);
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
  $("secret", "input").value = "";
  $("secret", "input").focus();
}

async function trySignIn(body) {
  $("signin-error").textContent = "";
  try { await tokens.signIn(body); await enter(); }
  catch (e) { $("signin-error").textContent = e instanceof AuthError ? e.message : `Could not reach the server: ${e.message}`; }
}

$("signin-secret").addEventListener("submit", (e) => { e.preventDefault(); trySignIn({ secret: $("secret", "input").value }); });
$("signin-user").addEventListener("submit", (e) => { e.preventDefault(); trySignIn({ username: $("username", "input").value, password: $("password", "input").value }); });
$("signout").addEventListener("click", async () => { await tokens.signOut(); });
tokens.addEventListener("signedout", (/** @type {CustomEvent} */ e) => {
  if (shared) { closeSession(); setConn({ kind: "stopped", reason: "link ended" }); showEnded(e.detail.reason); return; }
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

// While a session loads its panels show grey placeholders, not empty states that are not
// true yet ("No tasks yet" before the tasks came).
function setBusy(on) {
  if (($("main").getAttribute("aria-busy") === "true") === on) return;
  $("main").setAttribute("aria-busy", String(on));
  renderConn();
}

async function enter() {
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("signout").hidden = false;
  $("menu").hidden = false;
  setBusy(true);
  const linked = params.get("session");  // asked for by a link: a plain "not found" if it is not there
  let wanted = linked || localStorage.getItem("tether.session");
  // The session to open is known before the list comes: its tree and newest events are
  // asked for alongside it (on a reload of a big session, most of the time to live).
  let early = wanted ? firstLoad(wanted) : null;
  // (a session that is gone: openSession asks again and says so)
  if (early) for (const p of Object.values(early)) p.catch(() => {});
  const [page, { agents }] = await Promise.all([api(`/api/sessions?limit=${SESSION_PAGE}`), api("/api/agents")]);
  fillAgents(agents);
  // One older than the first page is looked up on its own (it is yours, or it is not found).
  let extra = null;
  if (wanted && !page.sessions.some((s) => s.id === wanted)) {
    extra = await api(`/api/sessions/${wanted}`).catch((e) => { if (e instanceof ApiError && e.status === 404) return null; throw e; });
  }
  if (!extra && wanted && !page.sessions.some((s) => s.id === wanted)) {
    if (linked) { adoptSessions(page); renderSessionList(); return notFound(); }
    localStorage.removeItem("tether.session");  // remembered, then deleted: open the newest
    wanted = null; early = null;
  }
  wanted ??= page.sessions[0]?.id;
  if (!wanted) {
    const made = await api("/api/sessions", { method: "POST", body: JSON.stringify({ title: "My first session" }) });
    page.sessions.unshift({ ...made, needs_you: 0, state: "empty" });
    wanted = made.id;
  }
  adoptSessions(page);
  if (extra) sessionsById.set(extra.id, extra);
  await openSession(/** @type {string} */ (wanted), { early, listed: true });
}

// ---- a session that is not there ------------------------------------------------------------

function showNotFound(on) {
  setHidden($("not-found"), !on);
  setHidden($("main"), on);
  setHidden($("conn"), on);  // no session: no connection to speak of
  if (on) { $("title-box").hidden = true; document.title = "Session not found · Tether"; }
}

function notFound() {
  closeSession();
  tree.reset(); timeline.reset(); conversation.reset();
  setBusy(false);
  setConn({ kind: "stopped", reason: "no session open" });
  showNotFound(true);
  $("to-sessions").focus();
}

$("to-sessions").addEventListener("click", async () => {
  showNotFound(false);
  const next = new URLSearchParams(location.search); next.delete("session");
  params.delete("session");
  history.replaceState(null, "", `?${next}`);
  localStorage.removeItem("tether.session");
  clearPage();
  await enter();
});

// A session's task tree and its newest TAIL events, asked for at once. With them, the
// conversation's skeleton (every turn, all branches) and its newest turns' events: the chat
// is drawn from it as soon as it comes, before the tree and the tail are in.
const firstLoad = (id) => ({
  tasks: api(`/api/sessions/${id}/tasks?brief=true`),
  tail: api(`/api/sessions/${id}/events?before=${TAIL_FROM}&limit=${TAIL}`),
  conversation: api(`/api/sessions/${id}/conversation?brief=true&events=${WINDOW}`),
});

const STATE_WORDS = { running: "Running", completed: "Done", failed: "Failed", interrupted: "Interrupted", cancelled: "Stopped", empty: "No tasks" };

// The sidebar holds the sessions loaded so far, newest first, a page at a time: scrolling
// to its end loads the next page. A refresh reads the first page again and keeps the older
// pages already loaded (a session created meanwhile comes in on top).
const SESSION_PAGE = 50;
let sessionList = [];     // loaded sessions, newest first
let sessionsNext = null;  // `before` of the next page, or null: all are loaded
let sessionsLoading = false;

const newer = (a, b) => (a.created_at !== b.created_at ? a.created_at > b.created_at : a.id > b.id);

// A fresh first page: it replaces what it covers; older pages already loaded are kept.
function adoptSessions(page) {
  const first = page.sessions;
  if (!page.next) { sessionList = first; sessionsNext = null; }
  else {
    const last = first[first.length - 1];
    const keep = sessionList.filter((s) => newer(last, s) && s.id !== last.id);
    sessionList = [...first, ...keep];
    if (!keep.length) sessionsNext = page.next;
  }
  for (const s of sessionList) sessionsById.set(s.id, s);
}

async function loadOlderSessions() {
  if (sessionsLoading || !sessionsNext) return;
  sessionsLoading = true;
  const gen = generation;
  setText($("sessions-more"), "Loading older sessions…");
  try {
    const page = await api(`/api/sessions?limit=${SESSION_PAGE}&before=${encodeURIComponent(sessionsNext)}`);
    if (gen !== generation && !sessionId) return;
    const have = new Set(sessionList.map((s) => s.id));
    sessionList.push(...page.sessions.filter((s) => !have.has(s.id)));
    for (const s of page.sessions) sessionsById.set(s.id, s);
    sessionsNext = page.next;
    renderSessionList();
  } catch (e) { $("session-error").textContent = `Could not load older sessions: ${e.message}`; return; }
  finally { sessionsLoading = false; setText($("sessions-more"), "Show older sessions"); }
  // Still at the end (a tall sidebar): the next page too.
  const bar = $("sidebar");
  requestAnimationFrame(() => { if (sessionsNext && bar.scrollHeight - bar.scrollTop - bar.clientHeight < 200) loadOlderSessions(); });
}
$("sessions-more").addEventListener("click", () => loadOlderSessions());
// Scrolled near its end, the sidebar loads the next page by itself.
new IntersectionObserver((seen) => { if (seen.some((e) => e.isIntersecting)) loadOlderSessions(); }, { root: $("sidebar"), rootMargin: "0px 0px 200px 0px" }).observe($("sessions-more"));

async function renderSessions() {
  if (shared) return;  // a share link reads its one session, not a list (that would be a 403)
  const gen = generation;
  const page = await api(`/api/sessions?limit=${SESSION_PAGE}`);
  if (gen !== generation && !sessionId) return;
  adoptSessions(page);
  renderSessionList();
}

function renderSessionList() {
  setHidden($("sessions-skeleton"), true);
  const sessions = sessionList;
  setHidden($("sessions-empty"), sessions.length > 0);
  setHidden($("sessions-more"), !sessionsNext);
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
  if (me && $("rename-form").hidden) setTitle(me.title || "Untitled session");
}

// The open session's title, with Rename and Delete beside it; null: not known yet, so
// nothing shows (never the buttons beside a blank title).
function setTitle(title) {
  $("session-title").textContent = title ?? "";
  $("title-box").hidden = title === null;
  $("m-rename").hidden = $("m-delete").hidden = title === null;
}

// A new title, from this tab, another one, or another device (a `session.renamed` event).
function renamed(id, title) {
  const s = sessionsById.get(id);
  if (s) s.title = title;
  const li = $("sessions").querySelector(`li[data-session="${CSS.escape(id)}"] .s-title`);
  if (li) li.textContent = title || "Untitled session";
  if (id === sessionId && $("rename-form").hidden) setTitle(title || "Untitled session");
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
  $("rename-input", "input").value = $("session-title").textContent;
  $("rename-form").hidden = false;
  $("rename").hidden = $("delete").hidden = $("session-title").hidden = true;
  $("rename-input", "input").select();
});
// Back to the button that opened it: Rename beside the title, or the phone's menu button.
const refocus = (el) => (el.offsetParent ? el : $("more")).focus();
const endRename = () => { $("rename-form").hidden = true; $("rename").hidden = $("delete").hidden = $("session-title").hidden = false; refocus($("rename")); };
$("rename-cancel").addEventListener("click", endRename);
$("rename-form").addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); endRename(); } });
$("rename-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const s = await api(`/api/sessions/${sessionId}`, { method: "PATCH", body: JSON.stringify({ title: $("rename-input", "input").value }) });
    endRename();
    renamed(s.id, s.title);
  } catch (err) { $("session-error").textContent = sentence(err.message); }
});
$("delete").addEventListener("click", () => {
  $("delete-q").textContent = "Delete this session and its history?";
  $("delete-confirm").hidden = false; $("rename").hidden = $("delete").hidden = true;
  $("delete-no").focus();
});
const endDelete = () => { $("delete-confirm").hidden = true; $("rename").hidden = $("delete").hidden = false; };
$("delete-no").addEventListener("click", () => { endDelete(); refocus($("delete")); });
// Esc answers the question "Keep" (and is not also the page's Esc, which stops a reply).
$("delete-confirm").addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); endDelete(); refocus($("delete")); } });
$("delete-yes").addEventListener("click", async () => {
  try {
    await api(`/api/sessions/${sessionId}`, { method: "DELETE" });
    localStorage.removeItem(`tether.draft.${sessionId}`);
    endDelete();
    closeSession();
    clearPage();
    localStorage.removeItem("tether.session");
    params.delete("session");  // the link was to the session now deleted
    await enter();
  } catch (e) { $("delete-q").textContent = `Not deleted: ${clause(e.message)}.`; $("delete-no").focus(); }
});

/** @param {string} id @param {{ early?: object | null, listed?: boolean }} [options] */
async function openSession(id, { early = null, listed = false } = {}) {
  closeSession();
  showNotFound(false);
  setBusy(true);
  const gen = generation;
  sessionId = id;
  localStorage.setItem("tether.session", id);
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(params), session: id })}${location.hash}`);
  polled = null; pollError = null; lastEventTs = 0; loading = true;
  tree.reset(); tree.setStale(null); timeline.reset(); conversation.reset();
  conversation.sessionId = id;
  tray.clear();
  // The tokens and cost are extras: the chat works without them. They are the owner's
  // (GET …/usage refuses a share link's token), so a shared view does not ask.
  if (!shared) usage.load(id).catch(() => {});
  renderChatChrome();
  $("message", "textarea").value = localStorage.getItem(`tether.draft.${id}`) ?? "";
  if (form.agent) form.build(form.agent);
  const known = sessionsById.get(id);
  setTitle(known ? known.title || "Untitled session" : null);
  if (listed) renderSessionList(); else renderSessions().catch(() => {});
  setConn({ kind: "connecting", attempt: 0 });

  // The tree first (statuses of every task), then the log: all of it for a session of
  // normal size, its newest TAIL for a huge one (older pages load on demand). The tree and
  // the tail are asked for at once; a tail that reaches the start is the whole log.
  let cursor = 0;
  try {
    const load = early ?? firstLoad(id);
    const skeleton = await load.conversation;
    if (gen !== generation) return;
    conversation.adopt(skeleton.turns);
    conversation.preload(skeleton.events ?? []);
    conversation.layout();
    const [snap, tail] = await Promise.all([load.tasks, load.tail]);
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
    conversation.layout();
    // The form is open where it is the way to start: no model to talk to, nothing run yet.
    $("advanced", "details").open = document.body.classList.contains("no-model") && tree.size === 0;
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof ApiError && e.status === 404) { localStorage.removeItem("tether.session"); notFound(); return; }
    cursor = 0; // the stream reads it all instead
  } finally { if (gen === generation) { loading = false; setBusy(false); } }

  const p = (poller = new StatusPoller({ sessionId: id, tokens, intervalMs: POLL_MS, path: `/api/sessions/${id}/tasks?brief=true` }));
  p.addEventListener("status", (/** @type {CustomEvent} */ e) => { if (p === poller) polledOk(e.detail); });
  p.addEventListener("error", (/** @type {CustomEvent} */ e) => {
    // A poll asked before the network came back (its token refresh failed offline, say) says
    // nothing about the server.
    if (p === poller && e.detail.checkedAt >= onlineAt) { pollError = e.detail; renderConn(); }
  });

  // (A share link's page keeps its stream to itself: the owner's tabs in this browser use theirs.)
  const s = (session = new SharedSession({ sessionId: id, tokens, ...(shared ? { locks: null } : {}) }));
  s.addEventListener("events", (/** @type {CustomEvent} */ e) => { if (s === session) applyEvents(e.detail); });
  s.addEventListener("snapshot", (/** @type {CustomEvent} */ e) => { if (s === session) adopt(e.detail.tasks); });
  s.addEventListener("reset", () => { if (s === session) openSession(id); });
  s.addEventListener("heartbeat", () => { if (s === session) { lastLiveAt = Date.now(); } });
  s.addEventListener("state", (/** @type {CustomEvent} */ e) => { if (s === session) setConn(e.detail); });
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
  // Internal agents (sub-agents only, say) are not offered to talk to.
  const models = agents.filter((a) => a.kind === "model" && !a.internal);
  const main = models.find((a) => a.default) ?? models[0];
  $("composer", "form").hidden = !main;
  $("no-model").hidden = !!main;
  document.body.classList.toggle("no-model", !main);
  if (main) fillPicker(models, main);
  // Internal agents (the batch's item agent) run only under another: not offered here.
  const startable = agents.filter((a) => a.kind !== "model" && !a.internal);
  const sel = $("agent", "select");
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

// The model agents one can talk to, with whether each is ready (and why not); the one picked
// last in this browser, else the default.
function fillPicker(models, main) {
  const pick = $("chat-agent-pick", "select");
  pick.replaceChildren(...models.map((a) => {
    const label = `${a.name}${a.demo && !/demo/i.test(a.name) ? " (demo)" : ""}${a.ready ? "" : " — not ready"}`;
    const o = new Option(label, a.name);
    o.title = a.ready ? `${a.model ?? ""}${a.description ? ` · ${firstSentence(a.description)}` : ""}` : a.problem ?? "not ready";
    return o;
  }));
  const kept = localStorage.getItem("tether.chatAgent");
  pick.value = models.some((a) => a.name === kept) ? kept : main.name;
  pick.onchange = () => { localStorage.setItem("tether.chatAgent", pick.value); pickedAgent(); };
  pickedAgent();
}

function pickedAgent() {
  const a = agentsByName.get($("chat-agent-pick", "select").value);
  if (!a) return;
  setText($("chat-agent"), a.ready ? a.model ?? "" : `Not ready: ${a.problem}`);
  $("chat-agent").classList.toggle("error", !a.ready);
  $("send", "button").disabled = !a.ready;
  setHidden($("demo-note"), !a.demo);
}

$("newtask").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("newtask-error").textContent = "";
  const input = form.value();
  if (!input) { $("newtask-error").textContent = "Some fields need fixing."; return; }
  $("start", "button").disabled = true;
  try {
    await api(`/api/sessions/${sessionId}/tasks`, { method: "POST", body: JSON.stringify({ agent: $("agent", "select").value, input }) });
    form.forget();
    refreshSessionsSoon();
  } catch (err) {
    const rest = err instanceof ApiError && err.problem?.errors ? form.showErrors(err.problem.errors) : err.message;
    $("newtask-error").textContent = rest || "Some fields need fixing.";
  } finally { $("start", "button").disabled = false; }
});

// ---- conversation -------------------------------------------------------------------------

$("composer", "form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("message", "textarea").value.trim();
  if (!text && !tray.count) return;  // files alone are a message (the box is not required then)
  $("composer-error").textContent = "";
  $("send", "button").disabled = true;
  conversation.followNow();  // what one sends is in view, however far up one had scrolled
  try {
    const agent = $("chat-agent-pick", "select").value || undefined;
    const attachments = tray.count ? await tray.upload(sessionId) : undefined;
    await api(`/api/sessions/${sessionId}/messages`, { method: "POST", body: JSON.stringify({ text, agent, attachments }) });
    $("message", "textarea").value = "";
    tray.clear();
    localStorage.removeItem(`tether.draft.${sessionId}`);
    refreshSessionsSoon();
  } catch (err) { $("composer-error").textContent = sentence(err.message); }
  finally { pickedAgent(); $("message", "textarea").focus(); }
});

// Stop: every turn of this session that has not ended (the one writing, and any waiting
// behind it) is cancelled on the server, sub-agents and all; what was shown stays.
async function stopTurns() {
  const ids = conversation.unfinished();
  if (!ids.length) return false;
  $("composer-error").textContent = "";
  $("stop", "button").disabled = true;
  try {
    await Promise.all(ids.map((id) => api(`/api/tasks/${id}/cancel`, { method: "POST" })));
    announce("Stopped.");
  } catch (err) { $("composer-error").textContent = `Not stopped: ${clause(err.message)}.`; }
  finally { $("stop", "button").disabled = false; }
  return true;
}
$("stop", "button").addEventListener("click", () => stopTurns());
conversation.addEventListener("turns", () => {
  const ids = conversation.unfinished();
  setHidden($("stop", "button"), ids.length === 0);
  $("stop", "button").setAttribute("aria-label", ids.length > 1 ? `Stop the reply and the ${ids.length - 1} waiting (Esc)` : "Stop the reply (Esc)");
});
$("message", "textarea").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer", "form").requestSubmit(); }
  // ↑ in an empty box edits the last message (the conversation provides editLast).
  if (e.key === "ArrowUp" && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing && $("message", "textarea").value === "" && typeof conversation.editLast === "function") {
    e.preventDefault();
    conversation.editLast();
  }
});
$("message", "textarea").addEventListener("input", () => { if (sessionId) localStorage.setItem(`tether.draft.${sessionId}`, $("message", "textarea").value); });

function renderChatChrome() {
  setHidden($("chat-empty"), conversation.size > 0);
  const n = conversation.pendingApprovals;
  setHidden($("needs-you"), n === 0);
  setText($("needs-you"), n === 1 ? "1 approval needs you" : `${n} approvals need you`);
  // On a phone the Chat tab says so from the other tabs, and the task in the tree says which.
  setHidden($("tab-chat-needs"), n === 0);
  setText($("tab-chat-needs"), n === 1 ? "needs you" : `${n} need you`);
  tree.setNeeds(conversation.needing());
  renderTitle();
}

conversation.addEventListener("approvals", () => { renderChatChrome(); refreshSessionsSoon(); });
// "1 approval needs you": takes you to it (its version of the conversation shown).
$("needs-you").addEventListener("click", () => { selectTab($("tab-chat")); conversation.showApproval(); });
conversation.addEventListener("needsyou", (/** @type {CustomEvent} */ e) => {
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
  tree.adopt(list, (t, [was, now]) => { noticeEnd(t, was, now); if (was !== now) conversation.setStatus(t.id, now); });
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
    // (Whether a turn still waits for the one before it is in no snapshot: from the events.)
    if (ev.type === "turn.waiting" && t && !t.started) tree.upsert(ev.task_id, { waiting: true });
    else if ((ev.type === "RUN_STARTED" || ev.type === "TEXT_MESSAGE_START") && t && !t.started) tree.upsert(ev.task_id, { waiting: false, started: true });
    if (change) noticeEnd(tree.get(ev.task_id), ...change);
    if (ev.type === "session.renamed" && ev.session_id === sessionId) { renamed(sessionId, d.title); if (!loading) tellTabs({ renamed: sessionId, title: d.title }); }
    if (ev.type === "task.created") named.add(ev.task_id);
    if (ev.type === "task.created" && !ev.data?.parent_id) newRoot = true;
    // The sidebar says what the session's top-level tasks do: any change of theirs.
    if (ev.type === "task.status" && !ev.parent_task_id && !loading) refreshSessionsSoon();
    if (ev.ts > lastEventTs) lastEventTs = ev.ts;
  }
  timeline.rename(named);
  conversation.applyMany(evs);
  usage.apply(evs);
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

let ticks = 0;
setInterval(() => { tree.tick(); renderConn(); if (++ticks % 15 === 0) conversation.refreshTimes(); }, 1000);

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
    text = { "signed out": "Signed out", "no session open": "No session open" }[conn.reason] ?? "Stopped";
    sub = ["signed out", "no session open"].includes(conn.reason) ? "" : conn.reason ?? "";
  } else text = $("main").getAttribute("aria-busy") === "true" ? "Loading…" : "Connecting…";
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

// The phone's tabs (buttons in index.html).
const tabList = () => /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[role=tab]"));
for (const tab of tabList()) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
    const tabs = [...tabList()];
    const i = tabs.indexOf(tab);
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") { const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length]; selectTab(next); next.focus(); }
  });
}
function selectTab(tab) {
  for (const t of tabList()) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(/** @type {string} */ (t.getAttribute("aria-controls"))).classList.toggle("active", on);
  }
  if (tab.id === "tab-timeline" && timeline.follow) timeline.render();
  localStorage.setItem("tether.tab", tab.id);
}
selectTab($(localStorage.getItem("tether.tab") ?? "tab-chat") ?? $("tab-chat"));

function showSidebar(on) {
  document.body.classList.toggle("drawer", on);
  $("menu").setAttribute("aria-expanded", String(on));
  if (on && $("menu").offsetParent) /** @type {HTMLElement | null} */ ($("sidebar").querySelector("a[aria-current]"))?.focus();
}
$("menu").addEventListener("click", () => showSidebar(!document.body.classList.contains("drawer")));
// A tap beside the open drawer closes it, as on every phone.
$("backdrop").addEventListener("click", () => { showSidebar(false); $("menu").focus(); });

// The phone's header menu (⋯): Rename, Delete, the theme and Sign out.
function showMore(on) {
  document.body.classList.toggle("more-open", on);
  $("more").setAttribute("aria-expanded", String(on));
}
$("more").addEventListener("click", () => showMore(!document.body.classList.contains("more-open")));
document.addEventListener("click", (e) => { if (document.body.classList.contains("more-open") && !/** @type {Element} */ (e.target).closest("#bar-actions, #more")) showMore(false); });
$("m-rename").addEventListener("click", () => { showMore(false); $("rename").click(); });
$("m-delete").addEventListener("click", () => { showMore(false); $("delete").click(); });

// ---- theme: light, dark or the system's (theme.js applied it before the first paint) ------------

const themePicker = $("theme", "select");
themePicker.value = window.tetherTheme?.pref() ?? "system";
themePicker.addEventListener("change", () => window.tetherTheme?.set(themePicker.value));
document.addEventListener("themechange", (e) => { if (themePicker.value !== e.detail.pref) themePicker.value = e.detail.pref; });

// ---- keyboard -------------------------------------------------------------------------------

// Typing in a field: keys are text, not shortcuts.
const typing = (el) => el instanceof HTMLElement && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

function showShortcuts() {
  const d = $("shortcuts", "dialog");
  if (!d.open) d.showModal();
  $("shortcuts-close").focus();
}
$("show-keys").addEventListener("click", showShortcuts);

// ---- search (search.js) -----------------------------------------------------------------------

const search = new SearchBox({
  input: $("search", "input"), list: $("search-results"), status: $("search-status"),
  api: (p) => api(p), open: openHit,
});
async function openHit(hit) {
  showSidebar(false);
  if (hit.session_id !== sessionId) await openSession(hit.session_id);
  reveal(hit, {
    conversation, root: $("conversation"), timeline: $("timeline"), tree: $("tree"),
    show: (panel) => selectTab($(`tab-${panel}`)),
  });
}

document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.isComposing) return;
  const signedIn = !$("app-view").hidden;
  // Ctrl/⌘+K: search your sessions, from anywhere.
  if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "k") {
    if (!signedIn) return;
    e.preventDefault();
    $("shortcuts", "dialog").close();
    if (!$("menu").offsetParent) { search.focus(); return; }
    // A phone: the search is in the drawer, focusable once it is shown (a frame on).
    showSidebar(true);
    requestAnimationFrame(() => requestAnimationFrame(() => search.focus()));
    return;
  }
  if (e.key === "Escape") {
    // What is open closes first (a dialog closes itself: the shortcuts, Share); then Esc
    // stops the reply.
    if (document.querySelector("dialog[open]")) return;
    if (document.body.classList.contains("more-open")) { showMore(false); $("more").focus(); return; }
    if (document.body.classList.contains("drawer")) { showSidebar(false); $("menu").focus(); return; }
    if (!signedIn || (typing(e.target) && e.target !== $("message", "textarea"))) return;
    if (conversation.unfinished().length) { e.preventDefault(); stopTurns(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target) || !signedIn || $("shortcuts", "dialog").open) return;
  if (e.key === "/" && !$("composer", "form").hidden && !$("main").hidden) {
    e.preventDefault();
    selectTab($("tab-chat"));
    $("message", "textarea").focus();
  } else if (e.key === "?") {
    e.preventDefault();
    showShortcuts();
  } else if (e.key === "n") {
    e.preventDefault();
    $("new-session").click();
  }
});

// ---- other tabs of this browser ---------------------------------------------------------------

// A rename reaches the tabs on that session through its log; tabs on other sessions hear of
// it here, for their sidebar.
const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel("tether.sessions") : null;
function tellTabs(msg) { tabs?.postMessage(msg); }
if (tabs) tabs.onmessage = (e) => { if (e.data?.renamed && e.data.renamed !== sessionId) renamed(e.data.renamed, e.data.title); };

// ---- start ----------------------------------------------------------------------------------

// A share link: the one session it reads, and nothing that writes.
async function enterShared() {
  readOnly();
  const { session_id: id } = await api("/api/share");
  sessionsById.set(id, await api(`/api/sessions/${id}`));  // its title
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  await openSession(id);
}

if (!shared) ownerTools({ api, authHeader: () => tokens.authHeader(), sessionId: () => sessionId, closeMenu: () => showMore(false) });

async function main() {
  if (shared) return enterShared().catch(() => {});  // an ended link: "signedout" said why
  if (await signInFromFragment()) return;
  if (await tokens.resume().catch(() => false)) return enter();
  showSignIn();
}

main();
