// The conversation view: the branch shown of the session's conversation, each turn drawn from
// its log events (fed in seq order, each once), with Edit, Regenerate / Retry and the
// alternatives of a message or a reply (‹ 2 / 3 ›).
import { argsView, toolDoes } from "./args.js";
import { copyButton, loadHighlighter, renderMarkdown } from "./markdown.js";
import { exact, relative, sentence } from "./describe.js";
import { ConversationTree } from "./conversation.js";
import { attachedList } from "./attachments.js";
import { h, setText } from "./dom.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);
// What a turn's badge says (its data-status stays the server's word).
const BADGE = { queued: "Waiting", running: "Working", completed: "Done", failed: "Failed", cancelled: "Stopped", interrupted: "Interrupted" };
// The reader is at the end when the last this many pixels are in view.
const NEAR_END = 60;

// Follow mode: while the reader is at the end, the end stays in view as the conversation
// grows, whenever it grows (a reply's markdown is drawn a frame after its deltas came, so the
// end is kept in view by a ResizeObserver, after layout, not when events are applied). Once
// the reader scrolls up they are left where they are, and new content waits behind a "Jump
// to latest" pill.
// A long conversation is drawn a window at a time: the newest WINDOW turns of the branch
// shown, and more above as the reader asks ("Show earlier messages"). The tree (every turn,
// all branches) comes from the server's skeleton and the log's events (conversation.js); a
// turn is drawn from its events, replayed when it comes into the window, and a turn whose
// events the page has not loaded (before a long session's tail) is drawn from the skeleton
// and then, its events read (`/events?task=`), drawn again from them.
export const WINDOW = 20;

export class Conversation extends EventTarget {
  // What reset() sets (see there).
  /** @type {ConversationTree} */ tree;
  /** @type {Map<string, any[]>} */ buffers;
  /** @type {Map<string, any>} */ asks;
  /** @type {Set<string>} */ told;
  /** @type {Map<string, any>} */ turns;
  /** @type {Map<string, any>} */ messages;
  /** @type {Map<string, any>} */ tools;
  /** @type {Map<string, any>} */ approvals;
  /** @type {{ el: HTMLElement, ms: number }[]} */ times;
  /** @type {WeakMap<Element, { el: HTMLElement, ms: number }>} */ timeOf;
  /** @type {Set<string>} */ fetching;
  /** @type {Set<string>} */ toFetch;
  /** @type {number} */ shown;
  /** @type {string | null} */ editing;
  /** @type {boolean} */ follow;
  /** @type {number} */ pinned;

  // api(path, init) -> JSON; isModelAgent(name) -> bool; pill: the "Jump to latest" button;
  // loadTurns(ids, after) -> {events, more, next_after}: turns' events and their sub-agents'
  // fetchFile(url) -> Blob: an attachment, with the sign-in's token.
  /** @param {{ root: HTMLElement, api: Function, isModelAgent: (name: string) => boolean, pill?: HTMLElement | null, loadTurns?: Function | null, agentFor?: (name: string) => string | undefined, fetchFile?: (url: string) => Promise<Blob> }} options */
  constructor({ root, api, isModelAgent, pill = null, loadTurns = null, agentFor = () => undefined, fetchFile = (url) => fetch(url).then((r) => r.blob()) }) {
    super();
    /** @type {string | undefined} the open session (set by the page) */
    this.sessionId = undefined;
    this.root = root;
    this.api = api;
    this.isModelAgent = isModelAgent;
    this.loadTurns = loadTurns;
    this.agentFor = agentFor;
    this.fetchFile = fetchFile;
    this.pill = pill;
    this.pill?.addEventListener("click", () => this.jumpToLatest());
    this.resize = new ResizeObserver(() => this._stick());
    this.root.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.earlier = h("button", "ghost small earlier chat-earlier", "Show earlier messages");
    this.earlier.type = "button";
    this.earlier.addEventListener("click", () => this.showEarlier());
    this.trimNote = h("p", "note context-note", "");
    this.reset();
  }

  reset() {
    this.tree = new ConversationTree();
    this.buffers = new Map();   // turn id -> its events and its sub-agents', in seq order
    this.asks = new Map();      // approval id -> {task (the turn), tool, pending}
    this.told = new Set();      // "turns", "approvals": to tell the page after this batch
    this.turns = new Map();     // task id -> its view (a turn's, or a sub-agent's inside it)
    this.messages = new Map();  // message id -> {el, text, queued, top}
    this.tools = new Map();     // tool call id -> {el, args, argsEl, resultEl, state, task, top}
    this.approvals = new Map(); // approval id -> {el, task, pending, top}
    this.times = [];            // {el, ms}: every timestamp shown, refreshed by refreshTimes
    this.timeOf = new WeakMap(); // its element -> that record
    this.fetching = new Set();  // turns whose events are being read
    this.toFetch = new Set();   // and those of them not asked for yet
    this.shown = WINDOW;        // how many turns of the branch are drawn, newest last
    this.editing = null;        // the turn whose message is being edited
    this.root.replaceChildren();
    this.resize.disconnect();
    this.resize.observe(this.root);
    this.follow = true;
    this.pinned = 0;            // scrollTop where follow mode last put the end in view
    if (this.pill) this.pill.hidden = true;
    this.dispatchEvent(new CustomEvent("turns"));
  }

  get size() { return this.tree.size; }

  get pendingApprovals() { return [...this.asks.values()].filter((a) => a.pending && !TERMINAL.has(this.tree.get(a.task)?.status)).length; }

  // The turns waiting for an approval.
  needing() { return new Set([...this.asks.values()].filter((a) => a.pending && !TERMINAL.has(this.tree.get(a.task)?.status)).map((a) => a.task)); }

  // Top-level turns that have not ended (the composer's Stop stops these).
  unfinished() { return [...this.tree.turns.values()].filter((t) => !TERMINAL.has(t.status)).map((t) => t.id); }

  // The server's skeleton of the conversation (every turn, all branches), before its events
  // (then `layout()`, once they are applied: a turn whose events came with them is drawn
  // from them, not from the skeleton).
  adopt(skeleton) {
    this.tree.adopt(skeleton);
    if (skeleton.length) loadHighlighter();  // replies are likely to hold code
  }

  layout() { this._layout(); }

  apply(ev) { this.applyMany([ev]); }

  applyMany(evs) {
    const [changed, grew] = this._take(evs);
    if (changed) this._layout();
    if (grew && !this.follow && this.pill?.hidden) this.pill.hidden = false;
  }

  // Events read with the skeleton (its newest turns'), before the log's tail: kept, drawn at
  // the next layout.
  preload(evs) { this._take(evs); }

  _take(evs) {
    let changed = false;
    let grew = false;
    for (const ev of evs) {
      const top = ev.task_id ? ev.task_id.split(".")[0] : null;
      if (ev.type === "conversation.selected") { this.tree.select(ev.data?.turn, ev.seq); changed = true; continue; }
      if (!top) continue;
      if (top === ev.task_id && ConversationTree.isTurn(ev, this.isModelAgent)) {
        this.tree.created(ev);
        changed = true;
      } else if (!this.tree.get(top)) continue;  // not a turn's (a batch's, say)
      const buf = this.buffers.get(top) ?? [];
      if (buf.length && buf[buf.length - 1].seq >= ev.seq && buf.some((e) => e.seq === ev.seq)) continue;
      buf.push(ev);
      this.buffers.set(top, buf);
      this._track(top, ev);
      if (this.turns.has(top)) { this._apply(ev); grew = true; }
      if (ev.type === "task.status" && top === ev.task_id) changed = true;
      // (a turn waiting for another, or an approval asked or answered: what a waiting turn
      // on the branch shown says of the one it waits for)
      if (ev.type === "turn.waiting" || ev.type.startsWith("approval.")) changed = true;
    }
    // What changed is told once a batch (the tail of a long session holds hundreds of ends).
    for (const what of this.told) this.dispatchEvent(new CustomEvent(what));
    this.told.clear();
    return [changed, grew];
  }

  // What the page needs to know of every turn, drawn or not: its status, its approvals,
  // the newest cut of its context.
  _track(top, ev) {
    const d = ev.data ?? {};
    if (ev.type === "task.status" && ev.task_id === top) {
      this.tree.status(top, d.status, d.error ? { error: d.error.message ?? null } : {});
      if (TERMINAL.has(d.status)) for (const a of this.asks.values()) if (a.task === top) a.pending = false;
      this.told.add("turns").add("approvals");
    } else if (ev.type === "approval.requested" && !this.asks.has(d.approvalId)) {
      const live = !TERMINAL.has(this.tree.get(top)?.status);
      this.asks.set(d.approvalId, { task: top, tool: d.tool, pending: live });
      if (live) this.dispatchEvent(new CustomEvent("needsyou", { detail: { tool: d.tool, task: top } }));
      this.told.add("approvals");
    } else if (ev.type === "approval.answered" && this.asks.has(d.approvalId)) {
      this.asks.get(d.approvalId).pending = false;
      this.told.add("approvals");
    } else if (ev.type === "context.trimmed" && ev.task_id === top) {
      this.tree.get(top).trimmed = d;
    }
  }

  // A status learnt from a poll or snapshot (the stream may be down): the same as its event.
  setStatus(id, status) {
    const t = this.tree.get(id);
    if (!t || t.status === status || TERMINAL.has(t.status)) return;
    this.tree.status(id, status);
    if (this.turns.has(id)) this._status(id, { status });
    this.dispatchEvent(new CustomEvent("turns"));
  }

  // ---- the window of the branch shown ----------------------------------------------------

  _layout() {
    const r = this.root;
    const anchor = this.follow ? null : this._anchor();
    this._arrange();
    // The reader stays where they were: the first turn in view keeps its place on screen
    // (turns drawn or grown above it, stand-ins replaced by the turn itself).
    const el = anchor && this.turns.get(anchor.id)?.el;
    if (anchor && el?.isConnected) r.scrollTop += el.getBoundingClientRect().top - anchor.top;
  }

  // The first turn that starts in view (not a stand-in, which may grow), and where it is.
  _anchor() {
    const top = this.root.getBoundingClientRect().top - 1;
    let any = null;
    for (const el of /** @type {HTMLCollectionOf<HTMLElement>} */ (this.root.children)) {
      if (!el.dataset.task) continue;
      const b = el.getBoundingClientRect();
      if (b.bottom <= top) continue;
      any ??= { id: el.dataset.task, top: b.top };
      if (b.top >= top && !el.classList.contains("loading")) return { id: el.dataset.task, top: b.top };
    }
    return any;
  }

  _arrange() {
    const path = this.tree.path();
    const from = Math.max(0, path.length - this.shown);
    const ids = path.slice(from);
    const els = [];
    if (from > 0) { this.earlier.textContent = `Show earlier messages (${from})`; els.push(this.earlier); }
    const tip = [...ids].reverse().map((id) => this.tree.get(id)).find((t) => t.trimmed);
    const onPath = new Set(path);
    for (const id of ids) {
      const v = this._view(id);
      if (tip && tip.trimmed.first === id && tip.trimmed.dropped) {
        const n = tip.trimmed.dropped;
        this.trimNote.textContent = `The ${n === 1 ? "message" : `${n} messages`} above ${n === 1 ? "was" : "were"} not sent to the model with the newest reply: ${n === 1 ? "it" : "they"} did not fit its context window.`;
        els.push(this.trimNote);
      }
      this._branches(id, v);
      if (v.waiting) this._waitingElsewhere(v, onPath);
      els.push(v.el);
    }
    const same = els.length === this.root.childElementCount && els.every((el, i) => this.root.children[i] === el);
    if (!same) {
      this.root.replaceChildren(...els);
      for (const el of els) this.resize.observe(el);
    }
    this.dispatchEvent(new CustomEvent("turns"));
  }

  // Older turns of the branch, above; the reader stays where they were.
  showEarlier() {
    this.follow = false;  // (the anchor below is the reader's place, not the end)
    this.shown += WINDOW;
    this._layout();
  }

  // The view of a turn: drawn from its events (or from the skeleton while they load).
  _view(id) {
    let v = this.turns.get(id);
    if (v) return v;
    const buf = this.buffers.get(id) ?? [];
    this.replaying = true;
    if (buf[0]?.type === "task.created" && buf[0].task_id === id) {
      try { for (const ev of buf) this._apply(ev); } finally { this.replaying = false; }
      // A reply still being written: drawn as it stands (its deltas drew nothing).
      for (const m of this.messages.values()) if (m.top === id && m.el.classList.contains("streaming")) renderMarkdown(m.el, m.text, true);
    } else {
      try { for (const ev of this._summary(id)) this._apply(ev); } finally { this.replaying = false; }
      const v = this.turns.get(id);
      v.summary = true;
      v.el.classList.toggle("loading", !this.tree.get(id).text);  // a stand-in, until its events come
      this._fetch(id);
    }
    v = this.turns.get(id);
    return v;
  }

  // A turn as the skeleton has it (its message, its final reply, its status): what is shown
  // until its events are read.
  _summary(id) {
    const t = this.tree.get(id);
    /** @type {{ type: string, task_id: string, ts?: number, data: object }[]} */
    const evs = [{ type: "task.created", task_id: id, ts: t.created_at, data: { agent: t.agent, input: { text: t.text, parent: t.parent, attachments: t.attachments }, stub: !t.text && !t.loaded } }];
    if (t.reply) {
      const mid = `summary-${id}`;
      evs.push({ type: "TEXT_MESSAGE_START", task_id: id, data: { messageId: mid } }, { type: "TEXT_MESSAGE_CONTENT", task_id: id, data: { messageId: mid, delta: t.reply } }, { type: "TEXT_MESSAGE_END", task_id: id, data: { messageId: mid } });
    }
    evs.push({ type: "task.status", task_id: id, data: { status: t.status, error: t.error ? { message: t.error } : undefined } });
    return evs;
  }

  // Turns drawn before their events were read: read together, in one request a page.
  _fetch(id) {
    if (!this.loadTurns || this.fetching.has(id)) return;
    this.fetching.add(id);
    this.toFetch.add(id);
    if (this.toFetch.size === 1) queueMicrotask(() => this._fetchQueued());
  }

  async _fetchQueued() {
    const ids = [...this.toFetch].slice(0, 100);
    for (const id of ids) this.toFetch.delete(id);
    if (this.toFetch.size) queueMicrotask(() => this._fetchQueued());
    const tree = this.tree;
    try {
      /** @type {Map<string, any[]>} */
      const got = new Map(ids.map((id) => [id, []]));
      for (let after = 0; ;) {
        const page = await /** @type {Function} */ (this.loadTurns)(ids, after);  // set: _fetch asks only then
        if (tree !== this.tree) return;  // another session since
        for (const ev of page.events) got.get(ev.task_id.split(".")[0])?.push(ev);
        after = page.next_after;
        if (!page.more) break;
      }
      for (const [id, evs] of got) {
        const seen = new Set(evs.map((e) => e.seq));
        const live = (this.buffers.get(id) ?? []).filter((e) => !seen.has(e.seq));
        this.buffers.set(id, [...evs, ...live].sort((a, b) => a.seq - b.seq));
        this._discard(id);
      }
      this._layout();
    } catch { /* the stand-ins stay */ } finally { for (const id of ids) this.fetching.delete(id); }
  }

  // Forget a turn's view (to draw it again from its events).
  _discard(id) {
    const v = this.turns.get(id);
    if (!v) return;
    const mine = (x) => x.top === id;
    for (const k of this.turns.keys()) if (k === id || k.startsWith(`${id}.`)) this.turns.delete(k);
    for (const map of [this.messages, this.tools, this.approvals]) for (const [k, x] of map) if (mine(x)) map.delete(k);
    this.times = this.times.filter((t) => !v.el.contains(t.el));
    this.resize.unobserve(v.el);
  }

  // ---- branches: edit, regenerate, retry, and ‹ 2 / 3 › -------------------------------------

  _branches(id, v) {
    const t = this.tree.get(id);
    const alt = this.tree.alternatives(id);
    v.userNav.replaceChildren(...(alt.messages.length > 1 ? this._pager("message", alt.message, alt.messages.length, (i) => this.tree.shownFor(t.parent, alt.messages[i])) : []));
    v.replyNav.replaceChildren(...(alt.replies.length > 1 ? this._pager("reply", alt.reply, alt.replies.length, (i) => alt.replies[i]) : []));
    const ended = TERMINAL.has(t.status);
    // Once the turn has ended, its controls join its last message's Copy, in one row.
    const last = v.body.lastElementChild;
    const row = ended && last?.classList.contains("msg-actions") ? last : v.foot;
    if (v.again.parentElement !== row) row.append(v.replyNav, v.again);
    v.again.hidden = !ended;
    setText(v.again, t.status === "completed" ? "Regenerate" : "Retry");
    v.again.setAttribute("aria-label", t.status === "completed" ? "Regenerate this reply" : "Retry this message");
  }

  _pager(what, index, count, target) {
    const prev = h("button", "ghost small pager", "‹");
    const next = h("button", "ghost small pager", "›");
    prev.type = next.type = "button";
    prev.setAttribute("aria-label", `Previous ${what} (${index} of ${count})`);
    next.setAttribute("aria-label", `Next ${what} (${index + 2} of ${count})`);
    prev.disabled = index === 0;
    next.disabled = index === count - 1;
    prev.addEventListener("click", () => this.select(target(index - 1)));
    next.addEventListener("click", () => this.select(target(index + 1)));
    const where = h("span", "pager-pos", `${index + 1} / ${count}`);
    where.setAttribute("aria-label", `${what} ${index + 1} of ${count}`);
    return [prev, where, next];
  }

  // Show this turn's branch, in every tab (the server appends `conversation.selected`).
  async select(id) {
    if (!id) return;
    try {
      const r = await this.api(`/api/tasks/${id}/select`, { method: "POST" });
      if (r?.seq) { this.tree.select(id, r.seq); this._layout(); }
    } catch (e) { this._say(sentence(e.message)); }
  }

  async regenerate(id) {
    this.followNow();
    try { await this.api(`/api/tasks/${id}/regenerate`, { method: "POST" }); } catch (e) { this._say(sentence(e.message)); }
  }

  // Edit a message: a new message beside it (the old one and its replies stay, a ‹ › away).
  edit(id) {
    const v = this.turns.get(id);
    const t = this.tree.get(id);
    if (!v || !t || this.editing) return;
    this.editing = id;
    const form = h("form", "edit");
    const box = h("textarea");
    box.value = t.text;
    box.rows = Math.min(12, Math.max(2, t.text.split("\n").length));
    box.maxLength = 100000;
    box.setAttribute("aria-label", "Edit your message");
    const send = h("button", "", "Send");
    const cancel = h("button", "ghost small", "Cancel");
    send.type = "submit"; cancel.type = "button";
    const row = h("div", "row edit-row");
    row.append(cancel, send);
    form.append(box, row);
    const done = () => { form.replaceWith(v.user); this.editing = null; v.editBtn.focus(); };
    cancel.addEventListener("click", done);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); done(); }
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = box.value.trim();
      if (!text && !t.attachments?.length) return;  // its files alone are a message too
      send.disabled = true;
      this.followNow();
      try {
        await this.api(`/api/sessions/${this.sessionId}/messages`, { method: "POST", body: JSON.stringify({ text, parent: t.parent, agent: this.agentFor(t.agent), attachments: t.attachments }) });
        form.replaceWith(v.user);
        this.editing = null;
      } catch (ex) { send.disabled = false; this._say(sentence(ex.message)); }
    });
    v.user.replaceWith(form);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  // ↑ in an empty composer: edit the newest message of the branch shown.
  editLast() {
    const id = this.tree.tip();
    if (!id) return false;
    this._view(id);
    this.edit(id);
    return true;
  }

  _say(text) { this.dispatchEvent(new CustomEvent("problem", { detail: text })); }

  // ---- follow mode ---------------------------------------------------------------------

  _stick() {
    if (!this.follow) return;
    const r = this.root;
    const end = r.scrollHeight - r.clientHeight;
    if (r.scrollTop < end) r.scrollTop = end;
    this.pinned = r.scrollTop;
  }

  _onScroll() {
    const r = this.root;
    if (r.scrollHeight - r.scrollTop - r.clientHeight < NEAR_END) {
      this.pinned = r.scrollTop;
      if (!this.follow) { this.follow = true; if (this.pill) this.pill.hidden = true; }
    } else if (this.follow && r.scrollTop < this.pinned - 8) {
      // Scrolled up by the reader (content that grew below is not a scroll up).
      this.follow = false;
    }
  }

  // Back to the end, following: after "Jump to latest", and when the reader sends a message.
  followNow() {
    this.follow = true;
    if (this.pill) this.pill.hidden = true;
    this._stick();
  }

  jumpToLatest() {
    this.followNow();
    this.root.focus({ preventScroll: true });
  }

  // ---- timestamps ----------------------------------------------------------------------

  _time(ts) {
    const ms = (ts ?? Date.now() / 1000) * 1000;
    const el = h("time", "when", relative(ms));
    el.dateTime = new Date(ms).toISOString();
    el.title = exact(ms);
    const rec = { el, ms };
    this.times.push(rec);
    this.timeOf.set(el, rec);
    return el;
  }

  _retime(el, ts) {
    const t = this.timeOf.get(el);
    if (!t || !ts) return;
    t.ms = ts * 1000;
    el.dateTime = new Date(t.ms).toISOString();
    el.title = exact(t.ms);
    setText(el, relative(t.ms));
  }

  // "2 min ago" grows old: the page calls this now and then.
  refreshTimes(now = Date.now()) { for (const t of this.times) setText(t.el, relative(t.ms, now)); }

  _apply(ev) {
    const d = ev.data ?? {};
    switch (ev.type) {
      case "task.created": return this._created(ev, d);
      case "task.status": return this._status(ev.task_id, d);
      case "turn.waiting": return this._waiting(ev.task_id, d.after);
      case "RUN_STARTED": return this._started(ev.task_id, ev.ts);
      case "TEXT_MESSAGE_START": this._started(ev.task_id); return this._messageStart(ev.task_id, d.messageId);
      case "TEXT_MESSAGE_CONTENT": return this._messageDelta(d.messageId, d.delta);
      case "TEXT_MESSAGE_END": return this._messageEnd(d.messageId);
      case "TOOL_CALL_START": this._started(ev.task_id); return this._toolStart(ev.task_id, d);
      case "TOOL_CALL_ARGS": return this._toolArgs(d.toolCallId, d.delta);
      case "TOOL_CALL_END": return this._toolEnd(d.toolCallId);
      case "TOOL_CALL_RESULT": return this._toolResult(d.toolCallId, d.content);
      case "message.superseded": return this._superseded(ev.task_id, d);
      case "model.retry": return this._note(ev.task_id, "retry", `The model is busy${d.status ? ` (HTTP ${d.status})` : ""}: trying again in ${d.delay_s} s (${d.retry} of ${d.of}). ${d.reason ?? ""}`);
      case "approval.requested": return this._approvalAsked(ev.task_id, d);
      case "approval.answered": return this._approvalAnswered(d);
      case "RUN_ERROR": return this._note(ev.task_id, "run-error", d.message);
      case "RUN_FINISHED": return this._clearNote(ev.task_id, "retry");
      default: return undefined;
    }
  }

  // ---- turns and sub-agents ------------------------------------------------------------

  _created(ev, d) {
    const id = ev.task_id;
    const top = id.split(".")[0];
    const parentTurn = d.parent_id ? this.turns.get(d.parent_id) : null;
    if (d.parent_id && !parentTurn) return;
    if (!d.parent_id && id !== top) return;
    const el = h("article", parentTurn ? "subagent" : "turn");
    el.dataset.task = id;
    const head = h("div", "turn-head");
    const who = h("span", "who", parentTurn ? `Sub-agent · ${d.agent}` : d.agent);
    const badge = h("span", "badge", BADGE.queued); badge.dataset.status = "queued";
    const when = this._time(ev.ts);
    head.append(who, badge, when);
    let stop = null;
    if (!parentTurn) {
      stop = h("button", "danger", "Cancel");
      stop.type = "button";
      stop.addEventListener("click", () => this.api(`/api/tasks/${id}/cancel`, { method: "POST" }).catch((e) => this._say(sentence(e.message))));
      head.append(stop);
    }
    const body = h("div", "turn-body");
    const t = { el, body, badge, when, stop, status: "queued", parent: d.parent_id, agent: d.agent, notes: new Map(), waiting: false, top };
    if (parentTurn) {
      const task = h("p", "subagent-task"); task.append(h("strong", "", "Task: "), document.createTextNode(d.input?.text ?? ""));
      el.append(head, task, body);
      const tool = this.tools.get(d.input?.tool_call_id);
      // The card says who does what: the delegate call's arguments would say it again.
      if (tool) { tool.resultEl.before(el); tool.argsEl.hidden = true; } else parentTurn.body.append(el);
    } else {
      // The message, with Edit and its alternatives (‹ 2 / 3 › when it was edited).
      const user = h("div", "user-msg");
      const said = d.input?.text ?? "";
      const files = d.input?.attachments ?? [];
      // A message of files alone is its files: no empty bubble above them (a stand-in whose
      // text is not read yet keeps its bubble, the place its text will take).
      const bubble = said || !files.length || d.stub ? h("div", "bubble user") : null;
      bubble?.append(h("span", "sr-only", "You said: "), document.createTextNode(said));
      const tools = h("div", "msg-actions user-actions");
      t.userNav = h("span", "pager-box");
      t.editBtn = h("button", "ghost small", "Edit");
      t.editBtn.type = "button";
      t.editBtn.setAttribute("aria-label", "Edit this message");
      t.editBtn.addEventListener("click", () => this.edit(id));
      const sent = h("span", "sent");
      sent.append(h("span", "sr-only", "Sent "), this._time(ev.ts));
      tools.append(t.userNav, t.editBtn, sent);
      const attached = files.length ? [attachedList(files, this.sessionId ?? "", this.fetchFile)] : [];
      if (!bubble) attached.unshift(h("span", "sr-only", "You sent files:"));
      user.append(...(bubble ? [bubble] : []), ...attached, tools);
      t.user = user;
      // Below the reply: Regenerate (or Retry), and its alternatives.
      const foot = h("div", "msg-actions turn-foot");
      t.replyNav = h("span", "pager-box");
      t.again = h("button", "ghost small again", "Regenerate");
      t.again.type = "button";
      t.again.hidden = true;
      t.again.addEventListener("click", () => this.regenerate(id));
      foot.append(t.replyNav, t.again);
      t.foot = foot;
      el.append(user, head, body, foot);
    }
    this.turns.set(id, t);
    this._badge(t);
  }

  // The badge and the Stop button say what the turn is doing now: a turn that has not
  // started (queued, or waiting for the turn before it) is "Waiting", and is cancelled.
  _badge(t) {
    const waiting = !TERMINAL.has(t.status) && (t.status === "queued" || t.waiting);
    setText(t.badge, waiting ? BADGE.queued : BADGE[t.status] ?? t.status);
    const tone = waiting ? "queued" : t.status;
    if (t.badge.dataset.status !== tone) t.badge.dataset.status = tone;
    t.el.toggleAttribute("data-waiting", waiting);
    if (t.stop) {
      setText(t.stop, waiting ? "Cancel" : "Stop");
      t.stop.setAttribute("aria-label", waiting ? `Cancel this message to ${t.agent}: it has not started` : `Stop this reply of ${t.agent}`);
    }
  }

  _waiting(id, after) {
    const t = this.turns.get(id);
    if (!t || TERMINAL.has(t.status) || t.started) return;
    t.waiting = true;
    t.after = after;
    this._note(id, "waiting", "Waiting for the previous turn to finish…");
    this._badge(t);
  }

  // A turn waiting for one that is not on the branch shown (an edit sent while a reply on
  // the old branch waits for an approval, say) says so, with a way to go there.
  _waitingElsewhere(t, onPath) {
    const note = t.notes.get("waiting");
    if (!note) return;
    const away = t.after && !onPath.has(t.after.split(".")[0]) && !TERMINAL.has(this.tree.get(t.after)?.status);
    const asks = away && this.needing().has(t.after);
    const said = `${away}:${asks}`;
    if (note.dataset.said === said) return;
    note.dataset.said = said;
    if (!away) { note.textContent = "Waiting for the previous turn to finish…"; return; }
    const go = h("button", "linkish", "Show it");
    go.type = "button";
    go.addEventListener("click", () => this.select(t.after));
    note.replaceChildren(`Waiting for the reply on another version of this conversation${asks ? ", which needs your answer" : " to finish"}. `, go);
  }

  // Where an approval waits: its branch shown, it in view, its Approve focused.
  async showApproval() {
    const ask = [...this.asks.entries()].find(([, a]) => a.pending && !TERMINAL.has(this.tree.get(a.task)?.status));
    if (!ask) return;
    const [aid, a] = ask;
    if (!this.tree.path().includes(a.task)) await this.select(a.task);
    const el = this.root.querySelector(`.approval[data-approval="${CSS.escape(aid)}"]`);
    if (!el) return;
    this.follow = false;
    el.scrollIntoView({ block: "center" });
    /** @type {HTMLButtonElement | null} */ (el.querySelector("button.approve"))?.focus({ preventScroll: true });
  }

  // The turn's own work began (after any wait for the turn before it).
  _started(id, ts) {
    const t = this.turns.get(id);
    if (!t) return;
    if (ts && !t.started) this._retime(t.when, ts);
    t.started = true;
    if (!t.waiting) return;
    t.waiting = false;
    this._clearNote(id, "waiting");
    this._badge(t);
  }

  _status(id, d) {
    const t = this.turns.get(id);
    if (!t) return;
    t.status = d.status;
    t.el.dataset.status = d.status;
    if (TERMINAL.has(d.status)) {
      t.waiting = false;
      this._clearNote(id, "waiting");
      t.stop?.remove(); t.stop = null;
      this._settle(t);
      if (d.error && !t.notes.has("run-error")) this._note(id, "run-error", d.error.message ?? JSON.stringify(d.error));
      if (!t.parent) {
        // What the next reply hears of this one (the server tells its model the same).
        const told = { cancelled: "Stopped. What was shown stays here, and the next reply is told it was stopped.", failed: "The next reply is told this one failed; or retry it.", interrupted: "The next reply is told this one was interrupted; or retry it." }[d.status];
        if (told) this._note(id, "ended", told); else this._clearNote(id, "ended");
      }
      for (const a of this.approvals.values()) if (a.task === id && a.pending) this._closeApproval(a, `Not answered: the turn ${d.status === "cancelled" ? "was stopped" : d.status}.`);
    }
    this._badge(t);
    if (!t.parent) this.dispatchEvent(new CustomEvent("turns"));
  }

  // A turn that ended keeps what it showed, without a typing cursor or a "running…" tool
  // (a stopped reply never gets its TEXT_MESSAGE_END).
  _settle(t) {
    for (const el of t.el.querySelectorAll(".bubble.streaming")) {
      const m = this.messages.get(el.dataset.message);
      el.classList.remove("streaming");
      if (m) renderMarkdown(m.el, m.text, this.replaying);
    }
    for (const tc of this.tools.values()) {
      if (!tc.el.dataset.done && t.el.contains(tc.el)) setText(tc.state, t.status === "cancelled" ? "stopped" : "not finished");
    }
  }

  _note(id, kind, text) {
    const t = this.turns.get(id);
    if (!t) return;
    let el = t.notes.get(kind);
    if (!el) { el = h("p", `note note-${kind}`); t.notes.set(kind, el); t.body.append(el); }
    el.textContent = text;
  }

  _clearNote(id, kind) {
    const t = this.turns.get(id);
    t?.notes.get(kind)?.remove();
    t?.notes.delete(kind);
  }

  // ---- streamed text -------------------------------------------------------------------

  _messageStart(taskId, mid) {
    const t = this.turns.get(taskId);
    if (!t || this.messages.has(mid)) return;
    const el = h("div", "bubble assistant streaming");
    el.dataset.message = mid;
    const m = { el, text: "", queued: false, top: t.top };
    // Copy the message's markdown source, as it was received.
    const actions = h("div", "msg-actions");
    actions.append(copyButton(() => m.text, "Copy message", "copy-msg"));
    m.actions = actions;
    t.body.append(el, actions);
    this.messages.set(mid, m);
  }

  _messageDelta(mid, delta) {
    const m = this.messages.get(mid);
    if (!m) return;
    m.text += delta;
    m.el.dataset.text = m.text;  // what was received, exactly (tests compare it with the log)
    if (this.replaying) return;  // drawn once, when the turn's events have all been applied
    if (!m.queued) { m.queued = true; requestAnimationFrame(() => { m.queued = false; if (m.el.isConnected) renderMarkdown(m.el, m.text); }); }
  }

  _messageEnd(mid) {
    const m = this.messages.get(mid);
    if (!m) return;
    m.el.classList.remove("streaming");
    renderMarkdown(m.el, m.text, this.replaying);
  }

  _superseded(taskId, d) {
    for (const mid of d.messageIds ?? []) { const m = this.messages.get(mid); m?.el.remove(); m?.actions.remove(); this.messages.delete(mid); }
    for (const cid of d.toolCallIds ?? []) { this.tools.get(cid)?.el.remove(); this.tools.delete(cid); }
    this._note(taskId, "superseded", `The reply was cut off (${d.reason ?? "interrupted"}).`);
  }

  // ---- tool calls ----------------------------------------------------------------------

  _toolStart(taskId, d) {
    const t = this.turns.get(taskId);
    if (!t || this.tools.has(d.toolCallId)) return;
    const el = h("details", "tool");
    el.dataset.toolCall = d.toolCallId;
    const summary = h("summary");
    const name = h("span", "tool-name", d.toolCallName === "delegate" ? "Delegating to a sub-agent" : `Tool: ${d.toolCallName}`);
    const state = h("span", "tool-state", "preparing…");
    summary.append(name, state);
    const body = h("div", "tool-body");
    const argsEl = h("div", "tool-args");
    const resultEl = h("div", "tool-result");
    body.append(argsEl, resultEl);
    el.append(summary, body);
    if (d.toolCallName === "delegate") el.open = true;
    t.body.append(el);
    this.tools.set(d.toolCallId, { el, args: "", argsEl, resultEl, state, task: taskId, name: d.toolCallName, top: t.top });
  }

  _toolArgs(cid, delta) {
    const tc = this.tools.get(cid);
    if (!tc) return;
    tc.args += delta;
    // As it streams: the JSON as it comes; once whole, readably (_toolEnd).
    if (!tc.raw) { tc.raw = h("pre"); tc.argsEl.replaceChildren(tc.raw); }
    tc.raw.textContent = tc.args;
  }

  _toolEnd(cid) {
    const tc = this.tools.get(cid);
    if (!tc) return;
    try { tc.argsEl.replaceChildren(argsView(tc.name, JSON.parse(tc.args || "{}"))); } catch { /* shown as it came */ }
    tc.raw = null;
    tc.state.textContent = "running…";
  }

  _toolResult(cid, content) {
    const tc = this.tools.get(cid);
    if (!tc) return;
    tc.state.textContent = "done";
    tc.el.dataset.done = "true";
    // A sub-agent's answer is in its card above: the delegate call's result is that answer
    // again (or its failure, which the card says), so it is not repeated.
    if (tc.name === "delegate" && tc.el.querySelector(".subagent")) { tc.resultEl.replaceChildren(); return; }
    tc.resultEl.replaceChildren(h("strong", "", "Result: "), h("span", "tool-result-text", content ?? ""));
  }

  // ---- approvals -----------------------------------------------------------------------

  _approvalAsked(taskId, d) {
    if (this.approvals.has(d.approvalId)) return;
    const tc = this.tools.get(d.toolCallId);
    const t = this.turns.get(taskId);
    if (!t) return;
    const el = h("form", "approval");
    el.dataset.approval = d.approvalId;
    el.setAttribute("aria-label", `Approval needed for ${d.tool}`);
    const q = h("p", "approval-q");
    q.append(h("strong", "", "Needs you: "), document.createTextNode(`the agent wants to ${toolDoes(d.tool)}.`));
    const args = argsView(d.tool, d.args, d.diff);
    args.classList.add("approval-args");
    const note = h("input"); note.type = "text"; note.placeholder = "Note for the agent (optional)"; note.setAttribute("aria-label", "Note for the agent"); note.maxLength = 2000;
    const yes = h("button", "approve", "Approve"); yes.type = "submit"; yes.value = "approve";
    const no = h("button", "deny", "Deny"); no.type = "submit"; no.value = "deny";
    const err = h("p", "error"); err.setAttribute("role", "alert");
    const row = h("div", "row"); row.append(note, yes, no);
    el.append(q, args, row, err);
    el.addEventListener("submit", async (e) => {
      e.preventDefault();
      const decision = e.submitter?.value ?? "approve";
      yes.disabled = no.disabled = true;
      try {
        await this.api(`/api/tasks/${taskId}/approvals/${d.approvalId}`, { method: "POST", body: JSON.stringify({ decision, note: note.value || null }) });
      } catch (ex) { err.textContent = sentence(ex.message); yes.disabled = no.disabled = false; }
    });
    (tc ? tc.el.querySelector(".tool-body") : t.body).append(el);
    // The card shows the arguments; the tool's own copy of them waits until it is answered.
    if (tc) { tc.el.open = true; tc.argsEl.hidden = true; setText(tc.state, "waiting for your OK"); }
    const a = { el, task: taskId, pending: true, tool: tc, top: t.top };
    this.approvals.set(d.approvalId, a);
  }

  _approvalAnswered(d) {
    const a = this.approvals.get(d.approvalId);
    if (!a) return;
    const by = d.decision === "approve" ? "Approved" : "Denied";
    this._closeApproval(a, `${by}${d.note ? ` — “${d.note}”` : ""}`, d.decision);
  }

  _closeApproval(a, text, decision = "none") {
    a.pending = false;
    if (a.tool) {
      a.tool.argsEl.hidden = false;
      if (!a.tool.el.dataset.done) setText(a.tool.state, decision === "approve" ? "running…" : decision === "deny" ? "denied" : "not run");
    }
    const done = h("p", "approval-done", text);
    done.dataset.approval = a.el.dataset.approval;
    done.dataset.decision = decision;
    a.el.replaceWith(done);
    a.el = done;
  }
}
