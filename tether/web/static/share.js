// Share links and export, in the page.
//
//   ShareTokens  what a page opened from a share link (`/#share=tsh_…`) signs its requests with:
//                the link's token, never a sign-in. Asked to refresh (a 401, or a stream's
//                `auth` event), it asks the server whether the link still reads, and if not
//                says why ("signedout", as the TokenManager does).
//   readOnly     the page as a share link shows it: the one session, read-only, and saying so.
//   ownerTools   for the signed-in owner, in the open session's header: Export (Markdown, JSON)
//                and Share (make a link, copy it, see the links and their expiry, revoke).

import { AuthError, problemDetail } from "./client.js";
import { ago, clause } from "./describe.js";

/** The token of a share link this page was opened from, or null. */
export function shareToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("share");
  return token && token.startsWith("tsh_") ? token : null;
}

export class ShareTokens extends EventTarget {
  /** @param {string} token */
  constructor(token, { fetch = globalThis.fetch.bind(globalThis) } = {}) {
    super();
    this.token = token;
    this.fetch = fetch;
    this.user = null;
    /** @type {string | null} why the link stopped reading (null: it reads) */
    this.ended = null;
  }

  get signedIn() { return this.ended === null; }

  async authHeader() {
    if (this.ended !== null) throw new AuthError(this.ended);
    return { authorization: `Bearer ${this.token}` };
  }

  async refresh() {
    if (this.ended !== null) throw new AuthError(this.ended);
    const r = await this.fetch("/api/share", { headers: { authorization: `Bearer ${this.token}` }, cache: "no-store" });
    if ([401, 403, 404].includes(r.status)) {
      const why = await problemDetail(r);
      this.ended = why;
      this.dispatchEvent(new CustomEvent("signedout", { detail: { reason: why } }));
      throw new AuthError(why);
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
  }

  async resume() { return this.ended === null; }
  async signOut() {}
  close() {}
}

/** @param {string} tag @param {string} [cls] @param {string} [text] */
function h(tag, cls = "", text = "") {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text) el.textContent = text;
  return el;
}

const upper = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/** The page as a share link shows it: no sessions, no composer, nothing that writes. */
export function readOnly() {
  document.body.classList.add("shared-view");
  const chip = h("span", "shared-chip", "Read-only");
  chip.append(h("span", "shared-chip-more", " shared view"));  // (a phone's header: its title has the room)
  chip.id = "shared-chip";
  document.querySelector(".brand")?.after(chip);
  const note = h("p", "shared-note muted", "You are viewing a session someone shared with you. It is read-only and updates live while its work runs.");
  document.getElementById("panel-chat")?.append(note);
}

/** The link no longer reads (revoked, expired): the page says so, in place of the session. */
export function showEnded(reason) {
  for (const id of ["app-view", "title-box"]) document.getElementById(id)?.setAttribute("hidden", "");
  let box = document.getElementById("shared-ended");
  if (!box) {
    box = h("section", "signin shared-ended");
    box.id = "shared-ended";
    box.setAttribute("role", "alert");
    const title = h("h1", "", "This shared link no longer works");
    box.append(title, h("p", "muted"));
    document.getElementById("signin-view")?.before(box);
  }
  /** @type {HTMLElement} */ (box.querySelector("p")).textContent = `${upper(reason)}.`;
}

const EXPIRIES = [["", "Never"], ["3600", "In 1 hour"], ["86400", "In 1 day"], ["604800", "In 7 days"], ["2592000", "In 30 days"]];

/**
 * Export and Share in the open session's header (desktop) and its ⋯ menu (phone).
 * @param {{ api: (path: string, init?: object) => Promise<any>, authHeader: () => Promise<object>, sessionId: () => string | null, closeMenu: () => void }} deps
 */
export function ownerTools({ api, authHeader, sessionId, closeMenu }) {
  const download = async (format) => {
    const id = sessionId();
    if (!id) return;
    const r = await fetch(`/api/sessions/${id}/export?format=${format}`, { headers: await authHeader(), cache: "no-store" });
    if (!r.ok) { alert(`Not exported: ${clause(await problemDetail(r))}.`); return; }
    const name = /filename="([^"]+)"/.exec(r.headers.get("content-disposition") ?? "")?.[1] ?? `session.${format === "json" ? "json" : "md"}`;
    const a = h("a");
    a.setAttribute("href", URL.createObjectURL(await r.blob()));
    a.setAttribute("download", name);
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.getAttribute("href") ?? ""), 10_000);
  };

  // Desktop: beside Rename and Delete.
  const menu = /** @type {HTMLDetailsElement} */ (h("details", "export-menu"));
  menu.id = "export-menu";
  const summary = h("summary", "ghost small", "Export");
  const pop = h("div", "export-pop");
  const md = h("button", "ghost small", "Markdown (.md)");
  const js = h("button", "ghost small", "JSON log (.json)");
  for (const [b, f] of /** @type {[HTMLButtonElement, string][]} */ ([[md, "markdown"], [js, "json"]])) {
    b.type = "button";
    b.addEventListener("click", () => { menu.open = false; download(f); });
  }
  pop.append(md, js);
  menu.append(summary, pop);
  const shareBtn = h("button", "ghost small", "Share");
  shareBtn.id = "share";
  /** @type {HTMLButtonElement} */ (shareBtn).type = "button";
  document.getElementById("delete")?.after(menu, shareBtn);
  // Phone: in the ⋯ menu.
  const phone = [["m-share", "Share session…"], ["m-export-md", "Export as Markdown"], ["m-export-json", "Export as JSON"]].map(([id, label]) => {
    const b = /** @type {HTMLButtonElement} */ (h("button", "ghost small phone-only", label));
    b.id = id; b.type = "button";
    return b;
  });
  document.getElementById("m-delete")?.after(...phone);
  phone[1].addEventListener("click", () => { closeMenu(); download("markdown"); });
  phone[2].addEventListener("click", () => { closeMenu(); download("json"); });

  const dialog = shareDialog(api, sessionId);
  shareBtn.addEventListener("click", () => dialog.open());
  phone[0].addEventListener("click", () => { closeMenu(); dialog.open(); });
  document.addEventListener("click", (e) => { if (menu.open && !menu.contains(/** @type {Node} */ (e.target))) menu.open = false; });
  // Esc closes the open menu (and only that: not a reply too), as Tab out of it does.
  menu.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || !menu.open) return;
    e.preventDefault();
    menu.open = false;
    summary.focus();
  });
  // (Focus moving to nothing is a click, which the listener above judges.)
  menu.addEventListener("focusout", (e) => {
    const to = /** @type {FocusEvent} */ (e).relatedTarget;
    if (to instanceof Node && !menu.contains(to)) menu.open = false;
  });
}

function shareDialog(api, sessionId) {
  const dlg = /** @type {HTMLDialogElement} */ (h("dialog", "share-dialog"));
  dlg.id = "share-dialog";
  dlg.setAttribute("aria-labelledby", "share-h");
  const title = h("h2", "", "Share this session");
  title.id = "share-h";
  const about = h("p", "muted", "Anyone with the link can read this session (its conversation, tasks and timeline, live) and nothing else: they cannot send, stop or change anything. You can revoke a link at any time.");
  const form = h("form", "share-form");
  const expLabel = h("label", "", "Expires");
  const exp = /** @type {HTMLSelectElement} */ (h("select"));
  exp.id = "share-expiry"; expLabel.setAttribute("for", exp.id);
  exp.append(...EXPIRIES.map(([v, t]) => new Option(t, v)));
  const labLabel = h("label", "", "Label (optional)");
  const lab = /** @type {HTMLInputElement} */ (h("input"));
  lab.id = "share-label"; lab.maxLength = 200; lab.placeholder = "Whom it is for"; labLabel.setAttribute("for", lab.id);
  const make = /** @type {HTMLButtonElement} */ (h("button", "", "Create link"));
  make.type = "submit";
  const err = h("p", "error"); err.setAttribute("role", "alert");
  form.append(expLabel, exp, labLabel, lab, make);
  const made = h("div", "share-made"); made.hidden = true;
  const urlLabel = h("label", "", "The new link (shown only now: copy it)");
  const url = /** @type {HTMLInputElement} */ (h("input"));
  url.id = "share-url"; url.readOnly = true; urlLabel.setAttribute("for", url.id);
  const copy = /** @type {HTMLButtonElement} */ (h("button", "", "Copy link"));
  copy.type = "button"; copy.id = "share-copy";
  const row = h("div", "row"); row.append(url, copy);
  made.append(urlLabel, row);
  const listH = h("h3", "", "Links to this session");
  const list = h("ul", "share-list");
  list.id = "share-list";
  const none = h("p", "muted", "No links yet.");
  const close = /** @type {HTMLButtonElement} */ (h("button", "ghost", "Close"));
  close.type = "button";
  close.addEventListener("click", () => dlg.close());
  dlg.append(title, about, form, err, made, listH, list, none, close);
  document.body.append(dlg);

  const render = async () => {
    const id = sessionId();
    if (!id) return;
    const { shares } = await api(`/api/sessions/${id}/shares`);
    none.hidden = shares.length > 0;
    list.replaceChildren(...shares.map((s) => {
      const li = h("li");
      li.dataset.share = s.id;
      const what = h("span", "share-what", s.label || "Link");
      const made = h("span", "muted", `made ${ago(Date.now() - s.created_at * 1000)}`);
      const exp = h("span", s.expired ? "error" : "muted", s.expires_at === null ? "never expires" : s.expired ? "expired" : `expires ${new Date(s.expires_at * 1000).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}`);
      const revoke = /** @type {HTMLButtonElement} */ (h("button", "danger", "Revoke"));
      revoke.type = "button";
      revoke.setAttribute("aria-label", `Revoke ${s.label || "this link"}`);
      revoke.addEventListener("click", async () => {
        revoke.disabled = true;
        try { await api(`/api/shares/${s.id}`, { method: "DELETE" }); await render(); } catch (e) { err.textContent = `Not revoked: ${clause(e.message)}.`; revoke.disabled = false; }
      });
      li.append(what, made, exp, revoke);
      return li;
    }));
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    make.disabled = true;
    try {
      const body = { label: lab.value, ...(exp.value ? { expires_in_s: Number(exp.value) } : {}) };
      const s = await api(`/api/sessions/${sessionId()}/shares`, { method: "POST", body: JSON.stringify(body) });
      url.value = s.url;
      made.hidden = false;
      copy.textContent = "Copy link";
      url.select();
      await render();
    } catch (ex) { err.textContent = `No link made: ${clause(ex.message)}.`; } finally { make.disabled = false; }
  });
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(url.value); copy.textContent = "Copied"; } catch { url.select(); copy.textContent = "Press Ctrl+C"; }
  });

  return {
    open() {
      made.hidden = true; url.value = ""; err.textContent = ""; lab.value = "";
      dlg.showModal();
      render().catch((e) => { err.textContent = `Could not list the links: ${clause(e.message)}.`; });
    },
  };
}
