// The timeline: every event of the session in seq order, in plain words with its time and
// task, its raw JSON one click away. Events that belong together share one row that grows (a
// message's deltas, a tool call's argument deltas, a turn's end and its task's end), so a
// streamed reply is one row, not one per word. The model holds every loaded event; the DOM
// holds a window of the rows (the newest WINDOW while following), so a session of 90,000
// events keeps a few dozen rows on the page. Follow mode keeps the newest in view until the
// reader scrolls up; then new rows wait behind a "Jump to latest (N new)" pill.
import { TERMINAL, clock, eventTone, groupKey, groupText } from "./describe.js";
import { h, inFrame, setText } from "./dom.js";

// Rows kept while following: two screens. Every row on the page costs style, layout and
// paint work in each frame that adds one; rows further back are added as the reader scrolls.
const WINDOW = 60;
const EARLIER = 200;      // rows (or events fetched) per "Load earlier"
const KEEP = 5000;        // rows kept in memory above the first row on the page

// The event that closes its row's group (later events of the key start a new row).
const CLOSES = new Set(["TEXT_MESSAGE_END", "TOOL_CALL_END", "task.status"]);
const grows = (ev) => (ev.type === "TEXT_MESSAGE_CONTENT" || ev.type === "TOOL_CALL_ARGS" ? (ev.data?.delta ?? "").length : 0);

export class Timeline extends EventTarget {
  // What reset() sets (see there).
  /** @type {any[]} */ events;
  /** @type {Set<number>} */ bySeq;
  /** @type {any[]} */ entries;
  /** @type {Map<string, any>} */ open;
  /** @type {Set<any>} */ dirty;
  /** @type {number} */ lo;
  /** @type {number} */ hi;
  /** @type {boolean} */ follow;
  /** @type {boolean} */ olderOnServer;
  /** @type {boolean} */ pending;

  // loadBefore(seq, n) -> Promise<{events, more}>; nameOf(taskId) -> string
  constructor({ root, loadBefore, nameOf }) {
    super();
    this.root = root;
    this.loadBefore = loadBefore;
    this.nameOf = nameOf;
    this.list = h("ol", "events");
    this.list.setAttribute("aria-label", "Events, oldest first");
    this.earlier = h("button", "ghost small earlier", "Load earlier events");
    this.earlier.type = "button";
    this.earlier.addEventListener("click", () => this.loadEarlier());
    this.pill = h("button", "pill");
    this.pill.type = "button";
    this.pill.hidden = true;
    this.pill.addEventListener("click", () => this.jumpToLatest());
    this.empty = h("p", "muted empty-state", "Nothing has happened in this session yet. Every step of every task shows here as it happens, with its time.");
    const inner = h("div", "timeline-inner");
    inner.append(this.earlier, this.list);
    this.root.replaceChildren(inner, this.pill);
    this.root.before(this.empty);  // at the top of the panel (the scroller fills from the bottom)
    this.root.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.reset();
  }

  reset(olderOnServer = false) {
    this.events = [];         // loaded events, ascending seq
    this.bySeq = new Set();
    this.entries = [];        // rows, by their first event's seq: {evs, key, chars, li}
    this.open = new Map();    // group key -> its row, while more of its events may come
    this.dirty = new Set();   // rows on the page that grew since they were drawn
    this.lo = 0;              // index in entries of the first row in the DOM
    this.hi = 0;              // one past the last row in the DOM
    this.follow = true;
    this.olderOnServer = olderOnServer;
    this.pending = false;
    this.list.replaceChildren();
    this._chrome();
  }

  get seqs() { return this.events.map((e) => e.seq); }
  get rows() { return this.hi - this.lo; }

  // Events in seq order, each once (a repeat is dropped).
  add(evs) {
    for (const ev of evs) {
      if (this.bySeq.has(ev.seq)) continue;
      const last = this.events[this.events.length - 1];
      if (last && ev.seq < last.seq) { this._insertOld(ev); continue; }
      this.bySeq.add(ev.seq);
      this.events.push(ev);
      this._group(ev);
    }
    this._forget();
    this._schedule();
  }

  // A new row for the event, or the row of its group, which grows.
  _group(ev) {
    if (ev.type === "task.status" && TERMINAL.has(ev.data?.status)) this._ended(ev.task_id);
    const key = groupKey(ev);
    const e = key ? this.open.get(key) : undefined;
    if (e) {
      e.evs.push(ev);
      e.chars += grows(ev);
      if (e.li) this.dirty.add(e);
      if (CLOSES.has(ev.type)) this.open.delete(key);
      return;
    }
    const row = { evs: [ev], key, chars: grows(ev), li: null, ended: false };
    this.entries.push(row);
    if (key && !CLOSES.has(ev.type)) this.open.set(key, row);
  }

  // A task that ended (stopped, say) ends its messages that never got their end event.
  _ended(taskId) {
    for (const [k, e] of this.open) {
      if (e.evs[0].task_id !== taskId || k.startsWith("end:")) continue;
      e.ended = true;
      this.open.delete(k);
      if (e.li) this.dirty.add(e);
    }
  }

  // The model keeps at most KEEP rows beyond the rows on the page: older ones are read
  // again from the server by "Load earlier", so a day-long session does not grow the tab.
  _forget() {
    const extra = this.lo - KEEP;
    if (extra < 1000) return;
    for (const e of this.entries.splice(0, extra)) if (this.open.get(e.key) === e) this.open.delete(e.key);
    // Events before the first row kept (a dropped row's later deltas stay: they are few).
    const first = this.entries[0].evs[0].seq;
    let n = 0;
    while (n < this.events.length && this.events[n].seq < first) n++;
    for (const e of this.events.splice(0, n)) this.bySeq.delete(e.seq);
    this.lo -= extra; this.hi -= extra;
    this.olderOnServer = true;
  }

  _insertOld(ev) {
    // Only a page fetched by "Load earlier" lands below the newest; keep the order.
    const i = this.events.findIndex((e) => e.seq > ev.seq);
    this.bySeq.add(ev.seq);
    this.events.splice(i, 0, ev);
    let j = this.entries.findIndex((e) => e.evs[0].seq > ev.seq);
    if (j < 0) j = this.entries.length;
    this.entries.splice(j, 0, { evs: [ev], key: "", chars: grows(ev), li: null });
    if (j < this.lo) { this.lo += 1; this.hi += 1; }
  }

  _schedule() {
    if (this.pending) return;
    this.pending = true;
    inFrame(() => { this.pending = false; this.render(); });
  }

  render() {
    for (const e of this.dirty) if (e.li) this._fill(e);
    this.dirty.clear();
    if (this.follow) {
      const from = this.hi;
      const n = this.entries.length;
      const frag = document.createDocumentFragment();
      for (let i = Math.max(from, n - WINDOW); i < n; i++) frag.append(this._row(this.entries[i]));
      if (n - from > WINDOW) { this._clearRows(); this.lo = n - WINDOW; }
      this.list.append(frag);
      this.hi = n;
      // Trim from the top so that the window stays WINDOW rows.
      while (this.hi - this.lo > WINDOW) { this.list.firstElementChild?.remove(); this.entries[this.lo].li = null; this.lo += 1; }
    }
    this._chrome();
  }

  _clearRows() {
    for (let i = this.lo; i < this.hi; i++) if (this.entries[i]) this.entries[i].li = null;
    this.list.replaceChildren();
  }

  // What a row says, and its tone: written again as its group grows.
  _fill(e) {
    const status = e.evs.length > 1 ? e.evs.find((x) => x.type === "task.status") : null;
    const tone = eventTone(status ?? e.evs[0]);
    if ((e.li.dataset.tone ?? "") !== tone) { if (tone) e.li.dataset.tone = tone; else delete e.li.dataset.tone; }
    setText(e.li.querySelector(":scope > .what"), groupText(e.evs, e.chars, e.ended));
  }

  _row(e) {
    const ev = e.evs[0];
    const li = h("li", "ev");
    li.dataset.seq = ev.seq;
    if (ev.task_id) li.dataset.task = ev.task_id;
    const time = h("time", "when", clock(ev.ts * 1000));
    time.dateTime = new Date(ev.ts * 1000).toISOString();
    const who = h("span", "who", ev.task_id ? this.nameOf(ev.task_id) : "Session");
    const what = h("span", "what");
    // A button, not a <details>: a details element per row is a shadow tree per row, and
    // costs the page a third of its style and paint work while it follows a busy session.
    const raw = h("button", "raw", "JSON");
    raw.type = "button";
    raw.setAttribute("aria-expanded", "false");
    raw.setAttribute("aria-label", e.evs.length > 1 ? `Events from ${ev.seq} as JSON` : `Event ${ev.seq} as JSON`);
    raw.addEventListener("click", () => {
      const pre = li.querySelector("pre");
      if (pre) { pre.remove(); raw.setAttribute("aria-expanded", "false"); return; }
      const evs = e.evs.length > 1 ? e.evs.slice(0, 200) : e.evs[0];
      const more = e.evs.length > 200 ? `\n… and ${e.evs.length - 200} more events` : "";
      li.append(h("pre", "", JSON.stringify(evs, null, 2) + more));
      raw.setAttribute("aria-expanded", "true");
    });
    li.append(time, who, what, raw);
    e.li = li;
    this._fill(e);
    return li;
  }

  // The scroller is a column-reverse flex box: its scroll origin is the newest end, so while
  // the reader is there, rows added below stay in view with no scrolling (and no forced
  // layout) per frame; rows added above (load earlier) do not move what is in view.
  _toBottom() {
    this._programmatic = true;
    this.root.scrollTop = 0;
    requestAnimationFrame(() => { this._programmatic = false; });
  }

  _onScroll() {
    if (this._programmatic) return;
    const { scrollTop, scrollHeight, clientHeight } = this.root;
    const atEnd = Math.abs(scrollTop) < 40;
    if (atEnd && !this.follow && this.hi === this.entries.length) { this.follow = true; this._chrome(); }
    else if (!atEnd && this.follow) { this.follow = false; this._chrome(); }
    // Scrolling back through what is in memory needs no click: rows are added above as the
    // reader nears the first one (rows added above do not move what is in view).
    if (!this.follow && this.lo > 0 && scrollHeight - clientHeight - Math.abs(scrollTop) < 400) this._prependRows();
  }

  jumpToLatest() {
    this.follow = true;
    this._clearRows();
    this.hi = this.lo = Math.max(0, this.entries.length - WINDOW);
    this.render();
    this._toBottom();
    this.root.focus({ preventScroll: true });
  }

  async loadEarlier() {
    this.follow = false;
    if (this.lo === 0 && this.olderOnServer && this.events.length) {
      this.earlier.disabled = true;
      this.earlier.textContent = "Loading…";
      try {
        const page = await this.loadBefore(this.events[0].seq, EARLIER);
        const older = page.events.filter((e) => !this.bySeq.has(e.seq));
        for (const e of older) this.bySeq.add(e.seq);
        this.events.unshift(...older);
        this._prependEntries(older);
        this.olderOnServer = page.more;
      } catch (e) {
        this.earlier.textContent = `Could not load earlier events: ${e.message}. Try again`;
        this.earlier.disabled = false;
        return;
      } finally { this.earlier.disabled = false; }
    }
    this._prependRows();
  }

  // Rows for a page of older events (ascending). A group the page leaves open (a message
  // whose start was before the loaded tail) takes in its later events' row.
  _prependEntries(older) {
    const made = [];
    const open = new Map();
    for (const ev of older) {
      const key = groupKey(ev);
      const e = key ? open.get(key) : undefined;
      if (e) { e.evs.push(ev); e.chars += grows(ev); if (CLOSES.has(ev.type)) open.delete(key); continue; }
      const row = { evs: [ev], key, chars: grows(ev), li: null };
      made.push(row);
      if (key && !CLOSES.has(ev.type)) open.set(key, row);
    }
    for (const [key, row] of open) {
      const j = this.entries.findIndex((e) => e.key === key);
      if (j < 0 || j > EARLIER) continue;
      const later = this.entries[j];
      row.evs.push(...later.evs);
      row.chars += later.chars;
      if (this.open.get(key) === later) this.open.set(key, row);
      this.entries.splice(j, 1);
      this.dirty.delete(later);
      if (j < this.lo) { this.lo -= 1; this.hi -= 1; } else if (j < this.hi) { later.li?.remove(); this.hi -= 1; }
    }
    this.entries.unshift(...made);
    this.lo += made.length; this.hi += made.length;
  }

  // Rows above the first one, from the events in memory.
  _prependRows() {
    const from = Math.max(0, this.lo - EARLIER);
    const frag = document.createDocumentFragment();
    for (let i = from; i < this.lo; i++) frag.append(this._row(this.entries[i]));
    this.list.prepend(frag);
    this.lo = from;
    this._chrome();
  }

  _chrome() {
    if (this.empty.hidden !== this.events.length > 0) this.empty.hidden = this.events.length > 0;
    const hidden = this.lo > 0 || this.olderOnServer;
    if (this.earlier.hidden !== !hidden) this.earlier.hidden = !hidden;
    if (hidden && !this.earlier.disabled) setText(this.earlier, "Load earlier events");
    const n = this.entries.length - this.hi;
    const pill = this.follow || n === 0;
    if (this.pill.hidden !== pill) this.pill.hidden = pill;
    if (!pill) setText(this.pill, `Jump to latest (${n.toLocaleString("en")} new)`);
    const follow = this.follow ? "on" : "off";
    if (this.root.dataset.follow !== follow) this.root.dataset.follow = follow;
  }

  // Rename rows of tasks whose names became known after they were drawn (one pass over the
  // rows on the page, however many tasks).
  rename(taskIds) {
    if (!taskIds.size) return;
    for (const li of this.list.children) {
      const id = li.dataset.task;
      if (id && taskIds.has(id)) { const who = li.querySelector(":scope > .who"); if (who) who.textContent = this.nameOf(id); }
    }
  }
}

