// The part of marked (static/vendor/marked.esm.js) that markdown.js uses.

/** A token as the renderer's hooks receive it (html and image tokens: the fields read). */
export interface Token {
  raw: string;
  text?: string;
  href?: string;
}

export interface MarkedOptions {
  gfm?: boolean;
  breaks?: boolean;
  renderer?: { [name: string]: (token: Token) => string };
}

export const marked: {
  use(options: MarkedOptions): void;
  /** The HTML for markdown `src` (synchronous: no async extension is used). */
  parse(src: string): string;
};
