// The part of DOMPurify (static/vendor/purify.es.js) that markdown.js uses.

export interface Config {
  FORBID_TAGS?: string[];
  FORBID_ATTR?: string[];
}

declare const DOMPurify: {
  /** `dirty` as HTML with everything that could run or load removed. */
  sanitize(dirty: string, config?: Config): string;
  addHook(hook: "afterSanitizeAttributes", fn: (node: Element) => void): void;
};
export default DOMPurify;
