// The DOM helpers the views share.

// An element with a class and text.
export function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

// Write only what changed: an unchanged write still costs a style, layout and paint.
export function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

// One paced frame for every view: work asked for within FRAME_MS of the last frame waits
// for a later one, so a session streaming hundreds of events a second costs the page some
// twenty-five styles, layouts and paints a second, not one per event (or per view).
const FRAME_MS = Number(new URLSearchParams(globalThis.location?.search).get("frame_ms") ?? 40);
let queued = null;
let lastFrame = -Infinity;
export function inFrame(fn) {
  if (queued) { queued.add(fn); return; }
  queued = new Set([fn]);
  // Wait out the pace with a timer, not by asking for frame after frame: every frame asked
  // for is a full style, layout and paint pass even when nothing changed.
  const wait = lastFrame + FRAME_MS - performance.now();
  const run = () => requestAnimationFrame((now) => {
    const fns = queued;
    queued = null;
    lastFrame = now;
    for (const f of fns) f();
  });
  if (wait > 4) setTimeout(run, wait - 4); else run();
}
