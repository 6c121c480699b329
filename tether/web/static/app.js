// The Tether page. All connection logic lives in client.js; this file only renders.
import { AuthError, SharedSession, StatusPoller, TokenManager, problemDetail } from "./client.js";
import { Conversation } from "./chat.js";

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);
const params = new URLSearchParams(location.search);
// Test and soak runs shrink the status poll; the default suits people.
const POLL_MS = Number(params.get("poll_ms")) || 2000;

const tokens = new TokenManager();
let session = null;   // SharedSession
let poller = null;    // StatusPoller
let sessionId = null;
const tasks = new Map();          // id -> task (status, progress, agent, parent_id, timestamps)
let conn = { kind: "connecting" };
let lastBeat = 0;
let polled = null;                // {tasks, checkedAt} from the poller
let pollError = null;
let unseen = 0;
let modelAgents = new Map();      // name -> agent (kind "model")
const conversation = new Conversation({ root: $("conversation"), api: (p, i) => api(p, i), isModelAgent: (n) => modelAgents.has(n) });

// ---- api ----------------------------------------------------------------------------------

async function api(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { "content-type": "application/json", ...(await tokens.authHeader()) };
    const r = await fetch(path, { ...init, headers, cache: "no-store" });
    if (r.status === 401 && attempt === 0) { await tokens.refresh(); continue; }
    if (!r.ok) throw new Error(await problemDetail(r));
    return r.status === 204 ? null : r.json();
  }
}

// ---- sign-in ------------------------------------------------------------------------------

function showSignIn(why = "") {
  $("app-view").hidden = true;
  $("signout").hidden = true;
  $("signin-view").hidden = false;
  $("signin-why").textContent = why;
  setConn({ kind: "stopped", reason: "signed out" });
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
  session?.close(); poller?.stop();
  showSignIn(`Your sign-in ended (${e.detail.reason}). Sign in again to continue; your tasks kept running.`);
});

// ---- sessions -----------------------------------------------------------------------------

async function enter() {
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("signout").hidden = false;
  const [{ sessions }, { agents }] = await Promise.all([api("/api/sessions"), api("/api/agents")]);
  fillAgents(agents);
  let wanted = params.get("session") || localStorage.getItem("tether.session");
  if (!sessions.some((s) => s.id === wanted)) wanted = sessions[0]?.id;
  if (!wanted) wanted = (await api("/api/sessions", { method: "POST", body: JSON.stringify({ title: "My first session" }) })).id;
  await renderSessions();
  openSession(wanted);
}

async function renderSessions() {
  const { sessions } = await api("/api/sessions");
  const ul = $("sessions");
  ul.replaceChildren(...sessions.map((s) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `?session=${s.id}`;
    a.textContent = s.title || s.id;
    if (s.needs_you) {
      const b = document.createElement("span"); b.className = "needs"; b.textContent = "needs you";
      a.append(" ", b);
    }
    if (s.id === sessionId) a.setAttribute("aria-current", "page");
    a.addEventListener("click", (e) => { e.preventDefault(); openSession(s.id); });
    li.append(a);
    return li;
  }));
}

$("new-session").addEventListener("click", async () => {
  const title = `Session ${new Date().toLocaleString()}`;
  const s = await api("/api/sessions", { method: "POST", body: JSON.stringify({ title }) });
  openSession(s.id);
});

function openSession(id) {
  session?.close(); poller?.stop();
  sessionId = id;
  localStorage.setItem("tether.session", id);
  history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(params), session: id })}`);
  tasks.clear(); polled = null; pollError = null;
  $("timeline").replaceChildren();
  conversation.reset(); renderChatChrome();
  $("message").value = localStorage.getItem(`tether.draft.${id}`) ?? "";
  renderTree();
  renderSessions().catch(() => {});
  api(`/api/sessions/${id}`).then((s) => { $("session-title").textContent = s.title || s.id; }).catch(() => {});

  poller = new StatusPoller({ sessionId: id, tokens, intervalMs: POLL_MS });
  poller.addEventListener("status", (e) => { polled = e.detail; pollError = null; adoptStatuses(e.detail.tasks); renderConn(); });
  poller.addEventListener("error", (e) => { pollError = e.detail; renderConn(); });

  session = new SharedSession({ sessionId: id, tokens });
  session.addEventListener("event", (e) => applyEvent(e.detail));
  session.addEventListener("snapshot", (e) => adoptStatuses(e.detail.tasks));
  session.addEventListener("reset", (e) => { tasks.clear(); $("timeline").replaceChildren(); conversation.reset(); adoptStatuses(e.detail.tasks); renderChatChrome(); });
  session.addEventListener("heartbeat", () => { lastBeat = Date.now(); renderConn(); });
  session.addEventListener("state", (e) => setConn(e.detail));
  session.start(0);
}

// ---- new task -----------------------------------------------------------------------------

const EXAMPLES = {
  batch: { items: ["first item", "second item", "third item", "fourth item"], delay_s: 2, parallel: 1 },
  item: { item: "hello", delay_s: 1 },
};

function fillAgents(agents) {
  modelAgents = new Map(agents.filter((a) => a.kind === "model").map((a) => [a.name, a]));
  const main = [...modelAgents.values()].find((a) => a.default) ?? [...modelAgents.values()][0];
  $("composer").hidden = !main;
  $("no-model").hidden = !!main;
  $("advanced").open = !main;
  if (main) {
    $("chat-agent").textContent = main.ready ? `${main.name} · ${main.model}` : `${main.name} is not ready: ${main.problem}`;
    $("send").disabled = !main.ready;
  }
  const sel = $("agent");
  sel.replaceChildren(...agents.map((a) => new Option(`${a.name} — ${a.description}`, a.name)));
  sel.value = agents.some((a) => a.name === "batch") ? "batch" : agents[0]?.name;
  const example = () => { $("task-input").value = JSON.stringify(EXAMPLES[sel.value] ?? {}, null, 2); };
  sel.onchange = example;
  example();
}

$("newtask").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("newtask-error").textContent = "";
  let input;
  try { input = JSON.parse($("task-input").value || "{}"); } catch { $("newtask-error").textContent = "The input is not valid JSON."; return; }
  try { await api(`/api/sessions/${sessionId}/tasks`, { method: "POST", body: JSON.stringify({ agent: $("agent").value, input }) }); }
  catch (err) { $("newtask-error").textContent = err.message; }
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
  } catch (err) { $("composer-error").textContent = err.message; }
  finally { $("send").disabled = false; $("message").focus(); }
});
$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("message").addEventListener("input", () => { if (sessionId) localStorage.setItem(`tether.draft.${sessionId}`, $("message").value); });

function renderChatChrome() {
  $("chat-empty").hidden = conversation.turns.size > 0;
  const n = conversation.pendingApprovals;
  $("needs-you").hidden = n === 0;
  $("needs-you").textContent = n === 1 ? "1 approval needs you" : `${n} approvals need you`;
  renderTitle();
}

let sessionsQueued = null;
conversation.addEventListener("approvals", () => {
  renderChatChrome();
  clearTimeout(sessionsQueued);
  sessionsQueued = setTimeout(() => renderSessions().catch(() => {}), 300);
});
conversation.addEventListener("needsyou", (e) => {
  if (document.visibilityState === "hidden" && "Notification" in window && Notification.permission === "granted") {
    new Notification("Tether: an agent needs you", { body: `It asks to run ${e.detail.tool}.`, tag: `approval-${e.detail.task}` });
  }
});

function renderTitle() {
  const needs = conversation.pendingApprovals > 0 ? "(needs you) " : "";
  document.title = `${needs}${unseen ? `(${unseen}) ` : ""}Tether`;
}

// ---- tasks and timeline -------------------------------------------------------------------

function adoptStatuses(list) {
  const walk = (ts) => { for (const t of ts) { upsert(t.id, t); if (Array.isArray(t.children) && typeof t.children[0] === "object") walk(t.children); } };
  walk(list);
  renderTree();
}

function upsert(id, fields) {
  const old = tasks.get(id) ?? { id, status: "queued" };
  const t = { ...old, ...fields };
  if (fields.children && typeof fields.children[0] === "object") t.children = undefined;
  if (old.status && !TERMINAL.has(old.status) && TERMINAL.has(t.status)) taskEnded(t);
  tasks.set(id, t);
  return t;
}

function applyEvent(ev) {
  const d = ev.data ?? {};
  if (ev.type === "task.created") upsert(ev.task_id, { agent: d.agent, parent_id: d.parent_id, created_at: ev.ts });
  else if (ev.type === "task.status") {
    const f = { status: d.status };
    if (d.status === "running") f.started_at = ev.ts;
    if (TERMINAL.has(d.status)) { f.ended_at = ev.ts; if (d.error) f.error = d.error; }
    upsert(ev.task_id, f);
  } else if (ev.type === "task.progress") upsert(ev.task_id, { progress: { n: d.n, m: d.m } });
  conversation.apply(ev);
  if (ev.type === "task.created") renderChatChrome();
  appendToTimeline(ev);
  scheduleTree();
}

function groupFor(taskId, parentId) {
  let g = document.getElementById(`g-${taskId}`);
  if (g) return g;
  g = document.createElement("section");
  g.className = "group";
  g.id = `g-${taskId}`;
  g.dataset.task = taskId;
  const h = document.createElement("h3");
  const t = tasks.get(taskId);
  h.textContent = `${t?.agent ?? "task"} · ${taskId}`;
  const list = document.createElement("div");
  list.className = "events";
  g.append(h, list);
  const parent = parentId ? groupFor(parentId, tasks.get(parentId)?.parent_id) : null;
  (parent ? parent : $("timeline")).append(g);
  return g;
}

function summary(data) {
  if (data === null || data === undefined) return "";
  const text = JSON.stringify(data);
  return text.length > 240 ? `${text.slice(0, 240)}…` : text;
}

function appendToTimeline(ev) {
  const g = groupFor(ev.task_id ?? "session", ev.parent_task_id);
  const row = document.createElement("div");
  row.className = "ev";
  row.dataset.seq = ev.seq;
  const seq = document.createElement("span"); seq.className = "seq"; seq.textContent = ev.seq;
  const type = document.createElement("span"); type.className = "type"; type.textContent = ev.type;
  const data = document.createElement("span"); data.className = "data"; data.textContent = summary(ev.data);
  row.append(seq, type, data);
  g.querySelector(":scope > .events").append(row);
  const tl = $("timeline");
  if (tl.scrollHeight - tl.scrollTop - tl.clientHeight < 80) tl.scrollTop = tl.scrollHeight;
}

let treeQueued = false;
function scheduleTree() {
  if (treeQueued) return;
  treeQueued = true;
  requestAnimationFrame(() => { treeQueued = false; renderTree(); });
}

function elapsed(t) {
  if (!t.started_at) return "";
  const end = t.ended_at ?? Date.now() / 1000;
  const s = Math.max(0, Math.round(end - t.started_at));
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor(s / 60) % 60}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

function taskNode(t) {
  const li = document.createElement("li");
  li.className = "task";
  li.dataset.task = t.id;
  li.dataset.status = t.status;
  const head = document.createElement("div");
  head.className = "head";
  const name = document.createElement("span"); name.className = "name"; name.textContent = t.agent ?? "task";
  const badge = document.createElement("span"); badge.className = "badge"; badge.dataset.status = t.status; badge.textContent = t.status;
  head.append(name, badge);
  if (t.progress) {
    const p = document.createElement("progress");
    p.max = t.progress.m || 1; p.value = t.progress.n;
    p.setAttribute("aria-label", `progress ${t.progress.n} of ${t.progress.m}`);
    const n = document.createElement("span"); n.className = "progress-text"; n.textContent = `${t.progress.n}/${t.progress.m}`;
    head.append(p, n);
  }
  const el = document.createElement("span"); el.className = "elapsed"; el.dataset.elapsed = t.id; el.textContent = elapsed(t);
  head.append(el);
  if (!TERMINAL.has(t.status)) {
    const b = document.createElement("button");
    b.className = "danger"; b.textContent = "Cancel"; b.setAttribute("aria-label", `Cancel ${t.agent ?? "task"} ${t.id}`);
    b.addEventListener("click", () => api(`/api/tasks/${t.id}/cancel`, { method: "POST" }).catch((e) => alert(e.message)));
    head.append(b);
  }
  li.append(head);
  if (t.error) {
    const err = document.createElement("div"); err.className = "error"; err.textContent = t.error.message ?? JSON.stringify(t.error);
    li.append(err);
  }
  const kids = [...tasks.values()].filter((c) => c.parent_id === t.id);
  if (kids.length) {
    const ul = document.createElement("ul");
    ul.append(...kids.map(taskNode));
    li.append(ul);
  }
  return li;
}

function renderTree() {
  const roots = [...tasks.values()].filter((t) => !t.parent_id || !tasks.has(t.parent_id));
  $("tree").replaceChildren(...roots.map(taskNode));
  $("tree-empty").hidden = roots.length > 0;
}

setInterval(() => {
  for (const el of document.querySelectorAll("[data-elapsed]")) { const t = tasks.get(el.dataset.elapsed); if (t) el.textContent = elapsed(t); }
  renderConn();
}, 1000);

// ---- connection indicator: never a guess ---------------------------------------------------

function setConn(s) {
  conn = s;
  if (s.kind === "live") { poller?.stop(); lastBeat = Date.now(); }
  else if (s.kind !== "connecting" || s.attempt > 0) poller?.start();
  renderConn();
}

function mainTask() {
  const roots = [...tasks.values()].filter((t) => !t.parent_id);
  return roots.find((t) => !TERMINAL.has(t.status)) ?? roots[roots.length - 1];
}

function serverSays() {
  const t = mainTask();
  if (!polled) return pollError ? `server unreachable (tried ${clock(pollError.checkedAt)})` : "checking the server…";
  const when = clock(polled.checkedAt);
  const status = t ? `task ${t.status}${t.progress ? ` ${t.progress.n}/${t.progress.m}` : ""}` : "no tasks";
  return pollError ? `last known: ${status} (checked ${when}; server unreachable since ${clock(pollError.checkedAt)})` : `server says: ${status} (checked ${when})`;
}

function clock(ms) { return new Date(ms).toLocaleTimeString([], { hour12: false }); }

function renderConn() {
  const el = $("conn");
  el.dataset.kind = conn.kind;
  let text;
  if (conn.kind === "live") {
    const ago = Math.round((Date.now() - lastBeat) / 1000);
    text = ago <= 1 ? "Live" : `Live · updated ${ago} s ago`;
  } else if (conn.kind === "reconnecting") {
    const n = Math.max(0, Math.ceil((conn.nextTryAt - Date.now()) / 1000));
    text = `Reconnecting — attempt ${conn.attempt}, next try in ${n} s · ${serverSays()}`;
  } else if (conn.kind === "offline") {
    text = `Offline — ${serverSays()}`;
  } else if (conn.kind === "stopped") {
    text = conn.reason === "signed out" ? "Signed out" : `Stopped — ${conn.reason} · ${serverSays()}`;
  } else text = "Connecting…";
  $("conn-text").textContent = text;
}

window.addEventListener("online", () => session?.poke());

// ---- a task ended while you looked elsewhere ---------------------------------------------

function taskEnded(t) {
  if (t.parent_id || document.visibilityState !== "hidden") return;
  unseen += 1;
  renderTitle();
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(`Tether: ${t.agent ?? "task"} ${t.status}`, { body: t.id, tag: t.id });
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") { unseen = 0; renderTitle(); session?.poke(); }
});

if ("Notification" in window && Notification.permission === "default") {
  $("notify").hidden = false;
  $("notify").addEventListener("click", async () => { await Notification.requestPermission(); $("notify").hidden = true; });
}

// ---- start ----------------------------------------------------------------------------------

async function main() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const secret = fragment.get("secret");
  if (secret) {
    history.replaceState(null, "", location.pathname + location.search);  // the secret leaves the address bar
    try { await tokens.signIn({ secret }); return enter(); } catch (e) { return showSignIn(e.message); }
  }
  if (await tokens.resume().catch(() => false)) return enter();
  showSignIn();
}

main();
