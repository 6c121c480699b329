// The conversation's tree: its turns, what each follows, and which branch is shown. Pure (no
// DOM, no fetching; Node tests it on its own): the page feeds it the server's skeleton
// (GET /api/sessions/{id}/conversation) and the log's events, in seq order.
//
// A turn follows another turn (none: a first message). Turns that follow the same turn are
// alternatives: an edited message (another user-message node) or a regenerated reply (the
// same node: `regenerates`). Which branch is shown is the server's rule, applied to the same
// events: a turn's rank is the seq of the newest event that selected it or a turn below it
// (its own `task.created`, or `conversation.selected`); at each fork the highest rank wins.

const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);

export class ConversationTree {
  // What reset() sets (see there).
  /** @type {Map<string, any[]> | null} */ _kids;
  /** @type {Map<string, any>} */ turns;
  /** @type {any} */ last;
  /** @type {number} */ count;

  constructor() { this.reset(); }

  reset() {
    this._kids = null;
    this.turns = new Map(); // id -> {id, parent, unode, rank, order, agent, status, text, attachments, reply, error, created_at, ended_at, loaded}
    this.last = null;       // the newest turn created (a turn stored before the tree follows it)
    this.count = 0;
  }

  get size() { return this.turns.size; }
  get(id) { return this.turns.get(id); }

  // Is this top-level `task.created` a turn? A turn created since the tree says what it
  // follows (`parent`, maybe null); an older one is a model agent's.
  static isTurn(ev, isModelAgent) {
    if (ev.type !== "task.created" || ev.parent_task_id || ev.data?.parent_id) return false;
    const inp = ev.data?.input;
    return (inp && typeof inp === "object" && "parent" in inp) || isModelAgent(ev.data?.agent);
  }

  _upsert(id, fields) {
    let t = this.turns.get(id);
    if (!t) {
      t = { id, parent: null, unode: id, rank: -1, order: this.count++, status: "queued", text: "", reply: null, error: null, loaded: false };
      this.turns.set(id, t);
      this.last = id;
    }
    Object.assign(t, fields);
    this._kids = null;
    return t;
  }

  // parent id ("" for the first messages) -> its children, in creation order; made once
  // per change (a thousand turns: `alternatives` of each turn drawn would scan them all).
  _children() {
    if (!this._kids) {
      this._kids = new Map();
      for (const t of this.turns.values()) {
        const k = t.parent ?? "";
        let siblings = this._kids.get(k);
        if (!siblings) this._kids.set(k, (siblings = []));
        siblings.push(t);
      }
    }
    return this._kids;
  }

  // The server's skeleton: every turn, its rank, its text (and its final reply's, once done).
  adopt(skeleton) {
    for (const s of skeleton) {
      const had = this.turns.get(s.id);
      const t = this._upsert(s.id, {
        parent: s.parent, unode: s.regenerates ?? s.id, agent: s.agent, text: s.text ?? "",
        attachments: s.attachments ?? [], created_at: s.created_at,
      });
      t.rank = Math.max(t.rank, s.rank);
      // What the log says wins over the skeleton (read a moment earlier or later).
      if (!had || !TERMINAL.has(t.status)) Object.assign(t, { status: s.status, reply: s.reply, error: s.error, ended_at: s.ended_at });
    }
  }

  // A turn's `task.created`: it follows its parent (or, stored before the tree, the turn
  // created before it), and its branch is shown from now.
  created(ev) {
    const inp = ev.data?.input ?? {};
    const parent = "parent" in inp ? inp.parent : this.turns.has(ev.task_id) ? this.turns.get(ev.task_id).parent : this.last;
    const t = this._upsert(ev.task_id, {
      parent, unode: inp.regenerates ?? ev.task_id, agent: ev.data?.agent, text: inp.text ?? "",
      attachments: inp.attachments ?? [], created_at: ev.ts, loaded: true,
    });
    this.select(t.id, ev.seq);
    return t;
  }

  // Show this turn's branch: it and every turn above it rank as of this event.
  select(id, seq) {
    const seen = new Set();
    for (let t = this.turns.get(id); t && !seen.has(t.id); t = this.turns.get(t.parent)) {
      seen.add(t.id);
      t.rank = Math.max(t.rank, seq);
    }
  }

  status(id, status, fields = {}) {
    const t = this.turns.get(id);
    if (!t) return null;
    Object.assign(t, { status, ...fields });
    return t;
  }

  children(parent) { return this._children().get(parent ?? "") ?? []; }

  // The branch shown: from the first message down, the highest rank at each fork.
  path() {
    const kids = this._children();
    const out = [];
    const seen = new Set();
    for (let node = ""; kids.has(node);) {
      const best = /** @type {any[]} */ (kids.get(node)).reduce((a, b) => (b.rank > a.rank || (b.rank === a.rank && b.order > a.order) ? b : a));
      if (seen.has(best.id)) break;
      seen.add(best.id);
      out.push(best.id);
      node = best.id;
    }
    return out;
  }

  tip() { return this.path().at(-1) ?? null; }

  // A turn's alternatives. `messages`: the user-message nodes that follow the same turn (an
  // edit is another node), in the order they were first sent; `replies`: the turns that
  // answer the same message node (regenerations), in order.
  alternatives(id) {
    const t = this.turns.get(id);
    if (!t) return { messages: [], message: 0, replies: [], reply: 0 };
    const same = [...this.children(t.parent)].sort((a, b) => a.order - b.order);
    const messages = [...new Set(same.map((s) => s.unode))];
    const replies = same.filter((s) => s.unode === t.unode).map((s) => s.id);
    return { messages, message: messages.indexOf(t.unode), replies, reply: replies.indexOf(t.id) };
  }

  // The turn to show for a message node: the one of its replies shown last.
  shownFor(parent, unode) {
    const them = this.children(parent).filter((t) => t.unode === unode);
    return them.reduce((a, b) => (b.rank > a.rank || (b.rank === a.rank && b.order > a.order) ? b : a), them[0])?.id ?? null;
  }
}
