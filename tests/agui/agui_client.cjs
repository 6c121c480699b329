// The published AG-UI client (@ag-ui/client, pinned in tests/e2e/package-lock.json) against a
// real Tether server. Run by tests/test_agui.py with NODE_PATH=tests/e2e/node_modules.
//
//   node agui_client.cjs run URL SECRET THREAD RUN TEXT
//       An HttpAgent run: the client's own schema enforcement and event verification apply;
//       prints {events, messages} as JSON. Any [ag-ui] warning (something stripped or
//       converted) fails it.
//   node agui_client.cjs hitl URL SECRET THREAD RUN1 RUN2 TEXT
//       A run with `forwardedProps.interrupts`, which ends on an approval's interrupt; then
//       the run that resumes it, approving (the client checks every pending interrupt is
//       answered); prints {events, interrupts, messages}.
//   node agui_client.cjs verify < events.json
//       The client's enforcement and verification over a list of events (a run joined again
//       after drops, stitched together); prints {ok: true, count}.
"use strict";

const { HttpAgent, enforceEvents, verifyEvents } = require("@ag-ui/client");
const { from, lastValueFrom } = require("rxjs");
const { toArray } = require("rxjs/operators");

const warnings = [];
const warn = console.warn;
console.warn = (...args) => {
  warnings.push(args.map(String).join(" "));
  warn(...args);
};

function failOnWarnings() {
  const ours = warnings.filter((w) => w.includes("[ag-ui]") || w.includes("AG-UI"));
  if (ours.length) {
    console.error("AG-UI client warnings:\n" + ours.join("\n"));
    process.exit(3);
  }
}

async function run([url, secret, threadId, runId, text]) {
  const agent = new HttpAgent({
    url,
    headers: { "x-web-bootstrap-secret": secret },
    threadId,
    initialMessages: [{ id: "u-" + runId, role: "user", content: text }],
  });
  const events = [];
  await agent.runAgent({ runId }, { onEvent: ({ event }) => void events.push(event) });
  failOnWarnings();
  process.stdout.write(JSON.stringify({ events, messages: agent.messages }));
}

async function hitl([url, secret, threadId, run1, run2, text]) {
  const agent = new HttpAgent({
    url,
    headers: { "x-web-bootstrap-secret": secret },
    threadId,
    initialMessages: [{ id: "u-" + run1, role: "user", content: text }],
  });
  const events = [];
  const sub = { onEvent: ({ event }) => void events.push(event) };
  const forwardedProps = { interrupts: true };
  await agent.runAgent({ runId: run1, forwardedProps }, sub);
  const interrupts = agent.pendingInterrupts;
  if (!interrupts.length) throw new Error("the first run ended without an interrupt");
  const resume = interrupts.map((i) => ({
    interruptId: i.id,
    status: "resolved",
    payload: { approve: true },
  }));
  await agent.runAgent({ runId: run2, forwardedProps, resume }, sub);
  failOnWarnings();
  process.stdout.write(JSON.stringify({ events, interrupts, messages: agent.messages }));
}

async function verify() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const events = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const out = await lastValueFrom(
    from(events).pipe(enforceEvents(), verifyEvents(), toArray()),
  );
  failOnWarnings();
  process.stdout.write(JSON.stringify({ ok: true, count: out.length }));
}

const [mode, ...args] = process.argv.slice(2);
(mode === "run" ? run(args) : mode === "hitl" ? hitl(args) : verify()).catch((err) => {
  console.error("AG-UI client failed:", err && err.stack ? err.stack : err);
  process.exit(2);
});
