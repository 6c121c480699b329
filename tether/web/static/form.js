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

// What a value may be, in plain words (the server says the same: tether/validation.py).
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
export function limitProblem(s, kind, value) {
  if (kind === "number") {
    if (s.type === "integer" && !Number.isInteger(value)) return "A whole number.";
    if (s.maximum !== undefined && value > s.maximum) return `At most ${s.maximum}.`;
    if (s.minimum !== undefined && value < s.minimum) return `At least ${s.minimum}.`;
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) return `Less than ${s.exclusiveMaximum}.`;
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) return `More than ${s.exclusiveMinimum}.`;
  } else if (kind === "text") {
    if (s.maxLength !== undefined && value.length > s.maxLength) return `At most ${count(s.maxLength, "character", "characters")}.`;
    if (s.minLength !== undefined && value.length < s.minLength) return `At least ${count(s.minLength, "character", "characters")}.`;
  } else if (kind === "lines") {
    if (s.maxItems !== undefined && value.length > s.maxItems) return `At most ${count(s.maxItems, "item", "items")}.`;
    if (s.minItems !== undefined && value.length < s.minItems) return s.minItems === 1 ? "At least one item." : `At least ${count(s.minItems, "item", "items")}.`;
  }
  return null;
}

export class SchemaForm {
  // agents() -> every registered agent, for a field that names one (`x-agent` in its schema)
  /** @param {{ root: HTMLElement, storageKey: () => string, agents?: () => any[] }} options */
  constructor({ root, storageKey, agents = () => [] }) {
    this.root = root;
    this.agents = agents;
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
      if (s["x-agent"]) {
        // A name of a registered agent: a choice of them, never free text with typos in it.
        kind = "agent";
        input = h("select", { id, "aria-describedby": describedby });
        const names = this.agents().filter((a) => a.kind !== "model" && a.name !== agent.name).map((a) => a.name);
        if (typeof s.default === "string" && !names.includes(s.default)) names.unshift(s.default);
        for (const n of names) input.append(new Option(n[0].toUpperCase() + n.slice(1), n));
        if (s.default !== undefined) input.value = s.default;
      } else if (s.enum) {
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
      if (saved && name in saved) {
        if (kind === "boolean") input.checked = !!saved[name];
        else if (kind !== "agent" || [...input.options].some((o) => o.value === saved[name])) input.value = saved[name];
      }
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
      if (f.kind === "agent") { out[name] = v; continue; }
      if (v.trim() === "") { if (f.input.required) { this.mark(name, "Fill this in."); ok = false; } continue; }
      let val;
      if (f.kind === "number") {
        val = Number(v);
        if (!Number.isFinite(val)) { this.mark(name, "Enter a number."); ok = false; continue; }
      } else if (f.kind === "lines") val = v.split("\n").filter((l) => l.trim() !== "").map(looseValue);
      else if (f.kind === "json") {
        try { val = JSON.parse(v); } catch { this.mark(name, "This is not valid JSON."); ok = false; continue; }
      } else if (f.kind === "loose") val = looseValue(v);
      else val = v;
      const problem = limitProblem(f.schema, f.kind, val);
      if (problem) { this.mark(name, problem); ok = false; } else out[name] = val;
    }
    if (!ok) [...this.fields.values()].find((f) => f.input.getAttribute("aria-invalid") === "true")?.input.focus();
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
