// The conversation tree on its own: the page's rule for the branch shown (the server applies
// the same rule; tests/test_conversation.py checks the server against the log).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConversationTree } from "../../tether/web/static/conversation.js";

let seq = 0;
const created = (id, input, agent = "assistant") => ({ seq: ++seq, type: "task.created", task_id: id, parent_task_id: null, ts: seq, data: { agent, input, parent_id: null } });
const selected = (turn) => ({ seq: ++seq, type: "conversation.selected", task_id: null, data: { turn } });

function feed(tree, evs) {
  for (const ev of evs) {
    if (ev.type === "task.created") tree.created(ev);
    else tree.select(ev.data.turn, ev.seq);
  }
}

test("edits and regenerations branch; the newest branch is shown; a selection shows its branch down to what was shown below it", () => {
  const tree = new ConversationTree();
  feed(tree, [
    created("a", { text: "first", parent: null, regenerates: null }),
    created("b", { text: "second", parent: "a", regenerates: null }),
    created("c", { text: "edited", parent: null, regenerates: null }),   // edit of a
    created("d", { text: "second", parent: "a", regenerates: "b" }),     // regenerate b
    created("e", { text: "third", parent: "d", regenerates: null }),
  ]);
  assert.deepEqual(tree.path(), ["a", "d", "e"]);
  assert.deepEqual(tree.alternatives("a"), { messages: ["a", "c"], message: 0, replies: ["a"], reply: 0 });
  assert.deepEqual(tree.alternatives("d"), { messages: ["b"], message: 0, replies: ["b", "d"], reply: 1 });
  feed(tree, [selected("c")]);
  assert.deepEqual(tree.path(), ["c"]);
  feed(tree, [selected("b")]);
  assert.deepEqual(tree.path(), ["a", "b"]);
  feed(tree, [selected("d")]);
  assert.deepEqual(tree.path(), ["a", "d", "e"], "d's branch continues where it was last shown");
  assert.equal(tree.shownFor("a", "b"), "d");
  assert.equal(tree.tip(), "e");
});

test("turns stored before the tree follow the turn before them; the skeleton and the events agree", () => {
  const tree = new ConversationTree();
  feed(tree, [created("x", { text: "old one" }), created("y", { text: "old two" })]);
  assert.deepEqual(tree.path(), ["x", "y"]);
  const fromSkeleton = new ConversationTree();
  fromSkeleton.adopt([
    { id: "x", parent: null, regenerates: null, rank: -1, agent: "assistant", status: "completed", text: "old one", reply: "r1" },
    { id: "y", parent: "x", regenerates: null, rank: -1, agent: "assistant", status: "completed", text: "old two", reply: "r2" },
    { id: "z", parent: "x", regenerates: null, rank: 40, agent: "assistant", status: "running", text: "new", reply: null },
  ]);
  assert.deepEqual(fromSkeleton.path(), ["x", "z"]);
  // An event the skeleton already holds changes nothing; a later selection does.
  fromSkeleton.select("y", 41);
  assert.deepEqual(fromSkeleton.path(), ["x", "y"]);
  assert.equal(fromSkeleton.get("y").reply, "r2");
});

test("a turn is a top-level task created with a parent, or a model agent's", () => {
  const isModel = (a) => a === "assistant";
  assert.ok(ConversationTree.isTurn(created("t1", { text: "hi", parent: null }, "gone-agent"), isModel));
  assert.ok(ConversationTree.isTurn(created("t2", { text: "hi" }), isModel));
  assert.ok(!ConversationTree.isTurn(created("t3", { items: [1] }, "batch"), isModel));
  assert.ok(!ConversationTree.isTurn({ ...created("t4.0", { text: "sub" }), parent_task_id: "t4" }, isModel));
});
