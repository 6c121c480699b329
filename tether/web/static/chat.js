// The conversation view: model agents' turns rendered from the session's log events.
// Pure rendering: it is fed events in seq order (each once) and never fetches the log itself.
import { argsView, toolDoes } from "./args.js";
import { copyButton, renderMarkdown } from "./markdown.js";
import { exact, relative, sentence } from "./describe.js";
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
export class Conversation extends EventTarget {
  // api(path, init) -> JSON; isModelAgent(name) -> bool; pill: the "Jump to latest" button
  constructor({ root, api, isModelAgent, pill = null }) {
    super();
    this.root = root;
    this.api = api;
    this.isModelAgent = isModelAgent;
    this.pill = pill;
    this.pill?.addEventListener("click", () => this.jumpToLatest());
    this.resize = new ResizeObserver(() => this._stick());
    this.root.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.reset();
  }

  reset() {
    this.turns = new Map();     // task id -> {el, body, badge, status, parent, agent, waiting, stop}
    this.messages = new Map();  // message id -> {el, text, queued}
    this.tools = new Map();     // tool call id -> {el, args, argsEl, resultEl, state, task}
    this.approvals = new Map(); // approval id -> {el, task, pending}
    this.times = [];            // {el, ms}: every timestamp shown, refreshed by refreshTimes
    this.root.replaceChildren();
    this.resize.disconnect();
    this.resize.observe(this.root);
    this.follow = true;
    this.pinned = 0;            // scrollTop where follow mode last put the end in view
    if (this.pill) this.pill.hidden = true;
    this.dispatchEvent(new CustomEvent("turns"));
  }

  get pendingApprovals() { return [...this.approvals.values()].filter((a) => a.pending && !TERMINAL.has(this.turns.get(a.task)?.status)).length; }

  // Top-level turns that have not ended (the composer's Stop stops these).
  unfinished() { return [...this.turns.entries()].filter(([, t]) => !t.parent && !TERMINAL.has(t.status)).map(([id]) => id); }

  apply(ev) { this.applyMany([ev]); }

  applyMany(evs) {
    for (const ev of evs) this._apply(ev);
    if (!this.follow && this.pill?.hidden && evs.some((ev) => this.turns.has(ev.task_id))) this.pill.hidden = false;
  }

  // A status learnt from a poll or snapshot (the stream may be down): the same as its event.
  setStatus(id, status) {
    const t = this.turns.get(id);
    if (t && t.status !== status && !TERMINAL.has(t.status)) this._status(id, { status });
  }

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
    this.times.push({ el, ms });
    return el;
  }

  _retime(el, ts) {
    const t = this.times.find((x) => x.el === el);
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
      case "turn.waiting": return this._waiting(ev.task_id);
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
    if (!this.isModelAgent(d.agent)) return;
    const id = ev.task_id;
    const parentTurn = d.parent_id ? this.turns.get(d.parent_id) : null;
    if (d.parent_id && !parentTurn) return;
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
      stop.addEventListener("click", () => this.api(`/api/tasks/${id}/cancel`, { method: "POST" }).catch((e) => alert(sentence(e.message))));
      head.append(stop);
    }
    const body = h("div", "turn-body");
    if (parentTurn) {
      const task = h("p", "subagent-task"); task.append(h("strong", "", "Task: "), document.createTextNode(d.input?.text ?? ""));
      el.append(head, task, body);
      const tool = this.tools.get(d.input?.tool_call_id);
      // The card says who does what: the delegate call's arguments would say it again.
      if (tool) { tool.resultEl.before(el); tool.argsEl.hidden = true; } else parentTurn.body.append(el);
    } else {
      const user = h("div", "bubble user");
      user.append(h("span", "sr-only", "You said: "), document.createTextNode(d.input?.text ?? ""));
      const sent = h("div", "sent");
      sent.append(h("span", "sr-only", "Sent "), this._time(ev.ts));
      el.append(user, sent, head, body);
      this.root.append(el);
      this.resize.observe(el);
    }
    const t = { el, body, badge, when, stop, status: "queued", parent: d.parent_id, agent: d.agent, notes: new Map(), waiting: false };
    this.turns.set(id, t);
    this._badge(t);
    if (!parentTurn) this.dispatchEvent(new CustomEvent("turns"));
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

  _waiting(id) {
    const t = this.turns.get(id);
    if (!t || TERMINAL.has(t.status) || t.started) return;
    t.waiting = true;
    this._note(id, "waiting", "Waiting for the previous turn to finish…");
    this._badge(t);
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
      if (m) renderMarkdown(m.el, m.text);
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
    const m = { el, text: "", queued: false };
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
    if (!m.queued) { m.queued = true; requestAnimationFrame(() => { m.queued = false; if (m.el.isConnected) renderMarkdown(m.el, m.text); }); }
  }

  _messageEnd(mid) {
    const m = this.messages.get(mid);
    if (!m) return;
    m.el.classList.remove("streaming");
    renderMarkdown(m.el, m.text);
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
    this.tools.set(d.toolCallId, { el, args: "", argsEl, resultEl, state, task: taskId, name: d.toolCallName });
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
    if (tc) { tc.el.open = true; tc.argsEl.hidden = true; }
    const a = { el, task: taskId, pending: true, tool: tc };
    this.approvals.set(d.approvalId, a);
    if (!TERMINAL.has(t.status)) this.dispatchEvent(new CustomEvent("needsyou", { detail: { tool: d.tool, task: taskId } }));
    this.dispatchEvent(new CustomEvent("approvals"));
  }

  _approvalAnswered(d) {
    const a = this.approvals.get(d.approvalId);
    if (!a) return;
    const by = d.decision === "approve" ? "Approved" : "Denied";
    this._closeApproval(a, `${by}${d.note ? ` — “${d.note}”` : ""}`, d.decision);
  }

  _closeApproval(a, text, decision = "none") {
    a.pending = false;
    if (a.tool) a.tool.argsEl.hidden = false;
    const done = h("p", "approval-done", text);
    done.dataset.approval = a.el.dataset.approval;
    done.dataset.decision = decision;
    a.el.replaceWith(done);
    a.el = done;
    this.dispatchEvent(new CustomEvent("approvals"));
  }
}
