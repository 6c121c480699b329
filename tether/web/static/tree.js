// The task tree: one DOM node per shown task, created once and then only patched, so a
// focused Cancel button survives every update and ten thousand sub-tasks cost what changed.
// A parent with many children shows a summary and the ones worth a look (running, failed,
// the latest), with "Show all" paging through the rest.
import { TERMINAL, clause, duration, short, statusWord, taskName } from "./describe.js";
import { h, inFrame, setText } from "./dom.js";

const MANY = 30;          // more children than this: collapsed to a summary
const PAGE = 200;         // "Show all" renders this many at a time
const PICK_ACTIVE = 20, PICK_FAILED = 10, PICK_RECENT = 5;
const FAILED = new Set(["failed", "interrupted"]);

export class TaskTree extends EventTarget {
  // What reset() sets (see there).
  /** @type {Map<string, any>} */ tasks;
  /** @type {Map<string, string[]>} */ kids;
  /** @type {Map<string, any>} */ counts;
  /** @type {Map<string, any>} */ nodes;
  /** @type {Set<string>} */ dirty;
  /** @type {Set<string>} */ dirtyLists;
  /** @type {Map<string, number>} */ expanded;
  /** @type {number | null} */ asOf;
  /** @type {Set<string>} */ needs;
  /** @type {boolean} */ _queued;
  /** @type {any} the root's node (built when first drawn) */ top;

  // api(path, init) -> JSON
  constructor({ root, empty, api }) {
    super();
    this.root = root;
    this.empty = empty;
    this.api = api;
    this.reset();
  }

  reset() {
    this.tasks = new Map();     // id -> task fields
    this.kids = new Map();      // parent id ("" for roots) -> [child ids] in creation order
    this.counts = new Map();    // parent id -> {status: children in it, failedAt: [indices]}
    this.nodes = new Map();     // id -> {li, ...parts}: only for tasks that were ever shown
    this.dirty = new Set();     // tasks whose node needs patching
    this.dirtyLists = new Set();// parents whose shown children may have changed
    this.expanded = new Map();  // parent id -> how many children "Show all" reveals
    this.asOf = null;           // ms: the tree is a picture from then (stale), or null
    this.needs = new Set();     // tasks waiting for an approval
    this._queued = false;
    this.top?.sum?.remove();
    this.top = null;
    this.root.replaceChildren();
    this.empty.hidden = false;
  }

  // The tasks waiting for a person's answer (an approval): their badge says "Needs you".
  setNeeds(ids) {
    const was = this.needs ?? new Set();
    this.needs = ids;
    for (const id of new Set([...was, ...ids])) if (was.has(id) !== ids.has(id) && this.tasks.has(id)) this.dirty.add(id);
    this._schedule();
  }

  get size() { return this.tasks.size; }
  get(id) { return this.tasks.get(id); }

  // Merge fields into a task. Returns [old status, new status].
  /** @returns {[string | undefined, string]} its status before and now */
  upsert(id, fields) {
    const old = this.tasks.get(id);
    const t = old ?? { id, status: "queued" };
    const was = old?.status;
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined || k === "children") continue;
      if (v === null && (k === "input" || k === "result") && t[k] != null) continue; // a brief tree leaves them out
      t[k] = v;
    }
    if (!old) {
      this.tasks.set(id, t);
      const p = t.parent_id ?? "";
      let siblings = this.kids.get(p);
      if (!siblings) { this.kids.set(p, (siblings = [])); this.counts.set(p, { failedAt: [] }); }
      t._i = siblings.length;  // its place among its siblings
      siblings.push(id);
      this._count(p, t, undefined);
      this.dirtyLists.add(p);
    } else if (was !== t.status) {
      this._count(t.parent_id ?? "", t, was);
      if (t.parent_id) this.dirtyLists.add(t.parent_id);
    }
    this.dirty.add(id);
    this._schedule();
    return [was, t.status];
  }

  // A tree from the REST API or a snapshot (children nested or as ids).
  /** @param {(old: any, change: [string | undefined, string]) => void} [visit] each task, with its record before and [its status before, now] */
  adopt(list, visit = () => {}) {
    const walk = (ts) => {
      for (const t of ts) {
        // A snapshot older than the events already applied to a task says nothing new of it.
        const have = this.tasks.get(t.id)?.last_seq;
        if (!(have > t.last_seq)) visit(this.tasks.get(t.id), this.upsert(t.id, { ...t, progress: t.progress ?? undefined }));
        if (Array.isArray(t.children) && typeof t.children[0] === "object") walk(t.children);
      }
    };
    walk(list);
  }

  roots() { return (this.kids.get("") ?? []).map((id) => this.tasks.get(id)); }

  // The newest unfinished top-level task, else the newest one.
  mainTask() {
    const roots = this.roots();
    return [...roots].reverse().find((t) => !TERMINAL.has(t.status)) ?? roots[roots.length - 1];
  }

  setStale(asOf) {
    this.asOf = asOf;
    this.tick();
  }

  _schedule() {
    if (this._queued) return;
    this._queued = true;
    inFrame(() => { this._queued = false; this.flush(); });
  }

  flush() {
    const lists = [...this.dirtyLists];
    this.dirtyLists.clear();
    for (const p of lists) this._syncList(p);
    for (const id of this.dirty) { const n = this.nodes.get(id); if (n) this._patch(this.tasks.get(id), n); }
    this.dirty.clear();
    this.empty.hidden = (this.kids.get("") ?? []).length > 0;
  }

  // Children of each status per parent, kept as statuses change: a frame of a parent of ten
  // thousand sub-tasks costs what changed, not a pass over all of them.
  _count(p, t, was) {
    const c = this.counts.get(p);
    if (was !== undefined) c[was] -= 1;
    c[t.status] = (c[t.status] ?? 0) + 1;
    if (FAILED.has(t.status) && !FAILED.has(was)) c.failedAt.push(t._i);
  }

  // Which children of `p` are shown, in creation order: the newest failed, active and done.
  _shown(p) {
    const ids = this.kids.get(p) ?? [];
    if (ids.length <= MANY) return ids;
    const open = this.expanded.get(p);
    if (open) return ids.slice(0, open);
    const c = this.counts.get(p);
    const ended = [...TERMINAL].reduce((n, s) => n + (c[s] ?? 0), 0);
    const failedN = [...FAILED].reduce((n, s) => n + (c[s] ?? 0), 0);
    const wantActive = Math.min(PICK_ACTIVE, ids.length - ended), wantDone = Math.min(PICK_RECENT, ended - failedN);
    const active = [], done = [];
    for (let i = ids.length - 1; i >= 0 && (active.length < wantActive || done.length < wantDone); i--) {
      const s = this.tasks.get(ids[i]).status;
      if (!TERMINAL.has(s)) { if (active.length < PICK_ACTIVE) active.push(i); }
      else if (!FAILED.has(s) && done.length < PICK_RECENT) done.push(i);
    }
    const failed = c.failedAt.filter((i) => FAILED.has(this.tasks.get(ids[i]).status)).sort((a, b) => b - a).slice(0, PICK_FAILED);
    return [...new Set([...failed, ...active, ...done])].sort((a, b) => a - b).map((i) => ids[i]);
  }

  _container(p) {
    if (p === "") return this.root;
    const n = this.nodes.get(p);
    if (!n) return null;
    if (!n.kidsUl) { n.kidsUl = h("ul"); n.li.append(n.kidsUl); }
    return n.kidsUl;
  }

  _syncList(p) {
    const ul = this._container(p);
    if (!ul) return; // the parent is not shown: its list is built when it is
    const want = this._shown(p).map((id) => this._node(id).li);
    const keep = new Set(want);
    const many = (this.kids.get(p) ?? []).length > MANY;
    for (const el of [...ul.children]) {
      if (keep.has(el)) continue;
      el.remove();
      // A sub-task of a big parent that left the view is forgotten (made again if it
      // returns): ten thousand detached nodes would cost every garbage collection.
      if (many && !el.contains(document.activeElement)) this._drop(el.dataset.task);
    }
    // Insert in order without moving nodes that stay (a focused button keeps its focus).
    let cursor = ul.firstElementChild;
    for (const li of want) {
      if (li === cursor) { cursor = cursor.nextElementSibling; continue; }
      ul.insertBefore(li, cursor);
    }
    this._summary(p);
  }

  // "10,000 sub-tasks: 9,990 done, 8 running, 2 failed · Show all"
  _summary(p) {
    // The top level's summary goes above the list (a long conversation has a thousand turns).
    const n = p === "" ? (this.top ??= { li: this.root.parentElement, kidsUl: this.root, top: true }) : this.nodes.get(p);
    const ids = this.kids.get(p) ?? [];
    if (ids.length <= MANY) { n.sum?.remove(); n.sum = null; return; }
    const count = this.counts.get(p);
    if (!n.sum) {
      n.sum = h("div", "kids-summary");
      n.sumText = h("span");
      n.sumMore = h("button", "linkish");
      n.sumMore.type = "button";
      n.sumMore.addEventListener("click", () => {
        const open = this.expanded.get(p) ?? 0;
        const all = (this.kids.get(p) ?? []).length;
        if (open >= all) this.expanded.delete(p); else this.expanded.set(p, Math.min(all, open + PAGE));
        this.dirtyLists.add(p);
        this.flush();
      });
      n.sum.append(n.sumText, " ", n.sumMore);
      n.li.insertBefore(n.sum, n.kidsUl);
    }
    const parts = ["completed", "running", "queued", "failed", "interrupted", "cancelled"]
      .filter((s) => count[s]).map((s) => `${count[s].toLocaleString("en")} ${statusWord(s).toLowerCase()}`);
    setText(n.sumText, `${ids.length.toLocaleString("en")} ${n.top ? "tasks" : "sub-tasks"}: ${parts.join(", ")}.`);
    const open = this.expanded.get(p) ?? 0;
    n.sumMore.textContent = open >= ids.length ? "Show fewer" : open ? `Show ${Math.min(PAGE, ids.length - open)} more` : "Show all";
  }

  _drop(id) {
    for (const k of this.kids.get(id) ?? []) this._drop(k);
    this.nodes.delete(id);
  }

  _node(id) {
    let n = this.nodes.get(id);
    if (n) return n;
    const t = this.tasks.get(id);
    const li = h("li", "task");
    li.dataset.task = id;
    const head = h("div", "head");
    const name = h("span", "name");
    const badge = h("span", "badge");
    const prog = h("progress");
    const progText = h("span", "progress-text");
    const elapsed = h("span", "elapsed");
    const actions = h("span", "actions");
    head.append(name, badge, prog, progText, elapsed, actions);
    li.append(head);
    n = { li, head, name, badge, prog, progText, elapsed, actions, error: null, result: null, kidsUl: null, sum: null, confirming: false };
    this.nodes.set(id, n);
    this._patch(t, n);
    if ((this.kids.get(id) ?? []).length) this._syncList(id);
    return n;
  }

  _patch(t, n) {
    const needs = !TERMINAL.has(t.status) && this.needs?.has(t.id);
    if (n.li.dataset.status !== t.status) n.li.dataset.status = t.status;
    const tone = needs ? "needs" : t.status;
    if (n.badge.dataset.status !== tone) n.badge.dataset.status = tone;
    setText(n.name, taskName(t));
    // A chat turn waiting for the one before it runs, but has not started its own work.
    setText(n.badge, needs ? "Needs you" : t.waiting && t.status === "running" ? "Waiting for the previous turn" : statusWord(t.status));
    const p = t.progress && t.progress.m ? t.progress : null;
    if (n.prog.hidden !== !p) n.prog.hidden = n.progText.hidden = !p;
    if (p && (n.prog.value !== p.n || n.prog.max !== p.m)) {
      n.prog.max = p.m; n.prog.value = p.n;
      n.prog.setAttribute("aria-label", `${p.n} of ${p.m}`);
      setText(n.progText, `${p.n.toLocaleString("en")}/${p.m.toLocaleString("en")}`);
    }
    setText(n.elapsed, this._elapsed(t));
    this._actions(t, n);
    if (t.error && !n.error) { n.error = h("div", "error"); n.li.insertBefore(n.error, n.head.nextSibling); }
    if (n.error) n.error.textContent = t.error ? (t.error.message ?? short(t.error, 300)) : "";
    if (t.status === "completed" && !n.result) this._resultView(t, n);
  }

  _elapsed(t) {
    if (!t.started_at) return "";
    const end = t.ended_at ?? (this.asOf ?? Date.now()) / 1000;
    return duration(end - t.started_at);
  }

  tick() {
    for (const [id, n] of this.nodes) {
      const t = this.tasks.get(id);
      if (t && t.started_at && !t.ended_at && n.li.isConnected) setText(n.elapsed, this._elapsed(t));
    }
  }

  // Cancel asks first; the buttons are made once per task and never rebuilt under focus.
  _actions(t, n) {
    const live = !TERMINAL.has(t.status);
    if (!live) { if (n.actions.childElementCount) n.actions.replaceChildren(); n.confirming = false; return; }
    if (n.actions.childElementCount) return;
    const label = taskName(t);
    const cancel = h("button", "danger", "Cancel");
    cancel.type = "button";
    cancel.setAttribute("aria-label", `Cancel ${label}`);
    const ask = h("span", "confirm");
    ask.hidden = true;
    const q = h("span", "", "Cancel this task?");
    const yes = h("button", "danger solid", "Yes, cancel");
    const no = h("button", "ghost small", "Keep running");
    yes.type = no.type = "button";
    ask.append(q, " ", yes, " ", no);
    const showAsk = (on) => { cancel.hidden = on; ask.hidden = !on; n.confirming = on; (on ? no : cancel).focus(); };
    cancel.addEventListener("click", () => showAsk(true));
    no.addEventListener("click", () => showAsk(false));
    // Esc keeps the task running (and is not also the page's Esc, which stops a reply).
    ask.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); showAsk(false); } });
    yes.addEventListener("click", async () => {
      yes.disabled = true; no.disabled = true; q.textContent = "Cancelling…";
      try { await this.api(`/api/tasks/${t.id}/cancel`, { method: "POST" }); }
      catch (e) { q.textContent = `Could not cancel: ${clause(e.message)}.`; yes.disabled = no.disabled = false; }
    });
    n.actions.append(cancel, ask);
  }

  // A finished task's result, fetched when opened, shown as fields with the JSON behind.
  _resultView(t, n) {
    const d = h("details", "result");
    const s = h("summary", "", "Result");
    const body = h("div", "result-body", "Loading…");
    d.append(s, body);
    d.addEventListener("toggle", async () => {
      if (!d.open || d.dataset.loaded) return;
      d.dataset.loaded = "1";
      try {
        const full = await this.api(`/api/tasks/${t.id}`);
        body.replaceChildren(resultFields(full.result));
      } catch (e) { body.textContent = `Could not load the result: ${e.message}`; delete d.dataset.loaded; }
    });
    n.result = d;
    n.li.insertBefore(d, n.sum ?? n.kidsUl);
  }
}

export function resultFields(result) {
  const wrap = h("div");
  if (result && typeof result === "object" && !Array.isArray(result)) {
    const dl = h("dl", "fields");
    for (const [k, v] of Object.entries(result)) {
      dl.append(h("dt", "", k.replace(/_/g, " ")), h("dd", "", Array.isArray(v) ? `${v.length.toLocaleString("en")} entries` : short(v, 200)));
    }
    wrap.append(dl);
  } else wrap.append(h("p", "", short(result, 2000)));
  const raw = h("details", "raw");
  raw.append(h("summary", "", "Show JSON"));
  raw.addEventListener("toggle", () => {
    if (raw.open && raw.childElementCount === 1) raw.append(h("pre", "", JSON.stringify(result, null, 2).slice(0, 200_000)));
  }, { once: false });
  wrap.append(raw);
  return wrap;
}
