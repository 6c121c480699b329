// Words for people: what a task is called and what an event says, from the log's data.
// Pure functions: no DOM, no fetching (the Node tests and the browser share them).

export const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);

const STATUS_WORDS = {
  queued: "Waiting to start", running: "Running", completed: "Done", failed: "Failed",
  cancelled: "Stopped", interrupted: "Interrupted",
};
export const statusWord = (s) => STATUS_WORDS[s] ?? s;

const NAME_FIELDS = ["title", "name", "item", "text", "task", "query", "prompt", "url", "path"];

export function short(value, max = 60) {
  let text = typeof value === "string" ? value : JSON.stringify(value);
  if (text === undefined) return "";
  text = text.replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

// A message for people (a server's `detail`, an error) as the rest of a sentence: no full
// stop at its end, so "Not deleted: ${clause(m)}." never ends in two.
export const clause = (text) => String(text ?? "").trim().replace(/[\s.]+$/, "");
// ...and as a sentence of its own: a capital first, one full stop at the end.
export function sentence(text) {
  const t = clause(text);
  return t ? `${cap(t)}${/[!?…]$/.test(t) ? "" : "."}` : "";
}

// "Item 3: the third thing", "Batch of 10,000 items", "researcher: find the …".
export function taskName(t) {
  const agent = t.agent ?? "task";
  const inp = t.input && typeof t.input === "object" && !Array.isArray(t.input) ? t.input : null;
  if (inp && Array.isArray(inp.items)) return `${cap(agent)} of ${inp.items.length.toLocaleString("en")} ${inp.items.length === 1 ? "item" : "items"}`;
  const num = Number.isInteger(inp?.index) ? ` ${inp.index + 1}` : "";
  const field = inp && NAME_FIELDS.find((k) => inp[k] !== undefined && inp[k] !== null && inp[k] !== "");
  if (field) return `${cap(agent)}${num}: ${short(inp[field], 48)}`;
  if (num) return `${cap(agent)}${num}`;
  return cap(agent);
}

// Date formats, each made the first time it is used (making one costs milliseconds, and a
// page opening a long session should not pay for those it does not show yet).
const formats = new Map();
const format = (opts) => {
  const key = JSON.stringify(opts);
  if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat("en-GB", opts));
  return formats.get(key);
};
const HMS = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
const HM = { hour: "2-digit", minute: "2-digit", hour12: false };
export function clock(ms, seconds = true) { return format(seconds ? HMS : HM).format(ms); }

export function duration(s) {
  s = Math.max(0, Math.round(s));
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor(s / 60) % 60}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s - (s % 5)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

// One line of plain language for a log event (the raw envelope stays one click away).
export function eventText(ev) {
  const d = ev.data ?? {};
  switch (ev.type) {
    case "task.created": return d.parent_id ? "Handed to a sub-agent" : "Started by you";
    case "task.status":
      if (d.status === "running") return "Started working";
      if (d.status === "completed") return "Finished";
      if (d.status === "failed") return `Failed: ${d.error?.message ?? "no reason given"}`;
      if (d.status === "cancelled") return "Stopped";
      if (d.status === "interrupted") return "Interrupted";
      return statusWord(d.status);
    case "task.progress": return d.m ? `Progress ${d.n} of ${d.m}` : `Progress ${d.n}`;
    case "task.cancel_requested": return "Cancel requested";
    case "task.recovered": return "Resumed after a server restart";
    case "task.moved": return `Moved to a live worker: ${d.reason ?? "its worker stopped"}`;
    case "batch.started": return `Working through ${Number(d.count).toLocaleString("en")} items, ${d.parallel} at a time`;
    case "batch.summary": return `${Number(d.succeeded).toLocaleString("en")} of ${Number(d.count).toLocaleString("en")} items succeeded${d.failed ? `, ${d.failed} failed` : ""}`;
    case "item.started": return `Working on “${short(d.item, 80)}”`;
    case "item.result": return `Result: ${plural(d.words, "word")}, ${plural(d.length, "character")}`;
    case "turn.waiting": return "Waiting for the previous turn";
    case "RUN_STARTED": return "Model turn started";
    case "RUN_FINISHED": return "Model turn finished";
    case "RUN_ERROR": return `Model turn failed: ${d.message ?? ""}`;
    case "TEXT_MESSAGE_START": return "Began a reply";
    case "TEXT_MESSAGE_CONTENT": return `Wrote “${short(d.delta, 80)}”`;
    case "TEXT_MESSAGE_END": return "Reply complete";
    case "TOOL_CALL_START": return `Calling ${d.toolCallName ?? "a tool"}`;
    case "TOOL_CALL_ARGS": return "Sent the tool its arguments";
    case "TOOL_CALL_END": return "Tool call sent";
    case "TOOL_CALL_RESULT": return `Tool answered: ${short(d.content, 80)}`;
    case "model.retry": return `The model was busy; retrying in ${d.delay_s} s`;
    case "model.usage": return `Model call used ${Number(d.input_tokens).toLocaleString("en")} tokens in, ${Number(d.output_tokens).toLocaleString("en")} out${d.cost === null || d.cost === undefined ? "" : ` ($${Number(d.cost).toFixed(4)})`}`;
    case "message.superseded": return "A reply cut off by a restart was replaced";
    case "approval.requested": return `Asked you to approve ${d.tool ?? "a tool call"}`;
    case "approval.answered": return `${d.decision === "deny" ? "Denied" : "Approved"}${d.note ? `: ${short(d.note, 60)}` : ""}`;
    case "conversation.selected": return "Showed another branch of the conversation";
    case "context.trimmed": return d.dropped ? `Left out the ${plural(d.dropped, "earliest turn")} to fit the model's context window` : `Shortened ${plural(d.shortened, "tool result")} to fit the model's context window`;
    case "log.truncated": return "Some events were too large and were cut";
    case "session.renamed": return `Renamed the session “${short(d.title, 80)}”`;
    default: {
      const words = ev.type.replace(/[._]/g, " ");
      const summary = short(d, 80);
      return summary && summary !== "{}" ? `${cap(words)}: ${summary}` : cap(words);
    }
  }
}

// One timeline row for the events that belong together: a message's start, deltas and end;
// a tool call's start, argument deltas and end; a model turn's end and the task's end (one
// "Failed: …", not the error twice). The key of the row an event joins, or "" for its own.
export function groupKey(ev) {
  const d = ev.data ?? {};
  switch (ev.type) {
    case "TEXT_MESSAGE_START": case "TEXT_MESSAGE_CONTENT": case "TEXT_MESSAGE_END":
      return d.messageId ? `m:${d.messageId}` : "";
    case "TOOL_CALL_START": case "TOOL_CALL_ARGS": case "TOOL_CALL_END":
      return d.toolCallId ? `c:${d.toolCallId}` : "";
    case "RUN_FINISHED": case "RUN_ERROR": return ev.task_id ? `end:${ev.task_id}` : "";
    case "task.status": return ev.task_id && TERMINAL.has(d.status) ? `end:${ev.task_id}` : "";
    default: return "";
  }
}

// The words of a grouped row, from its events (ascending) and what they added up to;
// `ended`: its task ended before the group's own end came (a stopped reply).
export function groupText(evs, chars, ended = false) {
  const head = evs[0];
  if (evs.length === 1 && head.type !== "TEXT_MESSAGE_CONTENT" && head.type !== "TOOL_CALL_ARGS") return eventText(head);
  const last = evs[evs.length - 1];
  if (head.type.startsWith("TEXT_MESSAGE")) {
    ended ||= last.type === "TEXT_MESSAGE_END";
    if (!chars) return ended ? "Replied with no text" : "Began a reply";
    let text = "";
    for (const e of evs) { if (e.type === "TEXT_MESSAGE_CONTENT") { text += e.data?.delta ?? ""; if (text.length > 80) break; } }
    const preview = short(text, 60);
    return `${ended ? "Wrote" : "Writing"} ${plural(chars, "character")}${preview ? `: “${preview}”` : ""}`;
  }
  if (head.type.startsWith("TOOL_CALL")) {
    const start = evs.find((e) => e.type === "TOOL_CALL_START");
    const name = start?.data?.toolCallName ?? "a tool";
    return ended || last.type === "TOOL_CALL_END" ? `Called ${name}` : `Calling ${name}${chars ? ` (${plural(chars, "character")} of arguments)` : ""}`;
  }
  // A model turn's end and its task's: the task's status says it, once.
  const status = evs.find((e) => e.type === "task.status");
  return eventText(status ?? last);
}

// Event kinds worth a glance: shown with a tone in the timeline.
export function eventTone(ev) {
  const d = ev.data ?? {};
  if (ev.type === "task.status" && (d.status === "failed" || d.status === "interrupted")) return "bad";
  if (ev.type === "RUN_ERROR") return "bad";
  if (ev.type === "approval.requested") return "ask";
  if (ev.type === "task.status" && d.status === "completed") return "good";
  return "";
}

export function plural(n, word) {
  if (typeof n !== "number") return `? ${word}s`;
  return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
}

// "just now", "4 min ago", "3 h ago", then the date: how long ago a message was written.
const DAY = { day: "numeric", month: "short" };
const DAY_YEAR = { day: "numeric", month: "short", year: "numeric" };
export function relative(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = new Date(ms);
  return format(d.getFullYear() === new Date(now).getFullYear() ? DAY : DAY_YEAR).format(d);
}

// The exact time, for a tooltip: "Tuesday 3 June 2025 at 14:03:22".
export function exact(ms) { return format({ dateStyle: "full", timeStyle: "medium" }).format(ms); }
