// A tool call's arguments as a person reads them: a file to write as its path and its
// content (code, coloured by the file's extension), or the change as a diff when it
// overwrites a file; any other tool's as names and values, strings as text.
import { codeBlock, diffBlock, langOfPath } from "./markdown.js";
import { h } from "./dom.js";

export function argsView(tool, args, diff) {
  const el = h("div", "args");
  if (tool === "write_file" && args && typeof args.path === "string" && typeof args.content === "string") {
    const file = h("p", "args-file");
    file.append(h("span", "muted", diff ? "Changes to " : "File "), h("span", "args-path", args.path));
    el.append(file);
    if (diff) {
      el.append(diffBlock(diff));
      const whole = h("details");
      whole.append(h("summary", "", "The whole new file"));
      whole.addEventListener("toggle", () => { if (whole.open && whole.childElementCount === 1) whole.append(codeBlock(args.content, langOfPath(args.path))); });
      el.append(whole);
    } else el.append(codeBlock(args.content, langOfPath(args.path)));
    return el;
  }
  if (args && typeof args === "object" && !Array.isArray(args)) {
    const dl = h("dl", "args-kv");
    for (const [k, v] of Object.entries(args)) {
      const dd = h("dd");
      if (typeof v === "string") dd.textContent = v;
      else dd.append(h("pre", "", JSON.stringify(v, null, 2)));
      dl.append(h("dt", "", k), dd);
    }
    if (dl.childElementCount) el.append(dl); else el.append(h("p", "muted", "No arguments."));
    return el;
  }
  el.append(h("pre", "", JSON.stringify(args, null, 2)));
  return el;
}

// What a tool does, for "the agent wants to …".
const DOES = { write_file: "write a file", read_file: "read a file", list_files: "list the files", fetch: "fetch a web address", delegate: "hand a task to a sub-agent" };
export const toolDoes = (tool) => DOES[tool] ?? `run ${tool}`;
