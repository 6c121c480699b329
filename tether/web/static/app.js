// A minimal page; the full web app (token manager, stream reader, status poller) is its own work.
const $ = (id) => document.getElementById(id);
let token = null;
let refreshing = null;

async function signIn(body) {
  const r = await fetch(body ? "/auth" : "/auth/refresh", {
    method: "POST", headers: { "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) return false;
  const t = await r.json();
  token = t.access_token;
  // Refresh at 75% of the token's life, so no request ever carries an expired one.
  setTimeout(refresh, Math.max(1000, t.expires_in * 750));
  return true;
}

function refresh() {
  refreshing ??= signIn(null).finally(() => { refreshing = null; });
  return refreshing;
}
let sessionId = localStorage.getItem("tether.session");
let last = 0;
const tasks = new Map();

async function api(path, init = {}, retry = true) {
  const r = await fetch(path, { ...init, headers: { "content-type": "application/json", authorization: `Bearer ${token}` } });
  if (r.status === 401 && retry && await refresh()) return api(path, init, false);
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

function renderTasks() {
  $("tasks").innerHTML = "";
  for (const t of tasks.values()) {
    const li = document.createElement("li");
    const p = t.progress ? ` ${t.progress.n}/${t.progress.m}` : "";
    li.textContent = `${t.agent} ${t.id}${p} `;
    const b = document.createElement("span");
    b.className = "badge"; b.textContent = t.status; li.append(b);
    $("tasks").append(li);
  }
}

function apply(ev) {
  if (ev.seq <= last) return;
  last = ev.seq;
  const li = document.createElement("li");
  li.value = ev.seq;
  li.textContent = `${ev.type} ${ev.task_id ?? ""} ${JSON.stringify(ev.data)}`;
  $("log").append(li);
  const t = tasks.get(ev.task_id) || { id: ev.task_id, agent: ev.data.agent || "?", status: "queued" };
  if (ev.type === "task.status") t.status = ev.data.status;
  if (ev.type === "task.progress") t.progress = { n: ev.data.n, m: ev.data.m };
  if (!t.parent_id && ev.parent_task_id) t.parent_id = ev.parent_task_id;
  if (!ev.parent_task_id) { tasks.set(ev.task_id, t); renderTasks(); }
}

async function follow() {
  let attempt = 0;
  for (;;) {
    try {
      const r = await fetch(`/api/sessions/${sessionId}/stream?after=${last}`, { headers: { authorization: `Bearer ${token}` } });
      if (r.status === 401) { await refresh(); throw new Error("unauthorized"); }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      $("status").textContent = "Live"; attempt = 0;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const payload = JSON.parse(data);
          if (name === "message") apply(payload);
          else if (name === "snapshot") { for (const t of payload.tasks) if (!t.parent_id) tasks.set(t.id, t); renderTasks(); }
        }
      }
    } catch (e) { /* fall through to backoff */ }
    attempt += 1;
    const wait = Math.random() * Math.min(20000, 500 * 2 ** attempt);
    $("status").textContent = `Reconnecting (attempt ${attempt}, next try in ${(wait / 1000).toFixed(1)} s)`;
    await new Promise((res) => setTimeout(res, wait));
  }
}

async function main() {
  const secret = new URLSearchParams(location.hash.slice(1)).get("secret");
  if (secret) history.replaceState(null, "", location.pathname);
  if (!(secret ? await signIn({ secret }) : await refresh())) {
    $("signin").hidden = false;
    $("status").textContent = "Signed out";
    $("signin").onsubmit = async (e) => {
      e.preventDefault();
      if (await signIn({ secret: $("secret").value })) { $("signin").hidden = true; main(); }
    };
    return;
  }
  if (sessionId) {
    try { await api(`/api/sessions/${sessionId}`); } catch { sessionId = null; }
  }
  if (!sessionId) {
    sessionId = (await api("/api/sessions", { method: "POST", body: JSON.stringify({ title: "web" }) })).id;
    localStorage.setItem("tether.session", sessionId);
  }
  $("session").textContent = `session ${sessionId}`;
  $("start").onclick = async () => {
    try {
      await api(`/api/sessions/${sessionId}/tasks`, { method: "POST", body: JSON.stringify({ agent: "batch", input: JSON.parse($("input").value) }) });
    } catch (e) { alert(e.message); }
  };
  follow();
}
main();
