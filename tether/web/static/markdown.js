// Markdown from a model, as safe HTML: marked (GFM), then DOMPurify; raw HTML in the
// markdown is shown as typed, never run. Tables get a box of their own that scrolls
// sideways; a code block gets a header (its language and a Copy button) and colours from
// highlight.js, which is loaded the first time a code block is shown (vendor/highlight).
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";
import { h } from "./dom.js";

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
// An image is shown as a link to it, never loaded (a reply must not make the page fetch from
// wherever a model points it); its alt text says what it is.
const image = (token) => `<a href="${escapeHtml(token.href ?? "")}" class="img-link">Image: ${escapeHtml(token.text || token.href || "")}</a>`;
marked.use({ gfm: true, breaks: false, renderer: { html: (token) => escapeHtml(token.text ?? token.raw ?? ""), image } });
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") { node.setAttribute("rel", "noopener noreferrer nofollow"); node.setAttribute("target", "_blank"); }
});
const SANITIZE = { FORBID_TAGS: ["img", "style", "form", "input", "button", "iframe"], FORBID_ATTR: ["style"] };

// `lazy`: code is highlighted once it comes into view (a conversation drawn twenty turns at a
// time has dozens of code blocks, most out of view); otherwise at once (a streaming reply,
// drawn again each frame, must not flash plain).
export function renderMarkdown(el, text, lazy = false) {
  el.innerHTML = DOMPurify.sanitize(marked.parse(text), SANITIZE);
  for (const table of el.querySelectorAll("table")) {
    const wrap = h("div", "table-wrap");
    wrap.tabIndex = 0;  // a box that scrolls is reachable by keyboard
    table.replaceWith(wrap);
    wrap.append(table);
  }
  for (const code of el.querySelectorAll("pre > code")) {
    const lang = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className)?.[1]?.toLowerCase() ?? "";
    const pre = code.parentElement;
    const block = frame(lang, () => code.textContent.replace(/\n$/, ""));
    pre.replaceWith(block);
    block.append(pre);
    pre.tabIndex = 0;
    highlight(code, lang, lazy);
  }
}

// A code block for `text` (an approval's file content, say), highlighted as `lang`.
export function codeBlock(text, lang = "") {
  const pre = h("pre");
  pre.tabIndex = 0;
  const code = h("code", lang ? `language-${lang}` : "", text.replace(/\n$/, ""));
  pre.append(code);
  const block = frame(lang, () => text);
  block.append(pre);
  highlight(code, lang);
  return block;
}

// A unified diff: each line coloured as added, removed, a hunk or a file header.
export function diffBlock(diff) {
  const pre = h("pre", "diff");
  pre.tabIndex = 0;
  const code = h("code");
  for (const line of diff.replace(/\n$/, "").split("\n")) {
    const kind = /^(\+\+\+|---) /.test(line) ? "file" : line.startsWith("@@") ? "hunk" : line[0] === "+" ? "add" : line[0] === "-" ? "del" : "same";
    code.append(h("span", `line diff-${kind}`, line));
  }
  pre.append(code);
  const block = frame("diff", () => diff);
  block.append(pre);
  return block;
}

// The language of a file, from its name: what highlight.js calls it (its aliases cover most
// extensions; these are the ones it does not know by their extension).
const BY_EXT = {
  py: "python", js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript", ts: "typescript", tsx: "typescript",
  rb: "ruby", rs: "rust", md: "markdown", sh: "bash", zsh: "bash", yml: "yaml", kt: "kotlin", cs: "csharp", htm: "html",
  jsonl: "json", toml: "ini", cfg: "ini", conf: "ini", h: "c", hpp: "cpp", cc: "cpp", txt: "", text: "", log: "",
};
export function langOfPath(path) {
  const name = (String(path ?? "").split("/").pop() ?? "").toLowerCase();
  if (name === "dockerfile") return "dockerfile";
  if (name === "makefile") return "makefile";
  const ext = name.includes(".") ? name.split(".").pop() ?? "" : "";
  return ext in BY_EXT ? BY_EXT[ext] : ext;
}

function frame(lang, text) {
  const block = h("div", "code-block");
  const head = h("div", "code-head");
  head.append(h("span", "code-lang", lang || "text"), copyButton(text, "Copy code", "copy-code"));
  block.append(head);
  return block;
}

// ---- copy ------------------------------------------------------------------------------------

// A Copy button: copies text() and says so ("Copied") for a moment, to screen readers too.
export function copyButton(text, label, cls = "") {
  const b = h("button", `copy ${cls}`.trim(), "Copy");
  b.type = "button";
  b.setAttribute("aria-label", label);
  let timer = 0;
  b.addEventListener("click", async () => {
    let ok = true;
    try { await copyText(text()); } catch { ok = false; }
    b.textContent = ok ? "Copied" : "Could not copy";
    b.setAttribute("aria-label", ok ? "Copied" : "Could not copy");
    b.toggleAttribute("data-done", ok);
    say(ok ? "Copied to the clipboard." : "Could not copy: the browser refused.");
    clearTimeout(timer);
    timer = setTimeout(() => { b.textContent = "Copy"; b.setAttribute("aria-label", label); b.removeAttribute("data-done"); }, 1600);
  });
  return b;
}

export async function copyText(text) {
  if (navigator.clipboard?.writeText) {
    try { await navigator.clipboard.writeText(text); return; } catch { /* the older way, below */ }
  }
  // Without the clipboard API (a page served over plain http from another machine).
  const ta = h("textarea");
  ta.value = text;
  ta.setAttribute("readonly", "");
  ta.className = "sr-only";
  document.body.append(ta);
  ta.select();
  const ok = document.execCommand("copy");
  ta.remove();
  if (!ok) throw new Error("copy refused");
}

function say(text) {
  const el = document.getElementById("announce");
  if (!el) return;
  el.textContent = "";
  requestAnimationFrame(() => { el.textContent = text; });
}

// ---- highlighting ------------------------------------------------------------------------------

let hljs = null;
let loading = null;
const waiting = new Set();  // code elements shown before the highlighter had loaded
// Highlighted HTML by language and text: a streaming reply is rendered again every frame,
// and its finished code blocks are not highlighted again each time.
const cache = new Map();
const CACHE_MAX = 300;

function highlight(code, lang, lazy = false) {
  if (!lang || lang === "text" || lang === "plaintext") return;  // no guessing: slow and often wrong
  code.dataset.lang = lang;
  if (hljs && (!lazy || cache.has(`${lang}\0${code.textContent}`))) { paint(code); return; }
  if (lazy && typeof IntersectionObserver === "function") {
    seen ??= new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        seen.unobserve(e.target);
        if (hljs) paint(e.target); else { waiting.add(e.target); loadHighlighter(); }
      }
    }, { rootMargin: "300px 0px" });
    seen.observe(code);
    return;
  }
  waiting.add(code);
  loadHighlighter();
}
let seen = null;  // code waiting to come into view

// The highlighter, loaded once: at the first code block, or earlier when a page knows code
// is coming (a conversation opens), so that the first reply drawn is drawn highlighted.
export function loadHighlighter() {
  loading ??= import("./vendor/highlight/highlight.min.js").then((m) => {
    hljs = m.default;
    for (const c of waiting) if (c.isConnected) paint(c);
    waiting.clear();
  }, () => { loading = null; waiting.clear(); });  // shown plain; tried again at the next block
  return loading;
}

function paint(code) {
  const lang = code.dataset.lang;
  if (!hljs.getLanguage(lang)) return;
  const text = code.textContent;
  const key = `${lang}\0${text}`;
  let html = cache.get(key);
  if (html === undefined) {
    html = DOMPurify.sanitize(hljs.highlight(text, { language: lang, ignoreIllegals: true }).value);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
    cache.set(key, html);
  }
  code.innerHTML = html;
  code.classList.add("hljs");
}
