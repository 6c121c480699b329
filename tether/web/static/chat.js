// The conversation view: model agents' turns rendered from the session's log events.
// Pure rendering: it is fed events in seq order (each once) and never fetches the log itself.
import { argsView, toolDoes } from "./args.js";
import { copyButton, renderMarkdown } from "./markdown.js";
import { sentence } from "./describe.js";
import { h } from "./dom.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);

export class Conversation extends EventTarget {
  // api(path, init) -> JSON; isModelAgent(name) -> bool
  constructor({ root, api, isModelAgent }) {
    super();
    this.root = root;
    this.api = api;
    this.isModelAgent = isModelAgent;
    this.reset();
  }

  reset() {
    this.turns = new Map();     // task id -> {el, body, badge, status, parent, agent}
    this.messages = new Map();  // message id -> {el, text, queued}
    this.tools = new Map();     // tool call id -> {el, args, argsEl, resultEl, state, task}
    this.approvals = new Map(); // approval id -> {el, task, pending}
    this.root.replaceChildren();
  }

  get pendingApprovals() { return [...this.approvals.values()].filter((a) => a.pending && !TERMINAL.has(this.turns.get(a.task)?.status)).length; }

  apply(ev) { this.applyMany([ev]); }

  applyMany(evs) {
    // Follow the conversation while the reader is at its end; leave them be if they scrolled up.
    // (Measured once a batch: reading the scroll position lays the page out.)
    const r = this.root;
    const atEnd = r.scrollHeight - r.scrollTop - r.clientHeight < 60;
    for (const ev of evs) this._apply(ev);
    if (atEnd) r.scrollTop = r.scrollHeight;
  }

  _apply(ev) {
    const d = ev.data ?? {};
    switch (ev.type) {
      case "task.created": return this._created(ev, d);
      case "task.status": return this._status(ev.task_id, d);
      case "turn.waiting": return this._note(ev.task_id, "waiting", "Waiting for the previous turn to finish…");
      case "TEXT_MESSAGE_START": return this._messageStart(ev.task_id, d.messageId);
      case "TEXT_MESSAGE_CONTENT": return this._messageDelta(d.messageId, d.delta);
      case "TEXT_MESSAGE_END": return this._messageEnd(d.messageId);
      case "TOOL_CALL_START": return this._toolStart(ev.task_id, d);
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
    const badge = h("span", "badge", "queued"); badge.dataset.status = "queued";
    head.append(who, badge);
    if (!parentTurn) {
      const cancel = h("button", "danger", "Stop");
      cancel.setAttribute("aria-label", `Stop this turn of ${d.agent}`);
      cancel.addEventListener("click", () => this.api(`/api/tasks/${id}/cancel`, { method: "POST" }).catch((e) => alert(sentence(e.message))));
      head.append(cancel);
    }
    const body = h("div", "turn-body");
    if (parentTurn) {
      const task = h("p", "subagent-task"); task.append(h("strong", "", "Task: "), document.createTextNode(d.input?.text ?? ""));
      el.append(head, task, body);
      const tool = this.tools.get(d.input?.tool_call_id);
      // The card names the agent and its task: the delegate call's arguments say no more.
      if (tool) { tool.resultEl.before(el); tool.argsEl.hidden = true; } else parentTurn.body.append(el);
    } else {
      const user = h("div", "bubble user");
      user.append(h("span", "sr-only", "You said: "), document.createTextNode(d.input?.text ?? ""));
      el.append(user, head, body);
      this.root.append(el);
    }
    this.turns.set(id, { el, body, badge, status: "queued", parent: d.parent_id, agent: d.agent, notes: new Map() });
  }

  _status(id, d) {
    const t = this.turns.get(id);
    if (!t) return;
    t.status = d.status;
    t.badge.textContent = d.status; t.badge.dataset.status = d.status;
    t.el.dataset.status = d.status;
    if (d.status !== "queued") this._clearNote(id, "waiting");
    if (TERMINAL.has(d.status)) {
      t.el.querySelector(":scope > .turn-head > button.danger")?.remove();
      if (d.error && !t.notes.has("run-error")) this._note(id, "run-error", d.error.message ?? JSON.stringify(d.error));
      for (const a of this.approvals.values()) if (a.task === id && a.pending) this._closeApproval(a, `Not answered: the turn ${d.status}.`);
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
    if (!m.queued) { m.queued = true; requestAnimationFrame(() => { m.queued = false; renderMarkdown(m.el, m.text); }); }
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
