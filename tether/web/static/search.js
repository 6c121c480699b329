// Search across your sessions: the box at the top of the sidebar (Ctrl/⌘+K), its results as
// a listbox (↑ ↓ to move, Enter to open, Esc to close), each with its session's title and a
// snippet whose matched words are marked. The snippet comes as plain text pieces (the odd
// ones matched) and goes in as text: nothing a message says becomes markup here.

import { h } from "./dom.js";

const KIND = {
  title: "Title", message: "You said", reply: "Reply", tool: "Tool result",
  task: "Task input", result: "Task result",
};
const PAUSE_MS = 150;  // typing pauses this long before a search is asked

export class SearchBox {
  /**
   * @param {{ input: HTMLInputElement, list: HTMLElement, status: HTMLElement,
   *   api: (path: string) => Promise<any>, open: (hit: any) => void }} options
   */
  constructor({ input, list, status, api, open }) {
    this.input = input; this.list = list; this.status = status; this.api = api; this.open = open;
    this.hits = []; this.next = null; this.active = -1; this.asked = ""; this.timer = 0; this.gen = 0;
    input.addEventListener("input", () => { clearTimeout(this.timer); this.timer = setTimeout(() => this.search(), PAUSE_MS); });
    input.addEventListener("keydown", (e) => this._key(e));
    input.addEventListener("focus", () => { if (this.hits.length) this._show(true); });
    // Leaving the box and its list closes it (a click on a result lands first).
    input.closest("[role=search]")?.addEventListener("focusout", (e) => {
      const to = /** @type {FocusEvent} */ (e).relatedTarget;
      if (!(to instanceof Node && input.closest("[role=search]")?.contains(to))) this._show(false);
    });
  }

  focus() { this.input.focus(); this.input.select(); }

  async search(more = false) {
    const q = this.input.value.trim();
    const gen = ++this.gen;
    if (!q) { this.hits = []; this.next = null; this._render(""); return; }
    // The word being typed (two characters or more) matches the words it begins: results
    // as you type, not only once a word is whole.
    const params = new URLSearchParams({ q: /[\p{L}\p{N}]{2}$/u.test(q) ? `${q}*` : q, limit: "20" });
    if (more && this.next) params.set("cursor", this.next);
    let page;
    try { page = await this.api(`/api/search?${params}`); } catch (e) {
      if (gen === this.gen) { this.hits = []; this.next = null; this._render(`Search failed: ${e.message}`); }
      return;
    }
    if (gen !== this.gen) return;  // a newer search was asked meanwhile
    this.hits = more ? [...this.hits, ...page.results] : page.results;
    this.next = page.next;
    this.asked = q;
    if (!more) this.active = this.hits.length ? 0 : -1;
    this._render(this.hits.length ? `${this.hits.length}${this.next ? "+" : ""} found` : `Nothing found for “${q}”`);
  }

  _key(e) {
    const n = this.hits.length + (this.next ? 1 : 0);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!n) return;
      e.preventDefault();
      this._show(true);
      this.active = (this.active + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      this._mark();
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (this.input.value.trim() !== this.asked) { clearTimeout(this.timer); this.search(); return; }
      this._choose(this.active);
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      if (!this.list.hidden) this._show(false); else { this.input.value = ""; this.search(); this.input.blur(); }
    }
  }

  _choose(i) {
    if (i < 0) return;
    if (i === this.hits.length) { this.search(true); return; }  // "More results"
    const hit = this.hits[i];
    this._show(false);
    this.open(hit);
  }

  _render(said) {
    this.status.textContent = said;
    const items = this.hits.map((hit, i) => {
      const li = h("li", "search-hit");
      li.id = `search-hit-${i}`;
      li.setAttribute("role", "option");
      li.dataset.session = hit.session_id;
      li.dataset.seq = String(hit.seq);
      const head = h("span", "search-head");
      head.append(h("span", "search-title", hit.title || "Untitled session"), h("span", "search-kind", KIND[hit.kind] ?? hit.kind));
      const text = h("span", "search-snippet");
      hit.snippet.forEach((piece, j) => text.append(j % 2 ? h("mark", "", piece) : piece));
      li.append(head, text);
      return li;
    });
    if (this.next) {
      const more = h("li", "search-hit search-more", "More results…");
      more.id = `search-hit-${this.hits.length}`;
      more.setAttribute("role", "option");
      items.push(more);
    }
    items.forEach((li, i) => {
      li.addEventListener("mousedown", (e) => e.preventDefault());  // the box keeps focus
      li.addEventListener("click", () => { this.active = i; this._choose(i); });
    });
    this.list.replaceChildren(...items);
    this._show(items.length > 0);
    this._mark();
  }

  _mark() {
    const items = [...this.list.children];
    items.forEach((li, i) => li.setAttribute("aria-selected", String(i === this.active)));
    const on = items[this.active];
    if (on) { this.input.setAttribute("aria-activedescendant", on.id); on.scrollIntoView({ block: "nearest" }); }
    else this.input.removeAttribute("aria-activedescendant");
  }

  _show(on) {
    this.list.hidden = !on || !this.list.children.length;
    this.input.setAttribute("aria-expanded", String(!this.list.hidden));
  }
}

/**
 * Where a result points, shown: its turn in the conversation (drawing earlier turns until
 * it is there), else its row in the timeline, else its task in the tree; scrolled to the
 * middle and marked for a moment. A title opens the session only.
 * @param {any} hit
 * @param {{ conversation: any, root: HTMLElement, timeline: HTMLElement, tree: HTMLElement,
 *   show: (panel: "chat" | "timeline" | "tasks") => void }} view
 */
export function reveal(hit, { conversation, root, timeline, tree, show }) {
  if (hit.kind === "title" || !hit.task_id) return;
  const sel = `[data-task="${CSS.escape(hit.task_id)}"]`;
  const turn = hit.task_id.split(".")[0];
  const path = conversation.tree.path();
  let el = null;
  let panel = /** @type {"chat" | "timeline" | "tasks"} */ ("chat");
  if (path.includes(turn)) {
    while (!(el = root.querySelector(sel)) && conversation.shown < path.length) conversation.showEarlier();
  }
  if (!el && (el = timeline.querySelector(`[data-seq="${hit.seq}"]`))) panel = "timeline";
  if (!el && (el = tree.querySelector(sel))) panel = "tasks";
  if (!el) return;
  show(panel);
  if (panel === "chat") conversation.follow = false;
  el.scrollIntoView({ block: "center" });
  el.classList.remove("found");
  el.getBoundingClientRect();  // (restarts the mark's fade when the same one is chosen again)
  el.classList.add("found");
  setTimeout(() => el.classList.remove("found"), 2500);
}
