// The part of highlight.js (static/vendor/highlight/highlight.min.js) that markdown.js uses.

declare const hljs: {
  getLanguage(name: string): object | undefined;
  highlight(code: string, options: { language: string; ignoreIllegals?: boolean }): { value: string };
};
export default hljs;
export type HLJSApi = typeof hljs;
