// What the open session's model calls cost: a quiet line under each turn (its sub-agents'
// calls included) and the session's total in the header. The totals come from
// GET /api/sessions/{id}/usage (up to its `through_seq`); `model.usage` events after that seq
// are added as they arrive, so a resumed stream, a reload or a late page of old events never
// counts a call twice. A call of an agent without prices has no cost: such turns show their
// tokens only ("≥" before a cost that leaves some out), never $0.

import { h, inFrame, setText } from "./dom.js";

const TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"];

const count = (n) => Number(n).toLocaleString("en");

// An amount as a person reads it: $1,234.50, $0.05, $0.0042 (as the server words budgets).
export function money(amount) {
  if (amount >= 0.1 || amount === 0) return `$${amount.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  return `$${amount.toFixed(4).replace(/0{1,2}$/, "")}`;
}

function empty() { return { calls: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, cost: null, unpriced_calls: 0 }; }

// Add one call (a `model.usage` event's data) to totals.
function add(totals, d) {
  totals.calls += 1;
  for (const k of TOKENS) totals[k] += Number(d[k] ?? 0);
  if (d.cost === null || d.cost === undefined) totals.unpriced_calls += 1;
  else totals.cost = (totals.cost ?? 0) + Number(d.cost);
}

// "1,234 tokens in · 56 out · $0.0042": what a turn or a session used.
export function describeUsage(t) {
  const parts = [`${count(t.input_tokens)} tokens in`, `${count(t.output_tokens)} out`];
  if (t.cost !== null) parts.push(`${t.unpriced_calls ? "≥ " : ""}${money(t.cost)}`);
  return parts.join(" · ");
}

function details(t, what) {
  const cache = t.cache_read_tokens || t.cache_write_tokens ? `; cache: ${count(t.cache_read_tokens)} read, ${count(t.cache_write_tokens)} written` : "";
  const unpriced = t.unpriced_calls ? `; ${t.unpriced_calls} of unknown cost (no prices for their agent)` : "";
  return `${what}: ${t.calls === 1 ? "1 model call" : `${count(t.calls)} model calls`}, ${count(t.input_tokens)} input and ${count(t.output_tokens)} output tokens${cache}${unpriced}`;
}

export class UsageView {
  // What reset() sets (see there).
  /** @type {Map<string, any>} */ turns;
  /** @type {any} */ total;
  /** @type {number | null} */ budget;
  /** @type {number} */ through;
  /** @type {any[]} */ early;
  /** @type {string | null} */ sessionId;

  /** @param {{ root: HTMLElement, header: HTMLElement, api: Function }} options */
  constructor({ root, header, api }) {
    this.root = root;      // the conversation: its children are the turns (data-task)
    this.header = header;  // the session's total
    this.api = api;
    this.reset();
  }

  reset() {
    this.turns = new Map();   // turn id -> its totals (its sub-agents' calls included)
    this.total = empty();
    this.budget = null;
    this.through = Infinity;  // nothing is added until the session's totals are read
    this.early = [];          // usage events that came before them
    this.sessionId = null;
    this.render();
  }

  // Read the session's totals; the events that came meanwhile are added after them.
  async load(sessionId) {
    this.reset();
    this.sessionId = sessionId;
    let u;
    try {
      u = await this.api(`/api/sessions/${sessionId}/usage`);
    } catch (e) {
      if (this.sessionId === sessionId) { this.through = -1; this.early = []; }  // none shown
      throw e;
    }
    if (this.sessionId !== sessionId) return;
    this.turns = new Map(Object.entries(u.turns));
    this.total = u.total;
    this.budget = u.budget;
    this.through = u.through_seq;
    const early = this.early;
    this.early = [];
    this.apply(early);
    this.render();
  }

  // The log's events, in seq order: each `model.usage` after the totals read is added.
  apply(evs) {
    let changed = false;
    for (const ev of evs) {
      if (ev.type !== "model.usage" || ev.session_id !== this.sessionId) continue;
      if (this.through === Infinity) { this.early.push(ev); continue; }
      if (ev.seq <= this.through || this.through < 0) continue;
      this.through = ev.seq;
      const turn = ev.data?.turn ?? ev.task_id;
      let totals = this.turns.get(turn);
      if (!totals) this.turns.set(turn, (totals = empty()));
      add(totals, ev.data ?? {});
      add(this.total, ev.data ?? {});
      changed = true;
    }
    if (changed) this.render();
  }

  // Draw, in the next frame: the header, and a line under each turn drawn that used any.
  render() { inFrame(() => this._draw()); }

  _draw() {
    const t = this.total;
    const shown = t.calls > 0 || this.budget !== null;
    this.header.hidden = !shown;
    if (shown) {
      let text = t.cost !== null ? `${t.unpriced_calls ? "≥ " : ""}${money(t.cost)}` : t.calls ? `${count(t.input_tokens + t.output_tokens)} tokens` : "";
      let rest;
      if (this.budget === null) rest = t.cost !== null ? " spent" : "";
      else if (t.cost !== null) rest = ` of ${money(this.budget)} budget`;
      else { rest = `${text ? " · " : ""}budget ${money(this.budget)}`; if (!text) [text, rest] = [rest, ""]; }
      // The amount, then the words a phone's one-row header leaves out (never a cut "$0.").
      if (this.header.textContent !== text + rest) this.header.replaceChildren(text, ...(rest ? [h("span", "usage-rest", rest)] : []));
      this.header.title = details(t, "This session") + (this.budget === null ? "" : `; its budget: ${money(this.budget)}`);
    }
    // Lines drawn under turns above the reader must not move what they read: the first turn
    // in view keeps its place on screen (as the conversation's own layout does).
    const r = this.root, view = r.getBoundingClientRect().top - 1;
    const anchor = [.../** @type {HTMLCollectionOf<HTMLElement>} */ (r.children)].find((el) => el.dataset.task && !el.classList.contains("loading") && el.getBoundingClientRect().top >= view);
    const was = anchor?.getBoundingClientRect().top;
    for (const el of /** @type {HTMLCollectionOf<HTMLElement>} */ (this.root.children)) {
      const id = el.dataset.task;
      const u = id ? this.turns.get(id) : undefined;
      const found = /** @type {HTMLElement | null} */ (el.querySelector(":scope > .usage-line"));
      if (!u) { found?.remove(); continue; }
      const line = found ?? el.appendChild(h("p", "usage-line"));
      setText(line, describeUsage(u));
      line.title = details(u, "This turn");
    }
    if (anchor?.isConnected && was !== undefined) r.scrollTop += anchor.getBoundingClientRect().top - was;
  }
}
