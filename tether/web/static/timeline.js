// The timeline: every event of the session in seq order, in plain words with its time and
// task, its raw JSON one click away. The model holds every loaded event; the DOM holds a
// window of them (the newest WINDOW while following), so a session of 90,000 events keeps a
// few dozen rows on the page. Follow mode keeps the newest in view until the reader
// scrolls up; then new events wait behind a "Jump to latest (N new)" pill.
import { clock, eventText, eventTone } from "./describe.js";
import { h, inFrame, setText } from "./dom.js";

// Rows kept while following: two screens. Every row on the page costs style, layout and
// paint work in each frame that adds one; rows further back are added as the reader scrolls.
const WINDOW = 60;
const EARLIER = 200;      // rows (or events fetched) per "Load earlier"
const KEEP = 5000;        // events kept in memory above the first row

export class Timeline extends EventTarget {
  // loadBefore(seq, n) -> Promise<{events, more}>; nameOf(taskId) -> string
  constructor({ root, loadBefore, nameOf }) {
    super();
    Object.assign(this, { root, loadBefore, nameOf });
    this.list = h("ol", "events");
    this.list.setAttribute("aria-label", "Events, oldest first");
    this.earlier = h("button", "ghost small earlier", "Load earlier events");
    this.earlier.type = "button";
    this.earlier.addEventListener("click", () => this.loadEarlier());
    this.pill = h("button", "pill");
    this.pill.type = "button";
    this.pill.hidden = true;
    this.pill.addEventListener("click", () => this.jumpToLatest());
    const inner = h("div", "timeline-inner");
    inner.append(this.earlier, this.list);
    this.root.replaceChildren(inner, this.pill);
    this.root.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.reset();
  }

  reset(olderOnServer = false) {
    this.events = [];         // loaded events, ascending seq
    this.bySeq = new Set();
    this.lo = 0;              // index in events of the first row in the DOM
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
    }
    this._forget();
    this._schedule();
  }

  // The model keeps at most KEEP events beyond the rows on the page: older ones are read
  // again from the server by "Load earlier", so a day-long session does not grow the tab.
  _forget() {
    const extra = this.lo - KEEP;
    if (extra < 1000) return;
    for (const e of this.events.splice(0, extra)) this.bySeq.delete(e.seq);
    this.lo -= extra; this.hi -= extra;
    this.olderOnServer = true;
  }

  _insertOld(ev) {
    // Only a page fetched by "Load earlier" lands below the newest; keep the order.
    let i = this.events.findIndex((e) => e.seq > ev.seq);
    this.bySeq.add(ev.seq);
    this.events.splice(i, 0, ev);
    if (i < this.lo) { this.lo += 1; this.hi += 1; }
  }

  _schedule() {
    if (this.pending) return;
    this.pending = true;
    inFrame(() => { this.pending = false; this.render(); });
  }

  render() {
    if (this.follow) {
      const from = this.hi;
      const frag = document.createDocumentFragment();
      for (let i = Math.max(from, this.events.length - WINDOW); i < this.events.length; i++) frag.append(this._row(this.events[i]));
      if (this.events.length - from > WINDOW) { this.list.replaceChildren(); this.lo = this.events.length - WINDOW; }
      this.list.append(frag);
      this.hi = this.events.length;
      // Trim from the top so that the window stays WINDOW rows.
      while (this.hi - this.lo > WINDOW) { this.list.firstElementChild?.remove(); this.lo += 1; }
    }
    this._chrome();
  }

  _row(ev) {
    const li = h("li", "ev");
    li.dataset.seq = ev.seq;
    if (ev.task_id) li.dataset.task = ev.task_id;
    const tone = eventTone(ev);
    if (tone) li.dataset.tone = tone;
    const time = h("time", "when", clock(ev.ts * 1000));
    time.dateTime = new Date(ev.ts * 1000).toISOString();
    const who = h("span", "who", ev.task_id ? this.nameOf(ev.task_id) : "Session");
    const what = h("span", "what", eventText(ev));
    // A button, not a <details>: a details element per row is a shadow tree per row, and
    // costs the page a third of its style and paint work while it follows a busy session.
    const raw = h("button", "raw", "JSON");
    raw.type = "button";
    raw.setAttribute("aria-expanded", "false");
    raw.setAttribute("aria-label", `Event ${ev.seq} as JSON`);
    raw.addEventListener("click", () => {
      const pre = li.querySelector("pre");
      if (pre) { pre.remove(); raw.setAttribute("aria-expanded", "false"); return; }
      li.append(h("pre", "", JSON.stringify(ev, null, 2)));
      raw.setAttribute("aria-expanded", "true");
    });
    li.append(time, who, what, raw);
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
    if (atEnd && !this.follow && this.hi === this.events.length) { this.follow = true; this._chrome(); }
    else if (!atEnd && this.follow) { this.follow = false; this._chrome(); }
    // Scrolling back through what is in memory needs no click: rows are added above as the
    // reader nears the first one (rows added above do not move what is in view).
    if (!this.follow && this.lo > 0 && scrollHeight - clientHeight - Math.abs(scrollTop) < 400) this._prependRows();
  }

  jumpToLatest() {
    this.follow = true;
    this.list.replaceChildren();
    this.hi = this.lo = Math.max(0, this.events.length - WINDOW);
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
        this.lo += older.length; this.hi += older.length;
        this.olderOnServer = page.more;
      } catch (e) {
        this.earlier.textContent = `Could not load earlier events: ${e.message}. Try again`;
        this.earlier.disabled = false;
        return;
      } finally { this.earlier.disabled = false; }
    }
    this._prependRows();
  }

  // Rows above the first one, from the events in memory.
  _prependRows() {
    const from = Math.max(0, this.lo - EARLIER);
    const frag = document.createDocumentFragment();
    for (let i = from; i < this.lo; i++) frag.append(this._row(this.events[i]));
    this.list.prepend(frag);
    this.lo = from;
    this._chrome();
  }

  _chrome() {
    const hidden = this.lo > 0 || this.olderOnServer;
    if (this.earlier.hidden !== !hidden) this.earlier.hidden = !hidden;
    if (hidden && !this.earlier.disabled) setText(this.earlier, "Load earlier events");
    const n = this.events.length - this.hi;
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

