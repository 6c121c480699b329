// Files attached to a message. In the composer: a tray that takes files dropped on the
// composer, pasted into it, or picked with "Attach"; each shows as a chip (name, size, ✕)
// until it is sent, and one too large or of a type the server does not take is refused there,
// before any upload, saying why. Under a sent message: each file, an image as a thumbnail,
// each a download (the files route needs the sign-in's token, so it is fetched, not linked).
import { h } from "./dom.js";

/** A size as a person reads it: "512 B", "12 KB", "3.4 MB". @param {number} n */
export function size(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${Math.round(n / 1e3)} KB`;
  return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;
}

// Text types that are not text/*, by extension (as the server names them).
const TEXT_LIKE = { json: "application/json", js: "application/javascript", mjs: "application/javascript", sh: "application/x-sh" };
/** @type {[string, number[]][]} */
const SIGNATURES = [
  ["image/png", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
  ["image/jpeg", [0xff, 0xd8, 0xff]],
  ["image/gif", [...new TextEncoder().encode("GIF87a")]],
  ["image/gif", [...new TextEncoder().encode("GIF89a")]],
  ["application/pdf", [...new TextEncoder().encode("%PDF-")]],
];

/** The file's type, read from its bytes as the server reads it (tether/attachments.py):
 * the client's own guess (`file.type`) is not what the server believes either.
 * @param {Blob & { name: string }} file */
export async function sniff(file) {
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  for (const [type, sig] of SIGNATURES) if (sig.every((b, i) => head[i] === b)) return type;
  const ascii = (/** @type {number} */ from, /** @type {number} */ to) => String.fromCharCode(...head.slice(from, to));
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (!bytes.includes(0)) {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      const ext = file.name.includes(".") ? file.name.split(".").pop()?.toLowerCase() ?? "" : "";
      return TEXT_LIKE[ext] ?? "text/plain";
    } catch { /* not UTF-8: not text */ }
  }
  return "application/octet-stream";
}

/** Whether `type` is one of `patterns` ("text/*": any text type). @param {string} type @param {string[]} patterns */
export function allowed(type, patterns) {
  return patterns.some((p) => p === type || (p.endsWith("/*") && type.startsWith(p.slice(0, -1))));
}

/** @typedef {{ name: string, path: string, size: number, media_type: string }} Attachment */
/** @typedef {{ max_bytes: number, max_files: number, types: string[] }} Limits */

export class AttachmentTray {
  /** @type {{ file: File, chip: HTMLElement, ref: Attachment | null }[]} */ files = [];
  /** @type {Limits | null} */ limits = null;

  // form: the composer; row: its row of controls ("Attach" goes first in it); box: its text
  // box (a paste of files); api(path, init) -> JSON; say(text): a problem, shown by the page.
  /** @param {{ form: HTMLFormElement, row: HTMLElement, box: HTMLTextAreaElement, api: Function, say: (text: string) => void }} options */
  constructor({ form, row, box, api, say }) {
    this.api = api;
    this.say = say;
    this.box = box;
    this.placeholder = box.placeholder;
    this.list = h("ul", "attach-tray");
    this.list.setAttribute("aria-label", "Files to send with the message");
    this.list.hidden = true;
    row.before(this.list);
    this.picker = h("input");
    this.picker.type = "file";
    this.picker.multiple = true;
    this.picker.hidden = true;
    this.picker.setAttribute("aria-hidden", "true");
    this.button = h("button", "ghost small attach-btn", "Attach");
    this.button.type = "button";
    this.button.title = "Attach files (or drop them here, or paste them)";
    this.button.setAttribute("aria-label", "Attach files");
    row.prepend(this.button, this.picker);
    this.button.addEventListener("click", () => this.picker.click());
    this.picker.addEventListener("change", () => { this.add([...(this.picker.files ?? [])]); this.picker.value = ""; });
    form.addEventListener("dragover", (e) => {
      if (!e.dataTransfer?.types.includes("Files")) return;
      e.preventDefault();
      form.classList.add("dropping");
    });
    form.addEventListener("dragleave", (e) => { if (!form.contains(/** @type {Node | null} */ (e.relatedTarget))) form.classList.remove("dropping"); });
    form.addEventListener("drop", (e) => {
      form.classList.remove("dropping");
      if (!e.dataTransfer?.files.length) return;
      e.preventDefault();
      this.add([...e.dataTransfer.files]);
    });
    box.addEventListener("paste", (e) => {
      const pasted = [...(e.clipboardData?.files ?? [])];
      if (!pasted.length) return;
      e.preventDefault();
      this.add(pasted);
    });
  }

  get count() { return this.files.length; }

  async _limits() {
    this.limits ??= /** @type {Limits} */ (await this.api("/api/attachments/limits"));
    this.button.hidden = this.limits.max_files === 0;
    return this.limits;
  }

  // Take these files, each checked first: what is refused says why, the rest become chips.
  /** @param {File[]} files */
  async add(files) {
    let limits;
    try { limits = await this._limits(); } catch (e) { this.say(`Files cannot be attached now: ${e.message}`); return; }
    const refused = [];
    for (const file of files) {
      if (this.files.length >= limits.max_files) { refused.push(`a message carries ${limits.max_files} files at most, so ${file.name} was left out`); break; }
      if (file.size > limits.max_bytes) { refused.push(`${file.name} is ${size(file.size)}, and a file may be ${size(limits.max_bytes)} at most`); continue; }
      const type = await sniff(file);
      if (!allowed(type, limits.types)) { refused.push(`${file.name} is ${type === "application/octet-stream" ? "not a type this server takes" : type}; you can attach ${limits.types.join(", ")}`); continue; }
      this._chip(file);
    }
    this.say(refused.length ? `Not attached: ${refused.join("; ")}.` : "");
  }

  /** @param {File} file */
  _chip(file) {
    const chip = h("li", "attach-chip");
    const remove = h("button", "ghost small attach-remove", "✕");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    chip.append(h("span", "attach-name", file.name), h("span", "attach-size", size(file.size)), remove);
    const entry = { file, chip, ref: null };
    remove.addEventListener("click", () => {
      this.files = this.files.filter((f) => f !== entry);
      chip.remove();
      this._changed();
    });
    this.files.push(entry);
    this.list.append(chip);
    this._changed();
  }

  // With files waiting, the text is optional: they are a message on their own.
  _changed() {
    const some = this.files.length > 0;
    this.list.hidden = !some;
    this.box.required = !some;
    this.box.placeholder = some ? "Add a message, or press Enter to send the files" : this.placeholder;
  }

  // Upload what is not uploaded yet (a message that failed to send keeps what it uploaded)
  // and answer what the message names.
  /** @param {string} sessionId @returns {Promise<Attachment[]>} */
  async upload(sessionId) {
    for (const f of this.files) {
      if (f.ref) continue;
      f.chip.classList.add("uploading");
      try {
        f.ref = await this.api(`/api/sessions/${sessionId}/attachments?name=${encodeURIComponent(f.file.name)}`, { method: "POST", body: f.file, headers: { "content-type": "application/octet-stream" } });
      } finally { f.chip.classList.remove("uploading"); }
    }
    return this.files.map((f) => /** @type {Attachment} */ (f.ref));
  }

  clear() {
    this.files = [];
    this.list.replaceChildren();
    this._changed();
  }
}

/** The path of a workspace file as a URL of the files route. @param {string} sessionId @param {string} path */
export function fileUrl(sessionId, path) {
  return `/api/sessions/${encodeURIComponent(sessionId)}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

const thumbs = new Map();  // url -> a data: URL (the page's CSP takes data: images)

// The files under a sent message. fetchFile(url) -> Blob, with the sign-in's token.
/** @param {Attachment[]} files @param {string} sessionId @param {(url: string) => Promise<Blob>} fetchFile */
export function attachedList(files, sessionId, fetchFile) {
  const list = h("ul", "attached");
  list.setAttribute("aria-label", "Attached files");
  for (const a of files) {
    const url = fileUrl(sessionId, a.path);
    const link = /** @type {HTMLAnchorElement} */ (h("a", "attached-file"));
    link.href = url;
    link.download = a.name;
    link.title = `Download ${a.name}`;
    if (a.media_type.startsWith("image/")) {
      const img = /** @type {HTMLImageElement} */ (h("img", "attached-thumb"));
      img.alt = "";
      link.append(img);
      thumbnail(img, url, a.media_type, fetchFile);
    }
    link.append(h("span", "attach-name", a.name), h("span", "attach-size", size(a.size)));
    link.addEventListener("click", async (e) => {
      e.preventDefault();
      const blob = await fetchFile(url);
      const save = /** @type {HTMLAnchorElement} */ (h("a"));
      save.href = URL.createObjectURL(blob);
      save.download = a.name;
      save.click();
      setTimeout(() => URL.revokeObjectURL(save.href), 60_000);
    });
    const item = h("li");
    item.append(link);
    list.append(item);
  }
  return list;
}

/** @param {HTMLImageElement} img @param {string} url @param {string} type @param {(url: string) => Promise<Blob>} fetchFile */
async function thumbnail(img, url, type, fetchFile) {
  try {
    if (!thumbs.has(url)) {
      const blob = new Blob([await fetchFile(url)], { type });
      thumbs.set(url, await new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(blob);
      }));
    }
    img.src = thumbs.get(url);
  } catch { img.remove(); }  // the name and size still say what it is
}
