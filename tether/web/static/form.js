// A form for an agent's input, built from its JSON Schema (GET /api/agents): one labelled
// field per property, help from its description, limits as the browser's own checks, and
// the server's 422 errors shown under the field they are about. What is typed is kept per
// session and agent, so a reload does not lose it.

function h(tag, attrs = {}, text) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export function humanize(name) {
  const unit = name.endsWith("_s") ? " (seconds)" : "";
  const base = (unit ? name.slice(0, -2) : name).replace(/_/g, " ");
  return base[0].toUpperCase() + base.slice(1) + unit;
}

// The first sentence of a docstring, as a person would write it.
export function firstSentence(text) {
  const s = (text ?? "").trim().split(/\n\s*\n/)[0].replace(/\s+/g, " ");
  const m = s.match(/^.*?[.!?](\s|$)/);
  return (m ? m[0] : s).trim();
}

function resolve(schema, root) {
  if (schema?.$ref) return resolve(root.$defs?.[schema.$ref.split("/").pop()] ?? {}, root);
  if (schema?.anyOf) { const real = schema.anyOf.find((s) => s.type !== "null"); return { ...schema, ...resolve(real, root) }; }
  return schema ?? {};
}

// Text as typed → a JSON value: numbers, true/false/null, [..] and {..} are JSON; the rest is text.
export function looseValue(text) {
  const t = text.trim();
  if (/^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)$/.test(t) || /^[[{"]/.test(t)) {
    try { return JSON.parse(t); } catch { /* text after all */ }
  }
  return text;
}

export class SchemaForm {
  constructor({ root, storageKey }) {
    this.root = root;
    this.storageKey = storageKey;  // () -> string
    this.fields = new Map();       // name -> {kind, input, error, schema}
  }

  build(agent) {
    this.agent = agent;
    this.fields.clear();
    const root = agent.input_schema ?? {};
    const props = root.properties ?? {};
    const required = new Set(root.required ?? []);
    const saved = this._saved();
    const out = [];
    for (const [name, raw] of Object.entries(props)) {
      const s = resolve(raw, root);
      const id = `f-${agent.name}-${name}`;
      const errId = `${id}-error`, helpId = `${id}-help`;
      const wrap = h("div", { class: "field", "data-field": name });
      const label = h("label", { for: id }, humanize(name));
      if (required.has(name)) label.append(h("span", { class: "req", "aria-hidden": "true" }, " *"));
      let kind, input;
      const describedby = `${helpId} ${errId}`;
      if (s.enum) {
        kind = "enum";
        input = h("select", { id, "aria-describedby": describedby });
        for (const v of s.enum) input.append(new Option(String(v), JSON.stringify(v)));
        if (s.default !== undefined) input.value = JSON.stringify(s.default);
      } else if (s.type === "boolean") {
        kind = "boolean";
        input = h("input", { id, type: "checkbox", "aria-describedby": describedby });
        input.checked = !!s.default;
      } else if (s.type === "integer" || s.type === "number") {
        kind = "number";
        input = h("input", { id, type: "number", inputmode: s.type === "integer" ? "numeric" : "decimal", step: s.type === "integer" ? "1" : "any", min: s.minimum ?? s.exclusiveMinimum, max: s.maximum ?? s.exclusiveMaximum, required: required.has(name), "aria-describedby": describedby });
        if (s.default !== undefined) input.value = String(s.default);
      } else if (s.type === "array") {
        kind = "lines";
        input = h("textarea", { id, rows: "4", required: required.has(name), "aria-describedby": describedby, placeholder: "One per line" });
        if (Array.isArray(s.default)) input.value = s.default.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join("\n");
      } else if (s.type === "object") {
        kind = "json";
        input = h("textarea", { id, rows: "3", spellcheck: "false", required: required.has(name), "aria-describedby": describedby, placeholder: "JSON" });
        if (s.default !== undefined) input.value = JSON.stringify(s.default, null, 2);
      } else {
        kind = s.type === "string" ? "text" : "loose";
        input = h("input", { id, type: "text", required: required.has(name), maxlength: s.maxLength, "aria-describedby": describedby });
        if (s.default !== undefined) input.value = String(s.default);
      }
      if (saved && name in saved) { if (kind === "boolean") input.checked = !!saved[name]; else input.value = saved[name]; }
      input.addEventListener("input", () => { this._clear(name); this._save(); });
      input.addEventListener("change", () => this._save());
      const help = h("p", { id: helpId, class: "help" }, firstSentence(s.description ?? ""));
      const error = h("p", { id: errId, class: "field-error", role: "alert" });
      if (kind === "lines") help.textContent += help.textContent ? " One per line." : "One per line.";
      wrap.append(label, input, help, error);
      this.fields.set(name, { kind, input, error, schema: s });
      out.push(wrap);
    }
    this.root.replaceChildren(...out);
  }

  // The input object, or null with the fields that are wrong marked.
  value() {
    const out = {};
    let ok = true;
    for (const [name, f] of this.fields) {
      this._clear(name);
      const v = f.input.value;
      if (f.kind === "boolean") { out[name] = f.input.checked; continue; }
      if (f.kind === "enum") { out[name] = JSON.parse(v); continue; }
      if (v.trim() === "") { if (f.input.required) { this.mark(name, "Fill this in."); ok = false; } continue; }
      if (f.kind === "number") {
        const n = Number(v);
        if (!Number.isFinite(n)) { this.mark(name, "Enter a number."); ok = false; } else out[name] = n;
      } else if (f.kind === "lines") out[name] = v.split("\n").filter((l) => l.trim() !== "").map(looseValue);
      else if (f.kind === "json") {
        try { out[name] = JSON.parse(v); } catch { this.mark(name, "This is not valid JSON."); ok = false; }
      } else if (f.kind === "loose") out[name] = looseValue(v);
      else out[name] = v;
    }
    return ok ? out : null;
  }

  // The server's 422: errors [{loc, msg}] → under their fields; the rest → returned as text.
  showErrors(errors) {
    const rest = [];
    for (const e of errors ?? []) {
      const loc = (e.loc ?? []).filter((x) => x !== "body" && x !== "input");
      const name = loc[0];
      if (this.fields.has(name)) {
        const where = loc.length > 1 ? ` (line ${Number(loc[1]) + 1})` : "";
        this.mark(name, `${e.msg}${where}`);
      } else rest.push(e.msg);
    }
    const first = [...this.fields.values()].find((f) => f.input.getAttribute("aria-invalid") === "true");
    first?.input.focus();
    return rest.join("; ");
  }

  mark(name, msg) {
    const f = this.fields.get(name);
    f.error.textContent = msg;
    f.input.setAttribute("aria-invalid", "true");
  }

  _clear(name) {
    const f = this.fields.get(name);
    f.error.textContent = "";
    f.input.removeAttribute("aria-invalid");
  }

  _key() { return `${this.storageKey()}.${this.agent?.name}`; }
  _saved() { try { return JSON.parse(localStorage.getItem(this._key()) ?? "null"); } catch { return null; } }
  _save() {
    const v = {};
    for (const [name, f] of this.fields) v[name] = f.kind === "boolean" ? f.input.checked : f.input.value;
    localStorage.setItem(this._key(), JSON.stringify(v));
  }
  forget() { localStorage.removeItem(this._key()); }
}
